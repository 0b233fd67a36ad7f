import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import tar from 'tar-stream';
import { mergeScopes, parseWwwAuthenticate, TokenCache } from '../../src/registry/auth.js';
import { findCredential, hostOfKey } from '../../src/registry/credentials.js';
import { checkLinkTarget, flattenLayers, safeEntryPath } from '../../src/registry/extract.js';
import { isLoopbackHost, redactUrl } from '../../src/registry/client.js';
import { backoffDelay, parseRetryAfter } from '../../src/registry/retry.js';
import { parsePullReference, platformOs, pullImage } from '../../src/registry/pull.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-registry-unit-'));
});
after(() => rm(work, { recursive: true, force: true }));

describe('WWW-Authenticate', () => {
  test('reads a bearer challenge with quoted values containing commas', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"');
    assert.deepEqual(c, { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } });
  });
  test('reads several challenges', () => {
    const challenges = parseWwwAuthenticate('Basic realm="x", Bearer realm="y",service=z');
    assert.deepEqual(challenges.map((c) => c.scheme), ['basic', 'bearer']);
    assert.equal(challenges[1]?.params.service, 'z');
  });
  test('round-trips any quoted parameters (property)', () => {
    const value = fc.string({ maxLength: 20 }).filter((s) => !s.includes('"') && !s.includes('\\'));
    fc.assert(
      fc.property(fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), value, { maxKeys: 5 }), (params) => {
        const header = `Bearer ${Object.entries(params).map(([k, v]) => `${k}="${v}"`).join(',')}`;
        const [parsed] = parseWwwAuthenticate(header);
        assert.deepEqual(parsed?.params, { ...params });
      }),
    );
  });
  test('never throws on arbitrary input (property)', () => {
    fc.assert(fc.property(fc.string(), (text) => void parseWwwAuthenticate(text)));
  });
});

describe('scopes and tokens', () => {
  test('merges actions per repository for mounts', () => {
    assert.deepEqual(mergeScopes(['repository:a:pull', 'repository:b:pull,push', 'repository:a:push']), ['repository:a:pull,push', 'repository:b:pull,push']);
  });
  test('a token for more scopes serves fewer, and expires', () => {
    let now = 1_000_000;
    const cache = new TokenCache(() => now);
    cache.put(['repository:a:pull,push', 'repository:b:pull'], 'T', 60);
    assert.equal(cache.get(['repository:a:pull']), 'T');
    assert.equal(cache.get(['repository:b:push']), undefined);
    now += 51_000;
    assert.equal(cache.get(['repository:a:pull']), undefined);
  });
});

describe('retries', () => {
  test('Retry-After in seconds or as a date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6_000);
    assert.equal(parseRetryAfter('soon'), undefined);
  });
  test('backoff stays under its cap and honours Retry-After (property)', () => {
    const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 2000 };
    fc.assert(
      fc.property(fc.nat(20), fc.double({ min: 0, max: 0.999, noNaN: true }), fc.option(fc.nat(30_000), { nil: undefined }), (attempt, r, after) => {
        const delay = backoffDelay(attempt, policy, after, () => r);
        assert.ok(delay >= 0);
        if (after === undefined) assert.ok(delay <= policy.maxDelayMs);
        else assert.ok(delay >= Math.min(after, 60_000));
      }),
    );
  });
});

