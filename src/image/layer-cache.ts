import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { writeFileAtomically } from '../temporaries.js';
import { BlobStore, type BlobTarget, type IncomingBlob } from './blob-store.js';
import { GZIP_CHUNK_SIZE, GZIP_MEM_LEVEL } from './compress/parallel-gzip.js';
import { zstdArguments } from './compress/zstd.js';
import { digestHex } from './digest.js';
import { effectiveLevel, writeLayer, type LayerBlob, type LayerOptions } from './layer.js';
import { MemberCache } from './member-cache.js';
import { fsPath } from './names.js';
import { READ_SIZE, tarChunks } from './tar-writer.js';
import type { FsNode } from './tree.js';
import { makeDirectories } from '../mkdirp.js';
import { readRegularFile, fileStamp } from '../regular-file.js';

/**
 * Bump whenever lapin would write different layer bytes for the same
 * inputs (tar headers, gzip block size, argument lists...), so that a cache
 * never serves what a fresh build would not write.
 */
const CACHE_FORMAT = 1;

/** Where the cache lives: $LAPIN_CACHE_DIR, else $XDG_CACHE_HOME/lapin, else ~/.cache/lapin. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LAPIN_CACHE_DIR) return path.resolve(env.LAPIN_CACHE_DIR);
  const base = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(base, 'lapin');
}

interface CacheEntry {
  mediaType: string;
  digest: string;
  size: number;
  diffId: string;
  /** The blob file's device, inode, size, mtime and ctime when it was last hashed to `digest`. */
  verified?: string;
}

/** An entry is a line of JSON. */
const ENTRY_MAX_BYTES = 64 * 1024;

/** A blob file's stamp: any write to it or replacement of it changes the ctime, which cannot be set back. */
async function blobStamp(file: string): Promise<string | undefined> {
  const s = await lstat(file, { bigint: true }).catch(() => undefined);
  return s?.isFile() ? fileStamp(s) : undefined;
}

/** Kept with its pid: the start-up snapshot carries module state from the process that made it. */
let zstdVersion: { pid: number; version: Promise<string> } | undefined;

/** zstd's output may change between its versions, so its version is part of the key. */
function zstdVersionOnce(): Promise<string> {
  if (zstdVersion?.pid !== process.pid) {
    const version = new Promise<string>((resolve) => {
      execFile(process.env.LAPIN_ZSTD ?? 'zstd', ['-V'], (error, stdout) => resolve(error ? 'unknown' : stdout.trim()));
    });
    zstdVersion = { pid: process.pid, version };
  }
  return zstdVersion.version;
}

/**
 * A content-addressed cache of layer blobs keyed on the layer's inputs:
 * every node's header fields and, for files on disk, the path, size,
 * mtime and ctime (ns), inode and device, plus the compression, its level
 * and the format. A hit reuses the compressed blob and its digests without
 * reading the files. Entries and blobs are written temp + rename, so
 * concurrent builds never see partial ones.
 */
export class LayerCache {
  readonly blobs: BlobStore;
  /** gzip members by the hash of their input block, for layers that miss (src/image/member-cache.ts). */
  readonly members: MemberCache;
  private readonly entries: string;
  private readonly onWarning: (message: string) => void;
  /** Why the cache was turned off during this build (a full or unwritable disk), if it was. */
  private offReason: string | undefined;

  constructor(readonly dir: string, options: { onWarning?: (message: string) => void } = {}) {
    const root = path.join(dir, `v${CACHE_FORMAT}`);
    this.blobs = new BlobStore(path.join(root, 'blobs'), true);
    this.entries = path.join(root, 'layers');
    this.onWarning = options.onWarning ?? (() => undefined);
    this.members = new MemberCache(path.join(root, 'members'), { onWarning: this.onWarning });
  }

  /** Directories holding the cache's small records: layer entries, the archives written (src/export/archive.ts), gzip members. */
  recordDirs(): string[] {
    return [this.entries, path.join(this.dir, 'v1', 'archives'), this.members.dir];
  }

  get enabled(): boolean {
    return this.offReason === undefined;
  }

  /** Builds on without the cache after it failed to take a write, and says so once. */
  turnOff(error: unknown): void {
    if (this.offReason !== undefined) return;
    this.offReason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    this.onWarning(`layer cache off: cannot write to ${this.dir} (${describeCacheError(error)}); building without it`);
  }

