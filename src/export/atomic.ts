import { lstat, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { fsyncDirectory, fsyncPath, temporaryName, trackTemporary, untrackTemporary } from '../temporaries.js';

// The registry lives in src/temporaries.ts so image/ need not depend on export/.
export { removePendingSync, trackTemporary, untrackTemporary } from '../temporaries.js';

/**
 * Writes the directory `dest` through a temporary sibling, flushed to the
 * disk, and renames it into place, so a reader never sees a half-written
 * directory. rename(2) replaces only a missing or empty directory: when
 * another build got there first, this one says so and leaves that build's
 * output alone. On failure the temporary is removed and `dest` is untouched.
 */
export async function writeAtomically(dest: string, write: (temporary: string) => Promise<void>): Promise<void> {
  const temporary = path.join(path.dirname(dest), temporaryName(`.${path.basename(dest)}.lapin-tmp-`));
  trackTemporary(temporary);
  try {
    await write(temporary);
    await fsyncTree(temporary);
    try {
      await rename(temporary, dest);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new LapinError(`output directory ${dest} was filled by another build while this one ran; that output is left as it is, and this build's copy was removed`, {
          hint: 'give each concurrent build its own destination',
        });
      }
      if (code === 'ENOTDIR') throw new LapinError(`output ${dest} became a file while lapin was building; this build's copy was removed`, { hint: 'choose a new directory' });
      throw error;
    }
    await fsyncDirectory(path.dirname(dest));
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  } finally {
    untrackTemporary(temporary);
  }
}

/** Flushes every file and directory under `root` (children first), so the rename publishes data that is on the disk. */
async function fsyncTree(root: string | Buffer): Promise<void> {
  // Names as bytes: an image may hold names that are not UTF-8.
  const names = await readdir(root, { encoding: 'buffer' }).catch((error: unknown) => {
    tolerateUnreadable(error);
    return [] as Buffer[];
  });
  for (const name of names) {
    const full = Buffer.concat([Buffer.from(root), Buffer.from('/'), name]);
    const info = await lstat(full);
    if (info.isDirectory()) await fsyncTree(full);
    else if (info.isFile()) await fsyncPath(full).catch(tolerateUnreadable);
  }
  await fsyncPath(root).catch(tolerateUnreadable);
}

/** A file or directory the image makes unreadable (mode 0) cannot be opened to flush it unless lapin runs as root. */
function tolerateUnreadable(error: unknown): void {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EINVAL') throw error;
}

/**
 * Refuses a directory output over anything but a missing or empty
 * directory: replacing it would delete the user's files.
 */
export async function requireFreshDirectory(dest: string): Promise<void> {
  const stats = await stat(dest).catch(() => undefined);
  if (!stats) return;
  if (!stats.isDirectory()) throw new LapinError(`output ${dest} exists and is not a directory`, { hint: 'choose a new directory' });
  if ((await readdir(dest)).length > 0) {
    throw new LapinError(`output directory ${dest} is not empty`, { hint: 'choose a new directory or remove this one first' });
  }
}
