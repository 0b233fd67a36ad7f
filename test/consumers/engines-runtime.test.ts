// The recording runtime on its own, called the way the engines' shims and
// conmon call a runtime: global flags before the command, create's flags in
// both spellings, a JSON log file, and every other command handed to runc.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isCI } from './harness.js';
import { makeRecordingRuntime, RECORDED_MARKER, runProgram, type RecordingRuntime } from './engines-harness.js';

function jqMissing(): string | false {
  if (execFileSync('sh', ['-c', 'command -v jq || true'], { encoding: 'utf8' }).trim() !== '') return false;
  if (isCI()) throw new Error('CI must run the recording runtime tests: jq is missing (scripts/install-deps.sh installs it)');
  return 'jq is not installed; run scripts/install-deps.sh';
}

describe('the recording runtime', { skip: jqMissing() }, () => {
  let work: string;
  let runtime: RecordingRuntime;
  let fakeRunc: string;
  const spec = (annotations: Record<string, string>, root: string): string =>
    JSON.stringify({ ociVersion: '1.0.2', process: { args: ['hello', 'a b'] }, root: { path: root }, annotations });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lapin recording '));
    runtime = await makeRecordingRuntime(work);
    // Stands in for runc: says what it was given.
    fakeRunc = join(work, 'fake runc');
    await writeFile(fakeRunc, '#!/bin/sh\nprintf "runc:%s\\n" "$@"\n', { mode: 0o755 });
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function bundle(name: string, annotations: Record<string, string>, absoluteRoot = false): Promise<string> {
    const dir = join(work, name);
    const rootfs = join(dir, 'rootfs');
    await mkdir(join(rootfs, '.boot'), { recursive: true });
    await writeFile(join(rootfs, '.boot', 'kernel'), 'kernel bytes');
    await writeFile(join(rootfs, 'a file with spaces'), '');
    await writeFile(join(rootfs, 'urunc.json'), '{"com.urunc.unikernel.binary":"Ly5ib290L2tlcm5lbA=="}');
    await writeFile(join(dir, 'config.json'), spec(annotations, absoluteRoot ? rootfs : 'rootfs'));
    return dir;
  }

  test('at create it records the spec, the rootfs and /urunc.json, then fails with the marker in the JSON log', async () => {
    const dir = await bundle('b1', { 'com.urunc.unikernel.hypervisor': 'qemu' });
    const log = join(work, 'log.json');
    const result = await runProgram(runtime.bin, ['--root', '/run/x', '--log', log, '--log-format', 'json', '--systemd-cgroup', 'create', '--bundle', dir, '--pid-file', join(dir, 'init.pid'), '--console-socket', '/dev/null', 'c1']);
    assert.equal(result.status, 1);
    assert.equal(result.stderr.trim(), `${RECORDED_MARKER} c1`);
    const line = JSON.parse((await readFile(log, 'utf8')).trim()) as { level: string; msg: string };
    assert.deepEqual([line.level, line.msg], ['error', `${RECORDED_MARKER} c1`]);
    const recording = await runtime.read('c1');
    assert.equal(JSON.stringify(recording.spec), await readFile(join(dir, 'config.json'), 'utf8'));
    assert.deepEqual(
      recording.rootfs.map((entry) => `${entry.type} ${entry.path}`),
      ['d /.boot', 'f /.boot/kernel', 'f /a file with spaces', 'f /urunc.json'],
    );
    assert.equal(recording.uruncJson, '{"com.urunc.unikernel.binary":"Ly5ib290L2tlcm5lbA=="}');
    assert.equal(recording.handedToRunc, false);
    assert.equal(recording.argv.at(-1), 'c1');
  });

  test('takes --flag=value spellings, a plain-text log and an absolute root path', async () => {
    const dir = await bundle('b2', {}, true);
    const log = join(work, 'log.txt');
    const result = await runProgram(runtime.bin, [`--log=${log}`, 'create', `--bundle=${dir}`, 'c2']);
    assert.equal(result.status, 1);
    assert.equal((await readFile(log, 'utf8')).trim(), `${RECORDED_MARKER} c2`);
    assert.ok((await runtime.read('c2')).rootfs.some((entry) => entry.path === '/.boot/kernel'));
  });

  test('a Kubernetes pod sandbox and every other command go to runc with the arguments as given', async () => {
    const dir = await bundle('b3', { 'io.kubernetes.cri.container-type': 'sandbox' });
    const env = { LAPIN_RECORDING_RUNC: fakeRunc };
    const created = await runProgram(runtime.bin, ['--root', '/run/x', 'create', '--bundle', dir, 'pod1'], { env });
    assert.equal(created.status, 0, created.stderr);
    assert.equal(created.stdout, ['--root', '/run/x', 'create', '--bundle', dir, 'pod1'].map((arg) => `runc:${arg}\n`).join(''));
    assert.equal((await runtime.read('pod1')).handedToRunc, true);
    for (const args of [['--root', '/run/x', 'state', 'c1'], ['kill', 'c1', 'KILL'], ['delete', '--force', 'c1'], ['--version']]) {
      const result = await runProgram(runtime.bin, args, { env });
      assert.equal(result.stdout, args.map((arg) => `runc:${arg}\n`).join(''));
    }
    assert.deepEqual(await runtime.ids(), ['c1', 'c2', 'pod1']);
  });

  test('create without an id or a config.json fails with a clear line', async () => {
    const noId = await runProgram(runtime.bin, ['create', '--bundle', work]);
    assert.match(noId.stderr, /create without a container id/);
    const noConfig = await runProgram(runtime.bin, ['create', '--bundle', join(work, 'nowhere'), 'c9']);
    assert.match(noConfig.stderr, /no config.json in bundle/);
  });
});
