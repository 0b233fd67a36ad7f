// lapin run --platform on indexes made by hand: the forms of --platform
// docker takes (any case, arm64/v8, amd64/v3 on an amd64 index), a platform
// the index lacks, and entries lapin cannot boot: a riscv64 image, an arm64
// entry holding an x86-64 kernel (each went to the wrong qemu before).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { full, type HandImage } from '../helpers/hand-image.js';
import { fakeElf, handIndex, writeIndexLayout } from '../helpers/hand-index.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
let layout: string;

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const linux = { unikernelType: 'linux', hypervisor: 'qemu', binary: '/boot/kernel' };
function image(architecture: string, kernel: 'x86-64' | 'aarch64'): HandImage {
  return { architecture, annotations: full(linux), cmd: ['/init'], layers: [[{ name: 'boot/', type: 'directory' }, { name: 'boot/kernel', body: fakeElf(kernel), mode: 0o755 }]] };
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin run platform '));
  layout = join(work, 'multi layout');
  // amd64 and arm64 as they should be, and riscv64, which lapin run does not boot.
  await writeIndexLayout(layout, await handIndex([image('amd64', 'x86-64'), image('arm64', 'aarch64'), image('riscv64', 'aarch64')]));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('lapin run --platform', () => {
  test('docker forms of a platform: any case, spaces around, arm64/v8, aarch64, amd64/v3 on an amd64 image', () => {
    for (const [platform, program] of [
      ['LINUX/ARM64', 'qemu-system-aarch64'],
      [' linux/arm64/v8 ', 'qemu-system-aarch64'],
      ['linux/aarch64', 'qemu-system-aarch64'],
      ['Linux/AMD64', 'qemu-system-x86_64'],
      ['linux/amd64/v3', 'qemu-system-x86_64'],
    ]) {
      const r = lapin(['run', '--print', '--accel', 'tcg', '--platform', platform as string, layout]);
      assert.equal(r.status, 0, `${platform}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^${program} `), platform);
    }
  });

  test('a platform the index lacks: one line naming what it has, exit 2', () => {
    const r = lapin(['run', '--print', '--platform', 'linux/ppc64le', layout]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^lapin: error: .*has no image for linux\/ppc64le \(it has linux\/amd64, linux\/arm64, linux\/riscv64\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });

  test('an architecture lapin run does not boot, and a kernel of another architecture than its entry: refused, exit 1, no monitor command', async () => {
    const riscv = lapin(['run', '--print', '--platform', 'linux/riscv64', layout]);
    assert.equal(riscv.status, 1, riscv.stderr);
    assert.match(riscv.stderr, /^lapin: error: .*is an image for riscv64; lapin run boots amd64 and arm64 images/);
    assert.equal(riscv.stdout, '');
    // Kernels swapped between the entries: qemu-system-aarch64 was given the x86-64 kernel.
    const swapped = join(work, 'swapped kernels');
    await writeIndexLayout(swapped, await handIndex([image('amd64', 'aarch64'), image('arm64', 'x86-64')]));
    const arm = lapin(['run', '--print', '--platform', 'linux/arm64', swapped]);
    assert.equal(arm.status, 1, arm.stderr);
    assert.match(arm.stderr, /^lapin: error: .*\(linux\/arm64\) is an image for arm64, but its kernel \/boot\/kernel is built for amd64 \(build the arm64 image with a kernel built for arm64\)$/m);
    assert.equal(arm.stdout, '');
  });
});
