// Every packaging example of urunc's own docs (urunc-dev/urunc @ efbd251b:
// docs/package/pre-built.md, rootfs.md, reuse.md and
// docs/tutorials/existing-container-linux.md), as the docs write them, in
// test/fixtures/urunc-docs/ (README there says which block each file is).
// The kernels and files are stand-ins written here; the registry images the
// examples name are stand-ins pushed to a test docker-registry, and the
// references are pointed there at test time. Each example must build and
// pass `lapin inspect`, with the values and files the doc says the image has.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fakeElfKernel, writeOciArchive, type HandImage } from '../helpers/hand-image.js';
import { solo5Elf } from '../helpers/solo5-elf.js';
import { registrySkipReason, skopeoPush, startRegistry, type TestRegistry } from '../registry/harness.js';
import { assertNoStack, isolatedEnv, lapin } from '../registry/helpers.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/urunc-docs');
const SBIN = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const skip = registrySkipReason() ?? (['cpio', 'mke2fs'].every((tool) => SBIN.split(':').some((d) => existsSync(path.join(d, tool)))) ? undefined : 'needs cpio and e2fsprogs');

let work: string;
let registry: TestRegistry;
let env: NodeJS.ProcessEnv;

/** The doc's image references, pointed at the test registry. */
function pointAtRegistry(text: string): string {
  const host = registry.host;
  return text
    .replace(/harbor\.nbfc\.io\/nubificus\/urunc\//g, `${host}/nubificus/urunc/`)
    .replace(/harbor\.nbfc\.io\/nubificus\/urunit:latest/g, `${host}/nubificus/urunit:latest`)
    .replace(/unikraft\.org\/nginx:1\.15/g, `${host}/unikraft.org/nginx:1.15`)
    .replace(/redis\/urunit:alpine/g, `${host}/redis/urunit:alpine`)
    .replace(/(from: |FROM )redis:alpine/g, `$1${host}/library/redis:alpine`);
}

async function pushStandIn(name: string, image: HandImage): Promise<void> {
  const file = path.join(work, `${name.replace(/\W/g, '_')}.tar`);
  await writeOciArchive(file, { gzip: true, ...image });
  await skopeoPush(file, `${registry.host}/${name}`);
}

/** newc cpio of `files`, made with cpio as the docs make it (find . | cpio -H newc -o). */
async function cpioOf(name: string, files: Record<string, string | Buffer>): Promise<Buffer> {
  const dir = path.join(work, `cpio-${name}`);
  for (const [file, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), body);
  }
  return execFileSync('sh', ['-c', 'find . | cpio --quiet -H newc -o'], { cwd: dir, env: { ...process.env, PATH: SBIN } });
}

/** The stand-ins for the files the examples copy, by the names the docs use. */
async function standIns(): Promise<Record<string, Buffer | string>> {
  const extDir = path.join(work, 'ext-tree');
  await mkdir(path.join(extDir, 'usr/sbin'), { recursive: true });
  await writeFile(path.join(extDir, 'usr/sbin/nginx'), '#!/bin/sh\n');
  await writeFile(path.join(extDir, 'urunit'), fakeElfKernel());
  const ext = path.join(work, 'nginx_rootfs.ext2');
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext2', '-d', extDir, ext, '8M'], { env: { ...process.env, PATH: SBIN } });
  return {
    // The mirage network example declares one Solo5 network device, "service".
    'network.hvt': solo5Elf({ abi: 'hvt', devices: [{ name: 'service', type: 'net' }] }),
    'redis.hvt': solo5Elf({ abi: 'hvt', devices: [{ name: 'tap', type: 'net' }, { name: 'rootfs', type: 'block' }] }),
    'redis-qemu-x86_64-initrd_qemu-x86_64': fakeElfKernel(),
    'app-elfloader-qemu-x86_64-initrd_qemu-x86_64': fakeElfKernel(),
    'nginx-qemu-x86_64-initrd_qemu-x86_64': fakeElfKernel(),
    'redis.conf': 'port 6379\n',
    'rootfs.cpio': await cpioOf('chttp', { chttp: fakeElfKernel() }),
    'rootfs.initrd': await cpioOf('whoami', { urunit: fakeElfKernel(), whoami: fakeElfKernel() }),
    bzImage: fakeElfKernel(),
    vmlinux: fakeElfKernel(),
    'nginx_rootfs.ext2': await readFile(ext),
  };
}

