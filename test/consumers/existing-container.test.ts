// urunc's tutorial "existing container as a Linux microVM" with stand-in
// images in a real docker-registry: a bunnyfile with kernel AND rootfs from
// images (raw, block, initrd; includes from either image), checked in the
// archive, by `lapin inspect`, and by docker, ctr, podman, skopeo and umoci.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build, type BuildResult } from '../../src/build.js';
import { layerEntries, readArchive, type TarEntry } from '../helpers/archive.js';
import { APP_ENV, APP_SCRIPT, MODULES_DEP, pushStandIns, type StandIns } from '../helpers/existing-container.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';
import { isolatedEnv, lapin } from '../registry/helpers.js';
import { cleanupAll, ctrImport, dockerLoad, ociArchiveRef, podmanLoad, requireConsumers, skopeoInspect, startServices, umociUnpack, type FileTree } from './harness.js';

const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };
const skip = registrySkipReason();
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

let work: string;
let registry: TestRegistry;
let images: StandIns;

before(async () => {
  // A space in the path, as users have.
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin existing-'));
  if (skip) return;
  registry = await startRegistry('anonymous');
  images = await pushStandIns(work, registry.host, 'standin');
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** The tutorial's bunnyfile, with the stand-ins and a rootfs section of our choosing. */
function tutorialBunnyfile(rootfs: string): string {
  return `#syntax=harbor.nbfc.io/nubificus/bunny:latest
version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86
rootfs:
  from: ${images.app}
${rootfs}kernel:
  from: ${images.kernel}
  path: /kernel
cmdline: "/usr/local/bin/app.sh"
`;
}

interface Built {
  result: BuildResult;
  steps: string[];
  archive: string;
  manifest: { layers: Array<{ digest: string }>; annotations: Record<string, string> };
  config: { config: { Env?: string[]; Cmd?: string[]; Labels?: Record<string, string> } };
  files: Map<string, TarEntry>;
}

const built = new Map<string, Built>();

async function buildVariant(name: string, rootfs: string): Promise<Built> {
  const context = await mkdtemp(path.join(work, `${name}-`));
  await writeFile(path.join(context, 'bunnyfile'), tutorialBunnyfile(rootfs));
  const archive = path.join(context, 'image.tar');
  const steps: string[] = [];
  const result = await build({
    context,
    tags: [`lapin-test/existing-${name}:1`],
    outputs: [{ type: 'oci', dest: archive }],
    registry: noCredentials,
    cacheDir: path.join(work, 'cache'),
    onEvent: (e) => e.kind === 'step' && steps.push(e.message),
  });
  const read = await readArchive(archive);
  const index = JSON.parse(read.text('index.json')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(read.blob((index.manifests[0] as { digest: string }).digest).toString()) as Built['manifest'] & { config: { digest: string } };
  const config = JSON.parse(read.blob(manifest.config.digest).toString()) as Built['config'];
  const files = new Map<string, TarEntry>();
  for (const layer of manifest.layers) {
    const data = read.blob(layer.digest);
    for (const entry of layerEntries(data[0] === 0x1f ? gunzipSync(data) : data)) files.set(entry.name.replace(/^\.\//, '').replace(/\/$/, ''), entry);
  }
  const made = { result, steps, archive, manifest, config, files };
  built.set(name, made);
  return made;
}

const INCLUDES = (): string =>
  `  include:\n    - from: ${images.kernel}\n      source: /lib/modules/modules.dep\n      destination: /lib/modules/modules.dep\n    - from: ${images.app}\n      source: /etc/app.conf\n      destination: /etc/app.conf.copy\n`;

function appLayerDigests(): string[] {
  const manifest = JSON.parse((images.appBlobs.blobs.get(images.appBlobs.manifestDigest.slice(7)) as Buffer).toString()) as { layers: Array<{ digest: string }> };
  return manifest.layers.map((l) => l.digest);
}

/** Lists a cpio archive's paths with bsdcpio, and reads one file out of an ext image with debugfs. */
function cpioList(file: string): string[] {
  return execFileSync('bsdcpio', ['-it', '--quiet'], { input: execFileSync('cat', [file]) }).toString().split('\n').filter(Boolean);
}
function debugfsCat(file: string, inImage: string): string {
  return execFileSync('/usr/sbin/debugfs', ['-R', `cat ${inImage}`, file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}

describe('bunnyfile: kernel and rootfs both from images (urunc\'s tutorial)', { skip, timeout: 300_000 }, () => {
  test('type raw: the app image is the base, layers unchanged, config kept; the kernel copied to /.boot/kernel; includes from either image', async () => {
    const made = await buildVariant('raw', `  type: raw\n${INCLUDES()}`);
    const { result, manifest, config, files } = made;
    assert.equal(result.urunc.binary, '/.boot/kernel');
    assert.equal(result.urunc.mountRootfs, 'true');
    assert.equal(result.urunc.unikernelType, 'linux');
    assert.equal(result.urunc.cmdline, '/usr/local/bin/app.sh');
    assert.deepEqual(manifest.layers.slice(0, 2).map((l) => l.digest), appLayerDigests(), 'the app image\'s layers come first, unchanged');
    assert.ok(manifest.layers.length > 2);
    assert.deepEqual(config.config.Env, APP_ENV, 'Env inherited from the app image');
    assert.deepEqual(config.config.Cmd, ['/usr/local/bin/app.sh'], 'cmdline replaces Cmd, as in bunny');
    assert.equal(config.config.Labels?.['org.example.app'], 'stand-in');
    assert.equal(sha256(files.get('.boot/kernel')?.data ?? Buffer.alloc(0)), sha256(images.kernelBytes));
    assert.equal(files.get('kernel'), undefined, 'only the kernel file is copied out of the kernel image');
    assert.equal(files.get('lib/modules/modules.dep')?.data.toString(), MODULES_DEP);
    assert.equal(files.get('etc/app.conf.copy')?.data.toString(), 'mode=stand-in\n');
    assert.equal(files.get('usr/local/bin/app.sh')?.data.toString(), APP_SCRIPT);
  });

  test('type block: the app image flattened into an ext4 file with the includes, the kernel copied, the app\'s config kept', async () => {
    const made = await buildVariant('block', `  type: block\n${INCLUDES()}`);
    assert.equal(made.result.urunc.block, '/.boot/rootfs');
    assert.equal(made.result.urunc.blkMntPoint, '/');
    assert.equal(made.result.urunc.binary, '/.boot/kernel');
    assert.equal(made.result.urunc.mountRootfs, 'false');
    assert.deepEqual(made.config.config.Env, APP_ENV);
    assert.equal(sha256(made.files.get('.boot/kernel')?.data ?? Buffer.alloc(0)), sha256(images.kernelBytes));
    assert.equal(made.files.get('usr/local/bin/app.sh'), undefined, 'the app image is read into the file, not built on');
    const disk = path.join(work, 'block.ext4');
    await writeFile(disk, made.files.get('.boot/rootfs')?.data ?? Buffer.alloc(0));
    assert.equal(debugfsCat(disk, '/usr/local/bin/app.sh'), APP_SCRIPT);
    assert.equal(debugfsCat(disk, '/lib/modules/modules.dep'), MODULES_DEP);
    assert.equal(debugfsCat(disk, '/etc/app.conf.copy'), 'mode=stand-in\n');
  });

  test('type initrd: the app image flattened into a cpio with the includes, the kernel copied', async () => {
    const made = await buildVariant('initrd', `  type: initrd\n${INCLUDES()}`);
    assert.equal(made.result.urunc.initrd, '/.boot/rootfs');
    assert.equal(made.result.urunc.binary, '/.boot/kernel');
    assert.deepEqual(made.config.config.Cmd, ['/usr/local/bin/app.sh']);
    assert.deepEqual(made.config.config.Env, APP_ENV);
    const initrd = path.join(work, 'rootfs.cpio');
    await writeFile(initrd, made.files.get('.boot/rootfs')?.data ?? Buffer.alloc(0));
    const listed = cpioList(initrd);
    for (const wanted of ['usr/local/bin/app.sh', 'etc/os-release', 'etc/app.conf', 'etc/app.conf.copy', 'lib/modules/modules.dep']) {
      assert.ok(listed.includes(wanted), `${wanted} in the initrd: ${listed.join(' ')}`);
    }
  });

  test('lapin inspect: each variant is one urunc can run', async () => {
    for (const name of ['raw', 'block', 'initrd']) {
      const made = built.get(name);
      assert.ok(made, `${name} was built`);
      const env = isolatedEnv(await mkdtemp(path.join(work, 'inspect-')));
      const human = await lapin(['inspect', `oci-archive:${made.archive}`], { env });
      assert.equal(human.status, 0, `${name}: ${human.stdout}${human.stderr}`);
      const json = JSON.parse((await lapin(['inspect', '--json', made.archive], { env })).stdout) as { errors: unknown[]; urunc?: unknown };
      assert.deepEqual(json.errors, [], name);
    }
  });
});

describe('Containerfile with no urunc labels: a Linux guest with urunit and a kernel from images (bunny 0.0.5)', { skip, timeout: 300_000 }, () => {
  test('lapin build --kernel-image --init-image: the app image is the base, /urunit first in Entrypoint, the kernel at /.boot/kernel; the build names the images', async () => {
    const context = await mkdtemp(path.join(work, 'containerfile-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${images.app}\nENV EXTRA=1\n`);
    const archive = path.join(context, 'app.tar');
    const env = isolatedEnv(context);
    const run = await lapin(['build', '--progress=plain', '--kernel-image', images.kernel, '--init-image', images.init, '-t', 'lapin-test/existing-containerfile:1', '-o', `type=oci,dest=${archive}`, context], { env, cwd: os.tmpdir() });
    assert.equal(run.status, 0, run.stderr);
    assert.ok(run.stderr.includes(`Linux guest: init /urunit from ${images.init} (--init-image)`), run.stderr);
    assert.ok(run.stderr.includes(`Linux guest: kernel /.boot/kernel from ${images.kernel} (--kernel-image)`), run.stderr);
    assert.ok(run.stderr.includes(`pulling ${images.kernel} (sha256:`), run.stderr);
    const read = await readArchive(archive);
    const index = JSON.parse(read.text('index.json')) as { manifests: Array<{ digest: string }> };
    const manifest = JSON.parse(read.blob((index.manifests[0] as { digest: string }).digest).toString()) as Built['manifest'] & { config: { digest: string } };
    const config = JSON.parse(read.blob(manifest.config.digest).toString()) as { config: { Entrypoint?: string[]; Cmd?: string[]; Env?: string[] } };
    assert.deepEqual(manifest.layers.slice(0, 2).map((l) => l.digest), appLayerDigests(), 'the app image\'s layers come first, unchanged');
    assert.deepEqual(config.config.Entrypoint, ['/urunit']);
    assert.deepEqual(config.config.Cmd, ['/usr/local/bin/app.sh', '--greet', 'hello']);
    assert.deepEqual(config.config.Env, [...APP_ENV, 'EXTRA=1']);
    const annotations = manifest.annotations;
    assert.equal(annotations['com.urunc.unikernel.unikernelType'], 'linux');
    assert.equal(annotations['com.urunc.unikernel.hypervisor'], 'qemu');
    assert.equal(annotations['com.urunc.unikernel.binary'], '/.boot/kernel');
    assert.equal(annotations['com.urunc.unikernel.mountRootfs'], 'true');
    assert.equal(annotations['com.urunc.unikernel.cmdline'], '/urunit /usr/local/bin/app.sh --greet hello');
    const files = new Map<string, TarEntry>();
    for (const layer of manifest.layers) {
      const data = read.blob(layer.digest);
      for (const entry of layerEntries(data[0] === 0x1f ? gunzipSync(data) : data)) files.set(entry.name.replace(/^\.\//, ''), entry);
    }
    assert.equal(files.get('urunit')?.data.toString(), images.urunit);
    assert.equal((files.get('urunit')?.mode ?? 0) & 0o777, 0o755);
    assert.equal(sha256(files.get('.boot/kernel')?.data ?? Buffer.alloc(0)), sha256(images.kernelBytes));
    const inspected = await lapin(['inspect', archive], { env });
    assert.equal(inspected.status, 0, inspected.stdout + inspected.stderr);
    // For the consumers below: what they must see of this image.
    const urunc = Object.fromEntries(Object.entries(annotations).filter(([k]) => k.startsWith('com.urunc.unikernel.')).map(([k, v]) => [k.slice('com.urunc.unikernel.'.length), v]));
    const digest = (index.manifests[0] as { digest: string }).digest;
    built.set('containerfile', { result: { urunc, digest } as BuildResult, steps: [], archive, manifest, config: config as Built['config'], files });
  });

  test('labels name the images; LABEL bunny.urunit=false leaves the init out', async () => {
    const context = await mkdtemp(path.join(work, 'labels-'));
    await writeFile(path.join(context, 'Containerfile'), `FROM ${images.app}\nLABEL bunny.urunit=false lapin.kernel-image=${images.kernel}\n`);
    const steps: string[] = [];
    const result = await build({ context, outputs: [{ type: 'oci', dest: path.join(context, 'out.tar') }], registry: noCredentials, cacheDir: path.join(work, 'cache'), onEvent: (e) => e.kind === 'step' && steps.push(e.message) });
    assert.equal(result.urunc.binary, '/.boot/kernel');
    assert.equal(result.urunc.cmdline, '/usr/local/bin/app.sh --greet hello', 'no /urunit in the args');
    assert.ok(steps.some((s) => s === `Linux guest: kernel /.boot/kernel from ${images.kernel} (label lapin.kernel-image)`), steps.join('\n'));
    assert.ok(!steps.some((s) => s.startsWith('Linux guest: init ')));
  });

  test('the defaults stay bunny\'s: with --pull=never the build names harbor.nbfc.io/nubificus/urunit:latest', async () => {
    const context = await mkdtemp(path.join(work, 'defaults-'));
    await writeFile(path.join(context, 'Containerfile'), 'FROM scratch\nCMD ["/app"]\n');
    const run = await lapin(['build', '--pull=never', '-o', path.join(context, 'x.tar'), context], { env: isolatedEnv(context) });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /harbor\.nbfc\.io\/nubificus\/urunit:latest is not in the cache/);
    assert.match(run.stderr, /Linux guest: kernel \/\.boot\/kernel from harbor\.nbfc\.io\/nubificus\/bunny\/linux-kernel-qemu:latest \(default\)/);
    // One level of parentheses: the hint had "(or LABEL ...)" inside the CLI's own.
    assert.match(run.stderr, /\(.*other images: --kernel-image, --init-image, or LABEL lapin\.kernel-image, lapin\.init-image, bunny\.urunit=false\)$/m);
  });
});

describe('the images load in every consumer', { skip: skip || requireConsumers(['docker', 'ctr', 'podman', 'skopeo', 'umoci']), timeout: 600_000 }, () => {
  before(async () => {
    await startServices();
  });
  after(async () => {
    await cleanupAll();
  });

  function assertGuestFiles(files: FileTree, name: string, consumer: string): void {
    assert.equal(files.get('/.boot/kernel')?.sha256, sha256(images.kernelBytes), `${consumer} ${name}: kernel`);
    const encoded = files.readJson('/urunc.json') as Record<string, string>;
    const binary = Buffer.from(encoded['com.urunc.unikernel.binary'] ?? '', 'base64').toString();
    assert.equal(binary, '/.boot/kernel', `${consumer} ${name}: urunc.json binary`);
    if (name === 'containerfile') assert.equal(files.get('/urunit')?.mode, 0o755, `${consumer} ${name}: urunit`);
    if (name === 'raw' || name === 'containerfile') assert.equal(files.get('/usr/local/bin/app.sh')?.mode, 0o755, `${consumer} ${name}: the app's files`);
    else assert.ok(files.get('/.boot/rootfs'), `${consumer} ${name}: the rootfs file`);
  }

  for (const name of ['raw', 'block', 'initrd', 'containerfile']) {
    test(`${name}: docker load, ctr import, podman load, skopeo, umoci unpack`, async () => {
      const made = built.get(name);
      assert.ok(made, `${name} was built by the tests above`);
      const labels = (values: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(values).filter(([k]) => k.startsWith('com.urunc.unikernel.')));
      const expected = Object.fromEntries(Object.entries(made.result.urunc).map(([k, v]) => [`com.urunc.unikernel.${k}`, v]));

      const loaded = await dockerLoad(made.archive);
      try {
        const image = loaded.images[0];
        assert.ok(image);
        assert.deepEqual(labels(image.labels), expected);
        assert.deepEqual(image.env, made.config.config.Env);
        assertGuestFiles(await loaded.files(loaded.names[0]), name, 'docker');
      } finally {
        await loaded.cleanup();
      }

      const imported = await ctrImport(made.archive);
      try {
        const image = imported.images[0];
        assert.ok(image);
        assert.equal(image.targetDigest, made.result.digest);
        assert.deepEqual(labels(image.manifestAnnotations), expected);
        assertGuestFiles(await imported.files(imported.names[0]), name, 'ctr');
      } finally {
        await imported.cleanup();
      }

      const podman = await podmanLoad(made.archive);
      try {
        const image = podman.images[0];
        assert.ok(image);
        assert.deepEqual(labels(image.labels), expected);
        assertGuestFiles(await podman.files(podman.listed[0]), name, 'podman');
      } finally {
        await podman.cleanup();
      }

      const seen = await skopeoInspect(ociArchiveRef(made.archive, '1'));
      assert.equal(seen.summary.Digest, made.result.digest);
      assert.deepEqual(labels(seen.annotations), expected);

      const unpacked = await umociUnpack(made.archive, '1');
      try {
        assertGuestFiles(unpacked.files, name, 'umoci');
        assert.deepEqual(unpacked.args, [...((made.config.config as { Entrypoint?: string[] }).Entrypoint ?? []), ...(made.config.config.Cmd ?? [])]);
      } finally {
        await unpacked.cleanup();
      }
    });
  }
});
