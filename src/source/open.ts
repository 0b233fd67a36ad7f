/**
 * Opens an image named with skopeo's transport syntax:
 * oci-archive:PATH[:TAG], oci:DIR[:TAG], docker-archive:PATH,
 * docker-daemon:NAME, docker://REF, or a bare path (detected).
 */
import { spawn } from 'node:child_process';
import { lstat, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import { formatReference, parseReference } from '../image/reference.js';
import { hostArchitecture } from '../pipeline/platform.js';
import { SourceError } from './errors.js';
import type { RegistryOptions } from '../registry/client.js';
import { openRegularFile, readExactly, resolveInsideRoot } from '../regular-file.js';
import { checkConfigShape, checkIndex, checkLayerCount, checkManifestShape } from './shape.js';
import { checkDigest, verifyingStream } from './verify.js';
import { normalizeMemberName, TarFile } from './tar-file.js';
import type { ImageSource, SourceDescriptor, SourceImageConfig, SourceManifest, SourceTransport } from './types.js';

export { SourceError };

export interface SourceSpec {
  transport: SourceTransport;
  /** File or directory for the file transports; the reference for docker and docker-daemon. */
  target: string;
  /** oci-archive / oci: the ref.name to select. */
  tag?: string;
}

const MEDIA_INDEX = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const MEDIA_MANIFEST = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json']);

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Splits "PATH:TAG" the way skopeo does, at the first colon (the TAG may be a
 * reference, `x.tar:urunc/net:1`), but keeps a path that exists with its colons.
 */
async function splitPathTag(text: string): Promise<{ path: string; tag?: string }> {
  if (await exists(text)) return { path: text };
  for (let colon = text.indexOf(':'); colon > 0 && colon < text.length - 1; colon = text.indexOf(':', colon + 1)) {
    if (await exists(text.slice(0, colon))) return { path: text.slice(0, colon), tag: text.slice(colon + 1) };
  }
  // Nothing there: the last colon, for the "no such file" of the path alone.
  const colon = text.lastIndexOf(':');
  if (colon > 0) {
    const tag = text.slice(colon + 1);
    if (tag !== '' && !tag.includes('/')) return { path: text.slice(0, colon), tag };
  }
  return { path: text };
}

/**
 * A bare SOURCE that does not exist is still a path, not a registry
 * reference, when it is written like one: starting with /, ./, ../ or ~,
 * or ending in .tar, .tgz, .tar.gz or .oci (docs/inspect.md, SOURCE).
 */
function looksLikePath(text: string): boolean {
  return /^(\/|\.\.?\/|~)/.test(text) || /\.(tar|tgz|tar\.gz|oci)$/i.test(text);
}

export async function parseSource(text: string): Promise<SourceSpec> {
  if (text === '') throw new SourceError('no image source given', 'name an archive, a layout directory or a reference');
  if (text.startsWith('docker://')) return { transport: 'docker', target: text.slice('docker://'.length) };
  for (const transport of ['oci-archive', 'oci'] as const) {
    if (text.startsWith(`${transport}:`)) {
      const { path, tag } = await splitPathTag(text.slice(transport.length + 1));
      return { transport, target: path, ...(tag !== undefined ? { tag } : {}) };
    }
  }
  if (text.startsWith('docker-archive:')) {
    // skopeo's docker-archive:PATH[:REF]; lapin reads the archive's first image, or the one named.
    const { path, tag } = await splitPathTag(text.slice('docker-archive:'.length));
    return { transport: 'docker-archive', target: path, ...(tag !== undefined ? { tag } : {}) };
  }
  if (text.startsWith('docker-daemon:')) return { transport: 'docker-daemon', target: text.slice('docker-daemon:'.length) };

  // A bare path: a layout directory or an archive, detected from what it holds.
  const { path, tag } = await splitPathTag(text);
  let info;
  try {
    info = await stat(path);
  } catch {
    if (looksLikePath(text) || looksLikePath(path)) {
      throw new SourceError(`${path}: no such file or directory`, 'name an existing archive or layout directory; for a registry reference, write docker://NAME');
    }
    if (/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]*)?(@sha256:[a-f0-9]{64})?$/i.test(text) || /^[\w.-]+(:\d+)?\//.test(text)) {
      return { transport: 'docker', target: text };
    }
    throw new SourceError(`${text}: no such file or directory`, 'name an archive, a layout directory, or use oci-archive:, oci:, docker-archive:, docker-daemon: or docker://');
  }
  if (info.isDirectory()) return { transport: 'oci', target: path, ...(tag !== undefined ? { tag } : {}) };
  let archive: TarFile;
  try {
    archive = await TarFile.open(path);
  } catch (error) {
    if (error instanceof LapinError) throw error;
    throw new SourceError(`${path}: ${(error as Error).message}`, 'give an OCI or docker archive (.tar), or a layout directory');
  }
  // An archive holding both (lapin writes those) is read as OCI: it keeps manifest annotations.
  if (archive.member('index.json')) return { transport: 'oci-archive', target: path, ...(tag !== undefined ? { tag } : {}) };
  if (archive.member('manifest.json')) return { transport: 'docker-archive', target: path, ...(tag !== undefined ? { tag } : {}) };
  throw new SourceError(`${path} holds neither index.json (OCI layout) nor manifest.json (docker save)`);
}

