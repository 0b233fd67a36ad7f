// lapin inspect reading from a registry (docker://REF and bare references):
// the test registry (docker-registry, anonymous, on 127.0.0.1) holds lapin's
// seed image and hand-made images lapin did not write (pushed with skopeo),
// judged in human and JSON form with the right exit codes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { inspect, type InspectReport } from '../../src/inspect/inspect.js';
import { parseSource } from '../../src/source/open.js';
import { fakeElfKernel, full, uruncJsonFile, writeOciArchive, type HandImage } from '../helpers/hand-image.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';
import { EXAMPLE, assertNoStack, lapin } from '../registry/helpers.js';

const skip = registrySkipReason();
let work: string;
let registry: TestRegistry;
let env: NodeJS.ProcessEnv;
let seedDigest: string;
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };

const unikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app', cmdline: 'app -v' };
const kernelLayer = [
  { name: 'unikernel/', type: 'directory' as const },
  { name: 'unikernel/app', body: fakeElfKernel(), mode: 0o755 },
];

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** A hand-made image, pushed to the test registry by skopeo (not lapin). */
async function pushHandImage(name: string, image: HandImage): Promise<string> {
  const archive = path.join(work, `${name.replace(/[/:]/g, '-')}.tar`);
  await writeOciArchive(archive, image);
  const ref = `${registry.host}/${name}`;
  await run('skopeo', ['copy', '--dest-tls-verify=false', `oci-archive:${archive}`, `docker://${ref}`]);
  return ref;
}

