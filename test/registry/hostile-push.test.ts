// A registry that takes every chunk of a streamed upload but answers with a
// Range that does not move forward ("0-0", or back to where it was): lapin
// sent the chunk again after every answer, without end (a 200 KiB blob had
// gone out 200 times, 40 MB, when the test's server stopped it). Now it gives
// up after the retry bound, in one sentence. A hand-written HTTP server on
// 127.0.0.1 plays the registry.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { pushPlan } from '../../src/registry/push.js';

const sha = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const BLOB = Buffer.alloc(200 * 1024, 7);
const CHUNK = 64 * 1024;

let work: string;
let server: Server;
let host: string;
/** The Range the registry answers the nth PATCH with (n from 1). */
let answer: (n: number) => string = () => '0-0';
let patches = 0;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-hostile-push-'));
  await writeFile(path.join(work, 'blob'), BLOB);
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const location = '/v2/hostile/app/blobs/uploads/1';
      if (req.url === '/v2/') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      if (req.method === 'HEAD') return void res.writeHead(404).end();
      if (req.method === 'POST') return void res.writeHead(202, { location, range: '0-0' }).end();
      if (req.method === 'PATCH') {
        patches++;
        // A safety net for the test itself: lapin must stop long before this.
        if (patches > 100) return void res.writeHead(400).end();
        return void res.writeHead(202, { location, range: answer(patches) }).end();
      }
      if (req.method === 'GET' && req.url?.startsWith(location)) return void res.writeHead(204, { location, range: '0-0' }).end();
      if (req.method === 'PUT') return void res.writeHead(201).end();
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(work, { recursive: true, force: true });
});

function push(): Promise<unknown> {
  const manifest = Buffer.from('{}');
  patches = 0;
  return pushPlan(
    {
      blobs: [{ mediaType: 'application/octet-stream', digest: sha(BLOB), size: BLOB.length, bytes: { file: path.join(work, 'blob') } }],
      manifests: [],
      top: { descriptor: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length }, bytes: manifest },
    },
    [`${host}/hostile/app:1`],
    { monolithicLimit: CHUNK, chunkSize: CHUNK, retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 }, credentials: async () => undefined },
  );
}

describe('a streamed upload whose Range does not move forward', () => {
  for (const [what, range] of [
    ['"0-0" after every chunk', () => '0-0'],
    ['forward, then back to the start, again and again', (n: number) => (n % 2 === 1 ? `0-${CHUNK - 1}` : '0-0')],
  ] as const) {
    test(`${what}: refused after the retry bound, in one sentence`, async () => {
      answer = range;
      await assert.rejects(push(), (error: unknown) => {
        assert.ok(error instanceof LapinError, String(error));
        assert.match(error.message, /took 3 chunks from byte \d+ on and still says it has \d+ of 204800 bytes; giving up/);
        return true;
      });
      assert.ok(patches <= 6, `${patches} chunks sent`);
    });
  }

  test('an honest Range still uploads the blob in chunks', async () => {
    answer = (n) => `0-${Math.min(n * CHUNK, BLOB.length) - 1}`;
    await push();
    assert.equal(patches, Math.ceil(BLOB.length / CHUNK));
  });
});
