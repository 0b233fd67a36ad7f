// `lapin build --load`: the seed example handed to the running dockerd (API
// socket) and containerd (ctr images import) started by scripts/services.sh,
// then read back from each engine: the name lapin printed, labels, files.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseDockerLoadOutput, parseLoadSpec } from '../../src/export/load.js';
import { dockerFiles, dockerInspect, requireConsumers, servicesEnv, startServices } from '../consumers/harness.js';
import { runProgram, type ProgramResult } from '../helpers/fixtures.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const kernel = readFileSync(path.join(EXAMPLE, 'network.hvt'));
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const unique = randomBytes(4).toString('hex');
const LABEL = { key: 'org.example.loaded-by', value: `lapin-load-test-${unique}` };

const expectedValues = {
  'com.urunc.unikernel.binary': '/.boot/kernel',
  'com.urunc.unikernel.cmdline': '',
  'com.urunc.unikernel.hypervisor': 'hvt',
  'com.urunc.unikernel.mountRootfs': 'false',
  'com.urunc.unikernel.unikernelType': 'mirage',
  'com.urunc.unikernel.useDMBlock': 'false',
};

type CliResult = ProgramResult;

function lapin(args: string[], env: NodeJS.ProcessEnv = {}, prefix: string[] = []): Promise<CliResult> {
  const [program, ...programArgs] = [...prefix, process.execPath, ...CLI, ...args] as [string, ...string[]];
  return runProgram(program, programArgs, { cwd: work, env });
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { maxBuffer: 64 * 1024 * 1024, encoding: 'buffer' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${stderr.toString() || error.message}`));
      else resolve(stdout.toString('latin1'));
    });
  });
}

function assertOneLineError(result: CliResult, pattern: RegExp): void {
  const lines = result.stderr.trim().split('\n').filter((line) => line.startsWith('lapin: error:'));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0] as string, pattern);
  assert.ok(!/^\s+at /m.test(result.stderr), `stack trace in:\n${result.stderr}`);
}

const buildArgs = (...rest: string[]): string[] => ['build', '-f', path.join(EXAMPLE, 'bunnyfile'), '--label', `${LABEL.key}=${LABEL.value}`, '--progress', 'plain', ...rest];

let work: string;
const skip = requireConsumers(['docker', 'ctr']);

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'lapin-load-'));
  if (!skip) await startServices();
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('--load into the running engines', { skip }, () => {
  test('docker: through the API socket, with the name docker now has, labels and files', async () => {
    const name = `lapin-load-test/docker:${unique}`;
    const docker = servicesEnv().dockerBin;
    const env = { DOCKER_HOST: servicesEnv().dockerHost };
    try {
      // A bare --load before the context: docker, and the context stays the context.
      const result = await lapin(buildArgs('-t', name, '--load', EXAMPLE), env);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stderr, new RegExp(`^=> loaded into docker as ${name.replace(/[/.]/g, '\\$&')}( \\[[\\d.]+s\\])?$`, 'm'));
      const image = await dockerInspect(name);
      assert.deepEqual(image.repoTags, [name]);
      assert.equal(image.labels[LABEL.key], LABEL.value);
      for (const [key, value] of Object.entries(expectedValues)) assert.equal(image.labels[key], value, key);
      const files = await dockerFiles(name);
      assert.equal(files.get('/.boot/kernel')?.sha256, sha256(kernel));
      const encoded = files.readJson('/urunc.json') as Record<string, string>;
      assert.equal(Buffer.from(encoded['com.urunc.unikernel.hypervisor'] ?? '', 'base64').toString(), 'hvt');
      // No archive was asked for, so none was written.
      assert.deepEqual(await readdirNames(work), []);
    } finally {
      await run(docker, ['-H', env.DOCKER_HOST, 'rmi', name]).catch(() => undefined);
    }
  });

  test('docker: an image without a name is reported by its id; --output type=docker loads, as with buildx', async () => {
    const env = { DOCKER_HOST: servicesEnv().dockerHost };
    const result = await lapin([...buildArgs('--output', 'type=docker', '--label', `org.example.unnamed=${unique}`), EXAMPLE], env);
    assert.equal(result.status, 0, result.stderr);
    const id = /^=> loaded into docker as (sha256:[0-9a-f]{64})( \[[\d.]+s\])?$/m.exec(result.stderr)?.[1];
    assert.ok(id, result.stderr);
    const image = await dockerInspect(id);
    assert.equal(image.labels['org.example.unnamed'], unique);
    await run(servicesEnv().dockerBin, ['-H', env.DOCKER_HOST, 'rmi', id]).catch(() => undefined);
  });

  test('containerd: through ctr images import, in the namespace asked for, with labels and files', async () => {
    const { containerdAddress, snapshotter } = servicesEnv();
    const namespace = `lapin-load-${unique}`;
    const names = [`lapin-load-test/ctr:${unique}`, `localhost:5000/lapin-load/ctr:${unique}`];
    const ctr = (...args: string[]): Promise<string> => run('ctr', ['--address', containerdAddress, '--namespace', namespace, ...args]);
    const mount = path.join(work, 'mnt');
    try {
      const spec = `--load=containerd,namespace=${namespace},address=${containerdAddress},snapshotter=${snapshotter}`;
      const result = await lapin(buildArgs('-t', names[0] as string, '-t', names[1] as string, spec, EXAMPLE));
      assert.equal(result.status, 0, result.stderr);
      const printed = [...result.stderr.matchAll(/^=> loaded into containerd \(namespace (\S+)\) as (\S+?)( \[[\d.]+s\])?$/gm)].map((m) => [m[1], m[2]]);
      const full = [`docker.io/lapin-load-test/ctr:${unique}`, names[1] as string];
      assert.deepEqual(printed, full.map((n) => [namespace, n]));
      const listed = (await ctr('images', 'ls', '-q')).split('\n').filter((l) => l !== '').sort();
      assert.deepEqual(listed, [...full].sort());
      // Labels: the config the manifest names, read from containerd's content store.
      const row = (await ctr('images', 'ls')).split('\n').find((line) => line.startsWith(`${full[0]} `));
      const target = row?.trim().split(/\s+/)[2] as string;
      const manifest = JSON.parse(await ctr('content', 'get', target)) as { config: { digest: string }; annotations?: Record<string, string> };
      assert.equal(manifest.annotations?.['com.urunc.unikernel.hypervisor'], 'hvt');
      const config = JSON.parse(await ctr('content', 'get', manifest.config.digest)) as { config: { Labels: Record<string, string> } };
      assert.equal(config.config.Labels[LABEL.key], LABEL.value);
      // Files: the unpacked snapshot, as a container would see it.
      await run('mkdir', ['-p', mount]);
      await ctr('images', 'mount', '--snapshotter', snapshotter, full[0] as string, mount);
      try {
        assert.equal(sha256(await readFile(path.join(mount, '.boot/kernel'))), sha256(kernel));
        const encoded = JSON.parse(await readFile(path.join(mount, 'urunc.json'), 'utf8')) as Record<string, string>;
        assert.equal(Buffer.from(encoded['com.urunc.unikernel.unikernelType'] ?? '', 'base64').toString(), 'mirage');
      } finally {
        await ctr('images', 'unmount', '--rm', mount).catch(() => undefined);
      }
    } finally {
      const left = (await ctr('images', 'ls', '-q').catch(() => '')).split('\n').filter((l) => l !== '');
      if (left.length > 0) await ctr('images', 'rm', '--sync', ...left).catch(() => undefined);
      await run('ctr', ['--address', containerdAddress, 'namespaces', 'rm', namespace]).catch(() => undefined);
    }
  });

  test('an engine that is not running: one line that says what to do, before anything is built', async () => {
    const missing = path.join(work, 'no-such.sock');
    const docker = await lapin(buildArgs('-t', `lapin-load-test/none:${unique}`, '--load', EXAMPLE), { DOCKER_HOST: `unix://${missing}` });
    assert.equal(docker.status, 1);
    assertOneLineError(docker, /--load: docker is not running: .*no-such\.sock does not exist \(start dockerd, or set DOCKER_HOST/);
    assert.ok(!/layer/.test(docker.stderr), 'failed before building');

    const containerd = await lapin(buildArgs('-t', `lapin-load-test/none:${unique}`, `--load=containerd,address=${missing}`, EXAMPLE));
    assert.equal(containerd.status, 1);
    assertOneLineError(containerd, /--load=containerd: containerd is not running: .*no-such\.sock does not exist/);
  });

  test('permission denied on the engine sockets: one line that says what to do', async (t) => {
    // The sockets are root's (mode 660); an unprivileged user may not use them.
    const asNobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'];
    // That user must be able to run lapin at all: node and a checkout it can read (not one under /root).
    const canRun = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, '-e', `require('fs').accessSync(${JSON.stringify(path.join(ROOT, 'src/cli/main.ts'))})`]).then(
      () => true,
      () => false,
    );
    if (!canRun) {
      t.skip(`user nobody cannot read ${ROOT} or run ${process.execPath}`);
      return;
    }
    const env = { HOME: work, LAPIN_CACHE_DIR: path.join(work, 'cache-nobody') };
    await run('chmod', ['0777', work]);
    const docker = await lapin(buildArgs('-t', `lapin-load-test/denied:${unique}`, '--load', EXAMPLE), { ...env, DOCKER_HOST: servicesEnv().dockerHost }, asNobody);
    assert.equal(docker.status, 1, docker.stderr);
    assertOneLineError(docker, /--load: permission denied on .*docker\.sock \(add yourself to the docker group/);
    const containerd = await lapin(buildArgs('-t', `lapin-load-test/denied:${unique}`, `--load=containerd,address=${servicesEnv().containerdAddress}`, EXAMPLE), env, asNobody);
    assert.equal(containerd.status, 1, containerd.stderr);
    assertOneLineError(containerd, /--load=containerd: permission denied on .*containerd\.sock \(containerd's socket belongs to root/);
  });

  test('usage errors exit 2', async () => {
    const engine = await lapin(buildArgs('-t', 'x:1', '--load=podman', EXAMPLE));
    assert.equal(engine.status, 2);
    assertOneLineError(engine, /--load=podman: unknown engine "podman"/);
    const field = await lapin(buildArgs('-t', 'x:1', '--load=containerd,socket=/x', EXAMPLE));
    assert.equal(field.status, 2);
    assertOneLineError(field, /"socket=\/x" is not understood/);
    const unnamed = await lapin(buildArgs(`--load=containerd,address=${servicesEnv().containerdAddress}`, EXAMPLE));
    assert.equal(unnamed.status, 2);
    assertOneLineError(unnamed, /--load=containerd needs an image name \(add -t NAME\[:TAG\]\)/);
  });
});

