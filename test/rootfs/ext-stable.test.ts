// A block image should change as little as it can when one file changes:
// the UUID (which seeds every metadata checksum) must not follow the files,
// and staging by hard link must not turn separate files into links.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FsNode } from '../../src/image/tree.js';
import { writeExtImage } from '../../src/rootfs/ext.js';
import { isCI } from '../consumers/harness.js';

const MTIME = 1_700_000_000;
const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };

function e2fsprogsMissing(): string | false {
  if (spawnSync('mke2fs', ['-V'], { env, stdio: 'ignore' }).status === 0) return false;
  if (isCI()) throw new Error('CI must run the block image tests: e2fsprogs is missing');
  return 'e2fsprogs is not installed';
}

function superblock(image: string): { uuid: string; seed: string } {
  const out = execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'ignore'] });
  return { uuid: /^Filesystem UUID:\s+(\S+)/m.exec(out)?.[1] ?? '', seed: /^Directory Hash Seed:\s+(\S+)/m.exec(out)?.[1] ?? '' };
}

function inodeOf(image: string, path: string): number {
  const out = execFileSync('debugfs', ['-R', `stat "${path}"`, image], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  return Number(/Inode: (\d+)/.exec(out)?.[1]);
}

describe('block images across one-file changes', { skip: e2fsprogsMissing() }, () => {
  let work = '';
  let n = 0;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lapin ext stable '));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  const file = (path: string, source: string, size: number): FsNode => ({ type: 'file', path, mode: 0o644, uid: 0, gid: 0, mtime: MTIME, size, source: { kind: 'path', path: source } });
  const dir = (path: string): FsNode => ({ type: 'dir', path, mode: 0o755, uid: 0, gid: 0, mtime: MTIME });

  async function image(nodes: FsNode[]): Promise<string> {
    const out = join(work, `image-${n++}.img`);
    await writeExtImage(nodes, out, { flavor: 'ext4', mtime: MTIME, workDir: join(work, `work-${n}`) });
    return out;
  }

  test('a file that changes size keeps the UUID and hash seed; only the blocks it moves change', async () => {
    const a = join(work, 'a.bin');
    const b = join(work, 'b.bin');
    await writeFile(a, Buffer.alloc(50_000, 'a'));
    await writeFile(b, Buffer.alloc(20_000, 'b'));
    const tree = (size: number): FsNode[] => [dir('data'), file('data/a.bin', a, size), file('data/b.bin', b, 20_000)];
    const before = await image(tree(50_000));
    await writeFile(a, Buffer.alloc(70_000, 'a'));
    const grown = await image(tree(70_000));
    assert.deepEqual(superblock(grown), superblock(before));
    assert.notEqual((await readFile(grown)).compare(await readFile(before)), 0, 'the images do differ');
    // An added file, too.
    const added = await image([...tree(70_000), file('data/c.bin', b, 20_000)]);
    assert.deepEqual(superblock(added), superblock(before));
  });

  test('two tree files staged from one inode stay two files (hard-link staging links each inode once)', async () => {
    const shared = join(work, 'shared.bin');
    await writeFile(shared, 'the same source file\n');
    const out = await image([dir('etc'), file('etc/one', shared, 21), file('etc/two', shared, 21)]);
    assert.notEqual(inodeOf(out, '/etc/one'), inodeOf(out, '/etc/two'));
    assert.equal(execFileSync('debugfs', ['-R', 'cat /etc/two', out], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'ignore'] }), 'the same source file\n');
    // The source itself is left as it was: one link, same content.
    assert.equal(await readFile(shared, 'utf8'), 'the same source file\n');
  });
});
