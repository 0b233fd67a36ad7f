// File names that are not UTF-8 are packaged byte for byte (tar, cpio, a
// rootfs directory), never dropped or read as U+FFFD; block images, whose
// tools take names as text, refuse them by name.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, link, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { escapeName } from '../../src/image/context-names.js';
import { decodeName, nameBytes } from '../../src/image/names.js';
import { comparePaths } from '../../src/image/tree.js';
import { requireConsumers } from '../consumers/harness.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');
/** x\xff, x\uFFFD (its lossy reading), bad\xff/inner, a link \xfe-link -> x\xff, a hard link hard\xfd of x\xff. */
const RAW = bytes('x\xff');
const REPLACEMENT = Buffer.from('x\uFFFD', 'utf8');
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin names-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const under = (dir: string, ...names: Buffer[]): Buffer => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), n])]);

async function context(label: string, definition: (dir: string) => Promise<void>): Promise<string> {
  const dir = path.join(work, label);
  await mkdir(path.join(dir, 'd'), { recursive: true });
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(dir, 'kernel.hvt'));
  const d = path.join(dir, 'd');
  await writeFile(under(d, RAW), 'raw name\n');
  await writeFile(under(d, REPLACEMENT), 'replacement character\n');
  await mkdir(under(d, bytes('bad\xff')));
  await writeFile(under(d, bytes('bad\xff'), Buffer.from('inner')), 'inner\n');
  await symlink(RAW, under(d, bytes('\xfe-link')));
  await link(under(d, RAW), under(d, bytes('hard\xfd')));
  await definition(dir);
  return dir;
}

