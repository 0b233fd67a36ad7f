// Credentials go only to the registry's own origin: an upload Location that
// names another host must not receive the Authorization header.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { BlobStore } from '../../src/image/blob-store.js';
import { pushImage } from '../../src/registry/push.js';

let work: string;
const servers: http.Server[] = [];

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-origin-'));
});
after(async () => {
  for (const server of servers) server.close();
  await rm(work, { recursive: true, force: true });
});

async function listen(handler: http.RequestListener): Promise<number> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function drain(req: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    req.on('data', () => undefined);
    req.on('end', resolve);
  });
}

test('an upload Location on another origin gets no credentials; the registry does', async () => {
  const seenByRegistry: Array<string | undefined> = [];
  const seenByOther: Array<string | undefined> = [];
  const other = await listen(async (req, res) => {
    seenByOther.push(req.headers.authorization);
    await drain(req);
    res.writeHead(201).end();
  });
  const registry = await listen(async (req, res) => {
    await drain(req);
    if (!req.headers.authorization) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
      return;
    }
    seenByRegistry.push(req.headers.authorization);
    if (req.method === 'HEAD') res.writeHead(404).end();
    else if (req.method === 'POST') res.writeHead(202, { location: `http://127.0.0.1:${other}/upload/1` }).end();
    else if (req.method === 'PUT') res.writeHead(201).end();
    else res.writeHead(405).end();
  });

  const store = new BlobStore(path.join(work, 'blobs'));
  const config = await store.putBytes(Buffer.from('{}'));
  const manifest = await store.putBytes(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: [] })),
  );
  await pushImage(
    { store, manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }, blobs: [{ mediaType: 'application/vnd.oci.image.config.v1+json', ...config }] },
    [`127.0.0.1:${registry}/team/app:1`],
    { credentials: async () => ({ username: 'alice', password: 'secret', origin: 'test' }), retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } },
  );
  assert.ok(seenByRegistry.length > 0, 'the registry saw authenticated requests');
  assert.ok(seenByRegistry.every((h) => h?.startsWith('Basic ')));
  assert.ok(seenByOther.length > 0, 'the blob went to the other origin');
  assert.deepEqual(seenByOther, seenByOther.map(() => undefined), 'no credentials to another origin');
});
