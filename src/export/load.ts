/**
 * `--load`: hands a built image to a local engine through its own
 * interface. docker gets the archive on its API socket (POST /images/load,
 * so no docker CLI is needed); containerd gets it through `ctr images
 * import`. Either way the engine reads the same archive lapin writes
 * (src/export/archive.ts), and lapin reports the names the engine now has.
 */
import { spawn } from 'node:child_process';
import { access, constants, mkdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { LapinError, UsageError } from '../errors.js';
import { imageParts, type ImageModel } from '../image/model.js';
import { writeArchive, writeArchiveFile } from './archive.js';
import { trackTemporary, untrackTemporary } from './atomic.js';
import { temporaryName } from '../temporaries.js';

export type LoadEngine = 'docker' | 'containerd';

/** Where `--load` sends the image. */
export interface LoadTarget {
  engine: LoadEngine;
  /** containerd: the namespace (default $CONTAINERD_NAMESPACE, else "default"). */
  namespace?: string;
  /** containerd: the socket (default $CONTAINERD_ADDRESS, else /run/containerd/containerd.sock). */
  address?: string;
  /** containerd: the snapshotter to unpack into (default $CONTAINERD_SNAPSHOTTER, else containerd's). */
  snapshotter?: string;
}

export interface LoadResult {
  engine: LoadEngine;
  /** What the engine calls the image now: tags, or docker's image id for an image without a name. */
  names: string[];
  /** containerd's namespace. */
  namespace?: string;
}

/** Parses `--load` values: "docker", or "containerd[,namespace=NS][,address=SOCK][,snapshotter=NAME]". */
export function parseLoadSpec(text: string): LoadTarget {
  const [engine = '', ...fields] = text.split(',').map((part) => part.trim());
  if (engine !== 'docker' && engine !== 'containerd') {
    throw new UsageError(`--load=${text}: unknown engine ${JSON.stringify(engine)}`, 'use --load (docker) or --load=containerd[,namespace=NS,address=SOCK]');
  }
  const target: LoadTarget = { engine };
  for (const field of fields) {
    const equals = field.indexOf('=');
    const key = equals > 0 ? field.slice(0, equals) : field;
    const value = equals > 0 ? field.slice(equals + 1) : '';
    if (engine === 'containerd' && (key === 'namespace' || key === 'address' || key === 'snapshotter') && value !== '') {
      target[key] = value;
      continue;
    }
    const known = engine === 'containerd' ? 'namespace=NS, address=SOCK and snapshotter=NAME' : 'no fields (docker is found through DOCKER_HOST)';
    throw new UsageError(`--load=${text}: ${JSON.stringify(field)} is not understood`, `--load=${engine} takes ${known}`);
  }
  return target;
}

/** Fails early, before a build, when the engine's socket is missing or not ours to use. */
export async function checkLoadTarget(target: LoadTarget): Promise<void> {
  if (target.engine === 'containerd') {
    await checkContainerdSocket(containerdAddress(target));
    return;
  }
  const endpoint = await dockerEndpoint();
  if (endpoint.kind !== 'unix') return;
  try {
    await stat(endpoint.socketPath);
    await access(endpoint.socketPath, constants.R_OK | constants.W_OK);
  } catch (error) {
    throw dockerConnectionError(endpoint, error as NodeJS.ErrnoException);
  }
}

function containerdAddress(target: LoadTarget): string {
  return target.address ?? (process.env.CONTAINERD_ADDRESS || '/run/containerd/containerd.sock');
}

/** Loads the image into the engine. */
export async function loadImage(image: ImageModel, target: LoadTarget, mtime: number, names: readonly string[] = []): Promise<LoadResult> {
  return target.engine === 'docker' ? loadIntoDocker(image, mtime, names) : loadIntoContainerd(image, target, mtime, names);
}

// ---------------------------------------------------------------------------
// docker: the API socket

type DockerEndpoint =
  | { kind: 'unix'; socketPath: string; display: string }
  | { kind: 'tcp'; host: string; port: number; tls?: { ca: Buffer; cert: Buffer; key: Buffer }; display: string };

/** DOCKER_HOST as docker reads it (unix:// or tcp://, with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH). */
async function dockerEndpoint(env: NodeJS.ProcessEnv = process.env): Promise<DockerEndpoint> {
  const host = env.DOCKER_HOST && env.DOCKER_HOST !== '' ? env.DOCKER_HOST : 'unix:///var/run/docker.sock';
  if (host.startsWith('unix://')) return { kind: 'unix', socketPath: host.slice('unix://'.length), display: host };
  const tcp = /^(?:tcp|https?):\/\/(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(host);
  if (!tcp) {
    throw new LapinError(`--load: DOCKER_HOST=${host} is not a unix:// or tcp:// address lapin can reach`, {
      hint: 'point DOCKER_HOST at the daemon socket (unix:///var/run/docker.sock), or write an archive and run docker load -i',
    });
  }
  const hostname = (tcp[1] as string).replace(/^\[|\]$/g, '');
  const verify = env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '';
  const port = tcp[2] ? Number(tcp[2]) : verify ? 2376 : 2375;
  if (!verify) return { kind: 'tcp', host: hostname, port, display: host };
  const certDir = env.DOCKER_CERT_PATH && env.DOCKER_CERT_PATH !== '' ? env.DOCKER_CERT_PATH : path.join(os.homedir(), '.docker');
  try {
    const [ca, cert, key] = await Promise.all(['ca.pem', 'cert.pem', 'key.pem'].map((name) => readFile(path.join(certDir, name))));
    return { kind: 'tcp', host: hostname, port, tls: { ca: ca as Buffer, cert: cert as Buffer, key: key as Buffer }, display: host };
  } catch (error) {
    throw new LapinError(`--load: DOCKER_TLS_VERIFY is set but the TLS files in ${certDir} cannot be read: ${(error as Error).message}`, {
      hint: 'set DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem',
    });
  }
}

/** One clear line for a daemon that cannot be reached, with what to do. */
function dockerConnectionError(endpoint: DockerEndpoint, error: NodeJS.ErrnoException): LapinError {
  const where = endpoint.display;
  switch (error.code) {
    case 'ENOENT':
      return new LapinError(`--load: docker is not running: ${endpoint.kind === 'unix' ? endpoint.socketPath : where} does not exist`, {
        hint: 'start dockerd, or set DOCKER_HOST to its socket',
      });
    case 'ECONNREFUSED':
      return new LapinError(`--load: docker is not running: ${where} refused the connection`, { hint: 'start dockerd, or set DOCKER_HOST to its socket' });
    case 'EACCES':
    case 'EPERM':
      return new LapinError(`--load: permission denied on ${endpoint.kind === 'unix' ? endpoint.socketPath : where}`, {
        hint: 'add yourself to the docker group (then log in again), or run lapin as root',
      });
    default:
      return new LapinError(`--load: cannot reach docker at ${where}: ${error.code ?? error.message}`, { hint: 'check that dockerd runs and DOCKER_HOST points at it' });
  }
}

/** docker's JSON message stream: "Loaded image: NAME" / "Loaded image ID: ID" lines, or an error. */
export function parseDockerLoadOutput(body: string): { names: string[]; ids: string[]; error?: string } {
  const names: string[] = [];
  const ids: string[] = [];
  let error: string | undefined;
  const texts: string[] = [];
  for (const line of body.split('\n')) {
    if (line.trim() === '') continue;
    let message: { stream?: unknown; error?: unknown; errorDetail?: { message?: unknown }; message?: unknown };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      texts.push(line.trim());
      continue;
    }
    if (typeof message.errorDetail?.message === 'string') error ??= message.errorDetail.message;
    else if (typeof message.error === 'string') error ??= message.error;
    else if (typeof message.message === 'string') error ??= message.message;
    if (typeof message.stream === 'string') texts.push(...message.stream.split('\n'));
  }
  for (const text of texts) {
    const id = /^Loaded image ID: (\S+)/.exec(text.trim());
    const name = /^Loaded image: (\S+)/.exec(text.trim());
    if (id?.[1]) ids.push(id[1]);
    else if (name?.[1]) names.push(name[1]);
  }
  return { names, ids, ...(error !== undefined ? { error } : {}) };
}

async function loadIntoDocker(image: ImageModel, mtime: number, tags: readonly string[]): Promise<LoadResult> {
  const endpoint = await dockerEndpoint();
  const requestOptions: http.RequestOptions = {
    method: 'POST',
    // Unversioned: the daemon answers in its own API version, old or new.
    path: '/images/load?quiet=1',
    headers: { 'content-type': 'application/x-tar' },
    ...(endpoint.kind === 'unix' ? { socketPath: endpoint.socketPath } : { host: endpoint.host, port: endpoint.port }),
  };
  const request =
    endpoint.kind === 'tcp' && endpoint.tls ? https.request({ ...requestOptions, ca: endpoint.tls.ca, cert: endpoint.tls.cert, key: endpoint.tls.key }) : http.request(requestOptions);
  let connectionFailure: NodeJS.ErrnoException | undefined;
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    request.on('error', (error: NodeJS.ErrnoException) => {
      connectionFailure ??= error;
      reject(error);
    });
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
  });
  // Handled below; without this an early refusal would be an unhandled rejection while the body is still being sent.
  answer.catch(() => undefined);
  let sendFailure: unknown;
  try {
    await writeArchive(image, request, mtime, tags);
  } catch (error) {
    sendFailure = error;
  }
  let reply: { status: number; body: string };
  try {
    reply = await answer;
  } catch (error) {
    const failure = connectionFailure ?? (error as NodeJS.ErrnoException);
    // Refused before anything was read: the socket's own error says why.
    if (['ENOENT', 'ECONNREFUSED', 'EACCES', 'EPERM'].includes(failure.code ?? '') || sendFailure === undefined) throw dockerConnectionError(endpoint, failure);
    throw new LapinError(`--load: docker closed the connection while the image was sent: ${failure.code ?? failure.message}`, { hint: 'see the dockerd log' });
  }
  const parsed = parseDockerLoadOutput(reply.body);
  if (reply.status !== 200 || parsed.error !== undefined) {
    const detail = parsed.error ?? (reply.body.trim().split('\n')[0] || `status ${reply.status}`);
    throw new LapinError(`--load: docker could not load the image: ${detail}`, { hint: 'see the dockerd log; docker 20.10 or newer reads lapin archives' });
  }
  if (sendFailure !== undefined) throw sendFailure;
  const names = [...parsed.names, ...parsed.ids];
  if (names.length === 0) throw new LapinError(`--load: docker answered but named no image (${reply.body.trim().slice(0, 200)})`);
  return { engine: 'docker', names };
}

