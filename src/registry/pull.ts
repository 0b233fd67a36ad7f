import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { LapinError, type SourcePosition } from '../errors.js';
import { defaultCacheDir } from '../image/layer-cache.js';
import { parseReference } from '../image/reference.js';
import type { Descriptor as ModelDescriptor, ImageConfig, Layer } from '../image/model.js';
import { repositoryScope } from './auth.js';
import { MANIFEST_SIZE_LIMIT, NetworkError, RegistryStatusError, readLimitedBody, type RegistryClient } from './client.js';
import { clientFor, type PushOptions } from './push.js';
import { indexWhileFetching, namedFiles } from './layer-index.js';
import { DEFAULT_RETRY, backoffDelay, sleep } from './retry.js';
import { makeDirectories } from '../mkdirp.js';
import { SourceError } from '../source/errors.js';
import { checkConfigShape, checkManifestShape, MAX_IMAGE_LAYERS } from '../source/shape.js';
import { readRegularFile } from '../regular-file.js';
import { sweepStaleTemporaries, temporaryName, trackTemporary, untrackTemporary, writeFileAtomically } from '../temporaries.js';

export type PullPolicy = 'missing' | 'always' | 'never';

const MEDIA_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const MEDIA_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const MEDIA_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
const MEDIA_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const ACCEPT = [MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST].join(', ');

/** A name to pull: NAME[:TAG][@DIGEST]. */
export interface PullReference {
  domain: string;
  path: string;
  tag: string;
  digest?: string;
  /** domain/path:tag or domain/path@digest, for messages. */
  display: string;
}

export function parsePullReference(text: string): PullReference {
  const at = text.indexOf('@');
  const namePart = at < 0 ? text : text.slice(0, at);
  const digest = at < 0 ? undefined : text.slice(at + 1);
  if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new LapinError(`invalid image reference ${JSON.stringify(text)}: ${JSON.stringify(digest)} is not a sha256 digest`);
  }
  const reference = parseReference(namePart);
  const display = digest ? `${reference.domain}/${reference.path}@${digest}` : `${reference.domain}/${reference.path}:${reference.tag}`;
  return { ...reference, ...(digest ? { digest } : {}), display };
}

/** A descriptor read from a registry: the same loose shape inspect reads from any source. */
export type Descriptor = ModelDescriptor;

/** The parts of an image config lapin reads from a base (image/model.ts's ImageConfig). */
export type BaseConfig = ImageConfig;

/** A pulled image: every blob is in the cache and matched its digest. registry/base.ts's pulledImage reads it as the one image model. */
export interface PulledImage {
  reference: PullReference;
  manifestDigest: string;
  /** The manifest's exact bytes (none from a docker save archive, which keeps no manifest). */
  manifestBytes?: Buffer;
  manifestAnnotations: Record<string, string>;
  config: BaseConfig;
  configDescriptor: Descriptor;
  configBytes?: Buffer;
  /** `indexFile`: where the layer's index is kept (pulled layers only; layer-index.ts). */
  layers: Array<Layer & { file: string; indexFile?: string }>;
  /** Whether anything came over the network. */
  fetched: boolean;
}

export interface PullOptions extends PushOptions {
  policy?: PullPolicy;
  /** Default: the layer cache's directory ($LAPIN_CACHE_DIR, $XDG_CACHE_HOME/lapin, ~/.cache/lapin). */
  cacheDir?: string;
  architecture: string;
  /** The urunc monitor: unikraft.org images are published per monitor (os qemu or fc), as bunny pulls them. */
  monitor?: string;
  at?: SourcePosition;
}

/** The platform os an image index lists for this pull: qemu/fc for unikraft.org, linux otherwise. */
export function platformOs(domain: string, monitor: string | undefined): string {
  if (domain === 'unikraft.org' || domain.endsWith('.unikraft.org')) return monitor === 'firecracker' ? 'fc' : 'qemu';
  return 'linux';
}

/** The content-addressed cache of pulled blobs and the tags they were pulled under. */
class PullCache {
  /** Digests whose cache file was hashed (or written after a check) by this process. */
  private readonly verified = new Set<string>();