/** Manifests, indexes and configs are small JSON; more than this is no image lapin reads. */
export const JSON_LIMIT = 16 * 1024 * 1024;

/** Reads a layout's or archive's named files. */
export interface FileReader {
  has(name: string): Promise<boolean>;
  /** The whole file, refused past `maxBytes`. */
  read(name: string, maxBytes: number): Promise<Buffer>;
  stream(name: string): Promise<{ stream: Readable; size: number }>;
}

/**
 * A layout directory's files: each must resolve inside the directory and be
 * a regular file (no FIFO, no device), and is read no further than its size.
 */
export function directoryReader(dir: string): FileReader {
  const opened = async (name: string) => {
    const what = `${dir}: ${name}`;
    const real = await resolveInsideRoot(dir, name, { what });
    if (real === undefined) throw new SourceError(`${what} is missing`);
    return openRegularFile(real, { what });
  };
  return {
    has: async (name) => (await lstat(join(dir, ...posix.normalize(`/${name}`).split('/'))).then(() => true, () => false)),
    read: async (name, maxBytes) => {
      const { handle, size } = await opened(name);
      try {
        if (size > maxBytes) throw new SourceError(`${dir}: ${name} is ${size} bytes, more than the ${maxBytes} lapin reads for it`);
        return await readExactly(handle, size, 0, `${dir}: ${name}`);
      } finally {
        await handle.close();
      }
    },
    stream: async (name) => {
      const { handle, size } = await opened(name);
      if (size === 0) {
        await handle.close();
        return { stream: Readable.from([]), size };
      }
      return { stream: handle.createReadStream({ start: 0, end: size - 1 }), size };
    },
  };
}

export function archiveReader(archive: TarFile): FileReader {
  const member = (name: string) => {
    const found = archive.member(name);
    if (!found) throw new SourceError(`${archive.path}: ${name} is missing from the archive`);
    return found;
  };
  return {
    has: async (name) => archive.member(name) !== undefined,
    read: (name, maxBytes) => archive.read(member(name), maxBytes),
    stream: async (name) => {
      const found = member(name);
      return { stream: await archive.stream(found), size: found.size };
    },
  };
}

/** Never quotes the text: a file that is not JSON may be anything (a symlink's target, a secret). */
export function parseJson<T>(data: Buffer, what: string): T {
  try {
    return JSON.parse(data.toString('utf8')) as T;
  } catch {
    throw new SourceError(`${what} is not valid JSON`, 'the source is damaged or is not an image');
  }
}

function blobName(digest: string): string {
  const match = /^([a-z0-9]+):([a-f0-9]+)$/.exec(digest);
  if (!match) throw new SourceError(`the image names a blob by ${JSON.stringify(digest)}, which is not a digest (ALGORITHM:HEX, e.g. sha256:<64 hex digits>)`, 'the source is damaged or hostile; use another image');
  return `blobs/${match[1]}/${match[2]}`;
}


/** `urunc/net:1` as io.containerd.image.name writes it (docker.io/urunc/net:1); undefined for no reference. */
function normalizedName(text: string): string | undefined {
  try {
    return formatReference(parseReference(text));
  } catch {
    return undefined;
  }
}

