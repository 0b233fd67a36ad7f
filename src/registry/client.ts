import { LapinError } from '../errors.js';
import { parseWwwAuthenticate, TokenCache, type Challenge } from './auth.js';
import { findCredential, type Credential } from './credentials.js';
import { DEFAULT_RETRY, backoffDelay, isRetryableError, isRetryableStatus, networkErrorCode, parseRetryAfter, sleep, type RetryPolicy } from './retry.js';
import { registryFetch, type RegistryFetch, type RegistryFetchInit } from './tls.js';

/** How lapin talks to registries; every field has a default. */
export interface RegistryOptions {
  /**
   * Hosts (host[:port]) reached as docker's insecure-registries are: HTTPS
   * without certificate checks, then plain HTTP. Loopback hosts not listed
   * get verified HTTPS, then plain HTTP.
   */
  insecureRegistries?: readonly string[];
  /** Looks up credentials for a host; docker's config.json and containers' auth.json by default. */
  credentials?: (host: string) => Promise<Credential | undefined>;
  retry?: RetryPolicy;
  /** Request lines for --debug: method, URL without its query, status. Never headers. */
  debug?: (message: string) => void;
  /** Warnings (an unreadable extra CA file); "lapin: warning: ..." on stderr by default. */
  warn?: (message: string) => void;
  /**
   * A request fails when the registry sends nothing (no headers, no body
   * bytes) for this long; default LAPIN_REGISTRY_STALL_TIMEOUT seconds, else 30 s.
   */
  stallTimeoutMs?: number;
  /**
   * A request, its body included, fails when it takes longer than this;
   * default LAPIN_REGISTRY_TIMEOUT seconds, else 30 minutes.
   */
  requestTimeoutMs?: number;
}

export const DEFAULT_STALL_TIMEOUT_MS = 30_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30 * 60_000;

/** A timeout from the options, else from the environment variable (seconds), else the default. */
function timeoutMs(option: number | undefined, variable: string, fallback: number): number {
  if (option !== undefined) {
    if (!(option > 0) || !Number.isFinite(option)) throw new LapinError(`a registry timeout must be a positive number of milliseconds, not ${String(option)}`, { exitCode: 2 });
    return option;
  }
  const text = process.env[variable];
  if (text === undefined || text === '') return fallback;
  if (!/^\d+(\.\d+)?$/.test(text.trim()) || Number(text) <= 0) {
    throw new LapinError(`${variable}=${JSON.stringify(text)} is not a number of seconds`, { exitCode: 2, hint: `e.g. ${variable}=${fallback / 1000}` });
  }
  return Number(text) * 1000;
}


function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * fetch with both timeouts: the stall timer runs while waiting for the
 * headers and for each body chunk, the overall one from the request until
 * the body ends. Either aborts the connection and fails with one sentence.
 */
