import { randomBytes } from 'node:crypto';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { trackTemporary, untrackTemporary } from '../temporaries.js';

// The registry lives in src/temporaries.ts so image/ need not depend on export/.
export { removePendingSync, trackTemporary, untrackTemporary } from '../temporaries.js';

/**
 * Writes `dest` through a temporary sibling and renames it into place, so a
 * reader never sees a half-written file or directory. On failure the
 * temporary is removed and `dest` is untouched.
 */
export async function writeAtomically(dest: string, write: (temporary: string) => Promise<void>): Promise<void> {
  const temporary = path.join(path.dirname(dest), `.${path.basename(dest)}.lapin-tmp-${randomBytes(6).toString('hex')}`);
  trackTemporary(temporary);
  try {
    await write(temporary);
    await replace(temporary, dest);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  } finally {
    untrackTemporary(temporary);
  }
}

/** Renames over a file, or swaps out an existing directory (rename cannot replace a non-empty one). */
async function replace(temporary: string, dest: string): Promise<void> {
  try {
    await rename(temporary, dest);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR') throw error;
    const old = `${temporary}.old`;
    await rename(dest, old);
    try {
      await rename(temporary, dest);
    } catch (swapError) {
      // Put the destination back as it was; `old` is the user's, never a temporary to delete.
      await rename(old, dest).catch(() => undefined);
      throw swapError;
    }
    // Only now is `old` ours to remove, including by an interrupt.
    trackTemporary(old);
    await rm(old, { recursive: true, force: true });
    untrackTemporary(old);
  }
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
