// Drives the real image consumers (docker, containerd's ctr, podman, skopeo,
// umoci) against an archive and reports what each one saw, so consumer tests
// can assert names, labels, annotations and files.
//
// Each helper isolates itself (a containerd namespace, podman storage in a
// temp dir, a temp umoci bundle) so test files can run in parallel; docker
// shares one daemon, so tests should load images under tags no other test
// uses. Everything a helper creates is undone by its result's cleanup(), and
// cleanupAll() undoes whatever is still outstanding (call it from after()).
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';

// ---------------------------------------------------------------------------
// Running commands

export class ConsumerCommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`${command} failed (exit ${exitCode ?? 'signal'}):\n${stderr.trim() || stdout.trim()}`);
    this.name = 'ConsumerCommandError';
  }
}

interface RunOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

interface RunResult {
  stdout: string;
  stderr: string;
}

const defaultTimeoutMs = 180_000;

function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      file,
      args,
      {
        env: options.env ?? process.env,
        timeout: options.timeoutMs ?? defaultTimeoutMs,
        maxBuffer: 256 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === 'number' ? error.code : null;
          reject(new ConsumerCommandError([file, ...args].join(' '), code, stdout, stderr));
        } else {
          resolvePromise({ stdout, stderr });
        }
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Which consumers exist, and skipping

export type Consumer = 'docker' | 'ctr' | 'podman' | 'skopeo' | 'umoci';

const programsOf: Record<Consumer, readonly string[]> = {
  docker: ['dockerd', 'docker', 'containerd', 'ctr'],
  ctr: ['containerd', 'ctr'],
  podman: ['podman'],
  skopeo: ['skopeo'],
  umoci: ['umoci', 'tar'],
};

// These talk to root-only daemons or need root to own files in storage.
const needsRoot: ReadonlySet<Consumer> = new Set(['docker', 'ctr', 'podman', 'umoci']);