// ---------------------------------------------------------------------------
// containerd: ctr images import

interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCtr(args: readonly string[]): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new LapinError('--load=containerd needs ctr, containerd\'s command-line client, which is not on PATH', { hint: 'install containerd (it ships ctr), or use --load for docker' }));
      } else reject(error);
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** ctr's last stderr line, without its "ctr: " prefix. */
function ctrMessage(result: CommandResult): string {
  const line = result.stderr.trim().split('\n').filter((l) => l.trim() !== '').at(-1) ?? `exit ${result.code}`;
  return line.replace(/^ctr: /, '');
}

async function checkContainerdSocket(address: string): Promise<void> {
  // ctr would wait for a socket that is not there; say so at once instead.
  const info = await stat(address).catch((error: NodeJS.ErrnoException) => error);
  if (info instanceof Error) {
    if (info.code === 'ENOENT') {
      throw new LapinError(`--load=containerd: containerd is not running: ${address} does not exist`, {
        hint: 'start containerd, or name its socket: --load=containerd,address=SOCK or CONTAINERD_ADDRESS',
      });
    }
    if (info.code !== 'EACCES') return;
  }
  try {
    await access(address, constants.R_OK | constants.W_OK);
  } catch {
    throw new LapinError(`--load=containerd: permission denied on ${address}`, { hint: 'containerd\'s socket belongs to root: run lapin as root (sudo)' });
  }
}