  private swept = false;

  constructor(readonly root: string) {}

  /** Removes, once, the temporaries that processes killed with SIGKILL left in the cache (src/temporaries.ts). */
  async sweep(): Promise<void> {
    if (this.swept) return;
    this.swept = true;
    await sweepStaleTemporaries([path.join(this.root, 'blobs', 'sha256'), path.join(this.root, 'refs'), path.join(this.root, 'index', 'sha256'), path.join(this.root, 'index', 'files')]);
  }

  blobPath(digest: string): string {
    return path.join(this.root, 'blobs', 'sha256', digest.slice('sha256:'.length));
  }

  /** Where a layer's index is kept (layer-index.ts): beside the blobs, named by the layer's digest. */
  indexPath(digest: string): string {
    return path.join(this.root, 'index', 'sha256', `${digest.slice('sha256:'.length)}.json`);
  }

  async has(digest: string): Promise<boolean> {
    return (await stat(this.blobPath(digest)).catch(() => undefined))?.isFile() === true;
  }

  private refPath(reference: PullReference, os: string, architecture: string): string {
    const key = createHash('sha256').update(`${reference.domain}/${reference.path}:${reference.tag}\n${os}/${architecture}`).digest('hex');
    return path.join(this.root, 'refs', key);
  }

  async readRef(reference: PullReference, os: string, architecture: string): Promise<string | undefined> {
    const text = await readCached(this.refPath(reference, os, architecture))
      .then((data) => data.toString('utf8'))
      .catch(() => undefined);
    return text && /^sha256:[0-9a-f]{64}$/.test(text.trim()) ? text.trim() : undefined;
  }

  async writeRef(reference: PullReference, os: string, architecture: string, digest: string): Promise<void> {
    const file = this.refPath(reference, os, architecture);
    await makeDirectories(path.dirname(file));
    await writeFileAtomically(file, digest);
  }

  async putVerified(digest: string, data: Uint8Array): Promise<void> {
    const file = this.blobPath(digest);
    await makeDirectories(path.dirname(file));
    await writeFileAtomically(file, data);
    this.verified.add(digest);
  }

  markVerified(digest: string): void {
    this.verified.add(digest);
  }

  /** Whether the cache holds the blob whole: its size and its sha256 as the descriptor says (a cut or damaged file is not served). */
  async holds(blob: Descriptor): Promise<boolean> {
    if (this.verified.has(blob.digest)) return true;
    const file = this.blobPath(blob.digest);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile() || info.size !== blob.size) return false;
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
    } catch {
      return false;
    }
    if (`sha256:${hash.digest('hex')}` !== blob.digest) return false;
    this.verified.add(blob.digest);
    return true;
  }
}

const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * Refuses descriptors whose digest is not sha256 hex or whose size is not a
 * byte count: the digest names a cache file, and "sha256:../../x" must not.
 */
/**
 * A registry's JSON answer as an object, or one sentence: JSON.parse's own
 * message quotes the text ("Unexpected token '<', "<html>..."), which is
 * whatever answered, so it is never shown.
 */
