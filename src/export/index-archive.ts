/**
 * The docker `manifest.json` beside an image index in an OCI archive.
 *
 * docker 20.10's `docker load` reads no index.json: it loads every entry of
 * manifest.json and moves each RepoTag to the entry that names it last. So
 * the file lists one image, the one for the machine writing the archive,
 * under every name; other platforms are left out (listed untagged they
 * would be loaded as dangling images of an architecture this host cannot
 * run). An index with no image for this host gets no manifest.json, so
 * that docker load fails (exit 1) instead of loading nothing with exit 0,
 * which is what it does with an empty list. The index stays whole in index.json for the consumers that read it
 * (docs/multi-platform.md has what each one does, test/consumers/index-*).
 */
import { digestHex } from '../image/digest.js';
import { samePlatform, type IndexEntry, type Platform } from '../source/image-index.js';

const GO_ARCHITECTURE: Record<string, string> = { x64: 'amd64', ia32: '386' };

/** This machine's platform as images name it (Go's names): linux/amd64, linux/arm64... */
export function hostPlatform(): Platform {
  return { os: 'linux', architecture: GO_ARCHITECTURE[process.arch] ?? process.arch };
}

/** The entry docker should load: the host's platform, by os and architecture, the host's variant first. */
export function dockerLoadEntry<T extends Pick<IndexEntry, 'platform'>>(entries: readonly T[], host: Platform = hostPlatform()): T | undefined {
  return entries.find((e) => samePlatform(e.platform, host)) ?? entries.find((e) => e.platform.os === host.os && e.platform.architecture === host.architecture);
}

/**
 * docker save's manifest.json for an index: the host platform's image under
 * `names` (fully qualified, as the single-image archive writes them); none
 * when the index has no image for this host.
 */
export function indexDockerManifestJson(entry: Pick<IndexEntry, 'manifest'> | undefined, names: readonly string[]): Buffer | undefined {
  if (!entry) return undefined;
  return Buffer.from(
    JSON.stringify([
      {
        Config: `blobs/sha256/${digestHex(entry.manifest.config.digest)}`,
        RepoTags: names.length > 0 ? names : null,
        Layers: entry.manifest.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
      },
    ]),
  );
}