  /** Says a cached blob was not what its entry promised, and that it is rebuilt. */
  warn(message: string): void {
    this.onWarning(message);
  }

  /**
   * The key of a layer. Files under `contentKeyed` directories (lapin's own
   * staging files, new on every build) are keyed on their content instead;
   * `contentHashes` remembers those hashes by path, so asking again (the
   * check after writing) does not read the files a second time.
   */
  async key(nodes: readonly FsNode[], options: LayerOptions, contentKeyed: readonly string[] = [], contentHashes = new Map<string, string>()): Promise<string> {
    const hash = createHash('sha256');
    hash.update(JSON.stringify(await formatFields(options)));
    for (const node of nodes) {
      const fields: unknown[] = [node.type, node.path, node.mode, node.uid, node.gid, node.mtime];
      if (node.type === 'symlink' || node.type === 'hardlink') fields.push(node.target);
      if (node.type === 'file') {
        fields.push(node.size);
        if (node.source.kind === 'bytes') {
          fields.push('bytes', createHash('sha256').update(node.source.data).digest('hex'));
        } else if (node.source.kind === 'layer') {
          // A base image's file: its place in a layer blob that is named by its digest (or, built elsewhere, stat'ed like a path).
          const { blob, offset, size } = node.source.member;
          const s = await stat(blob, { bigint: true });
          fields.push('layer', path.resolve(blob), offset, size, String(s.size), String(s.mtimeNs), String(s.ino), String(s.dev));
        } else if (isUnder(node.source.path, contentKeyed)) {
          const file = node.source.path;
          let content = contentHashes.get(file);
          if (content === undefined) {
            content = await contentHash(file);
            contentHashes.set(file, content);
          }
          fields.push('content', content);
        } else {
          const file = path.resolve(node.source.path);
          const s = await stat(fsPath(file), { bigint: true });
          fields.push('path', file, String(s.size), String(s.mtimeNs), String(s.ctimeNs), String(s.ino), String(s.dev));
        }
      }
      hash.update(JSON.stringify(fields));
      hash.update('\n');
    }
    return hash.digest('hex');
  }

  /**
   * Whether a layer is keyed on its tar (`tarKey`): every file in it is
   * lapin's own (under `contentKeyed`) or bytes in memory, so reading the
   * whole tar costs what hashing those files for `key` would.
   */
  static tarKeyed(nodes: readonly FsNode[], contentKeyed: readonly string[]): boolean {
    let staged = false;
    for (const node of nodes) {
      if (node.type !== 'file' || node.source.kind === 'bytes') continue;
      if (node.source.kind !== 'path' || !isUnder(node.source.path, contentKeyed)) return false;
      staged = true;
    }
    return staged;
  }

  /**
   * The key of a layer of lapin's own files: the format and the sha256 of
   * the layer's tar, which is its diff_id. The tar holds every node's
   * header and bytes, so the same diff_id and format mean the same layer
   * bytes; and the diff_id, computed here, is not computed again while the
   * layer is written (the image is hashed once instead of twice).
   */
  async tarKey(nodes: readonly FsNode[], options: LayerOptions): Promise<{ key: string; diffId: string }> {
    const tar = createHash('sha256');
    for await (const chunk of tarChunks(nodes)) tar.update(chunk);
    const diffId = `sha256:${tar.digest('hex')}`;
    const key = createHash('sha256').update(JSON.stringify(['tar', ...(await formatFields(options))])).update(diffId).digest('hex');
    return { key, diffId };
  }

  /** The cached layer for a key, when its entry and blob are both there. */
  async lookup(key: string): Promise<(LayerBlob & { path: string }) | undefined> {
    let entry: CacheEntry;
    try {
      // Not a regular file (a FIFO would block the build) or too big for an entry: a miss.
      entry = JSON.parse((await readRegularFile(this.entryPath(key), ENTRY_MAX_BYTES)).toString('utf8')) as CacheEntry;
      digestHex(entry.digest);
      digestHex(entry.diffId);
    } catch {
      return undefined;
    }
    const file = this.blobs.pathOf(entry.digest);
    const hit = { mediaType: entry.mediaType, digest: entry.digest, size: entry.size, diffId: entry.diffId, path: file };
    // Untouched since it was hashed (one lstat): trusted. Otherwise hashed again before use.
    const stamp = await blobStamp(file);
    if (stamp !== undefined && stamp === entry.verified && entry.verified.split(':')[2] === String(entry.size)) return hit;
    const problem = await verifyBlob(file, entry.digest, entry.size);
    if (problem === 'missing') return undefined;
    if (problem !== undefined) {
      this.warn(`cached layer ${entry.digest} ${problem}; building the layer again`);
      return undefined;
    }
    await this.record(key, hit).catch(() => undefined);
    return hit;
  }

