// Fuzzing the readers `lapin inspect` uses (the tar index of archives, the
// oci:DIR reader, the layer reader): mutated valid archives, layouts and
// layers, seeded with the hostile classes (negative pax sizes, bad
// checksums, cut bodies, base-256 sizes). Whatever the bytes, inspect ends
// with a report or a LapinError, and soon.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { inspect } from '../../src/inspect/inspect.js';
import { openSource } from '../../src/source/open.js';
import { flattenRootfs } from '../../src/source/rootfs.js';
import { fakeElfKernel, full, tarOf, uruncJsonFile, writeOciArchive } from '../helpers/hand-image.js';
import { layoutOfBlobs, paxBody, rawTar } from '../helpers/raw-tar.js';

let work: string;
let counter = 0;
let archive: Buffer;
let layer: Buffer;
const seeds: Buffer[] = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-readers-fuzz-'));
  const path = join(work, 'valid.tar');
  const values = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app' };
  await writeOciArchive(path, {
    layers: [
      [
        { name: 'unikernel/', type: 'directory' },
        { name: 'unikernel/app', body: fakeElfKernel().subarray(0, 600), mode: 0o755 },
        { name: `long/${'n'.repeat(120)}/x`, body: 'long name' },
      ],
      [uruncJsonFile(values), { name: 'unikernel/.wh.gone' }],
    ],
    annotations: full(values),
    cmd: ['app'],
    gzip: false,
  });
  const { readFile } = await import('node:fs/promises');
  archive = await readFile(path);
  layer = await tarOf([
    { name: 'd/', type: 'directory' },
    { name: 'd/f', body: 'content' },
    { name: 'd/l', type: 'symlink', linkname: '../d/f' },
    { name: 'd/h', type: 'link', linkname: 'd/f' },
    { name: `p/${'q'.repeat(150)}`, body: 'pax path' },
  ]);
  // The hostile classes, as layers and as archives.
  seeds.push(
    rawTar([{ name: 'a', body: 'hello' }, { name: 'pax', type: 'x', body: paxBody({ size: '-1536' }) }, { name: 'b' }]),
    rawTar([{ name: 'pax', type: 'x', body: paxBody({ size: '99999999999999999999', path: 'x' }) }, { name: 'b' }]),
    rawTar([{ name: 'a', sizeField: Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa, 0x00]) }]),
    rawTar([{ name: 'a', sizeField: Buffer.from([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]) }]),
    rawTar([{ name: 'a', body: 'x', badChecksum: true }]),
    rawTar([{ name: 'a', body: 'x', sizeField: '77777777777\0' }]),
    rawTar([{ name: 'p', type: 'x', body: '5 a=b\n' }, { name: 'a' }]),
    rawTar([{ name: 'L', type: 'L', body: 'n'.repeat(3000) }, { name: 'a', body: 'x' }]),
    rawTar([{ name: 'a', body: 'x' }], { end: false }).subarray(0, 700),
  );
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Byte overwrites, an optional cut, and an optional splice of a hostile seed. */
const mutation = fc.record({
  writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
  cut: fc.option(fc.nat(), { nil: undefined }),
  seed: fc.option(fc.nat(), { nil: undefined }),
  spliceAt: fc.nat(),
});

function mutate(base: Buffer, m: { writes: Array<[number, number]>; cut: number | undefined; seed: number | undefined; spliceAt: number }): Buffer {
  let data = Buffer.from(base);
  if (m.seed !== undefined) {
    const seed = seeds[m.seed % seeds.length] as Buffer;
    const at = Math.floor((m.spliceAt % (data.length / 512 + 1))) * 512;
    data = Buffer.concat([data.subarray(0, at), seed, data.subarray(at)]);
  }
  for (const [position, byte] of m.writes) data[position % data.length] = byte;
  if (m.cut !== undefined) data = data.subarray(0, m.cut % (data.length + 1));
  return data;
}

