// Base image layers are applied in time linear in their entries (whiteouts
// and opaque directories visit only what they remove), and zstd layers are
// read through the zstd program, as lapin writes them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { applyLayerRecords, flattenLayers, type LayerRecord } from '../../src/registry/extract.js';
import { paxBody, rawTar, type RawEntry } from '../helpers/raw-tar.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin extract-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('base layers at scale', () => {
  test('40,000 whiteouts over 40,000 directories, and opaque markers, take seconds, not minutes', { timeout: 120_000 }, async () => {
    const count = 40_000;
    const lower: RawEntry[] = [];
    const upper: RawEntry[] = [];
    for (let i = 0; i < count; i++) {
      lower.push({ name: `d${i % 200}/e${i}/`, type: '5' });
      upper.push({ name: `d${i % 200}/.wh.e${i}` });
      if (i % 2 === 0) upper.push({ name: `d${i % 200}/.wh..wh..opq` });
    }
    lower.push({ name: 'keep/', type: '5' });
    const files = [path.join(work, 'lower.tar'), path.join(work, 'upper.tar')];
    await writeFile(files[0] as string, rawTar(lower));
    await writeFile(files[1] as string, rawTar(upper));
    const started = Date.now();
    const nodes = await flattenLayers(files.map((file) => ({ file, digest: path.basename(file) })), path.join(work, 'data'), 'test');
    const seconds = (Date.now() - started) / 1000;
    assert.equal(nodes.filter((n) => /^d\d+\/e/.test(n.path)).length, 0);
    assert.ok(nodes.some((n) => n.path === 'keep'));
    // The quadratic walk took minutes for this; linear takes a few seconds on a loaded 2-core machine.
    assert.ok(seconds < 30, `${seconds} s`);
  });

  test('a zstd base layer is read through the zstd program', async () => {
    const plain = rawTar([{ name: 'etc/', type: '5' }, { name: 'etc/hostname', body: 'base\n' }]);
    const zstd = spawnSync('zstd', ['-q', '-c'], { input: plain });
    assert.equal(zstd.status, 0);
    const file = path.join(work, 'zstd.tar.zst');
    await writeFile(file, zstd.stdout);
    const nodes = await flattenLayers([{ file, digest: 'sha256:zstd' }], path.join(work, 'zdata'), 'test');
    assert.deepEqual(nodes.map((n) => n.path), ['etc', 'etc/hostname']);
  });

  test('3,000 files 1,500 directories deep are applied in linear time (each parent was looked up again for every component)', { timeout: 120_000 }, async () => {
    const deep = Array.from({ length: 1500 }, (_, i) => `d${i % 10}`).join('/');
    const layer: LayerRecord[] = [];
    for (let i = 0; i < 3000; i++) layer.push({ op: 'put', node: { type: 'dir', path: `${deep}/f${i}`, mode: 0o755, uid: 0, gid: 0, mtime: 0 } });
    const started = Date.now();
    const nodes = applyLayerRecords([layer], 'test');
    const seconds = (Date.now() - started) / 1000;
    assert.equal(nodes.length, 1500 + 3000);
    // The per-component walk took minutes for this; one look-up per entry takes well under a second.
    assert.ok(seconds < 10, `${seconds} s`);
  });

  test('a name or link target longer than PATH_MAX is refused (a million components from 16 KiB of gzip held gigabytes)', async () => {
    const long = Array(3000).fill('a').join('/');
    for (const [name, entries] of [
      ['name', [{ name: 'p', type: 'x', body: paxBody({ path: long }) }, { name: 'x', body: 'hi' }]],
      ['link', [{ name: 'p', type: 'x', body: paxBody({ linkpath: long }) }, { name: 'x', type: '2' }]],
    ] as const) {
      const file = path.join(work, `long-${name}.tar`);
      await writeFile(file, rawTar(entries));
      await assert.rejects(flattenLayers([{ file, digest: 'sha256:long' }], path.join(work, `long-${name}-data`), 'test'), /test has a layer sha256:long with an entry whose (name|link target) is 5999 bytes, longer than the 4096/);
    }
  });

  test('a whiteout of a lower directory keeps what this layer put below it, and its parents', () => {
    const dir = (p: string): LayerRecord => ({ op: 'put', node: { type: 'dir', path: p, mode: 0o700, uid: 0, gid: 0, mtime: 0 } });
    const nodes = applyLayerRecords([[dir('a'), dir('a/b')], [dir('a/b/c'), dir('a/b'), { op: 'whiteout', path: 'a' }, dir('a/b/c/d')]], 'test');
    assert.deepEqual(
      nodes.map((n) => [n.path, n.mode]),
      [['a', 0o755], ['a/b', 0o700], ['a/b/c', 0o700], ['a/b/c/d', 0o700]],
    );
  });
});
