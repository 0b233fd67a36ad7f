/**
 * .dockerignore patterns, read and matched as BuildKit does
 * (moby/patternmatcher and its ignorefile reader): `#` comment lines,
 * surrounding blanks trimmed, `!` exceptions, paths cleaned (`./` and a
 * leading `/` dropped), `*` and `?` within one path segment, `**` across
 * any number of them, and the last matching pattern wins. A path is
 * excluded when it or one of its parent directories matches. Pure: the
 * build reads the file (src/image/dockerignore.ts).
 */
import { cleanPath } from '../clean-path.js';
import { RE2JS } from 're2js';
import { LapinError, type SourcePosition } from '../errors.js';

export interface IgnorePattern {
  /** The cleaned pattern, without its `!`. */
  pattern: string;
  /** `!pattern`: an exception that brings matching paths back. */
  exception: boolean;
  at?: SourcePosition;
}

/** Go's strings.TrimSpace (ASCII and Unicode white space). */
function trimSpace(text: string): string {
  return text.replace(/^[\s\u0085]+|[\s\u0085]+$/gu, '');
}

/** The patterns of an ignore file, as ignorefile.ReadAll and patternmatcher.New take them. */
export function parseIgnoreFile(text: string, file: string): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index === 0 ? raw.replace(/^\uFEFF/, '') : raw;
    if (line.startsWith('#')) return;
    let pattern = trimSpace(line);
    if (pattern === '') return;
    const at: SourcePosition = { file, line: index + 1, column: line.length - line.trimStart().length + 1 };
    const exception = pattern.startsWith('!');
    if (exception) pattern = trimSpace(pattern.slice(1));
    if (pattern !== '') {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    if (exception && pattern === '') throw new LapinError('illegal exclusion pattern: "!"', { at, hint: 'write !PATTERN, or remove the line' });
    patterns.push({ pattern, exception, at });
  });
  // Compiled once here so a bad pattern is reported at its line, not when a file first meets it.
  new IgnoreMatcher(patterns);
  return patterns;
}

type Compiled =
  | { kind: 'exact'; text: string }
  | { kind: 'prefix'; text: string }
  | { kind: 'suffix'; text: string }
  | { kind: 'regexp'; regexp: RE2JS };

/** Characters that are special in a regular expression but not in a pattern. */
const ESCAPED = new Set(['.', '+', '(', ')', '|', '{', '}', '$']);

/** patternmatcher's Pattern.compile: a fast form when the pattern allows one, else a regular expression. */
function compile(pattern: string, at: SourcePosition | undefined): Compiled {
  let source = '^';
  let kind: 'exact' | 'prefix' | 'suffix' | 'regexp' = 'exact';
  const chars = Array.from(pattern);
  for (let index = 0, step = 0; index < chars.length; index += 1, step += 1) {
    const char = chars[index] as string;
    if (char === '*') {
      if (chars[index + 1] === '*') {
        index += 1;
        if (chars[index + 1] === '/') index += 1;
        if (index + 1 >= chars.length) {
          if (kind === 'exact') kind = 'prefix';
          else {
            source += '.*';
            kind = 'regexp';
          }
        } else {
          source += '(.*/)?';
          kind = 'regexp';
        }
        if (step === 0) kind = 'suffix';
      } else {
        source += '[^/]*';
        kind = 'regexp';
      }
    } else if (char === '?') {
      source += '[^/]';
      kind = 'regexp';
    } else if (ESCAPED.has(char)) {
      source += `\\${char}`;
    } else if (char === '\\') {
      const next = chars[index + 1];
      if (next === undefined) throw badPattern(pattern, at);
      // As patternmatcher writes it: Go's regexp reads "\d" as a class and "\-" as a literal.
      source += `\\${next}`;
      index += 1;
      kind = 'regexp';
    } else if (char === '[' || char === ']') {
      source += char;
      kind = 'regexp';
    } else {
      source += char;
    }
  }
  if (kind !== 'regexp') return { kind, text: pattern };
  try {
    // RE2 (Go's regexp syntax, linear time): a backtracking RegExp took seconds per path on "**/a/**/a/...".
    return { kind, regexp: RE2JS.compile(`${source}$`) };
  } catch {
    throw badPattern(pattern, at);
  }
}

function badPattern(pattern: string, at: SourcePosition | undefined): LapinError {
  return new LapinError(`bad pattern ${JSON.stringify(pattern)} in the ignore file`, {
    ...(at ? { at } : {}),
    hint: 'check the [ ] ranges and \\ escapes',
  });
}

function matches(compiled: Compiled, path: string): boolean {
  switch (compiled.kind) {
    case 'exact':
      return path === compiled.text;
    case 'prefix':
      return path.startsWith(compiled.text.slice(0, -2));
    case 'suffix': {
      const suffix = compiled.text.slice(2);
      // "**/foo" also matches "foo" itself.
      return path.endsWith(suffix) || (suffix.startsWith('/') && path === suffix.slice(1));
    }
    case 'regexp':
      return compiled.regexp.test(path);
  }
}

/** Decides which context paths an ignore file excludes. */
export class IgnoreMatcher {
  private readonly compiled: Array<{ exception: boolean; compiled: Compiled }>;
  /** Whether any `!` pattern can bring back something inside an excluded directory. */
  readonly hasExceptions: boolean;

  constructor(patterns: readonly IgnorePattern[]) {
    this.compiled = patterns
      .filter((p) => p.pattern !== '')
      .map((p) => ({ exception: p.exception, compiled: compile(p.pattern, p.at) }));
    this.hasExceptions = this.compiled.some((p) => p.exception);
  }

  /**
   * Whether `path` (context-relative, "/"-separated) is excluded:
   * patternmatcher's MatchesOrParentMatches. The context itself never is.
   */
  ignores(path: string): boolean {
    const file = cleanPath(path.replace(/^\/+/, ''));
    if (file === '.') return false;
    const parents = file.split('/').slice(0, -1);
    let excluded = false;
    for (const { exception, compiled } of this.compiled) {
      // An exclusion cannot change an excluded path, an exception only an excluded one.
      if (exception !== excluded) continue;
      let match = matches(compiled, file);
      for (let depth = 1; !match && depth <= parents.length; depth += 1) match = matches(compiled, parents.slice(0, depth).join('/'));
      if (match) excluded = !exception;
    }
    return excluded;
  }
}
