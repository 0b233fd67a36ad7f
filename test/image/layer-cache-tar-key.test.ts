// A layer of lapin's own staging files is keyed on its tar (its diff_id),
// hashed once: the key, the diff_id and the layer bytes must be exactly
// what a cold build gives.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { utimesSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { BlobStore } from '../../src/image/blob-store.js';
import { writeLayer, type LayerOptions } from '../../src/image/layer.js';
import { LayerCache, writeLayerCached } from '../../src/image/layer-cache.js';
import type { FsNode } from '../../src/image/tree.js';

const MIB = 1024 * 1024;

function image(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) out.write(`${seed} block ${i}\n`, i, 'latin1');
  return out;
}

describe('layer cache: staging layers keyed on their tar', () => {
  let dir = '';
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin tar key '));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A staging directory of its own (as each build has) holding `data` as its block image. */
  async function staged(data: Buffer): Promise<{ staging: string; nodes: FsNode[] }> {
    const staging = path.join(dir, `staging ${n++}`);
    await mkdir(staging);
    const file = path.join(staging, 'rootfs.img');
    await writeFile(file, data);
    // A staging file is new on every build: its time on disk must not matter.
    await utimes(file, 1_000_000 + n, 1_000_000 + n);
    const nodes: FsNode[] = [
      { type: 'dir', path: 'urunc', mode: 0o755, uid: 0, gid: 0, mtime: 0 },
      { type: 'file', path: 'urunc/rootfs.img', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: data.length, source: { kind: 'path', path: file } },
    ];
    return { staging, nodes };
  }

  async function cold(nodes: FsNode[], options: LayerOptions): Promise<{ digest: string; diffId: string; bytes: Buffer }> {
    const store = new BlobStore(path.join(dir, `cold-${n++}`));
    const layer = await writeLayer(nodes, store, options);
    return { digest: layer.digest, diffId: layer.diffId, bytes: await readFile(store.pathOf(layer.digest)) };
  }

  async function cachedBuild(cache: LayerCache, data: Buffer, options: LayerOptions = { compression: 'gzip' }) {
    const { staging, nodes } = await staged(data);
    const store = new BlobStore(path.join(dir, `out-${n++}`), true);
    const layer = await writeLayerCached(nodes, store, options, cache, [staging]);
    return { layer, nodes, bytes: await readFile(store.pathOf(layer.digest)) };
  }

  test('only layers of staging files and bytes are keyed on their tar', () => {
    const staging = path.join(dir, 'staging');
    const file = (p: string): FsNode => ({ type: 'file', path: 'f', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 1, source: { kind: 'path', path: p } });
    const bytes: FsNode = { type: 'file', path: 'b', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 1, source: { kind: 'bytes', data: Buffer.from('b') } };
    assert.equal(LayerCache.tarKeyed([file(path.join(staging, 'img'))], [staging]), true);
    assert.equal(LayerCache.tarKeyed([file(path.join(staging, 'img')), bytes], [staging]), true);
    assert.equal(LayerCache.tarKeyed([file(path.join(staging, 'img')), file(path.join(dir, 'context', 'a'))], [staging]), false, 'a context file is keyed on its stat');
    assert.equal(LayerCache.tarKeyed([bytes], [staging]), false);
    assert.equal(LayerCache.tarKeyed([file(`${staging}-other/img`)], [staging]), false);
  });

  test('the diff_id taken from the key is the tar\'s, and the layer is a cold build\'s; the same image in a new staging directory hits', async () => {
    const cache = new LayerCache(path.join(dir, 'cache-a'));
    const data = image(3 * MIB + 1234, 'first');
    const first = await cachedBuild(cache, data);
    assert.equal(first.layer.cached, false);
    const reference = await cold(first.nodes, { compression: 'gzip' });
    assert.equal(first.layer.diffId, reference.diffId);
    assert.equal(first.layer.diffId, `sha256:${createHash('sha256').update(gunzipSync(first.bytes)).digest('hex')}`);
    assert.equal(first.layer.digest, reference.digest);
    assert.ok(first.bytes.equals(reference.bytes));

    const again = await cachedBuild(cache, data);
    assert.equal(again.layer.cached, true);
    assert.equal(again.layer.diffId, reference.diffId);
    assert.ok(again.bytes.equals(reference.bytes));
  });

  test('a changed byte or another level is a miss, and the new layer is a cold build\'s', async () => {
    const cache = new LayerCache(path.join(dir, 'cache-b'));
    const data = image(2 * MIB, 'second');
    await cachedBuild(cache, data);
    const changed = Buffer.from(data);
    changed.writeUInt8(changed.readUInt8(MIB + 5) ^ 1, MIB + 5);
    const after = await cachedBuild(cache, changed);
    assert.equal(after.layer.cached, false);
    assert.equal(after.layer.members?.compressed, 1, 'only the changed block is compressed again');
    const reference = await cold(after.nodes, { compression: 'gzip' });
    assert.equal(after.layer.diffId, reference.diffId);
    assert.ok(after.bytes.equals(reference.bytes));

    const level9 = await cachedBuild(cache, changed, { compression: 'gzip', level: 9 });
    assert.equal(level9.layer.cached, false);
    assert.ok(level9.bytes.equals((await cold(level9.nodes, { compression: 'gzip', level: 9 })).bytes));
    const zstd = await cachedBuild(cache, changed, { compression: 'zstd' });
    assert.equal(zstd.layer.cached, false);
    assert.equal(zstd.layer.diffId, reference.diffId);
  });

  test('a staging file that changes while its layer is written fails the build instead of giving a wrong diff_id', async () => {
    const cache = new LayerCache(path.join(dir, 'cache-c'));
    const { staging, nodes } = await staged(image(2 * MIB, 'third'));
    const file = path.join(staging, 'rootfs.img');
    const store = new BlobStore(path.join(dir, `out-${n++}`), true);
    let touched = false;
    const onProgress = (): void => {
      if (touched) return;
      touched = true;
      // Synchronous, so that it lands before the layer is done: a new ctime is a change.
      utimesSync(file, 5, 5);
    };
    await assert.rejects(writeLayerCached(nodes, store, { compression: 'gzip', onProgress }, cache, [staging]), /changed while it was written/);
  });
});
