/**
 * The read side of an image index: every platform's manifest of a source,
 * not only the host's (open.ts picks one image; this lists them all).
 * Layouts (oci:DIR), OCI archives (oci-archive:) and registries (docker://)
 * hold indexes; a docker archive never does. Each entry keeps its manifest's
 * exact bytes and digest, so an index made from it re-uploads nothing.
 */
import { sha256Digest } from '../image/digest.js';
import type { ImageIndexModel, IndexEntry, LeftOut } from '../image/model.js';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { RegistryOptions } from '../registry/client.js';
import { archiveReader, directoryReader, openSource, parseJson, parseSource, SourceError, type FileReader, type OpenSourceOptions } from './open.js';
import { TarFile } from './tar-file.js';
import type { ImageSource, SourceDescriptor, SourceImageConfig, SourceManifest, SourceTransport } from './types.js';

export const MEDIA_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const MEDIA_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const INDEX_TYPES = new Set([MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST]);
const MANIFEST_TYPES = new Set([MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST]);
/** Manifests and configs are small; anything larger is not one. */
const JSON_LIMIT = 4 * 1024 * 1024;

// The platform table and --platform syntax live in pipeline/platform.ts; re-exported for this module's readers.
import { formatPlatform, parsePlatform, pickPlatform, samePlatform, type Platform } from '../pipeline/platform.js';
export { formatPlatform, parsePlatform, pickPlatform, samePlatform, type Platform };
export type { IndexEntry, LeftOut };

/** What a source holds: an index of platforms, or a single image (then `index` is absent and there is one entry). */
export interface ImageIndex extends ImageIndexModel {
  readonly name: string;
  readonly transport: SourceTransport;
  close(): Promise<void>;
}

const EMPTY_CONFIG = 'application/vnd.oci.empty.v1+json';

/**
 * Why an index entry is no image to run, or undefined when it may be one. BuildKit's attestations
 * are unknown/unknown and annotated; OCI 1.1 artifacts carry artifactType; a media type lapin does
 * not know is left alone, as the image-spec asks of indexes ("MUST NOT error").
 */
export function notAnImage(descriptor: SourceDescriptor): string | undefined {
  if (descriptor.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || descriptor.platform?.architecture === 'unknown') return 'an attestation';
  const artifactType = (descriptor as { artifactType?: unknown }).artifactType;
  if (typeof artifactType === 'string') return `an artifact (${artifactType})`;
  if (!MANIFEST_TYPES.has(descriptor.mediaType) && !INDEX_TYPES.has(descriptor.mediaType)) return `of type ${descriptor.mediaType}, not an image`;
  return undefined;
}

/** The same of a manifest once read: an artifact says so in artifactType or with the empty config. */
export function manifestNotAnImage(manifest: SourceManifest): string | undefined {
  const artifactType = (manifest as { artifactType?: unknown }).artifactType;
  if (typeof artifactType === 'string') return `an artifact (${artifactType})`;
  if (manifest.config.mediaType === EMPTY_CONFIG) return 'an artifact (empty config)';
  return undefined;
}


function blobName(digest: string): string {
  const match = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!match) throw new SourceError(`the image names a blob by ${JSON.stringify(digest)}, which is not a digest (ALGORITHM:HEX, e.g. sha256:<64 hex digits>)`, 'the source is damaged or hostile; use another image');
  return `blobs/sha256/${match[1]}`;
}

function checkedManifest(bytes: Buffer, where: string): SourceManifest {
  const manifest = parseJson<SourceManifest>(bytes, `${where}: manifest`);
  if (typeof manifest !== 'object' || manifest === null || typeof manifest.config?.digest !== 'string' || !Array.isArray(manifest.layers)) {
    throw new SourceError(`${where}: the manifest has no config or layers`);
  }
  return manifest;
}

interface IndexDocument {
  mediaType?: string;
  manifests?: SourceDescriptor[];
  annotations?: Record<string, string>;
}

