// bunny's own examples (nubificus/bunny @ 64e1010: README.md and examples/*.md)
// and bunix's args.nix (nubificus/bunix @ 0eae14f), as those files write them,
// in test/fixtures/bunny-examples/ (README there says which block each is).
// Each is built and inspected as a bunny user would, and the values, files and
// command line are what bunny's packing rules give (hops/package.go,
// ../shared/reference/urunc-images.md §2). The kernels and files are stand-ins
// written here; the unikraft.org images are stand-ins in a test docker-registry.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fakeElfKernel, writeOciArchive } from '../helpers/hand-image.js';
import { solo5Elf } from '../helpers/solo5-elf.js';
import { registrySkipReason, skopeoPush, startRegistry, type TestRegistry } from '../registry/harness.js';
import { assertNoStack, isolatedEnv, lapin } from '../registry/helpers.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/bunny-examples');
const SBIN = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const skip = registrySkipReason() ?? (SBIN.split(':').some((d) => existsSync(path.join(d, 'cpio'))) ? undefined : 'needs cpio');

let work: string;
let registry: TestRegistry;
let env: NodeJS.ProcessEnv;
let standIns: Record<string, Buffer | string>;

/** newc cpio of `files`, made with cpio (bunny's example uses bsdcpio --format newc). */
function cpioOf(name: string, files: Record<string, Buffer>): Buffer {
  const dir = path.join(work, `cpio-${name}`);
  execFileSync('mkdir', ['-p', dir]);
  for (const [file, body] of Object.entries(files)) execFileSync('tee', [path.join(dir, file)], { input: body, stdio: ['pipe', 'ignore', 'inherit'] });
  return execFileSync('sh', ['-c', 'find . | cpio --quiet -H newc -o'], { cwd: dir, env: { ...process.env, PATH: SBIN } });
}

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin bunny examples '));
  env = isolatedEnv(work);
  registry = await startRegistry('anonymous');
  standIns = {
    chttp: fakeElfKernel(),
    'rootfs.cpio': cpioOf('chttp', { chttp: fakeElfKernel() }),
    'initramfs-x86_64.cpio': cpioOf('server', { server: fakeElfKernel() }),
    kernel: fakeElfKernel(),
    'redis.hvt': solo5Elf({ abi: 'hvt', devices: [{ name: 'tap', type: 'net' }, { name: 'rootfs', type: 'block' }] }),
    'hello1.hvt': solo5Elf({ abi: 'hvt', devices: [] }),
    'conf/redis.conf': 'port 6379\n',
  };
  const unikraft = [{ name: 'unikraft/', type: 'directory' as const }, { name: 'unikraft/bin/', type: 'directory' as const }, { name: 'unikraft/bin/kernel', body: fakeElfKernel(), mode: 0o755 }];
  for (const [name, files] of [
    ['unikraft.org/base:latest', unikraft],
    ['unikraft.org/nginx:1.15', [...unikraft, { name: 'nginx/', type: 'directory' as const }, { name: 'nginx/conf/', type: 'directory' as const }, { name: 'nginx/conf/nginx.conf', body: 'events {}\n' }]],
  ] as const) {
    const archive = path.join(work, `${name.replace(/\W/g, '_')}.tar`);
    await writeOciArchive(archive, { gzip: true, layers: [[...files]] });
    await skopeoPush(archive, `${registry.host}/${name}`);
  }
});

