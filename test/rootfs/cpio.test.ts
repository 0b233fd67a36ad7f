import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, mkdir, readFile, readlink, rm, stat, lstat, truncate, appendFile, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { LapinError } from '../../src/errors.js';
import type { FsNode } from '../../src/image/tree.js';
import { cpioNewcStream, writeCpioNewc, withParentDirs } from '../../src/rootfs/cpio.js';
import { isCI } from '../consumers/harness.js';

const MTIME = 1_700_000_000;

function dir(path: string, mode = 0o755): FsNode {
  return { type: 'dir', path, mode, uid: 0, gid: 0, mtime: MTIME };
}
function bytesFile(path: string, text: string, mode = 0o644): FsNode {
  const data = Buffer.from(text);
  return { type: 'file', path, mode, uid: 0, gid: 0, mtime: MTIME, size: data.length, source: { kind: 'bytes', data } };
}
function diskFile(path: string, diskPath: string, size: number, mode = 0o644): FsNode {
  return { type: 'file', path, mode, uid: 0, gid: 0, mtime: MTIME, size, source: { kind: 'path', path: diskPath } };
}
function symlink(path: string, target: string): FsNode {
  return { type: 'symlink', path, target, mode: 0o777, uid: 0, gid: 0, mtime: MTIME };
}
function hardlink(path: string, target: string): FsNode {
  return { type: 'hardlink', path, target, mode: 0o644, uid: 0, gid: 0, mtime: MTIME };
}

async function archiveBytes(nodes: Iterable<FsNode> | AsyncIterable<FsNode>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of cpioNewcStream(nodes)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function hasTool(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** A skip reason when `name` is missing; under CI a missing reader fails instead (scripts/install-deps.sh installs it). */
function needsTool(name: string): string | false {
  if (hasTool(name)) return false;
  if (isCI()) throw new Error(`CI must run the cpio reader tests: ${name} is missing`);
  return `${name} is not installed`;
}

let work: string;
let diskSource: string;
const diskContent = Buffer.alloc(300_000);
for (let i = 0; i < diskContent.length; i++) diskContent[i] = (i * 7 + (i >> 9)) & 0xff;

function sampleTree(): FsNode[] {
  return [
    dir('bin'),
    bytesFile('bin/app', '#!/bin/sh\necho hi\n', 0o755),
    hardlink('bin/app-again', 'bin/app'),
    symlink('bin/sh', '/bin/busybox'),
    dir('data'),
    diskFile('data/blob.bin', diskSource, diskContent.length),
    dir('empty', 0o750),
    dir('etc'),
    bytesFile('etc/empty.conf', ''),
    bytesFile('etc/my file.txt', 'with a space\n'),
    dir('etc/nested'),
    dir('etc/nested/deeper'),
    bytesFile('etc/nested/deeper/leaf', 'x'),
  ];
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-cpio-'));
  diskSource = join(work, 'blob-source.bin');
  await writeFile(diskSource, diskContent);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('writeCpioNewc output', () => {
  test('is padded to 512 bytes, deterministic, and reports its size', async () => {
    const first = await archiveBytes(sampleTree());
    const second = await archiveBytes(sampleTree());
    assert.equal(first.length % 512, 0);
    assert.ok(first.equals(second), 'two writes of the same tree differ');
    assert.equal(first.subarray(0, 6).toString(), '070701');
    assert.ok(first.includes(Buffer.from('TRAILER!!!\0')));

    const target = join(work, 'size.cpio');
    const { size } = await writeCpioNewc(sampleTree(), createWriteStream(target));
    assert.equal(size, first.length);
    assert.ok((await readFile(target)).equals(first));
  });

  test('an empty tree is just the trailer, padded to one block', async () => {
    const bytes = await archiveBytes([]);
    assert.equal(bytes.length, 512);
    assert.equal(bytes.subarray(0, 6).toString(), '070701');
    assert.equal(bytes.subarray(110, 121).toString('latin1'), 'TRAILER!!!\0');
  });

  test('accepts an async iterable of nodes', async () => {
    async function* nodes(): AsyncGenerator<FsNode> {
      yield* sampleTree();
    }
    assert.ok((await archiveBytes(nodes())).equals(await archiveBytes(sampleTree())));
  });

  test('respects backpressure of a slow writer and streams the disk file in chunks', async () => {
    const received: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        setImmediate(callback);
      },
    });
    const { size } = await writeCpioNewc(sampleTree(), slow);
    const joined = Buffer.concat(received);
    assert.equal(joined.length, size);
    assert.ok(joined.equals(await archiveBytes(sampleTree())));
    assert.ok(Math.max(...received.map((chunk) => chunk.length)) < diskContent.length, 'the disk file went out as one chunk');
  });

  test('end: false leaves the destination open', async () => {
    const received: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        callback();
      },
    });
    await writeCpioNewc([dir('a')], sink, { end: false });
    assert.equal(sink.writableEnded, false);
    sink.end();
    assert.equal(Buffer.concat(received).length, 512);
  });
});