  async record(key: string, layer: LayerBlob): Promise<void> {
    const verified = await blobStamp(this.blobs.pathOf(layer.digest));
    const entry: CacheEntry = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: layer.diffId, ...(verified ? { verified } : {}) };
    await makeDirectories(this.entries);
    const target = this.entryPath(key);
    await writeFileAtomically(target, JSON.stringify(entry));
  }

  private entryPath(key: string): string {
    return path.join(this.entries, `${key}.json`);
  }
}

/** Everything besides the tar that decides a layer's bytes. */
async function formatFields(options: LayerOptions): Promise<unknown[]> {
  const level = effectiveLevel(options.compression, options.level);
  const format: unknown[] = [CACHE_FORMAT, options.compression, level];
  if (options.compression === 'gzip') format.push(GZIP_CHUNK_SIZE, GZIP_MEM_LEVEL, process.versions.zlib);
  if (options.compression === 'zstd') format.push(zstdArguments(level), await zstdVersionOnce());
  return format;
}

function isUnder(file: string, dirs: readonly string[]): boolean {
  return dirs.some((dir) => file.startsWith(`${dir}${path.sep}`));
}

/** The stamps of a layer's files on disk, to tell that none changed between two reads. */
async function fileStamps(nodes: readonly FsNode[]): Promise<string> {
  const stamps: string[] = [];
  for (const node of nodes) {
    if (node.type === 'file' && node.source.kind === 'path') stamps.push((await blobStamp(node.source.path)) ?? 'gone');
  }
  return stamps.join('\n');
}

/**
 * A staging file's content key: its sha256, read in 1 MiB blocks into one
 * buffer. Streamed: a 1.2 GB block image is never held whole (readFile of
 * it was).
 */
async function contentHash(file: string): Promise<string> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(READ_SIZE);
    while (true) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

/**
 * Why the blob at `file` is not the blob `digest` of `size` bytes, or
 * undefined when it is: opened without following a symlink, a regular
 * file of that size, hashed to that digest. Run when the blob changed since
 * it was last hashed (its stamp), so a rebuild with nothing changed stays
 * one lstat per layer.
 */
async function verifyBlob(file: string, digest: string, size: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    return code === 'ELOOP' ? 'is a symlink' : `cannot be read (${code ?? (error as Error).message})`;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return 'is not a regular file';
    if (info.size !== size) return `is ${info.size} bytes, not ${size}`;
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(Math.min(READ_SIZE, Math.max(size, 1)));
    let read = 0;
    while (true) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      read += bytesRead;
      hash.update(buffer.subarray(0, bytesRead));
    }
    if (read !== size) return `changed size while it was read`;
    if (`sha256:${hash.digest('hex')}` !== digest) return 'does not match its digest';
    return undefined;
  } finally {
    await handle.close();
  }
}

/** Errors of the cache's disk, after which a build goes on without the cache. */
const CACHE_DISK_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EACCES', 'EPERM', 'EROFS', 'EIO', 'EFBIG']);

function isCacheDiskError(error: unknown): boolean {
  return !(error instanceof LapinError) && CACHE_DISK_ERRORS.has((error as NodeJS.ErrnoException).code ?? '');
}

function describeCacheError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return 'no space left';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EROFS') return 'read-only file system';
  if (code === 'ENOTDIR' || code === 'EEXIST') return 'a file is in the way';
  return code ?? (error as Error).message;
}

export interface CachedLayerResult extends LayerBlob {
  cached: boolean;
}

/** Reuses the cache's gzip members when the layer itself misses. */
function withMembers(options: LayerOptions, cache: LayerCache): LayerOptions {
  return options.compression === 'gzip' ? { ...options, memberCache: cache.members } : options;
}

