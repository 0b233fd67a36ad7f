// What real engines hand urunc, proven with a recording runtime in urunc's
// place (test/helpers/recording-runtime.sh): docker run --runtime, ctr run
// --runc-binary after an import and after a registry pull, podman run
// --runtime, and containerd's CRI with a runtime handler (the runc shim with
// BinaryName), as Kubernetes runs urunc. Each test asserts what the engine
// put in the spec and the rootfs (../shared/reference/urunc-images.md §1),
// then applies urunc's own lookup, release by release (engines-urunc.ts),
// to the recording and compares it with `lapin inspect --json`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { EngineVerdict, InspectReport } from '../../src/index.js';
import type { ProgramResult } from '../helpers/fixtures.js';
import { b64, fakeElfKernel, handBlobs, tarOf, type HandFile, type HandImage } from '../helpers/hand-image.js';
import { startRegistry, type TestRegistry } from '../registry/harness.js';
import { isCI, requireConsumers, servicesDir, servicesEnv, startServices, uniqueName } from './harness.js';
import {
  makeRecordingRuntime,
  must,
  RECORDED_MARKER,
  recordingsAt,
  runProgram,
  startCriDaemon,
  storedImageOf,
  uruncAnnotations,
  type CriDaemon,
  type Recording,
  type RecordingRuntime,
  type StoredImage,
} from './engines-harness.js';
import { RELEASES, uruncLookup, type EngineName, type UruncOutcome } from './engines-urunc.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * The lapin that builds and inspects: this checkout's source, or another
 * checkout's (LAPIN_ENGINES_CLI=/path/to/src/cli/main.ts), to try these tests
 * on another branch's inspect.
 */
const CLI = ['--import', import.meta.resolve('tsx'), process.env.LAPIN_ENGINES_CLI ?? join(ROOT, 'src/cli/main.ts')];

function skipReason(): string | false {
  const consumers = requireConsumers(['docker', 'ctr', 'podman', 'skopeo']);
  if (consumers) return consumers;
  const missing = ['jq', 'runc', 'containerd-shim-runc-v2', 'umount', 'ldd'].filter((program) => execFileSync('sh', ['-c', `command -v ${program} || true`], { encoding: 'utf8' }).trim() === '');
  if (!existsSync('/usr/bin/docker-registry')) missing.push('docker-registry');
  if (missing.length === 0) return false;
  const reason = `missing ${missing.join(', ')}; run scripts/install-deps.sh as root`;
  if (isCI()) throw new Error(`CI must run the engine tests: ${reason}`);
  return reason;
}

// ---------------------------------------------------------------------------
// The images

const uruncKeys = (values: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(values).map(([key, value]) => [`com.urunc.unikernel.${key}`, value]));

interface TestImage {
  key: 'full' | 'labels' | 'nocmd' | 'mixed';
  /** The name every engine knows it by (docker.io/... spelled out). */
  name: string;
  archive: string;
  /** Entrypoint + Cmd; empty for the image that has neither. */
  processArgs: string[];
  manifestAnnotations: Record<string, string>;
  labels: Record<string, string>;
  hasUruncJson: boolean;
  /** `lapin inspect --json`. */
  report: InspectJson;
}

/** `lapin inspect --json` as the library types it; `urunc` is the engine report contract. */
type InspectJson = InspectReport;

async function lapin(args: string[], cwd: string): Promise<ProgramResult> {
  return runProgram(process.execPath, [...CLI, ...args], { cwd });
}

/**
 * One tar that is an OCI layout (named for ctr by io.containerd.image.name)
 * and a docker save archive (manifest.json), as lapin writes them.
 */