async function loadIntoContainerd(image: ImageModel, target: LoadTarget, mtime: number, names: readonly string[]): Promise<LoadResult> {
  if (names.length === 0) throw new UsageError('--load=containerd needs an image name', 'add -t NAME[:TAG]');
  const address = containerdAddress(target);
  const namespace = target.namespace ?? (process.env.CONTAINERD_NAMESPACE || 'default');
  await checkContainerdSocket(address);
  const global = ['--address', address, '--namespace', namespace, '--connect-timeout', '10s'];
  const dir = path.join(os.tmpdir(), temporaryName('lapin-load-'));
  trackTemporary(dir);
  try {
    await mkdir(dir, { mode: 0o700 });
    const archive = path.join(dir, 'image.tar');
    await writeArchiveFile(image, archive, mtime, names);
    const { platform } = await imageParts(image, 'the image');
    const args = [...global, 'images', 'import', '--platform', `${platform.os}/${platform.architecture}`];
    if (target.snapshotter) args.push('--snapshotter', target.snapshotter);
    args.push(archive);
    const imported = await runCtr(args);
    if (imported.code !== 0) {
      const message = ctrMessage(imported);
      if (/permission denied/i.test(message)) {
        throw new LapinError(`--load=containerd: permission denied: ${message}`, { hint: 'containerd\'s socket belongs to root: run lapin as root (sudo)' });
      }
      if (/failed to dial|connection refused|no such file|deadline exceeded/i.test(message)) {
        throw new LapinError(`--load=containerd: containerd at ${address} does not answer: ${message}`, { hint: 'start containerd, or give its socket with address=SOCK' });
      }
      throw new LapinError(`--load=containerd: ctr images import failed: ${message}`, { hint: 'see the containerd log' });
    }
    // The names come from the archive's index (io.containerd.image.name); ctr's listing confirms each.
    const listed = await runCtr([...global, 'images', 'ls', '-q']);
    if (listed.code !== 0) throw new LapinError(`--load=containerd: ctr images ls failed: ${ctrMessage(listed)}`);
    const present = new Set(listed.stdout.split('\n').map((line) => line.trim()));
    const missing = names.filter((name) => !present.has(name));
    if (missing.length > 0) {
      throw new LapinError(`--load=containerd: ctr imported the archive but namespace ${namespace} has no ${missing.join(', ')}`, {
        hint: `ctr said: ${(imported.stdout + imported.stderr).trim().split('\n').join('; ')}`,
      });
    }
    return { engine: 'containerd', names: [...names], namespace };
  } finally {
    await rm(dir, { recursive: true, force: true });
    untrackTemporary(dir);
  }
}