function parseAnswer(bytes: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new LapinError(`${what} is not JSON (${bytes.length} bytes); refusing it`, { hint: 'a web page or a proxy may have answered in the registry\'s place; check the registry address' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LapinError(`${what} is not a JSON object; refusing it`, { hint: 'a hostile or broken image; use another base' });
  if ('manifests' in value && value.manifests !== undefined && !(Array.isArray(value.manifests) && value.manifests.every((m: unknown) => typeof m === 'object' && m !== null))) {
    throw new LapinError(`${what} lists manifests that are not descriptors; refusing it`, { hint: 'a hostile or broken image; use another base' });
  }
  return value as Record<string, unknown>;
}

/** A manifest, config or ref from the cache: a regular file of at most a manifest's size (a FIFO there would block the pull). */
function readCached(file: string): Promise<Buffer> {
  return readRegularFile(file, MANIFEST_SIZE_LIMIT);
}

function checkLayerCount(layers: readonly unknown[], display: string): void {
  if (layers.length > MAX_IMAGE_LAYERS) {
    throw new LapinError(`${display} lists ${layers.length} layers; lapin reads images of at most ${MAX_IMAGE_LAYERS}`, { hint: 'a hostile or broken image; use another base' });
  }
}

function checkDescriptors(descriptors: ReadonlyArray<Descriptor | undefined>, display: string): void {
  for (const descriptor of descriptors) {
    if (descriptor === undefined) continue;
    if (typeof descriptor !== 'object' || descriptor === null || typeof descriptor.digest !== 'string' || !SHA256_DIGEST.test(descriptor.digest) || !Number.isSafeInteger(descriptor.size) || descriptor.size < 0) {
      throw new LapinError(`${display} lists a blob with digest ${JSON.stringify(descriptor.digest)} and size ${JSON.stringify(descriptor.size)}; lapin reads sha256 digests with byte sizes only`, {
        hint: 'a hostile or broken image; use another base',
      });
    }
  }
}

/**
 * shape.ts's checks of someone else's JSON, as a pull's error: a FROM build copies the base's
 * Env, Cmd, Labels and annotations into its image, so an Env of 5 was a TypeError and a label
 * of 5 an image docker cannot load. The image a build names is wrong (exit 1).
 */
function checkedShape<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof SourceError) throw new LapinError(error.message, { hint: 'a hostile or broken image; use another base' });
    throw error;
  }
}

/** A config is read whole into memory: one bigger than a manifest may be is refused before it is downloaded. */
function checkConfigSize(config: Descriptor, display: string): void {
  if (config.size > MANIFEST_SIZE_LIMIT) {
    throw new LapinError(`${display} lists a config of ${config.size} bytes, more than the ${MANIFEST_SIZE_LIMIT} lapin reads for one; refusing it`, { hint: 'a hostile or broken image; use another base' });
  }
}

function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Counts and hashes what passes, so a blob is checked before it is filed. */
class Verifier extends Transform {
  readonly hash = createHash('sha256');
  size = 0;
  /** `limit`: the descriptor's size; a registry sending more is cut off rather than filling the disk. */
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.size > this.limit) {
      callback(new BlobTooLong(this.limit));
      return;
    }
    callback(null, chunk);
  }
}

class BlobTooLong extends Error {
  constructor(readonly limit: number) {
    super(`more than the ${limit} bytes the manifest lists`);
  }
}

/**
 * Pulls an image for a build: resolves an index to the platform, checks
 * every manifest and blob against its digest, and keeps them in a
 * content-addressed cache so a second build pulls nothing.
 */
