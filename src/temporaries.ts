import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';

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
 * Writes a small file through a temporary sibling and a rename, so readers
 * (other builds sharing the cache) never see it half-written.
 */
export async function writeFileAtomically(target: string, data: string | Uint8Array): Promise<void> {
  const temp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  trackTemporary(temp);
  try {
    await writeFile(temp, data);
    await rename(temp, target);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  } finally {
    untrackTemporary(temp);
  }
}
