// Real registries for the registry tests: Debian's docker-registry
// (distribution 2.8) on 127.0.0.1, anonymous, with htpasswd basic auth, with
// token auth from a small issuer in this file, or with TLS from a generated
// CA; and an HTTP proxy in front of one that logs, cuts uploads or corrupts
// blobs. Everything lives in a temp directory removed by stop().
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REGISTRY_BIN = '/usr/bin/docker-registry';

/** Skips (or, under CI, fails) when the programs the tests drive are missing. */
export function registrySkipReason(): string | undefined {
  const missing = [REGISTRY_BIN, '/usr/bin/htpasswd', '/usr/bin/openssl', '/usr/bin/skopeo'].filter((p) => !existsSync(p));
  if (missing.length === 0) return undefined;
  if (process.env.CI === 'true') throw new Error(`missing under CI: ${missing.join(', ')} (scripts/install-deps.sh installs them)`);
  return `missing ${missing.join(', ')}; run scripts/install-deps.sh`;
}

function run(file: string, args: string[], options: { cwd?: string; input?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr || error.message}`));
      else resolve(stdout);
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export type RegistryMode = 'anonymous' | 'basic' | 'token' | 'tls';

export interface TestRegistry {
  mode: RegistryMode;
  /** host:port, e.g. 127.0.0.1:41234. */
  host: string;
  /** The CA that signed the TLS registry's certificate (tls mode). */
  caFile?: string;
  /** Users the registry accepts (basic and token modes). */
  users: Record<string, string>;
  /** Tokens the issuer handed out, to check they never reach output. */
  issuedTokens: string[];
  /** The registry's log so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts docker-registry on a free loopback port in one of four modes. */
export async function startRegistry(mode: RegistryMode, users: Record<string, string> = { alice: 'wonderland-secret-1' }): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `lapin-registry-${mode}-`));
  const port = await freePort();
  const cleanups: Array<() => Promise<void>> = [];
  const issuedTokens: string[] = [];
  let auth = '';
  let tls = '';
  let caFile: string | undefined;
  if (mode === 'basic') {
    const lines: string[] = [];
    for (const [user, password] of Object.entries(users)) lines.push((await run('/usr/bin/htpasswd', ['-Bbn', user, password])).trim());
    await writeFile(path.join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    auth = `auth:\n  htpasswd:\n    realm: lapin-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
  } else if (mode === 'token') {
    await run('/usr/bin/openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'issuer.key', '-out', 'issuer.pem', '-days', '2', '-subj', '/CN=lapin-test-issuer'], { cwd: dir });
    const issuer = await startTokenIssuer(path.join(dir, 'issuer.key'), path.join(dir, 'issuer.pem'), users, issuedTokens);
    cleanups.push(issuer.stop);
    auth = `auth:\n  token:\n    realm: ${issuer.realm}\n    service: lapin-test-registry\n    issuer: lapin-test-issuer\n    rootcertbundle: ${path.join(dir, 'issuer.pem')}\n`;
  } else if (mode === 'tls') {
    await run('/usr/bin/openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=lapin-test-ca'], { cwd: dir });
    await run('/usr/bin/openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], { cwd: dir });
    await writeFile(path.join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    await run('/usr/bin/openssl', ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'ext.cnf'], { cwd: dir });
    caFile = path.join(dir, 'ca.pem');
    tls = `  tls:\n    certificate: ${path.join(dir, 'server.pem')}\n    key: ${path.join(dir, 'server.key')}\n`;
  }
  const config = `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString('hex')}
${tls}${auth}`;
  await writeFile(path.join(dir, 'config.yml'), config);
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const host = `127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited during start-up:\n${log}`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (up) break;
    if (i > 200) throw new Error(`docker-registry did not listen on ${host}:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    mode,
    host,
    ...(caFile ? { caFile } : {}),
    users,
    issuedTokens,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      for (const cleanup of cleanups) await cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * A token service as distribution's token auth expects: Basic credentials
 * in, an RS256 JWT out, whose x5c header carries the certificate the
 * registry trusts through `rootcertbundle`. Anonymous callers get tokens
 * with no access; known users get what they ask for.
 */
async function startTokenIssuer(keyFile: string, certFile: string, users: Record<string, string>, issued: string[]): Promise<{ realm: string; stop: () => Promise<void> }> {
  const key = await readFile(keyFile, 'utf8');
  const certPem = await readFile(certFile, 'utf8');
  const certDer = certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://issuer');
    const authorization = req.headers.authorization;
    let subject = '';
    if (authorization?.startsWith('Basic ')) {
      const decoded = Buffer.from(authorization.slice(6), 'base64').toString();
      const colon = decoded.indexOf(':');
      const user = decoded.slice(0, colon);
      if (users[user] === undefined || users[user] !== decoded.slice(colon + 1)) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"details":"wrong user or password"}');
        return;
      }
      subject = user;
    }
    const access = url.searchParams.getAll('scope').flatMap((scope) => scope.split(' ')).map((scope) => {
      const [type, ...rest] = scope.split(':');
      const actions = (rest.pop() ?? '').split(',');
      return { type, name: rest.join(':'), actions: subject === '' ? [] : actions };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = { iss: 'lapin-test-issuer', sub: subject, aud: url.searchParams.get('service') ?? '', exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(key);
    const token = `${signingInput}.${base64url(signature)}`;
    issued.push(token);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface ProxyRequest {
  method: string;
  path: string;
  /** Path with its query. */
  url: string;
  status?: number;
}

export interface ProxyOptions {
  /** Bytes of this request's body to pass on before cutting both connections; undefined passes it whole. */
  cutAfter?: (request: ProxyRequest, index: number) => number | undefined;
  /** Flip a byte of this response's body. */
  corrupt?: (request: ProxyRequest) => boolean;
  /** Milliseconds to wait after each piece of this request's body before reading on (a slow uplink). */
  slowBody?: (request: ProxyRequest) => number | undefined;
  /** Headers added to this response (a registry that sets OCI-Chunk-Max-Length). */
  addHeaders?: (request: ProxyRequest) => Record<string, string> | undefined;
}

export interface TestProxy {
  host: string;
  requests: ProxyRequest[];
  cuts: number;
  stop(): Promise<void>;
}

/** An HTTP proxy in front of a plain-HTTP registry; the Host header passes through, so Locations name the proxy. */
export async function startProxy(target: string, options: ProxyOptions = {}): Promise<TestProxy> {
  const [targetHost, targetPort] = target.split(':') as [string, string];
  const requests: ProxyRequest[] = [];
  const state = { cuts: 0 };
  const server = http.createServer((req, res) => {
    const record: ProxyRequest = { method: req.method ?? 'GET', path: (req.url ?? '/').replace(/\?.*$/, ''), url: req.url ?? '/' };
    const index = requests.push(record) - 1;
    const upstream = http.request({ host: targetHost, port: Number(targetPort), method: req.method, path: req.url, headers: req.headers }, (answer) => {
      record.status = answer.statusCode ?? 0;
      if (options.corrupt?.(record) && answer.statusCode === 200 && req.method === 'GET') {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          if (body.length > 0) body[body.length - 1] = (body[body.length - 1] as number) ^ 0xff;
          res.writeHead(200, answer.headers);
          res.end(body);
        });
        return;
      }
      res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...options.addHeaders?.(record) });
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    const limit = options.cutAfter?.(record, index);
    const pause = options.slowBody?.(record);
    if (pause !== undefined) {
      req.on('data', (chunk: Buffer) => {
        upstream.write(chunk);
        req.pause();
        setTimeout(() => req.resume(), pause);
      });
      req.on('end', () => upstream.end());
      return;
    }
    if (limit === undefined) {
      req.pipe(upstream);
      return;
    }
    let passed = 0;
    req.on('data', (chunk: Buffer) => {
      if (passed >= limit) return;
      const room = limit - passed;
      upstream.write(chunk.subarray(0, room));
      passed += Math.min(room, chunk.length);
      if (passed >= limit) {
        state.cuts++;
        record.status = -1;
        upstream.destroy();
        req.socket.destroy();
      }
    });
    req.on('end', () => upstream.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    get cuts() {
      return state.cuts;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** skopeo inspect of a pushed image (manifest with --raw, config with --config). */
export async function skopeoInspect(reference: string, what: '--raw' | '--config' | '', extra: string[] = []): Promise<unknown> {
  const args = ['inspect', '--tls-verify=false', ...extra, ...(what ? [what] : []), `docker://${reference}`];
  return JSON.parse(await run('/usr/bin/skopeo', args)) as unknown;
}

export async function skopeoCopyToOci(reference: string, dir: string, extra: string[] = []): Promise<void> {
  await run('/usr/bin/skopeo', ['copy', '--src-tls-verify=false', ...extra, `docker://${reference}`, `oci:${dir}:pulled`]);
}

/** Copies an OCI archive into a registry with skopeo, to seed base images. */
export async function skopeoPush(archive: string, reference: string, extra: string[] = []): Promise<void> {
  await run('/usr/bin/skopeo', ['copy', '--dest-tls-verify=false', ...extra, `oci-archive:${archive}`, `docker://${reference}`]);
}