function findProgram(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

export function isCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/**
 * Why the given consumers cannot run here, or false when they all can.
 * Meant for node:test's `skip` option. Under CI a missing consumer is an
 * error, never a skip: this throws instead of returning a reason.
 */
export function requireConsumers(consumers: readonly Consumer[]): string | false {
  const problems: string[] = [];
  for (const consumer of consumers) {
    const missing = programsOf[consumer].filter((program) => findProgram(program) === undefined);
    if (missing.length > 0) problems.push(`${consumer}: missing ${missing.join(', ')}`);
    if (needsRoot.has(consumer) && process.getuid?.() !== 0) problems.push(`${consumer}: needs root`);
  }
  if (problems.length === 0) return false;
  const reason = `consumers unavailable (${problems.join('; ')}); install them with scripts/install-deps.sh as root`;
  if (isCI()) throw new Error(`CI must run every consumer test: ${reason}`);
  return reason;
}

// ---------------------------------------------------------------------------
// Daemons (scripts/services.sh)

export interface ServicesEnv {
  dockerHost: string;
  dockerBin: string;
  containerdAddress: string;
  snapshotter: string;
}

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const servicesScript = join(repoRoot, 'scripts', 'services.sh');

export function servicesDir(): string {
  return process.env.LAPIN_SERVICES_DIR || '/tmp/lapin-services';
}

function parseEnvFile(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return values;
}

let servicesEnvCache: ServicesEnv | undefined;

/** What services.sh wrote to <dir>/env; throws when the daemons were never started. */
export function servicesEnv(): ServicesEnv {
  if (servicesEnvCache) return servicesEnvCache;
  const envFile = join(servicesDir(), 'env');
  if (!existsSync(envFile)) {
    throw new Error(`${envFile} is missing: run scripts/services.sh start (or call startServices()) first`);
  }
  const values = parseEnvFile(readFileSync(envFile, 'utf8'));
  const need = (key: string): string => {
    const value = values.get(key);
    if (!value) throw new Error(`${envFile} has no ${key}; rerun scripts/services.sh start`);
    return value;
  };
  servicesEnvCache = {
    dockerHost: need('DOCKER_HOST'),
    dockerBin: values.get('DOCKER_BIN') || (existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker'),
    containerdAddress: need('CONTAINERD_ADDRESS'),
    snapshotter: values.get('CONTAINERD_SNAPSHOTTER') || 'native',
  };
  return servicesEnvCache;
}

/** Starts (or reuses) containerd and dockerd; cheap when they already run. */
export async function startServices(): Promise<ServicesEnv> {
  await run('bash', [servicesScript, 'start'], { timeoutMs: 300_000 });
  servicesEnvCache = undefined;
  return servicesEnv();
}

// ---------------------------------------------------------------------------
// File trees: what a consumer shows as the image's root file system

export type FileType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface FileEntry {
  /** Absolute path inside the image, e.g. `/urunc.json`; the root itself is not listed. */
  path: string;
  type: FileType;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  size: number;
  uid: number;
  gid: number;
  /** Symlink target, or the path a hard link points at. */
  linkTarget?: string;
  /** Hex sha256 of a regular file's contents. */
  sha256?: string;
}

// Contents of files up to this size are kept in memory for read().
const keepContentsUpTo = 8 * 1024 * 1024;

export class FileTree {
  readonly entries = new Map<string, FileEntry>();
  private readonly contents = new Map<string, Buffer>();

  add(entry: FileEntry, contents?: Buffer): void {
    this.entries.set(entry.path, entry);
    if (contents !== undefined && contents.length <= keepContentsUpTo) this.contents.set(entry.path, contents);
  }

  delete(path: string): void {
    this.entries.delete(path);
    this.contents.delete(path);
  }

  paths(): string[] {
    return [...this.entries.keys()].sort();
  }

  has(path: string): boolean {
    return this.entries.has(normalizeImagePath(path));
  }

  get(path: string): FileEntry | undefined {
    return this.entries.get(normalizeImagePath(path));
  }

  read(path: string): Buffer {
    const key = normalizeImagePath(path);
    const entry = this.entries.get(key);
    if (!entry) throw new Error(`${key} is not in the image (has: ${this.paths().join(', ')})`);
    const contents = this.contents.get(key);
    if (contents === undefined) throw new Error(`${key} is a ${entry.type} of ${entry.size} bytes; its contents were not kept`);
    return contents;
  }

  readText(path: string): string {
    return this.read(path).toString('utf8');
  }

  readJson(path: string): unknown {
    return JSON.parse(this.readText(path)) as unknown;
  }
}

/** `./a/b/`, `a/b` and `/a/b` all become `/a/b`. */
export function normalizeImagePath(path: string): string {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  return '/' + parts.join('/');
}

const sha256Hex = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function fileTypeOfTarHeader(type: tar.Header['type']): FileType {
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'directory';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'hardlink';
    default:
      return 'other';
  }
}

/** Lists a tar stream into a FileTree, keeping small files' contents. */
export function fileTreeFromTar(stream: NodeJS.ReadableStream): Promise<FileTree> {
  return new Promise((resolvePromise, reject) => {
    const tree = new FileTree();
    const extract = tar.extract();
    extract.on('entry', (header, body, next) => {
      const chunks: Buffer[] = [];
      const hash = createHash('sha256');
      let kept = 0;
      body.on('data', (data: unknown) => {
        const chunk = data as Buffer;
        hash.update(chunk);
        kept += chunk.length;
        if (kept <= keepContentsUpTo) chunks.push(chunk);
      });
      body.on('end', () => {
        const path = normalizeImagePath(header.name);
        if (path !== '/') {
          const type = fileTypeOfTarHeader(header.type);
          const entry: FileEntry = {
            path,
            type,
            mode: (header.mode ?? 0) & 0o7777,
            size: header.size ?? 0,
            uid: header.uid ?? 0,
            gid: header.gid ?? 0,
          };
          if (type === 'symlink' && header.linkname) entry.linkTarget = header.linkname;
          if (type === 'hardlink' && header.linkname) entry.linkTarget = normalizeImagePath(header.linkname);
          if (type === 'file') {
            entry.sha256 = hash.digest('hex');
            tree.add(entry, kept <= keepContentsUpTo ? Buffer.concat(chunks) : undefined);
          } else {
            tree.add(entry);
          }
        }
        next();
      });
      body.on('error', reject);
    });
    extract.on('finish', () => resolvePromise(tree));
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
}

/** Lists a directory on disk (an unpacked or mounted rootfs) into a FileTree. */
export async function fileTreeFromDir(root: string): Promise<FileTree> {
  const tree = new FileTree();
  async function walk(dir: string, imageDir: string): Promise<void> {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const onDisk = join(dir, name);
      const path = imageDir === '/' ? `/${name}` : `${imageDir}/${name}`;
      const stats = await lstat(onDisk);
      const type: FileType = stats.isFile()
        ? 'file'
        : stats.isDirectory()
          ? 'directory'
          : stats.isSymbolicLink()
            ? 'symlink'
            : 'other';
      const entry: FileEntry = {
        path,
        type,
        mode: stats.mode & 0o7777,
        size: type === 'file' ? stats.size : 0,
        uid: stats.uid,
        gid: stats.gid,
      };
      if (type === 'symlink') entry.linkTarget = await readlink(onDisk);
      if (type === 'file') {
        const data = await readFile(onDisk);
        entry.sha256 = sha256Hex(data);
        tree.add(entry, data);
      } else {
        tree.add(entry);
      }
      if (type === 'directory') await walk(onDisk, path);
    }
  }
  await walk(root, '/');
  return tree;
}

// ---------------------------------------------------------------------------
// Cleanup bookkeeping

const pendingCleanups = new Set<() => Promise<void>>();

function trackCleanup(action: () => Promise<void>): () => Promise<void> {
  let done = false;
  const once = async (): Promise<void> => {
    if (done) return;
    done = true;
    pendingCleanups.delete(once);
    await action();
  };
  pendingCleanups.add(once);
  return once;
}

/** Undoes everything the helpers created that was not cleaned up yet. */
export async function cleanupAll(): Promise<void> {
  const errors: unknown[] = [];
  for (const cleanup of [...pendingCleanups]) {
    try {
      await cleanup();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'consumer cleanup failed');
}

let uniqueCounter = 0;
/** A name no other helper call, here or in a parallel test process, uses. */
export function uniqueName(prefix: string): string {
  uniqueCounter += 1;
  return `${prefix}-${process.pid}-${uniqueCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

async function makeTempDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `lapin-consumer-${label}-`));
}

// ---------------------------------------------------------------------------
// Image JSON shapes (only the parts tests look at)

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string; variant?: string };
}

export interface OciManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface OciIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: {
    Labels?: Record<string, string> | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
  };
  rootfs?: { type: string; diff_ids: string[] };
}

const indexMediaTypes = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

function isIndex(document: { mediaType?: string; manifests?: unknown }): boolean {
  return (document.mediaType !== undefined && indexMediaTypes.has(document.mediaType)) || Array.isArray(document.manifests);
}

function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${what} is not JSON: ${text.slice(0, 200)}`);
  }
}

/** Go's name for this machine's architecture, as images spell it. */
export function hostArchitecture(): string {
  switch (process.arch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    default:
      return process.arch; // arm64, arm, ppc64, s390x, riscv64 match already
  }
}

// ---------------------------------------------------------------------------
// docker

export interface DockerImage {
  /** The name the image was inspected under (a loaded tag, or its id). */
  ref: string;
  id: string;
  repoTags: string[];
  labels: Record<string, string>;
  cmd: string[] | null;
  entrypoint: string[] | null;
  env: string[];
  architecture: string;
  os: string;
  /** RootFS.Layers: the uncompressed layer digests (diffIDs). */
  layers: string[];
  inspect: unknown;
}

export interface DockerLoadResult {
  /** Names from "Loaded image: NAME" lines. */
  names: string[];
  /** Ids from "Loaded image ID: sha256:..." lines (images loaded without a tag). */
  ids: string[];
  images: DockerImage[];
  output: string;
  /** The image's root file system as a container made from it sees it. */
  files(ref?: string, options?: DockerFilesOptions): Promise<FileTree>;
  cleanup(): Promise<void>;
}

export interface DockerFilesOptions {
  /** Keep the files docker's init layer adds to every container (/.dockerenv, /etc/hosts...). */
  keepInitLayer?: boolean;
}

function dockerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, DOCKER_HOST: servicesEnv().dockerHost };
}

