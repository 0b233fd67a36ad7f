// The buildx forms bunny's and buildx's users type: `--push=true` and
// `--output type=image,oci-mediatypes=true` (bunny's docs/annotations.md),
// `--output type=docker,name=NAME` (bunny's README, buildctl's form), a bare
// `--pull` (buildx's boolean), and output specs lapin does not take, each one
// line and exit 2.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { csvFields, normalizeLoadFlag, parseOutput } from '../../src/cli/program.js';
import { requireConsumers, servicesEnv, startServices } from '../consumers/harness.js';
import { registrySkipReason, skopeoInspect, startRegistry, type TestRegistry } from '../registry/harness.js';
import { assertNoStack, CLI, EXAMPLE, isolatedEnv, lapin } from '../registry/helpers.js';

let work: string;
let env: NodeJS.ProcessEnv;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin buildx forms '));
  env = isolatedEnv(work);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const seed = ['-f', path.join(EXAMPLE, 'bunnyfile')];

function oneLine(result: { status: number | null; stderr: string }, status: number, line: string): void {
  assertNoStack(result.stderr);
  assert.equal(result.status, status, result.stderr);
  assert.equal(result.stderr.split('\n').filter((l) => l.startsWith('lapin: error:')).join('\n'), line);
}

describe('--output specs', () => {
  test('an unknown type is named as not supported, with or without dest (it was "needs dest=PATH")', () => {
    for (const spec of ['type=foo', 'type=foo,dest=x.tar', 'type=tar']) {
      assert.throws(() => parseOutput(spec), (error: Error) => /^--output type=(foo|tar) is not supported$/.test(error.message), spec);
    }
  });
  test('an empty spec is refused as such (it was a local output into the current directory)', () => {
    assert.throws(() => parseOutput(''), /^UsageError: --output needs a value$|--output needs a value/);
  });
  test('oci-mediatypes=true is what lapin writes; false is refused', () => {
    assert.deepEqual(parseOutput('type=image,oci-mediatypes=true,push=true'), { type: 'registry' });
    assert.deepEqual(parseOutput('type=oci,dest=x.tar,oci-mediatypes=true'), { type: 'oci', dest: 'x.tar', tar: true });
    assert.throws(() => parseOutput('type=docker,dest=x.tar,oci-mediatypes=false'), /lapin writes OCI media types only/);
  });
  test('name= names the image in an archive and in a load, as in a push', () => {
    assert.deepEqual(parseOutput('type=docker,name=built-by-bunny:latest'), { type: 'load', engine: 'docker', names: ['built-by-bunny:latest'] });
    assert.deepEqual(parseOutput('type=oci,dest=x.tar,name=a:1'), { type: 'oci', dest: 'x.tar', tar: true, names: ['a:1'] });
    // buildx reads -o as one CSV line: a quoted field holds commas, "" is a quote.
    assert.deepEqual(parseOutput('type=oci,dest=q.tar,"name=a:1,b:2"'), { type: 'oci', dest: 'q.tar', tar: true, names: ['a:1', 'b:2'] });
    assert.deepEqual(csvFields('a,"b,""c""",d'), ['a', 'b,"c"', 'd']);
    assert.deepEqual(csvFields(''), ['']);
    for (const bad of ['type=oci,"dest=x', 'type=oci,"dest=x"y', 'type=oci,de"st=x']) assert.throws(() => parseOutput(bad), (error: unknown) => error instanceof Error && /quote/.test(error.message));
  });
  test('from the command line: one line, exit 2, nothing written', async () => {
    oneLine(await lapin(['build', ...seed, '-o', 'type=foo', EXAMPLE], { env, cwd: work }), 2, 'lapin: error: --output type=foo is not supported (use type=oci, type=docker, type=local or type=registry)');
    oneLine(await lapin(['build', ...seed, '-o', '', EXAMPLE], { env, cwd: work }), 2, 'lapin: error: --output needs a value (e.g. -o type=oci,dest=image.tar, -o image.tar or -o type=docker)');
    assert.deepEqual(execFileSync('ls', ['-A', work], { encoding: 'utf8' }).split('\n').filter((f) => f.endsWith('.tar')), []);
  });
  test("buildx's output fields that are build-wide flags in lapin name the flag", () => {
    for (const [spec, hint] of [
      ['type=oci,dest=z.tar,compression=zstd', 'lapin compresses every output alike: use --compression zstd'],
      ['type=image,push=true,compression-level=3', 'lapin compresses every output alike: use --compression-level 3'],
      ['type=oci,dest=z.tar,force-compression=true', 'lapin compresses every layer it writes as --compression says; drop it'],
      ['type=oci,dest=z.tar,annotation.org.opencontainers.image.title=net', 'use --annotation org.opencontainers.image.title=net'],
      ['type=oci,dest=z.tar,annotation-manifest.a=b', 'use --annotation a=b'],
      ['type=oci,dest=z.tar,annotation[linux/amd64].a=b', 'use --annotation a=b'],
      ['type=registry,registry.insecure=true', 'use --insecure-registry HOST'],
      ['type=image,push=true,unpack=false', 'lapin keeps no image store; drop it, or use --load to hand the image to docker or containerd'],
      ['type=oci,dest=z.tar,xyz=1', 'lapin understands type, dest, tar, name, push and oci-mediatypes'],
    ] as const) {
      assert.throws(() => parseOutput(spec), (error: Error & { hint?: string }) => /^--output: unknown field "/.test(error.message) && error.hint === hint, spec);
    }
  });
  test("an archive type without dest goes to stdout, as buildx's (it was 'needs dest=PATH'); a directory one still needs dest", () => {
    assert.deepEqual(parseOutput('type=oci'), { type: 'oci', dest: '-', tar: true });
    assert.deepEqual(parseOutput('type=oci,dest=,name=a:1'), { type: 'oci', dest: '-', tar: true, names: ['a:1'] });
    assert.deepEqual(parseOutput('type=docker'), { type: 'load', engine: 'docker' });
    assert.throws(() => parseOutput('type=local'), /^UsageError: --output "type=local" needs dest=PATH$|needs dest=PATH/);
    assert.throws(() => parseOutput('type=oci,tar=false'), /needs dest=PATH/);
    assert.throws(() => parseOutput('type=local,dest=-'), /type=local writes a directory, not stdout/);
    assert.throws(() => parseOutput('type=oci,tar=false,dest=-'), /tar=false writes a directory, not stdout/);
  });
  test('-o type=oci into a pipe writes the archive -o FILE writes; two outputs on stdout are exit 2 before anything is read', async () => {
    const file = path.join(work, 'stdout-ref.tar');
    const toFile = spawnSync(process.execPath, [...CLI, 'build', ...seed, '-t', 'urunc/net:1', '-o', file, EXAMPLE], { cwd: work, env: { ...process.env, ...env } });
    assert.equal(toFile.status, 0, toFile.stderr.toString());
    const piped = spawnSync(process.execPath, [...CLI, 'build', ...seed, '-t', 'urunc/net:1', '-o', 'type=oci', EXAMPLE], { cwd: work, env: { ...process.env, ...env }, maxBuffer: 1 << 24 });
    assert.equal(piped.status, 0, piped.stderr.toString());
    assert.ok(piped.stdout.equals(await readFile(file)), 'the archive on stdout differs from the file');
    for (const outputs of [['-o', '-', '-o', 'type=oci'], ['-o', 'type=oci,dest=-', '-o', `type=oci,dest=${path.join(work, 'x.tar')}`, '-o', '-']]) {
      const both = spawnSync(process.execPath, [...CLI, 'build', ...seed, ...outputs, EXAMPLE], { cwd: work, env: { ...process.env, ...env } });
      oneLine({ status: both.status, stderr: both.stderr.toString() }, 2, 'lapin: error: several outputs write to stdout (dest=-) (keep one there and write the others to files, e.g. -o image.tar)');
      assert.equal(both.stdout.length, 0);
      assert.doesNotMatch(both.stderr.toString(), /=> read/);
    }
    oneLine(await lapin(['build', ...seed, '-o', 'type=local,dest=-', EXAMPLE], { env, cwd: work }), 2, 'lapin: error: --output "type=local,dest=-": type=local writes a directory, not stdout (name a directory, e.g. dest=rootfs, or write the image archive to stdout with -o -)');
  });
  test('with no -t, the result line and --metadata-file name the image by the outputs\' name= (it was "built (no name)", image.name "")', async () => {
    const meta = path.join(work, 'named-meta.json');
    const built = await lapin(['build', ...seed, '--progress', 'plain', '--metadata-file', meta, '-o', `type=oci,dest=${path.join(work, 'only-named.tar')},name=a:1`, EXAMPLE], { env, cwd: work });
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, /^=> built docker\.io\/library\/a:1 for linux\/amd64$/m);
    assert.equal((JSON.parse(await readFile(meta, 'utf8')) as Record<string, string>)['image.name'], 'docker.io/library/a:1');
  });
  test('an archive written with name= holds the image under that name, not the -t one', async () => {
    const out = path.join(work, 'named.tar');
    const built = await lapin(['build', ...seed, '-t', 'urunc/other:1', '-o', `type=oci,dest=${out},name=named:1`, EXAMPLE], { env, cwd: work });
    assert.equal(built.status, 0, built.stderr);
    const manifest = JSON.parse(execFileSync('tar', ['-xOf', out, 'manifest.json'], { encoding: 'utf8' })) as Array<{ RepoTags: string[] }>;
    assert.deepEqual(manifest[0]?.RepoTags, ['docker.io/library/named:1']);
    const index = execFileSync('tar', ['-xOf', out, 'index.json'], { encoding: 'utf8' });
    assert.match(index, /docker\.io\/library\/named:1/);
    assert.doesNotMatch(index, /other/);
  });
});

