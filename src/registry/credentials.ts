import { spawn } from 'node:child_process';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { makeDirectories } from '../mkdirp.js';
import { sweepStaleTemporaries, temporaryName, trackTemporary, untrackTemporary } from '../temporaries.js';

/** What a registry accepts: a user and password, or an OAuth2 refresh token (docker's identitytoken). */
export interface Credential {
  username?: string;
  password?: string;
  identityToken?: string;
  /** Where it came from, for messages; never the secret itself. */
  origin: string;
}

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
export const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/** docker's config directory: $DOCKER_CONFIG or ~/.docker. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG && env.DOCKER_CONFIG !== '' ? env.DOCKER_CONFIG : path.join(env.HOME ?? os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** The key a host has in config.json's `auths` and the server URL a credential helper is asked about. */
export function serverKey(host: string): string {
  return isDockerHub(host) ? DOCKER_HUB_KEY : host;
}

function isDockerHub(host: string): boolean {
  return ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com'].includes(host);
}

/** "https://host/v1/", "http://host", "host/" all name "host". */
export function hostOfKey(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  return isDockerHub(host) ? 'docker.io' : host;
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [other: string]: unknown;
}

async function readJson(file: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the fault, which may be an auth value.
    throw new LapinError(`cannot read ${file}: it is not valid JSON`, { hint: 'fix or remove the file' });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new LapinError(`cannot read ${file}: it is not a JSON object`, { hint: 'fix or remove the file' });
  }
  return parsed as ConfigFile;
}

function entryFor(auths: Record<string, AuthEntry> | undefined, host: string): AuthEntry | undefined {
  if (!auths) return undefined;
  for (const [key, entry] of Object.entries(auths)) {
    if (hostOfKey(key) === hostOfKey(host)) return entry;
  }
  return undefined;
}

function decodeEntry(entry: AuthEntry, origin: string): Credential | undefined {
  if (entry.identitytoken) return { identityToken: entry.identitytoken, ...(entry.username ? { username: entry.username } : {}), origin };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new LapinError(`the auth entry in ${origin} is not base64 of user:password`, { hint: 'run lapin login again' });
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), origin };
  }
  if (entry.username && entry.password) return { username: entry.username, password: entry.password, origin };
  return undefined;
}

interface HelperResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runHelper(helper: string, action: 'get' | 'store' | 'erase', input: string, env: NodeJS.ProcessEnv): Promise<HelperResult> {
  const program = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, [action], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') reject(new LapinError(`credential helper ${program} is not on PATH`, { hint: 'install it, or remove it from config.json' }));
      else reject(new LapinError(`cannot run ${program}: ${error.message}`));
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

/** Asks `docker-credential-<helper> get` for a server's credentials; undefined when it has none. */
export async function helperGet(helper: string, host: string, env: NodeJS.ProcessEnv = process.env): Promise<Credential | undefined> {
  const result = await runHelper(helper, 'get', serverKey(host), env);
  if (result.code !== 0) {
    if (/not found/i.test(result.stdout + result.stderr)) return undefined;
    // The helper's output may echo what it was given; keep it out of the message.
    throw new LapinError(`credential helper docker-credential-${helper} failed for ${host} (exit ${result.code})`, {
      hint: 'run it by hand to see why: echo HOST | docker-credential-NAME get',
    });
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(result.stdout) as { Username?: unknown; Secret?: unknown };
  } catch {
    throw new LapinError(`credential helper docker-credential-${helper} printed something other than JSON for ${host}`);
  }
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  if (secret === '') return undefined;
  const origin = `docker-credential-${helper}`;
  // docker's convention: "<token>" as the user name marks an identity token.
  if (username === '<token>') return { identityToken: secret, origin };
  return { username, password: secret, origin };
}

/**
 * Credentials for a registry host, looked up as docker does — credHelpers,
 * then credsStore, then `auths` in $DOCKER_CONFIG/config.json — then in
 * $REGISTRY_AUTH_FILE and containers' auth.json, as podman and skopeo do.
 */
export async function findCredential(host: string, env: NodeJS.ProcessEnv = process.env): Promise<Credential | undefined> {
  const configFile = dockerConfigPath(env);
  const config = await readJson(configFile);
  if (config) {
    const helper = config.credHelpers?.[host] ?? (isDockerHub(host) ? config.credHelpers?.[DOCKER_HUB_KEY] : undefined) ?? config.credsStore;
    if (helper) {
      const found = await helperGet(helper, host, env);
      if (found) return found;
    }
    const entry = entryFor(config.auths, host);
    const decoded = entry ? decodeEntry(entry, configFile) : undefined;
    if (decoded) return decoded;
  }
  for (const file of containersAuthFiles(env)) {
    const authFile = await readJson(file);
    const entry = entryFor(authFile?.auths, host);
    const decoded = entry ? decodeEntry(entry, file) : undefined;
    if (decoded) return decoded;
  }
  return undefined;
}

function containersAuthFiles(env: NodeJS.ProcessEnv): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  const runtime = env.XDG_RUNTIME_DIR ?? (process.getuid ? `/run/user/${process.getuid()}` : undefined);
  if (runtime) files.push(path.join(runtime, 'containers', 'auth.json'));
  const configHome = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : path.join(env.HOME ?? os.homedir(), '.config');
  files.push(path.join(configHome, 'containers', 'auth.json'));
  return files;
}

async function writeConfig(file: string, config: ConfigFile): Promise<void> {
  await makeDirectories(path.dirname(file), 0o700);
  // It holds credentials: owner-named, removed on a signal, and swept by the next login after a kill -9.
  await sweepStaleTemporaries([path.dirname(file)]);
  const temporary = temporaryName(`${file}.tmp-`);
  trackTemporary(temporary);
  try {
    await writeFile(temporary, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
    await chmod(temporary, 0o600);
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    untrackTemporary(temporary);
  }
}

/**
 * Saves credentials where docker would: through the host's credential
 * helper or credsStore when config.json names one, else as base64 `auth` in
 * `auths`. Returns where they went.
 */
export async function storeCredential(host: string, username: string, password: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const file = dockerConfigPath(env);
  const config = (await readJson(file)) ?? {};
  const key = serverKey(host);
  const helper = config.credHelpers?.[host] ?? config.credsStore;
  if (helper) {
    const result = await runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: username, Secret: password }), env);
    if (result.code !== 0) throw new LapinError(`credential helper docker-credential-${helper} could not store the credentials for ${host} (exit ${result.code})`);
    // docker keeps an empty entry so `docker login` lists the server.
    config.auths = { ...(config.auths ?? {}), [key]: {} };
    await writeConfig(file, config);
    return `docker-credential-${helper}`;
  }
  const auths = { ...(config.auths ?? {}) };
  for (const existing of Object.keys(auths)) if (hostOfKey(existing) === hostOfKey(host)) delete auths[existing];
  auths[key] = { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  config.auths = auths;
  await writeConfig(file, config);
  return file;
}

/** Forgets a host's credentials in config.json and its helper; false when there were none. */
export async function eraseCredential(host: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const file = dockerConfigPath(env);
  const config = await readJson(file);
  if (!config) return false;
  let erased = false;
  const helper = config.credHelpers?.[host] ?? config.credsStore;
  if (helper) {
    const result = await runHelper(helper, 'erase', serverKey(host), env);
    if (result.code === 0) erased = true;
  }
  const auths = { ...(config.auths ?? {}) };
  for (const key of Object.keys(auths)) {
    if (hostOfKey(key) === hostOfKey(host)) {
      delete auths[key];
      erased = true;
    }
  }
  config.auths = auths;
  await writeConfig(file, config);
  return erased;
}
