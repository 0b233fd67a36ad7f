// The layer writer against GNU tar: listing and extraction must show every
// entry with its type, mode, owner, time, link target and contents.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobStore } from '../../src/image/blob-store.js';
import { writeLayer } from '../../src/image/layer.js';
import type { FsNode } from '../../src/image/tree.js';
import { isCI } from '../consumers/harness.js';

const MTIME = 1_700_000_000;

function tarMissing(): string | false {
  if (spawnSync('tar', ['--version'], { stdio: 'ignore' }).status === 0) return false;
  if (isCI()) throw new Error('CI must run the layer tests: GNU tar is missing');
  return 'tar is not installed';
}

let work: string;
let diskSource: string;
const diskContent = Buffer.alloc(100_000);
for (let i = 0; i < diskContent.length; i++) diskContent[i] = (i * 31) & 0xff;

function sampleTree(): FsNode[] {
  const bytes = (p: string, text: string, mode: number, uid = 0, gid = 0): FsNode => {
    const data = Buffer.from(text);
    return { type: 'file', path: p, mode, uid, gid, mtime: MTIME, size: data.length, source: { kind: 'bytes', data } };
  };
  return [
    { type: 'dir', path: 'bin', mode: 0o755, uid: 0, gid: 0, mtime: MTIME },
    bytes('bin/init', '#!/bin/sh\necho init\n', 0o755),
    { type: 'hardlink', path: 'bin/init-again', target: 'bin/init', mode: 0o755, uid: 0, gid: 0, mtime: MTIME },
    { type: 'symlink', path: 'bin/sh', target: '/bin/busybox', mode: 0o777, uid: 0, gid: 0, mtime: MTIME },
    { type: 'dir', path: 'data', mode: 0o750, uid: 1000, gid: 1000, mtime: MTIME },
    { type: 'file', path: 'data/blob.bin', mode: 0o600, uid: 1000, gid: 100, mtime: MTIME - 7, size: diskContent.length, source: { kind: 'path', path: diskSource } },
    { type: 'dir', path: 'empty', mode: 0o700, uid: 0, gid: 0, mtime: MTIME },
    bytes('etc-setuid', 'x', 0o4755),
  ];
}

async function layerTar(nodes: FsNode[]): Promise<string> {
  const store = new BlobStore(path.join(work, `store-${Math.random().toString(16).slice(2)}`));
  const layer = await writeLayer(nodes, store, { compression: 'none' });
  return store.pathOf(layer.digest);
}

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'lapin-layer-'));
  diskSource = path.join(work, 'blob-source.bin');
  await writeFile(diskSource, diskContent);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('layer tar read by GNU tar', { skip: tarMissing() }, () => {
  let tarFile: string;
  before(async () => {
    tarFile = await layerTar(sampleTree());
  });

  test('tar -tvf lists every entry with its type, mode, owner and link', () => {
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', tarFile], { encoding: 'utf8' }).trim().split('\n');
    const byName = new Map(listing.map((line) => [line.split(/\s+/)[5]?.replace(/\/$/, ''), line]));
    assert.match(byName.get('bin') ?? '', /^drwxr-xr-x 0\/0 /);
    assert.match(byName.get('bin/init') ?? '', /^-rwxr-xr-x 0\/0 /);
    assert.match(byName.get('bin/init-again') ?? '', /^hrwxr-xr-x 0\/0 .* link to bin\/init$/);
    assert.match(byName.get('bin/sh') ?? '', /^lrwxrwxrwx 0\/0 .* -> \/bin\/busybox$/);
    assert.match(byName.get('data') ?? '', /^drwxr-x--- 1000\/1000 /);
    assert.match(byName.get('data/blob.bin') ?? '', /^-rw------- 1000\/100 +100000 /);
    assert.match(byName.get('empty') ?? '', /^drwx------ 0\/0 /);
    assert.match(byName.get('etc-setuid') ?? '', /^-rwsr-xr-x 0\/0 /);
    assert.equal(listing.length, sampleTree().length);
  });

  test('extraction restores modes, times, links, contents and empty directories', async () => {
    const out = path.join(work, 'extracted');
    await mkdir(out);
    const asRoot = process.getuid?.() === 0;
    execFileSync('tar', ['-xpf', tarFile, '-C', out, '--numeric-owner', ...(asRoot ? ['--same-owner'] : [])]);
    const init = await stat(path.join(out, 'bin/init'));
    assert.equal(init.mode & 0o7777, 0o755);
    assert.equal(init.mtimeMs / 1000, MTIME);
    assert.equal(await readFile(path.join(out, 'bin/init'), 'utf8'), '#!/bin/sh\necho init\n');
    assert.equal((await stat(path.join(out, 'bin/init-again'))).ino, init.ino, 'the hardlink shares the inode');
    assert.equal(await readlink(path.join(out, 'bin/sh')), '/bin/busybox');
    assert.ok((await readFile(path.join(out, 'data/blob.bin'))).equals(diskContent));
    const blob = await stat(path.join(out, 'data/blob.bin'));
    assert.equal(blob.mode & 0o7777, 0o600);
    assert.equal(blob.mtimeMs / 1000, MTIME - 7);
    if (asRoot) assert.deepEqual([blob.uid, blob.gid], [1000, 100]);
    assert.ok((await lstat(path.join(out, 'empty'))).isDirectory());
    assert.equal((await stat(path.join(out, 'empty'))).mode & 0o7777, 0o700);
    assert.equal((await stat(path.join(out, 'etc-setuid'))).mode & 0o7777, 0o4755);
  });

  test('two writes of the same tree give the same bytes', async () => {
    assert.ok((await readFile(await layerTar(sampleTree()))).equals(await readFile(tarFile)));
  });

  // ImageFilesystem normalizes every path before it reaches the writer; the writer checks again.
  test('refuses paths that escape the root', async () => {
    for (const bad of ['../escape', '/abs', 'a/../../b']) {
      const node: FsNode = { type: 'file', path: bad, mode: 0o644, uid: 0, gid: 0, mtime: MTIME, size: 1, source: { kind: 'bytes', data: Buffer.from('x') } };
      await assert.rejects(layerTar([node]), `${bad} was written`);
    }
  });
});