/** Picks the manifest named by tag, else the only one, else the host platform's. */
async function selectManifest(files: FileReader, where: string, tag: string | undefined): Promise<SourceDescriptor> {
  const manifests = checkIndex(parseJson<unknown>(await files.read('index.json', JSON_LIMIT), `${where}: index.json`), `${where}: index.json`);
  if (manifests.length === 0) throw new SourceError(`${where}: index.json lists no images`);
  let candidates = manifests;
  if (tag !== undefined) {
    candidates = manifests.filter((m) => {
      const ref = m.annotations?.['org.opencontainers.image.ref.name'];
      const name = m.annotations?.['io.containerd.image.name'];
      return ref === tag || name === tag || (name !== undefined && (name.endsWith(`:${tag}`) || name === normalizedName(tag)));
    });
    if (candidates.length === 0) {
      const known = manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).filter((t) => t !== undefined);
      throw new SourceError(`${where}: no image tagged ${JSON.stringify(tag)}`, known.length ? `tags here: ${known.join(', ')}` : 'this layout has no tags; leave the tag out');
    }
  }
  const distinct = [...new Map(candidates.map((m) => [m.digest, m])).values()];
  if (distinct.length > 1) {
    const tags = candidates.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).filter((t) => t !== undefined);
    throw new SourceError(`${where} holds ${distinct.length} images; say which`, tags.length ? `add :TAG, one of ${tags.join(', ')}` : 'add :TAG');
  }
  return resolveIndex(files, where, distinct[0] as SourceDescriptor);
}

/** Follows an image index down to the manifest for this host (or the only one). */
async function resolveIndex(files: FileReader, where: string, descriptor: SourceDescriptor, depth = 0): Promise<SourceDescriptor> {
  if (!MEDIA_INDEX.has(descriptor.mediaType) || depth > 4) return descriptor;
  const what = `${where}: index ${descriptor.digest}`;
  const images = checkIndex(parseJson<unknown>(await readVerified(files, descriptor, what), what), what).filter((m) => m.platform?.architecture !== 'unknown');
  const host = hostArchitecture();
  const chosen = images.length === 1 ? images[0] : images.find((m) => m.platform?.architecture === host);
  if (!chosen) throw new SourceError(`${where}: the image index has no manifest for ${host}`);
  return resolveIndex(files, where, chosen, depth + 1);
}

/** A blob read whole and checked against its descriptor's digest and size, as a registry pull checks it. */
async function readVerified(files: FileReader, descriptor: SourceDescriptor, what: string): Promise<Buffer> {
  const data = await files.read(blobName(descriptor.digest), JSON_LIMIT);
  checkDigest(data, descriptor.digest, typeof descriptor.size === 'number' ? descriptor.size : undefined, what);
  return data;
}

class LayoutSource implements ImageSource {
  private manifestCache?: { manifest: SourceManifest; digest: string; bytes: Buffer };
  constructor(
    readonly name: string,
    readonly transport: SourceTransport,
    private readonly files: FileReader,
    private readonly where: string,
    private readonly tag: string | undefined,
  ) {}

  async manifest(): Promise<{ manifest: SourceManifest; digest: string; bytes: Buffer }> {
    if (this.manifestCache) return this.manifestCache;
    if (!(await this.files.has('index.json'))) {
      const hint = this.transport === 'oci'
        ? 'name an image layout (lapin build -o type=oci,dest=DIR,tar=false writes one; -o type=local writes only the rootfs) or an archive'
        : (await this.files.has('manifest.json')) ? `it is a docker save archive: read it as docker-archive:${this.where}` : 'name an OCI archive (lapin build -o FILE.tar writes one)';
      throw new SourceError(`${this.where} is not an OCI image layout (no index.json)`, hint);
    }
    const descriptor = await selectManifest(this.files, this.where, this.tag);
    if (!MEDIA_MANIFEST.has(descriptor.mediaType)) throw new SourceError(`${this.where}: unsupported manifest type ${descriptor.mediaType}`);
    const what = `${this.where}: manifest ${descriptor.digest}`;
    const bytes = await readVerified(this.files, descriptor, what);
    const manifest = checkManifestShape(parseJson<unknown>(bytes, what), what);
    this.manifestCache = { manifest, digest: descriptor.digest, bytes };
    return this.manifestCache;
  }

  async config(): Promise<{ config: SourceImageConfig; digest: string; bytes: Buffer }> {
    const { manifest } = await this.manifest();
    const what = `${this.where}: config ${manifest.config.digest}`;
    const bytes = await readVerified(this.files, manifest.config, what);
    const config = checkConfigShape(parseJson<unknown>(bytes, what), what);
    return { config, digest: manifest.config.digest, bytes };
  }

  async blob(descriptor: SourceDescriptor): Promise<Readable> {
    const { stream } = await this.files.stream(blobName(descriptor.digest));
    return verifyingStream(stream, descriptor.digest, typeof descriptor.size === 'number' ? descriptor.size : undefined, `${this.where}: blob ${descriptor.digest}`);
  }

  async close(): Promise<void> {}
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, SourceDescriptor>;
}