describe("buildx's boolean flags with a value, and a bare --pull", () => {
  test('normalized before parsing; after -- nothing changes', () => {
    assert.deepEqual(normalizeLoadFlag(['build', '--push=true', '--load=false', '--no-cache=true', '--pull', '.']), ['build', '--push', '--no-cache', '--pull=always', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '--pull', 'never', '--push=false', '--pull=true', '.']), ['build', '--pull', 'never', '--pull=always', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '.', '--pull']), ['build', '.', '--pull=always']);
    assert.deepEqual(normalizeLoadFlag(['run', 'x.tar', '--', '--push=true']), ['run', 'x.tar', '--', '--push=true']);
    // The last one written wins, as in buildx, and any Go boolean (strconv.ParseBool) is one.
    assert.deepEqual(normalizeLoadFlag(['build', '--push', '--push=false', '.']), ['build', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '--push=0', '--push=True', '--no-cache=1', '--load=F', '.']), ['build', '--push', '--no-cache', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '--load=containerd,namespace=k8s.io', '--load', '.']), ['build', '--load=docker', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '--load', '--load=containerd', '.']), ['build', '--load=containerd', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '--pull=1', '.']), ['build', '--pull=always', '.']);
    assert.deepEqual(normalizeLoadFlag(['build', '.', '--', '--push']), ['build', '.', '--', '--push']);
  });
  test('--push=true pushes (without a name: the push names its missing -t), --push=false and --load=false do not', async () => {
    oneLine(await lapin(['build', ...seed, '--push=true', EXAMPLE], { env, cwd: work }), 2, 'lapin: error: pushing needs an image name (add -t REGISTRY/NAME:TAG)');
    const out = path.join(work, 'bools.tar');
    const built = await lapin(['build', ...seed, '--push=false', '--load=false', '--no-cache=true', '--pull', '-o', out, EXAMPLE], { env, cwd: work });
    assertNoStack(built.stderr);
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, /wrote oci archive to .*bools\.tar/);
    assert.doesNotMatch(built.stderr, /push|load/i);
  });
  test('lapin imagetools inspect: lapin inspect is named', async () => {
    oneLine(await lapin(['imagetools', 'inspect', 'x'], { env, cwd: work }), 2, "lapin: error: unknown command 'inspect' (lapin inspect SOURCE reads image indexes too)");
  });
});

