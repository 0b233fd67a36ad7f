// What the real consumers do with lapin's image index archive (amd64 +
// arm64, built by `lapin build --platform`): docker 20.10 loads the host
// platform's image through manifest.json; podman, ctr, skopeo and umoci read
// index.json (docs/multi-platform.md has the table these tests prove). Each
// check looks at the architecture of what the consumer took, so a
// manifest.json naming the wrong platform, or an index losing one, fails.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { createIndex } from '../../src/imagetools/create.js';
import { writePerPlatformContext } from '../helpers/hand-index.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';
import {
  cleanupAll,
  ConsumerCommandError,
  ctrImport,
  dockerLoad,
  hostArchitecture,
  podmanLoad,
  requireConsumers,
  servicesEnv,
  startServices,
  type FileTree,
} from './harness.js';

const run = promisify(execFile);
const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const HOST = hostArchitecture();
const OTHER = HOST === 'amd64' ? 'arm64' : 'amd64';
const NAME = `lapin-index-${process.pid}/multi`;
const FULL = `docker.io/${NAME}`;
/** e_machine of each platform's kernel, as the ELF header has it. */
const MACHINE: Record<string, number> = { amd64: 0x3e, arm64: 0xb7 };
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

let work: string;
let context: string;
/** The archive, built with one -t; `stderr` is what lapin printed. */
let archive: string;
let buildStderr: string;
let indexDigest: string;
/** Manifest and config digests per architecture, read from the archive's index. */
const images: Record<string, { manifest: string; config: string }> = {};