/** docker save's format: manifest.json names the config and the layer files. */
class DockerArchiveSource implements ImageSource {
  readonly transport: SourceTransport;
  private entryCache?: DockerManifestEntry;
  private configCache?: { config: SourceImageConfig; digest: string; bytes: Buffer };
  constructor(
    readonly name: string,
    private readonly archive: TarFile,
    private readonly tag: string | undefined,
    private readonly cleanup?: () => Promise<void>,
    transport: SourceTransport = 'docker-archive',
  ) {
    this.transport = transport;
  }

  private async entry(): Promise<DockerManifestEntry> {
    if (this.entryCache) return this.entryCache;
    const member = this.archive.member('manifest.json');
    if (!member) throw new SourceError(`${this.archive.path} is not a docker archive (no manifest.json)`);
    const entries = parseJson<DockerManifestEntry[]>(await this.archive.read(member, JSON_LIMIT), `${this.archive.path}: manifest.json`);
    if (!Array.isArray(entries) || entries.length === 0) throw new SourceError(`${this.archive.path}: manifest.json lists no images`);
    if (!entries.every((e) => typeof e === 'object' && e !== null && typeof e.Config === 'string' && Array.isArray(e.Layers) && e.Layers.every((l) => typeof l === 'string'))) {
      throw new SourceError(`${this.archive.path}: manifest.json is not docker save's format (Config and Layers)`);
    }
    // Read when a name is asked for: a number or a list of anything there was a TypeError.
    if (!entries.every((e) => e.RepoTags === undefined || e.RepoTags === null || (Array.isArray(e.RepoTags) && e.RepoTags.every((t) => typeof t === 'string')))) {
      throw new SourceError(`${this.archive.path}: manifest.json is not docker save's format (RepoTags is not a list of names)`);
    }
    let entry = entries[0] as DockerManifestEntry;
    if (this.tag !== undefined) {
      const tag = this.tag;
      const wanted = normalizedName(tag);
      const found = entries.find((e) => (e.RepoTags ?? []).some((t) => t === tag || t.endsWith(`:${tag}`) || t.endsWith(`/${tag}`) || (wanted !== undefined && normalizedName(t) === wanted)));
      if (!found) {
        const names = entries.flatMap((e) => e.RepoTags ?? []);
        throw new SourceError(`${this.archive.path}: no image named ${JSON.stringify(tag)}`, names.length > 0 ? `names here: ${names.join(', ')}` : 'this archive names no image; leave the name out');
      }
      entry = found;
    } else if (entries.length > 1) {
      throw new SourceError(`${this.archive.path} holds ${entries.length} images; say which`, 'add :NAME:TAG after the path');
    }
    this.entryCache = entry;
    return entry;
  }

  async manifest(): Promise<{ manifest: SourceManifest }> {
    const entry = await this.entry();
    const configMember = this.archive.member(entry.Config);
    if (!configMember) throw new SourceError(`${this.archive.path}: ${entry.Config} is missing`);
    checkLayerCount(entry.Layers.length, `${this.archive.path}: manifest.json`);
    const layers: SourceDescriptor[] = entry.Layers.map((path) => {
      const member = this.archive.member(path);
      if (!member) throw new SourceError(`${this.archive.path}: layer ${path} is missing`);
      // docker-archive has no layer descriptors; the member path stands in for the digest.
      return { mediaType: 'application/vnd.docker.image.rootfs.diff.tar', digest: `path:${path}`, size: member.size };
    });
    const configDigest = (/sha256[:/]([a-f0-9]{64})$/.exec(entry.Config) ?? /^(?:\.\/)?([a-f0-9]{64})\.json$/.exec(entry.Config))?.[1];
    return {
      manifest: {
        schemaVersion: 2,
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: configDigest ? `sha256:${configDigest}` : `path:${entry.Config}`, size: configMember.size },
        layers,
      },
    };
  }

  async config(): Promise<{ config: SourceImageConfig; digest: string; bytes: Buffer }> {
    if (this.configCache) return this.configCache;
    const entry = await this.entry();
    const member = this.archive.member(entry.Config);
    if (!member) throw new SourceError(`${this.archive.path}: ${entry.Config} is missing`);
    const { manifest } = await this.manifest();
    const what = `${this.archive.path}: ${entry.Config}`;
    const data = await this.archive.read(member, JSON_LIMIT);
    // docker save names the config by its digest ("<hex>.json", "blobs/sha256/<hex>").
    if (!manifest.config.digest.startsWith('path:')) checkDigest(data, manifest.config.digest, undefined, what);
    this.configCache = { config: checkConfigShape(parseJson<unknown>(data, what), what), digest: manifest.config.digest, bytes: data };
    return this.configCache;
  }

  /**
   * A layer checked as it is read: by the digest in its name when docker
   * saved it content-addressed ("blobs/sha256/<hex>"), else by the config's
   * diff_id for it (the older "<id>/layer.tar" is the uncompressed tar).
   */
  async blob(descriptor: SourceDescriptor): Promise<Readable> {
    const path = descriptor.digest.startsWith('path:') ? descriptor.digest.slice(5) : blobName(descriptor.digest);
    const member = this.archive.member(path);
    if (!member) throw new SourceError(`${this.archive.path}: ${path} is missing`);
    const what = `${this.archive.path}: layer ${path}`;
    const named = /(?:^|\/)sha256\/([a-f0-9]{64})$/.exec(normalizeMemberName(path))?.[1];
    let expected = named === undefined ? undefined : `sha256:${named}`;
    if (expected === undefined) {
      const entry = await this.entry();
      const position = entry.Layers.indexOf(path);
      const diffId = (await this.config()).config.rootfs?.diff_ids?.[position];
      if (typeof diffId !== 'string') throw new SourceError(`${what}: the config lists no diff_id for it, so it cannot be verified`, 'the archive is damaged');
      expected = diffId;
    }
    return verifyingStream(await this.archive.stream(member), expected, member.size, what);
  }

  async close(): Promise<void> {
    await this.cleanup?.();
  }
}

