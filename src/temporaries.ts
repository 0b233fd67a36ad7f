import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync, rmSync } from 'node:fs';
import { lstat, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Paths to remove if the process is interrupted before they are renamed into place. */
const pending = new Set<string>();

/** Removes every temporary path still pending; safe to call from a signal handler. */
export function removePendingSync(): void {
  for (const p of pending) rmSync(p, { recursive: true, force: true });
  pending.clear();
}

/** Outputs this process has finished, as a user would name them: what an interrupt leaves behind. */
const completed: string[] = [];

export function recordCompletedOutput(description: string): void {
  completed.push(description);
}

export function completedOutputs(): readonly string[] {
  return completed;
}

export function trackTemporary(p: string): void {
  pending.add(p);
}

export function untrackTemporary(p: string): void {
  pending.delete(p);
}

/*
 * Ownership of temporaries. A signal removes what is pending, but kill -9
 * or a power loss leaves temporaries behind. Each temporary's name carries
 * its owner: the pid namespace, the pid and the process start time (clock
 * ticks since boot, /proc/PID/stat field 22), so a later build can tell a
 * temporary of a live build (keep it) from one of a dead process, or of a
 * pid since reused (remove it). A temporary from another pid namespace (a
 * container sharing the directory) cannot be judged by its pid: it is
 * removed only once it is old. Names: PREFIX-NS-PID-START-RANDOM, e.g.
 * lapin-4026531836-812-99120-5fa0c1d2e3b4.
 */

/** The start time of a process, or undefined without /proc or when it is not running. */
function startTimeOf(pid: number | 'self'): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** The inode number of this process's pid namespace, "0" without /proc. */
function pidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? '0';
  } catch {
    return '0';
  }
}

/** Kept with the pid it was made for: the start-up snapshot carries module state from the process that made it. */
let ownTag: { pid: number; tag: string } | undefined;

/** "NS-PID-START" of this process ("0-PID-0" without /proc). */
export function ownerTag(): string {
  if (ownTag?.pid !== process.pid) ownTag = { pid: process.pid, tag: `${pidNamespace()}-${process.pid}-${startTimeOf('self') ?? '0'}` };
  return ownTag.tag;
}

/** A fresh name for a temporary: `${prefix}PID-START-RANDOM`. */
export function temporaryName(prefix: string): string {
  return `${prefix}${ownerTag()}-${randomBytes(6).toString('hex')}`;
}

/** Whether the process that made a temporary may still be running: same namespace, pid and start time, or a namespace lapin cannot see into. */
function ownerAlive(namespace: string, pid: number, start: string, modifiedMs: number): boolean {
  if (namespace !== pidNamespace()) return Date.now() - modifiedMs < FOREIGN_MAX_AGE_MS;
  if (pid === process.pid && start === startTimeOf('self')) return true;
  const current = startTimeOf(pid);
  if (current !== undefined) return current === start;
  if (start !== '0') return false;
  // No /proc: the pid alone, as lock files do.
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Temporaries of lapin before names carried their owner: removed once they are this old. */
const UNOWNED_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** Temporaries of another pid namespace: no build runs this long. */
const FOREIGN_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** The names lapin gives temporaries, with the owner's pid and start time captured. */
const OWNED = [
  /^lapin-(\d+)-(\d+)-(\d+)-[0-9a-f]{12}$/, // build staging, in TMPDIR
  /^lapin-load-(\d+)-(\d+)-(\d+)-[0-9a-f]{12}$/, // --load=containerd archive, in TMPDIR
  /^\.incoming-(\d+)-(\d+)-(\d+)-[0-9a-f]{12}$/, // blob being written, in a blob store
  /^\..+\.lapin-tmp-(\d+)-(\d+)-(\d+)-[0-9a-f]{12}(\.old)?$/, // output beside its destination
  /^.+\.tmp-(\d+)-(\d+)-(\d+)-[0-9a-f]{12}$/, // small file (cache entry, record) being written
];
const UNOWNED = [
  /^lapin-\d+-[0-9a-f]{12}$/,
  /^lapin-load-[A-Za-z0-9]{6}$/,
  /^\.incoming-[0-9a-f]{16}$/,
  /^\..+\.lapin-tmp-[0-9a-f]{12}(\.old)?$/,
  /^.+\.json\.tmp-[0-9a-f]{12}$/,
  /^[0-9a-f]{64}\.(incoming-)?[0-9a-f]{12}$/, // registry pull cache blob or ref
  /^.+\.json\.lapin-[0-9a-f]{12}$/, // registry credentials (config.json)
];

/**
 * Removes, in each directory, the temporaries lapin left there that no live
 * process owns. Best effort: a directory that cannot be read is skipped.
 * Returns the paths removed.
 */
export async function sweepStaleTemporaries(dirs: Iterable<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const dir of new Set(dirs)) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const full = path.join(dir, name);
      if (pending.has(full)) continue;
      let stale = false;
      const owned = OWNED.map((pattern) => pattern.exec(name)).find((match) => match !== null);
      if (owned) {
        const info = await lstat(full).catch(() => undefined);
        stale = info !== undefined && !ownerAlive(owned[1] as string, Number(owned[2]), owned[3] as string, info.mtimeMs);
      } else if (UNOWNED.some((pattern) => pattern.test(name))) {
        const info = await lstat(full).catch(() => undefined);
        stale = info !== undefined && Date.now() - info.mtimeMs > UNOWNED_MAX_AGE_MS;
      }
      if (!stale) continue;
      try {
        await rm(full, { recursive: true, force: true });
        removed.push(full);
      } catch {
        // Another build may be sweeping it too, or it is not ours to remove.
      }
    }
  }
  return removed;
}

/** Flushes a file (or directory) to the disk: what a rename publishes must survive a power loss. */
export async function fsyncPath(p: string | Buffer): Promise<void> {
  const handle = await open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Flushes a directory's entries (a rename into it); filesystems that cannot sync a directory are let be. */
export async function fsyncDirectory(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EBADF') throw error;
  }
}

/**
 * Writes a small file through a temporary sibling, flushed, and a rename,
 * so readers (other builds sharing the cache) never see it half-written and
 * a power loss never leaves it empty.
 */
export async function writeFileAtomically(target: string, data: string | Uint8Array): Promise<void> {
  const temp = path.join(path.dirname(target), temporaryName(`${path.basename(target)}.tmp-`));
  trackTemporary(temp);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
    await fsyncDirectory(path.dirname(target));
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  } finally {
    untrackTemporary(temp);
  }
}
