/**
 * Block images kept from earlier builds, one per tree shape (extShapeKey in
 * ext.ts), so that a rebuild after a change that keeps every file's size
 * patches the changed files' blocks (ext-patch.ts) instead of running
 * mke2fs, debugfs and e2fsck again over the whole tree.
 *
 * - Where: `v1/blocks/<key>.img` in the cache directory, with
 *   `<key>.json` beside it: the image's stamp (device, inode, size, mtime
 *   and ctime in ns, taken after it was put there) and each regular file's
 *   inode number. An image whose stamp differs is not used: any write to it
 *   or replacement of it changes its ctime.
 * - A build takes an image out of the cache (rename to a name of its own,
 *   then the record is removed and the directory flushed), so no other
 *   build can read or patch it meanwhile and a build killed half-way leaves
 *   nothing trusted; it puts the image back under its key when the build
 *   ends, successful or not (the image itself is whole by then). Two builds
 *   of one shape at once: the second finds no image and runs mke2fs.
 * - The image is written in the cache directory in the first place (not
 *   in TMPDIR), so keeping it costs a rename, not a copy.
 * - Bounded: when a build kept an image, the least recently used (by their
 *   records' mtime) are removed until the kept images' allocated bytes are
 *   at most 90 % of the cap. Cap 4 GiB by default, `LAPIN_BLOCK_CACHE_SIZE`
 *   changes it, `0` keeps none.
 */
import { constants, readFileSync, type BigIntStats } from 'node:fs';
import { lstat, open, readdir, rename, rm, statfs, utimes } from 'node:fs/promises';
import path from 'node:path';
import { makeDirectories } from '../mkdirp.js';
import { fileStamp as stamp, readRegularFile } from '../regular-file.js';
import { fsyncDirectory, fsyncPath, temporaryName, trackTemporary, untrackTemporary, writeFileAtomically } from '../temporaries.js';
import { capFromEnv } from './size.js';

export const BLOCK_CACHE_DEFAULT_BYTES = 4 * 1024 * 1024 * 1024;
const RECORD_FORMAT = 1;
/** A record bigger than this is not ours (an image of a million files is some 50 MB). */
const RECORD_MAX_BYTES = 256 * 1024 * 1024;
const EVICT_TO = 0.9;
/** Room left on the cache's disk beyond the image, for everything else the build and the machine write. */
const ROOM_TO_SPARE = 256n * 1024n * 1024n;

/** This boot's id: an image kept in another boot may have been torn by a crash (it is not flushed), so it is not used. */
function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
  } catch {
    return '';
  }
}

/** The block image cache's directory inside a cache directory. */
export function blockCacheDir(cacheDir: string): string {
  return path.join(cacheDir, 'v1', 'blocks');
}

/** The cap from `LAPIN_BLOCK_CACHE_SIZE`, the default without it; 0 keeps no image. */
export function blockCacheCap(env: NodeJS.ProcessEnv = process.env): number {
  return capFromEnv(env.LAPIN_BLOCK_CACHE_SIZE, BLOCK_CACHE_DEFAULT_BYTES);
}

/** An image this build holds: taken from the cache or newly written, and its regular files' inode numbers. */
export interface HeldImage {
  file: string;
  files: ReadonlyMap<string, number>;
  /** Each context file's device, inode and ctime after the build (ext-patch.ts sourceStamp). */
  sources: ReadonlyMap<string, string>;
}

/** The stamp without the ctime, which the rename that takes an image changes. */
function identity(s: BigIntStats): string {
  return [s.dev, s.ino, s.size, s.mtimeNs].join(':');
}

/** A record as written, or undefined when it is not one of ours. */
function parseRecord(text: string, key: string): { stamp: string; boot: string; files: Map<string, number>; sources: Map<string, string> } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const record = parsed as { format?: unknown; key?: unknown; stamp?: unknown; boot?: unknown; files?: unknown; sources?: unknown };
  if (record.format !== RECORD_FORMAT || record.key !== key || typeof record.stamp !== 'string' || typeof record.boot !== 'string' || !Array.isArray(record.files) || !Array.isArray(record.sources)) return undefined;
  const files = new Map<string, number>();
  for (const item of record.files as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2) return undefined;
    const [file, ino] = item as [unknown, unknown];
    if (typeof file !== 'string' || typeof ino !== 'number' || !Number.isSafeInteger(ino) || ino < 1) return undefined;
    files.set(file, ino);
  }
  const sources = new Map<string, string>();
  for (const item of record.sources as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || typeof item[1] !== 'string') return undefined;
    sources.set(item[0], item[1]);
  }
  return { stamp: record.stamp, boot: record.boot, files, sources };
}

export class BlockImageCache {
  private warned = false;

  constructor(
    readonly dir: string,
    private readonly options: { maxBytes?: number; onWarning?: (message: string) => void } = {},
  ) {}

