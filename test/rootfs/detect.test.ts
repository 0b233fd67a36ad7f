// Rootfs kind detection: the decision table, and builds that read a local
// rootfs file made by lapin's own writers (cpio, ext) and by hand.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { build, type BuildEvent } from '../../src/build.js';
import { LapinError } from '../../src/errors.js';
import type { FileType } from '../../src/image/kernel-arch.js';
import type { FsNode } from '../../src/image/tree.js';
import type { RootfsFileCheck } from '../../src/plan/types.js';
import { writeCpioNewc } from '../../src/rootfs/cpio.js';
import { decideRootfsKind } from '../../src/rootfs/detect.js';
import { writeExtImage } from '../../src/rootfs/ext.js';
import { isCI } from '../consumers/harness.js';

const AT = { file: 'bunnyfile', line: 10, column: 9 };
const linux: RootfsFileCheck = { path: '/.boot/rootfs', allowed: ['initrd', 'block'], blockMountPoint: '/', framework: 'linux', at: AT };
const unikraft: RootfsFileCheck = { path: '/.boot/rootfs', allowed: ['initrd'], blockMountPoint: '/', framework: 'unikraft', at: AT, declared: { value: 'initrd' } };
const FILE_TYPES: FileType[] = ['cpio-newc', 'cpio-odc', 'ext', 'squashfs', 'iso9660', 'erofs', 'gzip', 'zstd', 'xz', 'tar', 'elf', 'bzimage', 'arm64-image', 'unknown'];

describe('decideRootfsKind', () => {
  test('detects cpio as initrd and ext as block', () => {
    assert.equal(decideRootfsKind(linux, 'cpio-newc', 'r').kind, 'initrd');
    assert.equal(decideRootfsKind(linux, 'cpio-odc', 'r').kind, 'initrd');
    const block = decideRootfsKind(linux, 'ext', 'disk.img');
    assert.equal(block.kind, 'block');
    assert.match(block.message, /ext2\/3\/4 file system, detected as block image mounted at \//);
    assert.equal(decideRootfsKind(linux, 'gzip', 'r').kind, 'initrd');
  });
  test('other file systems and unknown content give a clear message', () => {
    for (const type of ['squashfs', 'iso9660', 'erofs'] as const) {
      assert.throws(() => decideRootfsKind(linux, type, 'r.img'), (e: unknown) => e instanceof LapinError && /lapin detects only cpio initrds and ext2\/3\/4/.test(e.message) && e.at === AT);
    }
    assert.throws(() => decideRootfsKind(linux, 'unknown', 'r.img'), /cannot tell what kind of rootfs r\.img is/);
    assert.throws(() => decideRootfsKind(linux, 'tar', 'r.tar'), /a tar archive, not a rootfs/);
  });
  test('a type the content contradicts is an error at the type', () => {
    const declaredAt = { file: 'bunnyfile', line: 11, column: 9 };
    const initrd = { ...linux, declared: { value: 'initrd' as const, at: declaredAt } };
    assert.throws(() => decideRootfsKind(initrd, 'ext', 'disk.img'), (e: unknown) => e instanceof LapinError && /is an ext2\/3\/4 file system, not an initrd/.test(e.message) && e.at === declaredAt && /type: block/.test(e.hint ?? ''));
    const block = { ...linux, declared: { value: 'block' as const, at: declaredAt } };
    assert.throws(() => decideRootfsKind(block, 'cpio-newc', 'r.cpio'), /not a block image/);
    assert.throws(() => decideRootfsKind(block, 'gzip', 'r.gz'), /attached as is/);
    assert.equal(decideRootfsKind(block, 'squashfs', 'r.sqfs').warning !== undefined, true);
    assert.equal(decideRootfsKind(block, 'unknown', 'r.img').kind, 'block');
  });
  test('a kind the guest cannot use is an error', () => {
    assert.throws(() => decideRootfsKind(unikraft, 'ext', 'disk.img'), /not an initrd/);
    assert.throws(() => decideRootfsKind({ ...unikraft, declared: undefined }, 'ext', 'disk.img'), /unikraft does not support a block rootfs/);
  });
  test('decides a kind the guest accepts, or throws a LapinError, for every type and declaration', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FILE_TYPES), fc.constantFrom(undefined, 'initrd' as const, 'block' as const), fc.boolean(), (type, declared, initrdOnly) => {
        const check: RootfsFileCheck = { ...linux, allowed: initrdOnly ? ['initrd'] : ['initrd', 'block'], ...(declared ? { declared: { value: declared } } : {}) };
        try {
          const decision = decideRootfsKind(check, type, 'f');
          assert.ok(check.allowed.includes(decision.kind));
          if (declared) assert.equal(decision.kind, declared);
        } catch (error) {
          assert.ok(error instanceof LapinError, String(error));
        }
      }),
    );
  });
});