export async function fetchWithTimeouts(transport: RegistryFetch, url: string, init: RegistryFetchInit, host: string, stallMs: number, requestMs: number): Promise<Response> {
  const controller = new AbortController();
  let reason: RegistryTimeoutError | undefined;
  const fail = (error: RegistryTimeoutError): void => {
    reason ??= error;
    controller.abort(reason);
  };
  const stalled = (): RegistryTimeoutError =>
    new RegistryTimeoutError(`${host} sent nothing for ${seconds(stallMs)} (${init.method} ${redactUrl(url)}); giving up on it`, 'check the registry or the network; LAPIN_REGISTRY_STALL_TIMEOUT sets the limit in seconds');
  const overall = setTimeout(
    () => fail(new RegistryTimeoutError(`${init.method} ${redactUrl(url)} took longer than ${seconds(requestMs)}; giving up on it`, 'check the registry or the network; LAPIN_REGISTRY_TIMEOUT sets the limit in seconds')),
    requestMs,
  );
  overall.unref();
  const arm = (ms: number): NodeJS.Timeout => {
    const timer = setTimeout(() => fail(stalled()), ms);
    timer.unref();
    return timer;
  };
  // The registry answers only once it has the body: allow one more second per 64 KiB sent (a slow uplink is no stall).
  // A streamed upload (a blob from its file) says its size in content-length.
  const sending =
    typeof init.body === 'string' ? Buffer.byteLength(init.body) : init.body instanceof ReadableStream ? Number(init.headers?.['content-length'] ?? 0) || 0 : (init.body?.byteLength ?? 0);
  let stall = arm(stallMs + Math.ceil(sending / 65_536) * 1000);
  let response: Response;
  try {
    response = await transport(url, { ...init, signal: controller.signal });
  } catch (error) {
    clearTimeout(overall);
    throw reason ?? error;
  } finally {
    clearTimeout(stall);
  }
  const original = response.body;
  // Statuses that cannot carry a body are handed on as they are.
  if (!original || [101, 204, 205, 304].includes(response.status)) {
    clearTimeout(overall);
    return response;
  }
  const reader = original.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(stream) {
      stall = arm(stallMs);
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        clearTimeout(overall);
        throw reason ?? error;
      } finally {
        clearTimeout(stall);
      }
      if (chunk.done) {
        clearTimeout(overall);
        stream.close();
      } else stream.enqueue(chunk.value);
    },
    async cancel(why) {
      clearTimeout(overall);
      await reader.cancel(why).catch(() => undefined);
    },
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

const plainFetch: RegistryFetch = (url, init) => fetch(url, init);
const REDIRECTS = [301, 302, 303, 307, 308];

/** A failed authentication or authorization; the CLI exits 1 and says so plainly. */
export class AuthError extends LapinError {
  constructor(message: string, hint?: string) {
    super(message, hint === undefined ? {} : { hint });
    this.name = 'AuthError';
  }
}

export interface RegistryRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path under the registry ("/v2/...") or an absolute URL (an upload Location). */
  target: string;
  headers?: Record<string, string>;
  /** Made again for every attempt, since a body can be sent only once; a stream is sent as it is read (a blob upload). */
  body?: () => Uint8Array | ReadableStream<Uint8Array> | undefined;
  /** Token scopes the request needs, e.g. "repository:a/b:pull,push". */
  scopes: readonly string[];
  /** Statuses the caller handles; anything else is retried or becomes an error. */
  accept: readonly number[];
  /** What is being done, for error messages: "upload of sha256:ab… to host/repo". */
  what: string;
  /** false for requests that must not be repeated blindly (a chunk whose offset is unknown after a cut). */
  retry?: boolean;
}

/** "localhost", "127.x.y.z" and "::1" (with any port) are plain HTTP, as docker has them. */
export function isLoopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127(?:\.\d{1,3}){3}$/.test(name) || name.endsWith('.localhost');
}

/** A URL for messages and --debug: no query string (upload state), no user info. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return url.replace(/\?.*$/, '');
  }
}

/** Manifests and indexes: distribution's own client refuses more than 4 MiB too. */
export const MANIFEST_SIZE_LIMIT = 4 * 1024 * 1024;
/** A token answer is a few kilobytes of JSON. */
export const TOKEN_SIZE_LIMIT = 1024 * 1024;
const ERROR_BODY_LIMIT = 64 * 1024;

/**
 * A response body, refused past `limit` bytes, so that a registry (or
 * whatever answers in its place) cannot make lapin hold an endless answer.
 */
