import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build, LapinError } from '../src/index.js';
import { readArchive, layerEntries } from './helpers/archive.js';

const EXAMPLE = path.resolve('examples/mirage-hvt');
const NAME = 'urunc/prebuilt/network-mirage-hvt:test';
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-build-'));
});

async function buildTo(file: string, dest: string, extra: Parameters<typeof build>[0] = {}) {
  return build({ context: EXAMPLE, file: path.join(EXAMPLE, file), tags: [NAME], outputs: [{ type: 'oci', dest }], ...extra });
}

describe('the seed example in three syntaxes', () => {
  for (const file of ['bunnyfile', 'Containerfile', 'args.nix']) {
    test(`${file} builds an archive with the urunc values in three places`, async () => {
      const dest = path.join(work, `${file}.tar`);
      const result = await buildTo(file, dest, file === 'args.nix' ? { tags: [] } : {});
      assert.deepEqual(result.names, ['docker.io/urunc/prebuilt/network-mirage-hvt:test']);
      const archive = await readArchive(dest);
      assert.deepEqual(JSON.parse(archive.text('oci-layout')), { imageLayoutVersion: '1.0.0' });

      const index = JSON.parse(archive.text('index.json'));
      assert.equal(index.manifests.length, 1);
      assert.deepEqual(index.manifests[0].annotations, {
        'io.containerd.image.name': 'docker.io/urunc/prebuilt/network-mirage-hvt:test',
        'org.opencontainers.image.ref.name': 'test',
      });
      assert.equal(index.manifests[0].digest, result.digest);

      const manifest = JSON.parse(archive.blob(result.digest).toString());
      const config = JSON.parse(archive.blob(manifest.config.digest).toString());
      const dockerManifest = JSON.parse(archive.text('manifest.json'));
      assert.deepEqual(dockerManifest[0].RepoTags, [`docker.io/${NAME}`]);
      assert.equal(dockerManifest[0].Config, `blobs/sha256/${manifest.config.digest.slice(7)}`);
      assert.deepEqual(JSON.parse(archive.text('repositories')), { 'urunc/prebuilt/network-mirage-hvt': { test: config.rootfs.diff_ids.at(-1).slice(7) } });

      const files = new Map<string, Buffer>();
      for (const layer of manifest.layers) {
        assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
        for (const entry of layerEntries(gunzipSync(archive.blob(layer.digest)))) files.set(entry.name, entry.data);
      }
      const uruncJson = JSON.parse((files.get('urunc.json') as Buffer).toString()) as Record<string, string>;
      const decoded = Object.fromEntries(Object.entries(uruncJson).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
      const urunc = Object.fromEntries(Object.entries(config.config.Labels as Record<string, string>).filter(([k]) => k.startsWith('com.urunc.unikernel.')));
      assert.deepEqual(decoded, urunc);
      assert.deepEqual(manifest.annotations, urunc);
      assert.equal(urunc['com.urunc.unikernel.unikernelType'], 'mirage');
      assert.equal(urunc['com.urunc.unikernel.hypervisor'], 'hvt');
      assert.equal(urunc['com.urunc.unikernel.cmdline'], '');
      assert.equal(urunc['com.urunc.unikernel.mountRootfs'], 'false');
      const binary = urunc['com.urunc.unikernel.binary'] as string;
      assert.deepEqual(files.get(binary.slice(1)), await readFile(path.join(EXAMPLE, 'network.hvt')));
      assert.equal(config.architecture, 'amd64');
      assert.equal(config.created, '1970-01-01T00:00:00Z');
      // The kernel and urunc.json sit in separate layers.
      assert.equal(manifest.layers.length, 2);
    });
  }

  test('a repeated build is byte-identical, and SOURCE_DATE_EPOCH changes only times', async () => {
    const a = path.join(work, 'a.tar');
    const b = path.join(work, 'b.tar');
    const first = await buildTo('bunnyfile', a);
    const second = await buildTo('bunnyfile', b);
    assert.equal(first.digest, second.digest);
    assert.deepEqual(await readFile(a), await readFile(b));
    const dated = await buildTo('bunnyfile', path.join(work, 'c.tar'), { sourceDateEpoch: 1700000000 });
    assert.notEqual(dated.digest, first.digest);
  });
});

describe('outputs', () => {
  test('an OCI layout directory and a local rootfs', async () => {
    const layout = path.join(work, 'layout');
    const local = path.join(work, 'rootfs');
    const result = await build({
      context: EXAMPLE,
      file: path.join(EXAMPLE, 'bunnyfile'),
      tags: [NAME, 'example.com/x/y:2'],
      outputs: [
        { type: 'oci', dest: layout, tar: false },
        { type: 'local', dest: local },
      ],
    });
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    assert.deepEqual(
      index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['io.containerd.image.name']),
      ['docker.io/urunc/prebuilt/network-mirage-hvt:test', 'example.com/x/y:2'],
    );
    const blobs = await readdir(path.join(layout, 'blobs/sha256'));
    assert.ok(blobs.includes(result.digest.slice(7)));
    assert.equal((await stat(path.join(local, '.boot/kernel'))).mode & 0o777, 0o755);
    assert.ok((await readFile(path.join(local, 'urunc.json'), 'utf8')).includes('com.urunc.unikernel.binary'));
  });

  test('dest=- streams the archive', async () => {
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    const file = path.join(work, 'stream-ref.tar');
    await buildTo('bunnyfile', file);
    await build({ context: EXAMPLE, file: path.join(EXAMPLE, 'bunnyfile'), tags: [NAME], outputs: [{ type: 'oci', dest: '-' }], stdout: sink });
    assert.deepEqual(Buffer.concat(chunks), await readFile(file));
  });

  test('with no output, the archive is named after the image in the current directory', async () => {
    const cwd = await mkdtemp(path.join(work, 'cwd-'));
    const result = await build({ context: EXAMPLE, file: path.join(EXAMPLE, 'args.nix'), cwd });
    assert.deepEqual(result.outputs, [{ type: 'oci', dest: path.join(cwd, 'network-mirage-hvt-test.tar') }]);
  });
});

