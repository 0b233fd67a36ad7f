// Hostile and broken sources for inspect and run: each must end quickly with
// one clean line and exit 2, read nothing outside what it was given, and
// quote nothing from the files it refuses.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { openSource } from '../../src/source/open.js';
import { flattenRootfs } from '../../src/source/rootfs.js';
import { TarFile } from '../../src/source/tar-file.js';
import { fakeElfKernel, sha256, tarOf, writeDockerArchive, writeOciArchive, writeOciLayout } from '../helpers/hand-image.js';
import { layoutOfBlobs, manyEntriesLayer, paxBody, rawTar } from '../helpers/raw-tar.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
let counter = 0;
const fresh = (name: string): string => join(work, `${counter++}-${name}`);

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin hostile-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs the CLI with a deadline; a hang shows as status null. */
function lapin(args: string[], timeout = 20_000): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8', timeout, killSignal: 'SIGKILL' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Exit 2 and exactly one line, "lapin: error: ...", no stack, no unhandled rejection. */
function assertCleanFailure(result: { status: number | null; stderr: string }, pattern?: RegExp): void {
  assert.equal(result.status, 2, `status ${String(result.status)}: ${result.stderr}`);
  const lines = result.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0] as string, /^lapin: error: /);
  assert.doesNotMatch(result.stderr, /Unhandled|\n\s+at |node:internal/);
  if (pattern) assert.match(result.stderr, pattern);
}

async function rejectsAsSource(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof LapinError, String(error));
    assert.equal(error.exitCode, 2);
    assert.match(error.message, pattern);
    return true;
  });
}

function mkfifo(path: string): void {
  const made = spawnSync('mkfifo', [path]);
  assert.equal(made.status, 0, String(made.stderr));
}

const kernelLayer = [
  { name: 'unikernel/', type: 'directory' as const },
  { name: 'unikernel/app', body: fakeElfKernel(), mode: 0o755 },
];

describe('tar index: every field is checked, the walk only moves forward', () => {
  test('a pax size=-1536 record in a 2.5 KB tar is refused at once, in the library and by the CLI', async () => {
    const path = fresh('negative.tar');
    const tar = rawTar([{ name: 'a', body: 'hello' }, { name: 'pax', type: 'x', body: paxBody({ size: '-1536' }) }, { name: 'b' }]);
    assert.ok(tar.length < 4096);
    await writeFile(path, tar);
    await rejectsAsSource(TarFile.open(path), /pax size/);
    assertCleanFailure(lapin(['inspect', path], 10_000), /not a tar archive, or a damaged one/);
  });

  const cases: Array<[string, Buffer, RegExp]> = [
    ['a negative base-256 size', rawTar([{ name: 'a', sizeField: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0x00]) }]), /base-256/],
    ['a base-256 size past 2^53', rawTar([{ name: 'a', sizeField: Buffer.from([0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) }]), /too large/],
    ['a size that is not octal', rawTar([{ name: 'a', sizeField: '00000000-12\0' }]), /not octal/],
    ['a bad checksum', rawTar([{ name: 'a', body: 'x', badChecksum: true }]), /checksum/],
    ['a body past the end of the file', rawTar([{ name: 'a', body: 'x', sizeField: '00000100000\0' }]), /past the end/],
    ['a pax record longer than its header', rawTar([{ name: 'p', type: 'x', body: '99 path=a\n' }, { name: 'a' }]), /length does not match/],
    ['a pax record without a length', rawTar([{ name: 'p', type: 'x', body: 'path=a\n' }, { name: 'a' }]), /valid length/],
    ['a pax record that is not key=value', rawTar([{ name: 'p', type: 'x', body: '9 nokey\n\n' }, { name: 'a' }]), /key=value|length/],
    ['a pax size that overflows', rawTar([{ name: 'p', type: 'x', body: paxBody({ size: '99999999999999999999' }) }, { name: 'a' }]), /pax size/],
    ['a 2 MiB GNU long name', rawTar([{ name: 'L', type: 'L', body: Buffer.alloc(2 * 1024 * 1024, 0x61) }, { name: 'a' }]), /extended header/],
    ['a header cut short', Buffer.concat([rawTar([{ name: 'a', body: 'x' }], { end: false }), rawTar([{ name: 'b' }], { end: false }).subarray(0, 300)]), /cut short/],
  ];
  for (const [what, tar, pattern] of cases) {
    test(`refuses ${what}`, async () => {
      const path = fresh('bad.tar');
      await writeFile(path, tar);
      await rejectsAsSource(TarFile.open(path), pattern);
    });
  }

  test('a layer of 300,000 entries is read in linear time', { timeout: 120_000 }, async () => {
    const dir = fresh('many');
    await layoutOfBlobs(dir, [manyEntriesLayer(300_000)]);
    const started = Date.now();
    const rootfs = await flattenRootfs(await openSource(`oci:${dir}`));
    const seconds = (Date.now() - started) / 1000;
    assert.equal(rootfs.entries.size, 300_000);
    // Quadratic removal took minutes here; linear reading takes a few seconds on a loaded 2-core machine.
    assert.ok(seconds < 45, `${seconds} s`);
  });
});

