import { createHash } from 'node:crypto';
import type { BlobTarget, IncomingBlob } from './blob-store.js';
import type { Layer } from './model.js';
import { ParallelGzip } from './compress/parallel-gzip.js';
import { ZSTD_DEFAULT_LEVEL, ZstdProcess } from './compress/zstd.js';
import type { MemberCache, MemberStats } from './member-cache.js';
import { tarChunks } from './tar-writer.js';
import type { FsNode } from './tree.js';

export { tarSize } from './tar-writer.js';

export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_TYPE_LAYER_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
export const MEDIA_TYPE_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

export type Compression = 'gzip' | 'zstd' | 'none';

/**
 * gzip's default level. Level 1 is several times faster than zlib's 6 and
 * costs a few percent in size on kernels and filesystem images
 * (docs/performance.md has the figures).
 */
export const GZIP_DEFAULT_LEVEL = 1;

export interface LayerOptions {
  compression: Compression;
  /** gzip 1-9, zstd 1-19; a default per compression when absent. */
  level?: number;
  /** Blocks compressed at once (gzip); changes speed, never the bytes. */
  concurrency?: number;
  /** Called with the uncompressed bytes written so far. */
  onProgress?: (bytes: number) => void;
  /**
   * gzip members made before from the same 1 MiB blocks, reused instead of
   * compressed (src/image/member-cache.ts). zstd streams through one
   * program, not independent frames, so only gzip reuses members.
   */
  memberCache?: MemberCache;
  /**
   * The tar's sha256, when the caller already hashed the very same tar
   * (the layer cache's key of lapin's own files): it is not hashed again.
   */
  diffId?: string;
}

/** A layer written by lapin (image/model.ts's Layer: its descriptor and diff_id). */
export interface LayerBlob extends Layer {
  /** With a member cache: gzip members reused and compressed. */
  members?: MemberStats;
}

export function layerMediaType(compression: Compression): string {
  return compression === 'gzip' ? MEDIA_TYPE_LAYER_GZIP : compression === 'zstd' ? MEDIA_TYPE_LAYER_ZSTD : MEDIA_TYPE_LAYER_TAR;
}

/** The level a layer is compressed at, defaults applied; 0 for none. */
export function effectiveLevel(compression: Compression, level: number | undefined): number {
  if (compression === 'none') return 0;
  return level ?? (compression === 'gzip' ? GZIP_DEFAULT_LEVEL : ZSTD_DEFAULT_LEVEL);
}

interface Compressor {
  write(data: Buffer): Promise<void>;
  end(): Promise<void>;
  kill?(): void;
}

/**
 * Writes one layer blob in a single pass: tar, sha256 (diff_id), compress
 * (in parallel), sha256 (digest), disk. Files are read once, in large
 * blocks; only a bounded window of blocks is in memory.
 */
export async function writeLayer(nodes: readonly FsNode[], target: BlobTarget | IncomingBlob, options: LayerOptions): Promise<LayerBlob & { path?: string }> {
  const level = effectiveLevel(options.compression, options.level);
  const diff = options.diffId === undefined ? createHash('sha256') : undefined;
  const compressed = options.compression === 'none' ? undefined : createHash('sha256');
  const out = 'incoming' in target ? await target.incoming() : target;
  let size = 0;
  const sink = (data: Buffer): Promise<void> => {
    compressed?.update(data);
    size += data.length;
    return out.write(data);
  };
  let compressor: Compressor;
  let members: MemberStats | undefined;
  if (options.compression === 'gzip') {
    const gzip = new ParallelGzip(
      { level, ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}), ...(options.memberCache ? { members: options.memberCache } : {}) },
      sink,
    );
    if (options.memberCache?.enabled) members = gzip.stats;
    compressor = gzip;
  } else if (options.compression === 'zstd') {
    compressor = new ZstdProcess(level, sink);
  } else {
    compressor = { write: sink, end: async () => {} };
  }
  try {
    let done = 0;
    for await (const chunk of tarChunks(nodes)) {
      diff?.update(chunk);
      done += chunk.length;
      options.onProgress?.(done);
      await compressor.write(chunk);
    }
    await compressor.end();
    const diffId = diff ? `sha256:${diff.digest('hex')}` : (options.diffId ?? '');
    // Uncompressed, the blob is the tar itself: one hash serves both.
    const digest = compressed ? `sha256:${compressed.digest('hex')}` : diffId;
    const path = await out.commit(digest);
    return { mediaType: layerMediaType(options.compression), digest, size, diffId, ...(path !== undefined ? { path } : {}), ...(members ? { members } : {}) };
  } catch (error) {
    compressor.kill?.();
    await out.abort();
    throw error;
  }
}
