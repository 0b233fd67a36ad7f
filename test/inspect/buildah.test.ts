// Images made with buildah (from scratch, copy, config --label, commit to an
// OCI archive), then judged by lapin inspect: another tool's archive layout,
// layer and config writing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from '../../src/inspect/inspect.js';
import { isCI } from '../consumers/harness.js';
import { b64, fakeElfKernel } from '../helpers/hand-image.js';

function buildahMissing(): string | false {
  if (spawnSync('sh', ['-c', 'command -v buildah']).status === 0) return false;
  if (isCI()) throw new Error('CI must run the buildah tests: buildah is missing (scripts/install-deps.sh installs it)');
  return 'buildah is not installed';
}

let work: string;
let storage: string[];

function buildah(args: string[]): string {
  const r = spawnSync('buildah', [...storage, ...args], { encoding: 'utf8', cwd: work });
  assert.equal(r.status, 0, `buildah ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** buildah from scratch → copy → config → commit oci-archive. */
function make(name: string, files: Array<[string, string]>, config: string[]): string {
  const container = buildah(['from', '--isolation', 'chroot', 'scratch']);
  for (const [source, destination] of files) buildah(['copy', container, source, destination]);
  if (config.length) buildah(['config', ...config, container]);
  const archive = join(work, `${name}.tar`);
  buildah(['commit', '--quiet', container, `oci-archive:${archive}:latest`]);
  buildah(['rm', container]);
  return archive;
}

const label = (key: string, value: string): string[] => ['--label', `com.urunc.unikernel.${key}=${value}`];

describe('lapin inspect on buildah images', { skip: buildahMissing() }, () => {
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lapin-buildah-'));
    storage = ['--root', join(work, 'root'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs'];
    await writeFile(join(work, 'kernel'), fakeElfKernel());
    const values = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app' };
    await writeFile(join(work, 'urunc.json'), JSON.stringify(Object.fromEntries(Object.entries(values).map(([k, v]) => [`com.urunc.unikernel.${k}`, b64(v)]))));
    await writeFile(join(work, 'bad-urunc.json'), JSON.stringify({ 'com.urunc.unikernel.unikernelType': b64('mirage'), 'com.urunc.unikernel.hypervisor': b64('firecracker'), 'com.urunc.unikernel.binary': b64('/unikernel/app') }));
  });
  after(async () => {
    if (work) {
      spawnSync('buildah', [...storage, 'rm', '--all']);
      await rm(work, { recursive: true, force: true });
    }
  });

  test('urunc.json only: runnable everywhere', async () => {
    const archive = make('json', [['kernel', '/unikernel/app'], ['urunc.json', '/urunc.json']], ['--cmd', '["app"]']);
    const report = await inspect(`oci-archive:${archive}:latest`);
    assert.equal(report.runnable, true, JSON.stringify(report.errors));
    assert.ok(report.urunc.engines.every((e) => e.runs), JSON.stringify(report.urunc.engines));
    assert.equal(report.files[0]?.type, 'elf');
  });

  test("labels only: urunc 0.8's shim reads them under containerd and the CRI; urunc 0.7 does not", async () => {
    const archive = make('labels', [['kernel', '/unikernel/app']], [...label('unikernelType', 'unikraft'), ...label('hypervisor', 'qemu'), ...label('binary', '/unikernel/app'), '--cmd', '["app"]']);
    const report = await inspect(archive);
    assert.equal(report.runnable, true);
    assert.equal(report.values.labels.found, true);
    assert.deepEqual(report.urunc.engines.filter((e) => e.runs).map((e) => `${e.release} ${e.engine}`), ['0.8 containerd', '0.8 cri']);
    const old = await inspect(archive, { release: '0.7' });
    assert.equal(old.runnable, false);
    assert.match(old.errors.map((e) => e.message).join('\n'), /only in the config labels, which urunc 0\.7 does not read/);
  });

  test('a bad pair, a missing binary and an unclean path in urunc.json', async () => {
    const bad = await inspect(make('pair', [['kernel', '/unikernel/app'], ['bad-urunc.json', '/urunc.json']], ['--cmd', '["app"]']));
    assert.equal(bad.pair.accepted, false);
    assert.equal(bad.runnable, false);
    const missing = await inspect(make('missing', [['urunc.json', '/urunc.json']], ['--cmd', '["app"]']));
    assert.equal(missing.files[0]?.exists, false);
    assert.equal(missing.runnable, false);
    await writeFile(join(work, 'unclean.json'), JSON.stringify({ 'com.urunc.unikernel.unikernelType': b64('unikraft'), 'com.urunc.unikernel.hypervisor': b64('qemu'), 'com.urunc.unikernel.binary': b64('/unikernel/./app') }));
    const unclean = await inspect(make('unclean', [['kernel', '/unikernel/app'], ['unclean.json', '/urunc.json']], ['--cmd', '["app"]']));
    assert.equal(unclean.paths[0]?.problem, 'contains a "." or ".." segment');
    assert.equal(unclean.runnable, false);
  });

  test('labels and urunc.json that disagree; a plain image', async () => {
    const archive = make('disagree', [['kernel', '/unikernel/app'], ['urunc.json', '/urunc.json']], [...label('hypervisor', 'firecracker'), '--cmd', '["app"]']);
    const report = await inspect(archive);
    assert.equal(report.runnable, true);
    assert.deepEqual(report.agreement.differences.map((d) => d.key), ['binary', 'hypervisor', 'unikernelType']);
    const plain = await inspect(make('plain', [['kernel', '/bin/app']], ['--cmd', '["/bin/app"]']));
    assert.equal(plain.runnable, false);
    assert.match(plain.errors[0]?.message ?? '', /not a unikernel image/);
  });
});
