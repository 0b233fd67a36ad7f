// Image indexes written to hurt the reader (src/source/image-index.ts,
// registry-index.ts): nested indexes fanned out at every level, one manifest
// listed hundreds of times, an index whose image the registry lost. Each
// must open in bounded time and requests, or fail naming what is wrong.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createIndex } from '../../src/imagetools/create.js';
import { openImageIndex } from '../../src/source/image-index.js';
import { SourceError } from '../../src/source/open.js';
import { handBlobs, sha256 } from '../helpers/hand-image.js';
import { handIndex, unikraftImage, writeIndexLayout } from '../helpers/hand-index.js';
import { deleteManifest, putBlob, putHandImage, putManifest } from '../helpers/raw-push.js';
import { registrySkipReason, startProxy, startRegistry, type TestProxy, type TestRegistry } from '../registry/harness.js';

const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const image = unikraftImage;

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin index hostile '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('image index reader: hostile layouts', () => {
  test('nested indexes listing their child 60 times at each of 3 levels open in well under a second, one entry', { timeout: 15_000 }, async () => {
    const made = await handIndex([image('amd64')]);
    const dir = join(work, 'fan out');
    await writeIndexLayout(dir, made);
    // 60^3 = 216000 paths to one image: each nested index must be read once, not once per path.
    let child = { mediaType: OCI_INDEX, digest: made.indexDigest, size: 0 };
    for (let level = 0; level < 3; level++) {
      const blob = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: Array.from({ length: 60 }, () => child) }));
      await writeFile(join(dir, 'blobs', 'sha256', sha256(blob)), blob);
      child = { mediaType: OCI_INDEX, digest: `sha256:${sha256(blob)}`, size: blob.length };
    }
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [child] }));
    const started = Date.now();
    const index = await openImageIndex(`oci:${dir}`);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    assert.deepEqual(index.entries.map((e) => e.descriptor.digest), made.manifests);
  });
});

describe('image index reader: hostile registries', { skip: registrySkipReason() }, () => {
  let registry: TestRegistry;
  let proxy: TestProxy;
  let amd64: { digest: string; size: number };
  let arm64: { digest: string; size: number };
  before(async () => {
    registry = await startRegistry('anonymous');
    proxy = await startProxy(registry.host);
    amd64 = await putHandImage(registry.host, 'hostile/app', await handBlobs(image('amd64')));
    arm64 = await putHandImage(registry.host, 'hostile/app', await handBlobs(image('arm64')));
  });
  after(async () => {
    await proxy?.stop();
    await registry?.stop();
  });

  test('an index listing one manifest 500 times: one entry, each manifest fetched once', async () => {
    const entry = { mediaType: OCI_MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } };
    await putManifest(registry.host, 'hostile/app', 'dup', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: Array.from({ length: 500 }, () => entry) })), OCI_INDEX);
    const before = proxy.requests.length;
    const index = await openImageIndex(`docker://${proxy.host}/hostile/app:dup`);
    assert.deepEqual(index.entries.map((e) => e.descriptor.digest), [amd64.digest]);
    const manifestGets = proxy.requests.slice(before).filter((r) => r.method === 'GET' && r.path.includes('/manifests/'));
    assert.equal(manifestGets.length, 2, manifestGets.map((r) => r.path).join('\n'));
  });

  test('an index with an SBOM artifact (empty config) and an attestation: the image only, the others left out', async () => {
    const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
    const empty = Buffer.from('{}');
    const artifact = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await putBlob(registry.host, 'hostile/app', empty), size: 2 }, layers: [{ mediaType: 'application/spdx+json', digest: await putBlob(registry.host, 'hostile/app', sbom), size: sbom.length }] }),
    );
    const artifactDigest = await putManifest(registry.host, 'hostile/app', `sha256:${sha256(artifact)}`, artifact, OCI_MANIFEST);
    const provenance = Buffer.from(JSON.stringify({ ...JSON.parse(artifact.toString()), annotations: { kind: 'provenance' } }));
    const provenanceDigest = await putManifest(registry.host, 'hostile/app', `sha256:${sha256(provenance)}`, provenance, OCI_MANIFEST);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: OCI_MANIFEST, digest: artifactDigest, size: artifact.length },
        { mediaType: OCI_MANIFEST, digest: provenanceDigest, size: provenance.length, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
      ],
    };
    await putManifest(registry.host, 'hostile/app', 'sbom', Buffer.from(JSON.stringify(index)), OCI_INDEX);
    const opened = await openImageIndex(`docker://${registry.host}/hostile/app:sbom`);
    assert.deepEqual(opened.entries.map((e) => e.descriptor.digest), [amd64.digest]);
    assert.deepEqual(new Set(opened.leftOut), new Set([{ digest: provenanceDigest, what: 'an attestation' }, { digest: artifactDigest, what: 'an artifact (empty config)' }]));
  });

  test('an index whose arm64 manifest the registry lost: names that manifest (exit 2), and --strategy merge refuses rather than drop the index', async () => {
    const lossy = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [
          { mediaType: OCI_MANIFEST, ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
          { mediaType: OCI_MANIFEST, ...arm64, platform: { os: 'linux', architecture: 'arm64' } },
        ],
      }),
    );
    // The registry checks an index's manifests are in its repository.
    await putHandImage(registry.host, 'hostile/lossy', await handBlobs(image('amd64')));
    await putHandImage(registry.host, 'hostile/lossy', await handBlobs(image('arm64')));
    await putManifest(registry.host, 'hostile/lossy', 'multi', lossy, OCI_INDEX);
    await deleteManifest(registry.host, 'hostile/lossy', arm64.digest);
    await assert.rejects(openImageIndex(`docker://${registry.host}/hostile/lossy:multi`), (error: unknown) => {
      assert.ok(error instanceof SourceError, String(error));
      assert.equal(error.exitCode, 2);
      assert.match(error.message, new RegExp(`the index lists ${arm64.digest}, which ${registry.host} does not have`));
      return true;
    });
    // merge reads the index at the target first; a hole in it is an error, not "nothing there yet".
    await assert.rejects(createIndex({ tags: [`${registry.host}/hostile/lossy:multi`], sources: [`docker://${registry.host}/hostile/app@${amd64.digest}`], strategy: 'merge' }), (error: unknown) => {
      assert.match(String(error), new RegExp(`the index lists ${arm64.digest}`));
      return true;
    });
  });
});