async function writeHandArchive(path: string, image: HandImage, name: string): Promise<void> {
  const made = await handBlobs(image);
  const index = JSON.parse(made.index.toString('utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
  const tag = name.slice(name.lastIndexOf(':') + 1);
  for (const entry of index.manifests) entry.annotations = { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': tag };
  const hex = (data: Buffer): string => [...made.blobs].find(([, blob]) => blob === data)?.[0] ?? '';
  const dockerManifest = [{ Config: `blobs/sha256/${hex(made.config)}`, RepoTags: [name.replace(/^docker\.io\//, '')], Layers: made.layers.map((layer) => `blobs/sha256/${hex(layer.blob)}`) }];
  const files: HandFile[] = [
    { name: 'oci-layout', body: JSON.stringify({ imageLayoutVersion: '1.0.0' }) },
    { name: 'index.json', body: JSON.stringify(index) },
    { name: 'manifest.json', body: JSON.stringify(dockerManifest) },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...[...made.blobs].map(([digest, data]) => ({ name: `blobs/sha256/${digest}`, body: data })),
  ];
  await writeFile(path, await tarOf(files));
}

/** The CRI sandbox ("pause") image: the host's sleep and its libraries. */
async function writePauseArchive(path: string, name: string): Promise<void> {
  const sleepBin = execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim();
  const libraries = execFileSync('ldd', [sleepBin], { encoding: 'utf8' })
    .split('\n')
    .map((line) => /(\/\S+) \(0x/.exec(line)?.[1])
    .filter((library): library is string => library !== undefined);
  const files: HandFile[] = [];
  const dirs = new Set<string>();
  for (const file of ['/bin/sleep', ...libraries]) {
    const parts = file.slice(1).split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = `${parts.slice(0, i).join('/')}/`;
      if (!dirs.has(dir)) files.push({ name: dir, type: 'directory' });
      dirs.add(dir);
    }
    files.push({ name: file.slice(1), body: readFileSync(file === '/bin/sleep' ? sleepBin : file), mode: 0o755 });
  }
  await writeHandArchive(path, { layers: [files], entrypoint: ['/bin/sleep'], cmd: ['infinity'] }, name);
}

async function inspectJson(archive: string, cwd: string): Promise<InspectJson> {
  const result = await lapin(['inspect', '--json', archive], cwd);
  assert.ok(result.status === 0 || result.status === 1, `lapin inspect ${archive} exited ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout) as InspectJson;
}

// ---------------------------------------------------------------------------
// What every recording must show, and the comparison with inspect

const recorded = new Map<string, { engine: EngineName; image: TestImage; recording: Recording; stored?: StoredImage }>();
/** (engine path, image, release) triples whose inspect verdict was compared. */
let compared = 0;

function assertNoImageMetadataInSpec(engine: string, image: TestImage, recording: Recording): void {
  const annotations = recording.spec.annotations ?? {};
  for (const [key, value] of Object.entries({ ...image.manifestAnnotations, ...image.labels })) {
    assert.ok(!(key in annotations), `${engine} put the image's ${key}=${value} in the spec: ${JSON.stringify(annotations)}`);
  }
  assert.deepEqual(uruncAnnotations(recording.spec), {}, `${engine}: no com.urunc.unikernel.* in the spec`);
}

function assertRootfs(engine: string, image: TestImage, recording: Recording): void {
  const paths = new Set(recording.rootfs.map((entry) => entry.path));
  assert.ok(paths.has('/.boot/kernel'), `${engine}: the kernel is in the rootfs (${[...paths].join(', ')})`);
  if (image.hasUruncJson) {
    assert.ok(recording.uruncJson !== undefined, `${engine}: /urunc.json is in the rootfs`);
    const json = JSON.parse(recording.uruncJson) as Record<string, string>;
    assert.equal(json['com.urunc.unikernel.binary'], b64('/.boot/kernel'));
  } else {
    assert.equal(recording.uruncJson, undefined, `${engine}: this image has no /urunc.json`);
  }
  assert.deepEqual(recording.spec.process?.args ?? [], image.processArgs.length > 0 ? image.processArgs : ['unikernel']);
}

/** urunc's lookup on the recording for every release, and inspect's prediction for the same path. */
function compareWithInspect(engine: EngineName, image: TestImage, recording: Recording, stored: StoredImage | undefined): Map<string, UruncOutcome> {
  const outcomes = new Map<string, UruncOutcome>();
  for (const release of RELEASES) outcomes.set(release, uruncLookup(release, engine, { recording, ...(stored ? { stored } : {}) }));
  const report = image.report.urunc;
  assert.ok(report, `lapin inspect --json of the ${image.key} image has no urunc engine report`);
  for (const release of RELEASES) {
    const actual = outcomes.get(release) as UruncOutcome;
    const predicted: EngineVerdict | undefined = report.engines.find((verdict) => verdict.engine === engine && verdict.release === release);
    assert.ok(predicted, `inspect has no verdict for ${engine} on urunc ${release}: ${JSON.stringify(report.engines)}`);
    const where: string = `${image.key} image, ${engine}, urunc ${release}: urunc on the recording says ${actual.source}/${actual.runs ? 'runs' : 'does not run'} (${actual.why}); inspect said ${predicted.source}/${predicted.runs ? 'runs' : 'does not run'} (${predicted.reasons.join('; ')})`;
    assert.equal(predicted.source, actual.source, where);
    assert.equal(predicted.runs, actual.runs, where);
    compared += 1;
    if (engine === 'docker' || engine === 'containerd' || engine === 'podman') {
      if (image.processArgs.length === 0) assert.equal(predicted.command?.at(-1), 'unikernel', `${where}: the command to type`);
      else assert.equal(predicted.command, undefined, `${where}: no command needed`);
    }
  }
  return outcomes;
}

/**
 * `docker run` for one image: when inspect says what to type (an image with
 * neither Cmd nor Entrypoint), exactly that, with the recording runtime for
 * urunc's and the image's name for IMAGE; `typed` is what follows the image.
 */
function dockerRunArgv(image: TestImage, short: string, runtimeName: string, name: string): { argv: string[]; typed: string[] } {
  const own = ['--network', 'none', '--name', name];
  const report = image.report.urunc;
  const command = report?.engines.find((verdict) => verdict.engine === 'docker' && verdict.release === report.release)?.command;
  if (!command) {
    const typed = image.processArgs.length === 0 ? ['unikernel'] : [];
    return { argv: ['run', '--runtime', runtimeName, ...own, short, ...typed], typed };
  }
  assert.deepEqual(command.slice(0, 2), ['docker', 'run'], `inspect's command: ${JSON.stringify(command)}`);
  const argv = command.slice(1);
  const imageAt = argv.findIndex((arg) => arg === 'IMAGE' || arg === image.name || arg === short);
  const runtimeAt = argv.indexOf('--runtime');
  assert.ok(imageAt > 0 && runtimeAt > 0, `inspect's command names the image and the runtime: ${JSON.stringify(command)}`);
  argv[imageAt] = short;
  argv[runtimeAt + 1] = runtimeName;
  const typed = argv.slice(imageAt + 1);
  return { argv: ['run', ...own, ...argv.slice(1)], typed };
}

function expectMarker(result: ProgramResult, what: string): void {
  assert.notEqual(result.status, 0, `${what} should fail at the recording runtime's create`);
  assert.match(result.stderr + result.stdout, new RegExp(RECORDED_MARKER), `${what}: the runtime's message reaches the user`);
}

// ---------------------------------------------------------------------------

describe('engines hand urunc the spec and rootfs the reference says', { skip: skipReason(), timeout: 240_000 }, () => {
  let work: string;
  let runtime: RecordingRuntime;
  let registry: TestRegistry | undefined;
  const images: TestImage[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  const suffix = uniqueName('e').toLowerCase();
  const image = (key: TestImage['key']): TestImage => images.find((candidate) => candidate.key === key) as TestImage;
  /** Where before() pushed the image in the test registry. */
  const registryRef = (test: TestImage): string => `${registry?.host ?? 'no-registry'}/engines/${test.key}:${suffix}`;

  before(async () => {
    await startServices();
    work = await mkdtemp(join(tmpdir(), 'lapin engines '));
    runtime = await makeRecordingRuntime(work);

    // 1. Values everywhere, built by lapin: manifest annotations, labels, /urunc.json.
    const context = join(work, 'context dir');
    await mkdir(context);
    await writeFile(join(context, 'kernel'), fakeElfKernel());
    await writeFile(
      join(context, 'bunnyfile'),
      ['version: v0.1', 'platforms:', '  framework: unikraft', '  monitor: qemu', '  version: 0.17.0', 'kernel:', '  from: local', '  path: kernel', 'cmd: ["hello", "world"]', ''].join('\n'),
    );
    const fullName = `docker.io/lapin-engines/full:${suffix}`;
    const fullArchive = join(work, 'full.tar');
    const built = await lapin(['build', '-q', '-f', join(context, 'bunnyfile'), '-t', fullName, '-o', `type=oci,dest=${fullArchive}`, context], tmpdir());
    assert.equal(built.status, 0, built.stderr);
    const fullValues = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/.boot/kernel' };
    const fullReport = await inspectJson(fullArchive, work);

    // 2. Only config labels (as a Containerfile's LABELs end up after docker build): no annotations, no /urunc.json.
    const kernelLayer: HandFile[] = [{ name: '.boot/', type: 'directory' }, { name: '.boot/kernel', body: fakeElfKernel(), mode: 0o755 }];
    const labelsName = `docker.io/lapin-engines/labels:${suffix}`;
    const labelsArchive = join(work, 'labels.tar');
    const labels = uruncKeys({ unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/.boot/kernel' });
    await writeHandArchive(labelsArchive, { layers: [kernelLayer], labels, cmd: ['hello'] }, labelsName);

    // 3. Values everywhere but neither Cmd nor Entrypoint.
    const nocmdName = `docker.io/lapin-engines/nocmd:${suffix}`;
    const nocmdArchive = join(work, 'nocmd.tar');
    const mirage = { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/.boot/kernel' };
    const uruncJson: HandFile = { name: 'urunc.json', body: JSON.stringify(Object.fromEntries(Object.entries(uruncKeys(mirage)).map(([key, value]) => [key, b64(value)]))) };
    await writeHandArchive(nocmdArchive, { layers: [[...kernelLayer, uruncJson]], labels: uruncKeys(mirage), annotations: uruncKeys(mirage) }, nocmdName);

    // 4. Values split between manifest annotations and labels, disagreeing on the
    // guest: spec > manifest > labels, key by key, gives unikraft on firecracker
    // (runs); labels first would give mirage on firecracker (does not).
    const mixedName = `docker.io/lapin-engines/mixed:${suffix}`;
    const mixedArchive = join(work, 'mixed.tar');
    const mixedAnnotations = uruncKeys({ unikernelType: 'unikraft', hypervisor: 'firecracker' });
    const mixedLabels = uruncKeys({ unikernelType: 'mirage', binary: '/.boot/kernel' });
    await writeHandArchive(mixedArchive, { layers: [kernelLayer], labels: mixedLabels, annotations: mixedAnnotations, cmd: ['hello'] }, mixedName);

    const fullManifestAnnotations = uruncKeys({ ...fullValues, unikernelVersion: '0.17.0', cmdline: 'hello world', mountRootfs: 'false', useDMBlock: 'false' });
    images.push(
      { key: 'full', name: fullName, archive: fullArchive, processArgs: ['hello', 'world'], manifestAnnotations: fullManifestAnnotations, labels: fullManifestAnnotations, hasUruncJson: true, report: fullReport },
      { key: 'labels', name: labelsName, archive: labelsArchive, processArgs: ['hello'], manifestAnnotations: {}, labels, hasUruncJson: false, report: await inspectJson(labelsArchive, work) },
      { key: 'nocmd', name: nocmdName, archive: nocmdArchive, processArgs: [], manifestAnnotations: uruncKeys(mirage), labels: uruncKeys(mirage), hasUruncJson: true, report: await inspectJson(nocmdArchive, work) },
      { key: 'mixed', name: mixedName, archive: mixedArchive, processArgs: ['hello'], manifestAnnotations: mixedAnnotations, labels: mixedLabels, hasUruncJson: false, report: await inspectJson(mixedArchive, work) },
    );

    // The same images in a registry, for the engines that pull.
    registry = await startRegistry('anonymous');
    for (const test of images) {
      await must('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci-archive:${test.archive}`, `docker://${registryRef(test)}`]);
    }
  });

  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await registry?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('lapin wrote the values everywhere in the full image', () => {
    // The facts the engine assertions below lean on.
    const { values } = image('full').report;
    assert.equal(values.annotations.values.hypervisor, 'qemu');
    assert.equal(values.labels.values.hypervisor, 'qemu');
    assert.equal(values.uruncJson.found, true);
  });

  test('docker run --runtime: no image annotations or labels in the spec; /urunc.json in the rootfs', async () => {
    const env = { DOCKER_HOST: servicesEnv().dockerHost };
    const docker = (args: string[]): Promise<ProgramResult> => runProgram(servicesEnv().dockerBin, args, { env });
    // scripts/services.sh registers it under this name (the daemon is shared, the name fixed).
    const runtimeName = 'lapin-recording';
    const registered = JSON.parse((await must(servicesEnv().dockerBin, ['info', '--format', '{{json .Runtimes}}'], { env })).stdout) as Record<string, { path?: string }>;
    const runtimeDir = join(servicesDir(), 'recording-runtime');
    assert.equal(registered[runtimeName]?.path, join(runtimeDir, 'runtime'), `dockerd knows the recording runtime: ${JSON.stringify(registered)}`);
    const dockerRuntime = recordingsAt(join(runtimeDir, 'runtime'), join(runtimeDir, 'recordings'));
    for (const test of images) {
      await must(servicesEnv().dockerBin, ['load', '-i', test.archive], { env });
      const short = test.name.replace(/^docker\.io\//, '');
      cleanups.push(() => docker(['rmi', short]));
      const name = uniqueName(`lapin-engines-${test.key}`);
      cleanups.push(() => docker(['rm', '-f', name]));
      if (test.processArgs.length === 0) {
        // docker refuses an image with neither Cmd nor Entrypoint: the user must type one.
        const refused = await docker(['run', '--runtime', runtimeName, '--name', `${name}-bare`, short]);
        cleanups.push(() => docker(['rm', '-f', `${name}-bare`]));
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /no command specified/i);
      }
      const { argv, typed } = dockerRunArgv(test, short, runtimeName, name);
      const result = await docker(argv);
      expectMarker(result, `docker ${argv.join(' ')}`);
      const id = (await must(servicesEnv().dockerBin, ['inspect', '--format', '{{.Id}}', name], { env })).stdout.trim();
      const recording = await dockerRuntime.read(id);
      cleanups.push(() => rm(join(dockerRuntime.dir, id), { recursive: true, force: true }));
      assertNoImageMetadataInSpec('docker', test, recording);
      assertRootfs('docker', test, recording);
      assert.deepEqual(recording.spec.process?.args, test.processArgs.length > 0 ? test.processArgs : typed, 'docker runs what was typed after the image');
      // docker 20.10 keeps its images out of containerd's store: urunc 0.8's shim finds nothing there.
      // (docker removes the task's containerd record when create fails, so ask the store as a whole.)
      const mobyImages = await must('ctr', ['--address', servicesEnv().containerdAddress, '--namespace', 'moby', 'images', 'ls', '-q']);
      assert.equal(mobyImages.stdout.trim(), '', 'containerd holds no images for docker');
      assert.equal(await storedImageOf(servicesEnv().containerdAddress, 'moby', id).catch(() => undefined), undefined);
      recorded.set(`docker/${test.key}`, { engine: 'docker', image: test, recording });
      compareWithInspect('docker', test, recording, undefined);
    }
  });

  async function ctrRun(how: 'import' | 'pull', namespace: string, refOf: (test: TestImage) => string): Promise<void> {
    const address = servicesEnv().containerdAddress;
    const ctr = (args: string[]): Promise<ProgramResult> => runProgram('ctr', ['--address', address, '--namespace', namespace, ...args]);
    cleanups.push(async () => {
      const { stdout } = await ctr(['containers', 'ls', '-q']);
      for (const id of stdout.split('\n').filter(Boolean)) await ctr(['containers', 'rm', id]);
      const listed = await ctr(['images', 'ls', '-q']);
      const names = listed.stdout.split('\n').filter(Boolean);
      if (names.length > 0) await ctr(['images', 'rm', '--sync', ...names]);
      await runProgram('ctr', ['--address', address, 'namespaces', 'rm', namespace]);
    });
    for (const test of images) {
      const ref = refOf(test);
      if (how === 'import') await must('ctr', ['--address', address, '--namespace', namespace, 'images', 'import', '--snapshotter', 'native', test.archive]);
      else await must('ctr', ['--address', address, '--namespace', namespace, 'images', 'pull', '--plain-http', '--snapshotter', 'native', ref]);
      const id = uniqueName(`ctr-${how}-${test.key}`);
      const result = await ctr(['run', '--runc-binary', runtime.bin, '--runc-root', join(work, 'runc root'), '--snapshotter', 'native', ref, id, ...(test.processArgs.length === 0 ? ['unikernel'] : [])]);
      expectMarker(result, `ctr run (${how}) ${test.key}`);
      const recording = await runtime.read(id);
      assertNoImageMetadataInSpec(`ctr (${how})`, test, recording);
      assertRootfs(`ctr (${how})`, test, recording);
      // urunc 0.8's shim reads the image from containerd's store: there it is whole.
      const stored = await storedImageOf(address, namespace, id);
      assert.ok(stored, `containerd's store has the image of ${id}`);
      assert.deepEqual(stored.manifestAnnotations, test.manifestAnnotations, `ctr (${how}) keeps the manifest annotations`);
      assert.deepEqual(stored.labels, test.labels, `ctr (${how}) keeps the labels`);
      recorded.set(`ctr-${how}/${test.key}`, { engine: 'containerd', image: test, recording, stored });
      compareWithInspect('containerd', test, recording, stored);
    }
  }

  test('ctr run --runc-binary after ctr images import', async () => {
    await ctrRun('import', uniqueName('lapin-engines-import'), (test) => test.name);
  });

  test('ctr run --runc-binary after ctr images pull --plain-http from a registry', async () => {
    await ctrRun('pull', uniqueName('lapin-engines-pull'), registryRef);
  });

  test('podman run --runtime: the manifest annotations are copied into the spec as text, labels are not', async () => {
    const storage = join(work, 'podman storage');
    // podman refuses a runroot path over 50 characters, whatever TMPDIR is.
    const runroot = await mkdtemp('/tmp/lapin-podman-run-');
    cleanups.push(() => rm(runroot, { recursive: true, force: true }));
    const global = ['--root', join(storage, 'root'), '--runroot', runroot, '--tmpdir', join(storage, 'tmp'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file'];
    for (const sub of ['root', 'tmp']) await mkdir(join(storage, sub), { recursive: true });
    const podman = (args: string[]): Promise<ProgramResult> => runProgram('podman', [...global, ...args]);
    cleanups.push(async () => {
      await podman(['rm', '-af']);
      await podman(['rmi', '-af']);
    });
    for (const test of images) {
      await must('podman', [...global, 'load', '-i', test.archive]);
      const name = uniqueName(`podman-${test.key}`);
      if (test.processArgs.length === 0) {
        const refused = await podman(['run', '--pull', 'never', '--runtime', runtime.bin, '--network', 'none', '--name', `${name}-bare`, test.name]);
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /no command or entrypoint/i);
      }
      const result = await podman(['run', '--pull', 'never', '--runtime', runtime.bin, '--network', 'none', '--name', name, test.name, ...(test.processArgs.length === 0 ? ['unikernel'] : [])]);
      expectMarker(result, `podman run ${test.key}`);
      const id = (await must('podman', [...global, 'inspect', '--format', '{{.Id}}', name])).stdout.trim();
      const recording = await runtime.read(id);
      const annotations = recording.spec.annotations ?? {};
      for (const [key, value] of Object.entries(test.manifestAnnotations)) {
        assert.equal(annotations[key], value, `podman copies the manifest annotation ${key} as plain text`);
      }
      for (const [key, value] of Object.entries(test.labels)) {
        if (!(key in test.manifestAnnotations)) assert.ok(!(key in annotations), `podman does not copy the label ${key}=${value}`);
      }
      assertRootfs('podman', test, recording);
      recorded.set(`podman/${test.key}`, { engine: 'podman', image: test, recording });
      const outcomes = compareWithInspect('podman', test, recording, undefined);
      if (test.key === 'full') {
        // The text values fail urunc < 0.7's strict base64: it hands the container to runc.
        assert.equal(outcomes.get('pre-0.7')?.runs, false);
        assert.equal(outcomes.get('0.7')?.source, 'spec-annotations');
      }
    }
  });

  test('the Kubernetes CRI with a runtime handler (runc shim, BinaryName), images imported and pulled by PullImage: no image annotations or labels in the spec', async () => {
    const pauseName = `lapin.test/pause:${suffix}`;
    const pauseArchive = join(work, 'pause.tar');
    await writePauseArchive(pauseArchive, pauseName);
    // The handler forwards Kubernetes annotations, urunc's keys included, as urunc's
    // docs have it; the image's own annotations are still not among them.
    const forwarded = ['lapin.test/*', 'com.urunc.unikernel.*'];
    const cri: CriDaemon = await startCriDaemon({
      runtimeBin: runtime.bin,
      sandboxImage: pauseName,
      podAnnotations: forwarded,
      containerAnnotations: forwarded,
      plainHttpRegistries: [registry?.host ?? ''],
    });
    cleanups.push(() => cri.stop());
    const version = await cri.runtime.Version({ version: 'v1' });
    assert.equal(version.runtime_name, 'containerd');
    for (const archive of [pauseArchive, ...images.map((test) => test.archive)]) await cri.ctr(['images', 'import', '--snapshotter', 'native', archive]);
    // Imported into k8s.io, and pulled by the CRI itself from the registry, as the kubelet does.
    for (const test of images) await cri.images.PullImage({ image: { image: registryRef(test) } });
    const ways = [
      { how: 'import', refOf: (test: TestImage) => test.name },
      { how: 'pull', refOf: registryRef },
    ];
    for (const { refOf } of ways) {
      for (const test of images) {
        const status = await cri.images.ImageStatus({ image: { image: refOf(test) } });
        assert.ok(status.image?.repo_tags.includes(refOf(test)), `the CRI sees ${refOf(test)}: ${JSON.stringify(status)}`);
      }
    }
    const sandboxConfig = {
      metadata: { name: 'engines', uid: suffix, namespace: 'lapin', attempt: 0 },
      log_directory: join(cri.dir, 'pods'),
      annotations: { 'lapin.test/pod': 'yes' },
      linux: { security_context: { namespace_options: { network: 'NODE' as const } } },
    };
    const { pod_sandbox_id: sandboxId } = await cri.runtime.RunPodSandbox({ config: sandboxConfig, runtime_handler: cri.handler });
    cri.sandboxes.add(sandboxId);
    const sandbox = await runtime.read(sandboxId);
    assert.ok(sandbox.handedToRunc, 'the pause container went through the runtime handler to runc');
    assert.equal(sandbox.spec.annotations?.['lapin.test/pod'], 'yes', 'the pod annotations the handler forwards reach the spec');
    const containers = ways.flatMap(({ how, refOf }) => images.map((test) => ({ how, ref: refOf(test), test })));
    for (const { how, ref, test } of containers) {
      const config = {
        metadata: { name: `${test.key}-${how}`, attempt: 0 },
        image: { image: ref },
        annotations: { 'lapin.test/container': test.key },
        log_path: `${test.key}.log`,
        // A pod spec must give a command to an image with neither Cmd nor Entrypoint.
        ...(test.processArgs.length === 0 ? { args: ['unikernel'] } : {}),
      };
      if (test.processArgs.length === 0) {
        await assert.rejects(cri.runtime.CreateContainer({ pod_sandbox_id: sandboxId, config: { ...config, args: [], metadata: { name: `${test.key}-${how}-bare`, attempt: 0 } }, sandbox_config: sandboxConfig }), /no command specified/i);
      }
      const { container_id: id } = await cri.runtime.CreateContainer({ pod_sandbox_id: sandboxId, config, sandbox_config: sandboxConfig });
      await assert.rejects(cri.runtime.StartContainer({ container_id: id }), new RegExp(RECORDED_MARKER));
      const recording = await runtime.read(id);
      assert.equal(recording.spec.annotations?.['lapin.test/container'], test.key, 'the container annotations the handler forwards reach the spec');
      assertNoImageMetadataInSpec('cri', test, recording);
      assertRootfs('cri', test, recording);
      const stored = await storedImageOf(cri.address, 'k8s.io', id);
      assert.ok(stored, `containerd's store has the image of CRI container ${id}`);
      assert.deepEqual(stored.manifestAnnotations, test.manifestAnnotations);
      assert.deepEqual(stored.labels, test.labels);
      recorded.set(`cri-${how}/${test.key}`, { engine: 'cri', image: test, recording, stored });
      const outcomes = compareWithInspect('cri', test, recording, stored);
      if (test.key === 'labels') {
        // Only urunc 0.8's shim reads labels; older urunc find nothing.
        assert.deepEqual([...outcomes.values()].map((outcome) => `${outcome.source}/${outcome.runs}`), ['none/false', 'none/false', 'image-metadata/true']);
      }
    }
  });

  test('urunc finds its values on every path the way the reference says', (t) => {
    // The whole table, from the recordings, for the images every engine ran.
    const table = new Map<string, string>();
    for (const [key, { engine, recording, stored }] of recorded) {
      for (const release of RELEASES) {
        const outcome = uruncLookup(release, engine, { recording, ...(stored ? { stored } : {}) });
        table.set(`${key} ${release}`, `${outcome.source}/${outcome.runs ? 'runs' : 'no'}`);
      }
    }
    const expected: Record<string, string> = {};
    const paths = ['docker', 'ctr-import', 'ctr-pull', 'podman', 'cri-import', 'cri-pull'];
    for (const path of paths) {
      const shim = path.startsWith('ctr-') || path.startsWith('cri-');
      for (const release of RELEASES) {
        // podman's text annotations: refused by urunc < 0.7's base64, read by later ones.
        const podman = release === 'pre-0.7' ? 'spec-annotations/no' : 'spec-annotations/runs';
        // urunc 0.8's shim fills the spec from containerd's store before urunc looks at /urunc.json.
        const elsewhere = shim && release === '0.8' ? 'image-metadata/runs' : 'uruncJson/runs';
        expected[`${path}/full ${release}`] = path === 'podman' ? podman : elsewhere;
        expected[`${path}/labels ${release}`] = shim && release === '0.8' ? 'image-metadata/runs' : 'none/no';
        expected[`${path}/nocmd ${release}`] = path === 'podman' ? podman : elsewhere;
        // podman's spec lacks binary: urunc >= 0.7 looks for /urunc.json, and there is none.
        expected[`${path}/mixed ${release}`] = shim && release === '0.8' ? 'image-metadata/runs' : path === 'podman' && release === 'pre-0.7' ? 'spec-annotations/no' : 'none/no';
      }
    }
    assert.equal(recorded.size, paths.length * images.length, `every engine ran every image: ${[...recorded.keys()].join(', ')}`);
    assert.deepEqual(Object.fromEntries(table), expected);
    assert.equal(compared, recorded.size * RELEASES.length, 'inspect was compared on every path, image and release');
    t.diagnostic(`lapin inspect agreed with urunc's lookup on ${compared} recorded (engine path, image, release) cases`);
  });
});