export async function pullImage(text: string, options: PullOptions): Promise<PulledImage> {
  const reference = parsePullReference(text);
  const policy = options.policy ?? 'missing';
  const cache = new PullCache(path.join(options.cacheDir ?? defaultCacheDir(), 'registry'));
  await cache.sweep();
  const os = platformOs(reference.domain, options.monitor);
  const architecture = options.architecture;
  const where = options.at ? { at: options.at } : {};
  const emit = (message: string): void => options.onEvent?.({ kind: 'step', message });

  if (policy !== 'always') {
    const digest = reference.digest ?? (await cache.readRef(reference, os, architecture));
    if (digest && (await cache.has(digest))) {
      const local = await fromCache(cache, reference, digest, os, architecture).catch(() => undefined);
      if (local) {
        emit(`using ${reference.display} from the cache (${digest})`);
        return local;
      }
    }
    if (policy === 'never') {
      throw new LapinError(`${reference.display} is not in the cache and --pull=never forbids pulling it`, { ...where, hint: 'pull it once with --pull=missing' });
    }
  }

  const client = clientFor(reference.domain, options);
  const scopes = [repositoryScope(reference.path, 'pull')];
  let manifestBytes: Buffer;
  let manifestDigest: string;
  try {
    ({ bytes: manifestBytes, digest: manifestDigest } = await fetchManifest(client, reference, reference.digest ?? reference.tag, scopes));
  } catch (error) {
    if (error instanceof RegistryStatusError && error.status === 404) {
      throw new LapinError(`${reference.display} was not found in ${reference.domain}`, { ...where, hint: 'check the name and tag' });
    }
    throw error;
  }
  let manifest = parseAnswer(manifestBytes, `the manifest of ${reference.display} from ${reference.domain}`) as { mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[]; annotations?: Record<string, string> };
  if (Array.isArray(manifest.manifests)) {
    const chosen = choosePlatform(manifest.manifests, os, architecture);
    if (!chosen) {
      const offered = manifest.manifests.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
      throw new LapinError(`${reference.display} has no image for ${os}/${architecture} (it has ${offered || 'none'})`, { ...where, hint: 'pick another image or --platform' });
    }
    checkDescriptors([chosen], reference.display);
    await cache.putVerified(manifestDigest, manifestBytes);
    ({ bytes: manifestBytes, digest: manifestDigest } = await fetchManifest(client, reference, chosen.digest, scopes));
    manifest = parseAnswer(manifestBytes, `the manifest of ${reference.display} from ${reference.domain}`) as typeof manifest;
  }
  if (!manifest.config || !Array.isArray(manifest.layers)) {
    throw new LapinError(`${reference.display} is not an image manifest (mediaType ${manifest.mediaType ?? 'unknown'})`, where);
  }
  checkLayerCount(manifest.layers, reference.display);
  checkDescriptors([manifest.config, ...manifest.layers], reference.display);
  checkedShape(() => checkManifestShape(manifest, `the manifest of ${reference.display}`));
  checkConfigSize(manifest.config, reference.display);
  await cache.putVerified(manifestDigest, manifestBytes);
  emit(`pulling ${reference.display} (${manifestDigest})`);
  if (!(await cache.holds(manifest.config))) await fetchBlob(client, reference, manifest.config, cache, options);
  // The config first: its diff_ids check the layers, which are indexed as they arrive (layer-index.ts).
  const config = await readConfig(cache, manifest.config, reference);
  const diffIds = config.rootfs?.diff_ids ?? [];
  const capture = namedFiles(config.config?.Labels ?? undefined, manifest.annotations);
  const layers = manifest.layers;
  await forEachBounded(layers.keys(), PARALLEL_DOWNLOADS, async (index) => {
    const blob = layers[index] as Descriptor;
    if (await cache.holds(blob)) return;
    const diffId = diffIds[index];
    const indexing = typeof diffId === 'string' && !(await exists(cache.indexPath(blob.digest)))
      ? { diffId, indexFile: cache.indexPath(blob.digest), capture, image: reference.display }
      : undefined;
    await fetchBlob(client, reference, blob, cache, options, indexing);
  });
  if (!reference.digest) await cache.writeRef(reference, os, architecture, manifestDigest);
  const pulled = await fromCache(cache, reference, manifestDigest, os, architecture);
  return { ...pulled, fetched: true };
}

async function fetchManifest(client: RegistryClient, reference: PullReference, tagOrDigest: string, scopes: string[]): Promise<{ bytes: Buffer; digest: string }> {
  const response = await client.request({
    method: 'GET',
    target: `/v2/${reference.path}/manifests/${tagOrDigest}`,
    headers: { accept: ACCEPT },
    scopes,
    accept: [200],
    what: `fetching the manifest of ${reference.display}`,
  });
  const bytes = await readLimitedBody(response, MANIFEST_SIZE_LIMIT, `the manifest of ${reference.display} from ${client.host}`);
  const actual = sha256(bytes);
  const expected = tagOrDigest.startsWith('sha256:') ? tagOrDigest : response.headers.get('docker-content-digest');
  if (expected && expected !== actual) {
    throw new LapinError(`the manifest of ${reference.display} from ${client.host} does not match its digest (expected ${expected}, got ${actual}); refusing it`, {
      hint: 'something between lapin and the registry changed the data; try again, or check the proxy',
    });
  }
  return { bytes, digest: actual };
}

function choosePlatform(manifests: Descriptor[], os: string, architecture: string): Descriptor | undefined {
  const matches = manifests.filter((m) => m.platform?.os === os && m.platform.architecture === architecture);
  return matches.find((m) => architecture !== 'arm64' || m.platform?.variant === undefined || m.platform.variant === 'v8') ?? matches[0];
}

