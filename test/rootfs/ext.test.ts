// The block image writer against e2fsprogs' own readers: e2fsck -fn must
// pass, and debugfs (stat, cat, rdump) must see every file with its mode,
// owner, time, link and contents.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import type { FsNode } from '../../src/image/tree.js';
import { autoExtSize, parseByteSize, writeExtImage, type ExtFlavor } from '../../src/rootfs/ext.js';
import { isCI } from '../consumers/harness.js';

const MTIME = 1_700_000_000;
const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;

function dir(path: string, mode = 0o755, uid = 0, gid = 0): FsNode {
  return { type: 'dir', path, mode, uid, gid, mtime: MTIME };
}
function bytesFile(path: string, text: string, mode = 0o644, uid = 0, gid = 0, mtime = MTIME): FsNode {
  const data = Buffer.from(text);
  return { type: 'file', path, mode, uid, gid, mtime, size: data.length, source: { kind: 'bytes', data } };
}
function symlink(path: string, target: string): FsNode {
  return { type: 'symlink', path, target, mode: 0o777, uid: 0, gid: 0, mtime: MTIME };
}
function hardlink(path: string, target: string): FsNode {
  return { type: 'hardlink', path, target, mode: 0o644, uid: 0, gid: 0, mtime: MTIME };
}

/** Missing e2fsprogs skips here, but fails under CI. */
function e2fsprogsMissing(): string | false {
  const ok = ['mke2fs', 'debugfs', 'e2fsck'].every((tool) => spawnSync(tool, ['-V'], { env: { ...process.env, PATH: SBIN_PATH }, stdio: 'ignore' }).status === 0);
  if (ok) return false;
  if (isCI()) throw new Error('CI must run the block image tests: e2fsprogs is missing (scripts/install-deps.sh installs it)');
  return 'e2fsprogs is not installed';
}

function debugfs(image: string, request: string): string {
  return execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', env: { ...process.env, PATH: SBIN_PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface InodeFacts {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  links: number;
  inode: number;
  size: number;
  mtime: number;
  ctime: number;
}

function statInode(image: string, path: string): InodeFacts {
  const out = debugfs(image, `stat "${path}"`);
  const grab = (re: RegExp): string => {
    const match = re.exec(out);
    assert.ok(match?.[1] !== undefined, `debugfs stat ${path}: no ${re.source} in\n${out}`);
    return match[1];
  };
  return {
    inode: Number(grab(/Inode: (\d+)/)),
    type: grab(/Type: (\w+)/),
    mode: parseInt(grab(/Mode:\s+(\d+)/), 8),
    uid: Number(grab(/User:\s+(\d+)/)),
    gid: Number(grab(/Group:\s+(\d+)/)),
    links: Number(grab(/Links: (\d+)/)),
    size: Number(grab(/Size: (\d+)/)),
    mtime: parseInt(grab(/mtime: 0x([0-9a-f]+)/), 16),
    ctime: parseInt(grab(/ctime: 0x([0-9a-f]+)/), 16),
  };
}

let work: string;
let bigSource: string;
const bigContent = Buffer.alloc(200_000);
for (let i = 0; i < bigContent.length; i++) bigContent[i] = (i * 13 + (i >> 11)) & 0xff;

function sampleTree(): FsNode[] {
  return [
    dir('bin'),
    bytesFile('bin/app', '#!/bin/sh\necho hi\n', 0o755),
    hardlink('bin/app-again', 'bin/app'),
    symlink('bin/sh', '/bin/busybox'),
    symlink('bin/long', `/${'x'.repeat(120)}`),
    dir('data', 0o750, 1000, 1000),
    { type: 'file', path: 'data/big.bin', mode: 0o600, uid: 1000, gid: 100, mtime: MTIME - 5, size: bigContent.length, source: { kind: 'path', path: bigSource } },
    dir('empty', 0o700),
    dir('etc'),
    bytesFile('etc/empty.conf', ''),
    bytesFile('etc/my file.txt', 'with a space\n'),
    bytesFile('etc/setuid', 'x', 0o4755),
    dir('locked', 0o000),
    bytesFile('locked/secret', 'hidden\n', 0o000),
  ];
}

