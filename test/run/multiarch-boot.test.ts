// One index, two real platforms: lapin builds a Linux initrd image for amd64
// (Debian's amd64 kernel, busybox-static) and one for arm64 (Debian's arm64
// kernel and busybox-static:arm64, scripts/fetch-boot-assets.sh arm64),
// imagetools create merges them into an OCI archive, and `lapin run
// --platform` boots each one under TCG (qemu-system-x86_64, and
// qemu-system-aarch64 -M virt -cpu max) and prints each platform's marker.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { inspectAny, type IndexInspectReport } from '../../src/inspect/index-report.js';
import { busyboxRootfs, bootSkip, fetchArm64BootAssets, fetchBootAssets, lapinCli } from '../helpers/guest-boot.js';

const MARKER = 'LAPIN-PLATFORM-MARKER';

const skip = bootSkip('the multi-platform boot test', ['qemu-system-x86_64', 'qemu-system-aarch64', 'apt-get', 'apt-cache', 'dpkg-deb', 'dpkg']);


/** A context with vmlinuz, a busybox rootfs whose /init prints the marker, and a bunnyfile for ARCHITECTURE. */
async function context(dir: string, kernel: string, busybox: string, architecture: 'x86_64' | 'aarch64'): Promise<string> {
  await busyboxRootfs(path.join(dir, 'rootfs'), busybox, `#!/bin/sh\necho "${MARKER} $(/bin/busybox uname -m) args:$*:"\n/bin/busybox poweroff -f\n`);
  // After the tree, which makes the directory.
  await copyFile(kernel, path.join(dir, 'vmlinuz'));
  await writeFile(
    path.join(dir, 'bunnyfile'),
    `version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: ${architecture}\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  type: initrd\n  include:\n    - rootfs:/\ncmd: ["/init", "${architecture}"]\n`,
  );
  return dir;
}

describe('lapin run --platform boots each platform of an index', { skip, timeout: 1_200_000 }, () => {
  let work: string;
  let index: string;
  before(async () => {
    const [amd64, arm64] = [await fetchBootAssets(), await fetchArm64BootAssets()];
    work = await mkdtemp(path.join(tmpdir(), 'lapin multiarch boot '));
    const amd64Archive = path.join(work, 'amd64.tar');
    const arm64Archive = path.join(work, 'arm64.tar');
    await build({ context: await context(path.join(work, 'amd64'), amd64.kernel, amd64.busybox, 'x86_64'), tags: ['lapin-test/multi:amd64'], outputs: [{ type: 'oci', dest: amd64Archive }] });
    await build({ context: await context(path.join(work, 'arm64'), arm64.kernel, arm64.busybox, 'aarch64'), tags: ['lapin-test/multi:arm64'], outputs: [{ type: 'oci', dest: arm64Archive }] });
    index = path.join(work, 'multi.tar');
    const created = await lapinCli(['imagetools', 'create', '-t', 'lapin-test/multi:both', '--output', `type=oci,dest=${index}`, amd64Archive, arm64Archive], work);
    assert.equal(created.status, 0, created.stderr);
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('inspect judges both platforms runnable, each kernel of its platform', async () => {
    const report = (await inspectAny(index)) as IndexInspectReport;
    assert.deepEqual(
      report.platforms.map((p) => [p.platform, p.report.runnable, p.report.files.find((f) => f.key === 'binary')?.architecture]),
      [['linux/amd64', true, 'amd64'], ['linux/arm64', true, 'arm64']],
    );
  });

  test('--platform linux/arm64 boots the arm64 image with qemu-system-aarch64 -M virt -cpu max', async () => {
    const result = await lapinCli(['run', '--platform', 'linux/arm64', '--accel', 'tcg', '--timeout', '170', index], work);
    assert.match(result.stderr, /lapin: running qemu-system-aarch64 .*-cpu max -accel tcg .*-M virt/);
    assert.ok(result.stdout.includes(`${MARKER} aarch64 args:aarch64:`), `no arm64 marker:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`);
    assert.equal(result.status, 0, result.stderr);
  });

  test('--platform linux/amd64 boots the amd64 image with qemu-system-x86_64', async () => {
    const result = await lapinCli(['run', '--platform', 'linux/amd64', '--accel', 'tcg', '--timeout', '170', index], work);
    assert.match(result.stderr, /lapin: running qemu-system-x86_64 /);
    assert.ok(result.stdout.includes(`${MARKER} x86_64 args:x86_64:`), `no amd64 marker:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`);
    assert.equal(result.status, 0, result.stderr);
  });

  test('a platform the index lacks: one clean line, exit 2', async () => {
    const result = await lapinCli(['run', '--platform', 'linux/riscv64', '--print', index], work);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /^lapin: error: .*has no image for linux\/riscv64 \(it has linux\/amd64, linux\/arm64\)/m);
  });
});