/** Layers downloaded at once: a layer's download overlaps another's indexing, and a slow one does not hold up the rest. */
const PARALLEL_DOWNLOADS = 3;

/** Runs `task` on each item, at most `limit` at a time; the first failure is thrown once all started tasks end. */
async function forEachBounded<T>(items: Iterable<T>, limit: number, task: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    for (let next = iterator.next(); !next.done && !failure; next = iterator.next()) {
      try {
        await task(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  if (failure) throw failure.error;
}

async function exists(file: string): Promise<boolean> {
  return (await stat(file).catch(() => undefined)) !== undefined;
}

async function readConfig(cache: PullCache, descriptor: Descriptor, reference: PullReference): Promise<BaseConfig> {
  const bytes = await readCached(cache.blobPath(descriptor.digest));
  if (sha256(bytes) !== descriptor.digest) throw new LapinError(`the cached config of ${reference.display} is damaged`, { hint: 'pull it again (--pull=always)' });
  const what = `the config of ${reference.display}`;
  return checkedShape(() => checkConfigShape(parseAnswer(bytes, what), what)) as BaseConfig;
}

/** A layer to index while it downloads. */
interface FetchIndexing {
  diffId: string;
  indexFile: string;
  capture: ReadonlySet<string>;
  image: string;
}

/**
 * Passes the download on and feeds the same bytes to the layer's indexer,
 * at the indexer's pace; an indexer that fails is let go (the build indexes
 * the layer again from the blob, and says what is wrong with it).
 */
class IndexTee extends Transform {
  private failed = false;
  private waiting: (() => void) | undefined;
  constructor(private readonly feed: PassThrough, done: Promise<unknown>) {
    super();
    done.catch(() => {
      this.failed = true;
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.();
    });
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.failed || this.feed.write(chunk)) {
      callback(null, chunk);
      return;
    }
    const go = (): void => {
      if (this.waiting !== go) return;
      this.waiting = undefined;
      callback(null, chunk);
    };
    this.waiting = go;
    this.feed.once('drain', go);
  }
  override _flush(callback: TransformCallback): void {
    if (!this.failed) this.feed.end();
    callback();
  }
}

async function fetchBlob(client: RegistryClient, reference: PullReference, blob: Descriptor, cache: PullCache, options: PullOptions, indexing?: FetchIndexing): Promise<void> {
  const retry = options.retry ?? DEFAULT_RETRY;
  const file = cache.blobPath(blob.digest);
  await makeDirectories(path.dirname(file));
  for (let attempt = 0; ; attempt++) {
    // Named for its owner and removed on a signal, so a kill -9 leaves nothing a later pull keeps.
    const temporary = temporaryName(`${file}.tmp-`);
    trackTemporary(temporary);
    try {
      const response = await client.request({
        method: 'GET',
        target: `/v2/${reference.path}/blobs/${blob.digest}`,
        scopes: [repositoryScope(reference.path, 'pull')],
        accept: [200],
        what: `fetching blob ${blob.digest} of ${reference.display}`,
      });
      if (!response.body) throw new LapinError(`${client.host} sent no data for blob ${blob.digest}`);
      const verifier = new Verifier(blob.size);
      let done = 0;
      const progress = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          done += chunk.length;
          options.onEvent?.({ kind: 'progress', id: `pull-${blob.digest}`, message: `pull ${blob.digest.slice(7, 19)}`, done, total: blob.size });
          callback(null, chunk);
        },
      });
      const feed = indexing ? new PassThrough() : undefined;
      const indexer = indexing && feed ? indexWhileFetching(feed, { file, digest: blob.digest, diffId: indexing.diffId, indexFile: indexing.indexFile }, { image: indexing.image, capture: indexing.capture, scratch: path.join(cache.root, 'index', 'scratch') }) : undefined;
      indexer?.done.catch(() => undefined);
      const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
      try {
        if (feed && indexer) await pipeline(body, progress, verifier, new IndexTee(feed, indexer.done), createWriteStream(temporary));
        else await pipeline(body, progress, verifier, createWriteStream(temporary));
      } catch (error) {
        feed?.destroy();
        throw error;
      }
      const actual = `sha256:${verifier.hash.digest('hex')}`;
      if (actual !== blob.digest || verifier.size !== blob.size) {
        throw new LapinError(`blob ${blob.digest} of ${reference.display} from ${client.host} does not match its digest (got ${actual}, ${verifier.size} of ${blob.size} bytes); refusing it`, {
          hint: 'something between lapin and the registry changed the data; nothing was used or cached',
        });
      }
      await rename(temporary, file);
      untrackTemporary(temporary);
      cache.markVerified(blob.digest);
      if (indexer) {
        // Filed only now that the blob matched its digest; a layer the indexer refused is read again by the build.
        const indexed = await indexer.done.catch(() => undefined);
        if (indexed) await indexer.keep(indexed);
      }
      return;
    } catch (error) {
      await rm(temporary, { force: true });
      untrackTemporary(temporary);
      if (error instanceof BlobTooLong) {
        throw new LapinError(`blob ${blob.digest} of ${reference.display} from ${client.host} is longer than its descriptor says (${error.message}); refusing it`, {
          hint: 'something between lapin and the registry changed the data; nothing was used or cached',
        });
      }
      const transient = (error instanceof NetworkError && error.transient) || (!(error instanceof LapinError) && error instanceof Error);
      if (!transient || attempt + 1 >= retry.attempts) {
        if (error instanceof LapinError) throw error;
        throw new LapinError(`fetching blob ${blob.digest} of ${reference.display} failed: ${(error as Error).message}`);
      }
      await sleep(backoffDelay(attempt, retry));
    }
  }
}