function docker(args: readonly string[]): Promise<RunResult> {
  return run(servicesEnv().dockerBin, args, { env: dockerEnv() });
}

interface DockerInspectJson {
  Id: string;
  RepoTags?: string[] | null;
  Architecture?: string;
  Os?: string;
  Config?: {
    Labels?: Record<string, string> | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    Env?: string[] | null;
  } | null;
  RootFS?: { Layers?: string[] | null } | null;
}

export async function dockerInspect(ref: string): Promise<DockerImage> {
  const { stdout } = await docker(['image', 'inspect', ref]);
  const [inspect] = parseJson<DockerInspectJson[]>(stdout, `docker image inspect ${ref}`);
  if (!inspect) throw new Error(`docker image inspect ${ref} returned nothing`);
  return {
    ref,
    id: inspect.Id,
    repoTags: inspect.RepoTags ?? [],
    labels: inspect.Config?.Labels ?? {},
    cmd: inspect.Config?.Cmd ?? null,
    entrypoint: inspect.Config?.Entrypoint ?? null,
    env: inspect.Config?.Env ?? [],
    architecture: inspect.Architecture ?? '',
    os: inspect.Os ?? '',
    layers: inspect.RootFS?.Layers ?? [],
    inspect,
  };
}

// Entries docker's init layer puts in every container; none come from the image.
const dockerInitLeaves = [
  '/.dockerenv',
  '/dev/console',
  '/dev/pts',
  '/dev/shm',
  '/etc/hostname',
  '/etc/hosts',
  '/etc/mtab',
  '/etc/resolv.conf',
];
const dockerInitDirs = ['/dev', '/etc', '/proc', '/sys'];

