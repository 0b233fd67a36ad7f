// gzip members reused by the hash of their 1 MiB input block: the layer's
// bytes must be exactly a cold build's, whatever the cache holds.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build, type BuildEvent, type BuildOptions } from '../../src/index.js';
import { BlobStore } from '../../src/image/blob-store.js';
import { writeLayer, type LayerBlob, type LayerOptions } from '../../src/image/layer.js';
import { MemberCache, memberCacheCap } from '../../src/image/member-cache.js';
import type { FsNode } from '../../src/image/tree.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

const MIB = 1024 * 1024;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const MTIME = 1_700_000_000;

/** Deterministic bytes that compress a little (text-like), so members differ from their blocks. */
function content(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < size; i += 64) {
    block = createHash('sha256').update(block).digest();
    out.write(`${block.toString('hex').slice(0, 40)} line ${i}\n`.padEnd(64, '.'), i, 'latin1');
  }
  return out;
}

function tree(data: Buffer): FsNode[] {
  return [
    { type: 'dir', path: 'data', mode: 0o755, uid: 0, gid: 0, mtime: MTIME },
    { type: 'file', path: 'data/disk.img', mode: 0o644, uid: 0, gid: 0, mtime: MTIME, size: data.length, source: { kind: 'bytes', data } },
  ];
}

