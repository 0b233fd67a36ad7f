// Base image layers are applied in time linear in their entries (whiteouts
// and opaque directories visit only what they remove), and zstd layers are
// read through the zstd program, as lapin writes them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { flattenLayers } from '../../src/registry/extract.js';
import { rawTar, type RawEntry } from '../helpers/raw-tar.js';

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
});