async function readdirNames(dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir(dir)).filter((name) => name !== 'mnt' && !name.startsWith('cache'));
}

describe('--load parsing', () => {
  test('engines and fields', () => {
    assert.deepEqual(parseLoadSpec('docker'), { engine: 'docker' });
    assert.deepEqual(parseLoadSpec('containerd'), { engine: 'containerd' });
    assert.deepEqual(parseLoadSpec('containerd,namespace=k8s.io,address=/run/c.sock,snapshotter=native'), {
      engine: 'containerd',
      namespace: 'k8s.io',
      address: '/run/c.sock',
      snapshotter: 'native',
    });
    assert.throws(() => parseLoadSpec('docker,namespace=x'), /is not understood/);
    assert.throws(() => parseLoadSpec('containerd,namespace='), /is not understood/);
    assert.throws(() => parseLoadSpec(''), /unknown engine/);
  });

  test("docker's load stream: names, ids and errors", () => {
    const ok = parseDockerLoadOutput('{"stream":"Loaded image: a/b:1\\n"}\r\n{"stream":"Loaded image: c:2\\n"}\n');
    assert.deepEqual(ok, { names: ['a/b:1', 'c:2'], ids: [] });
    assert.deepEqual(parseDockerLoadOutput('{"stream":"Loaded image ID: sha256:abc\\n"}'), { names: [], ids: ['sha256:abc'] });
    assert.deepEqual(parseDockerLoadOutput('{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}').error, 'unexpected EOF');
    assert.deepEqual(parseDockerLoadOutput('{"message":"invalid tar header"}').error, 'invalid tar header');
  });
});