after(async () => {
  if (skip) return;
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

interface InspectJson {
  runnable: boolean;
  values: { annotations: { values: Record<string, string> }; labels: { values: Record<string, string> } };
  files: Array<{ key: string; path: string; exists: boolean; type?: string }>;
  commandLine: { cmdline?: string; processArgs: string[]; consistent: boolean };
  errors: Array<{ message: string }>;
}

/** A context: the fixture (its unikraft.org references pointed at the registry) and the stand-ins it names. */
async function context(example: string): Promise<{ dir: string; file: string }> {
  const dir = path.join(work, 'contexts', example);
  await cp(path.join(FIXTURES, example), dir, { recursive: true });
  const [name] = await readdir(dir);
  const file = path.join(dir, name as string);
  const text = await readFile(file, 'utf8');
  await writeFile(file, text.replace(/unikraft\.org\//g, `${registry.host}/unikraft.org/`));
  for (const [standIn, body] of Object.entries(standIns)) {
    if (!text.includes(standIn.split('/')[0] as string)) continue;
    await mkdir(path.dirname(path.join(dir, standIn)), { recursive: true });
    await writeFile(path.join(dir, standIn), body);
    if (!standIn.endsWith('.conf')) await chmod(path.join(dir, standIn), 0o755);
  }
  return { dir, file };
}

/** `lapin build -f FILE -t TAG .` in the context, as bunny's examples run `docker build`, then `lapin inspect --json`. */
async function buildAndInspect(example: string, tag: string): Promise<{ report: InspectJson; names: string[] }> {
  const { dir, file } = await context(example);
  const built = await lapin(['build', '-f', path.basename(file), '-t', tag, '.'], { env, cwd: dir });
  assertNoStack(built.stderr);
  assert.equal(built.status, 0, `lapin build of ${example}:\n${built.stderr}`);
  const archive = path.join(dir, `${tag.replace(/^.*\//, '').replace(':', '-')}.tar`);
  const inspected = await lapin(['inspect', '--json', archive], { env });
  assertNoStack(inspected.stderr);
  const report = JSON.parse(inspected.stdout) as InspectJson;
  assert.equal(inspected.status, 0, `lapin inspect of ${example}: ${JSON.stringify(report.errors)}`);
  assert.equal(report.runnable, true);
  return { report, names: layerNames(archive) };
}

/** Every path in the image's layers (tar's listing). */
function layerNames(archive: string): string[] {
  const dir = `${archive}.d`;
  execFileSync('mkdir', ['-p', dir]);
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const blob = (digest: string): string => path.join(dir, 'blobs/sha256', digest.replace('sha256:', ''));
  const index = JSON.parse(execFileSync('cat', [path.join(dir, 'index.json')], { encoding: 'utf8' })) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(execFileSync('cat', [blob((index.manifests[0] as { digest: string }).digest)], { encoding: 'utf8' })) as { layers: Array<{ digest: string }> };
  return manifest.layers.flatMap((layer) => execFileSync('tar', ['-tzf', blob(layer.digest)], { encoding: 'utf8' }).split('\n')).filter((n) => n !== '').map((n) => n.replace(/^\.?\//, '').replace(/\/$/, ''));
}

function assertValues(report: InspectJson, expected: Record<string, string | undefined>): void {
  for (const where of ['annotations', 'labels'] as const) {
    const values = report.values[where].values;
    for (const [key, value] of Object.entries(expected)) assert.equal(values[key], value, `${where} ${key} in ${JSON.stringify(values)}`);
  }
}

function assertFile(report: InspectJson, key: string, type: string): void {
  const file = report.files.find((f) => f.key === key);
  assert.ok(file?.exists, `${key} is in the image: ${JSON.stringify(report.files)}`);
  assert.equal(file.type, type);
}

const unikraftQemu = { unikernelType: 'unikraft', hypervisor: 'qemu' };

describe('bunny examples/CHTTP_Unikraft.md: the kernel from unikraft.org/base, chttp in an initrd', { skip }, () => {
  test('the bunnyfile: rootfs from scratch with include becomes an initrd at /.boot/rootfs (unikraft\'s default type)', async () => {
    const { report } = await buildAndInspect('chttp-unikraft-bunnyfile', 'harbor.nbfc.io/nubificus/urunc/chttp-unikraft-qemu:test');
    assertValues(report, { ...unikraftQemu, binary: '/unikraft/bin/kernel', initrd: '/.boot/rootfs', unikernelVersion: '0.18.0', mountRootfs: 'false', cmdline: '/chttp' });
    assertFile(report, 'binary', 'elf');
    assertFile(report, 'initrd', 'cpio-newc');
    assert.deepEqual(report.commandLine.processArgs, ['/chttp']);
  });
  test('the Containerfile: FROM unikraft.org/base with rootfs.cpio copied in, CMD ["/chttp"]', async () => {
    const { report, names } = await buildAndInspect('chttp-unikraft-containerfile', 'harbor.nbfc.io/nubificus/urunc/chttp-unikraft-qemu:test');
    assertValues(report, { ...unikraftQemu, binary: '/unikraft/bin/kernel', initrd: '/rootfs.cpio', cmdline: '/chttp' });
    assertFile(report, 'initrd', 'cpio-newc');
    assert.deepEqual(report.commandLine.processArgs, ['/chttp']);
    assert.ok(names.includes('unikraft/bin/kernel') && names.includes('rootfs.cpio'));
  });
});

describe('bunny examples/Nginx_Unikraft.md: unikraft.org/nginx:1.15 reused with urunc values', { skip }, () => {
  for (const example of ['nginx-unikraft-bunnyfile', 'nginx-unikraft-containerfile']) {
    test(`${example}: the base image's kernel and files, cmd ["-c", "/nginx/conf/nginx.conf"]`, async () => {
      const { report, names } = await buildAndInspect(example, 'harbor.nbfc.io/nubificus/urunc/nginx-unikraft-qemu:test');
      assertValues(report, { ...unikraftQemu, binary: '/unikraft/bin/kernel', cmdline: '-c /nginx/conf/nginx.conf' });
      assert.deepEqual(report.commandLine.processArgs, ['-c', '/nginx/conf/nginx.conf']);
      assert.ok(names.includes('nginx/conf/nginx.conf'));
    });
  }
});

describe('bunny examples/Redis_Rumprun.md: Rumprun on Solo5-hvt with the container rootfs', { skip }, () => {
  test('the bunnyfile: conf/ included at /conf in the image rootfs, mountRootfs=true', async () => {
    const { report, names } = await buildAndInspect('redis-rumprun-bunnyfile', 'harbor.nbfc.io/nubificus/urunc/redis-rumprun-hvt:test');
    assertValues(report, { unikernelType: 'rumprun', hypervisor: 'hvt', binary: '/.boot/kernel', mountRootfs: 'true', cmdline: 'redis-server /data/conf/redis.conf' });
    assert.ok(names.includes('conf/redis.conf'), names.join(', '));
  });
  test('the Containerfile: COPY /conf / copies the directory\'s contents to /, as docker build does', async () => {
    const { report, names } = await buildAndInspect('redis-rumprun-containerfile', 'harbor.nbfc.io/nubificus/urunc/redis-rumprun-hvt:test');
    assertValues(report, { unikernelType: 'rumprun', hypervisor: 'hvt', binary: '/unikernel/redis.hvt', mountRootfs: 'true', cmdline: 'redis-server /data/conf/redis.conf' });
    assert.ok(names.includes('redis.conf') && !names.includes('conf/redis.conf'), names.join(', '));
  });
});

describe('bunny README.md', { skip }, () => {
  test('the httpc bunnyfile: a local initramfs cpio (no type: unikraft\'s initrd), cmd ["/server"]', async () => {
    const { report } = await buildAndInspect('httpc-unikraft-bunnyfile', 'harbor.nbfc.io/nubificus/urunc/httpc-unikraft-qemu:test');
    assertValues(report, { ...unikraftQemu, binary: '/.boot/kernel', initrd: '/.boot/rootfs', unikernelVersion: '0.17.0', cmdline: '/server' });
    assertFile(report, 'initrd', 'cpio-newc');
  });
  // A schematic of every field, not a file to build: its placeholder is named first, and with
  // the placeholder filled in, the include beside from: local, which bunny refuses too.
  test('the field reference bunnyfile is refused at its placeholder, then where bunny refuses it', async () => {
    const { dir, file } = await context('bunnyfile-reference');
    const first = await lapin(['build', '-f', 'bunnyfile', '-t', 'x:1', '.'], { env, cwd: dir });
    assertNoStack(first.stderr);
    assert.equal(first.status, 1);
    assert.match(first.stderr, /^lapin: error: bunnyfile:16:13: include from "<nginx:latest>" is neither "local" nor a valid image reference \(.+\)\n$/);
    await writeFile(file, (await readFile(file, 'utf8')).replace('<nginx:latest>', 'nginx:latest'));
    const second = await lapin(['build', '-f', 'bunnyfile', '-t', 'x:1', '.'], { env, cwd: dir });
    assertNoStack(second.stderr);
    assert.equal(second.status, 1);
    assert.equal(second.stderr, 'lapin: error: bunnyfile:14:3: rootfs.include cannot be combined with rootfs.from: local (bunny refuses this too: drop from and path to build the rootfs from the included files, or drop include to use the local file as it is)\n');
  });
});

describe('bunix args.nix', { skip }, () => {
  test('hello-rumprun: the empty annotations are left unset, the name and tag come from the file', async () => {
    const { dir } = await context('bunix-args-nix');
    const built = await lapin(['build', '.'], { env, cwd: dir });
    assertNoStack(built.stderr);
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, /built docker\.io\/library\/hello-rumprun:latest/);
    const inspected = await lapin(['inspect', '--json', path.join(dir, 'hello-rumprun-latest.tar')], { env });
    const report = JSON.parse(inspected.stdout) as InspectJson;
    assert.equal(inspected.status, 0, JSON.stringify(report.errors));
    assertValues(report, { unikernelType: 'rumprun', hypervisor: 'hvt', binary: '/unikernel/hello.hvt', cmdline: 'hello', initrd: undefined, block: undefined, blkMntPoint: undefined, useDMBlock: undefined, unikernelVersion: undefined });
    assertFile(report, 'binary', 'elf');
  });
});