function dropDockerInitLayer(tree: FileTree): void {
  for (const path of dockerInitLeaves) {
    const entry = tree.entries.get(path);
    if (entry && (entry.type === 'directory' || entry.size === 0)) tree.delete(path);
  }
  for (const dir of dockerInitDirs) {
    const hasChildren = tree.paths().some((path) => path.startsWith(dir + '/'));
    if (!hasChildren) tree.delete(dir);
  }
}

/**
 * Lists an image's files through a container created (never started) from
 * it. docker refuses to create a container from an image with neither Cmd
 * nor Entrypoint, so a dummy command is given.
 */
export async function dockerFiles(ref: string, options: DockerFilesOptions = {}): Promise<FileTree> {
  const name = uniqueName('lapin-files');
  await docker(['create', '--name', name, ref, 'lapin-harness-placeholder']);
  try {
    const child = spawn(servicesEnv().dockerBin, ['export', name], {
      env: dockerEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolveExit) => child.on('close', resolveExit));
    const tree = await fileTreeFromTar(child.stdout);
    const code = await exited;
    if (code !== 0) throw new ConsumerCommandError(`docker export ${name}`, code, '', stderr);
    if (!options.keepInitLayer) dropDockerInitLayer(tree);
    return tree;
  } finally {
    await docker(['rm', '-f', name]).catch(() => undefined);
  }
}

