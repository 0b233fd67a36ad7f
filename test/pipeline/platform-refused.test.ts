// A --platform lapin does not build is refused (exit 2) before the file is
// compiled: ${TARGETARCH} would otherwise put its text ("..", "riscv64") into
// paths and image references, and the build would fail later for another
// reason, or pull an image for it. linux/arm64/v8 is linux/arm64, so naming
// both is naming one platform twice.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build, UsageError } from '../../src/index.js';
import { fakeElf } from '../helpers/hand-index.js';

let context: string;
before(async () => {
  context = await mkdtemp(path.join(os.tmpdir(), 'lapin platform refused-'));
  for (const [arch, machine] of [['amd64', 'x86-64'], ['arm64', 'aarch64']] as const) {
    await mkdir(path.join(context, 'build', arch), { recursive: true });
    await writeFile(path.join(context, 'build', arch, 'kernel'), fakeElf(machine));
  }
  await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: build/${TARGETARCH}/kernel\ncmd: ["app"]\n');
});
after(() => rm(context, { recursive: true, force: true }));

const refusedAsUsage = (pattern: RegExp) => (error: Error) => error instanceof UsageError && error.exitCode === 2 && pattern.test(error.message);

test('a platform lapin does not build is refused before its ${TARGETARCH} reaches a path', async () => {
  const dest = path.join(context, 'out.tar');
  for (const platform of ['../../x', 'linux/riscv64', 'linux/arm/v7']) {
    await assert.rejects(build({ context, platform, outputs: [{ type: 'oci', dest }] }), refusedAsUsage(/^unsupported platform /), platform);
    await assert.rejects(build({ context, platforms: ['linux/amd64', platform], outputs: [{ type: 'oci', dest }] }), refusedAsUsage(/^unsupported platform /), platform);
  }
  assert.ok(!(await readdir(context)).includes('out.tar'));
});

test('linux/arm64/v8 and linux/arm64 are one platform named twice', async () => {
  await assert.rejects(build({ context, platforms: ['linux/arm64/v8', 'linux/arm64'], outputs: [{ type: 'oci', dest: path.join(context, 'twice.tar') }] }), refusedAsUsage(/names linux\/arm64 twice \(linux\/arm64\/v8 and linux\/arm64\)/));
  // Each alone still builds.
  const built = await build({ context, platforms: ['linux/amd64', 'linux/arm64/v8'], outputs: [{ type: 'oci', dest: path.join(context, 'both.tar') }] });
  assert.deepEqual(built.platforms, ['linux/amd64', 'linux/arm64']);
});