let files: Record<string, Buffer | string>;

before(async () => {
  if (skip) return;
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-urunc-docs-'));
  env = isolatedEnv(work);
  registry = await startRegistry('anonymous');
  files = await standIns();
  await pushStandIn('unikraft.org/nginx:1.15', {
    layers: [[{ name: 'unikraft/', type: 'directory' }, { name: 'unikraft/bin/', type: 'directory' }, { name: 'unikraft/bin/kernel', body: fakeElfKernel(), mode: 0o755 }, { name: 'nginx/', type: 'directory' }, { name: 'nginx/conf/', type: 'directory' }, { name: 'nginx/conf/nginx.conf', body: 'events {}\n' }]],
    labels: { 'org.unikraft.kernel': '/unikraft/bin/kernel' },
  });
  for (const monitor of ['qemu', 'firecracker']) {
    await pushStandIn(`nubificus/urunc/linux-kernel-${monitor}:v6.14`, { layers: [[{ name: 'kernel', body: fakeElfKernel() }]] });
  }
  await pushStandIn('nubificus/urunit:latest', { layers: [[{ name: 'urunit', body: fakeElfKernel(), mode: 0o755 }]] });
  // bunny's kernel image for a Containerfile's Linux guest holds the kernel at /.boot/kernel.
  await pushStandIn('nubificus/bunny/linux-kernel-qemu:latest', { layers: [[{ name: '.boot/', type: 'directory' }, { name: '.boot/kernel', body: fakeElfKernel() }]] });
  await pushStandIn('library/redis:alpine', {
    layers: [[{ name: 'etc/', type: 'directory' }, { name: 'etc/alpine-release', body: '3.20.0\n' }, { name: 'usr/', type: 'directory' }, { name: 'usr/local/', type: 'directory' }, { name: 'usr/local/bin/', type: 'directory' }, { name: 'usr/local/bin/redis-server', body: fakeElfKernel(), mode: 0o755 }]],
    entrypoint: ['docker-entrypoint.sh'],
    cmd: ['redis-server'],
  });
});

