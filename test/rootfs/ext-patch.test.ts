// A block image patched from the one an earlier build kept must be, byte
// for byte, what mke2fs writes for the changed tree; a change that moves a
// file's zero blocks (holes) must not be patched at all.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FsNode } from '../../src/image/tree.js';
import { BlockImageCache } from '../../src/rootfs/block-cache.js';
import { parseStatOutput } from '../../src/rootfs/ext-patch.js';
import { writeExtImage, writeKeptExtImage, type ExtFlavor, type KeptImages } from '../../src/rootfs/ext.js';
import { isCI } from '../consumers/harness.js';

const MTIME = 1_700_000_000;
const BLOCK = 4096;
const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;

function e2fsprogsMissing(): string | false {
  if (spawnSync('mke2fs', ['-V'], { env: { ...process.env, PATH: SBIN_PATH }, stdio: 'ignore' }).status === 0) return false;
  if (isCI()) throw new Error('CI must run the block image tests: e2fsprogs is missing (scripts/install-deps.sh installs it)');
  return 'e2fsprogs is not installed';
}

const dir = (path: string): FsNode => ({ type: 'dir', path, mode: 0o755, uid: 0, gid: 0, mtime: MTIME });
const pathFile = (path: string, source: string, size: number): FsNode => ({ type: 'file', path, mode: 0o644, uid: 0, gid: 0, mtime: MTIME, size, source: { kind: 'path', path: source } });
const bytesFile = (path: string, data: Buffer): FsNode => ({ type: 'file', path, mode: 0o600, uid: 1, gid: 2, mtime: MTIME, size: data.length, source: { kind: 'bytes', data } });

/** A file's content as a list of blocks: 0 is an all-zero block, n > 0 a block filled from seed n; `tail` cuts the last block short. */
interface Content {
  blocks: number[];
  tail: number;
}

function render(content: Content): Buffer {
  const data = Buffer.alloc(content.blocks.length * BLOCK);
  content.blocks.forEach((seed, i) => {
    if (seed === 0) return;
    for (let j = 0; j < BLOCK; j += 4) data.writeUInt32LE(((seed * 2654435761) ^ (i * 40503) ^ j) >>> 0, i * BLOCK + j);
  });
  return content.blocks.length === 0 ? data : data.subarray(0, data.length - content.tail);
}

const content = fc.record({ blocks: fc.array(fc.oneof({ arbitrary: fc.constant(0), weight: 1 }, { arbitrary: fc.integer({ min: 1, max: 6 }), weight: 3 }), { maxLength: 6 }), tail: fc.integer({ min: 0, max: BLOCK - 1 }) });

/** The same file after a change of its bytes: each block may get another seed, keeping zero blocks zero unless `moveHoles`. */
function changed(before: Content, seeds: number[], moveHoles: boolean): Content {
  return {
    tail: before.tail,
    blocks: before.blocks.map((seed, i) => {
      const next = seeds[i % Math.max(1, seeds.length)] ?? seed;
      if (moveHoles) return next;
      return seed === 0 ? 0 : Math.max(1, next);
    }),
  };
}

/** A last block cut short may be all zero in its kept part even when the block was not: keep the hole pattern honest. */
function zeroBlocks(data: Buffer): boolean[] {
  const zeros: boolean[] = [];
  for (let i = 0; i < data.length; i += BLOCK) zeros.push(data.subarray(i, i + BLOCK).every((b) => b === 0));
  return zeros;
}

