import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { build } from '../../src/build.js';
import { BlobStore } from '../../src/image/blob-store.js';
import { pushImage } from '../../src/registry/push.js';
import { ownerTag } from '../../src/temporaries.js';
import { registrySkipReason, startProxy, startRegistry, type TestRegistry } from './harness.js';
import { EXAMPLE, assertNoStack, lapin } from './helpers.js';
import { layerEntries, readArchive } from '../helpers/archive.js';

const skip = registrySkipReason();
let work: string;
let registry: TestRegistry;
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-pull-'));
  if (!skip) registry = await startRegistry('anonymous');
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Pushes the seed example (kernel at /.boot/kernel, mirage on hvt) as a kernel image. */
async function pushKernelImage(name: string): Promise<string> {
  const result = await build({ context: EXAMPLE, file: path.join(EXAMPLE, 'bunnyfile'), tags: [name], outputs: [{ type: 'registry' }], labels: { 'org.example.origin': 'kernel-image' }, registry: noCredentials, cache: false });
  return result.digest;
}

interface ArchiveImage {
  manifest: { layers: Array<{ digest: string }>; annotations: Record<string, string> };
  config: { config: { Labels?: Record<string, string>; Env?: string[]; Cmd?: string[] } };
}

async function readImage(file: string): Promise<ArchiveImage & { files: Map<string, Buffer> }> {
  const archive = await readArchive(file);
  const index = JSON.parse(archive.text('index.json')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(archive.blob((index.manifests[0] as { digest: string }).digest).toString()) as ArchiveImage['manifest'] & {
    config: { digest: string };
    layers: Array<{ digest: string }>;
  };
  const config = JSON.parse(archive.blob(manifest.config.digest).toString()) as ArchiveImage['config'];
  const files = new Map<string, Buffer>();
  for (const layer of manifest.layers) {
    const data = archive.blob(layer.digest);
    for (const entry of layerEntries(data[0] === 0x1f ? gunzipSync(data) : data)) files.set(entry.name.replace(/\/$/, ''), entry.data);
  }
  return { manifest, config, files };
}

describe('pull what a build needs', { skip }, () => {
  test('a bunnyfile whose kernel comes from a pushed image: base layers kept, urunc values point at the kernel; a second build pulls nothing', async () => {
    const proxy = await startProxy(registry.host);
    const kernelImage = `${proxy.host}/kernels/mirage:1`;
    await pushKernelImage(kernelImage);
    const context = await mkdtemp(path.join(work, 'kernel-from-'));
    await writeFile(path.join(context, 'bunnyfile'), `version: v0.1\nplatforms:\n  framework: mirage\n  monitor: hvt\n  architecture: x86\nkernel:\n  from: ${kernelImage}\n  path: /.boot/kernel\ncmdline: "--ipv4=10.0.0.2/24"\n`);
    const cacheDir = path.join(context, 'cache');
    proxy.requests.length = 0;
    const out = path.join(context, 'image.tar');
    const result = await build({ context, tags: ['app/reuse:1'], outputs: [{ type: 'oci', dest: out }], registry: noCredentials, cacheDir });
    assert.ok(proxy.requests.some((q) => q.method === 'GET' && q.path.includes('/blobs/')), 'the first build pulled blobs');
    assert.equal(result.urunc.binary, '/.boot/kernel');
    const image = await readImage(out);
    assert.equal(image.manifest.annotations['com.urunc.unikernel.binary'], '/.boot/kernel');
    assert.equal(image.manifest.annotations['com.urunc.unikernel.cmdline'], '--ipv4=10.0.0.2/24');
    assert.equal(image.config.config.Labels?.['org.example.origin'], 'kernel-image', 'labels are inherited');
    assert.deepEqual(image.files.get('.boot/kernel'), await readFile(path.join(EXAMPLE, 'network.hvt')));
    const baseManifest = JSON.parse((await lapinSkopeoRaw(`${registry.host}/kernels/mirage:1`)).toString()) as { layers: Array<{ digest: string }> };
    assert.equal(image.manifest.layers[0]?.digest, baseManifest.layers[0]?.digest, 'the base kernel layer comes first, unchanged');

    // Temporaries a pull killed with SIGKILL left (a dead owner's pid, an old unowned name) are swept by the next pull.
    const [namespace] = ownerTag().split('-');
    const leftovers = [
      path.join(cacheDir, 'registry', 'blobs', 'sha256', `${'a'.repeat(64)}.tmp-${namespace}-4194300-77-0123456789ab`),
      path.join(cacheDir, 'registry', 'refs', `${'b'.repeat(64)}.tmp-${namespace}-4194300-77-0123456789ab`),
    ];
    for (const file of leftovers) await writeFile(file, 'partial');
    proxy.requests.length = 0;
    const again = await build({ context, tags: ['app/reuse:1'], outputs: [{ type: 'oci', dest: path.join(context, 'again.tar') }], registry: noCredentials, cacheDir });
    assert.equal(again.digest, result.digest);
    assert.deepEqual(proxy.requests, [], 'the second build made no request');
    for (const file of leftovers) await assert.rejects(readFile(file), { code: 'ENOENT' }, `${file} was not swept`);
    const never = await build({ context, tags: ['app/reuse:1'], outputs: [{ type: 'oci', dest: path.join(context, 'never.tar') }], registry: noCredentials, cacheDir, pull: 'never' });
    assert.equal(never.digest, result.digest);
    await proxy.stop();
  });

  test('a Containerfile FROM a pushed image inherits its config and adds files on top; COPY --from=IMAGE copies out of it', async () => {
    const base = `${registry.host}/kernels/base:1`;
    await pushKernelImage(base);
    const context = await mkdtemp(path.join(work, 'from-'));
    await writeFile(path.join(context, 'app.conf'), 'port=80\n');
    await writeFile(
      path.join(context, 'Containerfile'),
      `FROM ${base}\nCOPY app.conf /etc/app.conf\nCOPY --from=${base} /.boot/kernel /copied/kernel\nENV MODE=prod\nLABEL org.example.role=web\n`,
    );
    const out = path.join(context, 'image.tar');
    const result = await build({ context, tags: ['app/from:1'], outputs: [{ type: 'oci', dest: out }], registry: noCredentials, cacheDir: path.join(context, 'cache') });
    const image = await readImage(out);
    assert.equal(result.urunc.hypervisor, 'hvt', 'urunc values are inherited from the base');
    assert.equal(image.manifest.annotations['com.urunc.unikernel.binary'], '/.boot/kernel');
    assert.equal(image.config.config.Labels?.['org.example.origin'], 'kernel-image');
    assert.equal(image.config.config.Labels?.['org.example.role'], 'web');
    assert.ok(image.config.config.Env?.includes('MODE=prod'));
    assert.equal(image.files.get('etc/app.conf')?.toString(), 'port=80\n');
    assert.deepEqual(image.files.get('copied/kernel'), await readFile(path.join(EXAMPLE, 'network.hvt')));
    assert.ok(image.files.get('.boot/kernel'), 'the base kernel is in the image');
    // The base's layers were indexed while they downloaded (not extracted), and the index is kept for the next build.
    const { readdir } = await import('node:fs/promises');
    const kept = await readdir(path.join(context, 'cache', 'registry', 'index', 'sha256'));
    const layers = image.manifest.layers.map((l) => `${l.digest.slice(7)}.json`);
    assert.ok(kept.length > 0 && kept.every((name) => layers.includes(name)), `${kept.join(' ')} are indexes of ${layers.join(' ')}`);
  });

  test('a proxy that corrupts blobs: the pull refuses them and caches nothing', async () => {
    const name = `${registry.host}/kernels/corrupt:1`;
    await pushKernelImage(name);
    const proxy = await startProxy(registry.host, { corrupt: (request) => request.path.includes('/blobs/sha256:') });
    const context = await mkdtemp(path.join(work, 'corrupt-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${proxy.host}/kernels/corrupt:1\n`);
    const env = { XDG_CACHE_HOME: path.join(context, 'cache'), DOCKER_CONFIG: path.join(context, 'docker') };
    const failed = await lapin(['build', '-o', path.join(context, 'x.tar'), context], { env });
    assert.equal(failed.status, 1, failed.stderr);
    assert.match(failed.stderr, /does not match its digest .*refusing it/);
    assertNoStack(failed.stderr);
    await proxy.stop();
    const direct = await lapin(['build', '--pull=never', '-o', path.join(context, 'y.tar'), context], { env });
    assert.equal(direct.status, 1, direct.stderr);
    assert.match(direct.stderr, /not in the cache and --pull=never/);
  });

  test('a base image whose layer climbs out of the root with ".." is refused', async () => {
    const store = new BlobStore(path.join(work, 'hostile-blobs'));
    const pack = tar.pack();
    pack.entry({ name: '../../escape', size: 3, mode: 0o644 }, 'bad');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    const layerTar = Buffer.concat(chunks);
    const diffId = `sha256:${createHash('sha256').update(layerTar).digest('hex')}`;
    const layer = await store.putBytes(gzipSync(layerTar));
    const config = await store.putBytes(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } })));
    const layerDescriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer };
    const configDescriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', ...config };
    const manifest = await store.putBytes(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDescriptor, layers: [layerDescriptor] })));
    const name = `${registry.host}/hostile/base:1`;
    await pushImage({ store, manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }, blobs: [configDescriptor, layerDescriptor] }, [name], noCredentials);
    const context = await mkdtemp(path.join(work, 'hostile-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${name}\nLABEL com.urunc.unikernel.unikernelType=mirage\n`);
    await assert.rejects(
      build({ context, outputs: [{ type: 'oci', dest: path.join(context, 'x.tar') }], registry: noCredentials, cacheDir: path.join(context, 'cache') }),
      /climbs out of the root with "\.\."; refusing the image/,
    );
  });
});

async function lapinSkopeoRaw(reference: string): Promise<Buffer> {
  const { execFileSync } = await import('node:child_process');
  return execFileSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${reference}`]);
}
