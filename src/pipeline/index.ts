/**
 * The index stage: images (built for each platform, or any others) as one
 * image index of the one model (image/model.ts). The index sinks hand it to
 * imagetools/create.ts, which writes or pushes an index over any source, so
 * a built index and `imagetools create` share one writer.
 */
import { imageParts, namedImage, type ImageIndexModel, type ImageModel, type IndexEntry } from '../image/model.js';
import type { ImageIndex } from '../source/image-index.js';
import type { SourceTransport } from '../source/types.js';
import { formatPlatform } from './platform.js';

/** Images, each read once, as one index; `name` names them in messages ("the build (linux/arm64)"). */
export async function indexOfImages(images: readonly ImageModel[], name: string): Promise<ImageIndexModel> {
  const entries: IndexEntry[] = [];
  for (const image of images) {
    const parts = await imageParts(image, name);
    const { manifest } = await image.manifest();
    const entryName = `${name} (${formatPlatform(parts.platform)})`;
    entries.push({
      platform: parts.platform,
      descriptor: { mediaType: parts.manifest.mediaType, digest: parts.manifest.digest, size: parts.manifest.size },
      manifestBytes: parts.manifestBytes,
      manifest,
      blob: (descriptor) => image.blob(descriptor),
      open: async () => namedImage(image, entryName),
    });
  }
  return { entries };
}

/** An index model as a source imagetools create reads (as it reads a layout or a registry). */
export function indexSource(index: ImageIndexModel, name: string, transport: SourceTransport = 'oci'): ImageIndex {
  return {
    name,
    transport,
    ...(index.index ? { index: index.index } : {}),
    entries: index.entries,
    ...(index.leftOut ? { leftOut: index.leftOut } : {}),
    close: async () => undefined,
  };
}
