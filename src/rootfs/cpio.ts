/**
 * Writer for SVR4 "newc" cpio archives (magic 070701), the format the Linux
 * kernel unpacks as an initramfs and Unikraft reads as an initrd.
 *
 * Choices, all deterministic:
 * - Names carry no "./" or "/" prefix ("etc/hosts"), like the kernel's own
 *   gen_init_cpio; no entry for the root directory itself is written, so
 *   unpacking never changes the mode or owner of the directory it lands in.
 * - Header fields are 8 lowercase hex digits (GNU cpio writes lowercase; the
 *   kernel and libarchive accept either case).
 * - Inode numbers run from 1 in emission order; a hardlink shares its
 *   target's number. dev and rdev are 0, the check field is 0.
 * - nlink is the number of names for a file, and 2 + the number of direct
 *   subdirectories for a directory (what a real file system reports).
 * - A hardlink group carries its data on its first entry (the file itself);
 *   the later names have size 0. The kernel's init/initramfs.c links a later
 *   regular-file entry with nlink >= 2 to the first name it saw with the same
 *   (dev, ino, mode) and opens it without O_TRUNC, so a 0-byte body keeps the
 *   data; GNU cpio (which writes data on the last entry) defers the empty
 *   names and links them at the end; libarchive records the first name as
 *   the hardlink target. Later names take the target's mode, owner and mtime,
 *   since they are the same inode (the kernel matches links on mode too).
 * - The archive ends with a TRAILER!!! entry and is zero-padded to a multiple
 *   of 512 bytes, as GNU cpio does.
 *
 * The node list is validated in full before the first byte goes out (it is
 * metadata only; file contents are streamed from disk chunk by chunk).
 */
import { stat } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LapinError } from '../errors.js';
import { fsPath, nameBytes } from '../image/names.js';
import { openSourceFile } from '../image/source-file.js';
import { readLayerMember } from '../image/layer-member.js';
import { comparePaths, treePathProblem, type DirNode, type FileNode, type FileSource, type FsNode, type LayerMember } from '../image/tree.js';

const MAGIC_NEWC = '070701';
const TRAILER_NAME = 'TRAILER!!!';
const TYPE_FILE = 0o100000;
const TYPE_DIR = 0o040000;
const TYPE_SYMLINK = 0o120000;
const MAX_U32 = 0xffffffff;
/** The kernel skips entries whose name (with its NUL) exceeds PATH_MAX. */
const KERNEL_PATH_MAX = 4096;
const READ_CHUNK_BYTES = 256 * 1024;
const ARCHIVE_BLOCK_BYTES = 512;

/** What goes into one header, resolved from the tree before writing. */
interface PlannedEntry {
  path: string;
  ino: number;
  /** Type bits | permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  body: { kind: 'none' } | { kind: 'bytes'; data: Uint8Array } | { kind: 'disk'; source: Extract<FileSource, { kind: 'path' }>; size: number } | { kind: 'layer'; member: LayerMember };
}

function entryError(path: string, problem: string, hint?: string): LapinError {
  return new LapinError(`initrd entry "${path}": ${problem}`, hint === undefined ? {} : { hint });
}

/** Throws unless `path` is a clean relative tree path the kernel accepts. */
export function checkTreePath(path: string): void {
  if (path === '') throw entryError(path, 'empty path', 'the root directory is implied; list only what is inside it');
  const problem = treePathProblem(path);
  if (problem) throw entryError(path, problem, path.startsWith('/') ? 'tree paths are relative to the root' : undefined);
  if (nameBytes(path).length + 1 > KERNEL_PATH_MAX) {
    throw entryError(path, `path is longer than ${KERNEL_PATH_MAX - 1} bytes; the kernel would skip it`);
  }
}

function checkU32(path: string, what: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_U32) {
    throw entryError(path, `${what} ${value} does not fit a cpio newc field (0..${MAX_U32})`);
  }
  return value;
}

