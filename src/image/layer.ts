import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGzip } from 'node:zlib';
import tar from 'tar-stream';

type TarHeader = Parameters<tar.Pack['entry']>[0];
import { LapinError } from '../errors.js';
import type { BlobStore } from './blob-store.js';
import { DigestStream } from './digest.js';
import type { FsNode } from './tree.js';

export const MEDIA_TYPE_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_TYPE_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

export type Compression = 'gzip' | 'none';

export interface LayerOptions {
  compression: Compression;
  /** zlib level 1-9 for gzip. */
  level?: number;
  /** Called with the uncompressed bytes written so far. */
  onProgress?: (bytes: number) => void;
}

/** Uncompressed size of a layer's tar stream, for progress totals. */
export function tarSize(nodes: readonly FsNode[]): number {
  let size = 1024;
  for (const node of nodes) size += 512 + (node.type === 'file' ? Math.ceil(node.size / 512) * 512 : 0);
  return size;
}

export interface LayerBlob {
  mediaType: string;
  digest: string;
  size: number;
  /** Digest of the uncompressed tar, the config's diff_id. */
  diffId: string;
}

/** Tar header for a node; every field is fixed by the node so the bytes are reproducible. */
function headerOf(node: FsNode): TarHeader {
  const common = {
    mode: node.mode,
    uid: node.uid,
    gid: node.gid,
    uname: '',
    gname: '',
    mtime: new Date(node.mtime * 1000),
  };
  switch (node.type) {
    case 'dir':
      return { ...common, name: `${node.path}/`, type: 'directory', size: 0 };
    case 'file':
      return { ...common, name: node.path, type: 'file', size: node.size };
    case 'symlink':
      return { ...common, name: node.path, type: 'symlink', linkname: node.target, size: 0 };
    case 'hardlink':
      return { ...common, name: node.path, type: 'link', linkname: node.target, size: 0 };
  }
}

/** Streams nodes (already in byte order, parents first) into a tar stream. */
export function tarStream(nodes: readonly FsNode[]): Readable {
  const pack = tar.pack();
  const feed = async (): Promise<void> => {
    for (const node of nodes) {
      const header = headerOf(node);
      if (node.type !== 'file') {
        await new Promise<void>((resolve, reject) => pack.entry(header, (error) => (error ? reject(error) : resolve())));
        continue;
      }
      const done = new Promise<void>((resolve, reject) => {
        const entry = pack.entry(header, (error) => (error ? reject(error) : resolve()));
        const input = node.source.kind === 'path' ? createReadStream(node.source.path) : Readable.from([Buffer.from(node.source.data)]);
        pipeline(input, entry).catch((error: unknown) => reject(sizeError(node, error)));
      });
      await done.catch((error: unknown) => {
        throw sizeError(node, error);
      });
    }
    pack.finalize();
  };
  feed().catch((error: unknown) => pack.destroy(error instanceof Error ? error : new Error(String(error))));
  // tar-stream speaks streamx; Node's pipeline wants a Node stream.
  return Readable.from(pack);
}

function sizeError(node: FsNode, error: unknown): Error {
  if (error instanceof LapinError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/size/i.test(message)) {
    return new LapinError(`/${node.path} changed size while lapin was reading it`, { hint: 'rebuild once the file is complete' });
  }
  return error instanceof Error ? error : new Error(message);
}

/**
 * Writes one layer blob in a single pass: tar, hash (diff_id), compress,
 * hash (digest), disk.
 */
export async function writeLayer(nodes: readonly FsNode[], store: BlobStore, options: LayerOptions): Promise<LayerBlob> {
  const diff = new DigestStream(options.onProgress);
  const stages: NodeJS.ReadWriteStream[] = [diff];
  if (options.compression === 'gzip') {
    // Node's gzip header has no name and mtime 0, so the bytes depend only on the input and level.
    stages.push(createGzip({ level: options.level ?? zlibConstants.Z_DEFAULT_COMPRESSION }));
  }
  const blob = await store.putStream(tarStream(nodes), stages);
  return {
    mediaType: options.compression === 'gzip' ? MEDIA_TYPE_LAYER_GZIP : MEDIA_TYPE_LAYER_TAR,
    digest: blob.digest,
    size: blob.size,
    diffId: diff.digest(),
  };
}