async function build(name: string, flavor: ExtFlavor, nodes = sampleTree(), size?: number, workRoot = work): Promise<string> {
  const image = join(workRoot, `${name}.img`);
  await writeExtImage(nodes, image, { flavor, mtime: MTIME, workDir: join(workRoot, `${name}-work`), ...(size !== undefined ? { size } : {}) });
  return image;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-ext-'));
  bigSource = join(work, 'big-source.bin');
  await writeFile(bigSource, bigContent);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

for (const flavor of ['ext4', 'ext2'] as const) {
  describe(`writeExtImage (${flavor})`, { skip: e2fsprogsMissing() }, () => {
    let image: string;
    before(async () => {
      image = await build(`sample-${flavor}`, flavor);
    });

    test('e2fsck -fn finds nothing to fix', () => {
      const result = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8', env: { ...process.env, PATH: SBIN_PATH } });
      assert.equal(result.status, 0, result.stdout + result.stderr);
    });

    test('has the features of its flavor', () => {
      const header = execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', env: { ...process.env, PATH: SBIN_PATH }, stdio: ['ignore', 'pipe', 'ignore'] });
      const features = /Filesystem features:\s+(.*)/.exec(header)?.[1] ?? '';
      if (flavor === 'ext4') {
        for (const f of ['has_journal', 'extent', 'metadata_csum']) assert.match(features, new RegExp(f));
      } else {
        for (const f of ['has_journal', 'extent', 'metadata_csum', '64bit', 'flex_bg']) assert.doesNotMatch(features, new RegExp(f));
        assert.match(features, /filetype/);
      }
      assert.match(header, /Filesystem created:\s+Tue Nov 14 22:13:20 2023/);
    });

    test('debugfs stat sees modes, owners, times and types', () => {
      const app = statInode(image, '/bin/app');
      assert.deepEqual([app.type, app.mode, app.uid, app.gid, app.links, app.mtime, app.ctime], ['regular', 0o755, 0, 0, 2, MTIME, MTIME]);
      const again = statInode(image, '/bin/app-again');
      assert.equal(again.inode, app.inode, 'the hardlink shares the inode');
      assert.equal(statInode(image, '/bin/sh').type, 'symlink');
      const data = statInode(image, '/data');
      assert.deepEqual([data.type, data.mode, data.uid, data.gid], ['directory', 0o750, 1000, 1000]);
      const big = statInode(image, '/data/big.bin');
      assert.deepEqual([big.mode, big.uid, big.gid, big.size, big.mtime], [0o600, 1000, 100, bigContent.length, MTIME - 5]);
      assert.equal(statInode(image, '/empty').mode, 0o700);
      assert.equal(statInode(image, '/etc/setuid').mode, 0o4755);
      assert.equal(statInode(image, '/locked').mode, 0);
      assert.equal(statInode(image, '/locked/secret').mode, 0);
      const root = statInode(image, '/');
      assert.deepEqual([root.mode, root.uid, root.gid, root.mtime], [0o755, 0, 0, MTIME]);
    });

    test('debugfs cat and rdump give back contents, links and empty directories', async () => {
      assert.equal(debugfs(image, 'cat /bin/app'), '#!/bin/sh\necho hi\n');
      assert.equal(debugfs(image, 'cat "/etc/my file.txt"'), 'with a space\n');
      const out = join(work, `rdump-${flavor}`);
      await mkdir(out);
      debugfs(image, `rdump / ${out}`);
      assert.ok((await readFile(join(out, 'data/big.bin'))).equals(bigContent));
      assert.equal(await readlink(join(out, 'bin/sh')), '/bin/busybox');
      assert.equal(await readlink(join(out, 'bin/long')), `/${'x'.repeat(120)}`);
      assert.equal(((await stat(join(out, 'bin/app'))).mode & 0o7777), 0o755);
      assert.ok((await lstat(join(out, 'empty'))).isDirectory());
      assert.equal((await stat(join(out, 'etc/empty.conf'))).size, 0);
    });

    test('two builds give the same bytes', async () => {
      // Another staging file system (tmpfs) lists directories in another order.
      const otherRoot = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/lapin-ext-') : work;
      try {
        const again = await build(`again-${flavor}`, flavor, [...sampleTree()].reverse(), undefined, otherRoot);
        assert.ok((await readFile(again)).equals(await readFile(image)), 'the images differ');
      } finally {
        if (otherRoot !== work) await rm(otherRoot, { recursive: true, force: true });
      }
    });
  });
}

// e2fsprogs reads E2FSPROGS_FAKE_TIME=0 as "not set" and stamps the wall
// clock into the superblock and the journal and lost+found inodes.
describe('writeExtImage at epoch 0 (SOURCE_DATE_EPOCH unset)', { skip: e2fsprogsMissing() }, () => {
  for (const flavor of ['ext4', 'ext2'] as const) {
    test(`${flavor}: two builds a second apart give the same bytes, dated 1970`, async () => {
      const atZero = (): FsNode[] => sampleTree().map((node) => ({ ...node, mtime: 0 }));
      const write = async (name: string): Promise<Buffer> => {
        const image = join(work, `${name}.img`);
        await writeExtImage(atZero(), image, { flavor, mtime: 0, workDir: join(work, `${name}-work`) });
        return readFile(image);
      };
      const first = await write(`zero-a-${flavor}`);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const second = await write(`zero-b-${flavor}`);
      assert.ok(first.equals(second), 'the images differ');
      // The superblock's times (ext4 layout: s_wtime 0x30, s_lastcheck 0x40, s_mkfs_time 0x108, high bytes 0x274..0x276).
      const superblock = first.subarray(1024, 2048);
      assert.deepEqual([superblock.readUInt32LE(0x108), superblock.readUInt32LE(0x40)], [0, 0], 'creation and check times are the epoch');
      // Every close rewrites the last write time with the tools' clock, which cannot be 0.
      assert.equal(superblock.readUInt32LE(0x30), 1);
      assert.deepEqual([...superblock.subarray(0x274, 0x277)], [0, 0, 0]);
      const image = join(work, `zero-a-${flavor}.img`);
      for (const p of ['/', '/bin/app', '/lost+found']) assert.equal(statInode(image, p).mtime, 0, p);
    });
  }
});

describe('writeExtImage sizes and refusals', { skip: e2fsprogsMissing() }, () => {
  test('an automatic size holds the files with room to spare', async () => {
    const nodes = [dir('d'), ...Array.from({ length: 300 }, (_, i) => bytesFile(`d/f${String(i).padStart(3, '0')}`, 'y'.repeat(5000 + i)))];
    const image = await build('many', 'ext4', nodes);
    const free = /Free blocks:\s+(\d+)/.exec(execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', env: { ...process.env, PATH: SBIN_PATH }, stdio: ['ignore', 'pipe', 'ignore'] }))?.[1];
    assert.ok(Number(free) * 4096 >= 1024 * 1024, `only ${free} free blocks`);
    assert.equal((await stat(image)).size, autoExtSize(nodes, 'ext4'));
  });

  test('an explicit size is used as given', async () => {
    const image = await build('sized', 'ext2', [bytesFile('a', 'a')], 16 * 1024 * 1024);
    assert.equal((await stat(image)).size, 16 * 1024 * 1024);
  });

  test('files that do not fit an explicit size are an error naming the fix', async () => {
    const big = Buffer.alloc(12 * 1024 * 1024, 1);
    const source = join(work, 'twelve.bin');
    await writeFile(source, big);
    const nodes: FsNode[] = [{ type: 'file', path: 'big', mode: 0o644, uid: 0, gid: 0, mtime: MTIME, size: big.length, source: { kind: 'path', path: source } }];
    await assert.rejects(build('toosmall', 'ext2', nodes, 8 * 1024 * 1024), (error: unknown) => error instanceof LapinError && /do not fit/.test(error.message) && /rootfs.size/.test(error.hint ?? ''));
  });

  test('ext2 refuses times past 2038-01-19 (they would wrap to 1901) and keeps the last one it can hold', async () => {
    const late = 2_147_483_648;
    const refused = (error: unknown): boolean => error instanceof LapinError && error.exitCode === 2 && /past 2038-01-19 03:14:07 UTC \(2147483647\)/.test(error.message) && /ext4/.test(error.hint ?? '');
    await assert.rejects(writeExtImage([bytesFile('a', 'a')], join(work, 'late.img'), { flavor: 'ext2', mtime: late, workDir: join(work, 'late-work') }), refused);
    assert.equal(existsSync(join(work, 'late.img')), false, 'nothing half-written');
    await assert.rejects(writeExtImage([bytesFile('a', 'a', 0o644, 0, 0, late)], join(work, 'late-file.img'), { flavor: 'ext2', mtime: MTIME, workDir: join(work, 'late-file-work') }), /a: time 2147483648 is past/);
    // The limit itself fits, and ext4 (256-byte inodes) holds later times: debugfs reads them back.
    const last = join(work, 'last.img');
    await writeExtImage([bytesFile('a', 'a', 0o644, 0, 0, 2_147_483_647)], last, { flavor: 'ext2', mtime: 2_147_483_647, workDir: join(work, 'last-work') });
    assert.equal(statInode(last, '/a').mtime, 2_147_483_647);
    const later = join(work, 'later.img');
    await writeExtImage([bytesFile('a', 'a', 0o644, 0, 0, late)], later, { flavor: 'ext4', mtime: late, workDir: join(work, 'later-work') });
    assert.equal(statInode(later, '/a').mtime, late);
  });

  for (const bad of ['../escape', '/abs', 'a/../b', 'a//b', './a']) {
    test(`refuses the path ${JSON.stringify(bad)}`, async () => {
      const nodes = bad.startsWith('a/') ? [dir('a'), bytesFile(bad, 'x')] : [bytesFile(bad, 'x')];
      await assert.rejects(build(`bad-${bad.replace(/\W/g, '_')}`, 'ext2', nodes), (error: unknown) => error instanceof LapinError && /block image entry/.test(error.message));
    });
  }

  test('refuses a hardlink to a directory or to nothing', async () => {
    await assert.rejects(build('hl-dir', 'ext2', [dir('d'), hardlink('e', 'd')]), /only regular files/);
    await assert.rejects(build('hl-none', 'ext2', [hardlink('e', 'nothing')]), /not a file listed before it/);
  });
});

describe('parseByteSize', () => {
  test('reads byte counts and binary units', () => {
    assert.equal(parseByteSize('1048576'), 1048576);
    assert.equal(parseByteSize('64M'), 64 * 1024 * 1024);
    assert.equal(parseByteSize('64MiB'), 64 * 1024 * 1024);
    assert.equal(parseByteSize('1G'), 1024 ** 3);
    assert.equal(parseByteSize('512k'), 512 * 1024);
    assert.equal(parseByteSize('1.5G'), 1.5 * 1024 ** 3);
    for (const bad of ['', 'M', '-1', '0', '12X', '1e9', 'ten']) assert.equal(parseByteSize(bad), undefined, bad);
  });

  test('is the inverse of formatting a whole number of units', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(['', 1], ['K', 1024], ['M', 1024 ** 2], ['G', 1024 ** 3]), (n, [unit, scale]) => {
        assert.equal(parseByteSize(`${n}${unit as string}`), n * (scale as number));
      }),
    );
  });

  test('never throws and gives a positive integer or undefined', () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        const size = parseByteSize(text);
        assert.ok(size === undefined || (Number.isSafeInteger(size) && size > 0));
      }),
    );
  });
});