function checkMetadata(node: FsNode): void {
  if (!Number.isInteger(node.mode) || node.mode < 0 || node.mode > 0o7777) {
    throw entryError(node.path, `mode ${node.mode} is not permission bits (0..0o7777)`);
  }
  checkU32(node.path, 'uid', node.uid);
  checkU32(node.path, 'gid', node.gid);
  checkU32(node.path, 'mtime', Math.floor(node.mtime));
}

function parentOf(path: string): string | undefined {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? undefined : path.slice(0, slash);
}

async function collect(nodes: Iterable<FsNode> | AsyncIterable<FsNode>): Promise<FsNode[]> {
  const list: FsNode[] = [];
  for await (const node of nodes) list.push(node);
  return list;
}

/**
 * Checks order, paths, parents and links, and assigns inode numbers and link
 * counts. Throws LapinError on the first problem.
 */
async function planEntries(nodes: Iterable<FsNode> | AsyncIterable<FsNode>): Promise<PlannedEntry[]> {
  const list = await collect(nodes);
  const byPath = new Map<string, FsNode>();
  /** For each path of a file or hardlink: the file node that owns the data. */
  const linkOwner = new Map<string, FileNode>();
  const namesPerFile = new Map<FileNode, number>();
  const subdirsPerDir = new Map<string, number>();
  let previous: string | undefined;

  for (const node of list) {
    checkTreePath(node.path);
    checkMetadata(node);
    if (previous !== undefined) {
      const order = comparePaths(previous, node.path);
      if (order === 0) throw entryError(node.path, 'path appears twice');
      if (order > 0) {
        throw entryError(node.path, `out of order: comes after "${previous}"`, 'sort entries byte-wise by path (comparePaths)');
      }
    }
    previous = node.path;
    const parent = parentOf(node.path);
    if (parent !== undefined) {
      const parentNode = byPath.get(parent);
      if (parentNode === undefined) {
        throw entryError(node.path, `parent directory "${parent}" is not listed before it`, 'add the parent directories (withParentDirs)');
      }
      if (parentNode.type !== 'dir') throw entryError(node.path, `parent "${parent}" is a ${parentNode.type}, not a directory`);
    }
    byPath.set(node.path, node);

    switch (node.type) {
      case 'dir':
        subdirsPerDir.set(node.path, 0);
        if (parent !== undefined) subdirsPerDir.set(parent, (subdirsPerDir.get(parent) ?? 0) + 1);
        break;
      case 'file':
        checkU32(node.path, 'size', node.size);
        if (node.source.kind === 'bytes' && node.source.data.byteLength !== node.size) {
          throw entryError(node.path, `has ${node.source.data.byteLength} bytes of data but size ${node.size}`);
        }
        if (node.source.kind === 'layer' && node.source.member.size !== node.size) {
          throw entryError(node.path, `has ${node.source.member.size} bytes of data but size ${node.size}`);
        }
        linkOwner.set(node.path, node);
        namesPerFile.set(node, 1);
        break;
      case 'symlink': {
        const targetBytes = nameBytes(node.target).length;
        if (targetBytes === 0) throw entryError(node.path, 'symlink has an empty target');
        if (node.target.includes('\0')) throw entryError(node.path, 'symlink target contains a NUL byte');
        if (targetBytes + 1 > KERNEL_PATH_MAX) {
          throw entryError(node.path, `symlink target is longer than ${KERNEL_PATH_MAX - 1} bytes`);
        }
        break;
      }
      case 'hardlink': {
        const owner = linkOwner.get(node.target);
        if (owner === undefined) {
          const known = byPath.get(node.target);
          throw entryError(
            node.path,
            known === undefined
              ? `hardlink target "${node.target}" is not a file listed before it`
              : `hardlink target "${node.target}" is a ${known.type}; only regular files can be hardlinked`,
          );
        }
        linkOwner.set(node.path, owner);
        namesPerFile.set(owner, (namesPerFile.get(owner) ?? 1) + 1);
        break;
      }
    }
  }

  const inoOfFile = new Map<FileNode, number>();
  let nextIno = 1;
  const planned: PlannedEntry[] = [];
  for (const node of list) {
    const common = { path: node.path, uid: node.uid, gid: node.gid, mtime: Math.floor(node.mtime) };
    switch (node.type) {
      case 'dir':
        planned.push({
          ...common,
          ino: nextIno++,
          mode: TYPE_DIR | node.mode,
          nlink: 2 + (subdirsPerDir.get(node.path) ?? 0),
          body: { kind: 'none' },
        });
        break;
      case 'symlink':
        planned.push({
          ...common,
          ino: nextIno++,
          mode: TYPE_SYMLINK | node.mode,
          nlink: 1,
          body: { kind: 'bytes', data: nameBytes(node.target) },
        });
        break;
      case 'file': {
        const ino = nextIno++;
        inoOfFile.set(node, ino);
        planned.push({
          ...common,
          ino,
          mode: TYPE_FILE | node.mode,
          nlink: namesPerFile.get(node) ?? 1,
          body:
            node.source.kind === 'bytes'
              ? { kind: 'bytes', data: node.source.data }
              : node.source.kind === 'layer'
                ? { kind: 'layer', member: node.source.member }
                : { kind: 'disk', source: node.source, size: node.size },
        });
        break;
      }
      case 'hardlink': {
        const owner = linkOwner.get(node.path);
        const ownerIno = owner === undefined ? undefined : inoOfFile.get(owner);
        if (owner === undefined || ownerIno === undefined) throw entryError(node.path, 'internal: unresolved hardlink');
        planned.push({
          path: node.path,
          ino: ownerIno,
          mode: TYPE_FILE | owner.mode,
          uid: owner.uid,
          gid: owner.gid,
          mtime: Math.floor(owner.mtime),
          nlink: namesPerFile.get(owner) ?? 2,
          body: { kind: 'none' },
        });
        break;
      }
    }
  }

  // Fail before any output if a source file is missing or already differs.
  for (const entry of planned) {
    if (entry.body.kind === 'disk') await checkSourceFile(entry.path, entry.body.source.path, entry.body.size);
  }
  return planned;
}