export async function readLimitedBody(response: Response, limit: number, what: string): Promise<Buffer> {
  const tooBig = (size: string): LapinError => new LapinError(`${what}: the answer is ${size}, more than the ${limit} bytes lapin accepts; refusing it`);
  const declared = Number(response.headers.get('content-length') ?? '');
  if (Number.isFinite(declared) && declared > limit) {
    await drain(response);
    throw tooBig(`${declared} bytes`);
  }
  if (!response.body) return Buffer.alloc(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw tooBig(`over ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}

/** The registry's own words from an error body ({"errors":[{"code","message"}]}), if any. */
async function registryErrorText(response: Response): Promise<string> {
  try {
    const text = (await readLimitedBody(response, ERROR_BODY_LIMIT, 'an error answer')).toString('utf8');
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: unknown; message?: unknown }> };
    const first = parsed.errors?.[0];
    if (first) return [first.code, first.message].filter((p) => typeof p === 'string' && p !== '').join(': ');
  } catch {
    // Not JSON: the status says enough.
  }
  return '';
}

async function drain(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // Already closed.
  }
}

/**
 * One registry host: finds its scheme, authenticates (Basic, or Bearer
 * tokens cached by scope), and retries failed requests with backoff.
 */
export class RegistryClient {
  private endpoint: Promise<string> | undefined;
  private challenge: Challenge | undefined;
  private credential: Promise<Credential | undefined> | undefined;
  private readonly tokens = new TokenCache();
  private readonly retry: RetryPolicy;
  private transport: Promise<RegistryFetch> | undefined;
  private readonly stallMs: number;
  private readonly requestMs: number;

  constructor(
    readonly host: string,
    private readonly options: RegistryOptions = {},
  ) {
    this.retry = options.retry ?? DEFAULT_RETRY;
    this.stallMs = timeoutMs(options.stallTimeoutMs, 'LAPIN_REGISTRY_STALL_TIMEOUT', DEFAULT_STALL_TIMEOUT_MS);
    this.requestMs = timeoutMs(options.requestTimeoutMs, 'LAPIN_REGISTRY_TIMEOUT', DEFAULT_REQUEST_TIMEOUT_MS);
  }

  private debug(message: string): void {
    this.options.debug?.(message);
  }

  /** Node's fetch, or undici's when the registry needs extra CAs or is an --insecure-registry. */
  private tlsTransport(): Promise<RegistryFetch> {
    this.transport ??= registryFetch({
      host: this.host,
      insecureRegistries: this.options.insecureRegistries ?? [],
      ...(this.options.debug ? { debug: this.options.debug } : {}),
      ...(this.options.warn ? { warn: this.options.warn } : {}),
    });
    return this.transport;
  }

  /**
   * Plain HTTP goes through Node's fetch: TLS settings do not apply to it,
   * and the TLS transport costs up to a second to make (undici, every extra
   * CA parsed, a secure context). A redirect, which may lead to HTTPS, is
   * followed through the TLS transport instead.
   */
  private async fetch(url: string, init: RegistryFetchInit): Promise<Response> {
    if (url.startsWith('http:')) {
      const follow = init.redirect === undefined || init.redirect === 'follow';
      const response = await fetchWithTimeouts(plainFetch, url, follow ? { ...init, redirect: 'manual' } : init, this.host, this.stallMs, this.requestMs);
      if (!follow || !REDIRECTS.includes(response.status) || !response.headers.get('location')) return response;
      await drain(response);
    }
    return fetchWithTimeouts(await this.tlsTransport(), url, init, this.host, this.stallMs, this.requestMs);
  }

  /**
   * Whether `base` (https://host) answers TLS at all, asked with Node's own
   * fetch so that a plain-HTTP registry costs no TLS transport: false only
   * when the reply is not TLS; anything else is left to the real ping.
   */
  private async speaksTls(base: string): Promise<boolean> {
    try {
      const response = await fetchWithTimeouts(plainFetch, `${base}/v2/`, { method: 'GET', redirect: 'manual' }, this.host, this.stallMs, this.requestMs);
      await drain(response);
    } catch (error) {
      if (networkErrorCode(error) === 'ERR_SSL_WRONG_VERSION_NUMBER') {
        this.debug(`GET ${base}/v2/ failed: ERR_SSL_WRONG_VERSION_NUMBER`);
        return false;
      }
    }
    return true;
  }

  private insecure(): boolean {
    return isLoopbackHost(this.host) || (this.options.insecureRegistries ?? []).includes(this.host);
  }

  /** "https://host" or, for loopback and --insecure-registry hosts that do not speak TLS, "http://host". */
  baseUrl(): Promise<string> {
    this.endpoint ??= this.ping();
    return this.endpoint;
  }

  private async ping(): Promise<string> {
    const schemes = this.insecure() ? ['https', 'http'] : ['https'];
    let lastError: unknown;
    for (const scheme of schemes) {
      const base = `${scheme}://${this.host}`;
      if (scheme === 'https' && schemes.length > 1 && !(await this.speaksTls(base))) continue;
      for (let attempt = 0; attempt < this.retry.attempts; attempt++) {
        try {
          const response = await this.fetch(`${base}/v2/`, { method: 'GET', redirect: 'follow' });
          this.debug(`GET ${base}/v2/ -> ${response.status}`);
          await drain(response);
          const header = response.headers.get('www-authenticate');
          if (response.status === 401 && header) this.challenge = pickChallenge(parseWwwAuthenticate(header));
          if (isRetryableStatus(response.status) && attempt + 1 < this.retry.attempts) {
            await sleep(backoffDelay(attempt, this.retry, parseRetryAfter(response.headers.get('retry-after'))));
            continue;
          }
          // A TLS-only registry answers plain HTTP with 400: the TLS failure is the real story.
          if (scheme === 'http' && response.status === 400 && lastError !== undefined) break;
          return base;
        } catch (error) {
          if (error instanceof LapinError) throw error; // undici failed to load: not a network failure
          lastError = error;
          this.debug(`GET ${base}/v2/ failed: ${networkErrorCode(error) ?? (error as Error).message}`);
          // A TLS failure on an insecure host means try plain HTTP next.
          if (scheme === 'https' && schemes.length > 1 && !isRetryableError(error)) break;
          if (!isRetryableError(error) || attempt + 1 >= this.retry.attempts) break;
          await sleep(backoffDelay(attempt, this.retry));
        }
      }
    }
    this.endpoint = undefined;
    throw connectionError(this.host, lastError, this.insecure());
  }

  private getCredential(): Promise<Credential | undefined> {
    this.credential ??= (this.options.credentials ?? ((host: string) => findCredential(host)))(this.host);
    return this.credential;
  }

  private async authorization(scopes: readonly string[]): Promise<string | undefined> {
    const challenge = this.challenge;
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const credential = await this.getCredential();
      if (!credential?.username || credential.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
    }
    if (challenge.scheme === 'bearer') {
      const cached = this.tokens.get(scopes);
      if (cached) return `Bearer ${cached}`;
      const token = await this.fetchToken(challenge, scopes);
      return `Bearer ${token}`;
    }
    return undefined;
  }

  /** The token flow of the distribution spec, and the OAuth2 refresh-token flow for identity tokens. */
  private async fetchToken(challenge: Challenge, scopes: readonly string[]): Promise<string> {
    const realm = challenge.params.realm;
    if (!realm) throw new AuthError(`${this.host} asked for a bearer token without saying where to get one (no realm)`);
    const credential = await this.getCredential();
    const service = challenge.params.service;
    const wanted = [...new Set([...scopes, ...(challenge.params.scope ? challenge.params.scope.split(' ') : [])])];
    let response: Response;
    // The realm is the registry's word: not a URL ("Invalid URL", a TypeError) or not HTTP(S) (file:, data:) is refused.
    const url = URL.canParse(realm) ? new URL(realm) : undefined;
    if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      throw new LapinError(`${this.host} named ${JSON.stringify(realm.slice(0, 100))} as its token service, which is not an HTTP(S) URL`, { hint: 'a broken or hostile registry; check the registry address' });
    }
    if (credential && url.protocol === 'http:' && (await this.baseUrl()).startsWith('https:')) {
      throw new AuthError(`${this.host} sent its token service as plain HTTP (${url.host}); lapin will not send credentials there in clear text`);
    }
    if (credential?.identityToken) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: credential.identityToken, client_id: 'lapin' });
      if (service) form.set('service', service);
      if (wanted.length > 0) form.set('scope', wanted.join(' '));
      response = await this.fetchWithRetries(url.href, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() });
    } else {
      if (service) url.searchParams.set('service', service);
      for (const scope of wanted) url.searchParams.append('scope', scope);
      const headers: Record<string, string> = {};
      if (credential?.username && credential.password !== undefined) {
        headers.authorization = `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
        url.searchParams.set('account', credential.username);
      }
      response = await this.fetchWithRetries(url.href, { method: 'GET', headers });
    }
    this.debug(`${credential?.identityToken ? 'POST' : 'GET'} ${redactUrl(url.href)} (token for ${wanted.join(' ') || 'no scope'}) -> ${response.status}`);
    if (response.status === 401 || response.status === 403) {
      await drain(response);
      throw this.rejected(credential);
    }
    if (!response.ok) {
      const detail = await registryErrorText(response);
      throw new LapinError(`the token service of ${this.host} answered ${response.status}${detail ? ` (${detail})` : ''}`);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    const text = (await readLimitedBody(response, TOKEN_SIZE_LIMIT, `the token service of ${this.host}`)).toString('utf8');
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new LapinError(`the token service of ${this.host} answered with something other than JSON`);
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : typeof body.access_token === 'string' ? body.access_token : '';
    if (token === '') throw new LapinError(`the token service of ${this.host} gave no token`);
    const issuedAt = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : undefined;
    this.tokens.put(wanted, token, typeof body.expires_in === 'number' ? body.expires_in : undefined, issuedAt);
    return token;
  }

  private rejected(credential: Credential | undefined): AuthError {
    if (credential) {
      return new AuthError(`authentication to ${this.host} failed: the registry rejected the credentials from ${credential.origin}`, `check them, then run: lapin login ${this.host}`);
    }
    return new AuthError(`authentication to ${this.host} failed: the registry needs credentials and none are configured`, `run: lapin login ${this.host}`);
  }

  private async fetchWithRetries(url: string, init: RegistryFetchInit): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.fetch(url, init);
        if (isRetryableStatus(response.status) && attempt + 1 < this.retry.attempts) {
          await drain(response);
          await sleep(backoffDelay(attempt, this.retry, parseRetryAfter(response.headers.get('retry-after'))));
          continue;
        }
        return response;
      } catch (error) {
        if (error instanceof LapinError) throw error;
        if (!isRetryableError(error) || attempt + 1 >= this.retry.attempts) throw connectionError(this.host, error, false);
        await sleep(backoffDelay(attempt, this.retry));
      }
    }
  }

  /**
   * Sends a request, authenticating as the registry asks and retrying
   * 408/429/5xx and cut connections with backoff and jitter.
   */
  async request(spec: RegistryRequest): Promise<Response> {
    const base = await this.baseUrl();
    if (!spec.target.startsWith('/') && !/^https?:\/\//.test(spec.target)) {
      throw new LapinError(`${spec.what} failed: ${this.host} named ${JSON.stringify(spec.target.slice(0, 100))} as the place to send it, which is not an HTTP(S) URL`, { hint: 'a broken or hostile registry; lapin sends data only over HTTP(S)' });
    }
    const url = /^https?:\/\//.test(spec.target) ? spec.target : `${base}${spec.target}`;
    let authRetried = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...spec.headers };
      // Credentials go only to the registry itself: an upload Location may name another host or plain HTTP.
      const authorization = sameOrigin(url, base) ? await this.authorization(spec.scopes) : undefined;
      if (authorization) headers.authorization = authorization;
      const body = spec.body?.();
      let response: Response;
      try {
        // A stream body with redirect 'follow' is tee'd by fetch to replay it, and the copy holds the whole blob in memory.
        const streamed = body instanceof ReadableStream;
        response = await this.fetch(url, { method: spec.method, headers, ...(body !== undefined ? { body } : {}), ...(streamed ? { duplex: 'half' as const } : {}), redirect: streamed ? 'error' : 'follow' });
      } catch (error) {
        if (error instanceof LapinError) throw error;
        this.debug(`${spec.method} ${redactUrl(url)} failed: ${networkErrorCode(error) ?? (error as Error).message}`);
        if (spec.retry !== false && isRetryableError(error) && attempt + 1 < this.retry.attempts) {
          await sleep(backoffDelay(attempt, this.retry));
          continue;
        }
        throw connectionError(this.host, error, false, spec.what);
      }
      this.debug(`${spec.method} ${redactUrl(url)} -> ${response.status}`);
      if (response.status === 401) {
        const header = response.headers.get('www-authenticate');
        await drain(response);
        const credential = await this.getCredential();
        if (!authRetried && header) {
          authRetried = true;
          this.challenge = pickChallenge(parseWwwAuthenticate(header));
          this.tokens.forget(spec.scopes);
          attempt--;
          continue;
        }
        if (authorization === undefined || !credential) throw this.rejected(credential);
        if (this.challenge?.scheme === 'basic') throw this.rejected(credential);
        throw new AuthError(`authentication to ${this.host} failed: access denied for ${spec.what} with the credentials from ${credential.origin}`, 'check that this account may push or pull the repository');
      }
      if (spec.accept.includes(response.status)) return response;
      if (response.status === 403) {
        const detail = await registryErrorText(response);
        throw new AuthError(`${spec.what} was refused by ${this.host}: access denied${detail ? ` (${detail})` : ''}`, 'check that this account may push or pull the repository');
      }
      if (spec.retry !== false && isRetryableStatus(response.status) && attempt + 1 < this.retry.attempts) {
        await drain(response);
        await sleep(backoffDelay(attempt, this.retry, parseRetryAfter(response.headers.get('retry-after'))));
        continue;
      }
      const detail = await registryErrorText(response);
      throw new RegistryStatusError(`${spec.what} failed: ${this.host} answered ${response.status}${detail ? ` (${detail})` : ''}`, response.status);
    }
  }
}

/** A registry answered with a status the operation cannot continue from. */
export class RegistryStatusError extends LapinError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'RegistryStatusError';
  }
}

/** Bearer is preferred over Basic when a registry offers both. */
function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
}

/** The connection failed (reset, timeout, refused): a push may resume or start the blob over. */
export class NetworkError extends LapinError {
  constructor(
    message: string,
    readonly transient: boolean,
    hint?: string,
  ) {
    super(message, hint === undefined ? {} : { hint });
    this.name = 'NetworkError';
  }
}

/** The registry stalled or took too long; a blob download retries it like a cut connection, within the retry bound. */
export class RegistryTimeoutError extends NetworkError {
  constructor(message: string, hint: string) {
    super(message, true, hint);
    this.name = 'RegistryTimeoutError';
  }
}

function connectionError(host: string, error: unknown, triedPlain: boolean, what?: string): LapinError {
  const code = networkErrorCode(error);
  const reason = code ?? (error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error));
  const prefix = what ? `${what} failed: ` : '';
  if (code === 'ECONNREFUSED') return new LapinError(`${prefix}cannot connect to ${host}: connection refused`, { hint: 'is the registry running, and is the host:port right?' });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new LapinError(`${prefix}cannot resolve the registry host ${host}`, { hint: `check the image name, and this machine's DNS and network` });
  }
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code)) {
    return new LapinError(`${prefix}TLS certificate of ${host} is not trusted (${code})`, {
      hint: 'add its CA with NODE_EXTRA_CA_CERTS=ca.pem, or for a test registry --insecure-registry HOST',
    });
  }
  const hint = triedPlain ? undefined : 'retried with backoff; check the network or the registry';
  return new NetworkError(`${prefix}cannot reach ${host}: ${reason}`, isRetryableError(error), hint);
}

/** True when two URLs share scheme, host and port. */
function sameOrigin(a: string, b: string): boolean {
  return new URL(a).origin === new URL(b).origin;
}
