// Base-image layers whose names are not UTF-8: `x\xff` beside a real
// `x\uFFFD`, written by GNU tar in its gnu and pax formats. The registry
// layer reader (flattenLayers, for builds on an image) and the inspect
// reader (flattenRootfs) keep both files, byte for byte, with their own contents.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build } from '../../src/build.js';
import { decodeName } from '../../src/image/names.js';
import { openSource } from '../../src/source/open.js';
import { flattenRootfs } from '../../src/source/rootfs.js';
import { layerEntries, readArchive } from '../helpers/archive.js';
import { fakeElfKernel, writeOciArchive } from '../helpers/hand-image.js';
import { registrySkipReason, skopeoPush, startRegistry, type TestRegistry } from './harness.js';
import { assertNoStack, lapin } from './helpers.js';

const skip = registrySkipReason();
const RAW = Buffer.from('x\xff', 'latin1');
const REPLACEMENT = Buffer.from('x\uFFFD', 'utf8');
const DIR = Buffer.from('d\xfe', 'latin1');
let work: string;
let registry: TestRegistry;

/** A layer tar by GNU tar holding x\xff, x\uFFFD and d\xfe/inner, each with its own content. */
async function gnuTarLayer(format: 'gnu' | 'posix'): Promise<Buffer> {
  const dir = await mkdtemp(path.join(work, `tree ${format}-`));
  await writeFile(Buffer.concat([Buffer.from(`${dir}/`), RAW]), 'raw byte\n');
  await writeFile(Buffer.concat([Buffer.from(`${dir}/`), REPLACEMENT]), 'real U+FFFD\n');
  await mkdir(Buffer.concat([Buffer.from(`${dir}/`), DIR]));
  await writeFile(Buffer.concat([Buffer.from(`${dir}/`), DIR, Buffer.from('/inner')]), 'inner\n');
  return execFileSync('tar', [`--format=${format}`, '--sort=name', '--owner=0', '--group=0', '-C', dir, '-cf', '-', '.'], { maxBuffer: 1 << 24 });
}

async function handArchive(format: 'gnu' | 'posix'): Promise<string> {
  const file = path.join(work, `base-${format}.oci.tar`);
  await writeOciArchive(file, { layers: [], layerTars: [await gnuTarLayer(format)] });
  return file;
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-byte-names-'));
  if (!skip) registry = await startRegistry('anonymous');
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

for (const format of ['gnu', 'posix'] as const) {
  test(`inspect's reader keeps x\\xff beside x\\uFFFD from a GNU tar ${format} layer, with their contents`, async () => {
    const source = await openSource(await handArchive(format));
    const wanted = new Set([`/${decodeName(RAW)}`, `/${decodeName(REPLACEMENT)}`]);
    const rootfs = await flattenRootfs(source, { capture: (p) => (wanted.has(p) ? { kind: 'content', maxBytes: 100 } : undefined) });
    const names = [...rootfs.entries.keys()].filter((p) => p !== '/').sort();
    const raw = rootfs.entries.get(`/${decodeName(RAW)}`);
    const replacement = rootfs.entries.get(`/${decodeName(REPLACEMENT)}`);
    assert.ok(raw && replacement, `both files are listed: ${JSON.stringify(names)}`);
    assert.equal(raw.data?.toString(), 'raw byte\n');
    assert.equal(replacement.data?.toString(), 'real U+FFFD\n');
    assert.ok(rootfs.entries.has(`/${decodeName(DIR)}/inner`), JSON.stringify(names));
  });
}

describe('a rootfs built from a pushed image with non-UTF-8 names', { skip, timeout: 120_000 }, () => {
  test('a block rootfs from that image refuses the name, escaped, instead of merging the two files', async () => {
    const reference = `${registry.host}/bytes/block:1`;
    await skopeoPush(await handArchive('posix'), reference);
    const context = await mkdtemp(path.join(work, 'context block-'));
    await writeFile(path.join(context, 'vmlinuz'), fakeElfKernel());
    await writeFile(
      path.join(context, 'bunnyfile'),
      `version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  from: ${reference}\n  type: block\ncmd: ["/bin/sh"]\n`,
    );
    const result = await lapin(['build', '--output', `type=oci,dest=${path.join(context, 'out.tar')}`, context], { cwd: context });
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /d\\xfe/);
    assertNoStack(result.stderr);
  });

  for (const format of ['gnu', 'posix'] as const) {
    test(`initrd from a GNU tar ${format} layer: GNU cpio unpacks x\\xff and x\\uFFFD with their bytes and contents`, async () => {
      const reference = `${registry.host}/bytes/${format}:1`;
      await skopeoPush(await handArchive(format), reference);
      const context = await mkdtemp(path.join(work, `context ${format}-`));
      await writeFile(path.join(context, 'vmlinuz'), fakeElfKernel());
      await writeFile(
        path.join(context, 'bunnyfile'),
        `version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  from: ${reference}\n  type: initrd\ncmd: ["/bin/sh"]\n`,
      );
      const out = path.join(context, 'out.tar');
      await build({ context, tags: ['lapin-test/byte-names:1'], outputs: [{ type: 'oci', dest: out }], registry: { credentials: async () => undefined }, cache: false });
      const archive = await readArchive(out);
      const index = JSON.parse(archive.text('index.json')) as { manifests: Array<{ digest: string }> };
      const manifest = JSON.parse(archive.blob((index.manifests[0] as { digest: string }).digest).toString()) as { layers: Array<{ digest: string }> };
      let initrd: Buffer | undefined;
      for (const layer of manifest.layers) {
        const data = archive.blob(layer.digest);
        initrd ??= layerEntries(data[0] === 0x1f ? gunzipSync(data) : data).find((e) => e.name === '.boot/rootfs')?.data;
      }
      assert.ok(initrd, 'the image holds /.boot/rootfs');
      const cpioFile = path.join(context, 'rootfs.cpio');
      await writeFile(cpioFile, initrd);
      const unpacked = await mkdtemp(path.join(work, `unpacked ${format}-`));
      execFileSync('cpio', ['-id', '--quiet', '--no-preserve-owner', '-F', cpioFile], { cwd: unpacked, stdio: ['ignore', 'pipe', 'pipe'] });
      const names = (await readdir(unpacked, { encoding: 'buffer' })).map((n) => n.toString('hex')).sort();
      assert.deepEqual(names, [DIR, RAW, REPLACEMENT].map((n) => n.toString('hex')).sort());
      const at = (...parts: Buffer[]): Buffer => Buffer.concat([Buffer.from(`${unpacked}/`), ...parts]);
      assert.equal((await readFile(at(RAW))).toString(), 'raw byte\n');
      assert.equal((await readFile(at(REPLACEMENT))).toString(), 'real U+FFFD\n');
      assert.equal((await readFile(at(DIR, Buffer.from('/inner')))).toString(), 'inner\n');
    });
  }
});
