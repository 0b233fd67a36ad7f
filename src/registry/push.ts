import { createHash, type Hash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import { formatBytes } from '../human.js';
import type { BlobStore } from '../image/blob-store.js';
import type { BlobBytes, Descriptor } from '../image/model.js';
import { parseReference } from '../image/reference.js';
import { repositoryScope } from './auth.js';
import { NetworkError, RegistryClient, RegistryStatusError, type RegistryOptions } from './client.js';
import { mapLimit } from './pool.js';
import { DEFAULT_RETRY, backoffDelay, sleep } from './retry.js';

/** A blob as a manifest lists it (image/model.ts's Descriptor, without annotations or platform). */
export type BlobDescriptor = Pick<Descriptor, 'mediaType' | 'digest' | 'size'>;

/** What a push sends: blobs in a store, and a manifest whose bytes are in the same store. */
export interface PushSource {
  store: BlobStore;
  manifest: BlobDescriptor;
  /** Config and layers, every blob the manifest references. */
  blobs: readonly BlobDescriptor[];
}

/**
 * Where an upload reads a blob: a file holding exactly its bytes (lapin's
 * store), or a stream of it from its first byte (an image read from an
 * archive, a layout or another registry), opened again to resume and
 * checked against the digest on the way.
 */
export type { BlobBytes } from '../image/model.js';

export interface PushBlob extends BlobDescriptor {
  bytes: BlobBytes;
}

/** A manifest or index: its descriptor and exact bytes. */
export interface PushDocument {
  descriptor: BlobDescriptor;
  bytes: Buffer;
}

/**
 * Everything one push sends to each repository: the blobs (each once), then
 * the manifests an index names (by digest), then the top document under
 * every tag.
 */
export interface PushPlan {
  blobs: readonly PushBlob[];
  manifests: readonly PushDocument[];
  top: PushDocument;
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
 * the blob, then a monolithic or streamed upload), then the manifest with its
 * exact media type and bytes for each tag.
 */
export async function pushImage(source: PushSource, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const bytes = await readFile(source.store.pathOf(source.manifest.digest));
  const blobs = source.blobs.map((blob) => ({ ...blob, bytes: { file: source.store.pathOf(blob.digest) } }));
  return pushPlan({ blobs, manifests: [], top: { descriptor: source.manifest, bytes } }, names, options);
}

/**
 * Pushes a plan to every name, repository by repository: each blob the
 * repository lacks (HEAD, then a mount from a repository of the same
 * registry known to hold it, then an upload streamed from its file or
 * source), then each manifest by digest unless it is there, then the top
 * document under each tag.
 */
export async function pushPlan(plan: PushPlan, names: readonly string[], options: PushOptions = {}): Promise<PushedName[]> {
  const clients = options.clients ?? new Map<string, RegistryClient>();
  const shared: PushOptions = { ...options, clients };
  const emit = (event: PushEvent): void => options.onEvent?.(event);
  // Where each blob is known to live, by host; grows as repositories are pushed.
  const holders = new Map<string, string[]>();
  for (const [digest, places] of options.mountSources ?? []) holders.set(digest, [...places]);
  const blobs = [...new Map(plan.blobs.map((blob) => [blob.digest, blob])).values()];

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
    await mapLimit(blobs, uploadConcurrency(options.concurrency), async (blob) => {
      const candidates = (holders.get(blob.digest) ?? []).filter((place) => place !== repositoryKey && place.startsWith(`${target.domain}/`));
      await pushBlob(client, target.path, blob, candidates.map((place) => place.slice(target.domain.length + 1)), shared, display, emit);
      const places = holders.get(blob.digest) ?? [];
      if (!places.includes(repositoryKey)) places.push(repositoryKey);
      holders.set(blob.digest, places);
    });
    for (const manifest of plan.manifests) await putManifest(client, target.path, manifest.descriptor.digest, manifest.descriptor, manifest.bytes, emit, display);
    for (const [index, tag] of target.tags.entries()) {
      await putManifest(client, target.path, tag, plan.top.descriptor, plan.top.bytes, emit, display);
      pushed.push({ name: target.names[index] as string, digest: plan.top.descriptor.digest });
    }
  }
  return pushed;
}

