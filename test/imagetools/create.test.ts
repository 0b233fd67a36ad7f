// lapin imagetools create: an index over images that already exist, read
// from OCI archives, layouts and a docker-registry, written to an archive
// (imported by ctr --all-platforms) and pushed (read by skopeo --raw and
// skopeo copy --all); a platform given twice and --strategy.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { inspectAny, type IndexInspectReport } from '../../src/inspect/index-report.js';
import { ctrImport, requireConsumers } from '../consumers/harness.js';
import { full, writeOciArchive, writeOciLayout, type HandImage } from '../helpers/hand-image.js';
import { fakeElf } from '../helpers/hand-index.js';
import { registrySkipReason, skopeoInspect, skopeoPush, startRegistry, type TestRegistry } from '../registry/harness.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const run = promisify(execFile);
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin imagetools '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: work });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

const unikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app', cmdline: 'app' };
function image(architecture: 'amd64' | 'arm64', marker = ''): HandImage {
  return {
    architecture,
    annotations: full(unikraft),
    cmd: ['app'],
    layers: [
      [{ name: 'unikernel/', type: 'directory' }, { name: 'unikernel/app', body: fakeElf(architecture === 'amd64' ? 'x86-64' : 'aarch64'), mode: 0o755 }],
      [{ name: 'etc/', type: 'directory' }, { name: 'etc/marker', body: `shared${marker}\n` }],
    ],
  };
}

interface RawIndex {
  mediaType: string;
  manifests: Array<{ digest: string; platform?: { os: string; architecture: string } }>;
}