/** Reads an image back from the cache, checking that every blob it needs is there. */
async function fromCache(cache: PullCache, reference: PullReference, manifestDigest: string, os: string, architecture: string): Promise<PulledImage> {
  let bytes = await readCached(cache.blobPath(manifestDigest));
  let digest = manifestDigest;
  let manifest = parseAnswer(bytes, `the manifest of ${reference.display}`) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[]; annotations?: Record<string, string> };
  if (Array.isArray(manifest.manifests)) {
    if (sha256(bytes) !== manifestDigest) throw new Error('cached index is damaged');
    const chosen = choosePlatform(manifest.manifests, os, architecture);
    if (!chosen) throw new Error('no platform in the cached index');
    checkDescriptors([chosen], reference.display);
    bytes = await readCached(cache.blobPath(chosen.digest));
    digest = chosen.digest;
    manifest = parseAnswer(bytes, `the manifest of ${reference.display}`) as typeof manifest;
  }
  if (sha256(bytes) !== digest || !manifest.config || !Array.isArray(manifest.layers)) throw new Error('cached manifest is damaged');
  checkLayerCount(manifest.layers, reference.display);
  checkDescriptors([manifest.config, ...manifest.layers], reference.display);
  checkedShape(() => checkManifestShape(manifest, `the manifest of ${reference.display}`));
  const configBytes = await readCached(cache.blobPath(manifest.config.digest));
  if (sha256(configBytes) !== manifest.config.digest) throw new Error('cached config is damaged');
  const configWhat = `the config of ${reference.display}`;
  const config = checkedShape(() => checkConfigShape(parseAnswer(configBytes, configWhat), configWhat)) as BaseConfig;
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length) {
    throw new LapinError(`${reference.display} lists ${manifest.layers.length} layers but its config has ${diffIds.length} diff_ids`);
  }
  const layers: PulledImage['layers'] = [];
  for (const [index, layer] of manifest.layers.entries()) {
    if (!(await cache.holds(layer))) throw new Error('cached layer missing or damaged');
    layers.push({ ...layer, diffId: diffIds[index] as string, file: cache.blobPath(layer.digest), indexFile: cache.indexPath(layer.digest) });
  }
  return { reference, manifestDigest: digest, manifestBytes: bytes, manifestAnnotations: manifest.annotations ?? {}, config, configDescriptor: manifest.config, configBytes, layers, fetched: false };
}
