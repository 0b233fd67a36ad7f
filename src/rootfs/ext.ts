/**
 * Block rootfs images: an ext2 or ext4 file system holding a tree, built by
 * e2fsprogs (`mke2fs -d`) and made reproducible.
 *
 * Why e2fsprogs rather than an ext2 writer in TypeScript: mke2fs is the
 * reference implementation every kernel and fsck is tested against, it
 * writes ext4 (extents, checksums, journal) as well as plain ext2, and since
 * 1.47 it adds a directory's entries in sorted order, so the inode numbers do
 * not depend on the staging file system's readdir order. What it does not
 * control is fixed here:
 * - its configuration: MKE2FS_CONFIG points at a file lapin writes, so the
 *   host's /etc/mke2fs.conf cannot change features or sizes;
 * - UUID and directory hash seed: derived from the flavor and the epoch
 *   (-U, -E hash_seed), so two builds agree and a changed file leaves them;
 * - the clock: E2FSPROGS_FAKE_TIME for the superblock and lost+found.
 *   e2fsprogs reads a fake time of 0 as "not set" and takes the wall clock,
 *   so epoch 0 runs the tools at 1 s; debugfs then sets the creation and
 *   check times (and every inode's) to the real epoch. Only the superblock's
 *   last write time, which every close of the image rewrites, keeps the 1 s.
 *   `test/reproducible.test.ts` builds every writer twice at epoch 0;
 * - every inode's mode, owner and times: mke2fs copies them from the staging
 *   tree (whose ctime is "now" and whose owner is whoever runs lapin), so a
 *   debugfs pass sets them from the tree afterwards, by inode number
 *   (ncheck maps paths to numbers). The staging tree can therefore stay
 *   readable by the build user (a 0000 directory is still copied).
 * The finished image is checked with `e2fsck -fn`.
 */
