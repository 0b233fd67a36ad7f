// Blobs an output copies from the staging store (cache hits it adopted) are
// opened without following symlinks: one swapped for a symlink during the
// build is refused, not copied from wherever it points.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { writeArchiveFile } from '../../src/export/archive.js';
import { writeLayoutDirectory } from '../../src/export/layout-dir.js';
import { BlobStore } from '../../src/image/blob-store.js';
import { builtImage } from '../../src/image/image.js';
import type { ImageModel } from '../../src/image/model.js';
import { LapinError } from '../../src/index.js';

let root: string;
let dir: string;
before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'lapin blob-symlinks-'));
  dir = root;
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function imageWithSymlinkedLayer(): Promise<ImageModel> {
  dir = await mkdtemp(path.join(root, 'case-'));
  const store = new BlobStore(path.join(dir, 'store'));
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'ab'.repeat(32)}`, size: 12, diffId: `sha256:${'ab'.repeat(32)}` };
  const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.diffId] } }));
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', ...(await store.putBytes(configBytes)) };
  const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] }));
  const manifest = await store.putBytes(manifestBytes);
  const outside = path.join(dir, 'outside');
  await writeFile(outside, 'not a layer\n');
  const link = path.join(dir, 'cached-layer');
  await symlink(outside, link);
  store.adopt(layer.digest, link);
  return builtImage({
    store,
    manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest },
    manifestBytes,
    config,
    configBytes,
    layers: [layer],
    platform: { os: 'linux', architecture: 'amd64' },
  });
}

test('an OCI layout directory refuses a blob that became a symlink', async () => {
  const image = await imageWithSymlinkedLayer();
  await assert.rejects(writeLayoutDirectory(image, path.join(dir, 'layout')), (e: unknown) => e instanceof LapinError && /became a symlink while lapin was building/.test(e.message));
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('layout')), []);
});

test('an archive refuses a blob that became a symlink', async () => {
  const image = await imageWithSymlinkedLayer();
  await assert.rejects(writeArchiveFile(image, path.join(dir, 'out.tar'), 0), (e: unknown) => e instanceof LapinError && /became a symlink while lapin was building/.test(e.message));
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('out.tar')), []);
});
