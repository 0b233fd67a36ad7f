// Points real engines (docker, ctr, podman, containerd's CRI) at the
// recording runtime of test/helpers/recording-runtime.sh and reads back what
// each one handed its runtime: the bundle's config.json, the rootfs listing
// and /urunc.json. The CRI runs in a containerd of its own, started and
// stopped here, so the shared daemons of scripts/services.sh stay as they are.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProgramResult } from '../helpers/fixtures.js';

const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const RECORDING_RUNTIME_SOURCE = join(repoRoot, 'test', 'helpers', 'recording-runtime.sh');
const criProto = join(repoRoot, 'test', 'fixtures', 'cri', 'runtime-v1.proto');

/** The line the recording runtime fails `create` with. */
export const RECORDED_MARKER = 'lapin-recording-runtime: recorded';

/**
 * Runs a program with stdin from /dev/null (ctr run and podman run attach
 * stdin and may close it before anything is written) and collects its output.
 */
export function runProgram(program: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<ProgramResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(program, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolveRun({ status, stdout, stderr }));
  });
}

/** Runs a program; throws with its output when it exits non-zero. */
export async function must(program: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<ProgramResult> {
  const result = await runProgram(program, args, options);
  if (result.status !== 0) throw new Error(`${program} ${args.join(' ')} exited ${result.status}:\n${result.stderr}${result.stdout}`);
  return result;
}

// ---------------------------------------------------------------------------
// Recordings

export interface RootfsEntry {
  /** find's %y: f, d, l, ... */
  type: string;
  mode: string;
  size: number;
  /** Absolute path inside the rootfs. */
  path: string;
}

export interface RecordedSpec {
  ociVersion?: string;
  process?: { args?: string[]; env?: string[] };
  root?: { path: string };
  annotations?: Record<string, string> | null;
}

export interface Recording {
  id: string;
  /** The bundle's config.json as the engine wrote it. */
  spec: RecordedSpec;
  rootfs: RootfsEntry[];
  /** The rootfs's /urunc.json, byte for byte, when it had one. */
  uruncJson?: string;
  /** The runtime's command line as the engine (or its shim) gave it. */
  argv: string[];
  /** A pod sandbox, handed on to runc. */
  handedToRunc: boolean;
}

export async function readRecording(dir: string, id: string): Promise<Recording> {
  const at = join(dir, id);
  const spec = JSON.parse(await readFile(join(at, 'config.json'), 'utf8')) as RecordedSpec;
  const rootfs = (await readFile(join(at, 'rootfs.txt'), 'utf8'))
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [type = '', mode = '', size = '0', ...path] = line.split(' ');
      return { type, mode, size: Number(size), path: path.join(' ') };
    });
  const recording: Recording = {
    id,
    spec,
    rootfs,
    argv: (await readFile(join(at, 'argv.txt'), 'utf8')).split('\n').slice(0, -1),
    handedToRunc: existsSync(join(at, 'handed-to-runc')),
  };
  if (existsSync(join(at, 'urunc.json'))) recording.uruncJson = await readFile(join(at, 'urunc.json'), 'utf8');
  return recording;
}

/** The spec's com.urunc.unikernel.* annotations, by short key. */
export function uruncAnnotations(spec: RecordedSpec): Record<string, string> {
  return shortKeys(spec.annotations ?? {});
}

export function shortKeys(values: Readonly<Record<string, string>>): Record<string, string> {
  const prefix = 'com.urunc.unikernel.';
  return Object.fromEntries(Object.entries(values).filter(([key]) => key.startsWith(prefix)).map(([key, value]) => [key.slice(prefix.length), value]));
}

export interface RecordingRuntime {
  /** The runtime executable; recordings land in `dir`. */
  bin: string;
  dir: string;
  read(id: string): Promise<Recording>;
  /** Ids recorded so far. */
  ids(): Promise<string[]>;
}

/** A fresh copy of the recording runtime in `parent`, recording next to itself. */
export async function makeRecordingRuntime(parent: string): Promise<RecordingRuntime> {
  const home = join(parent, 'recording runtime');
  await mkdir(join(home, 'recordings'), { recursive: true });
  const bin = join(home, 'runtime');
  await copyFile(RECORDING_RUNTIME_SOURCE, bin);
  await chmod(bin, 0o755);
  return recordingsAt(bin, join(home, 'recordings'));
}

export function recordingsAt(bin: string, dir: string): RecordingRuntime {
  return {
    bin,
    dir,
    read: (id) => readRecording(dir, id),
    ids: async () => (existsSync(dir) ? (await readdir(dir)).sort() : []),
  };
}

// ---------------------------------------------------------------------------
// containerd's image store: what urunc 0.8's shim looks up

export interface StoredImage {
  name: string;
  manifestAnnotations: Record<string, string>;
  labels: Record<string, string>;
}

/**
 * The image a containerd container was made from, read from containerd's
 * store the way urunc 0.8's shim does: the container record's image name,
 * then that image's manifest and config. undefined when the store has no
 * such image (docker 20.10 keeps its images to itself).
 */
