// A Linux bunnyfile without `cmd` gets Cmd [""] (docs/syntaxes.md). urunc's
// linux.go then writes no init= at all, so the kernel runs its default init:
// /init of the initramfs. This boots such an image through `lapin run`
// (Debian's kernel and busybox-static, TCG) and reads the marker that /init
// prints, so the claim holds for a real kernel, not only for the command line.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { inspect } from '../../src/inspect/inspect.js';
import { busyboxRootfs, BOOT_TIMEOUT_MS, bootSkip, fetchBootAssets, lapinCli } from '../helpers/guest-boot.js';

const MARKER = 'LAPIN-DEFAULT-INIT-MARKER';

const skip = bootSkip('the default-init boot test', ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb']);


describe('a Linux bunnyfile without cmd boots the kernel\'s default init', { skip, timeout: 600_000 }, () => {
  let work: string;
  let archive: string;
  before(async () => {
    const assets = await fetchBootAssets();
    work = await mkdtemp(path.join(tmpdir(), 'lapin default init '));
    await copyFile(assets.kernel, path.join(work, 'vmlinuz'));
    await busyboxRootfs(path.join(work, 'rootfs'), assets.busybox, `#!/bin/sh\necho "${MARKER} pid:$$ args:$*:"\n/bin/busybox poweroff -f\n`);
    await writeFile(
      path.join(work, 'bunnyfile'),
      'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  type: initrd\n  include:\n    - rootfs:/\n',
    );
    archive = path.join(work, 'default-init.tar');
    await build({ context: work, tags: ['lapin-test/default-init:1'], outputs: [{ type: 'oci', dest: archive }] });
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the image has Cmd [""] and lapin run --print writes no init= or rdinit=', async () => {
    const report = await inspect(archive);
    assert.deepEqual(report.image.cmd, ['']);
    assert.equal(report.runnable, true, JSON.stringify(report.errors));
    const printed = await lapinCli(['run', '--print', '--accel', 'tcg', archive], work);
    assert.equal(printed.status, 0, printed.stderr);
    assert.match(printed.stdout, /-append /);
    assert.doesNotMatch(printed.stdout, /\b(rd)?init=/);
  });

  test('lapin run boots it: the kernel runs /init of the initrd as pid 1, with no args', async () => {
    const result = await lapinCli(['run', '--accel', 'tcg', '--timeout', String(BOOT_TIMEOUT_MS / 1000 - 10), archive], work);
    assert.ok(result.stdout.includes(`${MARKER} pid:1 args::`), `no marker from the default init:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`);
    assert.equal(result.status, 0, result.stderr);
  });
});