const registrySkip = registrySkipReason();
describe("bunny's docs/annotations.md buildx command, with lapin", { skip: registrySkip }, () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry('anonymous');
  });
  after(async () => {
    await registry.stop();
  });
  test('--output "type=image,oci-mediatypes=true" -f FILE -t NAME --push=true CONTEXT pushes the image with its annotations', async () => {
    const name = `${registry.host}/urunc/annotated:1`;
    const built = await lapin(['build', '--output', 'type=image,oci-mediatypes=true', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', name, '--push=true', EXAMPLE], { env, cwd: work });
    assertNoStack(built.stderr);
    assert.equal(built.status, 0, built.stderr);
    const manifest = (await skopeoInspect(name, '--raw')) as { mediaType: string; annotations: Record<string, string> };
    assert.equal(manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(manifest.annotations['com.urunc.unikernel.unikernelType'], 'mirage');
  });
});

const dockerSkip = requireConsumers(['docker']);
describe("bunny's README output, --output type=docker,name=NAME: loaded under that name", { skip: dockerSkip }, () => {
  test('docker has the image under the name= name', async () => {
    await startServices();
    const { dockerBin, dockerHost } = servicesEnv();
    const unique = randomBytes(4).toString('hex');
    const name = `lapin-buildx-forms/built-by-bunny:${unique}`;
    // A label of its own: an image of its own, with no other test's names.
    const built = await lapin(['build', ...seed, '--label', `org.example.test=${unique}`, '--output', `type=docker,name=${name}`, EXAMPLE], { env: { ...env, DOCKER_HOST: dockerHost }, cwd: work });
    assertNoStack(built.stderr);
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, new RegExp(`loaded into docker as ${name.replace(/[/.]/g, '\\$&')}`));
    try {
      const tags = execFileSync(dockerBin, ['-H', dockerHost, 'image', 'inspect', '--format', '{{json .RepoTags}}', name], { encoding: 'utf8' });
      assert.deepEqual(JSON.parse(tags), [name]);
    } finally {
      execFileSync(dockerBin, ['-H', dockerHost, 'rmi', name], { stdio: 'ignore' });
    }
  });
});