describe('block images patched from a kept image', { skip: e2fsprogsMissing() }, () => {
  let work = '';
  let n = 0;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lapin ext patch '));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** Builds through the kept-image path and puts the image back, as a build's end does; returns its bytes and what happened. */
  async function keptBuild(nodes: FsNode[], cache: BlockImageCache, flavor: ExtFlavor): Promise<{ bytes: Buffer; patched: boolean; files: number }> {
    const tasks: Array<() => Promise<void>> = [];
    const kept: KeptImages = { cache, defer: (task) => tasks.push(task) };
    const result = await writeKeptExtImage(nodes, { flavor, mtime: MTIME, workDir: join(work, `kept-work-${n++}`) }, kept, join(work, `fallback-${n++}.img`));
    const bytes = await readFile(result.file);
    for (const task of tasks) await task();
    return { bytes, patched: result.patched !== undefined, files: result.patched?.files ?? 0 };
  }

  async function coldBuild(nodes: FsNode[], flavor: ExtFlavor): Promise<Buffer> {
    const out = join(work, `cold-${n++}.img`);
    await writeExtImage(nodes, out, { flavor, mtime: MTIME, workDir: join(work, `cold-work-${n++}`) });
    const bytes = await readFile(out);
    await rm(out);
    return bytes;
  }

  test('a same-size change gives the bytes mke2fs gives; a moved hole is built from scratch (ext2 and ext4)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<ExtFlavor>('ext2', 'ext4'),
        fc.array(content, { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.nat(),
        async (flavor, files, seeds, moveHoles, which) => {
          const round = join(work, `round-${n++}`);
          await mkdir(join(round, 'src'), { recursive: true });
          const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
          const tree = async (contents: Content[]): Promise<FsNode[]> => {
            const nodes: FsNode[] = [dir('d')];
            for (const [i, c] of contents.entries()) {
              const data = render(c);
              const source = join(round, 'src', `f${i}`);
              await writeFile(source, data);
              nodes.push(pathFile(`d/f${i}`, source, data.length));
            }
            nodes.push(bytesFile('inline', render(contents[0] as Content)));
            nodes.push({ type: 'symlink', path: 'link', target: 'd/f0', mode: 0o777, uid: 0, gid: 0, mtime: MTIME });
            nodes.push({ type: 'hardlink', path: 'other', target: 'd/f0', mode: 0o644, uid: 0, gid: 0, mtime: MTIME });
            return nodes;
          };
          const first = await keptBuild(await tree(files), cache, flavor);
          assert.equal(first.patched, false);
          assert.ok(first.bytes.equals(await coldBuild(await tree(files), flavor)), 'a first build through the cache is not what mke2fs writes');

          const target = which % files.length;
          const next = files.map((c, i) => (i === target ? changed(c, seeds, moveHoles) : c));
          const holesMoved = next.some((c, i) => String(zeroBlocks(render(c))) !== String(zeroBlocks(render(files[i] as Content))));
          const second = await keptBuild(await tree(next), cache, flavor);
          const cold = await coldBuild(await tree(next), flavor);
          assert.ok(second.bytes.equals(cold), `the ${second.patched ? 'patched' : 'rebuilt'} image differs from mke2fs's`);
          assert.equal(second.patched, !holesMoved, holesMoved ? 'a change that moved holes was patched' : 'a same-shape change was not patched');
          await rm(round, { recursive: true, force: true });
        },
      ),
      { numRuns: isCI() ? 24 : 12 },
    );
  });

  test('a size change and a kept image that was written to build from scratch; a sparse source is patched', async () => {
    const round = join(work, 'refusals');
    await mkdir(join(round, 'src'), { recursive: true });
    const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
    const source = join(round, 'src', 'data');
    const data = Buffer.alloc(3 * BLOCK, 7);
    await writeFile(source, data);
    const nodes = (size: number): FsNode[] => [dir('d'), pathFile('d/data', source, size)];
    await keptBuild(nodes(data.length), cache, 'ext4');
    const again = await keptBuild(nodes(data.length), cache, 'ext4');
    assert.deepEqual([again.patched, again.files], [true, 0]);

    // Grown: another shape, so another key; the kept image is not taken.
    await writeFile(source, Buffer.alloc(4 * BLOCK, 7));
    assert.equal((await keptBuild(nodes(4 * BLOCK), cache, 'ext4')).patched, false);

    // A source with holes: mke2fs leaves a hole where a block is zero, whatever the source's holes.
    await writeFile(source, Buffer.concat([Buffer.alloc(BLOCK, 9), Buffer.alloc(3 * BLOCK)]));
    assert.equal((await keptBuild(nodes(4 * BLOCK), cache, 'ext4')).patched, false, 'the zero blocks moved: mke2fs runs');
    await rm(source);
    await writeFile(source, Buffer.alloc(BLOCK, 8));
    await truncate(source, 4 * BLOCK);
    const sparse = await keptBuild(nodes(4 * BLOCK), cache, 'ext4');
    assert.deepEqual([sparse.patched, sparse.files], [true, 1]);
    assert.ok(sparse.bytes.equals(await coldBuild(nodes(4 * BLOCK), 'ext4')));

    // The kept image written to behind lapin's back: its stamp changed, so it is not used.
    await writeFile(source, Buffer.alloc(4 * BLOCK, 5));
    await keptBuild(nodes(4 * BLOCK), cache, 'ext4');
    const [image] = (await readdir(cache.dir)).filter((name) => name.endsWith('.img'));
    assert.ok(image);
    const kept = await readFile(join(cache.dir, image));
    kept[0] = 1;
    await writeFile(join(cache.dir, image), kept);
    await writeFile(source, Buffer.alloc(4 * BLOCK, 6));
    const tampered = await keptBuild(nodes(4 * BLOCK), cache, 'ext4');
    assert.equal(tampered.patched, false);
    assert.ok(tampered.bytes.equals(await coldBuild(nodes(4 * BLOCK), 'ext4')));

    // A symlink in the image's place is not followed.
    const [record] = (await readdir(cache.dir)).filter((name) => name.endsWith('.img'));
    assert.ok(record);
    await rm(join(cache.dir, record));
    await symlink(source, join(cache.dir, record));
    await writeFile(source, Buffer.alloc(4 * BLOCK, 4));
    assert.equal((await keptBuild(nodes(4 * BLOCK), cache, 'ext4')).patched, false);
    assert.ok((await readFile(source)).equals(Buffer.alloc(4 * BLOCK, 4)), 'the symlink target was written to');
  });

  test('a file with extended attributes (which mke2fs copies) is patched around only while it is untouched', async (t) => {
    const round = join(work, 'xattrs');
    await mkdir(join(round, 'src'), { recursive: true });
    const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
    const marked = join(round, 'src', 'marked');
    const plain = join(round, 'src', 'plain');
    await writeFile(marked, Buffer.alloc(2 * BLOCK, 1));
    await writeFile(plain, Buffer.alloc(2 * BLOCK, 2));
    const set = spawnSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.lapin", b"test")', marked]);
    if (set.status !== 0) {
      t.skip('cannot set a user extended attribute here');
      return;
    }
    const nodes = [pathFile('marked', marked, 2 * BLOCK), pathFile('plain', plain, 2 * BLOCK)];
    const first = await keptBuild(nodes, cache, 'ext4');
    assert.ok(first.bytes.includes(Buffer.from('lapin')), 'mke2fs did not copy the attribute (the test needs it to)');
    await writeFile(plain, Buffer.alloc(2 * BLOCK, 3));
    const other = await keptBuild(nodes, cache, 'ext4');
    assert.deepEqual([other.patched, other.files], [true, 1]);
    assert.ok(other.bytes.equals(await coldBuild(nodes, 'ext4')));
    await writeFile(marked, Buffer.alloc(2 * BLOCK, 4));
    const own = await keptBuild(nodes, cache, 'ext4');
    assert.equal(own.patched, false);
    assert.ok(own.bytes.equals(await coldBuild(nodes, 'ext4')));

    // Attributes given to a file that had none, with no other change (setcap on a binary): mke2fs would copy them.
    await keptBuild(nodes, cache, 'ext4');
    spawnSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "user.added", b"x" * 3000)', plain]);
    const gained = await keptBuild(nodes, cache, 'ext4');
    assert.equal(gained.patched, false, 'a file given attributes was patched around');
    assert.ok(gained.bytes.equals(await coldBuild(nodes, 'ext4')));
    // And a content change of a file without any is still patched, after asking mke2fs about it alone.
    spawnSync('python3', ['-c', 'import os,sys; os.removexattr(sys.argv[1], "user.added")', plain]);
    await keptBuild(nodes, cache, 'ext4');
    await writeFile(plain, Buffer.alloc(2 * BLOCK, 5));
    const changed = await keptBuild(nodes, cache, 'ext4');
    assert.deepEqual([changed.patched, changed.files], [true, 1]);
    assert.ok(changed.bytes.equals(await coldBuild(nodes, 'ext4')));
  });

  test('a kept image\'s record that is a FIFO, not JSON, for another key or names inodes wrongly is a miss, never a hang or a wrong image', async () => {
    const round = join(work, 'records');
    await mkdir(join(round, 'src'), { recursive: true });
    const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
    const source = join(round, 'src', 'data');
    let fill = 1;
    const nodes = [dir('d'), pathFile('d/data', source, 2 * BLOCK)];
    const rebuild = async (): Promise<{ patched: boolean }> => {
      await writeFile(source, Buffer.alloc(2 * BLOCK, fill++));
      const built = await keptBuild(nodes, cache, 'ext4');
      assert.ok(built.bytes.equals(await coldBuild(nodes, 'ext4')), 'the image differs from mke2fs\'s');
      return built;
    };
    await rebuild();
    assert.equal((await rebuild()).patched, true);
    const [name] = (await readdir(cache.dir)).filter((entry) => entry.endsWith('.json'));
    assert.ok(name);
    const record = join(cache.dir, name);
    const spoils: Array<[string, (text: string) => string | 'fifo']> = [
      ['a FIFO', () => 'fifo'],
      ['not JSON', () => '{'],
      ['not a record', () => '[]'],
      ['another key', (text) => text.replace(/"key":"[0-9a-f]+"/, `"key":"${'0'.repeat(64)}"`)],
      // Kept before a restart, not flushed: a crash may have torn it.
      ['another boot', (text) => text.replace(/"boot":"[^"]+"/, '"boot":"00000000-0000-0000-0000-000000000000"')],
      // The stamp is right, so only debugfs can tell: it finds no such file at that inode.
      ['a wrong inode', (text) => text.replace(/(\["d\/data",)\d+\]/, '$1999999]')],
    ];
    for (const [what, spoil] of spoils) {
      const text = await readFile(record, 'utf8');
      const bad = spoil(text);
      assert.notEqual(bad, text, what);
      await rm(record);
      if (bad === 'fifo') assert.equal(spawnSync('mkfifo', [record]).status, 0);
      else await writeFile(record, bad);
      assert.equal((await rebuild()).patched, false, `patched with a record holding ${what}`);
      assert.equal((await rebuild()).patched, true, `after a record holding ${what}, the next build did not keep a sound image`);
    }
  });

  test('a cache directory that cannot be made: the image is written where the build\'s temporaries go, with one warning', async () => {
    const round = join(work, 'unwritable');
    await mkdir(join(round, 'src'), { recursive: true });
    await writeFile(join(round, 'not-a-dir'), 'x');
    const warnings: string[] = [];
    const cache = new BlockImageCache(join(round, 'not-a-dir', 'blocks'), { maxBytes: 1 << 30, onWarning: (message) => warnings.push(message) });
    const source = join(round, 'src', 'data');
    await writeFile(source, Buffer.alloc(2 * BLOCK, 1));
    const nodes = [pathFile('data', source, 2 * BLOCK)];
    const tasks: Array<() => Promise<void>> = [];
    const fallback = join(round, 'fallback.img');
    const result = await writeKeptExtImage(nodes, { flavor: 'ext4', mtime: MTIME, workDir: join(round, 'work') }, { cache, defer: (task) => tasks.push(task) }, fallback);
    assert.equal(result.file, fallback);
    assert.deepEqual(tasks, []);
    assert.ok((await readFile(fallback)).equals(await coldBuild(nodes, 'ext4')));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] as string, /block image cache: cannot keep the image in .*ENOTDIR/);
  });

  test('two builds of one shape at once: the second does not share the first one\'s image', async () => {
    const round = join(work, 'concurrent');
    await mkdir(join(round, 'src'), { recursive: true });
    const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
    const source = join(round, 'src', 'data');
    await writeFile(source, Buffer.alloc(2 * BLOCK, 1));
    const nodes = [pathFile('data', source, 2 * BLOCK)];
    await keptBuild(nodes, cache, 'ext4');
    // An image last written days ago: once taken, it must not look like a stale temporary to another build's sweep.
    const [entry] = (await readdir(cache.dir)).filter((name) => name.endsWith('.img'));
    assert.ok(entry);
    const old = new Date(Date.now() - 2 * 86_400_000);
    await utimes(join(cache.dir, entry), old, old);
    // The stamp (which holds the mtime) is taken again, as keep() would after a write.
    const record = join(cache.dir, entry.replace(/\.img$/, '.json'));
    const now = await stat(join(cache.dir, entry), { bigint: true });
    const stamp = [now.dev, now.ino, now.size, now.mtimeNs, now.ctimeNs].join(':');
    await writeFile(record, (await readFile(record, 'utf8')).replace(/"stamp":"[^"]+"/, `"stamp":"${stamp}"`));
    const tasks: Array<() => Promise<void>> = [];
    const kept: KeptImages = { cache, defer: (task) => tasks.push(task) };
    const a = await writeKeptExtImage(nodes, { flavor: 'ext4', mtime: MTIME, workDir: join(work, 'ca') }, kept, join(work, 'fa.img'));
    const b = await writeKeptExtImage(nodes, { flavor: 'ext4', mtime: MTIME, workDir: join(work, 'cb') }, kept, join(work, 'fb.img'));
    assert.ok(a.patched);
    assert.ok(Date.now() - (await stat(a.file)).mtimeMs < 600_000, 'a held image keeps its old mtime');
    assert.equal(b.patched, undefined);
    assert.notEqual(a.file, b.file);
    for (const task of tasks) await task();
    assert.equal((await readdir(cache.dir)).filter((name) => name.endsWith('.img')).length, 1);
  });

  test('an unreadable source is the build\'s error, not a silent rebuild', async () => {
    if (process.getuid?.() === 0) return; // root reads anything
    const round = join(work, 'unreadable');
    await mkdir(join(round, 'src'), { recursive: true });
    const cache = new BlockImageCache(join(round, 'cache'), { maxBytes: 1 << 30 });
    const source = join(round, 'src', 'data');
    await writeFile(source, Buffer.alloc(BLOCK, 1));
    await keptBuild([pathFile('data', source, BLOCK)], cache, 'ext4');
    await chmod(source, 0);
    await assert.rejects(keptBuild([pathFile('data', source, BLOCK)], cache, 'ext4'), /permission denied/);
  });
});

