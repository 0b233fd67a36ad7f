/**
 * A registry reference read as an index (image-index.ts): the index and
 * each platform's manifest and config are fetched and checked against their
 * digests; layers are pulled (into lapin's cache, through pull.ts) only when
 * something reads them, so an index made on the same registry moves no layer.
 */
import { sha256Digest } from '../image/digest.js';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import { bytesStream } from '../image/model.js';
import { repositoryScope } from '../registry/auth.js';
import { MANIFEST_SIZE_LIMIT, RegistryStatusError, readLimitedBody, type RegistryClient } from '../registry/client.js';
import type { PulledImage } from '../registry/pull.js';
import { formatPlatform, manifestNotAnImage, notAnImage, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, type ImageIndex, type IndexEntry, type LeftOut, type OpenIndexOptions, type Platform } from './image-index.js';
import { parseJson, SourceError } from './open.js';
import type { SourceDescriptor, SourceImageConfig, SourceManifest } from './types.js';

const ACCEPT = [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST].join(', ');


interface Fetched {
  bytes: Buffer;
  digest: string;
  mediaType: string;
}

/** Manifests and configs one registry source may make lapin hold, in bytes, across its nested indexes. */
export const REGISTRY_INDEX_BYTES_LIMIT = 64 * 1024 * 1024;

async function fetchManifest(client: RegistryClient, path: string, tagOrDigest: string, display: string, expectedSize?: number): Promise<Fetched> {
  // A tag holds no colon: anything with one is a digest, and lapin checks only sha256 ones, so it refuses the rest rather than trusting them unchecked.
  if (tagOrDigest.includes(':') && !/^sha256:[0-9a-f]{64}$/.test(tagOrDigest)) {
    throw new SourceError(`${display}: ${tagOrDigest.slice(0, 80)} is not a sha256 digest, and lapin checks manifests only against sha256 digests; refusing it`, 'name the image by tag, or by its sha256 digest');
  }
  const response = await client.request({
    method: 'GET',
    target: `/v2/${path}/manifests/${tagOrDigest}`,
    headers: { accept: ACCEPT },
    scopes: [repositoryScope(path, 'pull')],
    accept: [200],
    what: `fetching the manifest of ${display}`,
  });
  const bytes = await readLimitedBody(response, MANIFEST_SIZE_LIMIT, `the manifest of ${display}`);
  const digest = sha256Digest(bytes);
  const expected = tagOrDigest.startsWith('sha256:') ? tagOrDigest : response.headers.get('docker-content-digest');
  if (expected && expected !== digest) throw new SourceError(`the manifest of ${display} does not match its digest (expected ${expected}, got ${digest}); refusing it`);
  if (expectedSize !== undefined && expectedSize !== bytes.length) throw new SourceError(`the manifest of ${display} is ${bytes.length} bytes, not the ${expectedSize} its index records; refusing it`);
  const declared = (parseJson<{ mediaType?: string }>(bytes, `the manifest of ${display}`).mediaType ?? response.headers.get('content-type') ?? '').split(';')[0] as string;
  return { bytes, digest, mediaType: declared };
}

async function fetchSmallBlob(client: RegistryClient, path: string, descriptor: SourceDescriptor, display: string): Promise<Buffer> {
  if (descriptor.size > MANIFEST_SIZE_LIMIT) throw new SourceError(`${display}: config ${descriptor.digest} is ${descriptor.size} bytes, too large for a config`);
  const response = await client.request({
    method: 'GET',
    target: `/v2/${path}/blobs/${descriptor.digest}`,
    scopes: [repositoryScope(path, 'pull')],
    accept: [200],
    what: `fetching the config of ${display}`,
  });
  const bytes = await readLimitedBody(response, MANIFEST_SIZE_LIMIT, `the config of ${display}`);
  if (sha256Digest(bytes) !== descriptor.digest) throw new SourceError(`the config ${descriptor.digest} of ${display} does not match its digest; refusing it`);
  if (typeof descriptor.size === 'number' && bytes.length !== descriptor.size) throw new SourceError(`the config ${descriptor.digest} of ${display} is ${bytes.length} bytes, not the ${descriptor.size} its manifest records; refusing it`);
  return bytes;
}

/** As for a layout (image-index.ts): indexes nested deeper than this are refused. */
const MAX_INDEX_DEPTH = 4;
/** The most manifests (nested indexes and images) one registry source may make lapin fetch. */
export const MAX_REGISTRY_MANIFESTS = 512;

interface Walk {
  display: string;
  fetch: (descriptor: SourceDescriptor) => Promise<Fetched>;
  listed: Array<{ descriptor?: SourceDescriptor; fetched: Fetched }>;
  leftOut: LeftOut[];
  /** Every digest fetched so far (the top index's too): each is fetched once, however often it is listed. */
  fetched: Set<string>;
}