describe('gzip member cache', () => {
  let dir = '';
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin members '));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function layer(data: Buffer, members?: MemberCache, extra: Partial<LayerOptions> = {}): Promise<LayerBlob & { bytes: Buffer }> {
    const store = new BlobStore(path.join(dir, `store-${n++}`));
    const written = await writeLayer(tree(data), store, { compression: 'gzip', ...(members ? { memberCache: members } : {}), ...extra });
    return { ...written, bytes: await readFile(store.pathOf(written.digest)) };
  }

  const entries = async (cacheDir: string): Promise<string[]> => (await readdir(cacheDir)).filter((name) => /^[0-9a-f]{64}$/.test(name)).map((name) => path.join(cacheDir, name));

  test('a one-block change recompresses that block only, and the layer is what a cold build writes', async () => {
    const members = new MemberCache(path.join(dir, 'reuse'), { maxBytes: 1024 * MIB });
    const original = content(6 * MIB + 1000, 'reuse');
    const cold = await layer(original);
    const first = await layer(original, members);
    assert.equal(first.digest, cold.digest, 'an empty cache changes nothing');
    assert.deepEqual(first.members, { reused: 0, compressed: 7, checked: 0 });

    const changed = Buffer.from(original);
    changed.write('one changed line', 3 * MIB + 100, 'latin1');
    const warm = await layer(changed, members);
    const coldChanged = await layer(changed);
    assert.notEqual(warm.digest, cold.digest);
    assert.equal(warm.digest, coldChanged.digest);
    assert.ok(warm.bytes.equals(coldChanged.bytes), 'byte for byte a cold build of the changed input');
    assert.equal(warm.diffId, coldChanged.diffId);
    assert.deepEqual(warm.members, { reused: 6, compressed: 1, checked: 0 });
  });

  test('members depend on the level: another level is a miss', async () => {
    const members = new MemberCache(path.join(dir, 'levels'), { maxBytes: 1024 * MIB });
    const data = content(2 * MIB, 'levels');
    await layer(data, members);
    const six = await layer(data, members, { level: 6 });
    assert.deepEqual(six.members, { reused: 0, compressed: 3, checked: 0 });
    assert.equal(six.digest, (await layer(data, undefined, { level: 6 })).digest);
  });

  test('corrupt, truncated and symlinked entries are misses: compressed again, same bytes, and rewritten', async () => {
    const cacheDir = path.join(dir, 'corrupt');
    const members = new MemberCache(cacheDir, { maxBytes: 1024 * MIB });
    const data = content(4 * MIB, 'corrupt');
    const cold = await layer(data, members);
    const files = (await entries(cacheDir)).sort();
    assert.equal(files.length, 5, '4 MiB of data and the tar headers: 5 blocks');
    const [flipped, truncated, linked, empty] = files as [string, string, string, string];
    const bytes = await readFile(flipped);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0x40;
    await writeFile(flipped, bytes);
    await truncate(truncated, (await stat(truncated)).size - 100);
    // A symlink to a sound entry (of another block) is not followed.
    const elsewhere = path.join(dir, 'elsewhere');
    await writeFile(elsewhere, await readFile(empty));
    await unlink(linked);
    await symlink(elsewhere, linked);
    await writeFile(empty, '');

    const again = await layer(data, members);
    assert.deepEqual(again.members, { reused: 1, compressed: 4, checked: 2 });
    assert.ok(again.bytes.equals(cold.bytes));
    const healed = await layer(data, members);
    assert.deepEqual(healed.members, { reused: 5, compressed: 0, checked: 0 }, 'the bad entries were replaced');
    assert.ok(healed.bytes.equals(cold.bytes));
  });

  test('an entry untouched since it was last found sound is not hashed again, in a later build too; one rewritten since is', async () => {
    const cacheDir = path.join(dir, 'stamps');
    const data = content(4 * MIB, 'stamps');
    const cold = await layer(data, new MemberCache(cacheDir, { maxBytes: 1024 * MIB }));
    const later = await layer(data, new MemberCache(cacheDir, { maxBytes: 1024 * MIB }));
    assert.deepEqual(later.members, { reused: 5, compressed: 0, checked: 0 }, 'stamps recorded when stored, read back by a new build');
    assert.ok(later.bytes.equals(cold.bytes));

    // Rewritten in place, same size: a new ctime, so hashed, found corrupt, compressed again.
    const [flipped] = (await entries(cacheDir)).sort() as [string];
    const bytes = await readFile(flipped);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0x40;
    await writeFile(flipped, bytes);
    const afterFlip = await layer(data, new MemberCache(cacheDir, { maxBytes: 1024 * MIB }));
    assert.deepEqual(afterFlip.members, { reused: 4, compressed: 1, checked: 1 });
    assert.ok(afterFlip.bytes.equals(cold.bytes));

    // A broken index only costs the hashing.
    await writeFile(path.join(cacheDir, 'verified.json'), '{"not": [json');
    const broken = await layer(data, new MemberCache(cacheDir, { maxBytes: 1024 * MIB }));
    assert.deepEqual(broken.members, { reused: 5, compressed: 0, checked: 5 });
    assert.ok(broken.bytes.equals(cold.bytes));
    // ...and it is written again whole.
    assert.deepEqual((await layer(data, new MemberCache(cacheDir, { maxBytes: 1024 * MIB }))).members, { reused: 5, compressed: 0, checked: 0 });
  });

  test('the cache stays under its cap, the least recently used entries going first', async () => {
    const cacheDir = path.join(dir, 'cap');
    // Random data: each member is about its 1 MiB block.
    const members = new MemberCache(cacheDir, { maxBytes: 5 * MIB });
    const old = randomBytes(3 * MIB);
    await layer(old, members);
    const kept = randomBytes(2 * MIB);
    await layer(kept, members);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await layer(kept, members); // touched: now the most recent
    await layer(randomBytes(2 * MIB), members);
    const sizes = await Promise.all((await entries(cacheDir)).map(async (file) => (await stat(file)).size));
    const total = sizes.reduce((a, b) => a + b, 0);
    assert.ok(total <= 5 * MIB, `${total} bytes under a ${5 * MIB}-byte cap`);
    assert.deepEqual((await layer(kept, members)).members, { reused: 3, compressed: 0, checked: 0 }, 'recently used entries stay');
    assert.equal((await layer(old, members)).members?.reused, 0, 'the oldest went');
  });

  test('LAPIN_MEMBER_CACHE_SIZE sets the cap; 0 turns reuse off', async () => {
    assert.equal(memberCacheCap({}), 2 * 1024 * MIB);
    assert.equal(memberCacheCap({ LAPIN_MEMBER_CACHE_SIZE: '8G' }), 8 * 1024 * MIB);
    assert.equal(memberCacheCap({ LAPIN_MEMBER_CACHE_SIZE: '0' }), 0);
    const cacheDir = path.join(dir, 'off');
    const off = new MemberCache(cacheDir, { maxBytes: 0 });
    const written = await layer(content(2 * MIB, 'off'), off);
    assert.equal(written.members, undefined);
    await assert.rejects(readdir(cacheDir), { code: 'ENOENT' });
  });

  describe('through build()', () => {
    let context = '';
    let cacheDir = '';
    before(async () => {
      context = path.join(dir, 'context');
      cacheDir = path.join(dir, 'build cache');
      await mkdir(context);
      await writeFile(path.join(context, 'kernel.hvt'), content(5 * MIB, 'kernel'), { mode: 0o755 });
      await writeFile(path.join(context, 'Containerfile'), kernelContainerfile());
    });

    async function buildTo(name: string, extra: Partial<BuildOptions> = {}): Promise<{ archive: Buffer; steps: string[] }> {
      const dest = path.join(dir, `${name}.tar`);
      const steps: string[] = [];
      await build({
        context,
        tags: ['members/test:1'],
        outputs: [{ type: 'oci', dest }],
        cacheDir,
        uruncChecks: 'warn',
        onEvent: (event: BuildEvent) => {
          if (event.kind === 'step') steps.push(event.message);
        },
        ...extra,
      });
      return { archive: await readFile(dest), steps };
    }
    const reusedLine = (steps: string[]): string | undefined => steps.find((s) => /^layer kernel: .*gzip members reused\)$/.test(s));

    test('a changed kernel reuses the unchanged blocks; the archive is a --no-cache build of it', async () => {
      await buildTo('first');
      const kernel = path.join(context, 'kernel.hvt');
      const data = await readFile(kernel);
      data.write('patched', 2 * MIB + 5, 'latin1');
      await writeFile(kernel, data);
      const warm = await buildTo('warm');
      assert.match(reusedLine(warm.steps) ?? warm.steps.join('\n'), /, 5 of 6 gzip members reused\)$/);
      const fresh = await buildTo('fresh', { cache: false });
      assert.equal(reusedLine(fresh.steps), undefined, 'cache: false reuses nothing');
      assert.ok(warm.archive.equals(fresh.archive));
    });

    test('cache: false neither reads nor writes members', async () => {
      const cacheOff = path.join(dir, 'never');
      await buildTo('off', { cache: false, cacheDir: cacheOff });
      await assert.rejects(readdir(path.join(cacheOff, 'v1', 'members')), { code: 'ENOENT' });
    });

    test('the CLI with --no-cache neither reads nor writes members; without it, it reuses them', async () => {
      const cliCache = path.join(dir, 'cli cache');
      const run = (...flags: string[]): ReturnType<typeof spawnSync> =>
        spawnSync(process.execPath, [...CLI, 'build', '--urunc-checks', 'warn', ...flags, '-o', path.join(dir, 'cli.tar'), context], { cwd: dir, encoding: 'utf8', env: { ...process.env, LAPIN_CACHE_DIR: cliCache } });
      const off = run('--no-cache');
      assert.equal(off.status, 0, String(off.stderr));
      await assert.rejects(readdir(path.join(cliCache, 'v1', 'members')), { code: 'ENOENT' });
      assert.equal(run().status, 0);
      const kernel = path.join(context, 'kernel.hvt');
      const data = await readFile(kernel);
      data.write('cli', 1 * MIB + 5, 'latin1');
      await writeFile(kernel, data);
      const warm = run();
      assert.match(String(warm.stdout) + String(warm.stderr), /layer kernel: .*, 5 of 6 gzip members reused\)/);
    });

    test('two builds at once share the cache and both write a cold build\'s bytes', async () => {
      const kernel = path.join(context, 'kernel.hvt');
      await writeFile(kernel, content(5 * MIB, 'concurrent'), { mode: 0o755 });
      const shared = path.join(dir, 'shared cache');
      const [a, b] = await Promise.all([buildTo('conc-a', { cacheDir: shared }), buildTo('conc-b', { cacheDir: shared })]);
      const fresh = await buildTo('conc-fresh', { cache: false });
      assert.ok(a.archive.equals(fresh.archive));
      assert.ok(b.archive.equals(fresh.archive));
      const data = await readFile(kernel);
      data.write('patched', 4 * MIB + 5, 'latin1');
      await writeFile(kernel, data);
      const [c, d] = await Promise.all([buildTo('conc-c', { cacheDir: shared }), buildTo('conc-d', { cacheDir: shared })]);
      const freshChanged = await buildTo('conc-fresh2', { cache: false });
      for (const built of [c, d]) {
        assert.match(reusedLine(built.steps) ?? built.steps.join('\n'), /, 5 of 6 gzip members reused\)$/);
        assert.ok(built.archive.equals(freshChanged.archive));
      }
      const files = await readdir(path.join(shared, 'v1', 'members'));
      assert.deepEqual(files.filter((f) => !/^[0-9a-f]{64}$/.test(f) && f !== 'verified.json'), [], 'no temporaries left');
    });
  });
});
