/**
 * Compressed gzip members, kept by the hash of the 1 MiB block of tar they
 * were made from. lapin's gzip layers are independent members cut at fixed
 * offsets of the tar (compress/parallel-gzip.ts), so a block whose bytes did
 * not change compresses to the very member it did last time: a rebuild
 * after a one-file change takes every other member from here instead of
 * compressing it again, and the layer's bytes stay what a cold build writes.
 *
 * - Key: sha256 over the member format (level, memLevel, zlib version, the
 *   OS byte, this file's format number) and the block's sha256.
 * - Entry: `<dir>/<key>`, a 40-byte header (magic, then the sha256 of the
 *   member) followed by the member. Read without following a symlink, a
 *   regular file only, and the member hashed against its header before use:
 *   a truncated or corrupt entry is a miss (and is compressed again and
 *   rewritten), never bytes in a layer.
 * - Written temp + rename, not flushed: a torn entry after a power loss
 *   fails its hash and is rewritten, so an fsync per member (880 of them in
 *   a 1.2 GB image) would buy nothing.
 * - Trusted when untouched: `verified.json` in the directory keeps each
 *   entry's stamp (device, inode, size, mtime and ctime, ns) from when its
 *   member last matched its header; an entry whose stamp is unchanged is
 *   not hashed again (any write to or replacement of it changes its ctime,
 *   which cannot be set back). As the layer cache does for its blobs. Of
 *   two builds at once the last to finish writes the index; the other's
 *   entries are then hashed once more.
 * - Bounded: after a build stored members, the oldest entries (by mtime; a
 *   hit touches its entry) are removed until the directory holds at most
 *   90 % of the cap. Default cap 2 GiB; `LAPIN_MEMBER_CACHE_SIZE` (e.g.
 *   `8G`, `0` turns member reuse off) changes it.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { capFromEnv } from '../rootfs/size.js';
import { temporaryName, trackTemporary, untrackTemporary, writeFileAtomically } from '../temporaries.js';
import { makeDirectories } from '../mkdirp.js';
import { fileStamp as stamp } from '../regular-file.js';

/** Bump when an entry's layout, or the way a member is made, changes. */
const MEMBER_FORMAT = 1;
const MAGIC = Buffer.from('lpnmemb1', 'latin1');
const HEADER_BYTES = MAGIC.length + 32;
export const MEMBER_CACHE_DEFAULT_BYTES = 2 * 1024 * 1024 * 1024;
/** A hit touches its entry (for eviction) only when it was last touched longer ago than this: a touch changes the stamp. */
const TOUCH_AFTER_MS = 60 * 60 * 1000;
const VERIFIED_FILE = 'verified.json';
/** An index bigger than this is not ours: ignored (entries are then hashed). */
const VERIFIED_MAX_BYTES = 16 * 1024 * 1024;
/** Eviction leaves this share of the cap, so that the next build does not evict at once. */
const EVICT_TO = 0.9;

/**
 * sha256 of one block, on the main thread. WebCrypto's asynchronous digest
 * (on the thread pool) was tried: its per-call set-up and copy cost more
 * main-thread time (1.2 s for the 3 300 blocks of a one-file rebuild of a
 * 1.2 GB image, in a CPU profile) than hashing the blocks here does.
 */