after(async () => {
  if (skip) return;
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

/** A build context: the fixture, references pointed at the registry, and the stand-ins it names. */
async function context(example: string): Promise<{ dir: string; file: string }> {
  const dir = path.join(work, 'contexts', example);
  await rm(dir, { recursive: true, force: true });
  await cp(path.join(FIXTURES, example), dir, { recursive: true });
  const [name] = await readdir(dir);
  const file = path.join(dir, name as string);
  const text = await readFile(file, 'utf8');
  await writeFile(file, pointAtRegistry(text));
  for (const [standIn, body] of Object.entries(files)) {
    if (text.includes(standIn)) {
      await writeFile(path.join(dir, standIn), body);
      if (!standIn.includes('.conf')) await chmod(path.join(dir, standIn), 0o755);
    }
  }
  return { dir, file };
}

interface InspectJson {
  runnable: boolean;
  values: { annotations: { values: Record<string, string> } };
  files: Array<{ key: string; path: string; exists: boolean; type?: string }>;
  errors: Array<{ message: string }>;
}

async function buildAndInspect(example: string, tag: string, extra: string[] = []): Promise<{ report: InspectJson; out: string }> {
  const { dir, file } = await context(example);
  const out = path.join(work, `${example}.tar`);
  const built = await lapin(['build', '-f', file, '-t', tag, '-o', `type=oci,dest=${out}`, ...extra, dir], { env, cwd: dir });
  assertNoStack(built.stderr);
  assert.equal(built.status, 0, `lapin build of ${example}:\n${built.stderr}`);
  const inspected = await lapin(['inspect', '--json', out], { env });
  assertNoStack(inspected.stderr);
  const report = JSON.parse(inspected.stdout) as InspectJson;
  assert.equal(inspected.status, 0, `lapin inspect of ${example}: ${JSON.stringify(report.errors)}`);
  assert.equal(report.runnable, true);
  return { report, out };
}

/** The layer paths of the image in an OCI archive, with tar's help. */
function imageFiles(archive: string): string[] {
  const dir = path.join(work, `unpacked-${path.basename(archive)}`);
  execFileSync('mkdir', ['-p', dir]);
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const index = JSON.parse(execFileSync('cat', [path.join(dir, 'index.json')], { encoding: 'utf8' })) as { manifests: Array<{ digest: string }> };
  const blob = (digest: string): string => path.join(dir, 'blobs/sha256', digest.replace('sha256:', ''));
  const manifest = JSON.parse(execFileSync('cat', [blob((index.manifests[0] as { digest: string }).digest)], { encoding: 'utf8' })) as { layers: Array<{ digest: string }> };
  const names: string[] = [];
  for (const layer of manifest.layers) names.push(...execFileSync('tar', ['-tzf', blob(layer.digest)], { encoding: 'utf8' }).split('\n').filter((l) => l !== ''));
  return names.map((n) => n.replace(/^\.?\//, '').replace(/\/$/, ''));
}

function assertValues(report: InspectJson, expected: Record<string, string>): void {
  const values = report.values.annotations.values;
  for (const [key, value] of Object.entries(expected)) assert.equal(values[key], value, `${key} in ${JSON.stringify(values)}`);
}

function assertFile(report: InspectJson, key: string, type?: string): void {
  const file = report.files.find((f) => f.key === key);
  assert.ok(file?.exists, `${key} is in the image: ${JSON.stringify(report.files)}`);
  if (type) assert.equal(file.type, type);
}

const mirage = { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/unikernel/network.hvt' };

describe('urunc docs: docs/package/pre-built.md', { skip }, () => {
  test('the bunnyfile: a MirageOS unikernel on Solo5-hvt, x86, network.hvt, no command line', async () => {
    const { report } = await buildAndInspect('pre-built-bunnyfile', 'urunc/prebuilt/network-mirage-hvt:test');
    assertValues(report, { unikernelType: 'mirage', hypervisor: 'hvt', cmdline: '' });
    assertFile(report, 'binary', 'elf');
  });
  test('the Containerfile: the binary copied to /unikernel/network.hvt, the values as labels', async () => {
    const { report, out } = await buildAndInspect('pre-built-containerfile', 'urunc/prebuilt/network-mirage-hvt:test');
    assertValues(report, { ...mirage, cmdline: '', useDMBlock: 'false' });
    assert.ok(imageFiles(out).includes('unikernel/network.hvt'));
  });
  test('args.nix: the files and every annotation as given', async () => {
    const { report } = await buildAndInspect('pre-built-nix', 'ignored:1');
    assertValues(report, { ...mirage, cmdline: '', useDMBlock: 'false' });
    assertFile(report, 'binary', 'elf');
  });
});

describe('urunc docs: docs/package/index.md', { skip }, () => {
  const nginx = { unikernelType: 'unikraft', hypervisor: 'qemu', cmdline: 'nginx -c /nginx/conf/nginx.conf' };
  test('the Dockerfile-like file: a local Nginx Unikraft kernel and rootfs.cpio under /unikernel', async () => {
    const { report } = await buildAndInspect('package-index-containerfile', 'nubificus/urunc/nginx-unikraft-qemu:test');
    assertValues(report, { ...nginx, binary: '/unikernel/kernel', initrd: '/unikernel/initrd' });
    assertFile(report, 'initrd', 'cpio-newc');
  });
  test('the bunnyfile: rootfs.cpio from local with no type is unikraft\'s initrd, at /.boot/rootfs', async () => {
    const { report } = await buildAndInspect('package-index-bunnyfile', 'nubificus/urunc/nginx-unikraft-qemu:test');
    assertValues(report, { ...nginx, binary: '/.boot/kernel', initrd: '/.boot/rootfs', mountRootfs: 'false' });
    assertFile(report, 'initrd', 'cpio-newc');
  });
  test('the bunix args.nix: the empty unikernelVersion, block and blkMntPoint are left unset', async () => {
    const { report } = await buildAndInspect('package-index-nix', 'ignored:1');
    assertValues(report, { ...nginx, binary: '/unikernel/kernel', initrd: '/unikernel/initrd' });
    const values = report.values.annotations.values;
    for (const key of ['unikernelVersion', 'block', 'blkMntPoint']) assert.equal(values[key], undefined, key);
  });
  test('the annotated syntax of a bunnyfile is refused where bunny refuses it: include with rootfs from: local', async () => {
    const { dir, file } = await context('package-index-reference');
    const built = await lapin(['build', '-f', file, '-t', 'x:1', dir], { env, cwd: dir });
    assertNoStack(built.stderr);
    assert.equal(built.status, 1);
    assert.match(built.stderr, /^lapin: error: bunnyfile:14:3: rootfs\.include cannot be combined with rootfs\.from: local \(bunny refuses this too: .+\)\n$/);
  });
});

describe('urunc docs: docs/package/rootfs.md', { skip }, () => {
  test('an initrd built from include: Unikraft on Qemu, redis.conf at /conf/redis.conf in the initrd', async () => {
    const { report, out } = await buildAndInspect('rootfs-initrd-bunnyfile', 'urunc/prebuilt/redis-unikraft-qemu:test');
    assertValues(report, { unikernelType: 'unikraft', hypervisor: 'qemu', cmdline: 'redis-server /conf/redis.conf' });
    assertFile(report, 'initrd', 'cpio-newc');
    const initrd = report.values.annotations.values.initrd as string;
    const dir = path.join(work, 'initrd-out');
    await mkdir(dir, { recursive: true });
    execFileSync('tar', ['-xf', out, '-C', dir]);
    const listing = execFileSync('sh', ['-c', `for l in blobs/sha256/*; do tar -xzf "$l" -O ${JSON.stringify(initrd.replace(/^\//, ''))} 2>/dev/null; done | cpio --quiet -t`], { cwd: dir, encoding: 'utf8', env: { ...process.env, PATH: SBIN } });
    assert.match(listing, /^(\.\/)?conf\/redis\.conf$/m);
  });
  for (const [example, expected] of [
    ['rootfs-raw-bunnyfile', { cmdline: 'redis-server /data/conf/redis.conf', useDMBlock: 'true' }],
    ['rootfs-raw-containerfile', { binary: '/unikernel/redis.hvt', cmdline: 'redis-server /data/conf/redis.conf', useDMBlock: 'true' }],
    ['rootfs-raw-nix', { binary: '/unikernel/redis.hvt', cmdline: 'hello', useDMBlock: 'true' }],
  ] as const) {
    test(`${example}: Rumprun on Solo5-hvt, redis.conf at /conf/redis.conf in the image rootfs, the snapshot as the block device`, async () => {
      const { report, out } = await buildAndInspect(example, 'urunc/prebuilt/redis-rumprun-hvt:test');
      assertValues(report, { unikernelType: 'rumprun', hypervisor: 'hvt', mountRootfs: 'true', ...expected });
      assert.ok(imageFiles(out).includes('conf/redis.conf'));
    });
  }
  for (const [example, expected] of [
    ['rootfs-local-cpio-bunnyfile', {}],
    ['rootfs-local-cpio-containerfile', { binary: '/unikernel/kernel', initrd: '/unikernel/rootfs.cpio' }],
    ['rootfs-local-cpio-nix', { binary: '/unikernel/kernel', initrd: '/unikernel/rootfs.cpio' }],
  ] as const) {
    test(`${example}: Unikraft on Qemu with the pre-built rootfs.cpio as its initrd and /chttp`, async () => {
      const { report } = await buildAndInspect(example, 'urunc/prebuilt/chttp-unikraft-qemu:test');
      assertValues(report, { unikernelType: 'unikraft', hypervisor: 'qemu', cmdline: '/chttp', ...expected });
      assertFile(report, 'initrd', 'cpio-newc');
    });
  }
});

describe('urunc docs: docs/package/reuse.md', { skip }, () => {
  test('the bunnyfile: the kernel /unikraft/bin/kernel from unikraft.org/nginx:1.15, with urunc values added', async () => {
    const { report } = await buildAndInspect('reuse-bunnyfile', 'urunc/reuse/nginx-unikraft-qemu:test');
    assertValues(report, { unikernelType: 'unikraft', hypervisor: 'qemu', cmdline: 'nginx -c /nginx/conf/nginx.conf' });
    assertFile(report, 'binary', 'elf');
  });
  test('the Containerfile: FROM unikraft.org/nginx:1.15 with the labels; the base files stay', async () => {
    const { report, out } = await buildAndInspect('reuse-containerfile', 'urunc/prebuilt/nginx-unikraft-qemu:test');
    assertValues(report, { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikraft/bin/kernel', cmdline: 'nginx -c /nginx/conf/nginx.conf' });
    assert.ok(imageFiles(out).includes('nginx/conf/nginx.conf'));
  });
});

describe('urunc docs: docs/tutorials/existing-container-linux.md', { skip }, () => {
  // Issue 12: both from images, as bunny's SetBaseAndGetPaths: redis:alpine is the base and the
  // kernel is copied out of its image to /.boot/kernel. redis:alpine's ENTRYPOINT
  // ["docker-entrypoint.sh"] stays, so cmdline follows the process args urunc >= 0.7 boots.
  test('the raw bunnyfile: redis:alpine as the container rootfs, the kernel copied from the kernel image', async () => {
    const { report, out } = await buildAndInspect('linux-raw-image-kernel', 'redis/apline/linux/qemu:latest');
    assertValues(report, { unikernelType: 'linux', hypervisor: 'qemu', mountRootfs: 'true', binary: '/.boot/kernel', cmdline: 'docker-entrypoint.sh /usr/local/bin/redis-server' });
    assertFile(report, 'binary', 'elf');
    for (const f of ['usr/local/bin/redis-server', '.boot/kernel']) assert.ok(imageFiles(out).includes(f), f);
  });
  test('the raw bunnyfile with urunit: redis/urunit:alpine as the container rootfs', async () => {
    await pushUrunitRootfs();
    const { report, out } = await buildAndInspect('linux-raw-urunit', 'redis/apline/linux/qemu:latest');
    assertValues(report, { unikernelType: 'linux', hypervisor: 'qemu', mountRootfs: 'true', binary: '/.boot/kernel' });
    for (const f of ['urunit', 'usr/local/bin/redis-server']) assert.ok(imageFiles(out).includes(f), f);
  });
  test('the local-kernel variant: redis:alpine as the container rootfs with bzImage', async () => {
    const { report, out } = await buildAndInspect('linux-raw-local-kernel', 'redis/apline/linux/qemu:latest');
    assertValues(report, { unikernelType: 'linux', hypervisor: 'qemu', mountRootfs: 'true', cmdline: 'docker-entrypoint.sh /usr/local/bin/redis-server' });
    assert.ok(imageFiles(out).includes('usr/local/bin/redis-server'));
  });

  let urunitPushed = false;
  async function pushUrunitRootfs(): Promise<void> {
    if (urunitPushed) return;
    const { dir, file } = await context('linux-urunit-rootfs');
    const pushed = await lapin(['build', ...guestImages(), '-f', file, '-t', `${registry.host}/redis/urunit:alpine`, '--push', dir], { env, cwd: dir });
    assert.equal(pushed.status, 0, pushed.stderr);
    urunitPushed = true;
  }

  /** bunny's default kernel and init images for a Containerfile's Linux guest, as stand-ins in the test registry. */
  function guestImages(): string[] {
    return ['--kernel-image', `${registry.host}/nubificus/bunny/linux-kernel-qemu:latest`, '--init-image', `${registry.host}/nubificus/urunit:latest`];
  }

  // The doc builds this one with plain `docker build` (no bunny #syntax line), as a container to
  // use as a rootfs. Under bunny 0.0.5's Containerfile defaults (issue 12) it is a Linux guest
  // itself: /urunit first in Entrypoint and a kernel from the kernel image.
  test('the urunit Containerfile: redis:alpine with /urunit copied from the urunit image, a Linux guest by bunny 0.0.5\'s defaults', async () => {
    const { report, out } = await buildAndInspect('linux-urunit-rootfs', 'redis/urunit:alpine', guestImages());
    assertValues(report, { unikernelType: 'linux', hypervisor: 'qemu', mountRootfs: 'true', binary: '/.boot/kernel', cmdline: '/urunit docker-entrypoint.sh redis-server' });
    const names = imageFiles(out);
    for (const f of ['urunit', 'usr/local/bin/redis-server', 'etc/alpine-release', '.boot/kernel']) assert.ok(names.includes(f), `${f} in ${names.join(', ')}`);
    await pushUrunitRootfs();
  });

  test('the block image Containerfile: Linux on Firecracker with /rootfs.ext2 mounted at /', async () => {
    // bunny 0.0.5 adds /urunit to a linux guest; the doc's cmdline already starts with it, so the args do once.
    const { report, out } = await buildAndInspect('linux-block-firecracker', 'nginx/apline/linux/firecracker:latest', guestImages());
    assertValues(report, { unikernelType: 'linux', hypervisor: 'firecracker', binary: '/kernel', block: '/rootfs.ext2', blkMntPoint: '/', cmdline: "/urunit /usr/sbin/nginx -g 'daemon off;error_log stderr debug;" });
    assertFile(report, 'block', 'ext');
    assert.ok(imageFiles(out).includes('rootfs.ext2'));
  });

  test('the initrd bunnyfile: Linux on Firecracker, the kernel from the kernel image, rootfs.initrd, /urunit /whoami', async () => {
    const { report } = await buildAndInspect('linux-initrd-firecracker', 'traefik/whoami/linux/firecracker:latest');
    assertValues(report, { unikernelType: 'linux', hypervisor: 'firecracker', cmdline: '/urunit /whoami' });
    assertFile(report, 'binary', 'elf');
    assertFile(report, 'initrd', 'cpio-newc');
  });
});

// The docs' own command, `docker build -f FILE -t TAG .`, typed with lapin in the example's
// directory: no -o (the archive is named after the tag, in the current directory, inside the
// context), then again with that archive in the context: the same image.
describe('urunc docs: each example as the doc types its build command, twice', { skip }, () => {
  const commands: Array<[string, string]> = [
    ['pre-built-bunnyfile', 'urunc/prebuilt/network-mirage-hvt:test'],
    ['pre-built-containerfile', 'urunc/prebuilt/network-mirage-hvt:test'],
    ['pre-built-nix', ''],
    ['package-index-containerfile', 'nubificus/urunc/nginx-unikraft-qemu:test'],
    ['package-index-bunnyfile', 'nubificus/urunc/nginx-unikraft-qemu:test'],
    ['package-index-nix', ''],
    ['rootfs-initrd-bunnyfile', 'urunc/prebuilt/redis-unikraft-qemu:test'],
    ['rootfs-raw-bunnyfile', 'urunc/prebuilt/redis-rumprun-hvt:test'],
    ['rootfs-raw-containerfile', 'urunc/prebuilt/redis-rumprun-hvt:test'],
    ['rootfs-raw-nix', ''],
    ['rootfs-local-cpio-bunnyfile', 'urunc/prebuilt/chttp-unikraft-qemu:test'],
    ['rootfs-local-cpio-containerfile', 'urunc/prebuilt/chttp-unikraft-qemu:test'],
    ['rootfs-local-cpio-nix', ''],
    ['reuse-bunnyfile', 'urunc/reuse/nginx-unikraft-qemu:test'],
    ['reuse-containerfile', 'urunc/prebuilt/nginx-unikraft-qemu:test'],
    ['linux-raw-image-kernel', 'redis/apline/linux/qemu:latest'],
    ['linux-raw-local-kernel', 'redis/apline/linux/qemu:latest'],
    ['linux-initrd-firecracker', 'traefik/whoami/linux/firecracker:latest'],
  ];
  for (const [example, tag] of commands) {
    test(`${example}: lapin build -f FILE${tag ? ` -t ${tag}` : ''} .`, async () => {
      const { dir, file } = await context(example);
      const typed = path.join(path.dirname(dir), `typed ${example}`);
      await rm(typed, { recursive: true, force: true });
      await cp(dir, typed, { recursive: true });
      const args = ['build', '-f', path.basename(file), ...(tag ? ['-t', tag] : []), '.'];
      const first = await lapin(args, { env, cwd: typed });
      assertNoStack(first.stderr);
      assert.equal(first.status, 0, first.stderr);
      const written = (await readdir(typed)).filter((f) => f.endsWith('.tar'));
      assert.equal(written.length, 1, written.join(', '));
      const name = tag ? `${(tag.split(':')[0] as string).split('/').at(-1)}-${tag.split(':')[1]}.tar` : (written[0] as string);
      assert.deepEqual(written, [name]);
      const digest = /digest (sha256:\w+)/.exec(first.stderr)?.[1];
      const again = await lapin(args, { env, cwd: typed });
      assert.equal(again.status, 0, again.stderr);
      assert.equal(/digest (sha256:\w+)/.exec(again.stderr)?.[1], digest, 'the archive left in the context does not change the image');
      const inspected = await lapin(['inspect', name], { env, cwd: typed });
      assertNoStack(inspected.stderr);
      assert.equal(inspected.status, 0, inspected.stdout + inspected.stderr);
    });
  }
});
