// A registry that trickles, stalls or never answers: lapin gives up after
// the stall timeout or the overall one, both adjustable, with one sentence,
// and within the retry bound. A hand-written HTTP server on 127.0.0.1 plays
// the registry.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { pullImage } from '../../src/registry/pull.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-timeouts-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

type Behaviour = 'trickle' | 'stall-body' | 'no-headers';

interface Slow {
  host: string;
  /** Requests for the manifest the server saw. */
  requests: () => number;
  close(): Promise<void>;
}

async function slowRegistry(behaviour: Behaviour, intervalMs = 200): Promise<Slow> {
  let requests = 0;
  const timers = new Set<NodeJS.Timeout>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/v2/') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (req.url !== '/v2/slow/app/manifests/1') return void res.writeHead(404).end();
    requests++;
    if (behaviour === 'no-headers') return; // never answers
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': '100000' });
    res.write('{');
    if (behaviour === 'stall-body') return; // headers and one byte, then nothing
    const timer = setInterval(() => res.write(' '), intervalMs);
    timers.add(timer);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const retry = { attempts: 2, baseDelayMs: 10, maxDelayMs: 20 };

async function pull(host: string, options: { stallTimeoutMs?: number; requestTimeoutMs?: number }): Promise<{ error: LapinError; seconds: number }> {
  const started = Date.now();
  const error = await pullImage(`${host}/slow/app:1`, { architecture: 'amd64', cacheDir: path.join(work, 'cache'), retry, ...options }).then(
    () => assert.fail('the pull succeeded'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof LapinError, String(error));
  return { error, seconds: (Date.now() - started) / 1000 };
}

describe('registry answers are read for a bounded time', () => {
  test('a registry that trickles a byte every 200 ms is cut at the overall timeout', async () => {
    const registry = await slowRegistry('trickle');
    try {
      const { error, seconds } = await pull(registry.host, { stallTimeoutMs: 5000, requestTimeoutMs: 1000 });
      assert.match(error.message, /took longer than 1 s; giving up/);
      assert.ok(seconds < 10, `${seconds} s`);
      assert.ok(registry.requests() <= retry.attempts);
    } finally {
      await registry.close();
    }
  });

  test('a body that stops, and headers that never come, are cut at the stall timeout', async () => {
    for (const behaviour of ['stall-body', 'no-headers'] as const) {
      const registry = await slowRegistry(behaviour);
      try {
        const { error, seconds } = await pull(registry.host, { stallTimeoutMs: 300 });
        assert.match(error.message, /sent nothing for 0\.3 s/, behaviour);
        assert.ok(seconds < 10, `${behaviour}: ${seconds} s`);
        assert.ok(registry.requests() <= retry.attempts, behaviour);
      } finally {
        await registry.close();
      }
    }
  });

  test('a blob download that stalls is tried again, within the retry bound, then fails in one sentence', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const { createHash } = await import('node:crypto');
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] });
    let blobRequests = 0;
    const server = createServer((req, res) => {
      if (req.url === '/v2/') return void res.writeHead(200).end('{}');
      if (req.url === '/v2/slow/app/manifests/1') return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
      if (req.url === `/v2/slow/app/blobs/${configDigest}`) {
        blobRequests++;
        res.writeHead(200, { 'content-length': String(config.length) });
        res.write(config.subarray(0, 10)); // then nothing
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { error, seconds } = await pull(host, { stallTimeoutMs: 300 });
      assert.match(error.message, /sent nothing for 0\.3 s/);
      assert.equal(blobRequests, retry.attempts);
      assert.ok(seconds < 10, `${seconds} s`);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('the environment sets both for the CLI, and the error is one line with exit 2', async () => {
    const registry = await slowRegistry('trickle', 100);
    try {
      const cli = ['--import', import.meta.resolve('tsx'), path.resolve('src/cli/main.ts')];
      const result = spawnSync(process.execPath, [...cli, 'inspect', `docker://${registry.host}/slow/app:1`], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, LAPIN_REGISTRY_TIMEOUT: '0.5', LAPIN_REGISTRY_STALL_TIMEOUT: '5', LAPIN_CACHE_DIR: path.join(work, 'cli-cache') },
      });
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, /^lapin: error: .*took longer than 0\.5 s/);
      assert.equal(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
      const bad = spawnSync(process.execPath, [...cli, 'inspect', `docker://${registry.host}/slow/app:1`], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, LAPIN_REGISTRY_STALL_TIMEOUT: 'soon' },
      });
      assert.equal(bad.status, 2, bad.stderr);
      assert.match(bad.stderr, /LAPIN_REGISTRY_STALL_TIMEOUT="soon" is not a number of seconds/);
    } finally {
      await registry.close();
    }
  });
});

describe('registry answers that are not URLs', () => {
  test('a file: upload Location is refused in a sentence, not "Invalid URL"', async () => {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.url === '/v2/') return void res.writeHead(200).end('{}');
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        if (req.method === 'POST') return void res.writeHead(202, { location: 'file:///etc/passwd' }).end();
        res.writeHead(500).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { BlobStore } = await import('../../src/image/blob-store.js');
      const { pushImage } = await import('../../src/registry/push.js');
      const store = new BlobStore(path.join(work, 'push-blobs'));
      const config = await store.putBytes(Buffer.from('{}'));
      const manifest = await store.putBytes(
        Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: [] })),
      );
      const port = (server.address() as AddressInfo).port;
      await assert.rejects(
        pushImage(
          { store, manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }, blobs: [{ mediaType: 'application/vnd.oci.image.config.v1+json', ...config }] },
          [`127.0.0.1:${port}/team/app:1`],
          { credentials: async () => undefined, retry },
        ),
        (error: unknown) => {
          assert.ok(error instanceof LapinError, String(error));
          assert.match(error.message, /gave "file:\/\/\/etc\/passwd" as the upload location, which is not an HTTP\(S\) URL/);
          assert.doesNotMatch(error.message, /Invalid URL/);
          return true;
        },
      );
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('registry answers that are not JSON', () => {
  test('an HTML page in place of a manifest is named in a sentence, never quoted', async () => {
    const server = createServer((req, res) => {
      if (req.url === '/v2/') return void res.writeHead(200).end('{}');
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end('<html><body>SECRET-PORTAL</body></html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const answer of ['html', 'null'] as const) {
        if (answer === 'null') {
          server.removeAllListeners('request');
          server.on('request', (req: IncomingMessage, res: ServerResponse) => (req.url === '/v2/' ? res.writeHead(200).end('{}') : res.writeHead(200).end('null')));
        }
        const error = await pullImage(`${host}/web/app:1`, { architecture: 'amd64', cacheDir: path.join(work, `web-${answer}`), retry }).then(
          () => assert.fail('the pull succeeded'),
          (caught: unknown) => caught,
        );
        assert.ok(error instanceof LapinError, String(error));
        assert.match(error.message, answer === 'html' ? /the manifest of .* is not JSON \(\d+ bytes\); refusing it/ : /is not a JSON object/);
        assert.doesNotMatch(error.message, /Unexpected token|SECRET|<html/);
      }
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