async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function errorLines(stderr: string): string[] {
  return stderr.trim().split('\n').filter((line) => line.startsWith('lapin: error:'));
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-inspect-registry-'));
  // A cache of its own: the first inspect of each image really pulls.
  env = { LAPIN_CACHE_DIR: path.join(work, 'cache') };
  if (skip) return;
  registry = await startRegistry('anonymous');
  const seed = await build({
    context: EXAMPLE,
    file: path.join(EXAMPLE, 'bunnyfile'),
    tags: [`${registry.host}/lapin/seed:1`],
    outputs: [{ type: 'registry' }],
    registry: noCredentials,
    cache: false,
  });
  seedDigest = seed.digest;
  await pushHandImage('hand/labels-only:1', { layers: [kernelLayer], labels: full(unikraft), cmd: ['app', '-v'] });
  const badPair = { unikernelType: 'mirage', hypervisor: 'firecracker', binary: '/unikernel/app' };
  await pushHandImage('hand/bad-pair:1', { layers: [kernelLayer, [uruncJsonFile(badPair)]], annotations: full(badPair), cmd: ['app'] });
  await pushHandImage('hand/urunc-json-only:1', { layers: [kernelLayer, [uruncJsonFile(unikraft)]], cmd: ['app', '-v'] });
  const missing = { ...unikraft, binary: '/unikernel/missing' };
  await pushHandImage('hand/missing-binary:1', { layers: [kernelLayer, [uruncJsonFile(missing)]], annotations: full(missing), cmd: ['app'] });
  const unclean = { ...unikraft, binary: '/unikernel//app' };
  await pushHandImage('hand/unclean-path:1', { layers: [kernelLayer, [uruncJsonFile(unclean)]], annotations: full(unclean), cmd: ['app'] });
  await pushHandImage('hand/disagree:1', {
    layers: [kernelLayer, [uruncJsonFile({ ...unikraft, binary: '/unikernel/old-app' })]],
    annotations: full(unikraft),
    cmd: ['app', '-v'],
  });
  await pushHandImage('hand/plain:1', { layers: [[{ name: 'bin/', type: 'directory' }, { name: 'bin/sh', body: '#!/bin/true\n', mode: 0o755 }]], cmd: ['/bin/sh'] });
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('lapin inspect: images in a registry', { skip }, () => {
  test("lapin's seed image by docker://REF: runnable, the pushed manifest, all three sources agree; exit 0", async () => {
    const report = await inspect(`docker://${registry.host}/lapin/seed:1`, { cacheDir: path.join(work, 'cache-lib'), registry: noCredentials });
    assert.equal(report.runnable, true, report.errors.map((e) => e.message).join('\n'));
    assert.deepEqual(report.source, { name: `docker://${registry.host}/lapin/seed:1`, transport: 'docker' });
    assert.equal(report.image.manifestDigest, seedDigest);
    assert.equal(report.image.layers, 2);
    assert.equal(report.values.annotations.found, true);
    assert.equal(report.values.uruncJson.found, true);
    assert.equal(report.agreement.agree, true);
    assert.equal(report.pair.guest, 'mirage');
    assert.equal(report.pair.monitor, 'hvt');
    const binary = report.files.find((f) => f.key === 'binary');
    assert.equal(binary?.exists, true);
    assert.equal(binary?.path, '/.boot/kernel');
    assert.equal(binary?.detail, 'ELF 64-bit LSB executable, x86-64');

    const human = await lapin(['inspect', `docker://${registry.host}/lapin/seed:1`], { env });
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /verdict: urunc 0\.8 can run this image/);
    assert.ok(human.stdout.includes(seedDigest), human.stdout);

    const json = await lapin(['inspect', '--json', `docker://${registry.host}/lapin/seed:1`], { env });
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as InspectReport;
    assert.equal(parsed.runnable, true);
    assert.equal(parsed.source.transport, 'docker');
    assert.equal(parsed.image.manifestDigest, seedDigest);
  });

  test('a bare reference reads the registry too, in human and JSON form', async () => {
    const ref = `${registry.host}/lapin/seed:1`;
    assert.deepEqual(await parseSource(ref), { transport: 'docker', target: ref });
    const human = await lapin(['inspect', ref], { env });
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /verdict: urunc 0\.8 can run this image/);
    const json = await lapin(['inspect', '--json', `${registry.host}/hand/urunc-json-only:1`], { env });
    assert.equal(json.status, 0, json.stderr);
    const report = JSON.parse(json.stdout) as InspectReport;
    assert.equal(report.source.transport, 'docker');
    assert.equal(report.effective.source, 'uruncJson');
    assert.deepEqual(report.values.uruncJson.values, unikraft);
  });

  test("a labels-only image (pushed by skopeo): urunc 0.8's shim reads the labels (exit 0), urunc 0.7 does not (exit 1), by docker:// and bare reference", async () => {
    const ref = `${registry.host}/hand/labels-only:1`;
    for (const source of [`docker://${ref}`, ref]) {
      const human = await lapin(['inspect', source], { env });
      assert.equal(human.status, 0, human.stderr);
      assert.match(human.stdout, /verdict: urunc 0\.8 can run this image/);
      const old = await lapin(['inspect', '--urunc-version', '0.7', source], { env });
      assert.equal(old.status, 1, old.stderr);
      assert.match(old.stdout, /only in the config labels, which urunc 0\.7 does not read/);
      const json = await lapin(['inspect', '--json', source], { env });
      assert.equal(json.status, 0, json.stderr);
      const report = JSON.parse(json.stdout) as InspectReport;
      assert.equal(report.runnable, true);
      assert.equal(report.values.labels.found, true);
      assert.deepEqual(report.urunc.engines.filter((e) => e.runs).map((e) => `${e.release} ${e.engine} ${e.source}`), ['0.8 containerd image-metadata', '0.8 cri image-metadata']);
    }
  });

  // The same verdicts as from archives (test/inspect/inspect.test.ts), read from the registry.
  const verdicts: Array<[string, number, RegExp]> = [
    ['hand/missing-binary:1', 1, /\/unikernel\/missing is missing in the image rootfs/],
    ['hand/unclean-path:1', 1, /binary "\/unikernel\/\/app"|contains "\/\/"/],
    ['hand/disagree:1', 0, /the sources disagree on binary/],
    ['hand/plain:1', 1, /not a unikernel image/],
  ];
  for (const [name, status, message] of verdicts) {
    test(`${name} (pushed by skopeo): exit ${status}`, async () => {
      const json = await lapin(['inspect', '--json', `docker://${registry.host}/${name}`], { env });
      assert.equal(json.status, status, json.stderr);
      const report = JSON.parse(json.stdout) as InspectReport;
      assert.equal(report.runnable, status === 0);
      assert.match([...report.errors, ...report.warnings].map((e) => e.message).join('\n'), message);
    });
  }

  test('a guest/monitor pair urunc refuses (pushed by skopeo); exit 1', async () => {
    const source = `docker://${registry.host}/hand/bad-pair:1`;
    const json = await lapin(['inspect', '--json', source], { env });
    assert.equal(json.status, 1, json.stderr);
    const report = JSON.parse(json.stdout) as InspectReport;
    assert.equal(report.pair.accepted, false);
    assert.match(report.errors.map((e) => e.message).join('\n'), /urunc does not run mirage guests on firecracker/);
    const human = await lapin(['inspect', source], { env });
    assert.equal(human.status, 1);
    assert.match(human.stdout, /urunc does not run mirage guests on firecracker/);
  });

  test('a missing tag: exit 2, one line', async () => {
    for (const source of [`docker://${registry.host}/lapin/seed:no-such-tag`, `${registry.host}/lapin/no-such-repo:1`]) {
      const result = await lapin(['inspect', source], { env });
      assert.equal(result.status, 2, result.stderr);
      assert.equal(result.stdout, '');
      const lines = errorLines(result.stderr);
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0] as string, /was not found in 127\.0\.0\.1:\d+ \(check the name and tag\)/);
      assertNoStack(result.stderr);
    }
  });

  test('an unreachable registry: exit 2, one line', async () => {
    const port = await unusedPort();
    for (const args of [['inspect', `docker://127.0.0.1:${port}/lapin/seed:1`], ['inspect', '--json', `127.0.0.1:${port}/lapin/seed:1`]]) {
      const result = await lapin(args, { env });
      assert.equal(result.status, 2, result.stderr);
      assert.equal(result.stdout, '');
      const lines = errorLines(result.stderr);
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0] as string, new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`));
      assertNoStack(result.stderr);
    }
  });

  test('--debug shows the registry requests; the second inspect reuses cached blobs', async () => {
    const result = await lapin(['--debug', 'inspect', `docker://${registry.host}/lapin/seed:1`], { env: { LAPIN_CACHE_DIR: path.join(work, 'cache-debug') } });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /lapin: debug: GET http:\/\/127\.0\.0\.1:\d+\/v2\/lapin\/seed\/blobs\/sha256:/);
    const again = await lapin(['--debug', 'inspect', `docker://${registry.host}/lapin/seed:1`], { env: { LAPIN_CACHE_DIR: path.join(work, 'cache-debug') } });
    assert.equal(again.status, 0, again.stderr);
    // The tag is asked for again (the verdict is on what the registry serves now); no blob is.
    assert.match(again.stderr, /\/v2\/lapin\/seed\/manifests\/1 -> 200/);
    assert.doesNotMatch(again.stderr, /\/blobs\//);
  });
});
