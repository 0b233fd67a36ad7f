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
import type { Image } from '../../src/image/image.js';
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

async function imageWithSymlinkedLayer(): Promise<Image> {
  dir = await mkdtemp(path.join(root, 'case-'));
  const store = new BlobStore(path.join(dir, 'store'));
  const config = await store.putBytes(Buffer.from('{}'));
  const manifest = await store.putBytes(Buffer.from('{"m":1}'));
  const outside = path.join(dir, 'outside');
  await writeFile(outside, 'not a layer\n');
  const link = path.join(dir, 'cached-layer');
  await symlink(outside, link);
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'ab'.repeat(32)}`, size: 12, diffId: `sha256:${'ab'.repeat(32)}` };
  store.adopt(layer.digest, link);
  return {
    store,
    manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest },
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [layer],
    platform: { os: 'linux', architecture: 'amd64' },
    names: [],
  };
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