describe('initrd rootfs', () => {
  test('include entries become a newc initrd with modes and parent directories', async () => {
    const context = await mkdtemp(path.join(work, 'initrd-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'kernel'));
    await mkdir(path.join(context, 'files'));
    await writeFile(path.join(context, 'files/init'), '#!/bin/sh\necho hi\n');
    await chmod(path.join(context, 'files/init'), 0o755);
    await writeFile(path.join(context, 'files/nginx.conf'), 'worker_processes 1;\n');
    await writeFile(
      path.join(context, 'bunnyfile'),
      'version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel\nrootfs:\n  include:\n    - files/init:/sbin/init\n    - files/nginx.conf:/etc/nginx/nginx.conf\ncmd: ["-c", "/etc/nginx/nginx.conf"]\n',
    );
    const local = path.join(work, 'initrd-rootfs');
    const result = await build({ context, tags: ['nginx:1'], outputs: [{ type: 'local', dest: local }] });
    assert.equal(result.urunc.initrd, '/.boot/rootfs');
    assert.equal(result.urunc.cmdline, '-c /etc/nginx/nginx.conf');
    const listing = execFileSync('bsdcpio', ['-itv', '--quiet'], { input: await readFile(path.join(local, '.boot/rootfs')) }).toString();
    const lines = listing.trim().split('\n');
    const names = lines.map((line) => line.split(/\s+/).at(-1));
    assert.deepEqual(names, ['etc', 'etc/nginx', 'etc/nginx/nginx.conf', 'sbin', 'sbin/init']);
    assert.match(lines[4] ?? '', /^-rwxr-xr-x/);
    assert.match(lines[0] ?? '', /^drwxr-xr-x/);
  });
});

describe('refusals', () => {
  test('a missing binary refuses the build and writes nothing', async () => {
    const context = await mkdtemp(path.join(work, 'missing-'));
    await writeFile(path.join(context, 'network.hvt'), 'x');
    await writeFile(path.join(context, 'Containerfile'), 'FROM scratch\nCOPY network.hvt /unikernel/network.hvt\nLABEL com.urunc.unikernel.binary=/unikernel/other\nLABEL com.urunc.unikernel.unikernelType=mirage\nLABEL com.urunc.unikernel.hypervisor=hvt\n');
    const dest = path.join(context, 'out.tar');
    await assert.rejects(build({ context, outputs: [{ type: 'oci', dest }] }), (e: unknown) => {
      assert.ok(e instanceof LapinError);
      assert.match(e.describe(), /(^|\/)Containerfile:3:7: com\.urunc\.unikernel\.binary names \/unikernel\/other, which is not in the image/);
      return true;
    });
    assert.deepEqual((await readdir(context)).sort(), ['Containerfile', 'network.hvt']);
  });

  test('a bad guest/monitor pair is refused, and --urunc-checks=warn builds it with a warning', async () => {
    const context = await mkdtemp(path.join(work, 'pair-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'k'));
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: hvt\nkernel:\n  from: local\n  path: k\n');
    await assert.rejects(build({ context, outputs: [{ type: 'oci', dest: path.join(context, 'o.tar') }] }), /urunc does not run linux guests on hvt/);
    const warnings: string[] = [];
    await build({ context, outputs: [{ type: 'oci', dest: path.join(context, 'o.tar') }], uruncChecks: 'warn', onEvent: (e) => e.kind === 'warning' && warnings.push(e.message) });
    assert.ok(warnings.some((w) => /does not run linux guests on hvt/.test(w)));
  });

  test('a kernel for another architecture than the platform is refused; --urunc-checks=warn builds it with a warning', async () => {
    const context = await mkdtemp(path.join(work, 'arch-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'k'));
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: arm64\nkernel:\n  from: local\n  path: k\n');
    const dest = path.join(context, 'o.tar');
    await assert.rejects(build({ context, outputs: [{ type: 'oci', dest }] }), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.equal(error.message, 'the file declares architecture arm64, but the kernel /.boot/kernel is built for amd64');
      assert.deepEqual([error.at?.line, error.at?.column], [5, 17]);
      assert.equal(error.hint, 'give the image a kernel built for arm64, or build it for linux/amd64; --urunc-checks=warn builds it anyway');
      return true;
    });
    assert.deepEqual((await readdir(context)).sort(), ['bunnyfile', 'k']);
    // --platform names the platform (normalized: aarch64 is linux/arm64): the same rule, at the kernel's line.
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: k\n');
    await assert.rejects(build({ context, platform: 'aarch64', outputs: [{ type: 'oci', dest }] }), (error: unknown) => error instanceof LapinError && error.message === '--platform linux/arm64: the kernel /.boot/kernel is built for amd64, not arm64' && error.at?.line === 7);
    assert.deepEqual((await readdir(context)).sort(), ['bunnyfile', 'k']);
    const warnings: string[] = [];
    const result = await build({ context, platform: 'linux/arm64', uruncChecks: 'warn', outputs: [{ type: 'oci', dest }], onEvent: (e) => e.kind === 'warning' && warnings.push(e.message) });
    assert.equal(result.platform.architecture, 'arm64');
    assert.ok(warnings.some((w) => /--platform linux\/arm64: the kernel \/\.boot\/kernel is built for amd64, not arm64 \(give the image a kernel built for arm64, or build it for linux\/amd64\)/.test(w)), warnings.join('\n'));
  });

  test('the kernel decides the platform when the file does not say', async () => {
    const context = await mkdtemp(path.join(work, 'arch2-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'k'));
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: k\n');
    const result = await build({ context, outputs: [{ type: 'oci', dest: path.join(context, 'o.tar') }] });
    assert.equal(result.platform.architecture, 'amd64');
    await assert.rejects(build({ context, platform: 'linux/s390x', outputs: [{ type: 'oci', dest: path.join(context, 'o.tar') }] }), /unsupported platform/);
  });
});

describe('directory outputs never delete user files', () => {
  test('a non-empty directory is refused and left as it was', async () => {
    const dest = await mkdtemp(path.join(work, 'full-'));
    await writeFile(path.join(dest, 'keep.txt'), 'mine');
    for (const output of [{ type: 'local' as const, dest }, { type: 'oci' as const, dest, tar: false }]) {
      await assert.rejects(build({ context: EXAMPLE, file: path.join(EXAMPLE, 'bunnyfile'), outputs: [output] }), /is not empty/);
    }
    assert.deepEqual(await readdir(dest), ['keep.txt']);
  });

  test('an empty directory is filled', async () => {
    const dest = await mkdtemp(path.join(work, 'empty-'));
    await build({ context: EXAMPLE, file: path.join(EXAMPLE, 'bunnyfile'), outputs: [{ type: 'local', dest }] });
    assert.deepEqual((await readdir(dest)).sort(), ['.boot', 'urunc.json']);
  });
});

describe('type=local keeps owners when run as root', { skip: process.getuid?.() === 0 ? false : 'needs root to chown' }, () => {
  test('COPY --chown reaches the files on disk', async () => {
    const context = await mkdtemp(path.join(work, 'chown-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'k'));
    await writeFile(
      path.join(context, 'Containerfile'),
      'FROM scratch\nCOPY --chown=1000:100 k /unikernel/k\nLABEL com.urunc.unikernel.binary=/unikernel/k\nLABEL com.urunc.unikernel.unikernelType=mirage\nLABEL com.urunc.unikernel.hypervisor=hvt\n',
    );
    const dest = path.join(work, 'chown-rootfs');
    await build({ context, outputs: [{ type: 'local', dest }] });
    const stats = await stat(path.join(dest, 'unikernel/k'));
    assert.deepEqual([stats.uid, stats.gid, stats.mode & 0o7777], [1000, 100, 0o755]);
  });
});
