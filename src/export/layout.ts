import { digestHex } from '../image/digest.js';
import { MEDIA_TYPE_INDEX, type Descriptor, type ImageParts } from '../image/model.js';
import { familiarName, parseReference } from '../image/reference.js';

export const OCI_LAYOUT_FILE = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));

/** index.json: one descriptor per name, carrying the names containerd and skopeo look for. */
export function indexJson(image: ImageParts, names: readonly string[] = []): Buffer {
  const descriptor = (annotations?: Record<string, string>): Descriptor => ({
    mediaType: image.manifest.mediaType,
    digest: image.manifest.digest,
    size: image.manifest.size,
    ...(annotations ? { annotations } : {}),
    platform: image.platform,
  });
  const manifests =
    names.length === 0
      ? [descriptor()]
      : names.map((name) =>
          descriptor({
            'io.containerd.image.name': name,
            'org.opencontainers.image.ref.name': parseReference(name).tag,
          }),
        );
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_INDEX, manifests }));
}

/** Every blob an image needs, config first, as paths inside a layout. */
export function blobPaths(image: ImageParts): Array<{ digest: string; size: number; layoutPath: string }> {
  const all = [image.manifest, image.config, ...image.layers];
  const seen = new Set<string>();
  const result: Array<{ digest: string; size: number; layoutPath: string }> = [];
  for (const blob of all) {
    if (seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    result.push({ digest: blob.digest, size: blob.size, layoutPath: `blobs/sha256/${digestHex(blob.digest)}` });
  }
  return result;
}

/** docker save's manifest.json, pointing into the OCI layout's blobs. */
export function dockerManifestJson(image: ImageParts, names: readonly string[] = []): Buffer {
  const entry = {
    Config: `blobs/sha256/${digestHex(image.config.digest)}`,
    // Fully qualified: podman reads this file for multi-name archives and would prefix short names with localhost/.
    RepoTags: names.length > 0 ? names : null,
    Layers: image.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
  };
  return Buffer.from(JSON.stringify([entry]));
}

/** The legacy `repositories` file: repository -> tag -> top layer id. */
export function dockerRepositoriesJson(image: ImageParts, names: readonly string[] = []): Buffer {
  const top = image.layers.at(-1);
  const repositories: Record<string, Record<string, string>> = {};
  if (top) {
    for (const name of names) {
      const ref = parseReference(name);
      const repo = familiarName(ref).slice(0, -(ref.tag.length + 1));
      (repositories[repo] ??= {})[ref.tag] = digestHex(top.diffId);
    }
  }
  return Buffer.from(JSON.stringify(repositories));
}