export function sha256Block(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** The cap from `LAPIN_MEMBER_CACHE_SIZE`, the default without it; 0 turns member reuse off. */
export function memberCacheCap(env: NodeJS.ProcessEnv = process.env): number {
  return capFromEnv(env.LAPIN_MEMBER_CACHE_SIZE, MEMBER_CACHE_DEFAULT_BYTES);
}

export interface MemberStats {
  /** Members taken from the cache. */
  reused: number;
  /** Members compressed (and stored). */
  compressed: number;
  /** Reused members hashed against their header (their entry changed, or was not known, since it was last hashed). */
  checked?: number;
}


export class MemberCache {
  private writable = true;
  private dirMade = false;
  private stored = 0;
  /** Entry stamps from `verified.json`, and whether this build changed them. */
  private verified: Promise<Map<string, string>> | undefined;
  private verifiedChanged = false;

  constructor(
    readonly dir: string,
    private readonly options: { maxBytes?: number; onWarning?: (message: string) => void } = {},
  ) {}

  get maxBytes(): number {
    return this.options.maxBytes ?? memberCacheCap();
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** The key of a block's member for a format (everything besides the block that decides its bytes). */
  static key(format: string, block: Uint8Array): string {
    return createHash('sha256').update(`lapin member ${MEMBER_FORMAT}\n${format}\n`).update(sha256Block(block)).digest('hex');
  }

  /**
   * The member for `block`: the cached one when its entry is sound, else
   * `compress(block)`, stored for next time. Counts into `stats`.
   */
  async member(format: string, block: Buffer, compress: () => Promise<Buffer>, stats: MemberStats): Promise<Buffer> {
    const key = MemberCache.key(format, block);
    const cached = await this.get(key, stats);
    if (cached !== undefined) {
      stats.reused++;
      return cached;
    }
    const member = await compress();
    stats.compressed++;
    await this.put(key, member);
    return member;
  }

  /** A sound entry's member, or undefined (missing, not a regular file, truncated, corrupt). */
  async get(key: string, stats?: MemberStats): Promise<Buffer | undefined> {
    const verified = await this.verifiedStamps();
    let handle;
    try {
      handle = await open(this.entryPath(key), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      return undefined;
    }
    try {
      const info = await handle.stat({ bigint: true });
      // A member of a 1 MiB block is never near this; anything bigger is not one of ours.
      if (!info.isFile() || info.size <= HEADER_BYTES || info.size > 4 * 1024 * 1024) return undefined;
      const data = Buffer.allocUnsafe(Number(info.size));
      let filled = 0;
      while (filled < data.length) {
        const { bytesRead } = await handle.read(data, filled, data.length - filled, filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled !== data.length || !data.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
      const member = data.subarray(HEADER_BYTES);
      let current = stamp(info);
      if (verified.get(key) !== current) {
        if (stats) stats.checked = (stats.checked ?? 0) + 1;
        if (!sha256Block(member).equals(data.subarray(MAGIC.length, HEADER_BYTES))) return undefined;
      }
      // Recently used: eviction removes the oldest first. Not at every hit: each touch changes the stamp.
      const now = Date.now();
      if (now - Number(info.mtimeMs) > TOUCH_AFTER_MS) {
        const touched = await handle
          .utimes(now / 1000, now / 1000)
          .then(() => handle.stat({ bigint: true }))
          .catch(() => undefined);
        current = touched ? stamp(touched) : '';
      }
      this.remember(verified, key, current);
      return member;
    } catch {
      return undefined;
    } finally {
      await handle.close();
    }
  }

  /** Stores a member, temp + rename. A cache disk that cannot take it turns storing off for this process, once, with a warning. */
  async put(key: string, member: Buffer): Promise<void> {
    if (!this.writable) return;
    const target = this.entryPath(key);
    const temp = path.join(this.dir, temporaryName(`${key}.tmp-`));
    trackTemporary(temp);
    try {
      if (!this.dirMade) {
        await makeDirectories(this.dir);
        this.dirMade = true;
      }
      const header = Buffer.concat([MAGIC, sha256Block(member)]);
      const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      try {
        await handle.writev([header, member]);
      } finally {
        await handle.close();
      }
      await rename(temp, target);
      this.stored += member.length + HEADER_BYTES;
      const made = await lstat(target, { bigint: true }).catch(() => undefined);
      if (made) this.remember(await this.verifiedStamps(), key, stamp(made));
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      this.writable = false;
      this.options.onWarning?.(`gzip member cache off: cannot write to ${this.dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); compressing without storing`);
    } finally {
      untrackTemporary(temp);
    }
  }

  /**
   * Keeps the directory under the cap: when this process stored members,
   * removes the least recently used entries down to 90 % of it. Concurrent
   * builds may evict at once; a build that finds an entry gone compresses
   * that block again.
   */
  async evict(): Promise<void> {
    await this.evictEntries();
    await this.saveVerified();
  }

  private async evictEntries(): Promise<void> {
    if (this.stored === 0) return;
    this.stored = 0;
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    const entries: Array<{ file: string; size: number; mtime: number }> = [];
    let total = 0;
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const file = path.join(this.dir, name);
      const info = await lstat(file).catch(() => undefined);
      if (!info?.isFile()) continue;
      entries.push({ file, size: info.size, mtime: info.mtimeMs });
      total += info.size;
    }
    if (total <= this.maxBytes) return;
    entries.sort((a, b) => a.mtime - b.mtime);
    for (const entry of entries) {
      if (total <= this.maxBytes * EVICT_TO) break;
      await unlink(entry.file).catch(() => undefined);
      total -= entry.size;
      if ((await this.verifiedStamps()).delete(path.basename(entry.file))) this.verifiedChanged = true;
    }
  }

  /** The stamps of entries last found sound, read once per build; anything malformed is an empty index. */
  private verifiedStamps(): Promise<Map<string, string>> {
    this.verified ??= (async () => {
      const stamps = new Map<string, string>();
      try {
        const handle = await open(path.join(this.dir, VERIFIED_FILE), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        let text: string;
        try {
          const info = await handle.stat();
          if (!info.isFile() || info.size > VERIFIED_MAX_BYTES) return stamps;
          text = await handle.readFile('utf8');
        } finally {
          await handle.close();
        }
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return stamps;
        for (const [key, value] of Object.entries(parsed)) {
          if (/^[0-9a-f]{64}$/.test(key) && typeof value === 'string') stamps.set(key, value);
        }
      } catch {
        // Missing or unreadable: every entry is hashed before use.
      }
      return stamps;
    })();
    return this.verified;
  }

  private remember(stamps: Map<string, string>, key: string, current: string): void {
    if (current === '') {
      if (stamps.delete(key)) this.verifiedChanged = true;
    } else if (stamps.get(key) !== current) {
      stamps.set(key, current);
      this.verifiedChanged = true;
    }
  }

  /** Writes the stamps back when this build changed them; a failure only costs hashing next time. */
  private async saveVerified(): Promise<void> {
    if (!this.verifiedChanged || !this.verified || !this.writable) return;
    this.verifiedChanged = false;
    const stamps = await this.verified;
    await writeFileAtomically(path.join(this.dir, VERIFIED_FILE), JSON.stringify(Object.fromEntries(stamps))).catch(() => undefined);
  }

  private entryPath(key: string): string {
    return path.join(this.dir, key);
  }
}