const e2fsprogs = ['mke2fs', 'debugfs', 'e2fsck'].every((t) => spawnSync(t, ['-V'], { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` }, stdio: 'ignore' }).status === 0);
if (!e2fsprogs && isCI()) throw new Error('CI must run the detection builds: e2fsprogs is missing');

describe('build reads a local rootfs file without a type', { skip: e2fsprogs ? false : 'e2fsprogs is not installed' }, () => {
  let work: string;
  const MTIME = 1_700_000_000;
  const tree: FsNode[] = [{ type: 'file', path: 'init', mode: 0o755, uid: 0, gid: 0, mtime: MTIME, size: 3, source: { kind: 'bytes', data: Buffer.from('hi\n') } }];

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'lapin-detect-'));
    await writeFile(path.join(work, 'kernel'), Buffer.alloc(4096));
    await writeCpioNewc(tree, createWriteStream(path.join(work, 'rootfs.cpio')));
    await writeExtImage(tree, path.join(work, 'disk.img'), { flavor: 'ext2', mtime: MTIME, workDir: path.join(work, 'ext-work') });
    await writeFile(path.join(work, 'fake.sqfs'), Buffer.concat([Buffer.from('hsqs'), Buffer.alloc(100)]));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function buildWith(framework: string, rootfs: string): Promise<{ urunc: Record<string, string>; steps: string[] }> {
    const dir = path.join(work, `case-${Math.random().toString(16).slice(2)}`);
    await mkdir(dir);
    const file = path.join(dir, 'bunnyfile');
    await writeFile(file, `version: v0.1\nplatforms:\n  framework: ${framework}\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel\nrootfs:\n${rootfs}`);
    const steps: string[] = [];
    const result = await build({
      context: work,
      file,
      outputs: [{ type: 'oci', dest: path.join(dir, 'out.tar') }],
      uruncChecks: 'warn',
      onEvent: (e: BuildEvent) => e.kind === 'step' && steps.push(e.message),
    });
    return { urunc: result.urunc, steps };
  }

  test('a cpio archive becomes the initrd, and the build says so', async () => {
    const { urunc, steps } = await buildWith('linux', '  from: local\n  path: rootfs.cpio\n');
    assert.equal(urunc.initrd, '/.boot/rootfs');
    assert.equal(urunc.block, undefined);
    assert.ok(steps.includes('rootfs rootfs.cpio: a cpio archive (newc), detected as initrd'), steps.join('\n'));
  });

  test('an ext image becomes the block rootfs (rumprun: at /data)', async () => {
    const { urunc, steps } = await buildWith('rumprun', '  from: local\n  path: disk.img\n');
    assert.equal(urunc.block, '/.boot/rootfs');
    assert.equal(urunc.blkMntPoint, '/data');
    assert.equal(urunc.initrd, undefined);
    assert.ok(steps.some((s) => /disk\.img: an ext2\/3\/4 file system, detected as block image mounted at \/data/.test(s)), steps.join('\n'));
  });

  test('squashfs is refused with a position and a hint', async () => {
    await assert.rejects(buildWith('linux', '  from: local\n  path: fake.sqfs\n'), (e: unknown) => e instanceof LapinError && /squashfs/.test(e.message) && e.at?.line === 10 && /type: block/.test(e.hint ?? ''));
  });

  test('a declared type the content contradicts is an error', async () => {
    await assert.rejects(buildWith('linux', '  from: local\n  path: disk.img\n  type: initrd\n'), (e: unknown) => e instanceof LapinError && /not an initrd/.test(e.message) && e.at?.line === 11);
  });
});