describe('lapin imagetools create', () => {
  let amd64: string;
  let arm64: string;
  let amd64Manifest: string;
  let arm64Manifest: string;
  before(async () => {
    amd64 = join(work, 'amd64.tar');
    arm64 = join(work, 'arm64 layout');
    amd64Manifest = (await writeOciArchive(amd64, image('amd64'))).manifestDigest;
    arm64Manifest = (await writeOciLayout(arm64, image('arm64'))).manifestDigest;
  });

  test('an archive and a layout into an OCI archive: both platforms, digests kept, shared layer once', async () => {
    const out = join(work, 'multi.tar');
    const result = await lapin(['imagetools', 'create', '-t', 'lapin/multi:1', '--output', `type=oci,dest=${out}`, amd64, `oci:${arm64}`]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /multi\.tar@sha256:[0-9a-f]{64}/);
    const report = (await inspectAny(`oci-archive:${out}:1`)) as IndexInspectReport;
    assert.equal(report.kind, 'index');
    assert.deepEqual(report.platforms.map((p) => [p.platform, p.manifestDigest, p.report.runnable]), [
      ['linux/amd64', amd64Manifest, true],
      ['linux/arm64', arm64Manifest, true],
    ]);
    // 2 kernel layers, 1 shared layer, 2 configs, 2 manifests, 1 index.
    const { stdout } = await run('tar', ['-tf', out]);
    assert.equal(stdout.split('\n').filter((l) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(l)).length, 8);
  });

  test('a layout directory output (tar=false)', async () => {
    const dir = join(work, 'multi layout');
    const result = await lapin(['imagetools', 'create', '--output', `type=oci,dest=${dir},tar=false`, amd64, arm64]);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
    const report = (await inspectAny(`oci:${dir}`)) as IndexInspectReport;
    assert.deepEqual(report.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64']);
  });

  test('the same platform twice: exit 2 under abort; --strategy overwrite keeps the later', async () => {
    const other = join(work, 'amd64-other.tar');
    const otherManifest = (await writeOciArchive(other, image('amd64', '-other'))).manifestDigest;
    const out = join(work, 'dup.tar');
    const refused = await lapin(['imagetools', 'create', '--output', `type=oci,dest=${out}`, amd64, other]);
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /^lapin: error: .*amd64-other\.tar and .*amd64\.tar both have an image for linux\/amd64 \(--strategy overwrite keeps the later one/m);
    assert.equal((await readdir(work)).includes('dup.tar'), false, 'nothing written');
    const overwrite = await lapin(['imagetools', 'create', '--strategy', 'overwrite', '--output', `type=oci,dest=${out}`, amd64, other, arm64]);
    assert.equal(overwrite.status, 0, overwrite.stderr);
    const report = (await inspectAny(out)) as IndexInspectReport;
    assert.deepEqual(report.platforms.map((p) => p.manifestDigest), [otherManifest, arm64Manifest]);
  });

  test('--dry-run prints the index; bad --output is a usage error', async () => {
    const dry = await lapin(['imagetools', 'create', '--dry-run', amd64, arm64]);
    assert.equal(dry.status, 0, dry.stderr);
    const index = JSON.parse(dry.stdout) as RawIndex;
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(index.manifests.map((m) => [m.digest, m.platform?.architecture]), [[amd64Manifest, 'amd64'], [arm64Manifest, 'arm64']]);
    const bad = await lapin(['imagetools', 'create', '--output', 'type=docker,dest=x', amd64]);
    assert.equal(bad.status, 2, bad.stderr);
    // It was exit 2 with nothing printed at all.
    assert.equal(bad.stderr, 'lapin: error: --output: type "docker" is not one imagetools writes (use type=oci,dest=PATH for an OCI archive, with tar=false for a layout directory)\n');
  });

  test('ctr images import --all-platforms takes every platform of the archive', { skip: requireConsumers(['ctr']) }, async () => {
    const out = join(work, 'for-ctr.tar');
    assert.equal((await lapin(['imagetools', 'create', '-t', 'lapin/multi:ctr', '--output', `type=oci,dest=${out}`, amd64, arm64])).status, 0);
    const imported = await ctrImport(out, { allPlatforms: true, unpack: false });
    try {
      assert.ok(imported.names.includes('docker.io/lapin/multi:ctr'), imported.names.join(', '));
      const index = imported.images.find((i) => i.name === 'docker.io/lapin/multi:ctr')?.index;
      assert.deepEqual(index?.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
      const arm64Config = JSON.parse((await imported.content(arm64Manifest)).toString('utf8')) as { config: { digest: string } };
      assert.ok((await imported.content(arm64Config.config.digest)).length > 0, 'the arm64 content was imported');
    } finally {
      await imported.cleanup();
    }
  });

  describe('with a docker-registry', { skip: registrySkipReason() }, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry('anonymous');
      await skopeoPush(amd64, `${registry.host}/single/amd64:1`);
      await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${arm64}`, `docker://${registry.host}/single/arm64:1`]);
    });
    after(async () => {
      await registry?.stop();
    });

    test('registry images into an index on the same registry: blobs mounted, not uploaded; skopeo reads it', async () => {
      const target = `${registry.host}/multi/app:1`;
      const result = await lapin(['imagetools', 'create', '-t', target, `${registry.host}/single/amd64:1`, `docker://${registry.host}/single/arm64:1`]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stderr, /mounted into .*multi\/app from single\/amd64/);
      assert.match(result.stderr, /mounted into .*multi\/app from single\/arm64/);
      assert.doesNotMatch(result.stderr, /pushed blob/);
      const raw = (await skopeoInspect(target, '--raw')) as RawIndex;
      assert.deepEqual(raw.manifests.map((m) => [m.digest, m.platform?.architecture]), [[amd64Manifest, 'amd64'], [arm64Manifest, 'arm64']]);
      const copy = join(work, 'skopeo-copy');
      await run('skopeo', ['copy', '--all', '--src-tls-verify=false', `docker://${target}`, `oci:${copy}:copied`]);
      const report = (await inspectAny(`oci:${copy}:copied`)) as IndexInspectReport;
      assert.deepEqual(report.platforms.map((p) => [p.platform, p.report.runnable]), [['linux/amd64', true], ['linux/arm64', true]]);
    });

    test('files into a registry: blobs uploaded; --strategy merge adds a platform to the index there', async () => {
      const target = `${registry.host}/merged/app:1`;
      const first = await lapin(['imagetools', 'create', '-t', target, amd64]);
      assert.equal(first.status, 0, first.stderr);
      assert.match(first.stderr, /pushed blob/);
      const again = await lapin(['imagetools', 'create', '-t', target, amd64, arm64]);
      assert.equal(again.status, 0, again.stderr);
      const abort = await lapin(['imagetools', 'create', '-t', target, arm64]);
      assert.equal(abort.status, 0, abort.stderr);
      assert.deepEqual(((await skopeoInspect(target, '--raw')) as RawIndex).manifests.map((m) => m.platform?.architecture), ['arm64']);
      const merge = await lapin(['imagetools', 'create', '--strategy', 'merge', '-t', target, amd64]);
      assert.equal(merge.status, 0, merge.stderr);
      assert.deepEqual(((await skopeoInspect(target, '--raw')) as RawIndex).manifests.map((m) => m.platform?.architecture), ['arm64', 'amd64']);
      const report = (await inspectAny(`docker://${target}`, { registry: {} })) as IndexInspectReport;
      assert.equal(report.runnable, true);
    });

    test('--strategy merge with several -t merges into the first one\'s index, and every -t gets that index, as buildx --append', async () => {
      // latest holds amd64 and an older arm64 image; 2 holds this release's arm64 image.
      const older = join(work, 'older arm64.tar');
      const olderManifest = (await writeOciArchive(older, image('arm64', ' older'))).manifestDigest;
      const [release, latest] = [`${registry.host}/tags/app:2`, `${registry.host}/tags/app:latest`];
      assert.equal((await lapin(['imagetools', 'create', '-t', latest, amd64, older])).status, 0);
      assert.equal((await lapin(['imagetools', 'create', '-t', release, arm64])).status, 0);
      const merge = await lapin(['imagetools', 'create', '--strategy', 'merge', '-t', release, '-t', latest, amd64]);
      assert.equal(merge.status, 0, merge.stderr);
      assert.match(merge.stderr, new RegExp(`--strategy merge merges into the index at ${release.replace(/[.]/g, '\\.')} \\(the first -t; it holds linux/arm64\\), and ${latest.replace(/[.]/g, '\\.')} gets that same index, whatever it holds now \\(as docker buildx imagetools create --append\\)`));
      const lines = merge.stdout.trim().split('\n');
      assert.equal(lines.length, 2, merge.stdout);
      const digests = lines.map((l) => l.slice(l.indexOf('@') + 1));
      assert.equal(digests[0], digests[1]);
      for (const tag of [release, latest]) {
        const raw = (await skopeoInspect(tag, '--raw')) as RawIndex;
        assert.deepEqual(raw.manifests.map((m) => [m.platform?.architecture, m.digest]), [['arm64', arm64Manifest], ['amd64', amd64Manifest]], tag);
      }
      // latest's older arm64 image is not in it: only the first -t's index is read.
      assert.ok(!JSON.stringify(await skopeoInspect(latest, '--raw')).includes(olderManifest));
    });
  });
});