async function openArchive(path: string): Promise<TarFile> {
  try {
    return await TarFile.open(path);
  } catch (error) {
    if (error instanceof LapinError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SourceError(`${path}: no such file`);
    if (code === 'EISDIR') throw new SourceError(`${path} is a directory`, `use oci:${path} for a layout directory`);
    throw new SourceError(`${path}: ${(error as Error).message}`);
  }
}

/** Runs `docker save` into a temporary file; docker honours DOCKER_HOST and its other variables itself. */
async function dockerSave(name: string): Promise<{ file: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'lapin-daemon-'));
  const file = join(dir, 'image.tar');
  const stderr: Buffer[] = [];
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn('docker', ['save', '-o', file, name], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (exitCode) => resolve(exitCode ?? 1));
  }).catch(async (error: NodeJS.ErrnoException) => {
    await rm(dir, { recursive: true, force: true });
    if (error.code === 'ENOENT') throw new SourceError('docker-daemon: needs the docker command, which is not on PATH');
    throw error;
  });
  if (code !== 0) {
    await rm(dir, { recursive: true, force: true });
    const message = Buffer.concat(stderr).toString('utf8').trim().split('\n').at(-1) ?? '';
    throw new SourceError(`docker save ${name} failed: ${message}`, 'check that the image exists (docker images) and DOCKER_HOST points at the daemon');
  }
  return { file, dir };
}

/** How sources that need the network are reached (the registry transport). */
export interface OpenSourceOptions {
  /** --insecure-registry hosts, credentials, retries, --debug, as for a build. */
  registry?: RegistryOptions;
  /** Where pulled blobs are kept; default lapin's cache directory. */
  cacheDir?: string;
}

export async function openSource(text: string, options: OpenSourceOptions = {}): Promise<ImageSource> {
  const spec = await parseSource(text);
  switch (spec.transport) {
    case 'oci': {
      let info;
      try {
        info = await stat(spec.target);
      } catch {
        throw new SourceError(`${spec.target}: no such directory`);
      }
      if (!info.isDirectory()) throw new SourceError(`${spec.target} is not a directory`, `use oci-archive:${spec.target} for an archive`);
      return new LayoutSource(text, 'oci', directoryReader(spec.target), spec.target, spec.tag);
    }
    case 'oci-archive': {
      const archive = await openArchive(spec.target);
      return new LayoutSource(text, 'oci-archive', archiveReader(archive), spec.target, spec.tag);
    }
    case 'docker-archive':
      return new DockerArchiveSource(text, await openArchive(spec.target), spec.tag);
    case 'docker-daemon': {
      const { file, dir } = await dockerSave(spec.target);
      const cleanup = () => rm(dir, { recursive: true, force: true });
      try {
        return new DockerArchiveSource(text, await openArchive(file), undefined, cleanup, 'docker-daemon');
      } catch (error) {
        await cleanup();
        throw error;
      }
    }
    case 'docker': {
      // Loaded only here: the registry client is a good part of lapin's start-up otherwise.
      const { openRegistrySource } = await import('./registry.js');
      return openRegistrySource(text, spec.target, options);
    }
  }
}