/**
 * One blob written to two places at once: the output and the cache. When
 * the cache's disk fails (full, unwritable), the cache copy is dropped and
 * the output goes on; `cacheFailed` then says so.
 */
function tee(first: IncomingBlob, second: IncomingBlob, cache: LayerCache): IncomingBlob & { cacheFailed(): boolean } {
  let failed = false;
  const dropCache = async (error: unknown): Promise<void> => {
    if (!isCacheDiskError(error)) throw error;
    failed = true;
    cache.turnOff(error);
    await second.abort().catch(() => undefined);
  };
  return {
    write: async (data) => {
      await Promise.all([first.write(data), failed ? undefined : second.write(data).catch(dropCache)]);
    },
    commit: async (digest) => {
      await first.commit(digest);
      if (!failed) await second.commit(digest).catch(dropCache);
      return undefined;
    },
    abort: async () => {
      await Promise.all([first.abort(), failed ? undefined : second.abort()]);
    },
    cacheFailed: () => failed,
  };
}

/**
 * Writes a layer into `target`, or with a cache, takes it from the cache
 * or writes it into the cache and records it. A staging store serves
 * cached files uncopied; an output archive gets the bytes as they are
 * made, while the same bytes go to the cache. A layer whose files changed
 * while it was written is not recorded.
 */
export async function writeLayerCached(
  nodes: readonly FsNode[],
  target: BlobTarget,
  options: LayerOptions,
  cache: LayerCache | undefined,
  contentKeyed: readonly string[] = [],
): Promise<CachedLayerResult> {
  if (!cache?.enabled) return { ...withoutPath(await writeLayer(nodes, target, options)), cached: false };
  // lapin's own staging files do not change once made: hashed once, for both keys below.
  const contentHashes = new Map<string, string>();
  const byTar = LayerCache.tarKeyed(nodes, contentKeyed);
  const stamps = byTar ? await fileStamps(nodes) : '';
  let key: string;
  if (byTar) {
    const tar = await cache.tarKey(nodes, options);
    key = tar.key;
    // Written below from the same files: their tar hashes to this again.
    options = { ...options, diffId: tar.diffId };
  } else {
    key = await cache.key(nodes, options, contentKeyed, contentHashes);
  }
  const hit = await cache.lookup(key);
  if (hit) {
    await target.addFile(hit.digest, hit.size, hit.path);
    return { ...withoutPath(hit), cached: true };
  }
  let layer: LayerBlob;
  let recordable = true;
  if (target.adoptsFiles) {
    try {
      layer = await writeLayer(nodes, cache.blobs, withMembers(options, cache));
      await target.addFile(layer.digest, layer.size, cache.blobs.pathOf(layer.digest));
    } catch (error) {
      if (!isCacheDiskError(error)) throw error;
      cache.turnOff(error);
      return { ...withoutPath(await writeLayer(nodes, target, options)), cached: false };
    }
  } else {
    const out = await target.incoming();
    const cached = await cache.blobs.incoming().catch(async (error: unknown) => {
      if (isCacheDiskError(error)) {
        cache.turnOff(error);
        return undefined;
      }
      await out.abort();
      throw error;
    });
    if (cached === undefined) return { ...withoutPath(await writeLayer(nodes, out, withMembers(options, cache))), cached: false };
    const both = tee(out, cached, cache);
    layer = await writeLayer(nodes, both, withMembers(options, cache));
    recordable = !both.cacheFailed();
  }
  if (byTar && (await fileStamps(nodes)) !== stamps) {
    // The diff_id was taken from the first read: a file that changed since makes it wrong for these bytes.
    throw new LapinError(`a staging file of layer ${layer.digest} changed while it was written; build again`);
  }
  if (recordable && (byTar || (await cache.key(nodes, options, contentKeyed, contentHashes)) === key)) {
    await cache.record(key, layer).catch((error: unknown) => {
      if (!isCacheDiskError(error)) throw error;
      cache.turnOff(error);
    });
  }
  return { ...withoutPath(layer), cached: false };
}

function withoutPath(layer: LayerBlob & { path?: string }): LayerBlob {
  return { mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: layer.diffId, ...(layer.members ? { members: layer.members } : {}) };
}
