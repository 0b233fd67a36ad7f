import { lstat, open, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { LapinError, type SourcePosition } from '../errors.js';
import type { CopyOp } from '../plan/types.js';
import { readContextDirectory } from './context-names.js';
import { decodeName, fsPath } from './names.js';
import { expandContextGlob, globSegmentRegExp, hasGlob, resolveInContext } from './context.js';
import type { ContextIgnore } from './dockerignore.js';
import { ImageFilesystem, treePath } from './filesystem.js';
import { comparePaths, type FsNode } from './tree.js';

export interface CopyEnvironment {
  /** Absolute path of the build context. */
  contextDir: string;
  /** The definition file's directory, when it is not the context (for the not-found hint). */
  definitionDir?: { path: string; shown: string };
  /** Filesystems of earlier stages, by name and by index. */
  stages: ReadonlyMap<string, ImageFilesystem>;
  /** Time written on every entry (SOURCE_DATE_EPOCH). */
  mtime: number;
  /** .dockerignore: context paths COPY does not see. */
  ignore?: ContextIgnore;
}

interface Owner {
  mode: number | undefined;
  uid: number;
  gid: number;
}

function where(at: SourcePosition | undefined): { at?: SourcePosition } {
  return at ? { at } : {};
}

/** Applies one copy, with Dockerfile COPY semantics, into `target`. */
export async function applyCopy(target: ImageFilesystem, op: CopyOp, env: CopyEnvironment): Promise<void> {
  if (op.fromStage !== undefined) {
    const stage = env.stages.get(op.fromStage);
    if (!stage) throw new LapinError(`no build stage named ${JSON.stringify(op.fromStage)}`, where(op.at));
    await copyFromStage(target, stage, op, env);
    putInline(target, op, env);
    return;
  }
  const owner: Owner = { mode: op.mode, uid: op.uid ?? 0, gid: op.gid ?? 0 };
  const sources: string[] = [];
  for (const source of op.sources) {
    const normalized = path.posix.normalize(source.replace(/^\/+/, ''));
    if (normalized === '..' || normalized.startsWith('../')) {
      throw new LapinError(`${JSON.stringify(source)} is outside the build context`, {
        ...where(op.at),
        hint: 'move the file into the context directory, or pass a wider context',
      });
    }
    if (hasGlob(normalized)) {
      const matches = (await expandContextGlob(env.contextDir, normalized, op.at)).filter((match) => !env.ignore?.matcher.ignores(match));
      if (matches.length === 0) {
        throw new LapinError(`no files in the build context match ${JSON.stringify(source)}`, where(op.at));
      }
      sources.push(...matches);
    } else {
      sources.push(normalized === '.' ? '' : normalized);
    }
  }
  const intoDirectory = op.destination.endsWith('/') || sources.length > 1;
  const destination = treePath(op.destination);
  const links = new Map<string, string>();
  for (const source of sources) {
    const real = await resolveInContext(env.contextDir, source, op.at);
    if (env.ignore && real !== undefined && (env.ignore.matcher.ignores(source) || env.ignore.matcher.ignores(path.relative(env.contextDir, real)))) {
      throw new LapinError(`${JSON.stringify(source)} is excluded from the build context by ${env.ignore.file}`, {
        ...where(op.at),
        hint: `remove its pattern from ${env.ignore.file}, or add an exception !${source}`,
      });
    }
    if (real === undefined) {
      const beside = source !== '' && env.definitionDir !== undefined && (await lstat(path.join(env.definitionDir.path, source)).then(() => true, () => false));
      throw new LapinError(`${JSON.stringify(source === '' ? '.' : source)} not found in the build context ${env.contextDir}`, {
        ...where(op.at),
        hint: beside
          ? `paths are relative to the context, and this one is beside the definition file: pass its directory as the context, lapin build -f ${shellWord(op.at?.file ?? 'FILE')} ${shellWord(env.definitionDir?.shown ?? '')}`
          : 'check the path; it is relative to the context, not to the definition file',
      });
    }
    const stats = await lstat(fsPath(real));
    if (stats.isDirectory()) {
      putDirectory(target, destination, owner, env, op.at);
      await copyDirectoryContents(target, real, destination, owner, env, links, op);
    } else {
      const name = source === '' ? '' : path.posix.basename(source);
      const filePath = intoDirectory || target.isDirectory(destination) ? joinTree(destination, name) : destination;
      if (op.isAdd) await refuseArchive(real, source, op.at);
      await putStat(target, real, filePath, stats, owner, env, links, op.at);
    }
  }
  putInline(target, op, env);
}

/**
 * The here-document files, after the sources as BuildKit copies them
 * (dockerfile2llb dispatchCopy: Mkfile 0644 in a scratch state, copied
 * with --chmod and --chown): into a directory destination under their
 * delimiter's name, else as the destination file.
 */
function putInline(target: ImageFilesystem, op: CopyOp, env: CopyEnvironment): void {
  const inline = op.inline ?? [];
  if (inline.length === 0) return;
  const intoDirectory = op.destination.endsWith('/') || op.sources.length + inline.length > 1;
  const destination = treePath(op.destination);
  for (const file of inline) {
    const data = new Uint8Array(Buffer.from(file.data, 'utf8'));
    const filePath = intoDirectory || target.isDirectory(destination) ? joinTree(destination, file.name) : destination;
    target.put(
      { type: 'file', path: filePath, mode: op.mode ?? 0o644, uid: op.uid ?? 0, gid: op.gid ?? op.uid ?? 0, mtime: env.mtime, size: data.byteLength, source: { kind: 'bytes', data } },
      op.at,
    );
  }
}

/**
 * Whether .dockerignore keeps a context path out of a directory copy. An
 * excluded directory still comes along when an exception brings back
 * something inside it, as BuildKit sends the parents of what it sends.
 */
async function excluded(env: CopyEnvironment, real: string): Promise<boolean> {
  const matcher = env.ignore?.matcher;
  const relative = path.relative(env.contextDir, real).split(path.sep).join('/');
  if (matcher === undefined || !matcher.ignores(relative)) return false;
  if (!matcher.hasExceptions || !(await lstat(fsPath(real))).isDirectory()) return true;
  for (const name of await readContextDirectory(fsPath(real))) {
    if (!(await excluded(env, path.join(real, name)))) return false;
  }
  return true;
}

function joinTree(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function putDirectory(target: ImageFilesystem, p: string, owner: Owner, env: CopyEnvironment, at?: SourcePosition): void {
  if (p === '') return;
  const existing = target.get(p);
  if (existing?.type === 'dir' && owner.mode === undefined) return;
  target.put({ type: 'dir', path: p, mode: owner.mode ?? 0o755, uid: owner.uid, gid: owner.gid, mtime: env.mtime }, at);
}

async function copyDirectoryContents(
  target: ImageFilesystem,
  dir: string,
  destination: string,
  owner: Owner,
  env: CopyEnvironment,
  links: Map<string, string>,
  op: CopyOp,
): Promise<void> {
  const names = (await readContextDirectory(fsPath(dir))).sort(comparePaths);
  for (const name of names) {
    const real = path.join(dir, name);
    if (env.ignore && (await excluded(env, real))) continue;
    const stats = await lstat(fsPath(real));
    const imagePath = joinTree(destination, name);
    if (stats.isDirectory()) {
      target.put({ type: 'dir', path: imagePath, mode: owner.mode ?? stats.mode & 0o7777, uid: owner.uid, gid: owner.gid, mtime: env.mtime }, op.at);
      await copyDirectoryContents(target, real, imagePath, owner, env, links, op);
    } else {
      if (op.isAdd && stats.isFile()) await refuseArchive(real, path.relative(env.contextDir, real), op.at);
      await putStat(target, real, imagePath, stats, owner, env, links, op.at);
    }
  }
}

async function putStat(
  target: ImageFilesystem,
  real: string,
  imagePath: string,
  stats: Stats,
  owner: Owner,
  env: CopyEnvironment,
  links: Map<string, string>,
  at?: SourcePosition,
): Promise<void> {
  const base = { path: imagePath, uid: owner.uid, gid: owner.gid, mtime: env.mtime };
  if (stats.isSymbolicLink()) {
    // Inside a copied directory a link stays a link, as in Docker.
    target.put({ ...base, type: 'symlink', mode: 0o777, target: decodeName(await readlink(fsPath(real), { encoding: 'buffer' })) }, at);
    return;
  }
  if (!stats.isFile()) {
    throw new LapinError(`${real} is not a regular file, directory or symlink; images cannot carry it`, where(at));
  }
  const mode = owner.mode ?? stats.mode & 0o7777;
  if (stats.nlink > 1) {
    const key = `${stats.dev}:${stats.ino}`;
    const first = links.get(key);
    if (first !== undefined && target.get(first)?.type === 'file') {
      target.put({ ...base, type: 'hardlink', mode, target: first }, at);
      return;
    }
    links.set(key, imagePath);
  }
  target.put({ ...base, type: 'file', mode, size: stats.size, source: { kind: 'path', path: real, identity: { dev: stats.dev, ino: stats.ino } } }, at);
}

/** ADD unpacks local archives in Docker; lapin copies files as they are, so it refuses rather than differ. */
async function refuseArchive(real: string, source: string, at?: SourcePosition): Promise<void> {
  const handle = await open(fsPath(real), 'r');
  try {
    const header = Buffer.alloc(512);
    const { bytesRead } = await handle.read(header, 0, 512, 0);
    const head = header.subarray(0, bytesRead);
    const isArchive =
      (head[0] === 0x1f && head[1] === 0x8b) ||
      head.subarray(0, 3).toString('latin1') === 'BZh' ||
      head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) ||
      (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar');
    if (isArchive) {
      throw new LapinError(`ADD would unpack the archive ${JSON.stringify(source)}; lapin does not unpack archives`, {
        ...where(at),
        hint: 'use COPY to put the file in the image as it is, or unpack it into the context first',
      });
    }
  } finally {
    await handle.close();
  }
}

async function copyFromStage(target: ImageFilesystem, stage: ImageFilesystem, op: CopyOp, env: CopyEnvironment): Promise<void> {
  const roots: string[] = [];
  for (const source of op.sources) {
    const pattern = treePath(source);
    const matches = hasGlob(pattern) ? matchTree(stage, pattern, op.at) : stage.resolve(pattern) ? [pattern] : [];
    if (matches.length === 0) {
      throw new LapinError(`${JSON.stringify(source)} not found in stage ${JSON.stringify(op.fromStage)}`, where(op.at));
    }
    roots.push(...matches);
  }
  const intoDirectory = op.destination.endsWith('/') || roots.length > 1;
  const destination = treePath(op.destination);
  for (const root of roots) {
    const node = stage.get(root) ?? stage.resolve(root);
    if (!node) continue;
    const retarget = (n: FsNode, newPath: string): FsNode => {
      const owned = {
        ...n,
        path: newPath,
        mtime: env.mtime,
        ...(op.uid !== undefined ? { uid: op.uid, gid: op.gid ?? op.uid } : {}),
        ...(op.mode !== undefined && n.type !== 'symlink' ? { mode: op.mode } : {}),
      };
      return owned;
    };
    if (node.type === 'dir') {
      putDirectory(target, destination, { mode: op.mode, uid: op.uid ?? 0, gid: op.gid ?? 0 }, env, op.at);
      const prefix = node.path === '' ? '' : `${node.path}/`;
      for (const child of stage.subtree(node.path)) {
        if (child.path === node.path) continue;
        const rel = child.path.slice(prefix.length);
        // A hard link to a file outside the copied directory cannot stay a link: it becomes a copy of that file.
        const linked = child.type === 'hardlink' && !child.target.startsWith(prefix) ? stage.get(child.target) : undefined;
        const source = linked?.type === 'file' ? { ...linked, path: child.path, mode: child.mode, uid: child.uid, gid: child.gid } : child;
        const moved = retarget(source, joinTree(destination, rel));
        if (moved.type === 'hardlink') {
          target.put({ ...moved, target: joinTree(destination, moved.target.slice(prefix.length)) }, op.at);
        } else target.put(moved, op.at);
      }
    } else {
      const resolved = node.type === 'hardlink' ? stage.get(node.target) ?? node : node;
      const name = path.posix.basename(root);
      const filePath = intoDirectory || target.isDirectory(destination) ? joinTree(destination, name) : destination;
      target.put(retarget(resolved, filePath), op.at);
    }
  }
}

function matchTree(stage: ImageFilesystem, pattern: string, at?: SourcePosition): string[] {
  const segments = pattern.split('/');
  const regexps = segments.map((s) => (hasGlob(s) ? globSegmentRegExp(s, at) : undefined));
  return stage
    .list()
    .map((n) => n.path)
    .filter((p) => {
      const parts = p.split('/');
      if (parts.length !== segments.length) return false;
      return parts.every((part, i) => (regexps[i] ? (regexps[i]?.test(part) ?? false) : part === segments[i]));
    });
}

/** A path as one shell word, for a command to copy. */
export function shellWord(text: string): string {
  return /^[\w./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