describe('bounded memory', () => {
  test('a layer name or link target longer than PATH_MAX is refused, in the library and by the CLI', async () => {
    // A million components ("a/a/...", 2 MB) in 16 KiB of gzip held 2.3 GB and 24 s: a tree node per component.
    const long = Array(1_000_000).fill('a').join('/');
    for (const [what, entries] of [
      ['name', [{ name: 'p', type: 'x', body: paxBody({ path: long }) }, { name: 'x', body: 'hi' }]],
      ['link target', [{ name: 'p', type: 'x', body: paxBody({ linkpath: long }) }, { name: 'x', type: '2' }]],
    ] as const) {
      const dir = fresh('long');
      await layoutOfBlobs(dir, [gzipSync(rawTar(entries))]);
      const pattern = new RegExp(`layer 1 has an entry whose ${what} is 1999999 bytes, longer than the 4096`);
      await rejectsAsSource((async () => flattenRootfs(await openSource(`oci:${dir}`)))(), pattern);
      assertCleanFailure(lapin(['inspect', `oci:${dir}`]), pattern);
    }
  });

  test('a manifest of 1001 layers (one small blob listed again and again) is refused before any is read', async () => {
    // 20,000 listings of one blob in a 3 MB manifest kept inspect busy for 26 s of CPU.
    const layer = gzipSync(rawTar([{ name: 'x', body: 'hi' }]));
    const digest = `sha256:${sha256(layer)}`;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }));
    const manifest = (count: number): Buffer =>
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(config)}`, size: config.length },
          layers: Array(count).fill({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: layer.length }),
        }),
      );
    const many = fresh('many-layers');
    await layoutOfBlobs(many, [layer], { manifestBytes: manifest(1001), configBytes: config });
    assertCleanFailure(lapin(['inspect', `oci:${many}`]), /lists 1001 layers; lapin reads images of at most 1000/);
    const enough = fresh('enough-layers');
    await layoutOfBlobs(enough, [layer], { manifestBytes: manifest(1000), configBytes: config });
    assert.equal((await flattenRootfs(await openSource(`oci:${enough}`))).layerCount, 1000);

    const archive = fresh('many-layers-docker.tar');
    const manifestJson = JSON.stringify([{ Config: 'config.json', RepoTags: ['x:1'], Layers: Array(1001).fill('l.tar') }]);
    await writeFile(archive, rawTar([{ name: 'manifest.json', body: manifestJson }, { name: 'config.json', body: config }, { name: 'l.tar', body: rawTar([{ name: 'x', body: 'hi' }]) }]));
    assertCleanFailure(lapin(['inspect', `docker-archive:${archive}`]), /manifest\.json lists 1001 layers/);
  });

  test('a path repeated in a layer leaves one captured file on disk, the last', async () => {
    const dir = fresh('repeat');
    const entries = Array.from({ length: 50 }, (_, i) => ({ name: 'unikernel/app', body: Buffer.alloc(4096, i) }));
    await layoutOfBlobs(dir, [gzipSync(rawTar(entries))]);
    const captures = fresh('captures');
    await mkdir(captures);
    const rootfs = await flattenRootfs(await openSource(`oci:${dir}`), { capture: (path) => (path === '/unikernel/app' ? { kind: 'file', dir: captures } : undefined) });
    assert.equal((await readdir(captures)).length, 1);
    assert.ok((await readFile(rootfs.entries.get('/unikernel/app')?.file as string)).equals(Buffer.alloc(4096, 49)));
  });

  test('implicit parents count against the path limit', async () => {
    const dir = fresh('deep');
    await layoutOfBlobs(dir, [gzipSync(rawTar([{ name: 'p', type: 'x', body: paxBody({ path: Array(300).fill('a').join('/') }) }, { name: 'x', body: 'hi' }]))]);
    await rejectsAsSource((async () => flattenRootfs(await openSource(`oci:${dir}`), { maxEntries: 200 }))(), /more than 200 paths/);
  });

  test('a rootfs with more paths than the limit ends with one error', async () => {
    const dir = fresh('bomb');
    await layoutOfBlobs(dir, [manyEntriesLayer(3000)]);
    await rejectsAsSource((async () => flattenRootfs(await openSource(`oci:${dir}`), { maxEntries: 2000 }))(), /more than 2000 paths/);
    assert.equal((await flattenRootfs(await openSource(`oci:${dir}`))).entries.size, 3000);
  });
});

describe('oci:DIR files: regular, inside the directory, never quoted', () => {
  test('a FIFO as index.json or as a blob ends at once with exit 2', async () => {
    const dir = fresh('fifo-index');
    await writeOciLayout(dir, { layers: [kernelLayer] });
    await unlink(join(dir, 'index.json'));
    mkfifo(join(dir, 'index.json'));
    assertCleanFailure(lapin(['inspect', `oci:${dir}`], 10_000), /index\.json is a FIFO, not a regular file/);

    const blobs = fresh('fifo-blob');
    const made = await writeOciLayout(blobs, { layers: [kernelLayer] });
    const layer = join(blobs, 'blobs', 'sha256', sha256(made.layers[0]?.blob as Buffer));
    await unlink(layer);
    mkfifo(layer);
    assertCleanFailure(lapin(['inspect', `oci:${blobs}`], 10_000), /is a FIFO, not a regular file/);
  });

  test('an index.json whose manifest digest climbs out of blobs/ is one clean line naming what a digest is', async () => {
    const dir = fresh('climbing-digest');
    await writeOciLayout(dir, { layers: [kernelLayer] });
    const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    (index.manifests[0] as { digest: string }).digest = 'sha256:../../etc/passwd';
    await writeFile(join(dir, 'index.json'), JSON.stringify(index));
    assertCleanFailure(lapin(['inspect', `oci:${dir}`]), /names a blob by "sha256:\.\.\/\.\.\/etc\/passwd", which is not a digest \(ALGORITHM:HEX/);
  });

  test('a bunnyfile rootfs.path that is a FIFO is refused at its line, without hanging the build', async () => {
    const context = fresh('fifo context');
    await mkdir(context);
    await writeFile(join(context, 'kernel'), fakeElfKernel());
    mkfifo(join(context, 'rootfs.img'));
    const bunnyfile = ['#syntax=harbor.nbfc.io/nubificus/bunny:latest', 'version: v0.1', 'platforms:', '  framework: unikraft', '  monitor: qemu', '  architecture: x86', 'kernel:', '  from: local', '  path: kernel', 'rootfs:', '  from: local', '  path: rootfs.img', 'cmdline: ""', ''];
    await writeFile(join(context, 'bunnyfile'), bunnyfile.join('\n'));
    const result = lapin(['build', '-f', join(context, 'bunnyfile'), '-o', join(context, 'out.tar'), context], 20_000);
    assert.notEqual(result.status, null, 'the build hung');
    assert.match(result.stderr, /^lapin: error: .*bunnyfile:12:\d+: rootfs\.path rootfs\.img is a FIFO, not a regular file/m);
  });

  test('a blob that is a symlink to /dev/zero is refused, not read', async () => {
    const dir = fresh('zero');
    const made = await writeOciLayout(dir, { layers: [kernelLayer] });
    const layer = join(dir, 'blobs', 'sha256', sha256(made.layers[0]?.blob as Buffer));
    await unlink(layer);
    await symlink('/dev/zero', layer);
    await rejectsAsSource(
      (async () => flattenRootfs(await openSource(`oci:${dir}`)))(),
      /leads outside/,
    );
  });

  test('symlinks out of the directory are refused, and the target is never quoted', async () => {
    const secret = fresh('shadow');
    await writeFile(secret, 'root:$6$SECRETHASH:19000:0:99999:7:::\n');
    for (const victim of ['index.json', 'manifest', 'config'] as const) {
      const dir = fresh(`escape-${victim}`);
      const made = await writeOciLayout(dir, { layers: [kernelLayer] });
      const configHex = JSON.parse(made.blobs.get(made.manifestDigest.slice(7))?.toString() ?? '{}').config.digest.slice(7) as string;
      const target = victim === 'index.json' ? join(dir, 'index.json') : join(dir, 'blobs', 'sha256', victim === 'manifest' ? made.manifestDigest.slice(7) : configHex);
      await unlink(target);
      await symlink(secret, target);
      const result = lapin(['inspect', `oci:${dir}`], 10_000);
      assertCleanFailure(result, /leads outside/);
      assert.doesNotMatch(result.stderr, /SECRET|root:/);
    }
  });

  test('a manifest that is not JSON is named, not quoted', async () => {
    const dir = fresh('html');
    const html = Buffer.from('<html><body>SECRET-PAGE</body></html>');
    await layoutOfBlobs(dir, [], { manifestBytes: html });
    const result = lapin(['inspect', `oci:${dir}`], 10_000);
    assertCleanFailure(result, /manifest sha256:[a-f0-9]{64} is not valid JSON/);
    assert.doesNotMatch(result.stderr, /Unexpected token|SECRET|<html/);
  });
});

describe('every blob of a local source is checked against its digest', () => {
  test('a layer altered after the build is refused in an archive, a layout and a docker archive', async () => {
    const archive = fresh('oci.tar');
    const made = await writeOciArchive(archive, { layers: [kernelLayer], gzip: false });
    const bytes = await readFile(archive);
    // The kernel's filler (0x90 bytes) inside the plain layer: one byte changed, same size.
    const at = bytes.indexOf(Buffer.alloc(64, 0x90));
    assert.ok(at > 0);
    bytes[at] = 0x91;
    await writeFile(archive, bytes);
    await rejectsAsSource((async () => flattenRootfs(await openSource(`oci-archive:${archive}`)))(), /does not match its digest/);

    const dir = fresh('layout');
    const layout = await writeOciLayout(dir, { layers: [kernelLayer], gzip: false });
    const layer = join(dir, 'blobs', 'sha256', sha256(layout.layers[0]?.blob as Buffer));
    const layerBytes = await readFile(layer);
    layerBytes[layerBytes.indexOf(Buffer.alloc(64, 0x90))] = 0x91;
    await writeFile(layer, layerBytes);
    await rejectsAsSource((async () => flattenRootfs(await openSource(`oci:${dir}`)))(), /does not match its digest/);

    const docker = fresh('docker.tar');
    await writeDockerArchive(docker, { layers: [kernelLayer] });
    const dockerBytes = await readFile(docker);
    dockerBytes[dockerBytes.indexOf(Buffer.alloc(64, 0x90))] = 0x91;
    await writeFile(docker, dockerBytes);
    await rejectsAsSource((async () => flattenRootfs(await openSource(`docker-archive:${docker}`)))(), /does not match its digest/);
    assert.ok(made.layers.length === 1);
  });

  test('a config or manifest altered after the build is refused', async () => {
    const dir = fresh('config');
    const made = await writeOciLayout(dir, { layers: [kernelLayer] });
    const configHex = sha256(made.config);
    await writeFile(join(dir, 'blobs', 'sha256', configHex), made.config.toString().replace('"amd64"', '"arm64"'));
    await rejectsAsSource((async () => (await openSource(`oci:${dir}`)).config())(), /does not match its digest/);
    // The CLI says so in one line, exit 2.
    assertCleanFailure(lapin(['inspect', `oci:${dir}`]), /does not match its digest/);
  });

  test('an untouched archive, layout and docker archive still read', async () => {
    const archive = fresh('ok.tar');
    await writeOciArchive(archive, { layers: [kernelLayer] });
    const dir = fresh('ok-layout');
    await writeOciLayout(dir, { layers: [kernelLayer] });
    const docker = fresh('ok-docker.tar');
    await writeDockerArchive(docker, { layers: [kernelLayer] });
    for (const name of [`oci-archive:${archive}`, `oci:${dir}`, `docker-archive:${docker}`]) {
      const rootfs = await flattenRootfs(await openSource(name));
      assert.equal(rootfs.entries.get('/unikernel/app')?.size, 4096, name);
    }
  });
});

describe('corrupt layers: one line, exit 2', () => {
  test('a truncated gzip layer and a corrupt tar header in a layer', async () => {
    const plain = await tarOf(kernelLayer);
    const packed = gzipSync(await tarOf([{ name: 'noise', body: randomBytes(64 * 1024) }]));
    const truncated = packed.subarray(0, packed.length >> 1);
    const corrupt = Buffer.from(plain);
    corrupt[600] = 0x41; // inside the second header: its checksum no longer matches
    for (const [name, blob] of [
      ['truncated', truncated],
      ['corrupt', gzipSync(corrupt)],
    ] as const) {
      const dir = fresh(name);
      await layoutOfBlobs(dir, [blob]);
      assertCleanFailure(lapin(['inspect', `oci:${dir}`]), /cannot read layer 1|damaged/);
      await mkdir(join(work, 'x'), { recursive: true });
    }
  });

  test('zstd layers are read through the zstd program (Node 20 has no zstd in zlib)', async () => {
    const plain = await tarOf(kernelLayer);
    const zstd = spawnSync('zstd', ['-q', '-c'], { input: plain });
    assert.equal(zstd.status, 0);
    const dir = fresh('zstd');
    await layoutOfBlobs(dir, [zstd.stdout]);
    const rootfs = await flattenRootfs(await openSource(`oci:${dir}`));
    assert.equal(rootfs.entries.get('/unikernel/app')?.size, 4096);
    // lapin's own --compression zstd archive (issue 10 §5: a stack trace and exit 1 on Node 20).
    const built = fresh('net zstd.tar');
    const example = join(ROOT, 'examples', 'mirage-hvt');
    const build = lapin(['build', '--compression', 'zstd', '-f', join(example, 'bunnyfile'), '-o', built, example], 60_000);
    assert.equal(build.status, 0, build.stderr);
    const inspected = lapin(['inspect', built]);
    assert.equal(inspected.status, 0, inspected.stderr);
    assert.match(inspected.stdout, /verdict: urunc \S+ can run this image/);
    // A damaged zstd stream is a clean exit 2.
    const broken = fresh('zstd-broken');
    await layoutOfBlobs(broken, [Buffer.concat([zstd.stdout.subarray(0, 40), Buffer.alloc(40, 0x55)])]);
    assertCleanFailure(lapin(['inspect', `oci:${broken}`]), /zstd data is damaged|cannot read layer/);
  });
});