/** Checks an unpacked d/: every name with its exact bytes and content. */
async function assertExact(d: string): Promise<void> {
  const names = (await readdir(d, { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort();
  assert.deepEqual(names, [bytes('bad\xff'), bytes('hard\xfd'), RAW, REPLACEMENT, bytes('\xfe-link')].map((n) => n.toString('latin1')).sort());
  assert.equal(await readFile(under(d, RAW), 'utf8'), 'raw name\n');
  assert.equal(await readFile(under(d, REPLACEMENT), 'utf8'), 'replacement character\n');
  assert.equal(await readFile(under(d, bytes('hard\xfd')), 'utf8'), 'raw name\n');
  assert.equal(await readFile(under(d, bytes('bad\xff'), Buffer.from('inner')), 'utf8'), 'inner\n');
  assert.ok((await readlink(under(d, bytes('\xfe-link')), { encoding: 'buffer' })).equals(RAW));
}

function lapin(cwd: string, args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, 'build', '--progress', 'quiet', '--no-cache', ...args, '.'], { cwd, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

describe('non-UTF-8 names in the build context are packaged byte for byte', () => {
  for (const copy of ['COPY d/ /d/', 'COPY d/* /d/']) {
    test(`a layer (GNU tar extracts it, ${copy})`, async () => {
      const dir = await context(`tar-${copy.length}`, (c) => writeFile(path.join(c, 'Containerfile'), kernelContainerfile(copy)));
      const r = lapin(dir, ['-t', 'names:1', '--compression', 'none', '-o', 'type=oci,tar=false,dest=layout']);
      assert.equal(r.status, 0, r.stderr);
      const index = JSON.parse(await readFile(path.join(dir, 'layout/index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
      const blob = (digest: string): string => path.join(dir, 'layout/blobs/sha256', digest.slice(7));
      const manifest = JSON.parse(await readFile(blob((index.manifests[0] as { digest: string }).digest), 'utf8')) as { layers: Array<{ digest: string }> };
      const out = path.join(dir, 'unpacked');
      await mkdir(out);
      for (const layer of manifest.layers) execFileSync('tar', ['-xf', blob(layer.digest), '-C', out]);
      if (copy === 'COPY d/ /d/') await assertExact(path.join(out, 'd'));
      else {
        // A directory matched by a glob gives its contents, as in Docker: bad\xff/inner lands as /d/inner.
        const names = (await readdir(path.join(out, 'd'), { encoding: 'buffer' })).map((n) => n.toString('latin1')).sort();
        assert.deepEqual(names, [bytes('hard\xfd'), Buffer.from('inner'), RAW, REPLACEMENT, bytes('\xfe-link')].map((n) => n.toString('latin1')).sort());
        assert.equal(await readFile(under(path.join(out, 'd'), RAW), 'utf8'), 'raw name\n');
        assert.equal(await readFile(under(path.join(out, 'd'), REPLACEMENT), 'utf8'), 'replacement character\n');
      }
    });
  }

  test('an image umoci unpacks', { skip: requireConsumers(['umoci']) }, async () => {
    const dir = await context('umoci', (c) => writeFile(path.join(c, 'Containerfile'), kernelContainerfile('COPY d/ /d/')));
    const r = lapin(dir, ['-t', 'names:1', '-o', 'type=oci,dest=out.tar']);
    assert.equal(r.status, 0, r.stderr);
    await mkdir(path.join(dir, 'layout'));
    execFileSync('tar', ['-xf', path.join(dir, 'out.tar'), '-C', path.join(dir, 'layout')]);
    execFileSync('umoci', ['unpack', '--image', `${path.join(dir, 'layout')}:1`, path.join(dir, 'bundle')], { stdio: 'pipe' });
    await assertExact(path.join(dir, 'bundle', 'rootfs', 'd'));
  });

  test('an initrd (cpio -i) and a rootfs directory', async () => {
    const dir = await context('initrd', (c) =>
      writeFile(path.join(c, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel.hvt\nrootfs:\n  include:\n    - d:/d\n'),
    );
    const r = lapin(dir, ['-o', 'type=local,dest=rootfs']);
    assert.equal(r.status, 0, r.stderr);
    const out = path.join(dir, 'unpacked');
    await mkdir(out);
    execFileSync('cpio', ['-idm', '--quiet'], { cwd: out, input: await readFile(path.join(dir, 'rootfs/.boot/rootfs')) });
    await assertExact(path.join(out, 'd'));

    const local = await context('local', (c) => writeFile(path.join(c, 'Containerfile'), kernelContainerfile('COPY d/ /d/')));
    const l = lapin(local, ['-o', 'type=local,dest=rootfs']);
    assert.equal(l.status, 0, l.stderr);
    await assertExact(path.join(local, 'rootfs', 'd'));
  });

  test('a block rootfs refuses them by name, escaped, with exit 2', async () => {
    const dir = await context('block', (c) =>
      writeFile(path.join(c, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel.hvt\nrootfs:\n  type: block\n  include:\n    - d:/d\n'),
    );
    const r = lapin(dir, ['--urunc-checks', 'warn', '-o', 'type=oci,dest=out.tar']);
    assert.equal(r.status, 2, r.stderr);
    const errors = r.stderr.split('\n').filter((line) => line.startsWith('lapin: error:'));
    assert.deepEqual(errors, ['lapin: error: bunnyfile:10:3: block rootfs entry "d/bad\\xff": the name is not UTF-8, which block images here cannot hold (give it a UTF-8 name, or use an initrd, which keeps the bytes)']);
  });
});

describe('names as bytes', () => {
  test('decodeName and nameBytes give back any bytes; valid UTF-8 decodes as usual', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 10 }), (raw, text) => {
        assert.ok(nameBytes(decodeName(Buffer.from(raw))).equals(Buffer.from(raw)));
        assert.equal(decodeName(Buffer.from(text, 'utf8')), text);
      }),
      { numRuns: 3000 },
    );
  });

  test('comparePaths orders names by their bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), (a, b) => {
        assert.equal(Math.sign(comparePaths(decodeName(Buffer.from(a)), decodeName(Buffer.from(b)))), Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
      }),
    );
  });

  test('escapeName: printable ASCII as is, every other byte as \\xNN, and it can be read back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
        const text = escapeName(Buffer.from(raw));
        assert.match(text, /^[\x20-\x7e]*$/);
        const back = Buffer.from(text.replace(/\\x([0-9a-f]{2})|([\s\S])/g, (_, hex: string | undefined, c: string) => (hex ? String.fromCharCode(parseInt(hex, 16)) : c)), 'latin1');
        assert.ok(back.equals(Buffer.from(raw)));
      }),
    );
  });
});