/** `docker load -i archive` into the services' dockerd, then inspects what it loaded. */
export async function dockerLoad(archive: string): Promise<DockerLoadResult> {
  const { stdout, stderr } = await docker(['load', '-i', archive]);
  const output = stdout + stderr;
  const names: string[] = [];
  const ids: string[] = [];
  for (const line of output.split('\n')) {
    const byId = /^Loaded image ID: (\S+)/.exec(line);
    const byName = /^Loaded image: (\S+)/.exec(line);
    if (byId?.[1]) ids.push(byId[1]);
    else if (byName?.[1]) names.push(byName[1]);
  }
  const refs = [...names, ...ids];
  if (refs.length === 0) throw new Error(`docker load reported no image:\n${output}`);
  // Untag by name rather than force-removing by id: another test may have
  // loaded an identical image (same id) under its own tag.
  const cleanup = trackCleanup(async () => {
    for (const ref of refs) await docker(['rmi', ref]).catch(() => undefined);
  });
  const images: DockerImage[] = [];
  for (const ref of refs) images.push(await dockerInspect(ref));
  const firstRef = refs[0] as string;
  return {
    names,
    ids,
    images,
    output,
    files: (ref = firstRef, options) => dockerFiles(ref, options),
    cleanup,
  };
}

// ---------------------------------------------------------------------------
// containerd (ctr)

export interface CtrImage {
  name: string;
  /** Media type and digest of what the image name points at (a manifest or an index). */
  targetMediaType: string;
  targetDigest: string;
  /** Set when the target is an index. */
  index?: OciIndex;
  /** The manifest for this machine's platform (or the only one). */
  manifestDigest: string;
  manifest: OciManifest;
  manifestAnnotations: Record<string, string>;
  config: ImageConfig;
  labels: Record<string, string>;
}

export interface CtrImportOptions {
  /** Defaults to a fresh unique namespace. */
  namespace?: string;
  allPlatforms?: boolean;
  /** Default true: unpack into the snapshotter, which proves the layers apply. */
  unpack?: boolean;
  /** e.g. `linux/arm64`; ctr's default is this machine's platform. */
  platform?: string;
}

export interface CtrImportResult {
  namespace: string;
  /** Every image name in the namespace after the import (`ctr images ls -q`). */
  names: string[];
  images: CtrImage[];
  output: string;
  /** The image's root file system, via `ctr images mount` (which unpacks first if needed). */
  files(name?: string): Promise<FileTree>;
  /** Raw bytes of a blob in the content store. */
  content(digest: string): Promise<Buffer>;
  /** Keys of the snapshots (chain IDs once unpacked) in the namespace. */
  snapshots(): Promise<string[]>;
  cleanup(): Promise<void>;
}

function ctrArgs(namespace: string, args: readonly string[]): string[] {
  return ['--address', servicesEnv().containerdAddress, '--namespace', namespace, ...args];
}

function ctr(namespace: string, args: readonly string[]): Promise<RunResult> {
  return run('ctr', ctrArgs(namespace, args));
}

function ctrContent(namespace: string, digest: string): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('ctr', ctrArgs(namespace, ['content', 'get', digest]), { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(Buffer.concat(chunks));
      else reject(new ConsumerCommandError(`ctr content get ${digest}`, code, '', stderr));
    });
  });
}

function pickManifest(index: OciIndex, platform: string | undefined): Descriptor {
  const [wantOs, wantArch] = (platform ?? `linux/${hostArchitecture()}`).split('/');
  const withPlatform = index.manifests.filter((descriptor) => descriptor.platform !== undefined);
  const match =
    withPlatform.find((descriptor) => descriptor.platform?.os === wantOs && descriptor.platform?.architecture === wantArch) ??
    index.manifests[0];
  if (!match) throw new Error('the image index lists no manifests');
  return match;
}

