import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { LapinError } from '../errors.js';
import path from 'node:path';

/** Paths to remove if the process is interrupted before they are renamed into place. */
const pending = new Set<string>();

/** Removes every temporary path still pending; safe to call from a signal handler. */
export function removePendingSync(): void {
  for (const p of pending) rmSync(p, { recursive: true, force: true });
  pending.clear();
}

export function trackTemporary(p: string): void {
  pending.add(p);
}

export function untrackTemporary(p: string): void {
  pending.delete(p);
}

/**
 * Writes `dest` through a temporary sibling and renames it into place, so a
 * reader never sees a half-written file or directory. On failure the
 * temporary is removed and `dest` is untouched.
 */
export async function writeAtomically(dest: string, write: (temporary: string) => Promise<void>): Promise<void> {
  const temporary = path.join(path.dirname(dest), `.${path.basename(dest)}.lapin-tmp-${randomBytes(6).toString('hex')}`);
  pending.add(temporary);
  try {
    await write(temporary);
    await replace(temporary, dest);
  } catch (error) {
    await rm(temporary, { recursive: true, force: true });
    throw error;
  } finally {
    pending.delete(temporary);
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
    pending.add(old);
    await rm(old, { recursive: true, force: true });
    pending.delete(old);
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
