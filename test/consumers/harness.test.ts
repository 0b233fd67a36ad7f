// Proves the consumer harness on an archive built here by hand (no lapin
// code): the same single tar lapin writes, an OCI image layout plus docker's
// manifest.json and repositories, must load in every real consumer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import {
  cleanupAll,
  ctrImport,
  dockerLoad,
  fileTreeFromTar,
  hostArchitecture,
  normalizeImagePath,
  ociArchiveRef,
  podmanLoad,
  requireConsumers,
  servicesDir,
  skopeoInspect,
  startServices,
  umociUnpack,
  type ImageConfig,
} from './harness.js';

// ---------------------------------------------------------------------------
// A tiny image, built by hand

interface LayerFile {
  name: string;
  type: 'file' | 'directory';
  mode: number;
  body?: Buffer;
}

async function tarOf(files: readonly LayerFile[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const file of files) {
    const header = { name: file.name, type: file.type, mode: file.mode, mtime: new Date(0), uid: 0, gid: 0 };
    if (file.body === undefined) pack.entry(header);
    else pack.entry(header, file.body);
  }
  pack.finalize();
  return buffer(pack);
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

const unikernelValues: Record<string, string> = {
  'com.urunc.unikernel.unikernelType': 'unikraft',
  'com.urunc.unikernel.hypervisor': 'qemu',
  'com.urunc.unikernel.binary': '/.boot/kernel',
  'com.urunc.unikernel.cmdline': 'hello world',
};
const labels = { ...unikernelValues, 'org.example.harness': 'yes' };
const cmd = ['hello', 'world'];
const kernelBytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256));
const uruncJson = JSON.stringify(Object.fromEntries(Object.entries(unikernelValues).map(([key, value]) => [key, b64(value)])));

interface BuiltImage {
  archive: Buffer;
  layerDiffId: string;
  layerDigest: string;
  configDigest: string;
  manifestDigest: string;
}