async function ctrDescribe(namespace: string, name: string, platform: string | undefined): Promise<CtrImage> {
  const { stdout } = await ctr(namespace, ['images', 'ls']);
  const row = stdout
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .find((columns) => columns[0] === name);
  if (!row || row.length < 3) throw new Error(`ctr images ls has no row for ${name}:\n${stdout}`);
  const targetMediaType = row[1] as string;
  const targetDigest = row[2] as string;
  const target = parseJson<OciManifest & OciIndex>((await ctrContent(namespace, targetDigest)).toString('utf8'), `blob ${targetDigest}`);
  let index: OciIndex | undefined;
  let manifestDigest = targetDigest;
  let manifest: OciManifest = target;
  if (isIndex(target)) {
    index = target;
    manifestDigest = pickManifest(target, platform).digest;
    manifest = parseJson<OciManifest>((await ctrContent(namespace, manifestDigest)).toString('utf8'), `blob ${manifestDigest}`);
  }
  const config = parseJson<ImageConfig>((await ctrContent(namespace, manifest.config.digest)).toString('utf8'), `config ${manifest.config.digest}`);
  const image: CtrImage = {
    name,
    targetMediaType,
    targetDigest,
    manifestDigest,
    manifest,
    manifestAnnotations: manifest.annotations ?? {},
    config,
    labels: config.config?.Labels ?? {},
  };
  if (index) image.index = index;
  return image;
}

/** `ctr images import` into a private namespace of the services' containerd. */
export async function ctrImport(archive: string, options: CtrImportOptions = {}): Promise<CtrImportResult> {
  const namespace = options.namespace ?? uniqueName('lapin');
  const { snapshotter } = servicesEnv();
  const mounts = new Set<string>();
  const cleanup = trackCleanup(async () => {
    for (const target of mounts) {
      await ctr(namespace, ['images', 'unmount', '--rm', target]).catch(() => undefined);
      await rm(target, { recursive: true, force: true });
    }
    const { stdout } = await ctr(namespace, ['images', 'ls', '-q']).catch(() => ({ stdout: '' }));
    const left = stdout.split('\n').filter((line) => line !== '');
    if (left.length > 0) await ctr(namespace, ['images', 'rm', '--sync', ...left]).catch(() => undefined);
    // Only a namespace this helper made is removed; fails harmlessly if not empty.
    if (options.namespace === undefined) await ctr('default', ['namespaces', 'rm', namespace]).catch(() => undefined);
  });
  const args = ['images', 'import', '--snapshotter', snapshotter];
  if (options.allPlatforms) args.push('--all-platforms');
  if (options.unpack === false) args.push('--no-unpack');
  if (options.platform) args.push('--platform', options.platform);
  args.push(archive);
  let output: string;
  try {
    const result = await ctr(namespace, args);
    output = result.stdout + result.stderr;
  } catch (error) {
    await cleanup();
    throw error;
  }
  const { stdout } = await ctr(namespace, ['images', 'ls', '-q']);
  const names = stdout.split('\n').filter((line) => line !== '').sort();
  const images: CtrImage[] = [];
  for (const name of names) images.push(await ctrDescribe(namespace, name, options.platform));

  const files = async (name = names[0]): Promise<FileTree> => {
    if (name === undefined) throw new Error('ctr imported no image');
    const target = await makeTempDir('ctr-mount');
    mounts.add(target);
    const mountArgs = ['images', 'mount', '--snapshotter', snapshotter];
    if (options.platform) mountArgs.push('--platform', options.platform);
    await ctr(namespace, [...mountArgs, name, target]);
    try {
      return await fileTreeFromDir(target);
    } finally {
      await ctr(namespace, ['images', 'unmount', '--rm', target]);
      mounts.delete(target);
      await rm(target, { recursive: true, force: true });
    }
  };
  const snapshots = async (): Promise<string[]> => {
    const { stdout: listing } = await ctr(namespace, ['snapshots', '--snapshotter', snapshotter, 'ls']);
    return listing
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/)[0] ?? '')
      .filter((key) => key !== '')
      .sort();
  };
  return { namespace, names, images, output, files, content: (digest) => ctrContent(namespace, digest), snapshots, cleanup };
}

