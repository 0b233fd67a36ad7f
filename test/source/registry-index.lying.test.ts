// A registry is untrusted: what it serves for an index's children must be
// what the index names (digest and size), whatever digest algorithm the index
// uses, and the manifests and configs lapin holds while reading one source are
// bounded in bytes as well as in number. A registry that lies, served here.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { openImageIndex } from '../../src/source/image-index.js';
import { SourceError } from '../../src/source/open.js';
import { REGISTRY_INDEX_BYTES_LIMIT } from '../../src/source/registry-index.js';

const sha = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const config = json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} });
const manifest = json({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [] });
/** A manifest padded to 3 MiB with an annotation: valid, under the one-manifest limit, large. */
const padded = (n: number): Buffer => json({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length }, layers: [], annotations: { n: String(n), pad: 'x'.repeat(3 * 1024 * 1024) } });

const served = new Map<string, { bytes: Buffer; type: string }>();
let manifestGets = 0;
let server: http.Server;
let host: string;

function put(reference: string, bytes: Buffer, type: string): void {
  served.set(`/v2/r/manifests/${reference}`, { bytes, type });
}

before(async () => {
  server = http.createServer((request, response) => {
    const url = request.url ?? '';
    if (url === '/v2/') return response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    if (url.startsWith('/v2/r/blobs/')) return response.writeHead(200, { 'content-length': config.length }).end(config);
    const item = served.get(url);
    if (!item) return response.writeHead(404).end();
    manifestGets++;
    response.writeHead(200, { 'content-type': item.type, 'content-length': item.bytes.length }).end(item.bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Serves INDEX under its digest and returns the docker:// reference pinned to it. */
function pinnedIndex(manifests: unknown[]): string {
  const bytes = json({ schemaVersion: 2, mediaType: INDEX, manifests });
  put(sha(bytes), bytes, INDEX);
  return `docker://${host}/r@${sha(bytes)}`;
}

test('an index child named by a digest lapin does not check (sha512) is refused, not taken from the registry unchecked', async () => {
  const child = `sha512:${'ab'.repeat(64)}`;
  put(child, manifest, MANIFEST);
  const reference = pinnedIndex([{ mediaType: MANIFEST, digest: child, size: 7, platform: { os: 'linux', architecture: 'amd64' } }]);
  await assert.rejects(openImageIndex(reference), (error: unknown) => error instanceof SourceError && /is not a sha256 digest, and lapin checks manifests only against sha256 digests; refusing it/.test(error.message));
});

test('an index child whose bytes match its digest but not the size the index records is refused', async () => {
  put(sha(manifest), manifest, MANIFEST);
  const reference = pinnedIndex([{ mediaType: MANIFEST, digest: sha(manifest), size: manifest.length + 1, platform: { os: 'linux', architecture: 'amd64' } }]);
  await assert.rejects(openImageIndex(reference), (error: unknown) => error instanceof SourceError && new RegExp(`is ${manifest.length} bytes, not the ${manifest.length + 1} its index records`).test(error.message));
});

test('an index whose children add up to more than the byte budget is refused before the fetch that passes it', async () => {
  const children = Array.from({ length: 30 }, (_, n) => {
    const bytes = padded(n);
    put(sha(bytes), bytes, MANIFEST);
    return { mediaType: MANIFEST, digest: sha(bytes), size: bytes.length, platform: { os: 'linux', architecture: 'amd64' } };
  });
  const reference = pinnedIndex(children);
  const from = manifestGets;
  await assert.rejects(openImageIndex(reference), (error: unknown) => error instanceof SourceError && /are more than 64 MiB; lapin reads at most that much/.test(error.message));
  // The index, then only the children that fit in the budget.
  const fit = Math.floor(REGISTRY_INDEX_BYTES_LIMIT / (children[0] as { size: number }).size);
  assert.ok(manifestGets - from <= 1 + fit, `${manifestGets - from} manifest GETs`);
});

test('an honest index of the same shape opens', async () => {
  put(sha(manifest), manifest, MANIFEST);
  const index = await openImageIndex(pinnedIndex([{ mediaType: MANIFEST, digest: sha(manifest), size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } }]));
  assert.equal(index.entries.length, 1);
  await index.close();
});