/** Blobs uploaded at once per repository, unless the options or LAPIN_REGISTRY_PUSH_CONCURRENCY say otherwise. */
export const DEFAULT_PUSH_CONCURRENCY = 3;

/** The option, else LAPIN_REGISTRY_PUSH_CONCURRENCY, else the default. */
export function uploadConcurrency(value: number | undefined, environment: NodeJS.ProcessEnv = process.env): number {
  if (value !== undefined) {
    if (!Number.isSafeInteger(value) || value < 1) throw new LapinError(`the number of blobs pushed at once must be a whole number of at least 1, not ${String(value)}`, { exitCode: 2 });
    return value;
  }
  const text = environment.LAPIN_REGISTRY_PUSH_CONCURRENCY;
  if (text === undefined || text === '') return DEFAULT_PUSH_CONCURRENCY;
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1 || Number(text) > 64) {
    throw new LapinError(`LAPIN_REGISTRY_PUSH_CONCURRENCY=${JSON.stringify(text)} is not a number of blobs from 1 to 64`, { exitCode: 2, hint: `e.g. LAPIN_REGISTRY_PUSH_CONCURRENCY=${DEFAULT_PUSH_CONCURRENCY}` });
  }
  return Number(text);
}

/** Puts a manifest or index under a tag or its digest, unless the registry already has it there. */
async function putManifest(
  client: RegistryClient,
  repository: string,
  reference: string,
  manifest: BlobDescriptor,
  bytes: Buffer,
  emit: (event: PushEvent) => void,
  display: string,
): Promise<void> {
  const scopes = [repositoryScope(repository, 'pull,push')];
  const byDigest = reference === manifest.digest;
  const shown = byDigest ? `${display}@${reference}` : `${display}:${reference}`;
  const kind = /index|manifest\.list/.test(manifest.mediaType) ? 'index' : 'manifest';
  const head = await client.request({
    method: 'HEAD',
    target: `/v2/${repository}/manifests/${reference}`,
    headers: { accept: manifest.mediaType },
    scopes,
    accept: [200, 404],
    what: `checking ${shown}`,
  });
  await head.body?.cancel().catch(() => undefined);
  if (head.status === 200 && head.headers.get('docker-content-digest') === manifest.digest) {
    emit({ kind: 'step', message: byDigest ? `${shown} already there` : `${shown} already points at ${manifest.digest}` });
    return;
  }
  const response = await client.request({
    method: 'PUT',
    target: `/v2/${repository}/manifests/${reference}`,
    headers: { 'content-type': manifest.mediaType },
    body: () => bytes,
    scopes,
    accept: [200, 201],
    what: `pushing the ${kind} of ${shown}`,
  });
  await response.body?.cancel().catch(() => undefined);
  const echoed = response.headers.get('docker-content-digest');
  if (echoed && echoed !== manifest.digest) {
    throw new LapinError(`${client.host} stored the ${kind} of ${shown} as ${echoed}, not ${manifest.digest}`, {
      hint: `the registry rewrote the ${kind}; its digest no longer matches what was built`,
    });
  }
  emit({ kind: 'step', message: byDigest ? `pushed ${shown}` : `pushed ${shown} (${kind} ${manifest.digest})` });
}