// ---------------------------------------------------------------------------
// podman

export interface PodmanImage {
  name: string;
  id: string;
  digest: string;
  repoTags: string[];
  labels: Record<string, string>;
  /** Manifest annotations, as podman keeps them. */
  annotations: Record<string, string>;
  cmd: string[] | null;
  entrypoint: string[] | null;
  architecture: string;
  os: string;
  inspect: unknown;
}

export interface PodmanLoadResult {
  /** Names from "Loaded image: NAME" lines. */
  names: string[];
  /** Every name in this private storage after the load (`podman images`). */
  listed: string[];
  images: PodmanImage[];
  output: string;
  /** The image's root file system via `podman image mount`. */
  files(name?: string): Promise<FileTree>;
  cleanup(): Promise<void>;
}

interface PodmanInspectJson {
  Id: string;
  Digest?: string;
  RepoTags?: string[] | null;
  Labels?: Record<string, string> | null;
  Annotations?: Record<string, string> | null;
  Architecture?: string;
  Os?: string;
  Config?: { Cmd?: string[] | null; Entrypoint?: string[] | null } | null;
}

/** `podman load -i archive` into throw-away storage (vfs, so no daemon or overlay needed). */
export async function podmanLoad(archive: string): Promise<PodmanLoadResult> {
  const dir = await makeTempDir('podman');
  await Promise.all(['root', 'runroot', 'tmp'].map((sub) => mkdir(join(dir, sub))));
  const globalArgs = [
    '--root', join(dir, 'root'),
    '--runroot', join(dir, 'runroot'),
    '--tmpdir', join(dir, 'tmp'),
    '--storage-driver', 'vfs',
    '--cgroup-manager', 'cgroupfs',
    '--events-backend', 'file',
  ];
  const podman = (args: readonly string[]): Promise<RunResult> => run('podman', [...globalArgs, ...args]);
  const mounted = new Set<string>();
  const cleanup = trackCleanup(async () => {
    for (const name of mounted) await podman(['image', 'unmount', name]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  try {
    const { stdout, stderr } = await podman(['load', '-i', archive]);
    const output = stdout + stderr;
    const names = output
      .split('\n')
      .map((line) => /^Loaded image(?:\(s\))?: (.+)$/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined)
      .flatMap((list) => list.split(',').map((name) => name.trim()));
    const listedOut = await podman(['images', '--format', '{{.Repository}}:{{.Tag}}']);
    const listed = listedOut.stdout.split('\n').filter((line) => line !== '').sort();
    const images: PodmanImage[] = [];
    for (const name of names) {
      const [inspect] = parseJson<PodmanInspectJson[]>((await podman(['image', 'inspect', name])).stdout, `podman image inspect ${name}`);
      if (!inspect) throw new Error(`podman image inspect ${name} returned nothing`);
      images.push({
        name,
        id: inspect.Id,
        digest: inspect.Digest ?? '',
        repoTags: inspect.RepoTags ?? [],
        labels: inspect.Labels ?? {},
        annotations: inspect.Annotations ?? {},
        cmd: inspect.Config?.Cmd ?? null,
        entrypoint: inspect.Config?.Entrypoint ?? null,
        architecture: inspect.Architecture ?? '',
        os: inspect.Os ?? '',
        inspect,
      });
    }
    const files = async (name = names[0]): Promise<FileTree> => {
      if (name === undefined) throw new Error('podman loaded no image');
      const mountPoint = (await podman(['image', 'mount', name])).stdout.trim();
      mounted.add(name);
      try {
        return await fileTreeFromDir(mountPoint);
      } finally {
        await podman(['image', 'unmount', name]);
        mounted.delete(name);
      }
    };
    return { names, listed, images, output, files, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

// ---------------------------------------------------------------------------
// skopeo

export interface SkopeoInspectResult {
  ref: string;
  /** `skopeo inspect --raw`: the manifest (or index) exactly as stored. */
  raw: OciManifest | OciIndex;
  rawText: string;
  /** Annotations of the raw document (a manifest's, or an index's). */
  annotations: Record<string, string>;
  /** `skopeo inspect`: skopeo's summary (Digest, Labels, Layers, Architecture, Os...). */
  summary: {
    Digest: string;
    Labels: Record<string, string> | null;
    Layers: string[];
    Architecture: string;
    Os: string;
    [key: string]: unknown;
  };
  labels: Record<string, string>;
  layers: string[];
  /** `skopeo inspect --config`: the image config. */
  config: ImageConfig;
}

/** `oci-archive:PATH` or `oci-archive:PATH:TAG`; the tag must equal the index's ref.name exactly. */
export function ociArchiveRef(archive: string, tag?: string): string {
  return tag === undefined ? `oci-archive:${archive}` : `oci-archive:${archive}:${tag}`;
}

/** Runs skopeo inspect three ways on a transport reference such as `oci-archive:x.tar:1`. */
export async function skopeoInspect(ref: string): Promise<SkopeoInspectResult> {
  const rawText = (await run('skopeo', ['inspect', '--raw', ref])).stdout;
  const raw = parseJson<OciManifest | OciIndex>(rawText, `skopeo inspect --raw ${ref}`);
  const summary = parseJson<SkopeoInspectResult['summary']>((await run('skopeo', ['inspect', ref])).stdout, `skopeo inspect ${ref}`);
  const config = parseJson<ImageConfig>((await run('skopeo', ['inspect', '--config', ref])).stdout, `skopeo inspect --config ${ref}`);
  return {
    ref,
    raw,
    rawText,
    annotations: raw.annotations ?? {},
    summary,
    labels: summary.Labels ?? {},
    layers: summary.Layers ?? [],
    config,
  };
}

// ---------------------------------------------------------------------------
// umoci

export interface RuntimeSpec {
  ociVersion: string;
  process?: { args?: string[]; env?: string[]; cwd?: string };
  root?: { path: string };
  annotations?: Record<string, string>;
}

export interface UmociUnpackResult {
  /** Where the archive's OCI layout was extracted. */
  layoutDir: string;
  bundleDir: string;
  /** The bundle's config.json (an OCI runtime spec). */
  config: RuntimeSpec;
  /** umoci copies the image config's labels (and a few image facts) here. */
  annotations: Record<string, string>;
  args: string[];
  files: FileTree;
  cleanup(): Promise<void>;
}

/** Extracts the archive's OCI layout and `umoci unpack`s the tag into a bundle. */
export async function umociUnpack(archive: string, tag: string): Promise<UmociUnpackResult> {
  const dir = await makeTempDir('umoci');
  const cleanup = trackCleanup(() => rm(dir, { recursive: true, force: true }));
  try {
    const layoutDir = join(dir, 'layout');
    const bundleDir = join(dir, 'bundle');
    await mkdir(layoutDir);
    await run('tar', ['-xf', archive, '-C', layoutDir]);
    await run('umoci', ['unpack', '--image', `${layoutDir}:${tag}`, bundleDir]);
    const config = parseJson<RuntimeSpec>(await readFile(join(bundleDir, 'config.json'), 'utf8'), 'umoci config.json');
    const files = await fileTreeFromDir(join(bundleDir, config.root?.path ?? 'rootfs'));
    return {
      layoutDir,
      bundleDir,
      config,
      annotations: config.annotations ?? {},
      args: config.process?.args ?? [],
      files,
      cleanup,
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}