describe('parseStatOutput', () => {
  test('reads sizes and block runs, and leaves out what it does not know', () => {
    const text = [
      'debugfs: stat <12>',
      'Inode: 12   Type: regular    Mode:  0644   Flags: 0x80000',
      'User:     0   Group:     0   Project:     0   Size: 21384',
      'File ACL: 0',
      'EXTENTS:',
      '(0-1):1317-1318, (4-5):1319-1320',
      'debugfs: stat <13>',
      'Inode: 13   Type: regular    Mode:  0644   Flags: 0x0',
      'User:     0   Group:     0   Size: 100000',
      'Fragment:  Address: 0    Number: 0    Size: 0',
      'BLOCKS:',
      '(0-11):1616-1627, (IND):1628, (12-24):1629-1641',
      'TOTAL: 26',
      'debugfs: stat <14>',
      'Inode: 14   Type: regular    Mode:  0644   Flags: 0x80000',
      'User:     0   Group:     0   Project:     0   Size: 8192',
      'EXTENTS:',
      '(0-1[u]):100-101',
      'debugfs: stat <15>',
      'Inode: 15   Type: directory    Mode:  0755',
      'User:     0   Group:     0   Size: 4096',
      'debugfs: stat <16>',
      'Inode: 16   Type: regular    Mode:  0644',
      'User:     0   Group:     0   Size: 10',
      'File ACL: 0',
      'Extended attributes:',
      '  user.a (1)',
      'debugfs: stat <17>',
      'Inode: 17   Type: regular    Mode:  0644   Flags: 0x80000',
      'User:     0   Group:     0   Project:     0   Size: 0',
      'EXTENTS:',
      'debugfs: stat <18>',
    ].join('\n');
    const parsed = parseStatOutput(text);
    assert.deepEqual(parsed.get(12), { size: 21384, runs: [{ logical: 0, physical: 1317, count: 2 }, { logical: 4, physical: 1319, count: 2 }], xattrs: false });
    assert.deepEqual(parsed.get(13), { size: 100000, runs: [{ logical: 0, physical: 1616, count: 12 }, { logical: 12, physical: 1629, count: 13 }], xattrs: false });
    assert.deepEqual(parsed.get(17), { size: 0, runs: [], xattrs: false });
    assert.deepEqual(parsed.get(16), { size: 10, runs: [], xattrs: true });
    for (const ino of [14, 15, 18]) assert.equal(parsed.has(ino), false, `inode ${ino}`);
  });

  test('never throws, and every run it returns is well formed', () => {
    const line = fc.oneof(
      fc.constantFrom('EXTENTS:', 'BLOCKS:', 'File ACL: 0', 'File ACL: 7', 'Extended attributes:', 'TOTAL: 1', ''),
      fc.nat(40).map((i) => `debugfs: stat <${i}>`),
      fc.tuple(fc.nat(40), fc.constantFrom('regular', 'directory')).map(([i, t]) => `Inode: ${i}   Type: ${t}    Mode:  0644`),
      fc.nat().map((s) => `User:     0   Group:     0   Size: ${s}`),
      fc.array(fc.tuple(fc.nat(99), fc.nat(5), fc.nat(999), fc.nat(5)), { maxLength: 4 }).map((items) => `${items.map(([l, a, p, b]) => `(${l}-${l + a}):${p}-${p + b}`).join(', ')}`),
      fc.string(),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 40 }), (lines) => {
        for (const blocks of parseStatOutput(lines.join('\n')).values()) {
          assert.ok(Number.isSafeInteger(blocks.size) && blocks.size >= 0);
          for (const run of blocks.runs) assert.ok(run.count >= 1 && run.logical >= 0 && run.physical >= 0);
        }
      }),
      { numRuns: 500 },
    );
  });
});