async function pushBlob(
  client: RegistryClient,
  repository: string,
  blob: PushBlob,
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
  const reader = blobReader(blob, `${label} read from its source`);
  const progress = (done: number): void => emit({ kind: 'progress', id: `push-${blob.digest}-${display}`, message: `push ${label}`, done, total: blob.size });
  const monolithicLimit = options.monolithicLimit ?? DEFAULT_MONOLITHIC_LIMIT;
  let restarts = 0;
  try {
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
        const response = await client.request({
          method: 'PUT',
          target: withDigest(location, blob.digest),
          headers: { 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
          body: () => reader.range(0, blob.size, progress),
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
        await uploadStreamed(client, location, blob, reader, limits, scopes, `uploading ${label} to ${display}`, progress, emit, retry.attempts);
      }
      emit({ kind: 'step', message: `pushed ${label} (${formatBytes(blob.size)}) to ${display}` });
      return;
    } catch (error) {
      // The source itself is wrong (short, or not the bytes of its digest): no retry can help.
      if (reader.failure) throw reader.failure;
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
  } finally {
    await reader.close();
  }
}

/**
 * Sends a blob as PATCH requests streamed from its reader: one for the whole
 * blob unless `chunkLimit` (the caller's chunk size, or the registry's
 * OCI-Chunk-Max-Length) cuts it in pieces. After a cut connection, asks
 * the registry how much it has and sends the rest from there, in chunks of
 * `limits.resumed`.
 */
async function uploadStreamed(
  client: RegistryClient,
  firstLocation: string,
  blob: BlobDescriptor,
  reader: BlobReader,
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
  /** Chunks the registry took without saying it has more than before: each would be sent again, without end. */
  let stuck = 0;
  let chunkLimit = limits.first;
  {
    while (offset < blob.size) {
      const start = offset;
      const length = Math.min(chunkLimit ?? blob.size, blob.size - start);
      try {
        const response = await client.request({
          method: 'PATCH',
          target: location,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + length - 1}`, 'content-length': String(length) },
          body: () => reader.range(start, length, progress),
          scopes,
          accept: [202],
          what,
          retry: false,
        });
        await response.body?.cancel().catch(() => undefined);
        location = await absoluteLocation(client, response);
        offset = rangeEnd(response.headers.get('range')) ?? start + length;
        if (offset <= start && ++stuck >= attempts) {
          throw new LapinError(`${what} failed: ${client.host} took ${stuck} chunks from byte ${start} on and still says it has ${offset} of ${blob.size} bytes; giving up`, {
            hint: 'a broken or hostile registry: its Range header does not move forward',
          });
        }
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

/** Bytes read from a file per piece of a streamed upload; two pieces are read ahead of the socket. */
const STREAM_READ_SIZE = 1024 * 1024;

/** A blob's bytes for an upload, a range at a time; `failure` is set when the source itself is wrong. */
export interface BlobReader {
  /** Bytes `start` to `start + length` as fetch sends them; `progress` gets the position read up to. */
  range(start: number, length: number, progress: (done: number) => void): ReadableStream<Uint8Array>;
  readonly failure: LapinError | undefined;
  close(): Promise<void>;
}

/** Exported for tests. */
export function blobReader(blob: PushBlob, what: string): BlobReader {
  return 'file' in blob.bytes ? new FileBlobReader(blob.bytes.file) : new SourceBlobReader(blob, blob.bytes.open, what);
}

/** A blob in lapin's store: read with positioned reads, nothing checked (the store wrote it under its digest). */
class FileBlobReader implements BlobReader {
  failure: LapinError | undefined;
  private handle: Promise<FileHandle> | undefined;

  constructor(private readonly file: string) {}

  range(start: number, length: number, progress: (done: number) => void): ReadableStream<Uint8Array> {
    let position = start;
    const end = start + length;
    this.handle ??= open(this.file, 'r');
    const handle = this.handle;
    let cancelled = false;
    return new ReadableStream<Uint8Array>(
      {
        cancel: () => {
          cancelled = true;
        },
        pull: async (controller) => {
          if (position >= end) {
            controller.close();
            return;
          }
          const size = Math.min(STREAM_READ_SIZE, end - position);
          const buffer = Buffer.allocUnsafe(size);
          let bytesRead: number;
          try {
            ({ bytesRead } = await (await handle).read(buffer, 0, size, position));
          } catch (error) {
            this.failure = new LapinError(`cannot read ${this.file}: ${error instanceof Error ? error.message : String(error)}`);
            controller.error(this.failure);
            return;
          }
          if (bytesRead === 0) {
            this.failure = new LapinError(`${this.file} ended at byte ${position}, before the size the image records for it`);
            controller.error(this.failure);
            return;
          }
          if (cancelled) return;
          position += bytesRead;
          controller.enqueue(bytesRead === size ? buffer : buffer.subarray(0, bytesRead));
          progress(position);
        },
      },
      { highWaterMark: 2 },
    );
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle) await (await handle).close();
  }
}

/**
 * A blob read from another image's source as a stream. Ranges are read in
 * order from one open stream; a range that starts elsewhere (a resume after
 * a cut) opens it again and skips to the start. Every byte read from the
 * first one is hashed, so the blob is refused at its last byte, before the
 * registry commits it, unless it has its digest and size.
 */
class SourceBlobReader implements BlobReader {
  failure: LapinError | undefined;
  private stream: Readable | undefined;
  private iterator: AsyncIterator<unknown> | undefined;
  private leftover: Buffer | undefined;
  private position = 0;
  private hash: Hash = createHash('sha256');
  /** Bumped by every range, so a stream left behind by a cut request reads no more. */
  private generation = 0;
  /** Reads one at a time, whichever stream asks. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly blob: BlobDescriptor,
    private readonly open: () => Promise<Readable>,
    private readonly what: string,
  ) {}

  range(start: number, length: number, progress: (done: number) => void): ReadableStream<Uint8Array> {
    const generation = ++this.generation;
    const end = start + length;
    let sought = false;
    // Set when fetch gives up on the request (a cut connection): a read in flight then has nowhere to go, and is not the source's fault.
    let cancelled = false;
    return new ReadableStream<Uint8Array>(
      {
        pull: (controller) => {
          const step = this.queue.then(async () => {
            if (generation !== this.generation) throw new LapinError(`${this.what}: a newer upload attempt took over the source`);
            if (!sought) {
              await this.seek(start);
              sought = true;
            }
            if (cancelled) return;
            if (this.position >= end) {
              controller.close();
              return;
            }
            const piece = await this.read(end - this.position);
            if (cancelled) return;
            controller.enqueue(piece);
            progress(this.position);
          });
          this.queue = step.catch(() => undefined);
          return step.catch((error: unknown) => {
            // A failure to read the source ends the blob's upload; only a superseded or abandoned stream is not one.
            if (generation === this.generation && !cancelled) this.failure ??= error instanceof LapinError ? error : new LapinError(`${this.what} failed: ${error instanceof Error ? error.message : String(error)}`);
            if (!cancelled) controller.error(error);
          });
        },
        cancel: () => {
          cancelled = true;
        },
      },
      { highWaterMark: 2 },
    );
  }

  private async seek(start: number): Promise<void> {
    if (this.stream && this.position === start) return;
    this.stream?.destroy();
    this.stream = await this.open();
    this.iterator = this.stream[Symbol.asyncIterator]();
    this.leftover = undefined;
    this.position = 0;
    this.hash = createHash('sha256');
    while (this.position < start) await this.read(start - this.position);
  }

  /** Up to `max` bytes from the position, hashed; at the blob's end, checks its size and digest. */
  private async read(max: number): Promise<Buffer> {
    let piece = this.leftover;
    this.leftover = undefined;
    if (!piece) {
      const next = await (this.iterator as AsyncIterator<unknown>).next();
      if (next.done) throw this.fail(`it ended at byte ${this.position} of ${this.blob.size}`);
      piece = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
    }
    if (piece.length > max) {
      this.leftover = piece.subarray(max);
      piece = piece.subarray(0, max);
    }
    this.hash.update(piece);
    this.position += piece.length;
    if (this.position === this.blob.size) {
      const more = this.leftover ?? (await this.nextPiece());
      if (more && more.length > 0) throw this.fail(`it is longer than the ${this.blob.size} bytes its descriptor records`);
      const actual = `sha256:${this.hash.digest('hex')}`;
      if (actual !== this.blob.digest) throw this.fail(`its digest is ${actual}`);
    }
    return piece;
  }

  private async nextPiece(): Promise<Buffer | undefined> {
    const next = await (this.iterator as AsyncIterator<unknown>).next();
    if (next.done) return undefined;
    return Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
  }

  private fail(reason: string): LapinError {
    this.failure = new LapinError(`${this.what} does not match ${this.blob.digest}: ${reason}; the registry was not asked to keep it`);
    return this.failure;
  }

  async close(): Promise<void> {
    this.generation++;
    await this.queue;
    this.stream?.destroy();
    this.stream = undefined;
  }
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
