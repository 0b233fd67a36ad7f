// The output archive: layers streamed straight into it must give the same
// bytes as the staged path, keep one copy of a repeated blob, leave nothing
// behind on failure, and be left alone on a rebuild only when it is
// provably the same file lapin wrote.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ArchiveFile } from '../../src/export/archive.js';
import { build, type BuildEvent, type BuildOptions } from '../../src/index.js';
import type { ImageParts } from '../../src/image/model.js';
import { BlobStore } from '../../src/image/blob-store.js';
import { layerEntries, readArchive } from '../helpers/archive.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('output archive', () => {
  let dir = '';
  let context = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin-archive-'));
    context = path.join(dir, 'context');
    await mkdir(context);
    await writeFile(path.join(context, 'kernel.hvt'), Buffer.alloc(3 * 1024 * 1024 + 123, 'kernel bytes '), { mode: 0o755 });
    await writeFile(path.join(context, 'app.conf'), 'x=1\n');
    await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY app.conf /etc/app.conf'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const steps: string[] = [];
  const run = (extra: Partial<BuildOptions>): ReturnType<typeof build> =>
    build({
      context,
      tags: ['archive/test:1'],
      uruncChecks: 'warn',
      cache: false,
      onEvent: (event: BuildEvent) => {
        if (event.kind === 'step') steps.push(event.message);
      },
      ...extra,
    });

  test('streamed (one archive output) and staged (dest=-, two outputs) archives are byte-identical', async () => {
    const single = path.join(dir, 'single.tar');
    await run({ outputs: [{ type: 'oci', dest: single }] });
    const stdout = new PassThrough();
    const chunks: Buffer[] = [];
    stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    await run({ outputs: [{ type: 'oci', dest: '-' }], stdout });
    const pairA = path.join(dir, 'pair-a.tar');
    const pairB = path.join(dir, 'pair-b.tar');
    await run({ outputs: [{ type: 'oci', dest: pairA }, { type: 'docker', dest: pairB }] });
    const streamed = await readFile(single);
    assert.ok(Buffer.concat(chunks).equals(streamed), 'dest=- differs');
    assert.ok((await readFile(pairA)).equals(streamed), 'first of two outputs differs');
    assert.ok((await readFile(pairB)).equals(streamed), 'second of two outputs differs');
    // No temporary file is left next to the outputs.
    assert.deepEqual((await readdir(dir)).filter((n) => n.includes('lapin-tmp')), []);
  });

  test('GNU tar lists and extracts the streamed archive, and every blob matches its name', async () => {
    const file = path.join(dir, 'check.tar');
    const result = await run({ outputs: [{ type: 'oci', dest: file }] });
    const listing = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
    const out = path.join(dir, 'extracted');
    await mkdir(out);
    execFileSync('tar', ['-xf', file, '-C', out]);
    const blobs = listing.filter((n) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(n));
    assert.equal(blobs.length, 5, listing.join('\n')); // three layers, config, manifest
    for (const name of blobs) {
      assert.equal(sha256(await readFile(path.join(out, name))), `sha256:${path.basename(name)}`, name);
    }
    for (const name of ['oci-layout', 'index.json', 'manifest.json', 'repositories']) assert.ok(listing.includes(name), name);
    const archive = await readArchive(file);
    const index = JSON.parse(archive.text('index.json')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]?.digest, result.digest);
  });

  test('a blob given twice (identical layers) is written once, streamed or from a file', async () => {
    const dest = path.join(dir, 'twice.tar');
    const archive = await ArchiveFile.create(dest, 0);
    const layer = Buffer.alloc(700_000, 'same layer ');
    const digest = sha256(layer);
    for (let i = 0; i < 2; i++) {
      const incoming = await archive.incoming();
      await incoming.write(Buffer.from(layer.subarray(0, 100_000)));
      await incoming.write(Buffer.from(layer.subarray(100_000)));
      await incoming.commit(digest);
    }
    const store = new BlobStore(path.join(dir, 'twice-store'));
    const other = Buffer.from('another layer');
    const { digest: otherDigest } = await store.putBytes(other);
    await archive.addFile(otherDigest, other.length, store.pathOf(otherDigest));
    await archive.addFile(digest, layer.length, store.pathOf(otherDigest)); // already in: never read
    const config = await archive.putBytes(Buffer.from('{}'));
    const manifest = await archive.putBytes(Buffer.from('{"m":1}'));
    const layers = [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: layer.length, diffId: digest },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: layer.length, diffId: digest },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: otherDigest, size: other.length, diffId: otherDigest },
    ];
    const image: ImageParts = {
      manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest },
      manifestBytes: Buffer.from('{"m":1}'),
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers,
      platform: { os: 'linux', architecture: 'amd64' },
      bytesOf: (d) => ({ file: store.pathOf(d) }),
    };
    assert.equal(await archive.finish(image, ['docker.io/library/twice:1']), true);
    const entries = layerEntries(await readFile(dest));
    const names = entries.map((e) => e.name);
    assert.deepEqual(names.slice(0, 2), ['blobs/', 'blobs/sha256/']);
    assert.equal(names.filter((n) => n === `blobs/sha256/${digest.slice(7)}`).length, 1);
    assert.deepEqual(names.slice(2, 6), [digest, otherDigest, config.digest, manifest.digest].map((d) => `blobs/sha256/${d.slice(7)}`));
    for (const entry of entries.filter((e) => e.type === 'file' && e.name.startsWith('blobs/'))) {
      assert.equal(sha256(entry.data), `sha256:${path.basename(entry.name)}`);
    }
    // GNU tar agrees that the file is one well-formed archive.
    assert.equal(execFileSync('tar', ['-tf', dest], { encoding: 'utf8' }).trim().split('\n').length, names.length);
  });

  test('an aborted archive leaves the destination alone and no temporary file', async () => {
    const dest = path.join(dir, 'kept.tar');
    await writeFile(dest, 'old contents');
    const archive = await ArchiveFile.create(dest, 0);
    const incoming = await archive.incoming();
    await incoming.write(Buffer.alloc(1024 * 1024, 1));
    await incoming.abort();
    await archive.abort();
    assert.equal(await readFile(dest, 'utf8'), 'old contents');
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.kept.tar')), []);
  });

  test('an archive whose final rename fails leaves no temporary file', async () => {
    const dest = path.join(dir, 'blocked.tar');
    const archive = await ArchiveFile.create(dest, 0);
    const config = await archive.putBytes(Buffer.from('{}'));
    const manifest = await archive.putBytes(Buffer.from('{"m":2}'));
    const store = new BlobStore(path.join(dir, 'blocked-store'));
    const image: ImageParts = {
      manifest: { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest },
      manifestBytes: Buffer.from('{"m":2}'),
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [],
      platform: { os: 'linux', architecture: 'amd64' },
      bytesOf: (d) => ({ file: store.pathOf(d) }),
    };
    // A non-empty directory appears at dest while the archive is written: rename cannot replace it.
    await mkdir(path.join(dest, 'inside'), { recursive: true });
    await assert.rejects(archive.finish(image));
    await archive.abort();
    assert.deepEqual(await readdir(dest), ['inside']);
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.blocked.tar')), []);
  });

  test('a full cache hit leaves an untouched archive as it is, and rewrites one that changed', async () => {
    const cacheDir = path.join(dir, 'cache');
    const dest = path.join(dir, 'rebuilt.tar');
    const cached = { outputs: [{ type: 'oci' as const, dest }], cache: true, cacheDir };
    await run(cached);
    const first = await readFile(dest);
    const before = await stat(dest);

    steps.length = 0;
    await run(cached);
    assert.ok(steps.some((s) => s.includes('already holds this image')), steps.join('\n'));
    const after = await stat(dest);
    assert.equal(after.ino, before.ino);
    assert.equal(after.ctimeMs, before.ctimeMs);

    // Changed in place, even with the old mtime put back: ctime shows it.
    const changed = Buffer.from(first);
    changed[changed.length - 2000] = 0x55;
    await writeFile(dest, changed);
    execFileSync('touch', ['-d', `@${before.mtimeMs / 1000}`, dest]);
    steps.length = 0;
    await run(cached);
    assert.ok(!steps.some((s) => s.includes('already holds this image')), steps.join('\n'));
    assert.ok((await readFile(dest)).equals(first));

    // Another image to the same path is written.
    steps.length = 0;
    await run({ ...cached, tags: ['archive/other:2'] });
    assert.ok(!steps.some((s) => s.includes('already holds this image')));
    assert.ok(!(await readFile(dest)).equals(first));

    // Without the cache, the archive is always written.
    await run(cached);
    steps.length = 0;
    await run({ ...cached, cache: false });
    assert.ok(!steps.some((s) => s.includes('already holds this image')));
    assert.ok((await readFile(dest)).equals(first));
  });
});
