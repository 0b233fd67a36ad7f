// Opening a file of the build context when a layer, an initrd, a block
// image or a directory output is written, some time after the context was
// read. Whatever was put at that path meanwhile must not be read in its
// place: not a symlink (it could point anywhere on the machine), and not
// another file (a directory on the way swapped for a symlink gives one).
import { closeSync, constants, fstatSync, openSync, type BigIntStats } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { copyFile, open, type FileHandle } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { LapinError } from '../errors.js';
import { fsPath } from './names.js';
import { writeLayerMember, type LayerSource } from './layer-member.js';
import type { FileSource } from './tree.js';

type PathSource = Extract<FileSource, { kind: 'path' }>;

const CHANGED_HINT = 'keep the build context unchanged while lapin builds, and build again';
export const UNREADABLE_HINT = 'make the file readable by the user running lapin (chmod a+r), or leave it out of the build';

/**
 * The file as it was when the build read the context: opened without
 * following a symlink, a regular file, and (when the build recorded it)
 * the same device and inode. `size` is its size as it was opened.
 */
export async function openSourceFile(source: PathSource): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(fsPath(source.path), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    throw openError(source, error);
  }
  try {
    const info = await handle.stat();
    checkOpened(source, info);
    return { handle, size: info.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** openSourceFile for a loop of many small reads, where a thread-pool round trip per call costs more than the call. */
export function openSourceFileSync(source: PathSource): { fd: number; info: BigIntStats } {
  let fd: number;
  try {
    fd = openSync(fsPath(source.path), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    throw openError(source, error);
  }
  try {
    const info = fstatSync(fd, { bigint: true });
    checkOpened(source, info);
    return { fd, info };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function openError(source: PathSource, error: unknown): LapinError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ELOOP') return new LapinError(`${source.path} became a symlink while lapin was building; refusing to follow it`, { hint: CHANGED_HINT });
  if (code === 'EACCES' || code === 'EPERM') return new LapinError(`cannot read ${source.path}: permission denied`, { hint: UNREADABLE_HINT, exitCode: 2 });
  return new LapinError(`cannot read ${source.path}: ${code ?? (error as Error).message}`, { hint: CHANGED_HINT });
}

function checkOpened(source: PathSource, info: { isFile(): boolean; dev: number | bigint; ino: number | bigint }): void {
  if (!info.isFile()) throw new LapinError(`${source.path} is no longer a regular file`, { hint: CHANGED_HINT });
  if (source.identity && (Number(info.dev) !== source.identity.dev || Number(info.ino) !== source.identity.ino)) {
    throw new LapinError(`${source.path} was replaced by another file while lapin was building; refusing to read it`, { hint: CHANGED_HINT });
  }
}

/**
 * Copies the file, checked as openSourceFile checks it, keeping copyFile's
 * reflink and copy_file_range paths; a base image's file is read from its layer.
 */
export async function copySourceFile(source: PathSource | LayerSource, target: string | Buffer): Promise<void> {
  if (source.kind === 'layer') {
    await writeLayerMember(source.member, target);
    return;
  }
  const { handle } = await openSourceFile(source);
  try {
    // The open descriptor's /proc name is that very file, whatever happens to its path meanwhile.
    await copyFile(`/proc/self/fd/${handle.fd}`, target).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      // No /proc: copy through the descriptor itself.
      await pipeline(handle.createReadStream({ start: 0, autoClose: false }), createWriteStream(target));
    });
  } finally {
    await handle.close();
  }
}