/** An index document whose manifests are descriptors with a digest and a media type, or a SourceError. */
function parseIndex(bytes: Buffer, what: string): IndexDocument {
  const document = parseJson<unknown>(bytes, what);
  if (typeof document !== 'object' || document === null || Array.isArray(document)) throw new SourceError(`${what} is not an image index`);
  const manifests = (document as IndexDocument).manifests;
  if (manifests !== undefined && (!Array.isArray(manifests) || manifests.some((m) => typeof m !== 'object' || m === null || typeof m.digest !== 'string' || typeof m.mediaType !== 'string'))) {
    throw new SourceError(`${what}: manifests is not a list of descriptors`);
  }
  return document as IndexDocument;
}

/** Reads the content-addressed files of a layout or archive. */
interface Blobs {
  read(name: string): Promise<Buffer>;
  stream(name: string): Promise<Readable>;
}

async function verified(blobs: Blobs, descriptor: SourceDescriptor, where: string): Promise<Buffer> {
  if (descriptor.size > JSON_LIMIT) throw new SourceError(`${where}: ${descriptor.digest} is ${descriptor.size} bytes, too large for a manifest or config`);
  const bytes = await blobs.read(blobName(descriptor.digest));
  if (sha256Digest(bytes) !== descriptor.digest) throw new SourceError(`${where}: ${descriptor.digest} does not match its content; the layout is damaged`);
  return bytes;
}

