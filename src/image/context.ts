import { RE2JS } from 're2js';
import { lstat, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { LapinError, type SourcePosition } from '../errors.js';
import { readContextDirectory } from './context-names.js';
import { decodeName, fsPath } from './names.js';

const MAX_SYMLINKS = 255;

/**
 * Resolves a context-relative path to a real path inside `root`, following
 * symlinks as if `root` were "/" (BuildKit's scoping): an absolute link or a
 * ".." never leaves the context. Returns undefined when nothing is there
 * (a name longer than the system allows cannot be there either); a symlink
 * loop is an error at `at`.
 */
export async function resolveInContext(root: string, relative: string, at?: SourcePosition): Promise<string | undefined> {
  // No file name holds a NUL byte (and the system calls refuse one).
  if (relative.includes('\0')) return undefined;
  const pending = splitSegments(relative);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const segment = pending.shift() as string;
    if (segment === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, segment);
    let stats: Stats;
    try {
      stats = await lstat(fsPath(candidate));
    } catch (error) {
      if (isNotFound(error) || (error as NodeJS.ErrnoException).code === 'ENAMETOOLONG') return undefined;
      throw error;
    }
    if (stats.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) {
        throw new LapinError(`${JSON.stringify(relative)} leads through more than ${MAX_SYMLINKS} symbolic links in the build context, a loop (at ${JSON.stringify(path.posix.join(...resolved, segment))})`, {
          ...(at ? { at } : {}),
          hint: 'fix the symlinks, or name the file they should lead to',
        });
      }
      const target = decodeName(await readlink(fsPath(candidate), { encoding: 'buffer' }));
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...splitSegments(target));
      continue;
    }
    resolved.push(segment);
    if (!stats.isDirectory() && pending.length > 0) return undefined;
  }
  return path.join(root, ...resolved);
}

function splitSegments(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

export function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** True when a path segment uses Go filepath.Match wildcards, as COPY sources may. */
export function hasGlob(pattern: string): boolean {
  return /[*?[]/.test(pattern.replace(/\\./g, ''));
}

/** Turns one path segment of a Go filepath.Match pattern into a RegExp. */
/** A compiled glob segment. */
export interface SegmentMatcher {
  test(name: string): boolean;
}

export function globSegmentRegExp(segment: string, at?: SourcePosition): SegmentMatcher {
  let source = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i] as string;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '\\' && i + 1 < segment.length) source += escapeRegExp(segment[++i] as string);
    else if (c === '[') {
      const end = segment.indexOf(']', i + 2);
      if (end < 0) throw new LapinError(`bad pattern ${JSON.stringify(segment)}: unclosed "["`, at ? { at } : {});
      let body = segment.slice(i + 1, end);
      const negate = body.startsWith('^') || body.startsWith('!');
      if (negate) body = body.slice(1);
      source += `[${negate ? '^' : ''}${body.replace(/[\]\\]/g, '\\$&')}]`;
      i = end;
    } else source += escapeRegExp(c);
  }
  // RE2 (linear time): a backtracking RegExp ran for minutes on `*a*a*a*a*a*a*a*a*b` against a long name.
  try {
    return RE2JS.compile(`^${source}$`, RE2JS.DOTALL);
  } catch {
    throw new LapinError(`bad pattern ${JSON.stringify(segment)}`, { ...(at ? { at } : {}), hint: 'check the [ ] ranges and \\ escapes' });
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Expands a context-relative pattern against the context, returning
 * context-relative matches in byte order. Wildcards match within one path
 * segment, as Docker's COPY does.
 */
export async function expandContextGlob(root: string, pattern: string, at?: SourcePosition): Promise<string[]> {
  const segments = splitSegments(pattern);
  let matches: string[] = [''];
  for (const segment of segments) {
    const next: string[] = [];
    if (!hasGlob(segment)) {
      for (const base of matches) next.push(base === '' ? segment : `${base}/${segment}`);
    } else {
      const regexp = globSegmentRegExp(segment, at);
      for (const base of matches) {
        const dir = await resolveInContext(root, base, at);
        if (dir === undefined) continue;
        let names: string[];
        try {
          names = await readContextDirectory(fsPath(dir));
        } catch (error) {
          if (isNotFound(error) || (error as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
          throw error;
        }
        for (const name of names.sort()) {
          if (regexp.test(name)) next.push(base === '' ? name : `${base}/${name}`);
        }
      }
    }
    matches = next;
  }
  return matches;
}