  get maxBytes(): number {
    return this.options.maxBytes ?? blockCacheCap();
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /** Takes the kept image of `key` for this build, or undefined when there is none or it is not the one recorded. */
  async take(key: string): Promise<HeldImage | undefined> {
    const entry = this.imagePath(key);
    const recordFile = this.recordPath(key);
    const record = await this.readRecord(recordFile, key);
    // Kept in another boot and not flushed then: a crash may have torn it.
    if (!record || (record.boot !== '' && record.boot !== bootId())) return undefined;
    const before = await lstat(entry, { bigint: true }).catch(() => undefined);
    if (!before?.isFile() || stamp(before) !== record.stamp) return undefined;
    const held = path.join(this.dir, temporaryName(`${key}.img.tmp-`));
    trackTemporary(held);
    try {
      await rename(entry, held);
      const after = await lstat(held, { bigint: true });
      if (!after.isFile() || identity(after) !== identity(before)) throw new Error('replaced');
      // Held now: a build in another pid namespace judges this temporary by its age.
      const now = new Date();
      await utimes(held, now, now);
      // No record, no trust: a build killed from here on leaves an image nobody uses.
      await rm(recordFile, { force: true });
      await fsyncDirectory(this.dir);
      return { file: held, files: record.files, sources: record.sources };
    } catch {
      await this.discard(held);
      return undefined;
    }
  }

  /**
   * A path in the cache's directory for an image of up to `bytes` this
   * build writes, or undefined (with one warning) when the directory cannot
   * be made or its file system has less room than that.
   */
  async newImagePath(key: string, bytes: number): Promise<string | undefined> {
    const file = path.join(this.dir, temporaryName(`${key}.img.tmp-`));
    try {
      await makeDirectories(this.dir);
      const room = await statfs(this.dir, { bigint: true });
      if (room.bavail * room.bsize < BigInt(bytes) + ROOM_TO_SPARE) throw Object.assign(new Error('not enough free space'), { code: 'ENOSPC' });
      // Made here, so that a read-only or foreign directory is found before mke2fs runs.
      trackTemporary(file);
      await (await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644)).close();
    } catch (error) {
      await this.discard(file);
      this.cannotKeep((error as NodeJS.ErrnoException).code ?? (error as Error).message);
      return undefined;
    }
    return file;
  }

  /** Puts a held image back under its key, with its record, and keeps the cache under its cap. Never fails a build. */
  async keep(key: string, image: HeldImage): Promise<void> {
    try {
      const entry = this.imagePath(key);
      const boot = bootId();
      // Without a boot id a crash cannot be told from a clean restart: the image is flushed instead.
      if (boot === '') await fsyncPath(image.file);
      const ours = await lstat(image.file, { bigint: true });
      await rename(image.file, entry);
      untrackTemporary(image.file);
      const info = await lstat(entry, { bigint: true });
      // Another build of this shape put its image there since: its record is its own to write.
      if (info.dev !== ours.dev || info.ino !== ours.ino) return;
      const record = { format: RECORD_FORMAT, key, stamp: stamp(info), boot, files: [...image.files], sources: [...image.sources] };
      await writeFileAtomically(this.recordPath(key), JSON.stringify(record));
      await this.evict();
    } catch (error) {
      await this.discard(image.file);
      this.cannotKeep((error as NodeJS.ErrnoException).code ?? (error as Error).message);
    }
  }

  /** Says once that images are not kept in this build, and why. */
  cannotKeep(why: string): void {
    if (this.warned) return;
    this.warned = true;
    this.options.onWarning?.(`block image cache: cannot keep the image in ${this.dir} (${why}); the next build runs mke2fs again`);
  }

  /** Removes a held image. */
  async discard(file: string): Promise<void> {
    await rm(file, { force: true }).catch(() => undefined);
    untrackTemporary(file);
  }

  /** Removes the least recently kept images until those left take at most 90 % of the cap. */
  private async evict(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const kept: Array<{ key: string; bytes: number; used: number }> = [];
    let total = 0;
    for (const name of names) {
      const match = /^([0-9a-f]{64})\.img$/.exec(name);
      if (!match) continue;
      const key = match[1] as string;
      const image = await lstat(path.join(this.dir, name)).catch(() => undefined);
      if (!image?.isFile()) continue;
      const record = await lstat(this.recordPath(key)).catch(() => undefined);
      const bytes = image.blocks * 512;
      kept.push({ key, bytes, used: record?.mtimeMs ?? 0 });
      total += bytes;
    }
    if (total <= this.maxBytes) return;
    kept.sort((a, b) => a.used - b.used);
    for (const image of kept) {
      if (total <= this.maxBytes * EVICT_TO) break;
      await rm(this.recordPath(image.key), { force: true }).catch(() => undefined);
      await rm(this.imagePath(image.key), { force: true }).catch(() => undefined);
      total -= image.bytes;
    }
  }

  /** A FIFO, a symlink or anything bigger than a record is no record. */
  private async readRecord(file: string, key: string): Promise<ReturnType<typeof parseRecord>> {
    const bytes = await readRegularFile(file, RECORD_MAX_BYTES).catch(() => undefined);
    return bytes === undefined ? undefined : parseRecord(bytes.toString('utf8'), key);
  }

  private imagePath(key: string): string {
    return path.join(this.dir, `${key}.img`);
  }

  private recordPath(key: string): string {
    return path.join(this.dir, `${key}.json`);
  }
}
