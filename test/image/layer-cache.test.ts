import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build, type BuildEvent, type BuildOptions } from '../../src/index.js';
import { removePendingSync } from '../../src/export/atomic.js';
import { LayerCache, defaultCacheDir } from '../../src/image/layer-cache.js';
import type { FsNode } from '../../src/image/tree.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

describe('layer cache', () => {
  let dir = '';
  let context = '';
  let cacheDir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin-cache-'));
    context = path.join(dir, 'context');
    cacheDir = path.join(dir, 'cache');
    await mkdir(context);
    await writeFile(path.join(context, 'kernel.hvt'), Buffer.alloc(3 * 1024 * 1024, 'unikernel '), { mode: 0o755 });
    await writeFile(path.join(context, 'etc.conf'), 'x=1\n');
    await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY etc.conf /etc/app.conf'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function buildTo(name: string, extra: Partial<BuildOptions> = {}): Promise<{ archive: Buffer; steps: string[]; digest: string }> {
    const dest = path.join(dir, `${name}.tar`);
    const steps: string[] = [];
    const result = await build({
      context,
      tags: ['cache/test:1'],
      outputs: [{ type: 'oci', dest }],
      cacheDir,
      uruncChecks: 'warn',
      onEvent: (event: BuildEvent) => {
        if (event.kind === 'step') steps.push(event.message);
      },
      ...extra,
    });
    return { archive: await readFile(dest), steps, digest: result.digest };
  }

  const cachedLayers = (steps: string[]): number => steps.filter((s) => /^layer .*, cached\)$/.test(s)).length;

  for (const compression of ['gzip', 'zstd', 'none'] as const) {
    test(`${compression}: a build from the cache is byte-identical to a fresh one`, async () => {
      const first = await buildTo(`${compression}-first`, { compression });
      assert.equal(cachedLayers(first.steps), 0);
      const second = await buildTo(`${compression}-second`, { compression });
      assert.equal(cachedLayers(second.steps), 3, second.steps.join('\n'));
      const fresh = await buildTo(`${compression}-fresh`, { compression, cache: false });
      assert.equal(cachedLayers(fresh.steps), 0);
      assert.ok(second.archive.equals(first.archive));
      assert.ok(fresh.archive.equals(first.archive));
    });
  }

  test('a changed file is a miss, and the new bytes are what gets built', async () => {
    const before = await buildTo('change-before');
    // Same size, new content, mtime put back: ctime still tells.
    const conf = path.join(context, 'etc.conf');
    await writeFile(conf, 'x=2\n');
    await utimes(conf, new Date(0), new Date(0));
    const afterChange = await buildTo('change-after');
    assert.equal(cachedLayers(afterChange.steps), 2, 'kernel and urunc.json layers still hit');
    assert.notEqual(afterChange.digest, before.digest);
    const fresh = await buildTo('change-fresh', { cache: false });
    assert.ok(afterChange.archive.equals(fresh.archive));
  });

  test('touching a file is a miss', async () => {
    await buildTo('touch-before');
    const kernel = path.join(context, 'kernel.hvt');
    await utimes(kernel, new Date(), new Date(Date.now() + 5000));
    const touched = await buildTo('touch-after');
    assert.ok(!touched.steps.some((s) => s.startsWith('layer kernel') && s.endsWith(', cached)')));
  });

  test('the level and the compression are part of the key', async () => {
    const cache = new LayerCache(path.join(dir, 'keys'));
    const file = path.join(context, 'etc.conf');
    const nodes: FsNode[] = [{ type: 'file', path: 'etc/app.conf', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 4, source: { kind: 'path', path: file } }];
    const keys = new Set([
      await cache.key(nodes, { compression: 'gzip' }),
      await cache.key(nodes, { compression: 'gzip', level: 9 }),
      await cache.key(nodes, { compression: 'zstd' }),
      await cache.key(nodes, { compression: 'none' }),
      await cache.key([{ ...(nodes[0] as FsNode), mode: 0o600 }], { compression: 'gzip' }),
    ]);
    assert.equal(keys.size, 5);
    assert.equal(await cache.key(nodes, { compression: 'gzip', level: 1 }), await cache.key(nodes, { compression: 'gzip' }), 'the default level is 1');
  });

  test('a staging file is keyed on its content, read once for both keys of a layer', async () => {
    const cache = new LayerCache(path.join(dir, 'content-keys'));
    const staging = path.join(dir, 'staging-keys');
    await mkdir(staging, { recursive: true });
    const file = path.join(staging, 'initrd.cpio');
    await writeFile(file, 'cpio bytes');
    const nodes: FsNode[] = [{ type: 'file', path: 'initrd', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 10, source: { kind: 'path', path: file } }];
    const hashes = new Map<string, string>();
    const first = await cache.key(nodes, { compression: 'gzip' }, [staging], hashes);
    // The check after writing takes the remembered hash: the file is not read again.
    await rm(file);
    assert.equal(await cache.key(nodes, { compression: 'gzip' }, [staging], hashes), first);
    await writeFile(file, 'cpio BYTES');
    assert.notEqual(await cache.key(nodes, { compression: 'gzip' }, [staging]), first);
  });

  test('a missing or truncated blob is a miss, never served', async () => {
    const first = await buildTo('blob-first');
    const blobs = path.join(cacheDir, 'v1', 'blobs', 'sha256');
    for (const name of await readdir(blobs)) await writeFile(path.join(blobs, name), 'truncated');
    const again = await buildTo('blob-again');
    assert.equal(cachedLayers(again.steps), 0);
    assert.ok(again.archive.equals(first.archive));
  });

  test('leaves no temporary files behind', async () => {
    await buildTo('clean');
    const walk = async (d: string): Promise<string[]> => {
      const out: string[] = [];
      for (const entry of await readdir(d, { withFileTypes: true })) {
        const p = path.join(d, entry.name);
        if (entry.isDirectory()) out.push(...(await walk(p)));
        else out.push(entry.name);
      }
      return out;
    };
    assert.deepEqual((await walk(cacheDir)).filter((n) => n.includes('tmp') || n.startsWith('.incoming')), []);
  });

  test('a blob being written to the cache is removed by the interrupt cleanup', async () => {
    const cache = new LayerCache(path.join(dir, 'interrupted-cache'));
    const incoming = await cache.blobs.incoming();
    // More than the stream buffers, so the file is open and written to.
    await incoming.write(Buffer.alloc(6 * 1024 * 1024, 1));
    const blobs = path.join(cache.blobs.dir, 'sha256');
    assert.equal((await readdir(blobs)).filter((n) => n.startsWith('.incoming')).length, 1);
    // What the SIGINT/SIGTERM handler runs.
    removePendingSync();
    assert.deepEqual(await readdir(blobs), []);
    await incoming.abort();
  });

  test('location: LAPIN_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
    assert.equal(defaultCacheDir({ LAPIN_CACHE_DIR: '/c' }), '/c');
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: '/x' }), '/x/lapin');
    assert.match(defaultCacheDir({ XDG_CACHE_HOME: 'relative' }), /\.cache\/lapin$/);
  });
});