import { createHash } from 'node:crypto';
import { link, lstat, mkdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { copySourceFile } from '../image/source-file.js';
import { fsPath } from '../image/names.js';
import { comparePaths, type FileNode, type FileSource, type FsNode } from '../image/tree.js';
import { makeDirectories } from '../mkdirp.js';
import type { BlockImageCache } from './block-cache.js';
import { e2fsprogsVersion, lastLines, runTool, toolEnv } from './e2fsprogs.js';
import { parseStatOutput, patchExtImage, sourceStamp } from './ext-patch.js';

/** ext2 for guests with old drivers (rumprun's NetBSD ext2fs); ext4 for Linux. */
export type ExtFlavor = 'ext2' | 'ext4';

export interface ExtImageOptions {
  flavor: ExtFlavor;
  /** Seconds since the epoch for the superblock and every inode's times. */
  mtime: number;
  /** Image size in bytes; computed from the tree with headroom when absent. */
  size?: number;
  /** Scratch directory for the staging tree; removed afterwards. */
  workDir: string;
}

export interface ExtImageResult {
  size: number;
  /** Inodes the image holds (used and free). */
  inodes: number;
}

const BLOCK_BYTES = 4096;
const MIB = 1024 * 1024;
const TYPE_BITS: Record<Exclude<FsNode['type'], 'hardlink'>, number> = { file: 0o100000, dir: 0o040000, symlink: 0o120000 };
/** Fast symlinks keep up to 59 bytes in the inode; longer ones take a block. */
const FAST_SYMLINK_MAX = 59;
/** debugfs commands per ncheck line; its command reader has a bounded line length. */
const NCHECK_BATCH = 200;

const MKE2FS_CONFIG = `[defaults]
	base_features = sparse_super,large_file,filetype,dir_index,ext_attr
	blocksize = 4096
	inode_ratio = 16384
	reserved_ratio = 0
	lazy_itable_init = false
	lazy_journal_init = false
[fs_types]
	ext2 = {
		inode_size = 128
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
		inode_size = 256
	}
	lapin = {
		inode_ratio = 16384
	}
`;

const FEATURES: Record<ExtFlavor, string> = {
  ext2: 'none,sparse_super,large_file,filetype,dir_index,ext_attr',
  ext4: 'none,sparse_super,large_file,filetype,dir_index,ext_attr,has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize',
};

function entryError(entryPath: string, problem: string, hint?: string): LapinError {
  return new LapinError(`block image entry "${entryPath}": ${problem}`, hint === undefined ? {} : { hint });
}

/** Throws unless `p` is a clean relative tree path that stays inside the image. */
function checkEntryPath(p: string): void {
  if (p === '') throw entryError(p, 'empty path', 'the root directory is implied; list only what is inside it');
  if (p.startsWith('/')) throw entryError(p, 'path starts with "/"', 'tree paths are relative to the root');
  for (const segment of p.split('/')) {
    if (segment === '') throw entryError(p, 'path has an empty segment ("//" or a trailing "/")');
    if (segment === '.' || segment === '..') throw entryError(p, `path has a "${segment}" segment, which would escape the image`);
    if (Buffer.byteLength(segment) > 255) throw entryError(p, 'a path segment is longer than 255 bytes, the ext limit');
  }
  // debugfs reports paths one per line, tab-separated; these characters would make that ambiguous.
  if (/[\0\t\n\r]/.test(p)) throw entryError(p, 'path contains a NUL, tab or newline', 'rename the file');
}

function checkNode(node: FsNode): void {
  if (!Number.isInteger(node.mode) || node.mode < 0 || node.mode > 0o7777) throw entryError(node.path, `mode ${node.mode} is not permission bits (0..0o7777)`);
  for (const [what, value] of [['uid', node.uid], ['gid', node.gid], ['mtime', Math.floor(node.mtime)]] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw entryError(node.path, `${what} ${value} does not fit an ext inode (0..4294967295)`);
  }
}

/** The last second ext2's 128-byte inodes hold (signed 32 bits): 2038-01-19 03:14:07 UTC. */
export const EXT2_TIME_MAX = 2147483647;

/**
 * ext2's inodes have no room for times past EXT2_TIME_MAX: e2fsprogs would
 * wrap them to 1901 without a word, so a reproducible build refuses instead.
 */
function checkExt2Times(list: readonly FsNode[], epoch: number): void {
  const late = Math.floor(epoch) > EXT2_TIME_MAX ? { what: `SOURCE_DATE_EPOCH ${Math.floor(epoch)}` } : list.find((node) => Math.floor(node.mtime) > EXT2_TIME_MAX);
  if (late === undefined) return;
  const what = 'what' in late ? late.what : `${late.path}: time ${Math.floor(late.mtime)}`;
  throw new LapinError(`${what} is past 2038-01-19 03:14:07 UTC (${EXT2_TIME_MAX}), the last time an ext2 block image's 128-byte inodes can hold`, {
    hint: `set SOURCE_DATE_EPOCH to ${EXT2_TIME_MAX} or earlier, or give a Linux guest an ext4 block image`,
    exitCode: 2,
  });
}

/**
 * Checks the tree (order, parents, escaping paths, links) and returns it
 * sorted; throws LapinError on the first problem.
 */
export function checkExtTree(nodes: readonly FsNode[]): FsNode[] {
  const list = [...nodes].sort((a, b) => comparePaths(a.path, b.path));
  const byPath = new Map<string, FsNode>();
  for (const node of list) {
    checkEntryPath(node.path);
    checkNode(node);
    if (byPath.has(node.path)) throw entryError(node.path, 'path appears twice');
    const slash = node.path.lastIndexOf('/');
    if (slash >= 0) {
      const parent = byPath.get(node.path.slice(0, slash));
      if (parent === undefined) throw entryError(node.path, `parent directory "${node.path.slice(0, slash)}" is not in the tree`);
      if (parent.type !== 'dir') throw entryError(node.path, `parent "${parent.path}" is a ${parent.type}, not a directory`);
    }
    if (node.type === 'symlink') {
      if (node.target === '' || node.target.includes('\0')) throw entryError(node.path, 'symlink target is empty or contains a NUL byte');
      if (Buffer.byteLength(node.target) >= BLOCK_BYTES) throw entryError(node.path, `symlink target is longer than ${BLOCK_BYTES - 1} bytes`);
    }
    if (node.type === 'file' && node.source.kind === 'bytes' && node.source.data.byteLength !== node.size) {
      throw entryError(node.path, `has ${node.source.data.byteLength} bytes of data but size ${node.size}`);
    }
    if (node.type === 'hardlink') {
      const target = byPath.get(node.target);
      if (target === undefined) throw entryError(node.path, `hardlink target "${node.target}" is not a file listed before it`);
      if (target.type !== 'file' && target.type !== 'hardlink') throw entryError(node.path, `hardlink target "${node.target}" is a ${target.type}; only regular files can be hardlinked`);
    }
    byPath.set(node.path, node);
  }
  return list;
}

function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Blocks a regular file of `size` bytes takes, with indirect blocks for ext2 (a slight overestimate for ext4). */
function fileBlocks(size: number): number {
  const data = ceilDiv(size, BLOCK_BYTES);
  const perIndirect = BLOCK_BYTES / 4;
  const indirect = data > 12 ? ceilDiv(data - 12, perIndirect) + (data > 12 + perIndirect ? ceilDiv(data, perIndirect * perIndirect) + 1 : 0) : 0;
  return data + indirect;
}

/** Inodes to create: one per file, directory and symlink, plus room for the guest to add files. */
export function extInodeCount(nodes: readonly FsNode[]): number {
  const used = nodes.filter((n) => n.type !== 'hardlink').length + 11;
  return Math.max(128, Math.ceil(used * 1.25) + 64);
}

/**
 * Bytes for an image that holds the tree with headroom: the data and
 * directory blocks plus a quarter, the inode table, the journal (ext4) and
 * 4 MiB for metadata and the guest's own writes, rounded up to a MiB.
 */
export function autoExtSize(nodes: readonly FsNode[], flavor: ExtFlavor): number {
  let blocks = 0;
  const dirEntryBytes = new Map<string, number>();
  for (const node of nodes) {
    if (node.type === 'file') blocks += fileBlocks(node.size);
    else if (node.type === 'symlink' && Buffer.byteLength(node.target) > FAST_SYMLINK_MAX) blocks += 1;
    const slash = node.path.lastIndexOf('/');
    const parent = slash < 0 ? '' : node.path.slice(0, slash);
    const nameBytes = Buffer.byteLength(node.path) - (slash + 1);
    dirEntryBytes.set(parent, (dirEntryBytes.get(parent) ?? 24) + 8 + Math.ceil(nameBytes / 4) * 4);
    if (node.type === 'dir' && !dirEntryBytes.has(node.path)) dirEntryBytes.set(node.path, 24);
  }
  for (const bytes of dirEntryBytes.values()) blocks += ceilDiv(bytes, BLOCK_BYTES) + 1;
  const inodeBytes = extInodeCount(nodes) * (flavor === 'ext4' ? 256 : 128);
  const journalBytes = flavor === 'ext4' ? journalMiB(blocks * BLOCK_BYTES) * MIB : 0;
  const total = Math.ceil(blocks * BLOCK_BYTES * 1.25) + inodeBytes + journalBytes + 4 * MIB;
  return ceilDiv(total, MIB) * MIB;
}

/** A small journal keeps small images small; bigger ones get a bigger one. */
function journalMiB(bytes: number): number {
  return bytes < 512 * MIB ? 4 : 16;
}

export { parseByteSize } from './size.js';

/** The smallest image mke2fs accepts with a journal, and a floor for ext2. */
export const MIN_EXT_BYTES = 8 * MIB;

/**
 * A UUID (version 4 layout) derived from the flavor and the epoch only, so
 * it is reproducible and stays the same when a file changes. With
 * metadata_csum every checksummed block (inode tables, bitmaps, group
 * descriptors, directories, extent blocks) is seeded by the UUID: one
 * derived from the files' sizes, as it was, made a one-file size change
 * rewrite all of them (docs/performance.md, "What mke2fs rewrites").
 */
export function extUuid(flavor: ExtFlavor, mtime: number): string {
  const bytes = createHash('sha256').update(`lapin ext ${flavor} ${Math.floor(mtime)}\n`).digest().subarray(0, 16);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Stages a context file for mke2fs, which only reads it: a hard link when
 * the staging directory is on the file's file system (no copy of the data:
 * a 1.2 GB tree took seconds to copy), else a copy. The link must be the
 * regular file the build saw (device and inode), and each inode is linked
 * once: mke2fs makes staged files that share an inode hard links of each
 * other, which separate files of the tree are not. Anything else (another
 * file system, protected_hardlinks, a swapped path) falls back to the copy,
 * which makes its own checks.
 */
async function stageFile(source: Extract<FileSource, { kind: 'path' }>, target: string, linked: Set<string>): Promise<void> {
  try {
    await link(fsPath(source.path), target);
    const info = await lstat(target);
    const id = `${info.dev}:${info.ino}`;
    const seen = source.identity === undefined || (info.dev === source.identity.dev && info.ino === source.identity.ino);
    if (info.isFile() && seen && !linked.has(id)) {
      linked.add(id);
      return;
    }
    await rm(target, { force: true });
  } catch {
    await rm(target, { force: true });
  }
  await copySourceFile(source, target);
}

/** Puts a regular file's bytes at `target` for mke2fs: written from memory, staged from the context, or taken from a layer. */
async function stageFileNode(node: FileNode, target: string, linked: Set<string>): Promise<void> {
  if (node.source.kind === 'bytes') await writeFile(target, node.source.data);
  else if (node.source.kind === 'path') await stageFile(node.source, target, linked);
  else await copySourceFile(node.source, target);
}

/** Writes the tree under `root` with the right types and contents; modes, owners and times come later. */
async function materialize(list: readonly FsNode[], root: string): Promise<void> {
  await makeDirectories(root);
  const linked = new Set<string>();
  for (const node of list) {
    const target = path.join(root, ...node.path.split('/'));
    switch (node.type) {
      case 'dir':
        await mkdir(target);
        break;
      case 'file':
        await stageFileNode(node, target, linked);
        break;
      case 'symlink':
        await symlink(node.target, target);
        break;
      case 'hardlink':
        await link(path.join(root, ...node.target.split('/')), target);
        break;
    }
  }
}

/** Image paths ("/etc/hosts") to inode numbers, from debugfs ncheck. */
async function inodeNumbers(image: string, firstIno: number, lastIno: number, env: NodeJS.ProcessEnv, workDir: string): Promise<Map<string, number>> {
  const lines: string[] = [];
  for (let ino = firstIno; ino <= lastIno; ino += NCHECK_BATCH) {
    const batch: number[] = [];
    for (let i = ino; i < Math.min(ino + NCHECK_BATCH, lastIno + 1); i++) batch.push(i);
    lines.push(`ncheck ${batch.join(' ')}`);
  }
  const commands = path.join(workDir, 'ncheck.cmd');
  await writeFile(commands, `${lines.join('\n')}\n`);
  const result = await runTool('debugfs', ['-f', commands, image], env);
  if (result.code !== 0) throw new LapinError(`debugfs could not read the new block image: ${lastLines(result.stderr)}`);
  const numbers = new Map<string, number>();
  for (const line of result.stdout.split('\n')) {
    const match = /^(\d+)\t(.*)$/.exec(line);
    if (!match) continue;
    // ncheck prints names in the root directory with a doubled slash ("//bin").
    numbers.set(match[2]?.replace(/^\/+/, '') ?? '', Number(match[1]));
  }
  return numbers;
}

/** mke2fs could not write the image file itself (a full, read-only or foreign disk), whatever the tree. */
export class ImageDiskError extends LapinError {}

/** Bump when the debugfs pass after mke2fs (what it sets, and how) changes: it is part of what a kept image holds. */
const ATTRIBUTE_PASS = 1;

/** mke2fs's arguments for the tree staged at `tree`, written to `image`. */
function mke2fsArgs(options: ExtImageOptions, size: number, inodes: number, tree: string, image: string): string[] {
  const uuid = extUuid(options.flavor, options.mtime);
  return [
    '-q', '-F', '-t', options.flavor, '-T', 'lapin', '-b', String(BLOCK_BYTES),
    '-I', options.flavor === 'ext4' ? '256' : '128', '-N', String(inodes), '-m', '0',
    '-O', FEATURES[options.flavor], '-U', uuid, '-E', `hash_seed=${uuid},root_owner=0:0,nodiscard`,
    ...(options.flavor === 'ext4' ? ['-J', `size=${journalMiB(size)}`] : []),
    '-d', tree, image, `${size / 1024}k`,
  ];
}

/** What mke2fs is asked for: the checked tree, the image size and the inode count. */
export interface ExtPlan {
  list: FsNode[];
  /** Bytes, a multiple of the block size; the size the image is made at first. */
  size: number;
  /** The size the caller gave (the image never grows past it), if any. */
  given: number | undefined;
  inodes: number;
}

/** Checks the tree and options and sizes the image; throws LapinError on the first problem. */
export function planExtImage(nodes: readonly FsNode[], options: ExtImageOptions): ExtPlan {
  const list = checkExtTree(nodes);
  if (options.flavor === 'ext2') checkExt2Times(list, options.mtime);
  const given = options.size;
  if (given !== undefined && given < MIN_EXT_BYTES) {
    throw new LapinError(`a block rootfs of ${given} bytes is too small`, { hint: `give at least ${MIN_EXT_BYTES / MIB}M` });
  }
  let size = Math.max(given ?? autoExtSize(list, options.flavor), MIN_EXT_BYTES);
  size = Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES;
  return { list, size, given, inodes: extInodeCount(list) };
}

/**
 * The key of everything that decides where mke2fs puts each block: the
 * e2fsprogs version and its environment, this file's configuration, the
 * very arguments mke2fs gets (flavor, size, inodes, UUID, journal), the
 * debugfs pass's version, the epoch, and every entry's path, type, owner,
 * mode, time, size and link text. Two trees with the same key and the same
 * zero blocks in each file get the same image but for file data
 * (ext-patch.ts).
 */
export function extShapeKey(plan: ExtPlan, options: ExtImageOptions, e2fsprogs: string, env: NodeJS.ProcessEnv = process.env): string {
  const hash = createHash('sha256');
  const tunables = Object.entries(env).filter(([name]) => /^(MKE2FS|E2FSPROGS)_/.test(name)).sort(([a], [b]) => (a < b ? -1 : 1));
  const args = mke2fsArgs(options, plan.size, plan.inodes, '<tree>', '<image>');
  hash.update(JSON.stringify(['lapin ext shape 2', e2fsprogs, MKE2FS_CONFIG, args, ATTRIBUTE_PASS, plan.given ?? null, Math.floor(options.mtime), tunables]));
  hash.update('\n');
  for (const node of plan.list) {
    const fields: unknown[] = [node.type, node.path, node.mode, node.uid, node.gid, Math.floor(node.mtime)];
    if (node.type === 'file') fields.push(node.size);
    else if (node.type === 'symlink' || node.type === 'hardlink') fields.push(node.target);
    hash.update(JSON.stringify(fields));
    hash.update('\n');
  }
  return hash.digest('hex');
}

/**
 * Writes the tree as an ext2/ext4 image at `outFile` (which must not exist).
 * Throws LapinError when e2fsprogs is missing, the size is too small, or the
 * tree is invalid.
 */
export async function writeExtImage(nodes: readonly FsNode[], outFile: string, options: ExtImageOptions): Promise<ExtImageResult> {
  const { size, inodes } = await buildExtImage(planExtImage(nodes, options), outFile, options);
  return { size, inodes };
}

/** The images earlier builds kept, and how to run a task when this build ends. */
export interface KeptImages {
  cache: BlockImageCache;
  /** Runs `task` once the build is done with the image (it is the layer's source until then). */
  defer(task: () => Promise<void>): void;
}

/**
 * Whether mke2fs copies extended attributes for any of these files, staged
 * as a build stages them: asked of mke2fs itself (an image of just these
 * files, then debugfs), since Node cannot read xattrs.
 */
async function stagedXattrs(files: readonly FileNode[], workDir: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const tree = path.join(workDir, 'tree');
  const image = path.join(workDir, 'xattrs.img');
  await rm(tree, { recursive: true, force: true });
  await makeDirectories(tree);
  try {
    await writeFile(path.join(workDir, 'mke2fs.conf'), MKE2FS_CONFIG);
    const linked = new Set<string>();
    let blocks = 0;
    for (const [i, node] of files.entries()) {
      const target = path.join(tree, `f${i}`);
      await stageFileNode(node, target, linked);
      blocks += Math.ceil(node.size / BLOCK_BYTES) + 2;
    }
    const size = Math.ceil((blocks * BLOCK_BYTES * 1.25 + 16 * MIB) / MIB) * MIB;
    const made = await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', String(BLOCK_BYTES), '-N', String(files.length + 64), '-d', tree, image, `${size / 1024}k`], env);
    if (made.code !== 0) throw new LapinError(`mke2fs could not read the changed files' attributes: ${lastLines(made.stderr || made.stdout)}`);
    const commands = path.join(workDir, 'xattrs.cmd');
    const inodes = Array.from({ length: files.length + 1 }, (_, i) => 12 + i);
    await writeFile(commands, inodes.map((ino) => `stat <${ino}>\n`).join(''));
    const listed = await runTool('debugfs', ['-f', commands, image], env);
    return [...parseStatOutput(listed.stdout).values()].some((found) => found.xattrs) || /^Extended attributes:/m.test(listed.stdout);
  } finally {
    await rm(tree, { recursive: true, force: true });
    await rm(image, { force: true });
  }
}

/** The context files' stamps once mke2fs is done with them (staging by hard link changed their ctimes). */
async function contextStamps(list: readonly FsNode[]): Promise<Map<string, string>> {
  const stamps = new Map<string, string>();
  for (const node of list) {
    if (node.type !== 'file' || node.source.kind !== 'path') continue;
    const info = await lstat(fsPath(node.source.path), { bigint: true }).catch(() => undefined);
    if (info?.isFile()) stamps.set(node.path, sourceStamp(info));
  }
  return stamps;
}

/** What writeKeptExtImage did: `patched` when it rewrote an earlier build's image instead of running mke2fs. */
export interface KeptExtImageResult extends ExtImageResult {
  file: string;
  patched?: { files: number; bytes: number };
}

/**
 * Writes the tree as an ext image in the block image cache's directory:
 * the image an earlier build kept for a tree of the same shape, with the
 * changed files' blocks rewritten, when every file leaves the same blocks
 * zero (ext-patch.ts); else a new one from mke2fs. Either way the image is
 * kept for the next build when this one ends. `fallback` is where the image
 * goes when the cache's disk cannot take it.
 */
export async function writeKeptExtImage(nodes: readonly FsNode[], options: ExtImageOptions, kept: KeptImages, fallback: string): Promise<KeptExtImageResult> {
  const plan = planExtImage(nodes, options);
  const env = toolEnv(options.mtime, path.join(options.workDir, 'mke2fs.conf'));
  const key = extShapeKey(plan, options, await e2fsprogsVersion(env));
  await makeDirectories(options.workDir);
  const held = await kept.cache.take(key);
  if (held) {
    let outcome;
    try {
      outcome = await patchExtImage(held.file, plan, held.files, held.sources, env, options.workDir, (files) => stagedXattrs(files, options.workDir, env));
    } catch (error) {
      await kept.cache.discard(held.file);
      throw error;
    }
    if (outcome.kind === 'patched') {
      const sources = outcome.sources;
      kept.defer(() => kept.cache.keep(key, { ...held, sources }));
      return { file: held.file, size: (await stat(held.file)).size, inodes: plan.inodes, patched: { files: outcome.files, bytes: outcome.bytes } };
    }
    await kept.cache.discard(held.file);
  }
  // A cache disk without room for the image (or not writable) leaves the image where the build's temporaries go, not kept.
  const file = await kept.cache.newImagePath(key, plan.size);
  const inTemporaries = async (): Promise<KeptExtImageResult> => {
    const { size, inodes } = await buildExtImage(plan, fallback, options);
    return { file: fallback, size, inodes };
  };
  if (file === undefined) return inTemporaries();
  let built;
  try {
    built = await buildExtImage(plan, file, options);
  } catch (error) {
    await kept.cache.discard(file);
    if (!(error instanceof ImageDiskError)) throw error;
    kept.cache.cannotKeep(error.message);
    return inTemporaries();
  }
  const files = built.files;
  const sources = await contextStamps(plan.list);
  kept.defer(() => kept.cache.keep(key, { file, files, sources }));
  return { file, size: built.size, inodes: built.inodes };
}

/** mke2fs, debugfs and e2fsck on a planned tree; also returns each regular file's inode number by path. */
export async function buildExtImage(plan: ExtPlan, outFile: string, options: ExtImageOptions): Promise<ExtImageResult & { files: Map<string, number> }> {
  const { list, given, inodes } = plan;
  let size = plan.size;
  const work = options.workDir;
  const stagingRoot = path.join(work, 'tree');
  const config = path.join(work, 'mke2fs.conf');
  await makeDirectories(work);
  try {
    await writeFile(config, MKE2FS_CONFIG);
    await materialize(list, stagingRoot);
    const env = toolEnv(options.mtime, config);
    // An automatic size that mke2fs finds too small (its block estimate differs from ours) grows and retries.
    for (let attempt = 0; ; attempt++) {
      await rm(outFile, { force: true });
      const made = await runTool('mke2fs', mke2fsArgs(options, size, inodes, stagingRoot, outFile), env);
      if (made.code === 0) break;
      const output = made.stderr + made.stdout;
      await rm(outFile, { force: true });
      // The disk the image is written to (not the image) is full, read-only or not ours.
      if (/no space left on device|read-only file system|permission denied|disk quota exceeded/i.test(output)) {
        throw new ImageDiskError(`cannot write the block rootfs in ${path.dirname(outFile)}: ${lastLines(output)}`, { hint: 'free space there (TMPDIR, or the cache directory: LAPIN_CACHE_DIR)' });
      }
      const noSpace = /could not allocate|no free space|not enough space|too many inodes|file too big/i.test(output);
      if (noSpace && given === undefined && attempt < 4) {
        size = Math.ceil((size * 1.5) / MIB) * MIB;
        continue;
      }
      if (noSpace) {
        throw new LapinError(`the files do not fit a block rootfs of ${given ?? size} bytes`, { hint: 'raise rootfs.size (or --rootfs-size), or drop it to size the image automatically' });
      }
      throw new LapinError(`mke2fs could not build the block rootfs: ${lastLines(output)}`);
    }

    const numbers = await inodeNumbers(outFile, 11, 11 + list.length, env, work);
    const commands: string[] = [];
    const time = `@${Math.floor(options.mtime)}`;
    const timeFields = options.flavor === 'ext4' ? ['atime', 'ctime', 'mtime', 'crtime'] : ['atime', 'ctime', 'mtime'];
    const setInode = (ino: number, mode: number, uid: number, gid: number, mtime: number): void => {
      commands.push(`sif <${ino}> mode 0${mode.toString(8)}`, `sif <${ino}> uid ${uid}`, `sif <${ino}> gid ${gid}`);
      for (const field of timeFields) commands.push(`sif <${ino}> ${field} ${field === 'mtime' ? `@${Math.floor(mtime)}` : time}`);
    };
    // The tools ran at toolClock(); the superblock and the journal get the epoch itself.
    commands.push(`ssv mkfs_time ${time}`, `ssv lastcheck ${time}`);
    if (options.flavor === 'ext4') for (const field of timeFields) commands.push(`sif <8> ${field} ${time}`);
    setInode(2, 0o040755, 0, 0, options.mtime);
    const lostFound = numbers.get('lost+found');
    if (lostFound !== undefined && !list.some((n) => n.path === 'lost+found')) setInode(lostFound, 0o040700, 0, 0, options.mtime);
    for (const node of list) {
      if (node.type === 'hardlink') continue;
      const ino = numbers.get(node.path);
      if (ino === undefined) throw new LapinError(`mke2fs left /${node.path} out of the block rootfs`, { hint: 'report this with the file name' });
      setInode(ino, TYPE_BITS[node.type] | node.mode, node.uid, node.gid, node.mtime);
    }
    const commandFile = path.join(work, 'attributes.cmd');
    await writeFile(commandFile, `${commands.join('\n')}\n`);
    const set = await runTool('debugfs', ['-w', '-f', commandFile, outFile], env);
    // debugfs exits 0 even when a command fails; anything on stderr but its banner is a failure.
    if (set.code !== 0 || lastLines(set.stderr) !== '') {
      throw new LapinError(`debugfs could not set file attributes in the block rootfs: ${lastLines(set.stderr)}`);
    }
    const check = await runTool('e2fsck', ['-fn', outFile], env);
    if (check.code !== 0) throw new LapinError(`e2fsck found problems in the new block rootfs: ${lastLines(check.stdout + check.stderr)}`);
    const files = new Map<string, number>();
    for (const node of list) if (node.type === 'file') files.set(node.path, numbers.get(node.path) as number);
    return { size: (await stat(outFile)).size, inodes, files };
  } finally {
    await rm(stagingRoot, { recursive: true, force: true });
  }
}
