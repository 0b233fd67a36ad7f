// A Containerfile with RUN goes to a real builder (buildah here): a hand-made
// busybox base image in a loopback docker-registry, RUN writes a file with
// busybox's sh, and lapin packages the builder's result as a Linux guest
// (urunit and kernel from stand-in images). Without a builder the error
// names the instruction and how to install one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build } from '../../src/build.js';
import { layerEntries, readArchive, type TarEntry } from '../helpers/archive.js';
import { pushStandIns, type StandIns } from '../helpers/existing-container.js';
import { fetchBootAssets, toolEnv } from '../helpers/guest-boot.js';
import { isCI } from '../consumers/harness.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';
import { assertNoStack, isolatedEnv, lapin } from '../registry/helpers.js';

function buildahSkip(): string | false {
  const registry = registrySkipReason();
  if (registry) return registry;
  if (spawnSync('sh', ['-c', 'command -v buildah'], { env: toolEnv, stdio: 'ignore' }).status === 0) return false;
  if (isCI()) throw new Error('CI must run the builder tests: buildah is missing (scripts/install-deps.sh installs it)');
  return 'missing buildah; run scripts/install-deps.sh';
}

const skip = buildahSkip();
let work: string;
let registry: TestRegistry;
let images: StandIns;
let base: string;
/** buildah with storage, registries and isolation of its own, so the test touches nothing of the machine's. */
let builderEnv: NodeJS.ProcessEnv;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin builder-'));
  if (skip) return;
  registry = await startRegistry('anonymous');
  const { busybox } = await fetchBootAssets();
  images = await pushStandIns(work, registry.host, 'builder', {
    extraAppFiles: [
      { name: 'bin/', type: 'directory' },
      { name: 'bin/busybox', body: await readFile(busybox), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
    ],
  });
  base = images.app;
  const storage = path.join(work, 'containers');
  await writeFile(path.join(work, 'storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = "${storage}/root"\nrunroot = "${storage}/run"\n`);
  await writeFile(path.join(work, 'registries.conf'), `[[registry]]\nlocation = "${registry.host}"\ninsecure = true\n`);
  await writeFile(path.join(work, 'no-auth.json'), '{}');
  builderEnv = {
    ...isolatedEnv(work),
    CONTAINERS_STORAGE_CONF: path.join(work, 'storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path.join(work, 'registries.conf'),
    BUILDAH_ISOLATION: 'chroot',
  };
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

async function imageFiles(archive: string): Promise<{ files: Map<string, TarEntry>; config: { config: { Entrypoint?: string[]; Cmd?: string[]; Labels?: Record<string, string> } }; annotations: Record<string, string> }> {
  const read = await readArchive(archive);
  const index = JSON.parse(read.text('index.json')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(read.blob((index.manifests[0] as { digest: string }).digest).toString()) as { config: { digest: string }; layers: Array<{ digest: string }>; annotations: Record<string, string> };
  const files = new Map<string, TarEntry>();
  for (const layer of manifest.layers) {
    const data = read.blob(layer.digest);
    for (const entry of layerEntries(data[0] === 0x1f ? gunzipSync(data) : data)) files.set(entry.name.replace(/^\.\//, '').replace(/\/$/, ''), entry);
  }
  return { files, config: JSON.parse(read.blob(manifest.config.digest).toString()) as { config: { Entrypoint?: string[]; Cmd?: string[] } }, annotations: manifest.annotations };
}

describe('RUN goes to a real builder', { skip, timeout: 300_000 }, () => {
  test('buildah runs the Dockerfile part (RUN with a --build-arg); lapin packages the result: the file is in the guest rootfs', async () => {
    const context = await mkdtemp(path.join(work, 'run-'));
    await writeFile(path.join(context, 'greeting'), 'hello from the context\n');
    await writeFile(path.join(context, 'Containerfile'), `FROM ${base}\nARG WHO=nobody\nCOPY greeting /etc/greeting\nRUN echo "made by RUN for $WHO" > /etc/made && cat /etc/greeting >> /etc/made\nLABEL org.example.built=by-buildah\n`);
    const archive = path.join(context, 'out.tar');
    const run = await lapin(['build', '--progress=plain', '--build-arg', 'WHO=lapin', '--kernel-image', images.kernel, '--init-image', images.init, '-o', `type=oci,dest=${archive}`, context], { env: builderEnv, cwd: os.tmpdir() });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /Containerfile:4:1: RUN needs execution: the Dockerfile part is built by buildah/);
    const { files, config, annotations } = await imageFiles(archive);
    assert.equal(files.get('etc/made')?.data.toString(), 'made by RUN for lapin\nhello from the context\n');
    assert.equal(files.get('urunit')?.data.toString(), images.urunit);
    assert.ok(files.get('.boot/kernel'));
    assert.deepEqual(config.config.Entrypoint, ['/urunit']);
    assert.deepEqual(config.config.Cmd, ['/usr/local/bin/app.sh', '--greet', 'hello']);
    assert.equal(config.config.Labels?.['org.example.built'], 'by-buildah');
    assert.equal(annotations['com.urunc.unikernel.unikernelType'], 'linux');
    assert.equal(annotations['com.urunc.unikernel.hypervisor'], 'qemu');
    assert.equal(annotations['com.urunc.unikernel.binary'], '/.boot/kernel');
    assert.equal(annotations['com.urunc.unikernel.mountRootfs'], 'true');
    const inspected = await lapin(['inspect', archive], { env: builderEnv });
    assert.equal(inspected.status, 0, inspected.stdout + inspected.stderr);
  });

  test('-f -: the text from stdin is what the builder builds (it was handed "<stdin>" as a path); its temporary copy is removed', async () => {
    const context = await mkdtemp(path.join(work, 'stdin-'));
    const tmp = await mkdtemp(path.join(work, 'stdin tmp '));
    const archive = path.join(context, 'out.tar');
    const text = `FROM ${base}\nRUN echo "from stdin" > /etc/made\n`;
    const run = await lapin(['build', '-f', '-', '--kernel-image', images.kernel, '--init-image', images.init, '-o', archive, context], { env: { ...builderEnv, TMPDIR: tmp }, cwd: os.tmpdir(), input: text });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stderr, /<stdin>:2:1: RUN needs execution: the Dockerfile part is built by buildah/);
    assert.equal((await imageFiles(archive)).files.get('etc/made')?.data.toString(), 'from stdin\n');
    assert.deepEqual((await readdir(tmp)).filter((name) => name.startsWith('lapin-')), []);
  });

  test('the library\'s target picks the stage the builder builds', async () => {
    const context = await mkdtemp(path.join(work, 'target-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${base} AS first\nRUN echo first > /etc/stage\nFROM ${base} AS second\nRUN echo second > /etc/stage\n`);
    const archive = path.join(context, 'out.tar');
    // The builder is a child process: it reads its storage and registry settings from the environment.
    const saved = { ...process.env };
    Object.assign(process.env, builderEnv);
    try {
      await build({ context, target: 'first', kernelImage: images.kernel, initImage: images.init, outputs: [{ type: 'oci', dest: archive }], registry: { credentials: async () => undefined }, cacheDir: path.join(work, 'cache') });
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
    assert.equal((await imageFiles(archive)).files.get('etc/stage')?.data.toString(), 'first\n');
  });

  test('a failing RUN fails the build in one line, naming buildah', async () => {
    const context = await mkdtemp(path.join(work, 'fail-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${base}\nRUN exit 3\n`);
    const run = await lapin(['build', '--builder', 'buildah', '-o', path.join(context, 'x.tar'), context], { env: builderEnv });
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /lapin: error: buildah bud failed \(exit \d+\)/);
    assertNoStack(run.stderr);
  });
});

describe('no builder on the machine', () => {
  test('the error names the instruction by file:line:col and how to install a builder', async () => {
    const context = await mkdtemp(path.join(work, 'none-'));
    await writeFile(path.join(context, 'Containerfile'), 'FROM scratch\nCOPY a /a\n  RUN make\n');
    const run = await lapin(['build', '-o', path.join(context, 'x.tar'), context], { env: { ...isolatedEnv(context), PATH: '/nonexistent' } });
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /^lapin: error: .*Containerfile:3:3: RUN needs a container builder to run it, and none of buildah, podman, docker is installed \(install one \(on Debian: apt-get install buildah/m);
    assertNoStack(run.stderr);
    const named = await lapin(['build', '--builder', 'podman', '-o', path.join(context, 'x.tar'), context], { env: { ...isolatedEnv(context), PATH: '/nonexistent' } });
    assert.match(named.stderr, /--builder podman is not installed/);
  });
});
