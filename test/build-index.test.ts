// The index as a build result (issue 13): `build({ platforms })` and
// `lapin build --platform A,B` go through the one pipeline, whose sinks take
// an index: --load loads this machine's platform; `--platform P --push
// --strategy merge|abort|overwrite` adds to, refuses or replaces the index at
// the name, as kraft does; the kernel check runs inside the platform's stage.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../src/build.js';
import { inspectAny, type IndexInspectReport } from '../src/inspect/index-report.js';
import { dockerInspect, requireConsumers, servicesDir, servicesEnv, startServices } from './consumers/harness.js';
import { makeRecordingRuntime, RECORDED_MARKER, recordingsAt } from './consumers/engines-harness.js';
import { runProgram, type ProgramResult } from './helpers/fixtures.js';
import { PER_PLATFORM_CONTAINERFILE, fakeElf, writePerPlatformContext } from './helpers/hand-index.js';
import { registrySkipReason, startRegistry, type TestRegistry } from './registry/harness.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const unique = randomBytes(4).toString('hex');
let work: string;
let context: string;

const lapin = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, ...args], { cwd: work, env });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin build index '));
  context = join(work, 'context');
  await writePerPlatformContext(context);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('the index through the build pipeline', () => {
  test('build({ platforms }) returns the index and each platform; the shared layer is stored once; no -o writes NAME-TAG.tar', async () => {
    const cwd = join(work, 'api');
    await mkdir(cwd);
    const result = await build({ context, cwd, tags: ['lapin-test/api:2'], platforms: ['linux/amd64', 'linux/arm64'], sourceDateEpoch: 0 });
    assert.deepEqual(result.platforms, ['linux/amd64', 'linux/arm64']);
    assert.equal(result.index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(result.builds.map((b) => b.platform.architecture), ['amd64', 'arm64']);
    assert.deepEqual(await readdir(cwd), ['api-2.tar']);
    const report = (await inspectAny(join(cwd, 'api-2.tar'))) as IndexInspectReport;
    assert.equal(report.index.digest, result.digest);
    assert.deepEqual(report.platforms.map((p) => p.manifestDigest), result.builds.map((b) => b.digest));
    // The /etc/shared.txt layer has one digest in both manifests, and the archive holds it once.
    const listing = await new Promise<string>((done, fail) => execFile('tar', ['-tf', join(cwd, 'api-2.tar')], (error, out) => (error ? fail(error) : done(out))));
    const blobs = listing.split('\n').filter((l) => /^blobs\/sha256\/./.test(l));
    assert.equal(new Set(blobs).size, blobs.length);
  });

  test('the kernel check stops the arm64 platform before its layers are written', async () => {
    const single = join(work, 'one-kernel');
    await mkdir(single);
    await writeFile(join(single, 'Containerfile'), PER_PLATFORM_CONTAINERFILE.replace('app-${TARGETARCH}', 'app-amd64'));
    await writeFile(join(single, 'app-amd64'), fakeElf('x86-64'));
    await writeFile(join(single, 'shared.txt'), 'x\n');
    const result = await lapin(['build', '--progress', 'plain', '--platform', 'linux/arm64,linux/amd64', '-o', `type=oci,dest=${join(work, 'never.tar')}`, single]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /^lapin: error: one-kernel\/Containerfile:5:7: --platform linux\/arm64: the kernel \/unikernel\/app is built for amd64, not arm64/m);
    const afterStart = result.stderr.slice(result.stderr.indexOf('building linux/arm64'));
    assert.doesNotMatch(afterStart, /layer (kernel|files|urunc metadata):/);
    assert.doesNotMatch(result.stderr, /building linux\/amd64/);
  });

  test('outputs that take one image refuse an index (exit 2), before any work; --strategy needs --push', async () => {
    for (const [args, pattern] of [
      [['-o', `type=local,dest=${join(work, 'rootfs')}`], /--output type=local takes one platform/],
      [['-o', `type=docker,dest=${join(work, 'd.tar')}`], /--output type=docker takes one platform/],
      [['-o', 'type=oci,dest=-'], /--output type=oci,dest=- takes one platform/],
      [['-o', `type=oci,dest=${join(work, 's.tar')}`, '--strategy', 'merge'], /--strategy says what to do with the index already at the -t name in a registry/],
      [['--strategy', 'merge', '-t', 'x/y:1', '--push'], /--strategy builds an image index: it needs --platform/],
    ] as const) {
      const platform = (args as readonly string[]).includes('--push') ? [] : ['--platform', 'linux/amd64,linux/arm64'];
      const result = await lapin(['build', ...platform, ...args, context]);
      assert.equal(result.status, 2, result.stderr);
      assert.match(result.stderr, new RegExp(`^lapin: error: ${pattern.source}`, 'm'));
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    }
  });

  test("--load of an index without this machine's platform: exit 2, one line, before any layer, nothing written or pushed", async () => {
    const other = process.arch === 'arm64' ? 'linux/amd64' : 'linux/arm64';
    const host = process.arch === 'arm64' ? 'linux/arm64' : 'linux/amd64';
    const dest = join(work, 'no host.tar');
    // Port 9 (discard) has no registry: a push would fail with exit 1, not 2.
    for (const load of ['--load', '--load=containerd']) {
      const result = await lapin(['build', '--progress', 'plain', '--platform', other, '--strategy', 'merge', '-t', '127.0.0.1:9/lapin-test/no-host:1', '--push', load, '-o', `type=oci,dest=${dest}`, context]);
      assert.equal(result.status, 2, result.stderr);
      const engine = load === '--load' ? 'docker' : 'containerd';
      assert.match(result.stderr, new RegExp(`^lapin: error: --load \\(${engine}\\) loads this machine's platform \\(${host}\\), which the build does not make \\(${other}\\) \\(add ${host} to --platform, or push the index instead\\)$`, 'm'));
      assert.equal(result.stderr.split('\n').filter((l) => l.startsWith('lapin:')).length, 1, result.stderr);
      assert.doesNotMatch(result.stderr, /layer |pushed|wrote/);
      assert.equal((await readdir(work)).includes('no host.tar'), false);
    }
  });

  describe('--load of an index', { skip: requireConsumers(['docker', 'ctr']) }, () => {
    before(async () => {
      await startServices();
    });
    /** The host platform's manifest and config digests in the index archive built beside --load. */
    async function hostEntry(archive: string, host: string): Promise<{ manifest: string; config: string; diffIds: string[] }> {
      const report = (await inspectAny(archive)) as IndexInspectReport;
      const entry = report.platforms.find((p) => p.platform === `linux/${host}`);
      assert.ok(entry, `the index has linux/${host}`);
      const blob = async (digest: string): Promise<Buffer> => {
        const out = await new Promise<Buffer>((done, fail) => execFile('tar', ['-xOf', archive, `blobs/sha256/${digest.slice(7)}`], { encoding: 'buffer', maxBuffer: 1 << 24 }, (error, stdout) => (error ? fail(error) : done(stdout))));
        return out;
      };
      const manifest = JSON.parse((await blob(entry.manifestDigest)).toString()) as { config: { digest: string } };
      const config = JSON.parse((await blob(manifest.config.digest)).toString()) as { architecture: string; rootfs: { diff_ids: string[] } };
      assert.equal(config.architecture, host);
      return { manifest: entry.manifestDigest, config: manifest.config.digest, diffIds: config.rootfs.diff_ids };
    }

    test("docker gets this machine's platform under the tag (its config digest, its kernel), and it runs through the recording runtime", async () => {
      const name = `lapin-test/index-load:${unique}`;
      const env = { DOCKER_HOST: servicesEnv().dockerHost };
      const docker = (...args: string[]): Promise<ProgramResult> => runProgram(servicesEnv().dockerBin, args, { env });
      const host = process.arch === 'arm64' ? 'arm64' : 'amd64';
      const archive = join(work, 'load docker.tar');
      const container = `lapin-index-load-${unique}`;
      try {
        const result = await lapin(['build', '--progress', 'plain', '--platform', 'linux/arm64,linux/amd64', '-t', name, '-o', `type=oci,dest=${archive}`, '--load', context], env);
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stderr, new RegExp(`--load \\(docker\\): loading linux/${host}, this machine's platform, of the 2 built`));
        assert.match(result.stderr, new RegExp(`loaded into docker as ${name.replace(/[/.]/g, '\\$&')}`));
        const image = await dockerInspect(name);
        assert.equal(image.architecture, host);
        // The image docker holds is the index's host entry: same config (docker's id), same layers.
        const entry = await hostEntry(archive, host);
        assert.equal(image.id, entry.config);
        assert.deepEqual(image.layers, entry.diffIds);
        // Its kernel is the host's, byte for byte (docker create runs nothing; docker cp reads the rootfs).
        assert.equal((await docker('create', '--name', `${container}-cp`, name)).status, 0);
        const copied = join(work, 'loaded kernel');
        const cp = await docker('cp', `${container}-cp:/unikernel/app`, copied);
        assert.equal(cp.status, 0, cp.stderr);
        assert.deepEqual(await readFile(copied), fakeElf(host === 'amd64' ? 'x86-64' : 'aarch64'));
        // docker run --runtime with the recording runtime in urunc's place (scripts/services.sh registers it).
        const run = await docker('run', '--runtime', 'lapin-recording', '--name', container, name);
        assert.notEqual(run.status, 0);
        assert.match(run.stderr + run.stdout, new RegExp(RECORDED_MARKER));
        const id = (await docker('inspect', '--format', '{{.Id}}', container)).stdout.trim();
        const runtimeDir = join(servicesDir(), 'recording-runtime');
        const recording = await recordingsAt(join(runtimeDir, 'runtime'), join(runtimeDir, 'recordings')).read(id);
        assert.deepEqual(recording.spec.process?.args, ['app']);
        // docker adds /.dockerenv, /etc/hosts and the like; the image's files are all there.
        const files = recording.rootfs.filter((e) => e.type === 'f').map((e) => e.path);
        for (const file of ['/etc/shared.txt', '/unikernel/app', '/urunc.json']) assert.ok(files.includes(file), `${file} in ${files.join(' ')}`);
        assert.equal(JSON.parse(recording.uruncJson ?? '{}')['com.urunc.unikernel.binary'], Buffer.from('/unikernel/app').toString('base64'));
        await rm(join(runtimeDir, 'recordings', id), { recursive: true, force: true });
      } finally {
        await docker('rm', '-f', container, `${container}-cp`);
        await docker('rmi', name);
      }
    });

    test("containerd gets this machine's platform's manifest under the tag, not the index, and ctr run hands it to the runtime", async () => {
      const { containerdAddress, snapshotter } = servicesEnv();
      const namespace = `lapin-index-load-${unique}`;
      const name = `docker.io/lapin-test/index-load:${unique}`;
      const host = process.arch === 'arm64' ? 'arm64' : 'amd64';
      const archive = join(work, 'load containerd.tar');
      const ctr = (...args: string[]): Promise<string> =>
        new Promise((done, fail) => execFile('ctr', ['--address', containerdAddress, '--namespace', namespace, ...args], (error, stdout) => (error ? fail(error) : done(stdout))));
      const runtime = await makeRecordingRuntime(work);
      const id = `index-load-${unique}`;
      try {
        const result = await lapin(['build', '--progress', 'plain', '--platform', 'linux/arm64,linux/amd64', '-t', name, '-o', `type=oci,dest=${archive}`, `--load=containerd,namespace=${namespace},address=${containerdAddress},snapshotter=${snapshotter}`, context]);
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stderr, new RegExp(`--load \\(containerd\\): loading linux/${host}, this machine's platform, of the 2 built`));
        const row = (await ctr('images', 'ls')).split('\n').find((line) => line.startsWith(`${name} `));
        assert.ok(row, `${name} is not in namespace ${namespace}`);
        assert.match(row, /application\/vnd\.oci\.image\.manifest\.v1\+json/);
        assert.match(row, new RegExp(`linux/${host}`));
        assert.doesNotMatch(row, /linux\/(amd64|arm64),linux/);
        // The manifest is the index's host entry.
        const entry = await hostEntry(archive, host);
        assert.ok(row.includes(entry.manifest), `${row} names ${entry.manifest}`);
        const run = await runProgram('ctr', ['--address', containerdAddress, '--namespace', namespace, 'run', '--runc-binary', runtime.bin, '--runc-root', join(work, 'runc root'), '--snapshotter', snapshotter, name, id]);
        assert.notEqual(run.status, 0);
        assert.match(run.stderr + run.stdout, new RegExp(RECORDED_MARKER));
        const recording = await runtime.read(id);
        assert.deepEqual(recording.spec.process?.args, ['app']);
        assert.deepEqual(recording.rootfs.filter((e) => e.type === 'f').map((e) => e.path).sort(), ['/etc/shared.txt', '/unikernel/app', '/urunc.json']);
        assert.equal(recording.rootfs.find((e) => e.path === '/unikernel/app')?.size, fakeElf(host === 'amd64' ? 'x86-64' : 'aarch64').length);
      } finally {
        await ctr('containers', 'rm', id).catch(() => undefined);
        await ctr('images', 'rm', name).catch(() => undefined);
        await runProgram('ctr', ['--address', containerdAddress, 'namespaces', 'rm', namespace]);
      }
    });
  });

  describe('--push --strategy', { skip: registrySkipReason() }, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry('anonymous');
    });
    after(async () => {
      await registry?.stop();
    });

    async function indexAt(name: string): Promise<{ digest: string; architectures: string[] }> {
      const [host, ...rest] = name.split('/');
      const [repo, tag] = rest.join('/').split(':') as [string, string];
      const response = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
      assert.equal(response.status, 200);
      const bytes = Buffer.from(await response.arrayBuffer());
      const document = JSON.parse(bytes.toString()) as { mediaType: string; manifests: Array<{ platform: { architecture: string } }> };
      assert.equal(document.mediaType, 'application/vnd.oci.image.index.v1+json');
      return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, architectures: document.manifests.map((m) => m.platform.architecture) };
    }

    test('merge adds a platform and keeps the others; abort refuses a platform that is there; overwrite replaces the index', async () => {
      const name = `${registry.host}/kraft/merged:1`;
      const meta = join(work, 'merge-meta.json');
      const arm = await lapin(['build', '--platform', 'linux/arm64', '-t', name, '--push', '--strategy', 'merge', '--insecure-registry', registry.host, context]);
      assert.equal(arm.status, 0, arm.stderr);
      assert.deepEqual((await indexAt(name)).architectures, ['arm64']);
      const amd = await lapin(['build', '--platform', 'linux/amd64', '-t', name, '--push', '--strategy', 'merge', '--metadata-file', meta, '--insecure-registry', registry.host, context]);
      assert.equal(amd.status, 0, amd.stderr);
      const merged = await indexAt(name);
      assert.deepEqual(merged.architectures, ['arm64', 'amd64']);
      // --metadata-file has the merged index pushed, as buildx writes an index's digest.
      const written = JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>;
      assert.equal(written['containerimage.digest'], merged.digest);
      assert.deepEqual(written['containerimage.descriptor'], { mediaType: 'application/vnd.oci.image.index.v1+json', digest: merged.digest, size: (written['containerimage.descriptor'] as { size: number }).size });
      assert.equal(written['image.name'], name);
      assert.equal(written['containerimage.config.digest'], undefined);

      // Another arm64 image (a new label): abort stops before pushing, and the index stays.
      const abort = await lapin(['build', '--platform', 'linux/arm64', '--label', 'changed=yes', '-t', name, '--push', '--strategy', 'abort', '--insecure-registry', registry.host, context]);
      assert.equal(abort.status, 2, abort.stderr);
      assert.match(abort.stderr, new RegExp(`^lapin: error: ${name.replace(/[/.]/g, '\\$&')} already has an image for linux/arm64 \\(--strategy abort\\)`, 'm'));
      assert.doesNotMatch(abort.stderr, /\n\s+at /);
      assert.equal((await indexAt(name)).digest, merged.digest);
      // abort adds a platform that is not there yet.
      const other = `${registry.host}/kraft/abort:1`;
      assert.equal((await lapin(['build', '--platform', 'linux/amd64', '-t', other, '--push', '--strategy', 'abort', '--insecure-registry', registry.host, context])).status, 0);
      assert.equal((await lapin(['build', '--platform', 'linux/arm64', '-t', other, '--push', '--strategy', 'abort', '--insecure-registry', registry.host, context])).status, 0);
      assert.deepEqual((await indexAt(other)).architectures, ['amd64', 'arm64']);

      const overwrite = await lapin(['build', '--platform', 'linux/amd64', '-t', name, '--push', '--strategy', 'overwrite', '--insecure-registry', registry.host, context]);
      assert.equal(overwrite.status, 0, overwrite.stderr);
      assert.deepEqual((await indexAt(name)).architectures, ['amd64']);
    });
  });
});