async function buildArchive(): Promise<BuiltImage> {
  const layerTar = await tarOf([
    { name: '.boot/', type: 'directory', mode: 0o755 },
    { name: '.boot/kernel', type: 'file', mode: 0o755, body: kernelBytes },
    { name: 'hello.txt', type: 'file', mode: 0o644, body: Buffer.from('hello from the harness\n') },
    { name: 'urunc.json', type: 'file', mode: 0o644, body: Buffer.from(uruncJson) },
  ]);
  const layer = gzipSync(layerTar);
  const layerDiffId = `sha256:${sha256(layerTar)}`;
  const config: ImageConfig = {
    architecture: hostArchitecture(),
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config: { Labels: labels, Cmd: cmd },
    rootfs: { type: 'layers', diff_ids: [layerDiffId] },
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const manifestBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(configBytes)}`, size: configBytes.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha256(layer)}`, size: layer.length }],
      annotations: unikernelValues,
    }),
  );
  const indexBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${sha256(manifestBytes)}`,
          size: manifestBytes.length,
          annotations: {
            'io.containerd.image.name': 'docker.io/library/harness-test:1',
            'org.opencontainers.image.ref.name': '1',
          },
        },
      ],
    }),
  );
  const blobPath = (data: Buffer): string => `blobs/sha256/${sha256(data)}`;
  const dockerManifest = [{ Config: blobPath(configBytes), RepoTags: ['harness-test:1'], Layers: [blobPath(layer)] }];
  const repositories = { 'harness-test': { '1': sha256(layer) } };
  const archive = await tarOf([
    { name: 'blobs/', type: 'directory', mode: 0o755 },
    { name: 'blobs/sha256/', type: 'directory', mode: 0o755 },
    ...[configBytes, manifestBytes, layer].map((data) => ({ name: blobPath(data), type: 'file' as const, mode: 0o644, body: data })),
    { name: 'oci-layout', type: 'file', mode: 0o644, body: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', type: 'file', mode: 0o644, body: indexBytes },
    { name: 'manifest.json', type: 'file', mode: 0o644, body: Buffer.from(JSON.stringify(dockerManifest)) },
    { name: 'repositories', type: 'file', mode: 0o644, body: Buffer.from(JSON.stringify(repositories)) },
  ]);
  return {
    archive,
    layerDiffId,
    layerDigest: `sha256:${sha256(layer)}`,
    configDigest: `sha256:${sha256(configBytes)}`,
    manifestDigest: `sha256:${sha256(manifestBytes)}`,
  };
}

// Every consumer must show these files with these modes and contents.
function assertImageFiles(files: import('./harness.js').FileTree, consumer: string): void {
  const expected = ['/.boot', '/.boot/kernel', '/hello.txt', '/urunc.json'];
  assert.deepEqual(files.paths(), expected, `${consumer}: file list`);
  assert.equal(files.get('/.boot')?.type, 'directory', `${consumer}: /.boot type`);
  assert.equal(files.get('/.boot/kernel')?.mode, 0o755, `${consumer}: kernel mode`);
  assert.equal(files.get('/.boot/kernel')?.size, kernelBytes.length, `${consumer}: kernel size`);
  assert.equal(files.get('/.boot/kernel')?.sha256, sha256(kernelBytes), `${consumer}: kernel bytes`);
  assert.equal(files.get('/hello.txt')?.mode, 0o644, `${consumer}: hello mode`);
  assert.equal(files.readText('/hello.txt'), 'hello from the harness\n', `${consumer}: hello contents`);
  const urunc = files.readJson('/urunc.json') as Record<string, string>;
  assert.equal(Buffer.from(urunc['com.urunc.unikernel.hypervisor'] ?? '', 'base64').toString(), 'qemu', `${consumer}: urunc.json`);
}

// ---------------------------------------------------------------------------
// Pure helpers (no consumer needed)

describe('harness helpers', () => {
  test('normalizeImagePath makes every spelling absolute and clean', () => {
    assert.equal(normalizeImagePath('./a/b/'), '/a/b');
    assert.equal(normalizeImagePath('a//b'), '/a/b');
    assert.equal(normalizeImagePath('/'), '/');
    assert.equal(normalizeImagePath('./'), '/');
  });

  test('fileTreeFromTar lists entries with type, mode, size, digest and contents', async () => {
    const data = await tarOf([
      { name: './d/', type: 'directory', mode: 0o750 },
      { name: './d/f', type: 'file', mode: 0o600, body: Buffer.from('abc') },
    ]);
    const tree = await fileTreeFromTar(Readable.from([data]));
    assert.deepEqual(tree.paths(), ['/d', '/d/f']);
    assert.equal(tree.get('/d')?.mode, 0o750);
    assert.equal(tree.get('d/f')?.sha256, sha256(Buffer.from('abc')));
    assert.equal(tree.readText('/d/f'), 'abc');
    assert.throws(() => tree.read('/nope'), /not in the image/);
  });

  test('requireConsumers skips outside CI and fails under CI when a tool is missing', () => {
    const saved = { PATH: process.env.PATH, CI: process.env.CI };
    try {
      process.env.PATH = '/nonexistent-lapin-path';
      delete process.env.CI;
      const reason = requireConsumers(['skopeo']);
      assert.equal(typeof reason, 'string');
      assert.match(String(reason), /skopeo: missing skopeo/);
      process.env.CI = 'true';
      assert.throws(() => requireConsumers(['skopeo']), /CI must run every consumer test/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.CI === undefined) delete process.env.CI;
      else process.env.CI = saved.CI;
    }
  });
});

// ---------------------------------------------------------------------------
// The real consumers

describe('consumers load a hand-built archive', { skip: requireConsumers(['docker', 'ctr', 'podman', 'skopeo', 'umoci']) }, () => {
  let workDir = '';
  let archivePath = '';
  let built: BuiltImage;

  before(async () => {
    await startServices();
    workDir = await mkdtemp(join(tmpdir(), 'lapin-harness-test-'));
    built = await buildArchive();
    archivePath = join(workDir, 'harness-test.tar');
    await writeFile(archivePath, built.archive);
  });

  after(async () => {
    await cleanupAll();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  test('services.sh start again reuses the running daemons', async () => {
    const pidFile = join(servicesDir(), 'containerd', 'containerd.pid');
    const before = readFileSync(pidFile, 'utf8');
    const started = Date.now();
    await startServices();
    assert.ok(Date.now() - started < 10_000, 'a second start should be cheap');
    assert.equal(readFileSync(pidFile, 'utf8'), before, 'containerd was restarted');
  });

  test('docker load (20.10) reads manifest.json with gzip blobs', async () => {
    const loaded = await dockerLoad(archivePath);
    try {
      assert.deepEqual(loaded.names, ['harness-test:1']);
      const [image] = loaded.images;
      assert.ok(image);
      assert.equal(image.id, built.configDigest);
      assert.deepEqual(image.labels, labels);
      assert.deepEqual(image.cmd, cmd);
      assert.equal(image.entrypoint, null);
      assert.equal(image.architecture, hostArchitecture());
      assert.deepEqual(image.layers, [built.layerDiffId]);
      assertImageFiles(await loaded.files(), 'docker');
      const withInit = await loaded.files('harness-test:1', { keepInitLayer: true });
      assert.ok(withInit.has('/.dockerenv'), 'docker export shows its init layer');
    } finally {
      await loaded.cleanup();
    }
  });

  test('ctr import names the image from io.containerd.image.name and unpacks it', async () => {
    const imported = await ctrImport(archivePath);
    try {
      assert.deepEqual(imported.names, ['docker.io/library/harness-test:1']);
      const [image] = imported.images;
      assert.ok(image);
      assert.equal(image.targetDigest, built.manifestDigest);
      assert.equal(image.manifest.config.digest, built.configDigest);
      assert.deepEqual(image.manifestAnnotations, unikernelValues);
      assert.deepEqual(image.labels, labels);
      assert.deepEqual(image.config.config?.Cmd, cmd);
      // One layer: its chain ID is its diffID.
      assert.deepEqual(await imported.snapshots(), [built.layerDiffId]);
      assertImageFiles(await imported.files(), 'ctr');
    } finally {
      await imported.cleanup();
    }
  });

  test('ctr import --no-unpack keeps the content and unpacks nothing', async () => {
    const imported = await ctrImport(archivePath, { unpack: false });
    try {
      assert.deepEqual(imported.names, ['docker.io/library/harness-test:1']);
      const layer = await imported.content(built.layerDigest);
      assert.equal(`sha256:${sha256(layer)}`, built.layerDigest);
      assert.deepEqual(await imported.snapshots(), []);
      // ctr 1.6's `images mount` unpacks on demand.
      assertImageFiles(await imported.files(), 'ctr --no-unpack');
    } finally {
      await imported.cleanup();
    }
  });

  test('podman load takes the OCI name and keeps labels and annotations', async () => {
    const loaded = await podmanLoad(archivePath);
    try {
      assert.deepEqual(loaded.names, ['docker.io/library/harness-test:1']);
      assert.deepEqual(loaded.listed, ['docker.io/library/harness-test:1']);
      const [image] = loaded.images;
      assert.ok(image);
      assert.equal(image.digest, built.manifestDigest);
      assert.deepEqual(image.labels, labels);
      assert.deepEqual(image.annotations, unikernelValues);
      assert.deepEqual(image.cmd, cmd);
      assertImageFiles(await loaded.files(), 'podman');
    } finally {
      await loaded.cleanup();
    }
  });

  test('skopeo reads oci-archive with the ref.name tag or no tag, not the full name', async () => {
    for (const ref of [ociArchiveRef(archivePath, '1'), ociArchiveRef(archivePath)]) {
      const seen = await skopeoInspect(ref);
      assert.deepEqual(seen.annotations, unikernelValues, ref);
      assert.deepEqual(seen.labels, labels, ref);
      assert.deepEqual(seen.layers, [built.layerDigest], ref);
      assert.equal(seen.summary.Digest, built.manifestDigest, ref);
      assert.deepEqual(seen.config.config?.Cmd, cmd, ref);
      assert.deepEqual(seen.config.rootfs?.diff_ids, [built.layerDiffId], ref);
    }
    await assert.rejects(skopeoInspect(ociArchiveRef(archivePath, 'harness-test:1')), /no descriptor found/);
  });

  test('umoci unpacks the ref.name tag into a runtime bundle', async () => {
    const unpacked = await umociUnpack(archivePath, '1');
    try {
      assert.deepEqual(unpacked.args, cmd);
      for (const [key, value] of Object.entries(labels)) assert.equal(unpacked.annotations[key], value, key);
      assertImageFiles(unpacked.files, 'umoci');
    } finally {
      await unpacked.cleanup();
    }
    await assert.rejects(umociUnpack(archivePath, 'harness-test:1'), /umoci/);
  });
});
