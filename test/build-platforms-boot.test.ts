// One `lapin build --platform linux/amd64,linux/arm64` of one bunnyfile, its
// kernel and initrd tree named with ${TARGETARCH}: Debian's amd64 and arm64
// kernels and busybox-static (scripts/fetch-boot-assets.sh), each platform's
// /init printing a marker. The one index it writes boots each platform with
// `lapin run --platform` (qemu-system-aarch64 -M virt -cpu max under TCG, and
// qemu-system-x86_64), as issue 13 asks: build one index, boot both.
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspectAny, type IndexInspectReport } from '../src/inspect/index-report.js';
import { busyboxRootfs, bootSkip, fetchArm64BootAssets, fetchBootAssets, lapinCli } from './helpers/guest-boot.js';

const MARKER = 'LAPIN-ONE-BUILD-MARKER';

const skip = bootSkip('the one-build multi-platform boot test', ['qemu-system-x86_64', 'qemu-system-aarch64', 'apt-get', 'apt-cache', 'dpkg-deb', 'dpkg']);



/** vmlinuz-ARCH and rootfs-ARCH/ (busybox, /init printing the marker and uname -m) for one platform. */
async function platformFiles(context: string, arch: 'amd64' | 'arm64', kernel: string, busybox: string): Promise<void> {
  await busyboxRootfs(path.join(context, `rootfs-${arch}`), busybox, `#!/bin/sh\necho "${MARKER} ${arch} $(/bin/busybox uname -m)"\n/bin/busybox poweroff -f\n`);
  // After the tree, which makes the directory.
  await copyFile(kernel, path.join(context, `vmlinuz-${arch}`));
}

describe('one build of both platforms boots each of them', { skip, timeout: 1_200_000 }, () => {
  let work: string;
  let index: string;
  before(async () => {
    const [amd64, arm64] = [await fetchBootAssets(), await fetchArm64BootAssets()];
    work = await mkdtemp(path.join(tmpdir(), 'lapin one build boot '));
    const context = path.join(work, 'context');
    await platformFiles(context, 'amd64', amd64.kernel, amd64.busybox);
    await platformFiles(context, 'arm64', arm64.kernel, arm64.busybox);
    await writeFile(
      path.join(context, 'bunnyfile'),
      'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: vmlinuz-${TARGETARCH}\nrootfs:\n  type: initrd\n  include:\n    - rootfs-${TARGETARCH}:/\ncmd: ["/init"]\n',
    );
    index = path.join(work, 'both.tar');
    const built = await lapinCli(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', 'lapin-test/one-build:both', '-o', `type=oci,dest=${index}`, context], work);
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, /built index sha256:[0-9a-f]{64} \(linux\/amd64, linux\/arm64\)/);
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

  for (const [platform, arch, machine, monitor] of [
    ['linux/arm64', 'arm64', 'aarch64', /lapin: running qemu-system-aarch64 .*-cpu max -accel tcg .*-M virt/],
    ['linux/amd64', 'amd64', 'x86_64', /lapin: running qemu-system-x86_64 /],
  ] as const) {
    test(`--platform ${platform} boots that platform's kernel and initrd`, async () => {
      const result = await lapinCli(['run', '--platform', platform, '--accel', 'tcg', '--timeout', '170', index], work);
      assert.match(result.stderr, monitor);
      assert.ok(result.stdout.includes(`${MARKER} ${arch} ${machine}`), `no ${arch} marker:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-2000)}`);
      assert.equal(result.status, 0, result.stderr);
    });
  }
});
