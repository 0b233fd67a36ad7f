// Hard links name content, not paths: a later COPY over one name must not
// change the others (as docker build keeps them), in layers and initrds.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, link, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/index.js';
import { ImageFilesystem } from '../../src/image/filesystem.js';
import { requireConsumers, umociUnpack } from '../consumers/harness.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

const KERNEL = path.resolve('examples/mirage-hvt/network.hvt');
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin hardlinks-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A context with d/f1 and d/f2 hard-linked ("old"), and e/f1 made by `replacement`. */
async function linkedContext(name: string, replacement: (file: string) => Promise<void>): Promise<string> {
  const context = path.join(work, name);
  await mkdir(path.join(context, 'd'), { recursive: true });
  await mkdir(path.join(context, 'e'));
  await cp(KERNEL, path.join(context, 'kernel.hvt'));
  await writeFile(path.join(context, 'd/f1'), 'old\n');
  await link(path.join(context, 'd/f1'), path.join(context, 'd/f2'));
  await replacement(path.join(context, 'e/f1'));
  return context;
}

const umociMissing = requireConsumers(['umoci']);

describe('hard links across COPY steps', () => {
  for (const [label, replacement, check] of [
    ['a file', (f: string) => writeFile(f, 'new content\n'), async (f1: string) => assert.equal(await readFile(f1, 'utf8'), 'new content\n')],
    ['a symlink', (f: string) => symlink('/etc/hostname', f), async (f1: string) => assert.equal(await readlink(f1), '/etc/hostname')],
  ] as const) {
    test(`replacing one name with ${label} keeps the other's content (umoci unpack)`, { skip: umociMissing }, async () => {
      const context = await linkedContext(`layer-${label.replace(' ', '-')}`, replacement);
      await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY d/ /d/', 'COPY e/ /d/'));
      const archive = path.join(context, 'out.tar');
      await build({ context, tags: ['links:1'], outputs: [{ type: 'oci', dest: archive }], cache: false });
      const unpacked = await umociUnpack(archive, '1');
      try {
        const root = path.join(unpacked.bundleDir, 'rootfs');
        await check(path.join(root, 'd/f1'));
        const f2 = await lstat(path.join(root, 'd/f2'));
        assert.ok(f2.isFile(), 'd/f2 stays a regular file');
        assert.equal(await readFile(path.join(root, 'd/f2'), 'utf8'), 'old\n');
      } finally {
        await unpacked.cleanup();
      }
    });
  }

  test('in an initrd, the other name keeps its content (cpio -i)', async () => {
    const context = await linkedContext('initrd', (f) => writeFile(f, 'new content\n'));
    await writeFile(
      path.join(context, 'bunnyfile'),
      'version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel.hvt\nrootfs:\n  include:\n    - d:/d\n    - e:/d\n',
    );
    const local = path.join(context, 'rootfs-dir');
    await build({ context, outputs: [{ type: 'local', dest: local }], cache: false });
    const unpacked = path.join(context, 'unpacked');
    await mkdir(unpacked);
    execFileSync('cpio', ['-idm', '--quiet'], { cwd: unpacked, input: await readFile(path.join(local, '.boot/rootfs')) });
    assert.equal(await readFile(path.join(unpacked, 'd/f1'), 'utf8'), 'new content\n');
    assert.equal(await readFile(path.join(unpacked, 'd/f2'), 'utf8'), 'old\n');
  });

  test('a link met before its file in a directory walk is written after it (GNU tar extracts it)', async () => {
    const context = await linkedContext('order', (f) => writeFile(f, 'x'));
    // readdir order gives d/a/x before d/a-b; byte order puts d/a-b first.
    await mkdir(path.join(context, 'd/a'));
    await writeFile(path.join(context, 'd/a/x'), 'shared\n');
    await link(path.join(context, 'd/a/x'), path.join(context, 'd/a-b'));
    await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY d/ /d/'));
    const layout = path.join(context, 'layout');
    await build({ context, tags: ['order:1'], outputs: [{ type: 'oci', dest: layout, tar: false }], cache: false, compression: 'none' });
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const manifest = JSON.parse(await readFile(path.join(layout, 'blobs/sha256', (index.manifests[0] as { digest: string }).digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
    const out = path.join(context, 'x');
    await mkdir(out);
    for (const layer of manifest.layers) execFileSync('tar', ['-xf', path.join(layout, 'blobs/sha256', layer.digest.slice(7)), '-C', out]);
    assert.equal(await readFile(path.join(out, 'd/a-b'), 'utf8'), 'shared\n');
    assert.equal(await readFile(path.join(out, 'd/a/x'), 'utf8'), 'shared\n');
    assert.equal((await lstat(path.join(out, 'd/a/x'))).ino, (await lstat(path.join(out, 'd/a-b'))).ino);
  });

  test('the tree: replacing a linked file leaves its links one file with the old data', () => {
    const fs = new ImageFilesystem({ mtime: 0 });
    const base = { mode: 0o644, uid: 0, gid: 0, mtime: 0 };
    fs.put({ ...base, type: 'file', path: 'a', size: 3, source: { kind: 'bytes', data: Buffer.from('old') } });
    fs.put({ ...base, type: 'hardlink', path: 'c', target: 'a' });
    fs.put({ ...base, type: 'hardlink', path: 'b', target: 'a' });
    fs.put({ ...base, type: 'symlink', path: 'a', target: 'elsewhere' });
    const nodes = fs.list();
    assert.deepEqual(nodes.map((n) => [n.path, n.type, n.type === 'hardlink' ? n.target : '']), [
      ['a', 'symlink', ''],
      ['b', 'file', ''],
      ['c', 'hardlink', 'b'],
    ]);
    const b = nodes[1];
    assert.ok(b?.type === 'file' && b.source.kind === 'bytes' && Buffer.from(b.source.data).toString() === 'old');
  });
});