export async function storedImageOf(address: string, namespace: string, containerId: string): Promise<StoredImage | undefined> {
  const ctr = (args: string[]): Promise<ProgramResult> => must('ctr', ['--address', address, '--namespace', namespace, ...args]);
  const info = JSON.parse((await ctr(['containers', 'info', containerId])).stdout) as { Image?: string };
  const name = info.Image ?? '';
  if (name === '') return undefined;
  const listing = (await ctr(['images', 'ls'])).stdout.split('\n').slice(1).map((line) => line.trim().split(/\s+/));
  const row = listing.find((columns) => columns[0] === name);
  if (!row?.[2]) return undefined;
  const blob = async (digest: string): Promise<unknown> => JSON.parse((await ctr(['content', 'get', digest])).stdout) as unknown;
  let manifest = (await blob(row[2])) as { manifests?: Array<{ digest: string; platform?: { os: string } }>; config: { digest: string }; annotations?: Record<string, string> };
  if (manifest.manifests) {
    const pick = manifest.manifests.find((entry) => entry.platform?.os === 'linux') ?? manifest.manifests[0];
    if (!pick) return undefined;
    manifest = (await blob(pick.digest)) as typeof manifest;
  }
  const config = (await blob(manifest.config.digest)) as { config?: { Labels?: Record<string, string> | null } };
  return { name, manifestAnnotations: manifest.annotations ?? {}, labels: config.config?.Labels ?? {} };
}

// ---------------------------------------------------------------------------
// A containerd of its own with the CRI plugin, as Kubernetes runs urunc

export interface CriDaemon {
  address: string;
  dir: string;
  /** The runtime handler (RuntimeClass handler) that runs the recording runtime. */
  handler: string;
  ctr(args: string[]): Promise<ProgramResult>;
  runtime: CriRuntimeClient;
  images: CriImageClient;
  /** Pod sandboxes to stop and remove before the daemon goes. */
  sandboxes: Set<string>;
  stop(): Promise<void>;
}

export interface CriRuntimeClient {
  Version(request: { version: string }): Promise<{ version: string; runtime_name: string; runtime_version: string; runtime_api_version: string }>;
  RunPodSandbox(request: { config: PodSandboxConfig; runtime_handler: string }): Promise<{ pod_sandbox_id: string }>;
  StopPodSandbox(request: { pod_sandbox_id: string }): Promise<Record<string, never>>;
  RemovePodSandbox(request: { pod_sandbox_id: string }): Promise<Record<string, never>>;
  CreateContainer(request: { pod_sandbox_id: string; config: ContainerConfig; sandbox_config: PodSandboxConfig }): Promise<{ container_id: string }>;
  StartContainer(request: { container_id: string }): Promise<Record<string, never>>;
}

export interface CriImageClient {
  ImageStatus(request: { image: { image: string } }): Promise<{ image: { id: string; repo_tags: string[] } | null }>;
  PullImage(request: { image: { image: string } }): Promise<{ image_ref: string }>;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt: number };
  hostname?: string;
  log_directory?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { cgroup_parent?: string; security_context?: { namespace_options?: { network?: 'POD' | 'CONTAINER' | 'NODE'; pid?: 'POD' | 'CONTAINER' | 'NODE'; ipc?: 'POD' | 'CONTAINER' | 'NODE' } } };
}

