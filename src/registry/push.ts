import { open, readFile, type FileHandle } from 'node:fs/promises';
import { LapinError } from '../errors.js';
import { formatBytes } from '../human.js';
import type { BlobStore } from '../image/blob-store.js';
import { parseReference } from '../image/reference.js';
import { repositoryScope } from './auth.js';
import { NetworkError, RegistryClient, RegistryStatusError, type RegistryOptions } from './client.js';
import { mapLimit } from './pool.js';
import { DEFAULT_RETRY, backoffDelay, sleep } from './retry.js';

/** A blob as a manifest lists it. */
export interface BlobDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** What a push sends: blobs in a store, and a manifest whose bytes are in the same store. */
export interface PushSource {
  store: BlobStore;
  manifest: BlobDescriptor;
  /** Config and layers, every blob the manifest references. */
  blobs: readonly BlobDescriptor[];
}

export type PushEvent =
  | { kind: 'step'; message: string }
  | { kind: 'progress'; id: string; message: string; done: number; total: number };

export interface PushOptions extends RegistryOptions {
  /** Blobs uploaded at once per repository. */
  concurrency?: number;
  /** Blobs up to this size go in one PUT; larger ones in chunks. */
  monolithicLimit?: number;
  /**
   * Larger blobs go as one streamed PATCH, unless this chunk size is set
   * (raised to the registry's OCI-Chunk-Min-Length) or the registry caps
   * chunks with OCI-Chunk-Max-Length.
   */
  chunkSize?: number;
  /** Chunk size once an upload has been cut; DEFAULT_RESUME_CHUNK_SIZE by default. */
  resumeChunkSize?: number;
  /** "host/repository"s that already hold a blob (a pulled base image), for cross-repository mounts. */
  mountSources?: ReadonlyMap<string, readonly string[]>;
  /** Clients by host, shared with pulls so tokens and schemes are learned once. */
  clients?: Map<string, RegistryClient>;
  onEvent?: (event: PushEvent) => void;
}

export interface PushedName {
  name: string;
  digest: string;
}

export const DEFAULT_MONOLITHIC_LIMIT = 16 * 1024 * 1024;
/** Chunks of a blob whose upload was cut once: distribution drops a cut PATCH's session, but keeps finished chunks. */
export const DEFAULT_RESUME_CHUNK_SIZE = 8 * 1024 * 1024;

/** docker.io names are served by registry-1.docker.io. */
export function apiHost(domain: string): string {
  return domain === 'docker.io' ? 'registry-1.docker.io' : domain;
}

export function clientFor(domain: string, options: PushOptions): RegistryClient {
  const host = apiHost(domain);
  const clients = options.clients ?? new Map<string, RegistryClient>();
  let client = clients.get(host);
  if (!client) {
    client = new RegistryClient(host, options);
    clients.set(host, client);
  }
  return client;
}