describe('hosts and references', () => {
  test('loopback hosts are plain HTTP', () => {
    for (const host of ['localhost:5000', '127.0.0.1', '127.1.2.3:80', '[::1]:5000']) assert.ok(isLoopbackHost(host), host);
    for (const host of ['ghcr.io', '128.0.0.1:5000', 'localhost.example.com']) assert.ok(!isLoopbackHost(host), host);
  });
  test('URLs lose their query in messages', () => {
    assert.equal(redactUrl('http://h:1/v2/a/blobs/uploads/u?_state=secret&digest=x'), 'http://h:1/v2/a/blobs/uploads/u');
  });
  test('config.json keys name hosts', () => {
    assert.equal(hostOfKey('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(hostOfKey('http://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  });
  test('pull references with digests; unikraft.org uses the monitor as os', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.equal(parsePullReference(`ghcr.io/a/b@${digest}`).digest, digest);
    assert.equal(platformOs('unikraft.org', 'firecracker'), 'fc');
    assert.equal(platformOs('unikraft.org', 'qemu'), 'qemu');
    assert.equal(platformOs('ghcr.io', 'qemu'), 'linux');
  });
});

describe('credentials', () => {
  test('auths base64, identity tokens, then REGISTRY_AUTH_FILE', async () => {
    const dir = await mkdtemp(path.join(work, 'creds-'));
    await mkdir(path.join(dir, 'docker'));
    await writeFile(
      path.join(dir, 'docker', 'config.json'),
      JSON.stringify({ auths: { 'https://index.docker.io/v1/': { auth: Buffer.from('hub:pw').toString('base64') }, 'ghcr.io': { identitytoken: 'refresh' } } }),
    );
    await writeFile(path.join(dir, 'auth.json'), JSON.stringify({ auths: { 'quay.io': { auth: Buffer.from('q:pw2').toString('base64') } } }));
    const env = { DOCKER_CONFIG: path.join(dir, 'docker'), REGISTRY_AUTH_FILE: path.join(dir, 'auth.json'), XDG_RUNTIME_DIR: dir, XDG_CONFIG_HOME: dir, HOME: dir };
    assert.equal((await findCredential('registry-1.docker.io', env))?.username, 'hub');
    assert.equal((await findCredential('ghcr.io', env))?.identityToken, 'refresh');
    assert.equal((await findCredential('quay.io', env))?.password, 'pw2');
    assert.equal(await findCredential('example.com', env), undefined);
  });
});

async function layer(entries: Array<{ name: string; type?: 'file' | 'directory' | 'symlink'; data?: string; linkname?: string }>, file: string): Promise<{ file: string; digest: string }> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? 'file', ...(e.linkname ? { linkname: e.linkname } : {}) }, e.data ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  await writeFile(file, Buffer.concat(chunks));
  return { file, digest: path.basename(file) };
}

describe('layer extraction', () => {
  test('whiteouts remove lower files; opaque directories hide lower contents only', async () => {
    const dir = await mkdtemp(path.join(work, 'wh-'));
    const lower = await layer([{ name: 'etc/', type: 'directory' }, { name: 'etc/a', data: 'a' }, { name: 'etc/b', data: 'b' }, { name: 'opt/x', data: 'x' }, { name: 'opt/y', data: 'y' }], path.join(dir, 'l1'));
    const upper = await layer([{ name: 'etc/.wh.a' }, { name: 'opt/.wh..wh..opq' }, { name: 'opt/z', data: 'z' }], path.join(dir, 'l2'));
    const nodes = await flattenLayers([lower, upper], path.join(dir, 'data'), 'test');
    assert.deepEqual(nodes.map((n) => n.path), ['etc', 'etc/b', 'opt', 'opt/z']);
  });
  test('entries with ".." and symlinks escaping the root are refused', () => {
    assert.throws(() => safeEntryPath('a/../../etc/passwd', 'img'), /climbs out of the root/);
    assert.equal(safeEntryPath('./usr/bin/', 'img'), 'usr/bin');
    assert.throws(() => checkLinkTarget('a/link', '../../etc', 'img'), /points outside the root/);
    assert.throws(() => checkLinkTarget('link', '/../etc', 'img'), /points outside the root/);
    checkLinkTarget('bin', 'usr/bin', 'img');
    checkLinkTarget('lib/x', '/usr/lib/x', 'img');
  });
  test('entry paths never escape (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', '..', '.', '', 'b'), { maxLength: 6 }), (parts) => {
        try {
          const p = safeEntryPath(parts.join('/'), 'img');
          assert.ok(!p.split('/').includes('..'));
          assert.ok(!p.startsWith('/'));
        } catch (error) {
          assert.match((error as Error).message, /climbs out/);
        }
      }),
    );
  });
});

describe('secrets stay out of messages', () => {
  test('a damaged config.json is reported without quoting its auth values', async () => {
    const dir = await mkdtemp(path.join(work, 'damaged-'));
    const secret = Buffer.from('alice:hunter2-very-secret').toString('base64');
    // A missing quote: V8's JSON.parse message would quote the text around it.
    await writeFile(path.join(dir, 'config.json'), `{"auths":{"ghcr.io":{"auth":${secret}"}}}`);
    await assert.rejects(findCredential('ghcr.io', { DOCKER_CONFIG: dir, HOME: dir, XDG_RUNTIME_DIR: dir, XDG_CONFIG_HOME: dir }), (error: Error) => {
      assert.match(error.message, /cannot read .*config\.json/);
      assert.ok(!error.message.includes(secret.slice(0, 8)), error.message);
      return true;
    });
  });
});

