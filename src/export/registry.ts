import type { Image } from '../image/image.js';
import { pushImage, type PushOptions, type PushedName } from '../registry/push.js';

/** Pushes a built image (config, layers, manifest) to every name. */
export async function pushToRegistry(image: Image, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  return pushImage({ store: image.store, manifest: image.manifest, blobs: [image.config, ...image.layers] }, names, options);
}
