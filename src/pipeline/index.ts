/**
 * The index stage: the images built for each platform, in the build's blob
 * store, seen through the read interfaces every other image offers
 * (source/types.ts's ImageSource, source/image-index.ts's ImageIndex). The
 * index sinks hand it to imagetools/create.ts, which writes or pushes an
 * index over any such source, so a built index and `imagetools create`
 * share one writer.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import type { Image } from '../image/image.js';
import type { ImageIndex, IndexEntry } from '../source/image-index.js';
import type { ImageSource, SourceDescriptor, SourceImageConfig, SourceManifest } from '../source/types.js';
import { formatPlatform } from './platform.js';

/** Several platforms' images, built. */
export interface BuiltIndex {
  images: readonly Image[];
  /** "linux/amd64"... in build order. */
  platforms: readonly string[];
}

function blobOf(image: Image, descriptor: { digest: string }): Readable {
  return createReadStream(image.store.pathOf(descriptor.digest));
}

async function jsonBlob<T>(image: Image, digest: string, what: string): Promise<{ bytes: Buffer; value: T }> {
  const bytes = await readFile(image.store.pathOf(digest));
  try {
    return { bytes, value: JSON.parse(bytes.toString('utf8')) as T };
  } catch {
    throw new LapinError(`internal: the ${what} lapin wrote (${digest}) is not JSON`);
  }
}

/** A built image as inspect and run read any image. */
export function builtImageSource(image: Image, name: string): ImageSource {
  return {
    name,
    transport: 'oci',
    manifest: async () => ({ manifest: (await jsonBlob<SourceManifest>(image, image.manifest.digest, 'manifest')).value, digest: image.manifest.digest }),
    config: async () => ({ config: (await jsonBlob<SourceImageConfig>(image, image.config.digest, 'config')).value, digest: image.config.digest }),
    blob: async (descriptor: SourceDescriptor) => blobOf(image, descriptor),
    close: async () => undefined,
  };
}

/** The built images as one ImageIndex source (what imagetools create reads from a layout or registry). */
export async function builtIndexSource(built: BuiltIndex, name: string): Promise<ImageIndex> {
  const entries: IndexEntry[] = [];
  for (const image of built.images) {
    const { bytes, value } = await jsonBlob<SourceManifest>(image, image.manifest.digest, 'manifest');
    const entryName = `${name} (${formatPlatform(image.platform)})`;
    entries.push({
      platform: image.platform,
      descriptor: { mediaType: image.manifest.mediaType, digest: image.manifest.digest, size: image.manifest.size },
      manifestBytes: bytes,
      manifest: value,
      blob: async (descriptor: SourceDescriptor) => blobOf(image, descriptor),
      open: async () => builtImageSource(image, entryName),
    });
  }
  return { name, transport: 'oci', entries, close: async () => undefined };
}
