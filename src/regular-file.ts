/**
 * Opening a file lapin was given to read (an archive, a layout's blob, a
 * rootfs file) when anything could be at that path: a FIFO (open would
 * block forever), /dev/zero (a read would never end), a symlink out of the
 * directory it belongs to. Every reader of such paths goes through here:
 * open without blocking, fstat the descriptor, refuse what is not a regular
 * file, and read no more than the size the descriptor declares.
 */
import { constants, type BigIntStats, type Stats } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from './errors.js';

export interface RegularFileOptions {
  /** How messages name the file: "oci:img: blobs/sha256/ab…". Default: the path. */
  what?: string;
  /** Follow a symlink at the last component (a path the user typed); default false. */
  followSymlink?: boolean;
  /** 2 (unreadable source) by default. */
  exitCode?: 1 | 2;
  hint?: string;
}

export interface OpenedRegularFile {
  handle: FileHandle;
  /** The size fstat gave when it was opened; reads stop there. */
  size: number;
  stats: Stats;
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  if (stats.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

function failure(message: string, options: RegularFileOptions, cause?: unknown): LapinError {
  return new LapinError(message, { exitCode: options.exitCode ?? 2, ...(options.hint !== undefined ? { hint: options.hint } : {}), ...(cause !== undefined ? { cause } : {}) });
}

/** Opens `file` for reading: O_NONBLOCK (a FIFO cannot block), O_NOFOLLOW unless asked, and a regular file or an error. */
export async function openRegularFile(file: string, options: RegularFileOptions = {}): Promise<OpenedRegularFile> {
  const what = options.what ?? file;
  const flags = constants.O_RDONLY | constants.O_NONBLOCK | (options.followSymlink ? 0 : constants.O_NOFOLLOW);
  let handle: FileHandle;
  try {
    handle = await open(file, flags);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw failure(`${what}: no such file`, options, error);
    if (code === 'ELOOP') throw failure(`${what} is a symlink; lapin does not follow it here`, options, error);
    if (code === 'EACCES' || code === 'EPERM') throw failure(`${what}: permission denied`, options, error);
    if (code === 'ENXIO') throw failure(`${what} is a socket or a FIFO, not a regular file`, options, error);
    throw failure(`cannot open ${what}: ${code ?? (error as Error).message}`, options, error);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw failure(`${what} is ${kindOf(stats)}, not a regular file`, options);
    return { handle, size: stats.size, stats };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads `length` bytes at `position` of an opened file; a file cut short is an error, never a short buffer. */
export async function readExactly(handle: FileHandle, length: number, position: number, what: string, exitCode: 1 | 2 = 2): Promise<Buffer> {
  const data = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(data, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new LapinError(`${what} is cut short (${filled} of ${length} bytes)`, { exitCode });
    filled += bytesRead;
  }
  return data;
}

/**
 * A file's stamp: device, inode, size, mtime and ctime (ns). Any write to
 * the file or replacement of it changes the ctime, which cannot be set
 * back, so caches trust what they wrote while its stamp holds. A file with
 * no name left (replaced meanwhile) is no stamp.
 */
export function fileStamp(s: BigIntStats): string {
  if (!s.isFile() || s.nlink === 0n) return 'not a file';
  return [s.dev, s.ino, s.size, s.mtimeNs, s.ctimeNs].join(':');
}

/** The whole file, refused past `maxBytes`, read no further than its fstat size. */
export async function readRegularFile(file: string, maxBytes: number, options: RegularFileOptions = {}): Promise<Buffer> {
  const { handle, size } = await openRegularFile(file, options);
  try {
    if (size > maxBytes) throw failure(`${options.what ?? file} is ${size} bytes, more than the ${maxBytes} lapin reads for it`, options);
    return await readExactly(handle, size, 0, options.what ?? file, options.exitCode ?? 2);
  } finally {
    await handle.close();
  }
}

/**
 * `relative` under `root`, with every symlink resolved, or an error when the
 * result is outside `root`. Returns undefined when nothing is there.
 */
export async function resolveInsideRoot(root: string, relative: string, options: RegularFileOptions = {}): Promise<string | undefined> {
  const realRoot = await realpath(root);
  const parts = path.posix.normalize(`/${relative}`).split('/').filter(Boolean);
  let real: string;
  try {
    real = await realpath(path.join(realRoot, ...parts));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw failure(`${options.what ?? relative} is a symlink loop`, options);
    throw error;
  }
  if (real !== realRoot && !real.startsWith(`${realRoot}${path.sep}`)) {
    throw failure(`${options.what ?? relative} leads outside ${root}; refusing to read it`, { hint: 'a layout must hold its files itself, not symlinks out of it', ...options });
  }
  return real;
}