async function checkSourceFile(entryPath: string, diskPath: string, size: number): Promise<void> {
  let info;
  try {
    info = await stat(fsPath(diskPath));
  } catch (error) {
    throw entryError(entryPath, `cannot read source file ${diskPath}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  if (!info.isFile()) throw entryError(entryPath, `source ${diskPath} is not a regular file`);
  if (info.size !== size) {
    throw entryError(entryPath, `source file ${diskPath} is ${info.size} bytes, expected ${size}`, 'it changed since the tree was scanned; build again');
  }
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

function padLength(length: number): number {
  return (4 - (length % 4)) % 4;
}

function encodeHeader(entry: { path: string; ino: number; mode: number; uid: number; gid: number; nlink: number; mtime: number }, bodySize: number): Buffer {
  const name = nameBytes(entry.path);
  const fields =
    MAGIC_NEWC +
    hex8(entry.ino) +
    hex8(entry.mode) +
    hex8(entry.uid) +
    hex8(entry.gid) +
    hex8(entry.nlink) +
    hex8(entry.mtime) +
    hex8(bodySize) +
    hex8(0) + // dev major
    hex8(0) + // dev minor
    hex8(0) + // rdev major
    hex8(0) + // rdev minor
    hex8(name.length + 1) +
    hex8(0); // check
  const headerLength = fields.length + name.length + 1;
  const header = Buffer.alloc(headerLength + padLength(headerLength));
  header.write(fields, 0, 'latin1');
  name.copy(header, fields.length);
  return header;
}

async function* streamDiskFile(entryPath: string, source: Extract<FileSource, { kind: 'path' }>, size: number, header: Buffer): AsyncGenerator<Uint8Array> {
  const diskPath = source.path;
  const opened = await openSourceFile(source);
  const handle = opened.handle;
  try {
    if (opened.size !== size) {
      throw entryError(entryPath, `source file ${diskPath} changed size (now ${opened.size} bytes, expected ${size})`, 'build again');
    }
    yield header;
    let remaining = size;
    while (true) {
      // Ask for one byte more than expected so growth is noticed.
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, remaining + 1));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      if (bytesRead > remaining) {
        throw entryError(entryPath, `source file ${diskPath} grew while it was being written`, 'the initrd is incomplete; build again');
      }
      remaining -= bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
    if (remaining > 0) {
      throw entryError(entryPath, `source file ${diskPath} shrank while it was being written`, 'the initrd is incomplete; build again');
    }
  } finally {
    await handle.close();
  }
}

async function* archiveChunks(nodes: Iterable<FsNode> | AsyncIterable<FsNode>, written: { size: number }): AsyncGenerator<Uint8Array> {
  const entries = await planEntries(nodes);
  let offset = 0;
  for (const entry of entries) {
    const body = entry.body;
    const bodySize = body.kind === 'none' ? 0 : body.kind === 'bytes' ? body.data.byteLength : body.kind === 'layer' ? body.member.size : body.size;
    const header = encodeHeader(entry, bodySize);
    if (body.kind === 'disk') {
      yield* streamDiskFile(entry.path, body.source, body.size, header);
    } else if (body.kind === 'layer') {
      // A base image's file, read from its layer blob (exactly its size, or an error).
      yield header;
      yield* readLayerMember(body.member);
    } else {
      yield header;
      if (body.kind === 'bytes' && body.data.byteLength > 0) yield body.data;
    }
    offset += header.length + bodySize;
    const pad = padLength(offset);
    if (pad > 0) yield Buffer.alloc(pad);
    offset += pad;
    written.size = offset;
  }
  const trailer = encodeHeader({ path: TRAILER_NAME, ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0 }, 0);
  offset += trailer.length;
  const blockPad = (ARCHIVE_BLOCK_BYTES - (offset % ARCHIVE_BLOCK_BYTES)) % ARCHIVE_BLOCK_BYTES;
  yield blockPad > 0 ? Buffer.concat([trailer, Buffer.alloc(blockPad)]) : trailer;
  written.size = offset + blockPad;
}

/**
 * The archive as a byte stream; pulls (and reads files) only as fast as the
 * consumer reads. Errors, including bad input, surface as stream errors.
 */
export function cpioNewcStream(nodes: Iterable<FsNode> | AsyncIterable<FsNode>): Readable {
  return Readable.from(archiveChunks(nodes, { size: 0 }), { objectMode: false });
}

/**
 * Writes the archive to `out` with backpressure. `out` is ended afterwards
 * unless `end: false`. Resolves with the archive size in bytes.
 */
export async function writeCpioNewc(
  nodes: Iterable<FsNode> | AsyncIterable<FsNode>,
  out: NodeJS.WritableStream | Writable,
  options: { end?: boolean } = {},
): Promise<{ size: number }> {
  const written = { size: 0 };
  const source = Readable.from(archiveChunks(nodes, written), { objectMode: false });
  await pipeline(source, out, { end: options.end ?? true });
  return { size: written.size };
}

/**
 * Returns the nodes sorted by path, with a directory node added for every
 * missing ancestor (default mode 0o755, owner 0:0, mtime 0).
 */
export function withParentDirs(
  nodes: Iterable<FsNode>,
  defaults: { mode?: number; mtime?: number; uid?: number; gid?: number } = {},
): FsNode[] {
  const list = [...nodes];
  const present = new Set(list.map((node) => node.path));
  const added: DirNode[] = [];
  for (const node of list) {
    for (let parent = parentOf(node.path); parent !== undefined && parent !== ''; parent = parentOf(parent)) {
      if (present.has(parent)) break;
      present.add(parent);
      added.push({
        type: 'dir',
        path: parent,
        mode: defaults.mode ?? 0o755,
        uid: defaults.uid ?? 0,
        gid: defaults.gid ?? 0,
        mtime: defaults.mtime ?? 0,
      });
    }
  }
  return [...list, ...added].sort((a, b) => comparePaths(a.path, b.path));
}