/**
 * The image manifests under an index's descriptors, in order, following
 * nested indexes as the layout reader does: at most MAX_INDEX_DEPTH deep,
 * each digest fetched once (an index listing one child thousands of times
 * at each level is read once per level), and no more than
 * MAX_REGISTRY_MANIFESTS fetched in all, refused before the fetch that
 * would pass it.
 */
async function collectRegistryIndex(descriptors: readonly SourceDescriptor[], walk: Walk, depth: number): Promise<void> {
  const { display } = walk;
  const children = [...new Map(descriptors.map((m) => [m.digest, m])).values()];
  const toFetch: SourceDescriptor[] = [];
  for (const child of children) {
    const what = notAnImage(child);
    if (what !== undefined) {
      if (!walk.leftOut.some((l) => l.digest === child.digest)) walk.leftOut.push({ digest: child.digest, what });
      continue;
    }
    if (!walk.fetched.has(child.digest)) toFetch.push(child);
  }
  if (toFetch.length > 0 && depth > MAX_INDEX_DEPTH) throw new SourceError(`${display}: image indexes nested deeper than ${MAX_INDEX_DEPTH}`);
  if (walk.fetched.size + toFetch.length > MAX_REGISTRY_MANIFESTS) {
    throw new SourceError(`${display}: the index and the indexes in it list more than ${MAX_REGISTRY_MANIFESTS} manifests; lapin reads at most ${MAX_REGISTRY_MANIFESTS}`, 'make an index of the platforms wanted: lapin imagetools create');
  }
  for (const child of toFetch) {
    if (walk.fetched.has(child.digest)) continue;
    walk.fetched.add(child.digest);
    const fetched = await walk.fetch(child);
    if (child.mediaType === MEDIA_OCI_INDEX || child.mediaType === MEDIA_DOCKER_LIST) {
      const nested = parseJson<{ manifests?: unknown } | null>(fetched.bytes, `the manifest of ${display} (${child.digest})`);
      if (typeof nested !== 'object' || nested === null || !Array.isArray(nested.manifests) || nested.manifests.some((m: unknown) => typeof m !== 'object' || m === null || typeof (m as SourceDescriptor).digest !== 'string')) {
        throw new SourceError(`${display}: ${child.digest} is listed as an index but is not one`);
      }
      await collectRegistryIndex(nested.manifests as SourceDescriptor[], walk, depth + 1);
    } else walk.listed.push({ descriptor: child, fetched });
  }
}

