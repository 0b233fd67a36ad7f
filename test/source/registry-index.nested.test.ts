// A registry index whose entries are indexes (src/source/registry-index.ts)
// reads as the layout reader reads one (image-index.ts): every image reached,
// once, in first-seen order, at most 4 indexes deep; and as hostile input,
// bounded: each digest fetched once however often it is listed, no more than
// MAX_REGISTRY_MANIFESTS manifests fetched, the refusal before the fetches.
// Against docker-registry, counting requests through a proxy.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { createIndex } from '../../src/imagetools/create.js';
import { openImageIndex } from '../../src/source/image-index.js';
import { SourceError } from '../../src/source/open.js';
import { MAX_REGISTRY_MANIFESTS } from '../../src/source/registry-index.js';
import { handBlobs } from '../helpers/hand-image.js';
import { unikraftImage } from '../helpers/hand-index.js';
import { putHandImage, putManifest } from '../helpers/raw-push.js';
import { registrySkipReason, skopeoInspect, startProxy, startRegistry, type TestProxy, type TestRegistry } from '../registry/harness.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const REPO = 'nest/app';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
}

describe('registry index reader: nested indexes', { skip: registrySkipReason() }, () => {
  let registry: TestRegistry;
  let proxy: TestProxy;
  const images: Descriptor[] = [];

  /** Pushes an index listing CHILDREN (by digest, or under TAG) and returns its descriptor. */
  async function putIndex(children: readonly Descriptor[], tag?: string): Promise<Descriptor> {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children }));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await putManifest(registry.host, REPO, digest, bytes, OCI_INDEX);
    if (tag) await putManifest(registry.host, REPO, tag, bytes, OCI_INDEX);
    return { mediaType: OCI_INDEX, digest, size: bytes.length };
  }
  /** The manifest GETs (paths) made while WORK ran. */
  async function manifestGets<T>(work: () => Promise<T>): Promise<{ result: T | undefined; error: unknown; gets: string[] }> {
    const from = proxy.requests.length;
    let result: T | undefined;
    let error: unknown;
    try {
      result = await work();
    } catch (caught) {
      error = caught;
    }
    return { result, error, gets: proxy.requests.slice(from).filter((r) => r.method === 'GET' && r.path.includes('/manifests/')).map((r) => r.path) };
  }
  const open = (tag: string) => openImageIndex(`docker://${proxy.host}/${REPO}:${tag}`);

  before(async () => {
    registry = await startRegistry('anonymous');
    proxy = await startProxy(registry.host);
    // Four images: amd64 and arm64, and two more of each told apart by a label.
    for (const [architecture, label] of [['amd64', 'a'], ['arm64', 'a'], ['amd64', 'b'], ['arm64', 'b']] as const) {
      const pushed = await putHandImage(registry.host, REPO, await handBlobs({ ...unikraftImage(architecture), labels: { which: label } }));
      images.push({ mediaType: OCI_MANIFEST, ...pushed, platform: { os: 'linux', architecture } });
    }
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  test('an index of two indexes gives every platform with its own; imagetools create makes one flat index of it that skopeo reads', async () => {
    const amd = await putIndex([images[0] as Descriptor]);
    const arm = await putIndex([images[1] as Descriptor]);
    const top = await putIndex([amd, arm], 'nested');
    const { result: index, error, gets } = await manifestGets(() => open('nested'));
    assert.equal(error, undefined, String(error));
    assert.ok(index);
    assert.equal(index.index?.digest, top.digest);
    assert.deepEqual(index.entries.map((e) => [e.descriptor.digest, e.platform.architecture]), [[images[0]?.digest, 'amd64'], [images[1]?.digest, 'arm64']]);
    assert.equal(gets.length, 5, gets.join('\n'));
    await index.close();

    const flat = `${registry.host}/nest/flat:1`;
    await createIndex({ tags: [flat], sources: [`docker://${registry.host}/${REPO}:nested`] });
    const raw = (await skopeoInspect(flat, '--raw')) as { manifests: Descriptor[] };
    assert.deepEqual(raw.manifests.map((m) => [m.mediaType, m.digest, m.platform?.architecture]), [[OCI_MANIFEST, images[0]?.digest, 'amd64'], [OCI_MANIFEST, images[1]?.digest, 'arm64']]);
  });

  test('nested indexes listing their child 60 times at each of 3 levels: one entry, each index fetched once, well under a second', { timeout: 15_000 }, async () => {
    let child = await putIndex([images[0] as Descriptor]);
    for (let level = 0; level < 3; level++) child = await putIndex(Array.from({ length: 60 }, () => child), level === 2 ? 'fan-out' : undefined);
    const started = Date.now();
    const { result: index, error, gets } = await manifestGets(() => open('fan-out'));
    assert.equal(error, undefined, String(error));
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    assert.deepEqual(index?.entries.map((e) => e.descriptor.digest), [images[0]?.digest]);
    // The tag, two nested levels, the innermost index, the image: 5, not 60^3.
    assert.equal(gets.length, 5, gets.join('\n'));
    assert.equal(new Set(gets.slice(1)).size, 4);
  });

  test('4 indexes deep (as a layout) opens; 5 deep is one SourceError, exit 2, before the image is fetched', async () => {
    let chain = images[1] as Descriptor;
    for (let level = 0; level < 3; level++) chain = await putIndex([chain]);
    await putIndex([chain], 'deep-4');
    const four = await manifestGets(() => open('deep-4'));
    assert.equal(four.error, undefined, String(four.error));
    assert.deepEqual(four.result?.entries.map((e) => e.descriptor.digest), [images[1]?.digest]);

    chain = await putIndex([chain]);
    await putIndex([chain], 'deep-5');
    const five = await manifestGets(() => open('deep-5'));
    assert.ok(five.error instanceof SourceError, String(five.error));
    assert.equal(five.error.exitCode, 2);
    assert.match(five.error.message, /: image indexes nested deeper than 4$/);
    assert.ok(!five.gets.includes(`/v2/${REPO}/manifests/${images[1]?.digest}`), five.gets.join('\n'));
    assert.equal(five.gets.length, 5);
  });

  test(`more than ${MAX_REGISTRY_MANIFESTS} manifests in all: refused before fetching them, naming the limit`, { timeout: 60_000 }, async () => {
    // Distinct manifests (one annotation apart) over one image's config and layers: the registry checks an index's entries exist.
    const response = await fetch(`http://${registry.host}/v2/${REPO}/manifests/${images[0]?.digest}`, { headers: { accept: OCI_MANIFEST } });
    const base = JSON.parse(await response.text()) as Record<string, unknown>;
    const many: Descriptor[] = [];
    const count = MAX_REGISTRY_MANIFESTS + 1;
    for (let start = 0; start < count; start += 32) {
      const batch = Array.from({ length: Math.min(32, count - start) }, (_, i) => Buffer.from(JSON.stringify({ ...base, annotations: { n: String(start + i) } })));
      await Promise.all(batch.map((bytes) => putManifest(registry.host, REPO, `sha256:${createHash('sha256').update(bytes).digest('hex')}`, bytes, OCI_MANIFEST)));
      for (const bytes of batch) many.push({ mediaType: OCI_MANIFEST, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, size: bytes.length, platform: { os: 'linux', architecture: 'amd64' } });
    }
    // Half in one nested index, half in another: the second index passes the limit, and none of its entries is fetched.
    const half = Math.floor(count / 2);
    await putIndex([await putIndex(many.slice(0, half)), await putIndex(many.slice(half))], 'too-many');
    const { error, gets } = await manifestGets(() => open('too-many'));
    assert.ok(error instanceof SourceError, String(error));
    assert.equal(error.exitCode, 2);
    assert.match(error.message, new RegExp(`list more than ${MAX_REGISTRY_MANIFESTS} manifests; lapin reads at most ${MAX_REGISTRY_MANIFESTS}$`));
    assert.ok(gets.length <= MAX_REGISTRY_MANIFESTS, String(gets.length));
    assert.ok(!gets.some((p) => many.slice(half).some((m) => p.endsWith(m.digest))), 'the second half was fetched');
    // At the limit exactly (the index and 511 images), it opens; one more image is refused at once.
    await putIndex(many.slice(0, MAX_REGISTRY_MANIFESTS - 1), 'at-limit');
    const atLimit = await open('at-limit');
    assert.equal(atLimit.entries.length, MAX_REGISTRY_MANIFESTS - 1);
    await putIndex(many.slice(0, MAX_REGISTRY_MANIFESTS), 'over-limit');
    const over = await manifestGets(() => open('over-limit'));
    assert.ok(over.error instanceof SourceError, String(over.error));
    assert.equal(over.gets.length, 1, 'nothing but the index fetched');
  });

  test('property: any DAG of nested indexes gives each reachable image once, in first-seen order, each digest fetched once', { timeout: 120_000 }, async () => {
    // A plan: indexes built one after the other, each listing images or earlier indexes, repeats allowed; the last is tagged.
    const plan = fc.array(fc.array(fc.oneof(fc.record({ image: fc.nat({ max: 3 }) }), fc.record({ index: fc.nat() })), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 4 });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(plan, async (indexes) => {
        const built: Array<{ descriptor: Descriptor; images: string[] }> = [];
        for (const children of indexes) {
          const listed: Descriptor[] = [];
          const reach: string[] = [];
          for (const child of children) {
            if ('image' in child || built.length === 0) {
              const image = images['image' in child ? child.image : 0] as Descriptor;
              listed.push(image);
              reach.push(image.digest);
            } else {
              const inner = built[child.index % built.length] as (typeof built)[number];
              listed.push(inner.descriptor);
              reach.push(...inner.images);
            }
          }
          built.push({ descriptor: await putIndex(listed), images: [...new Set(reach)] });
        }
        const last = built[built.length - 1] as (typeof built)[number];
        const tag = `dag-${run++}`;
        await putManifest(registry.host, REPO, tag, Buffer.from(await (await fetch(`http://${registry.host}/v2/${REPO}/manifests/${last.descriptor.digest}`, { headers: { accept: OCI_INDEX } })).arrayBuffer()), OCI_INDEX);
        const { result, error, gets } = await manifestGets(() => open(tag));
        // A chain deeper than the cap is the one error allowed here.
        if (error !== undefined) {
          assert.ok(error instanceof SourceError && /nested deeper than 4/.test(error.message), String(error));
          return;
        }
        assert.deepEqual(result?.entries.map((e) => e.descriptor.digest), last.images);
        assert.equal(new Set(gets).size, gets.length, gets.join('\n'));
      }),
      { numRuns: 12 },
    );
  });
});
