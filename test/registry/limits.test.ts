// Answers lapin refuses to hold whole: a manifest over 4 MiB and a token
// answer over 1 MiB, with and without a Content-Length. A small HTTP server
// on 127.0.0.1 plays a registry that sends far more than that (64 MiB), and
// checks that lapin hung up long before the end.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MANIFEST_SIZE_LIMIT, TOKEN_SIZE_LIMIT } from '../../src/registry/client.js';
import { pullImage } from '../../src/registry/pull.js';

const ENDLESS = 64 * 1024 * 1024;
let work: string;

interface Endless {
  host: string;
  /** Bytes of the long answer the server got to write before lapin hung up, once it stopped. */
  sent: Promise<number>;
  close(): Promise<void>;
}

/** Writes `total` bytes of JSON-looking filler, in 64 KiB pieces, as long as the client reads. */
function sendLong(res: ServerResponse, total: number, declare: boolean, done: (sent: number) => void): void {
  res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', ...(declare ? { 'content-length': String(total) } : {}) });
  const piece = Buffer.alloc(64 * 1024, 0x20);
  piece[0] = 0x7b; // "{", so the start looks like JSON
  let sent = 0;
  const more = (): void => {
    while (sent < total) {
      sent += piece.length;
      if (!res.write(piece)) return void res.once('drain', more);
    }
    res.end();
  };
  res.on('close', () => done(sent));
  more();
}

/** A registry whose manifest (or, with `token`, whose token service) answers without end. */
async function endlessRegistry(kind: 'manifest' | 'token', declare: boolean): Promise<Endless> {
  let report: (sent: number) => void = () => undefined;
  const sent = new Promise<number>((resolve) => (report = resolve));
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const port = (server.address() as AddressInfo).port;
    if (req.url === '/v2/' && kind === 'token' && req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="endless"` });
      return void res.end();
    }
    if (req.url === '/v2/') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (req.url?.startsWith('/token')) return sendLong(res, ENDLESS, declare, report);
    if (req.url === '/v2/endless/app/manifests/1') {
      if (kind === 'manifest') return sendLong(res, ENDLESS, declare, report);
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="endless",scope="repository:endless/app:pull"` });
      return void res.end();
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    sent,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-limits-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('registry answers have a size limit', () => {
  for (const kind of ['manifest', 'token'] as const) {
    for (const declare of [false, true]) {
      test(`${kind}, ${declare ? 'with' : 'without'} Content-Length: refused in one line, and lapin hangs up early`, async () => {
        const registry = await endlessRegistry(kind, declare);
        try {
          const cacheDir = await mkdtemp(path.join(work, 'cache-'));
          const limit = kind === 'manifest' ? MANIFEST_SIZE_LIMIT : TOKEN_SIZE_LIMIT;
          await assert.rejects(pullImage(`${registry.host}/endless/app:1`, { cacheDir, architecture: 'amd64', policy: 'always', credentials: async () => undefined }), (error: Error) => {
            assert.match(error.message, new RegExp(`more than the ${limit} bytes lapin accepts`));
            assert.ok(!error.message.includes('\n'), error.message);
            return true;
          });
          const sent = await registry.sent;
          // The socket buffers hold some more than lapin read; nowhere near the whole answer.
          assert.ok(sent < ENDLESS / 2, `the server wrote ${sent} of ${ENDLESS} bytes before lapin hung up`);
        } finally {
          await registry.close();
        }
      });
    }
  }
});