export interface ContainerConfig {
  metadata: { name: string; attempt: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  log_path?: string;
}

type Callback = (error: grpc.ServiceError | null, response: unknown) => void;
type RawClient = grpc.Client & Record<string, (request: unknown, options: grpc.CallOptions, callback: Callback) => void>;

function promisify<T>(client: RawClient, methods: readonly string[]): T {
  const wrapped: Record<string, (request: unknown) => Promise<unknown>> = {};
  for (const method of methods) {
    wrapped[method] = (request) =>
      new Promise((resolvePromise, reject) => {
        const call = client[method];
        if (!call) throw new Error(`the CRI proto has no ${method}`);
        call.call(client, request, { deadline: Date.now() + 60_000 }, (error, response) => (error ? reject(error) : resolvePromise(response)));
      });
  }
  return wrapped as T;
}

function criClients(address: string): { runtime: CriRuntimeClient; images: CriImageClient; close(): void } {
  const definition = protoLoader.loadSync(criProto, { keepCase: true, enums: String, defaults: true, longs: String });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
  };
  const target = `unix://${address}`;
  const runtimeRaw = new loaded.runtime.v1.RuntimeService(target, grpc.credentials.createInsecure()) as RawClient;
  const imagesRaw = new loaded.runtime.v1.ImageService(target, grpc.credentials.createInsecure()) as RawClient;
  return {
    runtime: promisify<CriRuntimeClient>(runtimeRaw, ['Version', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'CreateContainer', 'StartContainer']),
    images: promisify<CriImageClient>(imagesRaw, ['ImageStatus', 'PullImage']),
    close: () => {
      runtimeRaw.close();
      imagesRaw.close();
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolveSleep) => setTimeout(resolveSleep, ms));

/** Mount points at or under `dir` in this mount namespace, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  const points = table
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .map((point) => point.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((point) => point === dir || point.startsWith(dir + '/'));
  return points.sort((a, b) => b.length - a.length);
}

/** Processes whose command line mentions `needle` (the shims this daemon started). */
async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Starts containerd with the CRI plugin in a temp dir: native snapshotter,
 * the given sandbox (pause) image, no CNI (pods use the node's network), and
 * one runtime handler, `handler`, that is the runc shim with BinaryName set to
 * the recording runtime, as urunc's Kubernetes docs configure urunc.
 */
export async function startCriDaemon(options: {
  runtimeBin: string;
  sandboxImage: string;
  handler?: string;
  /** The handler's pod_annotations / container_annotations: which Kubernetes annotations it forwards into the spec. */
  podAnnotations?: string[];
  containerAnnotations?: string[];
  /** host:port of registries to pull from over plain HTTP. */
  plainHttpRegistries?: string[];
}): Promise<CriDaemon> {
  const handler = options.handler ?? 'lapin-recording';
  // A short path: the socket's path must fit in sun_path (108 bytes).
  const dir = await mkdtemp(join(tmpdir(), 'lapin-cri-'));
  const address = join(dir, 'containerd.sock');
  for (const sub of ['root', 'state', 'opt', 'cni/bin', 'cni/conf']) await mkdir(join(dir, sub), { recursive: true });
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  const toml = (text: string): string => JSON.stringify(text);
  await writeFile(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = ${toml(join(dir, 'root'))}`,
      `state = ${toml(join(dir, 'state'))}`,
      '[grpc]',
      `  address = ${toml(address)}`,
      '[ttrpc]',
      `  address = ${toml(address + '.ttrpc')}`,
      '[debug]',
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${toml(join(dir, 'opt'))}`,
      `[${cri}]`,
      `  sandbox_image = ${toml(options.sandboxImage)}`,
      '  disable_apparmor = true',
      // Containers may not lower their oom_score_adj below ours (-998 for a sandbox) in every sandbox these tests run in.
      '  restrict_oom_score_adj = true',
      `[${cri}.containerd]`,
      '  snapshotter = "native"',
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.containerd.runtimes.${toml(handler)}]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `  pod_annotations = ${JSON.stringify(options.podAnnotations ?? [])}`,
      `  container_annotations = ${JSON.stringify(options.containerAnnotations ?? [])}`,
      `[${cri}.containerd.runtimes.${toml(handler)}.options]`,
      `  BinaryName = ${toml(options.runtimeBin)}`,
      // runc's state of the sandboxes in here, not in the host's /run/containerd/runc.
      `  Root = ${toml(join(dir, 'runc'))}`,
      ...(options.plainHttpRegistries ?? []).flatMap((host) => [`[${cri}.registry.mirrors.${toml(host)}]`, `  endpoint = [${toml(`http://${host}`)}]`]),
      `[${cri}.cni]`,
      `  bin_dir = ${toml(join(dir, 'cni/bin'))}`,
      `  conf_dir = ${toml(join(dir, 'cni/conf'))}`,
      '',
    ].join('\n'),
  );
  const logFd = openSync(join(dir, 'containerd.log'), 'a');
  const child = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', logFd, logFd], detached: true });
  closeSync(logFd);
  const exited = new Promise<void>((resolveExit) => child.once('exit', () => resolveExit()));
  const log = (): Promise<string> => readFile(join(dir, 'containerd.log'), 'utf8').catch(() => '');
  const ctr = (args: string[]): Promise<ProgramResult> => must('ctr', ['--address', address, '--namespace', 'k8s.io', ...args]);
  const sandboxes = new Set<string>();
  let clients: ReturnType<typeof criClients> | undefined;

  const stop = async (): Promise<void> => {
    if (clients) {
      for (const id of sandboxes) {
        await clients.runtime.StopPodSandbox({ pod_sandbox_id: id }).catch(() => undefined);
        await clients.runtime.RemovePodSandbox({ pod_sandbox_id: id }).catch(() => undefined);
      }
      clients.close();
    }
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
    // Shims outlive their containerd; this daemon's shims name its socket.
    for (const pid of await processesMentioning(address)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    for (const point of await mountsUnder(dir)) await runProgram('umount', ['-l', point]);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`containerd (CRI) exited during start-up:\n${(await log()).slice(-3000)}`);
      const probe = existsSync(address) ? await runProgram('ctr', ['--address', address, '--connect-timeout', '1s', 'version']) : undefined;
      if (probe?.status === 0) break;
      if (i > 150) throw new Error(`containerd (CRI) did not answer on ${address}:\n${(await log()).slice(-3000)}`);
      await sleep(100);
    }
    clients = criClients(address);
    return { address, dir, handler, ctr, runtime: clients.runtime, images: clients.images, sandboxes, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
