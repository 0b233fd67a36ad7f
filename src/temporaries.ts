import { rmSync } from 'node:fs';

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