describe('the pull cache serves only what matches its digest', () => {
  const sha = (data: Buffer | string): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

  /** A cache holding one image; returns the manifest digest and the layer's cache file. */
  async function seedCache(cacheDir: string, layerDigest?: string): Promise<{ manifestDigest: string; layerFile: string; layerBytes: Buffer }> {
    const blobs = path.join(cacheDir, 'registry', 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    const put = async (data: Buffer): Promise<string> => {
      const digest = sha(data);
      await writeFile(path.join(blobs, digest.slice(7)), data);
      return digest;
    };
    const pack = tar.pack();
    pack.entry({ name: 'etc/hello', size: 5 }, 'hello');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    const layerBytes = Buffer.concat(chunks);
    const digest = await put(layerBytes);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }));
    const configDigest = await put(config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest ?? digest, size: layerBytes.length }],
      }),
    );
    return { manifestDigest: await put(manifest), layerFile: path.join(blobs, digest.slice(7)), layerBytes };
  }

  test('an intact cached image is served', async () => {
    const cacheDir = await mkdtemp(path.join(work, 'cache-ok-'));
    const { manifestDigest } = await seedCache(cacheDir);
    const image = await pullImage(`registry.invalid/a/b@${manifestDigest}`, { cacheDir, architecture: 'amd64', policy: 'never' });
    assert.equal(image.layers.length, 1);
  });

  test('a truncated cached layer is not served', async () => {
    const cacheDir = await mkdtemp(path.join(work, 'cache-cut-'));
    const { manifestDigest, layerFile, layerBytes } = await seedCache(cacheDir);
    await writeFile(layerFile, layerBytes.subarray(0, 600));
    await assert.rejects(pullImage(`registry.invalid/a/b@${manifestDigest}`, { cacheDir, architecture: 'amd64', policy: 'never' }), /not in the cache/);
  });

  test('a cached layer with the right size but other bytes is not served', async () => {
    const cacheDir = await mkdtemp(path.join(work, 'cache-flip-'));
    const { manifestDigest, layerFile, layerBytes } = await seedCache(cacheDir);
    const flipped = Buffer.from(layerBytes);
    flipped[600] = (flipped[600] as number) ^ 0xff;
    await writeFile(layerFile, flipped);
    await assert.rejects(pullImage(`registry.invalid/a/b@${manifestDigest}`, { cacheDir, architecture: 'amd64', policy: 'never' }), /not in the cache/);
  });

  test('a cached tag that is a FIFO is not read, and the pull does not block on it', { timeout: 20_000 }, async () => {
    const cacheDir = await mkdtemp(path.join(work, 'cache-fifo-'));
    await seedCache(cacheDir);
    const reference = parsePullReference('registry.invalid/a/b:t');
    const key = createHash('sha256').update(`${reference.domain}/${reference.path}:${reference.tag ?? ''}\nlinux/amd64`).digest('hex');
    await mkdir(path.join(cacheDir, 'registry', 'refs'), { recursive: true });
    assert.equal(spawnSync('mkfifo', [path.join(cacheDir, 'registry', 'refs', key)]).status, 0);
    await assert.rejects(pullImage('registry.invalid/a/b:t', { cacheDir, architecture: 'amd64', policy: 'never' }), /not in the cache/);
  });

  test('a manifest whose layer digest names a path outside the cache is refused', async () => {
    const cacheDir = await mkdtemp(path.join(work, 'cache-escape-'));
    const outside = path.join(work, 'outside-layer.tar');
    await writeFile(outside, 'host file');
    const climbing = `sha256:${path.relative(path.join(cacheDir, 'registry', 'blobs', 'sha256'), outside)}`;
    const { manifestDigest } = await seedCache(cacheDir, climbing);
    await assert.rejects(pullImage(`registry.invalid/a/b@${manifestDigest}`, { cacheDir, architecture: 'amd64', policy: 'never' }), /not in the cache/);
  });
});

describe('a registry that sends more than a blob holds', () => {
  test('the download stops at the descriptor size and nothing is cached', async () => {
    const http = await import('node:http');
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${'0'.repeat(64)}`] } }));
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    const layerDigest = `sha256:${'a'.repeat(64)}`;
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: 1024 }],
      }),
    );
    let layerBytesSent = 0;
    const server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      if (url === '/v2/') return res.end('{}');
      if (url.startsWith('/v2/a/b/manifests/')) {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
        return res.end(manifest);
      }
      if (url === `/v2/a/b/blobs/${configDigest}`) return res.end(config);
      if (url === `/v2/a/b/blobs/${layerDigest}`) {
        // Up to 64 MiB, then stop: far more than the 1 KiB the manifest lists.
        const chunk = Buffer.alloc(64 * 1024, 1);
        const send = (): void => {
          while (layerBytesSent < 64 * 1024 * 1024) {
            layerBytesSent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', send);
          }
          res.end();
        };
        res.on('close', () => (layerBytesSent = layerBytesSent || 1));
        return send();
      }
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const cacheDir = await mkdtemp(path.join(work, 'long-'));
    try {
      await assert.rejects(
        pullImage(`127.0.0.1:${port}/a/b:1`, { cacheDir, architecture: 'amd64', credentials: async () => undefined, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } }),
        /is longer than its descriptor says/,
      );
      assert.ok(layerBytesSent < 16 * 1024 * 1024, `the pull read ${layerBytesSent} bytes of a 1 KiB blob`);
      const { readdir } = await import('node:fs/promises');
      assert.ok(!(await readdir(path.join(cacheDir, 'registry', 'blobs', 'sha256'))).some((name) => name.startsWith('a'.repeat(64))), 'nothing of the layer stays in the cache');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('layer diff_ids', () => {
  test('a layer whose uncompressed bytes do not match the diff_id its config lists is refused', async () => {
    const dir = await mkdtemp(path.join(work, 'diffid-'));
    const good = await layer([{ name: 'etc/a', data: 'a' }], path.join(dir, 'l1'));
    const { readFile } = await import('node:fs/promises');
    const diffId = `sha256:${createHash('sha256').update(await readFile(good.file)).digest('hex')}`;
    assert.equal((await flattenLayers([{ ...good, diffId }], path.join(dir, 'data1'), 'test')).length, 2);
    await assert.rejects(flattenLayers([{ ...good, diffId: `sha256:${'0'.repeat(64)}` }], path.join(dir, 'data2'), 'test'), /not the diff_id .* its config lists; refusing the image/);
  });
});