describe('independent readers', () => {
  let archivePath: string;
  before(async () => {
    archivePath = join(work, 'sample.cpio');
    await writeCpioNewc(sampleTree(), createWriteStream(archivePath));
  });

  const expectedNames = [
    'bin',
    'bin/app',
    'bin/app-again',
    'bin/sh',
    'data',
    'data/blob.bin',
    'empty',
    'etc',
    'etc/empty.conf',
    'etc/my file.txt',
    'etc/nested',
    'etc/nested/deeper',
    'etc/nested/deeper/leaf',
  ];

  async function checkExtracted(root: string): Promise<void> {
    assert.equal((await stat(join(root, 'bin'))).mode & 0o7777, 0o755);
    assert.equal((await stat(join(root, 'empty'))).mode & 0o7777, 0o750);
    assert.deepEqual(await readdir(join(root, 'empty')), []);
    const app = await stat(join(root, 'bin/app'));
    const again = await stat(join(root, 'bin/app-again'));
    assert.equal(app.mode & 0o7777, 0o755);
    assert.equal(app.ino, again.ino, 'hardlink was not extracted as a link');
    assert.equal(app.nlink, 2);
    assert.equal(await readFile(join(root, 'bin/app-again'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.ok((await lstat(join(root, 'bin/sh'))).isSymbolicLink());
    assert.equal(await readlink(join(root, 'bin/sh')), '/bin/busybox');
    assert.ok((await readFile(join(root, 'data/blob.bin'))).equals(diskContent));
    const conf = await stat(join(root, 'etc/empty.conf'));
    assert.equal(conf.size, 0);
    assert.equal(conf.mode & 0o7777, 0o644);
    assert.equal(await readFile(join(root, 'etc/my file.txt'), 'utf8'), 'with a space\n');
    assert.equal(await readFile(join(root, 'etc/nested/deeper/leaf'), 'utf8'), 'x');
    assert.equal(Math.floor((await stat(join(root, 'etc/nested/deeper/leaf'))).mtimeMs / 1000), MTIME);
  }

  test('GNU cpio lists every entry with its type and mode', { skip: needsTool('cpio') }, () => {
    const names = execFileSync('cpio', ['-t', '--quiet', '-F', archivePath], { encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(names, expectedNames);
    const long = execFileSync('cpio', ['-tv', '--quiet', '-F', archivePath], { encoding: 'utf8' });
    assert.match(long, /^-rwxr-xr-x\s+2\s.*bin\/app$/m);
    assert.match(long, /^lrwxrwxrwx\s+1\s.*bin\/sh -> \/bin\/busybox$/m);
    assert.match(long, /^drwxr-x---\s+2\s.*empty$/m);
    assert.match(long, /^drwxr-xr-x\s+3\s.*etc$/m);
  });

  test('GNU cpio extracts modes, links and contents', { skip: needsTool('cpio') }, async () => {
    const root = join(work, 'gnu');
    await mkdir(root);
    execFileSync('cpio', ['-idm', '--quiet', '-F', archivePath], { cwd: root });
    await checkExtracted(root);
  });

  test('bsdcpio lists every entry and sees the hardlink', { skip: needsTool('bsdcpio') }, () => {
    const names = execFileSync('bsdcpio', ['-t', '--quiet', '-I', archivePath], { encoding: 'utf8' }).trim().split('\n');
    assert.deepEqual(names, expectedNames);
    const long = execFileSync('bsdcpio', ['-tv', '--quiet', '-I', archivePath], { encoding: 'utf8' });
    assert.match(long, /bin\/app-again link to bin\/app$/m);
  });

  test('bsdcpio extracts modes, links and contents', { skip: needsTool('bsdcpio') }, async () => {
    const root = join(work, 'bsd');
    await mkdir(root);
    execFileSync('bsdcpio', ['-idm', '--quiet', '-I', archivePath], { cwd: root });
    await checkExtracted(root);
  });
});

describe('input checks', () => {
  async function rejects(nodes: FsNode[], pattern: RegExp): Promise<void> {
    await assert.rejects(archiveBytes(nodes), (error: unknown) => {
      assert.ok(error instanceof LapinError, `expected LapinError, got ${String(error)}`);
      assert.match(error.message, pattern);
      return true;
    });
  }

  test('bad paths', async () => {
    await rejects([bytesFile('/abs', 'x')], /starts with "\/"/);
    await rejects([dir('a'), bytesFile('a/../b', 'x')], /"\.\." segment/);
    await rejects([bytesFile('./a', 'x')], /"\." segment/);
    await rejects([dir('a'), bytesFile('a//b', 'x')], /empty segment/);
    await rejects([dir('a/')], /empty segment/);
    await rejects([bytesFile('', 'x')], /empty path/);
    await rejects([bytesFile('a\0b', 'x')], /NUL/);
    await rejects([bytesFile('x'.repeat(4096), 'x')], /longer than 4095 bytes/);
  });

  test('order, duplicates and parents', async () => {
    await rejects([bytesFile('b', 'x'), bytesFile('a', 'x')], /out of order/);
    await rejects([bytesFile('a', 'x'), bytesFile('a', 'y')], /appears twice/);
    await rejects([bytesFile('a/b', 'x')], /parent directory "a" is not listed/);
    await rejects([bytesFile('a', 'x'), bytesFile('a/b', 'x')], /parent "a" is a file/);
    await rejects([symlink('a', 'x'), bytesFile('a/b', 'x')], /parent "a" is a symlink/);
  });

  test('hardlinks must name an earlier regular file', async () => {
    await rejects([hardlink('a', 'b'), bytesFile('b', 'x')], /hardlink target "b" is not a file listed before it/);
    await rejects([dir('a'), hardlink('b', 'a')], /only regular files/);
    await rejects([symlink('a', 'x'), hardlink('b', 'a')], /only regular files/);
  });

  test('metadata ranges and sizes', async () => {
    await rejects([{ ...dir('a'), mode: 0o10000 }], /not permission bits/);
    await rejects([{ ...dir('a'), uid: -1 }], /uid -1/);
    await rejects([{ ...dir('a'), mtime: 2 ** 32 }], /mtime/);
    await rejects([{ ...bytesFile('a', 'abc'), size: 2 } as FsNode], /3 bytes of data but size 2/);
    await rejects([symlink('a', '')], /empty target/);
  });

  test('missing or resized source files fail before any output', async () => {
    await rejects([diskFile('a', join(work, 'does-not-exist'), 1)], /cannot read source file.*ENOENT/);
    await rejects([diskFile('a', diskSource, diskContent.length + 1)], /is 300000 bytes, expected 300001/);
    await rejects([diskFile('a', work, 0)], /not a regular file/);
  });

  test('writeCpioNewc rejects with the LapinError and writes nothing for bad input', async () => {
    const received: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        received.push(chunk);
        callback();
      },
    });
    await assert.rejects(writeCpioNewc([bytesFile('b', 'x'), bytesFile('a', 'x')], sink), LapinError);
    assert.equal(received.length, 0);
  });

  test('withParentDirs adds missing ancestors in sorted order', async () => {
    const nodes = withParentDirs([bytesFile('a/b/c', 'x'), bytesFile('a-x', 'y'), dir('d')], { mode: 0o700, mtime: 5 });
    assert.deepEqual(
      nodes.map((node) => `${node.type}:${node.path}`),
      ['dir:a', 'file:a-x', 'dir:a/b', 'file:a/b/c', 'dir:d'],
    );
    const added = nodes.find((node) => node.path === 'a/b');
    assert.equal(added?.mode, 0o700);
    assert.equal(added?.mtime, 5);
    assert.equal((await archiveBytes(nodes)).length % 512, 0);
  });
});

describe('source files changing during the write', () => {
  async function drainWithChange(change: (path: string) => Promise<void>): Promise<unknown> {
    const path = join(work, `changing-${Math.random().toString(36).slice(2)}.bin`);
    const size = 2 * 1024 * 1024;
    await writeFile(path, Buffer.alloc(size, 1));
    const stream = cpioNewcStream([bytesFile('a', 'first'), diskFile('b', path, size)]);
    let seen = 0;
    let changed = false;
    try {
      for await (const chunk of stream) {
        seen += (chunk as Buffer).length;
        // Past the first entry and some of the file's data, but well short of its end.
        if (!changed && seen > 300 * 1024) {
          changed = true;
          await change(path);
        }
      }
    } catch (error) {
      return error;
    }
    return undefined;
  }

  test('a file that shrinks mid-write is refused', async () => {
    const error = await drainWithChange((path) => truncate(path, 1000));
    assert.ok(error instanceof LapinError);
    assert.match(error.message, /shrank while it was being written/);
  });

  test('a file that grows mid-write is refused', async () => {
    const error = await drainWithChange((path) => appendFile(path, 'more'));
    assert.ok(error instanceof LapinError);
    assert.match(error.message, /grew while it was being written/);
  });

  test('a file resized between planning and its turn is refused before its header', async () => {
    const path = join(work, 'resized-early.bin');
    await writeFile(path, 'abcd');
    // A large first entry fills the stream's buffer, so the writer waits before reaching "b".
    const stream = cpioNewcStream([bytesFile('a', 'x'.repeat(1024 * 1024)), diskFile('b', path, 4)]);
    const chunks: Buffer[] = [];
    const error = await (async () => {
      try {
        for await (const chunk of stream) {
          if (chunks.length === 0) await writeFile(path, 'abcdef');
          chunks.push(chunk as Buffer);
        }
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    assert.ok(error instanceof LapinError);
    assert.match(error.message, /changed size \(now 6 bytes, expected 4\)/);
    assert.ok(!Buffer.concat(chunks).includes(Buffer.from('b\0')), 'the header of the changed file went out');
  });
});
