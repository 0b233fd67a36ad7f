import { imageParts, type ImageModel } from '../image/model.js';
import { pushPlan, type PushOptions, type PushedName } from '../registry/push.js';

/** Pushes an image (config, layers, manifest) to every name: a built one from its store, another from wherever it is. */
export async function pushToRegistry(model: ImageModel, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const image = await imageParts(model, 'the image');
  const blobs = [image.config, ...image.layers].map((blob) => ({ mediaType: blob.mediaType, digest: blob.digest, size: blob.size, bytes: image.bytesOf(blob.digest) }));
  return pushPlan({ blobs, manifests: [], top: { descriptor: image.manifest, bytes: image.manifestBytes } }, names, options);
}
