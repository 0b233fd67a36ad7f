// lapin inspect of an image index: one report and verdict per platform and
// one for the index, from hand-made indexes in an archive, a layout and a
// docker-registry (copied there by skopeo copy --all).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspectAny, isIndexReport, type IndexInspectReport } from '../../src/inspect/index-report.js';
import { full, sha256, writeOciArchive, type HandImage } from '../helpers/hand-image.js';
import { fakeElf, handIndex, writeIndexArchive, writeIndexLayout } from '../helpers/hand-index.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin inspect index '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const unikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app', cmdline: 'app' };
function image(architecture: 'amd64' | 'arm64', kernel: 'x86-64' | 'aarch64'): HandImage {
  return {
    architecture,
    annotations: full(unikraft),
    labels: full(unikraft),
    cmd: ['app'],
    layers: [[{ name: 'unikernel/', type: 'directory' }, { name: 'unikernel/app', body: fakeElf(kernel), mode: 0o755 }]],
  };
}

function asIndex(report: unknown): IndexInspectReport {
  assert.ok(isIndexReport(report as IndexInspectReport), 'an index report');
  return report as IndexInspectReport;
}

describe('lapin inspect: image indexes', () => {
  test('an archive with amd64 and arm64: each platform judged, both run; exit 0; human and --json', async () => {
    const made = await handIndex([image('amd64', 'x86-64'), image('arm64', 'aarch64')]);
    const path = join(work, 'both.tar');
    await writeIndexArchive(path, made);
    const report = asIndex(await inspectAny(`oci-archive:${path}`));
    assert.equal(report.index.digest, made.indexDigest);
    assert.deepEqual(report.platforms.map((p) => [p.platform, p.manifestDigest, p.report.runnable, p.report.image.architecture]), [
      ['linux/amd64', made.manifests[0], true, 'amd64'],
      ['linux/arm64', made.manifests[1], true, 'arm64'],
    ]);
    assert.equal(report.platforms[1]?.report.files.find((f) => f.key === 'binary')?.architecture, 'arm64');
    assert.equal(report.runnable, true);

    const human = lapin(['inspect', path]);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^index .*both\.tar \(oci-archive\), sha256:[0-9a-f]{64}, 2 platforms$/m);
    assert.match(human.stdout, /^platform linux\/amd64 \(manifest sha256:/m);
    assert.match(human.stdout, /^platform linux\/arm64 \(manifest sha256:/m);
    assert.match(human.stdout, /^ {2}linux\/amd64: urunc 0\.8 can run it$/m);
    assert.match(human.stdout, /^ {2}linux\/arm64: urunc 0\.8 can run it$/m);
    assert.match(human.stdout, /^verdict: urunc 0\.8 can run every platform of this index$/m);
    const json = lapin(['inspect', '--json', `oci-archive:${path}`]);
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as IndexInspectReport;
    assert.equal(parsed.kind, 'index');
    assert.equal(parsed.platforms.length, 2);
  });

  test('an arm64 entry holding an x86-64 kernel: that platform fails, the index fails; exit 1', async () => {
    const made = await handIndex([image('amd64', 'x86-64'), image('arm64', 'x86-64')]);
    const dir = join(work, 'wrong kernel');
    await writeIndexLayout(dir, made);
    const report = asIndex(await inspectAny(`oci:${dir}`));
    assert.deepEqual(report.platforms.map((p) => p.report.runnable), [true, false]);
    assert.match(report.platforms[1]?.report.errors.map((e) => e.message).join('\n') ?? '', /the image is for arm64, but its kernel \/unikernel\/app is built for amd64/);
    assert.equal(report.runnable, false);
    const human = lapin(['inspect', `oci:${dir}`]);
    assert.equal(human.status, 1, human.stderr);
    assert.match(human.stdout, /^ {2}linux\/arm64: urunc 0\.8 cannot run it \(2 errors\)$/m);
    assert.match(human.stdout, /^verdict: urunc 0\.8 cannot run linux\/arm64 of this index$/m);
  });

  test('platforms missing from the index entries are read from the configs', async () => {
    const made = await handIndex([image('amd64', 'x86-64'), image('arm64', 'aarch64')], { platformInIndex: false });
    const dir = join(work, 'config platforms');
    await writeIndexLayout(dir, made);
    const report = asIndex(await inspectAny(dir));
    assert.deepEqual(report.platforms.map((p) => p.platform), ['linux/amd64', 'linux/arm64']);
  });

  test('a single image keeps the single-image report', async () => {
    const path = join(work, 'single.tar');
    await writeOciArchive(path, image('amd64', 'x86-64'));
    const report = await inspectAny(path);
    assert.equal(isIndexReport(report), false);
    const json = JSON.parse(lapin(['inspect', '--json', path]).stdout) as { kind?: string; runnable: boolean };
    assert.equal(json.kind, undefined);
    assert.equal(json.runnable, true);
  });

  test('a damaged entry of an index: one clean line, exit 2', async () => {
    const made = await handIndex([image('amd64', 'x86-64'), image('arm64', 'aarch64')]);
    const manifest = made.manifests[1]?.slice(7) as string;
    made.blobs.set(manifest, Buffer.from('{"not":"the manifest"}'));
    const dir = join(work, 'damaged');
    await writeIndexLayout(dir, made);
    const result = lapin(['inspect', dir]);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /^lapin: error: .*does not match its content/m);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  });

  /** index.json naming a new nested index of MANIFESTS (descriptors as given). */
  async function writeNestedIndex(dir: string, manifests: unknown[]): Promise<void> {
    const nested = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }));
    await writeFile(join(dir, 'blobs', 'sha256', sha256(nested)), nested);
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${sha256(nested)}`, size: nested.length }] }));
  }

  test('platform strings with ESC, BEL and a bidi override are escaped in the human report', async () => {
    const made = await handIndex([image('amd64', 'x86-64')]);
    const dir = join(work, 'escapes');
    await writeIndexLayout(dir, made);
    const manifest = made.blobs.get(made.manifests[0]?.slice(7) as string) as Buffer;
    await writeNestedIndex(dir, [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: made.manifests[0], size: manifest.length, platform: { os: 'linux\u001b[2J', architecture: 'amd64', variant: 'v1\u0007\u202e' } }]);
    const human = lapin(['inspect', dir]);
    assert.equal(human.status, 0, human.stderr);
    for (const raw of ['\u0007', '\u001b', '\u202e']) assert.ok(!human.stdout.includes(raw), `raw ${JSON.stringify(raw)} in the report`);
    assert.match(human.stdout, /^platform linux\\x1b\[2J\/amd64\/v1\\x07\\u\{202e\} \(manifest sha256:/m);
    assert.match(human.stdout, /^ {2}linux\\x1b\[2J\/amd64\/v1\\x07\\u\{202e\}: urunc 0\.8 can run it$/m);
  });

  test('an index of no images, or only attestations: "lists no image", exit 1, not "can run every platform"', async () => {
    const made = await handIndex([image('amd64', 'x86-64')]);
    const manifest = made.blobs.get(made.manifests[0]?.slice(7) as string) as Buffer;
    for (const [name, manifests] of [
      ['empty', []],
      ['attestations only', [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: made.manifests[0], size: manifest.length, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } }]],
    ] as const) {
      const dir = join(work, `no images ${name}`);
      await writeIndexLayout(dir, made);
      await writeNestedIndex(dir, [...manifests]);
      const human = lapin(['inspect', '--urunc-version', '0.7', dir]);
      assert.equal(human.status, 1, `${name}: ${human.stderr}`);
      assert.match(human.stdout, /^verdict: urunc 0\.7 cannot run this index: it lists no image for any platform/m, name);
      const json = JSON.parse(lapin(['inspect', '--json', dir]).stdout) as IndexInspectReport;
      assert.deepEqual([json.platforms.length, json.runnable, json.release], [0, false, '0.8']);
    }
  });

  test('attestations, OCI artifacts and unknown media types in an index are left out and listed, not judged and not an error', async () => {
    const made = await handIndex([image('amd64', 'x86-64')]);
    const dir = join(work, 'with artifacts');
    await writeIndexLayout(dir, made);
    const put = async (data: Buffer): Promise<string> => {
      await writeFile(join(dir, 'blobs', 'sha256', sha256(data)), data);
      return `sha256:${sha256(data)}`;
    };
    const sbom = Buffer.from('{"spdxVersion":"SPDX-2.3"}');
    const empty = Buffer.from('{}');
    const artifactOf = async (extra: object): Promise<{ digest: string; size: number }> => {
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await put(empty), size: 2 }, layers: [{ mediaType: 'application/spdx+json', digest: await put(sbom), size: sbom.length }], ...extra }));
      return { digest: await put(bytes), size: bytes.length };
    };
    const manifest = made.blobs.get(made.manifests[0]?.slice(7) as string) as Buffer;
    const attestation = await artifactOf({ annotations: { x: '1' } });
    const artifact = await artifactOf({ artifactType: 'application/spdx+json' });
    const oldArtifact = await artifactOf({ annotations: { x: '2' } });
    const emptyConfig = await artifactOf({ annotations: { x: '3' } });
    await writeNestedIndex(dir, [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: made.manifests[0], size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } },
      // BuildKit's attestation, here without the unknown/unknown platform (its annotation says what it is).
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...attestation, annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': made.manifests[0] } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...artifact, artifactType: 'application/spdx+json' },
      { mediaType: 'application/vnd.oci.artifact.manifest.v1+json', ...oldArtifact },
      // Only the manifest tells: an empty config.
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...emptyConfig },
    ]);
    const human = lapin(['inspect', dir]);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /1 platform\n {2}left out: sha256:[0-9a-f]{64}, an attestation\n {2}left out: sha256:[0-9a-f]{64}, an artifact \(application\/spdx\+json\)\n {2}left out: sha256:[0-9a-f]{64}, of type application\/vnd\.oci\.artifact\.manifest\.v1\+json, not an image\n {2}left out: sha256:[0-9a-f]{64}, an artifact \(empty config\)\n/);
    const report = JSON.parse(lapin(['inspect', '--json', dir]).stdout) as IndexInspectReport;
    assert.deepEqual(report.platforms.map((p) => p.platform), ['linux/amd64']);
    assert.deepEqual(report.leftOut.map((l) => l.digest), [attestation.digest, artifact.digest, oldArtifact.digest, emptyConfig.digest]);
  });

  const skip = registrySkipReason();
  describe('from a docker-registry', { skip }, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry('anonymous');
    });
    after(async () => {
      await registry?.stop();
    });

    test('skopeo copy --all of an index, then lapin inspect docker://: both platforms', async () => {
      const made = await handIndex([image('amd64', 'x86-64'), image('arm64', 'aarch64')]);
      const dir = join(work, 'to-push');
      await writeIndexLayout(dir, made);
      execFileSync('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${dir}:latest`, `docker://${registry.host}/multi/app:1`], { stdio: 'pipe' });
      const result = lapin(['inspect', '--json', `docker://${registry.host}/multi/app:1`]);
      assert.equal(result.status, 0, result.stderr);
      const report = JSON.parse(result.stdout) as IndexInspectReport;
      assert.equal(report.kind, 'index');
      assert.equal(report.index.digest, made.indexDigest);
      assert.deepEqual(report.platforms.map((p) => [p.platform, p.report.runnable]), [['linux/amd64', true], ['linux/arm64', true]]);
    });
  });
});