/** The platform an entry is for: its descriptor's, else its config's (buildx and kraft read the config too). */
function platformOf(descriptor: SourceDescriptor, config: SourceImageConfig & { variant?: string }, where: string): Platform {
  const os = descriptor.platform?.os ?? config.os;
  const architecture = descriptor.platform?.architecture ?? config.architecture;
  if (!os || !architecture) throw new SourceError(`${where}: image ${descriptor.digest} says neither in its index entry nor in its config which platform it is for`);
  const variant = descriptor.platform?.variant ?? config.variant;
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/** An image of a layout read by manifest digest (open.ts selects by tag only). */
class LayoutManifestSource implements ImageSource {
  constructor(
    readonly name: string,
    readonly transport: SourceTransport,
    private readonly blobs: Blobs,
    private readonly entry: { manifest: SourceManifest; digest: string; bytes: Buffer },
    private readonly where: string,
  ) {}

  async manifest(): Promise<{ manifest: SourceManifest; digest: string; bytes: Buffer }> {
    return this.entry;
  }

  async config(): Promise<{ config: SourceImageConfig; digest: string; bytes: Buffer }> {
    const descriptor = this.entry.manifest.config;
    const bytes = await verified(this.blobs, descriptor, this.where);
    return { config: parseJson<SourceImageConfig>(bytes, `${this.where}: config`), digest: descriptor.digest, bytes };
  }

  blob(descriptor: SourceDescriptor): Promise<Readable> {
    return this.blobs.stream(blobName(descriptor.digest));
  }

  async close(): Promise<void> {}
}

/**
 * Lists the image manifests under a descriptor, following nested indexes; attestations (platform unknown) are left out.
 * Each nested index is read once (`seen`): an index listing one child index thousands of times at each level would
 * otherwise be read thousands-to-the-depth times.
 */
async function collect(blobs: Blobs, descriptor: SourceDescriptor, where: string, out: SourceDescriptor[], seen: Set<string>, leftOut: LeftOut[], depth = 0): Promise<void> {
  if (depth > 4) throw new SourceError(`${where}: image indexes nested deeper than 4`);
  const what = notAnImage(descriptor);
  if (what !== undefined) {
    if (!leftOut.some((l) => l.digest === descriptor.digest)) leftOut.push({ digest: descriptor.digest, what });
    return;
  }
  if (MANIFEST_TYPES.has(descriptor.mediaType)) {
    out.push(descriptor);
    return;
  }
  if (seen.has(descriptor.digest)) return;
  seen.add(descriptor.digest);
  const nested = parseIndex(await verified(blobs, descriptor, where), `${where}: index ${descriptor.digest}`);
  for (const child of nested.manifests ?? []) await collect(blobs, child, where, out, seen, leftOut, depth + 1);
}

function matchesTag(descriptor: SourceDescriptor, tag: string): boolean {
  const ref = descriptor.annotations?.['org.opencontainers.image.ref.name'];
  const name = descriptor.annotations?.['io.containerd.image.name'];
  return ref === tag || name === tag || (name !== undefined && name.endsWith(`:${tag}`));
}

/** What index.json names: one nested index, several untagged platform images (index.json is the index), or one image. */
function selectLayout(indexJson: Buffer, where: string, tag: string | undefined): { distinct: SourceDescriptor[]; named?: { digest: string; mediaType: string; annotations?: Record<string, string> } } {
  const top = parseIndex(indexJson, `${where}: index.json`);
  let listed = top.manifests ?? [];
  if (tag !== undefined) {
    listed = listed.filter((m) => matchesTag(m, tag));
    if (listed.length === 0) throw new SourceError(`${where}: no image tagged ${JSON.stringify(tag)}`);
  }
  const distinct = [...new Map(listed.map((m) => [m.digest, m])).values()];
  if (distinct.length === 0) throw new SourceError(`${where}: index.json lists no images`);
  const single = distinct.length === 1 ? (distinct[0] as SourceDescriptor) : undefined;
  // One nested index: what buildx, lapin and skopeo copy --all write.
  if (single && INDEX_TYPES.has(single.mediaType)) return { distinct, named: { digest: single.digest, mediaType: single.mediaType, ...(single.annotations ? { annotations: single.annotations } : {}) } };
  if (single) return { distinct };
  const platformImages = distinct.every((m) => MANIFEST_TYPES.has(m.mediaType) && m.platform?.architecture !== undefined && m.annotations?.['org.opencontainers.image.ref.name'] === undefined);
  if (!platformImages) throw new SourceError(`${where} holds ${distinct.length} images; say which`, 'add :TAG');
  return { distinct, named: { digest: sha256Digest(indexJson), mediaType: top.mediaType ?? MEDIA_OCI_INDEX } };
}

async function openLayoutIndex(text: string, transport: 'oci' | 'oci-archive', blobs: Blobs, where: string, tag: string | undefined, close: () => Promise<void>): Promise<ImageIndex> {
  const { distinct, named } = selectLayout(await blobs.read('index.json'), where, tag);
  const manifests: SourceDescriptor[] = [];
  const seen = new Set<string>();
  const leftOut: LeftOut[] = [];
  for (const descriptor of distinct) await collect(blobs, descriptor, where, manifests, seen, leftOut);
  const entries: IndexEntry[] = [];
  for (const descriptor of [...new Map(manifests.map((m) => [m.digest, m])).values()]) {
    const manifestBytes = await verified(blobs, descriptor, where);
    const manifest = checkedManifest(manifestBytes, where);
    const artifact = manifestNotAnImage(manifest);
    if (artifact !== undefined) {
      leftOut.push({ digest: descriptor.digest, what: artifact });
      continue;
    }
    const config = parseJson<(SourceImageConfig & { variant?: string }) | null>(await verified(blobs, manifest.config, where), `${where}: config`);
    if (typeof config !== 'object' || config === null) throw new SourceError(`${where}: the config ${manifest.config.digest} is not a JSON object`);
    const platform = platformOf(descriptor, config, where);
    const entryName = named ? `${text} (${formatPlatform(platform)})` : text;
    entries.push({
      platform,
      descriptor: { mediaType: descriptor.mediaType, digest: descriptor.digest, size: manifestBytes.length, platform },
      manifestBytes,
      manifest,
      blob: (d) => blobs.stream(blobName(d.digest)),
      open: async () => new LayoutManifestSource(entryName, transport, blobs, { manifest, digest: descriptor.digest, bytes: manifestBytes }, where),
    });
  }
  return { name: text, transport, ...(named ? { index: named } : {}), entries, ...(leftOut.length > 0 ? { leftOut } : {}), close };
}

/** A layout's files through the readers every local source uses: inside the layout, regular, bounded. */
function blobsOf(reader: FileReader): Blobs {
  return { read: (name) => reader.read(name, JSON_LIMIT), stream: async (name) => (await reader.stream(name)).stream };
}

const directoryBlobs = (dir: string): Blobs => blobsOf(directoryReader(dir));
const archiveBlobs = (archive: TarFile): Blobs => blobsOf(archiveReader(archive));

/** How a registry source is reached (as for inspect). */
export interface OpenIndexOptions extends OpenSourceOptions {
  registry?: RegistryOptions;
}

/**
 * Opens SOURCE (skopeo's syntax) as an index: every platform it holds.
 * A source that is a single image gives one entry and no `index`.
 */
export async function openImageIndex(text: string, options: OpenIndexOptions = {}): Promise<ImageIndex> {
  const spec = await parseSource(text);
  switch (spec.transport) {
    case 'oci': {
      const info = await stat(spec.target).catch(() => undefined);
      if (!info?.isDirectory()) throw new SourceError(`${spec.target}: no such directory`);
      return openLayoutIndex(text, 'oci', directoryBlobs(spec.target), spec.target, spec.tag, async () => {});
    }
    case 'oci-archive': {
      let archive: TarFile;
      try {
        archive = await TarFile.open(spec.target);
      } catch (error) {
        throw new SourceError(`${spec.target}: ${(error as Error).message}`);
      }
      return openLayoutIndex(text, 'oci-archive', archiveBlobs(archive), spec.target, spec.tag, async () => {});
    }
    case 'docker': {
      const { openRegistryIndex } = await import('./registry-index.js');
      return openRegistryIndex(text, spec.target, options);
    }
    case 'docker-archive':
    case 'docker-daemon': {
      // docker save keeps no manifest digests and no index: one image, read as inspect reads it.
      const source = await openSource(text, options);
      try {
        const { config } = await source.config();
        const { manifest } = await source.manifest();
        const platform = { os: config.os ?? 'linux', architecture: config.architecture ?? 'amd64' };
        const entry: IndexEntry = {
          platform,
          descriptor: { mediaType: MEDIA_DOCKER_MANIFEST, digest: '', size: 0, platform },
          manifestBytes: Buffer.alloc(0),
          manifest,
          blob: (d) => source.blob(d),
          open: async () => source,
        };
        return { name: text, transport: spec.transport, entries: [entry], close: () => source.close() };
      } catch (error) {
        await source.close();
        throw error;
      }
    }
  }
}

/**
 * Whether SOURCE names an index, reading as little as possible (index.json;
 * a registry's top manifest). False when it cannot tell: whoever opens the
 * source next reports why.
 */
export async function namesIndex(text: string, options: OpenIndexOptions = {}): Promise<boolean> {
  try {
    const spec = await parseSource(text);
    if (spec.transport === 'oci') return selectLayout(await directoryBlobs(spec.target).read('index.json'), spec.target, spec.tag).named !== undefined;
    if (spec.transport === 'oci-archive') return selectLayout(await archiveBlobs(await TarFile.open(spec.target)).read('index.json'), spec.target, spec.tag).named !== undefined;
    if (spec.transport === 'docker') {
      const { registryNamesIndex } = await import('./registry-index.js');
      return await registryNamesIndex(spec.target, options);
    }
    return false;
  } catch {
    return false;
  }
}

/** A stream of a buffer (for blobs already read). */
/**
 * Opens the image of SOURCE for PLATFORM ("linux/arm64"): the index entry for
 * it, or the source's only image when that is for the platform.
 */
export async function openPlatformSource(text: string, platformText: string, options: OpenIndexOptions = {}): Promise<ImageSource> {
  const wanted = parsePlatform(platformText);
  if (!wanted) throw new SourceError(`--platform ${JSON.stringify(platformText)} is not OS/ARCH[/VARIANT]`, 'e.g. linux/arm64 or linux/amd64');
  const index = await openImageIndex(text, options);
  const entry = pickPlatform(index.entries, wanted);
  if (!entry) {
    await index.close();
    const offered = index.entries.map((e) => formatPlatform(e.platform)).join(', ');
    throw new SourceError(`${text} has no image for ${formatPlatform(wanted)} (it has ${offered})`, 'pick one of its platforms');
  }
  // Layout and registry indexes hold nothing open; a docker archive's entry is the source itself, closed by its user.
  return entry.open();
}
