/**
 * Pushes an image index whose images already exist somewhere (imagetools
 * create, multi-platform builds) through push.ts: each blob once (HEAD,
 * then a cross-repository mount from the image's own repository when it is
 * on the same registry, else streamed from the source and checked against
 * its digest), then each manifest by digest, then the index under each tag.
 */
import type { Readable } from 'node:stream';
import type { SourceDescriptor } from '../source/types.js';
import { pushPlan, type PushBlob, type PushOptions, type PushedName } from './push.js';

/** One image of the index, read from wherever it is. */
export interface IndexPushImage {
  manifest: { mediaType: string; digest: string; bytes: Buffer };
  /** Config and layers. */
  blobs: readonly SourceDescriptor[];
  /** Where the blobs already are ("host", "path"), for a cross-repository mount. */
  repository?: { domain: string; path: string };
  blob(descriptor: SourceDescriptor): Promise<Readable>;
}

export interface IndexPushDocument {
  mediaType: string;
  digest: string;
  bytes: Buffer;
}

export async function pushIndex(images: readonly IndexPushImage[], index: IndexPushDocument, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const blobs = new Map<string, PushBlob>();
  const mountSources = new Map<string, string[]>();
  for (const [digest, places] of options.mountSources ?? []) mountSources.set(digest, [...places]);
  for (const image of images) {
    for (const blob of image.blobs) {
      if (!blobs.has(blob.digest)) blobs.set(blob.digest, { mediaType: blob.mediaType, digest: blob.digest, size: blob.size, bytes: { open: () => image.blob(blob) } });
      if (!image.repository) continue;
      const places = mountSources.get(blob.digest) ?? [];
      const place = `${image.repository.domain}/${image.repository.path}`;
      if (!places.includes(place)) places.push(place);
      mountSources.set(blob.digest, places);
    }
  }
  const document = (d: { mediaType: string; digest: string; bytes: Buffer }) => ({ descriptor: { mediaType: d.mediaType, digest: d.digest, size: d.bytes.length }, bytes: d.bytes });
  return pushPlan({ blobs: [...blobs.values()], manifests: images.map((image) => document(image.manifest)), top: document(index) }, names, { ...options, mountSources });
}