/** Ends with a result or a LapinError, within `ms`. */
async function settles(work: () => Promise<unknown>, ms: number): Promise<void> {
  const started = Date.now();
  try {
    await work();
  } catch (error) {
    if (!(error instanceof LapinError)) throw new Error(`not a LapinError: ${String((error as Error).stack ?? error)}`);
    assert.equal(error.exitCode === 1 || error.exitCode === 2, true);
  }
  const took = Date.now() - started;
  assert.ok(took < ms, `took ${took} ms`);
}

describe('the readers inspect uses (fuzzed)', () => {
  test('a mutated OCI archive (and the hostile seeds on their own) gives a report or a LapinError', { timeout: 120_000 }, async () => {
    for (const seed of seeds) {
      const path = join(work, `seed-${counter++}.tar`);
      await writeFile(path, seed);
      await settles(() => inspect(path), 5000);
    }
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        const path = join(work, `archive-${counter++}.tar`);
        await writeFile(path, mutate(archive, m));
        await settles(() => inspect(path), 5000);
        await rm(path);
      }),
      { numRuns: 150 },
    );
  });

  test('a mutated layer in a layout (digests made to match) gives a rootfs or a LapinError', { timeout: 120_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(mutation, fc.boolean(), async (m, compress) => {
        const dir = join(work, `layout-${counter++}`);
        const bytes = mutate(layer, m);
        await layoutOfBlobs(dir, [compress ? gzipSync(bytes) : bytes]);
        await settles(async () => flattenRootfs(await openSource(`oci:${dir}`)), 5000);
        await rm(dir, { recursive: true, force: true });
      }),
      { numRuns: 150 },
    );
  });

  test('index, manifest and config JSON of any shape gives a report or a LapinError', { timeout: 120_000 }, async () => {
    const anything = fc.jsonValue({ maxDepth: 3 });
    const descriptorLike = (digest: fc.Arbitrary<unknown>) =>
      fc.oneof(anything, fc.record({ mediaType: fc.oneof(fc.constant('application/vnd.oci.image.manifest.v1+json'), anything), digest, size: fc.oneof(fc.nat(), anything), annotations: fc.oneof(fc.dictionary(fc.string(), fc.string()), anything) }, { requiredKeys: ['digest'] }));
    const configLike = fc.record(
      {
        architecture: fc.oneof(fc.constant('amd64'), anything),
        os: fc.oneof(fc.constant('linux'), anything),
        config: fc.oneof(anything, fc.record({ Cmd: fc.oneof(fc.array(fc.string()), anything), Entrypoint: anything, Env: fc.oneof(fc.array(fc.string()), anything), Labels: fc.oneof(fc.dictionary(fc.string(), fc.string()), anything), WorkingDir: anything })),
        rootfs: anything,
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('index', 'manifest', 'config'), fc.oneof(anything, fc.array(descriptorLike(anything))), configLike, async (which, layers, config) => {
        const dir = join(work, `shape-${counter++}`);
        if (which === 'config') await layoutOfBlobs(dir, [gzipSync(layer)], { configBytes: Buffer.from(JSON.stringify(config)) });
        else if (which === 'manifest') {
          await layoutOfBlobs(dir, [], { manifestBytes: Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'x', digest: `sha256:${'a'.repeat(64)}`, size: 1 }, layers })) });
        } else await layoutOfBlobs(dir, [], { indexBytes: Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: layers })) });
        await settles(() => inspect(`oci:${dir}`), 5000);
        await rm(dir, { recursive: true, force: true });
      }),
      { numRuns: 200 },
    );
  });

  test('a layout with mutated index.json or manifest gives a report or a LapinError', { timeout: 120_000 }, async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'x', digest: 'sha256:00', size: 2 }, layers: [] }));
    await fc.assert(
      fc.asyncProperty(mutation, fc.boolean(), fc.jsonValue(), async (m, which, json) => {
        const dir = join(work, `json-${counter++}`);
        const mutated = mutate(which ? manifest : Buffer.from(JSON.stringify(json)), m);
        await layoutOfBlobs(dir, [gzipSync(layer)], which ? { manifestBytes: mutated } : { indexBytes: mutated });
        await settles(() => inspect(`oci:${dir}`), 5000);
        await rm(dir, { recursive: true, force: true });
      }),
      { numRuns: 150 },
    );
  });
});