function short(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

/** Why an upload session can no longer be used and the blob has to start over. */
class RestartBlob extends Error {}

/**
 * Pushes an image to every name: blobs once per repository (HEAD first,
 * then a cross-repository mount when another repository of the registry has
 * the blob, then a monolithic or chunked upload), then the manifest with its
 * exact media type and bytes for each tag.
 */
export async function pushImage(source: PushSource, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const clients = options.clients ?? new Map<string, RegistryClient>();
  const shared: PushOptions = { ...options, clients };
  const emit = (event: PushEvent): void => options.onEvent?.(event);
  const manifestBytes = await readFile(source.store.pathOf(source.manifest.digest));
  // Where each blob is known to live, by host; grows as repositories are pushed.
  const holders = new Map<string, string[]>();
  for (const [digest, places] of options.mountSources ?? []) holders.set(digest, [...places]);

  const byRepository = new Map<string, { domain: string; path: string; tags: string[]; names: string[] }>();
  for (const name of names) {
    const reference = parseReference(name);
    const key = `${reference.domain}/${reference.path}`;
    const entry = byRepository.get(key) ?? { domain: reference.domain, path: reference.path, tags: [], names: [] };
    entry.tags.push(reference.tag);
    entry.names.push(name);
    byRepository.set(key, entry);
  }

  const pushed: PushedName[] = [];
  for (const [repositoryKey, target] of byRepository) {
    const client = clientFor(target.domain, shared);
    const display = `${target.domain}/${target.path}`;
    await mapLimit(source.blobs, options.concurrency ?? 3, async (blob) => {
      const candidates = (holders.get(blob.digest) ?? []).filter((place) => place !== repositoryKey && place.startsWith(`${target.domain}/`));
      await pushBlob(client, target.path, blob, source.store, candidates.map((place) => place.slice(target.domain.length + 1)), shared, display, emit);
      const places = holders.get(blob.digest) ?? [];
      if (!places.includes(repositoryKey)) places.push(repositoryKey);
      holders.set(blob.digest, places);
    });
    for (const [index, tag] of target.tags.entries()) {
      await putManifest(client, target.path, tag, source.manifest, manifestBytes, emit, display);
      pushed.push({ name: target.names[index] as string, digest: source.manifest.digest });
    }
  }
  return pushed;
}

async function putManifest(
  client: RegistryClient,
  repository: string,
  tag: string,
  manifest: BlobDescriptor,
  bytes: Buffer,
  emit: (event: PushEvent) => void,
  display: string,
): Promise<void> {
  const scopes = [repositoryScope(repository, 'pull,push')];
  const head = await client.request({
    method: 'HEAD',
    target: `/v2/${repository}/manifests/${tag}`,
    headers: { accept: manifest.mediaType },
    scopes,
    accept: [200, 404],
    what: `checking ${display}:${tag}`,
  });
  await head.body?.cancel().catch(() => undefined);
  if (head.status === 200 && head.headers.get('docker-content-digest') === manifest.digest) {
    emit({ kind: 'step', message: `${display}:${tag} already points at ${manifest.digest}` });
    return;
  }
  const response = await client.request({
    method: 'PUT',
    target: `/v2/${repository}/manifests/${tag}`,
    headers: { 'content-type': manifest.mediaType },
    body: () => bytes,
    scopes,
    accept: [200, 201],
    what: `pushing the manifest of ${display}:${tag}`,
  });
  await response.body?.cancel().catch(() => undefined);
  const echoed = response.headers.get('docker-content-digest');
  if (echoed && echoed !== manifest.digest) {
    throw new LapinError(`${client.host} stored the manifest of ${display}:${tag} as ${echoed}, not ${manifest.digest}`, {
      hint: 'the registry rewrote the manifest; its digest no longer matches what was built',
    });
  }
  emit({ kind: 'step', message: `pushed ${display}:${tag} (manifest ${manifest.digest})` });
}

async function pushBlob(
  client: RegistryClient,
  repository: string,
  blob: BlobDescriptor,
  store: BlobStore,
  mountFrom: string[],
  options: PushOptions,
  display: string,
  emit: (event: PushEvent) => void,
): Promise<void> {
  const scopes = [repositoryScope(repository, 'pull,push')];
  const label = `blob ${short(blob.digest)}`;
  const head = await client.request({
    method: 'HEAD',
    target: `/v2/${repository}/blobs/${blob.digest}`,
    scopes,
    accept: [200, 404],
    what: `checking ${label} in ${display}`,
  });
  await head.body?.cancel().catch(() => undefined);
  if (head.status === 200) {
    emit({ kind: 'step', message: `${label} already in ${display}` });
    return;
  }

  let location: string | undefined;
  let bounds = { min: 0, max: 0 };
  for (const from of mountFrom) {
    const response = await client.request({
      method: 'POST',
      target: `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(blob.digest)}&from=${encodeURIComponent(from)}`,
      scopes: [...scopes, repositoryScope(from, 'pull')],
      accept: [201, 202],
      what: `mounting ${label} into ${display}`,
    });
    await response.body?.cancel().catch(() => undefined);
    if (response.status === 201) {
      emit({ kind: 'step', message: `${label} mounted into ${display} from ${from}` });
      return;
    }
    // 202: the registry did not mount, but opened an upload we can use.
    location = await absoluteLocation(client, response);
    bounds = chunkBounds(response);
    break;
  }

  const retry = options.retry ?? DEFAULT_RETRY;
  const file = store.pathOf(blob.digest);
  const progress = (done: number): void => emit({ kind: 'progress', id: `push-${blob.digest}-${display}`, message: `push ${label}`, done, total: blob.size });
  const monolithicLimit = options.monolithicLimit ?? DEFAULT_MONOLITHIC_LIMIT;
  let restarts = 0;
  while (true) {
    try {
      if (location === undefined) {
        const response = await client.request({
          method: 'POST',
          target: `/v2/${repository}/blobs/uploads/`,
          scopes,
          accept: [202],
          what: `starting the upload of ${label} to ${display}`,
        });
        await response.body?.cancel().catch(() => undefined);
        location = await absoluteLocation(client, response);
        bounds = chunkBounds(response);
      }
      if (blob.size <= monolithicLimit) {
        const data = await readFile(file);
        const response = await client.request({
          method: 'PUT',
          target: withDigest(location, blob.digest),
          headers: { 'content-type': 'application/octet-stream' },
          body: () => data,
          scopes,
          accept: [201, 204],
          what: `uploading ${label} to ${display}`,
          retry: false,
        });
        await response.body?.cancel().catch(() => undefined);
        progress(blob.size);
      } else {
        // Once a connection has been cut, the blob goes in chunks, so that another cut loses one chunk at most.
        const resumeChunk = chunkLimitFor(options.resumeChunkSize ?? DEFAULT_RESUME_CHUNK_SIZE, bounds) as number;
        const chunkLimit = chunkLimitFor(options.chunkSize, bounds);
        const limits = { first: restarts > 0 ? Math.min(chunkLimit ?? resumeChunk, resumeChunk) : chunkLimit, resumed: Math.min(chunkLimit ?? resumeChunk, resumeChunk) };
        await uploadStreamed(client, location, blob, file, limits, scopes, `uploading ${label} to ${display}`, progress, emit, retry.attempts);
      }
      emit({ kind: 'step', message: `pushed ${label} (${formatBytes(blob.size)}) to ${display}` });
      return;
    } catch (error) {
      const restartable = error instanceof RestartBlob || (error instanceof NetworkError && error.transient) || (error instanceof RegistryStatusError && [400, 404, 416].includes(error.status));
      if (!restartable || ++restarts >= retry.attempts) {
        if (error instanceof RestartBlob) throw new LapinError(`uploading ${label} to ${display} failed: ${error.message}`);
        throw error;
      }
      emit({ kind: 'step', message: `upload of ${label} to ${display} was interrupted; starting the blob over` });
      location = undefined;
      await sleep(backoffDelay(restarts, retry));
    }
  }
}

/**
 * Sends a blob as PATCH requests streamed from the file: one for the whole
 * blob unless `chunkLimit` (the caller's chunk size, or the registry's
 * OCI-Chunk-Max-Length) cuts it in pieces. After a cut connection, asks
 * the registry how much it has and sends the rest from there, in chunks of
 * `limits.resumed`.
 */
async function uploadStreamed(
  client: RegistryClient,
  firstLocation: string,
  blob: BlobDescriptor,
  file: string,
  limits: { first: number | undefined; resumed: number },
  scopes: string[],
  what: string,
  progress: (done: number) => void,
  emit: (event: PushEvent) => void,
  attempts: number,
): Promise<void> {
  let location = firstLocation;
  let offset = 0;
  let resumes = 0;
  let chunkLimit = limits.first;
  const handle = await open(file, 'r');
  try {
    while (offset < blob.size) {
      const start = offset;
      const length = Math.min(chunkLimit ?? blob.size, blob.size - start);
      try {
        const response = await client.request({
          method: 'PATCH',
          target: location,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + length - 1}`, 'content-length': String(length) },
          body: () => fileStream(handle, file, start, length, progress),
          scopes,
          accept: [202],
          what,
          retry: false,
        });
        await response.body?.cancel().catch(() => undefined);
        location = await absoluteLocation(client, response);
        offset = rangeEnd(response.headers.get('range')) ?? start + length;
        progress(offset);
      } catch (error) {
        const transient = (error instanceof NetworkError && error.transient) || (error instanceof RegistryStatusError && error.status >= 500);
        if (!transient || ++resumes >= attempts) throw error;
        const status = await client
          .request({ method: 'GET', target: location, scopes, accept: [204], what: `asking ${client.host} how much of the upload arrived`, retry: true })
          .catch((statusError: unknown) => {
            throw new RestartBlob(statusError instanceof Error ? statusError.message : String(statusError));
          });
        await status.body?.cancel().catch(() => undefined);
        const reported = rangeEnd(status.headers.get('range'));
        if (reported === undefined) throw new RestartBlob('the registry did not say how much it has');
        location = await absoluteLocation(client, status);
        emit({ kind: 'step', message: `${what}: connection cut; resuming at byte ${reported} of ${blob.size}` });
        offset = reported;
        chunkLimit = limits.resumed;
      }
    }
  } finally {
    await handle.close();
  }
  const response = await client.request({
    method: 'PUT',
    target: withDigest(location, blob.digest),
    scopes,
    accept: [201, 204],
    what,
  });
  await response.body?.cancel().catch(() => undefined);
}

/** Bytes read from the file per piece of a streamed upload; two pieces are read ahead of the socket. */
const STREAM_READ_SIZE = 1024 * 1024;

/** `length` bytes of the file from `start`, read as fetch sends them. */
function fileStream(handle: FileHandle, file: string, start: number, length: number, progress: (done: number) => void): ReadableStream<Uint8Array> {
  let position = start;
  const end = start + length;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (position >= end) {
          controller.close();
          return;
        }
        const size = Math.min(STREAM_READ_SIZE, end - position);
        const buffer = Buffer.allocUnsafe(size);
        const { bytesRead } = await handle.read(buffer, 0, size, position);
        if (bytesRead === 0) {
          controller.error(new LapinError(`${file} ended at byte ${position}, before the size the image records for it`));
          return;
        }
        position += bytesRead;
        controller.enqueue(bytesRead === size ? buffer : buffer.subarray(0, bytesRead));
        progress(position);
      },
    },
    { highWaterMark: 2 },
  );
}

/** The registry's OCI-Chunk-Min-Length and OCI-Chunk-Max-Length, 0 when it names none. */
function chunkBounds(response: Response): { min: number; max: number } {
  const read = (name: string): number => {
    const value = Number(response.headers.get(name) ?? 0);
    return Number.isSafeInteger(value) && value > 0 ? value : 0;
  };
  return { min: read('oci-chunk-min-length'), max: read('oci-chunk-max-length') };
}

/**
 * How big each PATCH may be: the whole blob unless the caller set a chunk
 * size or the registry caps it; never below the registry's minimum, never
 * above its maximum.
 */
export function chunkLimitFor(chunkSize: number | undefined, bounds: { min: number; max: number }): number | undefined {
  let limit = chunkSize !== undefined ? Math.max(chunkSize, bounds.min) : undefined;
  if (bounds.max > 0) limit = Math.min(limit ?? bounds.max, bounds.max);
  return limit;
}

/** "0-N" means N+1 bytes arrived. */
function rangeEnd(range: string | null): number | undefined {
  const match = range ? /^(?:bytes=)?0-(\d+)$/.exec(range.trim()) : null;
  if (!match) return undefined;
  const end = Number(match[1]);
  return end === 0 ? 0 : end + 1;
}

async function absoluteLocation(client: RegistryClient, response: Response): Promise<string> {
  const location = response.headers.get('location');
  if (!location) throw new LapinError(`${client.host} opened an upload without saying where (no Location header)`);
  let url: URL;
  try {
    url = new URL(location, await client.baseUrl());
  } catch {
    url = new URL('invalid:');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new LapinError(`${client.host} gave ${JSON.stringify(location.slice(0, 100))} as the upload location, which is not an HTTP(S) URL; refusing to upload there`, {
      hint: 'a broken or hostile registry; lapin uploads only over HTTP(S)',
    });
  }
  return url.href;
}

function withDigest(location: string, digest: string): string {
  const url = new URL(location);
  url.searchParams.set('digest', digest);
  return url.href;
}
