/**
 * A pulled image (pull.ts: every blob in the cache, checked against its
 * digest) or a builder's imported one (builder/external.ts) as the one image
 * model (image/model.ts): inspect reads it, and any image sink writes it as
 * it writes a built image.
 */
import { createReadStream } from 'node:fs';
import { LapinError } from '../errors.js';
import { bytesStream, type Descriptor, type ImageModel, type Manifest } from '../image/model.js';
import type { PulledImage } from './pull.js';

export function pulledImage(image: PulledImage): ImageModel {
  const files = new Map(image.layers.map((l) => [l.digest, l.file]));
  const manifest = (): Manifest => {
    if (image.manifestBytes) return JSON.parse(image.manifestBytes.toString('utf8')) as Manifest;
    // A docker save archive's image has no manifest: its descriptors stand in for one.
    const descriptor = (d: Descriptor): Descriptor => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.annotations ? { annotations: d.annotations } : {}) });
    return {
      schemaVersion: 2,
      config: descriptor(image.configDescriptor),
      layers: image.layers.map(descriptor),
      ...(Object.keys(image.manifestAnnotations).length > 0 ? { annotations: image.manifestAnnotations } : {}),
    };
  };
  return {
    manifest: async () => ({ manifest: manifest(), digest: image.manifestDigest, ...(image.manifestBytes ? { bytes: image.manifestBytes } : {}) }),
    config: async () => ({ config: image.config, digest: image.configDescriptor.digest, ...(image.configBytes ? { bytes: image.configBytes } : {}) }),
    blob: async (descriptor) => {
      const file = files.get(descriptor.digest);
      if (file !== undefined) return createReadStream(file);
      if (descriptor.digest === image.configDescriptor.digest && image.configBytes) return bytesStream(image.configBytes);
      throw new LapinError(`${image.reference.display} has no blob ${descriptor.digest}`);
    },
    blobFile: (digest) => files.get(digest),
  };
}