function lapin(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: options.cwd ?? work, env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

async function lapinOk(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const result = await lapin(args, options);
  assert.equal(result.status, 0, `lapin ${args.join(' ')}:\n${result.stderr}`);
  return result.stderr;
}

/** One member of a tar, as bytes. */
async function member(tarFile: string, name: string): Promise<Buffer> {
  const { stdout } = await run('tar', ['-xOf', tarFile, name], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

async function members(tarFile: string): Promise<string[]> {
  return (await run('tar', ['-tf', tarFile])).stdout.split('\n').filter((l) => l !== '');
}

let twoTagged: Promise<string> | undefined;
/** The archive's index under two tags, written by the writer lapin build uses (imagetools create's). */
function twoTags(): Promise<string> {
  twoTagged ??= (async () => {
    const two = join(work, 'two tags.tar');
    await createIndex({ tags: [`${NAME}:1`, `${NAME}:2`], sources: [`oci-archive:${archive}`], output: { type: 'oci', dest: two, tar: true } });
    return two;
  })();
  return twoTagged;
}

function elfMachine(files: FileTree): number | undefined {
  return files.read('/unikernel/app').readUInt16LE(18);
}

const platformSkip = HOST === 'amd64' || HOST === 'arm64' ? false : `this test has kernels for amd64 and arm64 hosts, not ${HOST}`;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin index archive '));
  context = join(work, 'context');
  await writePerPlatformContext(context);
  archive = join(work, 'multi.tar');
  buildStderr = await lapinOk(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', `${NAME}:1`, '-o', `type=oci,dest=${archive}`, context]);
  const top = JSON.parse((await member(archive, 'index.json')).toString('utf8')) as { manifests: Descriptor[] };
  indexDigest = (top.manifests[0] as Descriptor).digest;
  const index = JSON.parse((await member(archive, `blobs/sha256/${indexDigest.slice(7)}`)).toString('utf8')) as { manifests: Descriptor[] };
  for (const m of index.manifests) {
    const manifest = JSON.parse((await member(archive, `blobs/sha256/${m.digest.slice(7)}`)).toString('utf8')) as { config: Descriptor };
    images[m.platform?.architecture ?? ''] = { manifest: m.digest, config: manifest.config.digest };
  }
  if (requireConsumers(['ctr']) === false) await startServices();
});

after(async () => {
  await cleanupAll();
  await rm(work, { recursive: true, force: true });
});

describe('the index archive lapin writes', { skip: platformSkip }, () => {
  test('index.json names the index (amd64 + arm64); manifest.json lists the host platform only, under the tag', async () => {
    assert.deepEqual(Object.keys(images).sort(), ['amd64', 'arm64']);
    const top = JSON.parse((await member(archive, 'index.json')).toString('utf8')) as { mediaType: string; manifests: Descriptor[] };
    assert.equal(top.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(top.manifests.map((m) => [m.mediaType, m.annotations]), [
      ['application/vnd.oci.image.index.v1+json', { 'io.containerd.image.name': `${FULL}:1`, 'org.opencontainers.image.ref.name': '1' }],
    ]);
    const docker = JSON.parse((await member(archive, 'manifest.json')).toString('utf8')) as Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }>;
    assert.equal(docker.length, 1, 'one image: docker would move the tag to whichever entry came last');
    assert.equal(docker[0]?.Config, `blobs/sha256/${images[HOST]?.config.slice(7)}`);
    assert.deepEqual(docker[0]?.RepoTags, [`${FULL}:1`]);
    const hostManifest = JSON.parse((await member(archive, `blobs/sha256/${images[HOST]?.manifest.slice(7)}`)).toString('utf8')) as { layers: Descriptor[] };
    assert.deepEqual(docker[0]?.Layers, hostManifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`));
    assert.match(buildStderr, new RegExp(`docker load takes linux/${HOST} \\(this machine's platform\\) as ${FULL}:1: docker 20\\.10 reads no image index`));
  });

  test('reproducible: another cwd and TMPDIR, no SOURCE_DATE_EPOCH, the same bytes', async () => {
    const elsewhere = join(work, 'other cwd');
    const otherTmp = join(work, 'other tmp');
    await mkdir(elsewhere);
    await mkdir(otherTmp);
    const again = join(elsewhere, 'again.tar');
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: otherTmp };
    delete env.SOURCE_DATE_EPOCH;
    await lapinOk(['build', '--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', `${NAME}:1`, '-o', 'type=oci,dest=again.tar', context], { cwd: elsewhere, env });
    assert.equal(sha256(await readFile(again)), sha256(await readFile(archive)));
    // The writer alone, from the archive's own images: the same bytes again.
    const rewritten = join(elsewhere, 'rewritten.tar');
    await createIndex({ tags: [`${NAME}:1`], sources: [`oci-archive:${archive}`], output: { type: 'oci', dest: rewritten, tar: true } });
    assert.equal(sha256(await readFile(rewritten)), sha256(await readFile(archive)));
  });

  test('the layout directory (tar=false) has the same index.json and no manifest.json; skopeo reads it as oci:DIR', { skip: requireConsumers(['skopeo']) }, async () => {
    // The writer lapin build's tar=false output goes through, from the archive's images.
    const layout = join(work, 'multi layout');
    await createIndex({ tags: [`${NAME}:1`], sources: [`oci-archive:${archive}`], output: { type: 'oci', dest: layout, tar: false } });
    assert.deepEqual((await readdir(layout)).sort(), ['blobs', 'index.json', 'oci-layout']);
    assert.deepEqual(await readFile(join(layout, 'index.json')), await member(archive, 'index.json'));
    const raw = (await run('skopeo', ['inspect', '--raw', `oci:${layout}:1`])).stdout;
    assert.equal(sha256(Buffer.from(raw)), indexDigest);
    const copy = join(work, 'layout copy');
    await run('skopeo', ['copy', '--all', `oci:${layout}:1`, `oci:${copy}:c`]);
    const copied = JSON.parse(await readFile(join(copy, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    assert.equal(copied.manifests[0]?.digest, indexDigest);
  });
});

describe('docker load (20.10, no index support)', { skip: platformSkip || requireConsumers(['docker']) }, () => {
  test('the daemon is docker 20.10', async () => {
    const { stdout } = await run(servicesEnv().dockerBin, ['version', '--format', '{{.Server.Version}}'], { env: { ...process.env, DOCKER_HOST: servicesEnv().dockerHost } });
    assert.match(stdout.trim(), /^20\.10\./);
  });

  test('loads the host platform under the tag', async () => {
    const loaded = await dockerLoad(archive);
    try {
      assert.deepEqual(loaded.names, [`${NAME}:1`]);
      assert.deepEqual(loaded.ids, []);
      const [image] = loaded.images;
      assert.equal(image?.architecture, HOST);
      assert.equal(image?.id, images[HOST]?.config);
      assert.equal(elfMachine(await loaded.files()), MACHINE[HOST]);
    } finally {
      await loaded.cleanup();
    }
  });

  test('two -t: both tags name the host image', async () => {
    const loaded = await dockerLoad(await twoTags());
    try {
      assert.deepEqual(loaded.names, [`${NAME}:1`, `${NAME}:2`]);
      assert.deepEqual(loaded.images.map((i) => [i.architecture, i.id]), [
        [HOST, images[HOST]?.config],
        [HOST, images[HOST]?.config],
      ]);
    } finally {
      await loaded.cleanup();
    }
  });

  test('an index without the host platform has no manifest.json, and docker load fails', async () => {
    // A layout naming the other platform's image alone, then an index over it.
    const single = join(work, `only ${OTHER}`);
    await mkdir(single);
    await run('tar', ['-xf', archive, '-C', single]);
    const manifest = await readFile(join(single, 'blobs', 'sha256', (images[OTHER]?.manifest as string).slice(7)));
    await writeFile(join(single, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: images[OTHER]?.manifest, size: manifest.length }] }));
    await rm(join(single, 'manifest.json'), { force: true });
    const foreign = join(work, 'foreign index.tar');
    const steps: string[] = [];
    await createIndex({ tags: [`${NAME}:foreign`], sources: [`oci:${single}`], output: { type: 'oci', dest: foreign, tar: true }, onEvent: (e) => (e.kind === 'step' ? steps.push(e.message) : undefined) });
    assert.match(steps.join('\n'), new RegExp(`no linux/${HOST} image \\(this machine's platform\\), so no docker manifest\\.json: docker load of it fails`));
    assert.equal((await members(foreign)).includes('manifest.json'), false);
    await assert.rejects(dockerLoad(foreign), (error: unknown) => error instanceof ConsumerCommandError && error.exitCode === 1 && /blobs\/json: no such file or directory/.test(error.stderr));
    // Why none rather than an empty list: with `[]`, docker load loads nothing and exits 0.
    const emptyList = join(work, 'empty list');
    await mkdir(emptyList);
    await run('tar', ['-xf', foreign, '-C', emptyList]);
    await writeFile(join(emptyList, 'manifest.json'), '[]');
    await run('tar', ['-cf', join(work, 'empty list.tar'), '-C', emptyList, '.']);
    const docker = servicesEnv();
    const { stdout, stderr: loadErr } = await run(docker.dockerBin, ['load', '-i', join(work, 'empty list.tar')], { env: { ...process.env, DOCKER_HOST: docker.dockerHost } });
    assert.equal(`${stdout}${loadErr}`.trim(), '');
  });
});

describe('podman load (4.3)', { skip: platformSkip || requireConsumers(['podman']) }, () => {
  test('one tag: podman reads index.json and stores the host platform under the name; its digest is the index', async () => {
    const loaded = await podmanLoad(archive);
    try {
      assert.deepEqual(loaded.names, [`${FULL}:1`]);
      assert.deepEqual(loaded.listed, [`${FULL}:1`], 'one image stored');
      assert.equal(loaded.images[0]?.architecture, HOST);
      assert.equal(loaded.images[0]?.id, images[HOST]?.config.slice(7));
      assert.equal(loaded.images[0]?.digest, indexDigest);
      assert.equal(elfMachine(await loaded.files()), MACHINE[HOST]);
    } finally {
      await loaded.cleanup();
    }
  });

  test('two tags: index.json names two images, so podman falls back to manifest.json: the host platform under both', async () => {
    const loaded = await podmanLoad(await twoTags());
    try {
      assert.deepEqual(loaded.names.sort(), [`${FULL}:1`, `${FULL}:2`]);
      assert.deepEqual(loaded.images.map((i) => [i.architecture, i.id]), [
        [HOST, images[HOST]?.config.slice(7)],
        [HOST, images[HOST]?.config.slice(7)],
      ]);
    } finally {
      await loaded.cleanup();
    }
  });
  test('the name comes from io.containerd.image.name: without it podman would name the image localhost/TAG', async () => {
    const dir = join(work, 'podman no containerd name');
    await mkdir(dir);
    await run('tar', ['-xf', archive, '-C', dir]);
    const top = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    delete top.manifests[0]?.annotations?.['io.containerd.image.name'];
    await writeFile(join(dir, 'index.json'), JSON.stringify(top));
    const edited = join(work, 'podman no containerd name.tar');
    await run('tar', ['-cf', edited, '-C', dir, '.']);
    const loaded = await podmanLoad(edited);
    try {
      assert.deepEqual(loaded.names, ['localhost/1:latest']);
    } finally {
      await loaded.cleanup();
    }
  });

  test('no tag: the host platform, by its id', async () => {
    const untagged = join(work, 'untagged.tar');
    await createIndex({ tags: [], sources: [`oci-archive:${archive}`], output: { type: 'oci', dest: untagged, tar: true } });
    const loaded = await podmanLoad(untagged);
    try {
      assert.deepEqual(loaded.names, [images[HOST]?.config]);
      assert.equal(loaded.images[0]?.architecture, HOST);
    } finally {
      await loaded.cleanup();
    }
  });
});

describe('ctr images import (containerd 1.6)', { skip: platformSkip || requireConsumers(['ctr']) }, () => {
  test('without --all-platforms: the index under its name, the host platform content only', async () => {
    const imported = await ctrImport(archive);
    try {
      assert.deepEqual(imported.names, [`${FULL}:1`]);
      const image = imported.images[0];
      assert.equal(image?.targetDigest, indexDigest);
      assert.equal(image?.targetMediaType, 'application/vnd.oci.image.index.v1+json');
      assert.deepEqual(image?.index?.manifests.map((m) => m.platform?.architecture), ['amd64', 'arm64']);
      assert.equal(image?.config.architecture, HOST);
      assert.equal(elfMachine(await imported.files()), MACHINE[HOST]);
      // ctr import writes every blob of the archive, and containerd's garbage collector then drops what no kept
      // image refers to: on its own schedule (at most 2 % of the time by default), so wait for it.
      for (let waited = 0; waited < 30_000 && (await imported.content(images[OTHER]?.manifest as string).then(() => true, () => false)); waited += 250) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      await assert.rejects(imported.content(images[OTHER]?.manifest as string), ConsumerCommandError, `the ${OTHER} manifest is not in the content store`);
      await assert.rejects(imported.content(images[OTHER]?.config as string), ConsumerCommandError);
      const kernelLayer = (await member(archive, `blobs/sha256/${(images[OTHER]?.manifest as string).slice(7)}`)).toString('utf8');
      await assert.rejects(imported.content((JSON.parse(kernelLayer) as { layers: Descriptor[] }).layers[0]?.digest as string), ConsumerCommandError, `the ${OTHER} kernel layer is not there`);
    } finally {
      await imported.cleanup();
    }
  });

  test('--all-platforms: every platform content; each one mounts with its own kernel', async () => {
    const imported = await ctrImport(archive, { allPlatforms: true });
    try {
      assert.deepEqual(imported.names, [`${FULL}:1`]);
      assert.equal(imported.images[0]?.targetDigest, indexDigest);
      for (const arch of ['amd64', 'arm64']) {
        const manifest = JSON.parse((await imported.content(images[arch]?.manifest as string)).toString('utf8')) as { config: Descriptor };
        const config = JSON.parse((await imported.content(manifest.config.digest)).toString('utf8')) as { architecture: string };
        assert.equal(config.architecture, arch);
      }
    } finally {
      await imported.cleanup();
    }
    const other = await ctrImport(archive, { allPlatforms: true, platform: `linux/${OTHER}` });
    try {
      assert.equal(elfMachine(await other.files()), MACHINE[OTHER]);
    } finally {
      await other.cleanup();
    }
  });
});

describe('skopeo copy --all (1.9)', { skip: platformSkip || requireConsumers(['skopeo']) }, () => {
  test('oci-archive: to oci:DIR keeps the index digest and both manifests', async () => {
    const dir = join(work, 'skopeo copy');
    await run('skopeo', ['copy', '--all', `oci-archive:${archive}`, `oci:${dir}:copy`]);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    assert.deepEqual(index.manifests.map((m) => [m.digest, m.annotations?.['org.opencontainers.image.ref.name']]), [[indexDigest, 'copy']]);
    const blobs = (await readdir(join(dir, 'blobs', 'sha256'))).sort();
    const inArchive = (await members(archive)).filter((m) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(m)).map((m) => m.slice('blobs/sha256/'.length)).sort();
    assert.deepEqual(blobs, inArchive, 'every platform copied');
    for (const arch of ['amd64', 'arm64']) assert.ok(blobs.includes((images[arch]?.config as string).slice(7)), `${arch} config copied`);
  });

  test('two -t: oci-archive:X.tar needs :TAG', async () => {
    const two = await twoTags();
    await assert.rejects(run('skopeo', ['copy', '--all', `oci-archive:${two}`, `oci:${join(work, 'skopeo two')}:x`]), /more than one image in oci, choose an image/);
    await run('skopeo', ['copy', '--all', `oci-archive:${two}:2`, `oci:${join(work, 'skopeo two')}:x`]);
    const index = JSON.parse(await readFile(join(work, 'skopeo two', 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    assert.deepEqual(index.manifests.map((m) => m.digest), [indexDigest]);
  });

  test('without --all: the host platform only', async () => {
    const dir = join(work, 'skopeo copy host');
    await run('skopeo', ['copy', `oci-archive:${archive}`, `oci:${dir}:host`]);
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    assert.deepEqual(index.manifests.map((m) => m.digest), [images[HOST]?.manifest]);
  });

  describe('to a docker-registry', { skip: registrySkipReason() }, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry('anonymous');
    });
    after(async () => {
      await registry?.stop();
    });
    test('the registry serves the index digest under the tag', async () => {
      const ref = `docker://${registry.host}/${NAME}:1`;
      await run('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci-archive:${archive}`, ref]);
      const raw = (await run('skopeo', ['inspect', '--raw', '--tls-verify=false', ref])).stdout;
      assert.equal(sha256(Buffer.from(raw)), indexDigest);
      const arch = JSON.parse((await run('skopeo', ['inspect', '--tls-verify=false', '--override-arch', OTHER, ref])).stdout) as { Architecture: string; Digest: string };
      // Digest is the index's (skopeo's top level); the config read is the other platform's.
      assert.deepEqual([arch.Architecture, arch.Digest], [OTHER, indexDigest]);
    });
  });
});

describe('umoci (0.4.7)', { skip: platformSkip || requireConsumers(['umoci', 'skopeo']) }, () => {
  test('unpack --image LAYOUT:TAG of the index is refused as ambiguous', async () => {
    const layout = join(work, 'umoci layout');
    await mkdir(layout);
    await run('tar', ['-xf', archive, '-C', layout]);
    assert.equal((await run('umoci', ['ls', '--layout', layout])).stdout.trim(), '1');
    await assert.rejects(run('umoci', ['unpack', '--image', `${layout}:1`, join(work, 'umoci bundle')]), /tag is ambiguous: 1/);
  });

  test('after skopeo copy --override-arch picks one platform into a layout, umoci unpacks each', async () => {
    const layout = join(work, 'umoci per platform');
    for (const arch of ['amd64', 'arm64']) {
      await run('skopeo', ['copy', '--override-arch', arch, `oci-archive:${archive}:1`, `oci:${layout}:${arch}`]);
      const bundle = join(work, `umoci bundle ${arch}`);
      await run('umoci', ['unpack', '--image', `${layout}:${arch}`, bundle]);
      const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { annotations: Record<string, string> };
      assert.equal(config.annotations['org.opencontainers.image.architecture'], arch);
      assert.equal((await readFile(join(bundle, 'rootfs', 'unikernel', 'app'))).readUInt16LE(18), MACHINE[arch]);
    }
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
    assert.deepEqual(index.manifests.map((m) => m.digest), [images.amd64?.manifest, images.arm64?.manifest], 'manifests copied unchanged');
  });
});
