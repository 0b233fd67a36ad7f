// urunc's storage table and release lines, through the CLI the way users run it:
// `lapin build` exit codes, --urunc-checks=warn, --urunc-version, and inspect on what was built.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import type { InspectReport } from '../../src/inspect/inspect.js';

const ROOT = path.resolve('.');
const KERNEL = path.join(ROOT, 'examples/mirage-hvt/network.hvt');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin urunc rules-'));
});

function lapin(args: string[], cwd = work) {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd, env: process.env, maxBuffer: 64 * 1024 * 1024 });
  return { status: result.status, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

/** A context with the kernel, a data file, and `file` holding `text`. */
async function context(file: string, text: string): Promise<string> {
  const dir = await mkdtemp(path.join(work, 'ctx-'));
  await cp(KERNEL, path.join(dir, 'kernel'));
  await writeFile(path.join(dir, 'data.txt'), 'data\n');
  await writeFile(path.join(dir, 'rootfs.img'), Buffer.alloc(4096, 1));
  await writeFile(path.join(dir, file), text);
  return dir;
}

function bunnyfile(framework: string, monitor: string, type: string): string {
  return `version: v0.1\nplatforms:\n  framework: ${framework}\n  monitor: ${monitor}\nkernel:\n  from: local\n  path: kernel\nrootfs:\n  type: ${type}\n  include:\n    - data.txt:/data.txt\ncmd: ["x"]\n`;
}

function containerfile(...labels: string[]): string {
  return ['FROM scratch', 'COPY kernel /kernel', 'COPY rootfs.img /rootfs.img', 'COPY data.txt /data.txt', ...labels.map((l) => `LABEL com.urunc.unikernel.${l}`), 'CMD ["x"]', ''].join('\n');
}

function inspectJson(args: string[]): { status: number | null; report: InspectReport } {
  const r = lapin(['inspect', '--json', ...args]);
  return { status: r.status, report: JSON.parse(r.stdout) as InspectReport };
}

describe('storage urunc cannot use: build refuses, --urunc-checks=warn builds, inspect says no', () => {
  const cases: Array<[string, string, string, RegExp]> = [
    ['mirage initrd (bunnyfile)', 'bunnyfile', bunnyfile('mirage', 'hvt', 'initrd'), /bunnyfile:10:3: mirage cannot use an initrd/],
    ['rumprun initrd (bunnyfile)', 'bunnyfile', bunnyfile('rumprun', 'hvt', 'initrd'), /bunnyfile:10:3: rumprun cannot use an initrd/],
    ['mewz initrd (bunnyfile)', 'bunnyfile', bunnyfile('mewz', 'qemu', 'initrd'), /bunnyfile:10:3: mewz cannot use an initrd/],
    ['mewz block (Containerfile)', 'Containerfile', containerfile('unikernelType=mewz', 'binary=/kernel', 'block=/rootfs.img', 'blkMntPoint=/'), /Containerfile:7:7: mewz cannot use a block image/],
    ['hermit block (Containerfile)', 'Containerfile', containerfile('unikernelType=hermit', 'binary=/kernel', 'block=/rootfs.img', 'blkMntPoint=/'), /Containerfile:7:7: hermit cannot use a block image/],
    ['mirage initrd (Containerfile)', 'Containerfile', containerfile('unikernelType=mirage', 'hypervisor=hvt', 'binary=/kernel', 'initrd=/data.txt'), /Containerfile:8:7: mirage cannot use an initrd/],
  ];
  for (const [name, file, text, message] of cases) {
    test(name, async () => {
      const dir = await context(file, text);
      const out = path.join(dir, 'out.tar');
      const refused = lapin(['build', '-o', `type=oci,dest=${out}`, dir]);
      assert.equal(refused.status, 1, refused.stderr);
      assert.match(refused.stderr, message);
      assert.match(refused.stderr, /--urunc-checks=warn builds it anyway/);
      const built = lapin(['build', '--urunc-checks=warn', '-o', `type=oci,dest=${out}`, dir]);
      assert.equal(built.status, 0, built.stderr);
      assert.match(built.stderr, message);
      const { status, report } = inspectJson([out]);
      assert.equal(status, 1);
      assert.equal(report.runnable, false);
      assert.match(report.errors.map((e) => e.message).join('\n'), /cannot use (an initrd|a block image)/);
    });
  }
});

describe('the Containerfile mountRootfs default', () => {
  test('mirage without mountRootfs builds with no warning and inspects clean', async () => {
    const dir = await context('Containerfile', ['FROM scratch', 'COPY kernel /kernel', 'LABEL com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt com.urunc.unikernel.binary=/kernel', 'CMD ["x"]', ''].join('\n'));
    const out = path.join(dir, 'out.tar');
    const built = lapin(['build', '--progress', 'plain', '-o', `type=oci,dest=${out}`, dir]);
    assert.equal(built.status, 0, built.stderr);
    assert.doesNotMatch(built.stderr, /mountRootfs|warning/);
    const { status, report } = inspectJson([out]);
    assert.equal(status, 0);
    assert.equal(report.values.labels.values.mountRootfs, 'false');
    assert.deepEqual(report.warnings, []);
  });
});

describe('--urunc-version', () => {
  const hermit = containerfile('unikernelType=hermit', 'binary=/kernel');

  test('build enforces the chosen release: hermit is refused for urunc < 0.7, built for 0.8; a release lapin does not know is exit 2', async () => {
    const dir = await context('Containerfile', hermit);
    const out = path.join(dir, 'out.tar');
    const old = lapin(['build', '--urunc-version', '0.5.0', '-o', `type=oci,dest=${out}`, dir]);
    assert.equal(old.status, 1, old.stderr);
    assert.match(old.stderr, /urunc < 0\.7 has no hermit guest/);
    assert.equal(lapin(['build', '-o', `type=oci,dest=${out}`, dir]).status, 0);
    const unknown = lapin(['build', '--urunc-version', '0.9', '-o', `type=oci,dest=${out}`, dir]);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /--urunc-version/);
    // inspect: the verdict and exit code follow the release asked for.
    assert.equal(inspectJson([out]).status, 0);
    const pre = inspectJson(['--urunc-version', 'pre-0.7', out]);
    assert.equal(pre.status, 1);
    assert.equal(pre.report.urunc.release, 'pre-0.7');
    assert.equal(lapin(['inspect', '--urunc-version', 'v0.7.0', out]).status, 0);
  });

  test('vAccel: only vsock, only with RPCAddress; never written to /urunc.json, and a warning says where urunc reads it', async () => {
    const noAddress = await context('Containerfile', containerfile('unikernelType=unikraft', 'binary=/kernel', 'initrd=/data.txt', 'vAccel=vsock'));
    const r1 = lapin(['build', '-o', `type=oci,dest=${path.join(noAddress, 'o.tar')}`, noAddress]);
    assert.equal(r1.status, 1, r1.stderr);
    assert.match(r1.stderr, /vAccel=vsock needs com\.urunc\.unikernel\.RPCAddress/);
    const tcp = await context('Containerfile', containerfile('unikernelType=unikraft', 'binary=/kernel', 'initrd=/data.txt', 'vAccel=tcp', 'RPCAddress=vsock://2:2048'));
    const r2 = lapin(['build', '-o', `type=oci,dest=${path.join(tcp, 'o.tar')}`, tcp]);
    assert.equal(r2.status, 1, r2.stderr);
    assert.match(r2.stderr, /urunc supports only vAccel=vsock/);
    const good = await context('Containerfile', containerfile('unikernelType=unikraft', 'binary=/kernel', 'initrd=/data.txt', 'vAccel=vsock', 'RPCAddress=vsock://2:2048'));
    const out = path.join(good, 'o.tar');
    const r3 = lapin(['build', '-o', `type=oci,dest=${out}`, good]);
    assert.equal(r3.status, 0, r3.stderr);
    assert.match(r3.stderr, /vAccel and RPCAddress are read from the OCI spec's annotations only, never from \/urunc\.json/);
    const { status, report } = inspectJson([out]);
    assert.equal(status, 0);
    assert.equal(report.values.annotations.values.vAccel, 'vsock');
    assert.equal(report.values.labels.values.RPCAddress, 'vsock://2:2048');
    assert.equal(report.values.uruncJson.values.vAccel, undefined);
    assert.equal(report.values.uruncJson.values.RPCAddress, undefined);
    assert.equal(report.agreement.agree, true, JSON.stringify(report.agreement));
  });
});

describe('several urunc-rule errors at once', () => {
  test('are one line: the first with its own hint, then the others with theirs', async () => {
    const dir = await context('Containerfile', containerfile('unikernelType=mirage', 'hypervisor=hvt', 'binary=/boot//kernel'));
    const refused = lapin(['build', '-o', `type=oci,dest=${path.join(dir, 'out.tar')}`, dir]);
    assert.equal(refused.status, 1, refused.stderr);
    const file = `${path.basename(dir)}/Containerfile`;
    const errors = refused.stderr.split('\n').filter((line) => line.startsWith('lapin: error'));
    assert.deepEqual(errors, [
      `lapin: error: ${file}:7:7: com.urunc.unikernel.binary "/boot//kernel" contains "//" (write a clean absolute path such as /.boot/kernel); also: ${file}:7:7: com.urunc.unikernel.binary names /boot//kernel, which is not in the image (copy the file there, or point the value at where it is) (--urunc-checks=warn builds it anyway)`,
    ]);
    assert.ok(!refused.stderr.includes('\\n'), refused.stderr);
  });
});