export async function openRegistryIndex(name: string, reference: string, options: OpenIndexOptions): Promise<ImageIndex> {
  const [{ parsePullReference, pullImage }, { clientFor }, { openRegistrySource }] = await Promise.all([import('../registry/pull.js'), import('../registry/push.js'), import('./registry.js')]);
  let parsed;
  try {
    parsed = parsePullReference(reference);
  } catch (error) {
    throw new SourceError((error as Error).message, 'use HOST/NAME[:TAG][@DIGEST]');
  }
  const { domain, path, display } = parsed;
  const client = clientFor(domain, options.registry ?? {});
  const wrap = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      if (error instanceof SourceError) throw error;
      if (error instanceof RegistryStatusError && error.status === 404) throw new SourceError(`${display} was not found in ${domain}`, 'check the name and tag');
      throw new SourceError((error as Error).message, error instanceof LapinError ? error.hint : undefined);
    }
  };
  return wrap(async () => {
    const top = await fetchManifest(client, path, parsed.digest ?? parsed.tag, display);
    const document = parseJson<{ manifests?: SourceDescriptor[]; annotations?: Record<string, string> } | null>(top.bytes, `the manifest of ${display}`);
    if (typeof document !== 'object' || document === null) throw new SourceError(`the manifest of ${display} is not a JSON object`);
    if (document.manifests !== undefined && (!Array.isArray(document.manifests) || document.manifests.some((m) => typeof m !== 'object' || m === null || typeof m.digest !== 'string'))) {
      throw new SourceError(`${display}: the index lists something that is not a descriptor`);
    }
    const isIndex = Array.isArray(document.manifests);
    const listed: Array<{ descriptor?: SourceDescriptor; fetched: Fetched }> = [];
    const leftOut: LeftOut[] = [];
    // Every manifest and config read is kept until the index is made: a budget in bytes, as well as in manifests.
    let held = top.bytes.length;
    const hold = (size: number): void => {
      held += size;
      if (held > REGISTRY_INDEX_BYTES_LIMIT) throw new SourceError(`${display}: the manifests and configs of the index and the indexes in it are more than ${REGISTRY_INDEX_BYTES_LIMIT / (1024 * 1024)} MiB; lapin reads at most that much`, 'make an index of the platforms wanted: lapin imagetools create');
    };
    if (isIndex) {
      const fetchChild = async (child: SourceDescriptor): Promise<Fetched> => {
        if (typeof child.size !== 'number' || !Number.isSafeInteger(child.size) || child.size < 0) throw new SourceError(`${display}: the index lists ${String(child.digest).slice(0, 80)} without a valid size`);
        hold(child.size);
        return fetchManifest(client, path, child.digest, `${display} (${child.digest})`, child.size).catch((error: unknown) => {
          // Not "NAME was not found": the index is there, one of its images is not (a registry's garbage collection, say).
          if (error instanceof RegistryStatusError && error.status === 404) throw new SourceError(`${display}: the index lists ${child.digest}, which ${domain} does not have`, 'push that image again, or make the index again without it');
          throw error;
        });
      };
      await collectRegistryIndex(document.manifests ?? [], { display, fetch: fetchChild, listed, leftOut, fetched: new Set([top.digest]) }, 1);
    } else listed.push({ fetched: top });

    const entries: IndexEntry[] = [];
    for (const { descriptor, fetched } of listed) {
      const manifest = parseJson<SourceManifest | null>(fetched.bytes, `the manifest of ${display}`);
      if (typeof manifest !== 'object' || manifest === null || typeof manifest.config?.digest !== 'string' || !Array.isArray(manifest.layers)) throw new SourceError(`${display}: ${fetched.digest} is not an image manifest`);
      const artifact = isIndex ? manifestNotAnImage(manifest) : undefined;
      if (artifact !== undefined) {
        leftOut.push({ digest: fetched.digest, what: artifact });
        continue;
      }
      if (typeof manifest.config.size === 'number') hold(manifest.config.size);
      const configBytes = await fetchSmallBlob(client, path, manifest.config, display);
      if (typeof manifest.config.size !== 'number') hold(configBytes.length);
      const config = parseJson<(SourceImageConfig & { variant?: string }) | null>(configBytes, `the config of ${display}`);
      if (typeof config !== 'object' || config === null) throw new SourceError(`the config of ${display} is not a JSON object`);
      const os = descriptor?.platform?.os ?? config.os;
      const architecture = descriptor?.platform?.architecture ?? config.architecture;
      if (!os || !architecture) throw new SourceError(`${display}: image ${fetched.digest} says neither in its index entry nor in its config which platform it is for`);
      const variant = descriptor?.platform?.variant ?? config.variant;
      const platform: Platform = { os, architecture, ...(variant ? { variant } : {}) };
      const pinned = `${domain}/${path}@${fetched.digest}`;
      let pulled: Promise<PulledImage> | undefined;
      const pull = (): Promise<PulledImage> => (pulled ??= pullImage(pinned, { ...options.registry, architecture, policy: 'missing', ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}) }));
      entries.push({
        platform,
        descriptor: { mediaType: fetched.mediaType || MEDIA_OCI_MANIFEST, digest: fetched.digest, size: fetched.bytes.length, platform },
        manifestBytes: fetched.bytes,
        manifest,
        repository: { domain, path },
        blob: async (d) => {
          if (d.digest === manifest.config.digest) return bytesStream(configBytes);
          const layer = (await wrap(pull)).layers.find((l) => l.digest === d.digest);
          if (!layer) throw new SourceError(`${display}: the image has no layer ${d.digest}`);
          return createReadStream(layer.file) as Readable;
        },
        open: () => openRegistrySource(isIndex ? `${name} (${formatPlatform(platform)})` : name, pinned, options),
      });
    }
    return { name, transport: 'docker' as const, ...(isIndex ? { index: { digest: top.digest, mediaType: top.mediaType || MEDIA_OCI_INDEX, ...(document.annotations ? { annotations: document.annotations } : {}) } } : {}), entries, ...(leftOut.length > 0 ? { leftOut } : {}), close: async () => {} };
  });
}

/** Whether the registry serves an index under REFERENCE (one manifest request). */
export async function registryNamesIndex(reference: string, options: OpenIndexOptions): Promise<boolean> {
  const [{ parsePullReference }, { clientFor }] = await Promise.all([import('../registry/pull.js'), import('../registry/push.js')]);
  const parsed = parsePullReference(reference);
  const top = await fetchManifest(clientFor(parsed.domain, options.registry ?? {}), parsed.path, parsed.digest ?? parsed.tag, parsed.display);
  return Array.isArray(parseJson<{ manifests?: unknown } | null>(top.bytes, parsed.display)?.manifests);
}
