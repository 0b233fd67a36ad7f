// A lapin gzip layer inflates member by member on the thread pool
// (src/source/gzip-members.ts). Whatever the bytes, the output and the
// error must be those of one sequential gunzip of the whole stream: the
// chain of verified members is used only where it is exactly what
// sequential decoding sees, and anything else hands over to sequential.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import fc from 'fast-check';
import { ParallelGzip } from '../../src/image/compress/parallel-gzip.js';
import { MemberGunzip } from '../../src/source/gzip-members.js';

/** Output, or the error's message; `stats` when MemberGunzip read it. */
interface Decoded {
  output?: Buffer;
  error?: string;
  parallel?: number;
  sequentialFrom?: number | undefined;
  joined?: number;
}

async function collect(input: Buffer, pieces: readonly number[], stream: zlib.Gunzip | MemberGunzip): Promise<Decoded> {
  const chunks: Buffer[] = [];
  const parts: Buffer[] = [];
  let at = 0;
  for (const size of pieces) {
    if (at >= input.length) break;
    parts.push(input.subarray(at, at + Math.max(1, size)));
    at += Math.max(1, size);
  }
  if (at < input.length) parts.push(input.subarray(at));
  try {
    await pipeline(Readable.from(parts, { objectMode: false }), stream, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) chunks.push(chunk);
    });
  } catch (error) {
    return { error: (error as Error).message };
  }
  return { output: Buffer.concat(chunks) };
}

/** Today's path, the reference: one gunzip of the whole stream (src/source/decompress.ts). */
const sequential = (input: Buffer): Promise<Decoded> => collect(input, [input.length], zlib.createGunzip({ chunkSize: 256 * 1024 }));

async function byMembers(input: Buffer, pieces: readonly number[], blockSize: number): Promise<Decoded> {
  const stream = new MemberGunzip({ blockSize, concurrency: 3 });
  const decoded = await collect(input, pieces, stream);
  return { ...decoded, parallel: stream.stats.parallel, sequentialFrom: stream.stats.sequentialFrom, joined: stream.stats.joined };
}

/** lapin's layout: blocks of `blockSize`, each one gzip member (the writer's own code). */
async function lapinGzip(data: Buffer, blockSize: number, level = 1): Promise<Buffer> {
  const out: Buffer[] = [];
  const gzip = new ParallelGzip({ level, chunkSize: blockSize, concurrency: 2 }, (member) => {
    out.push(member);
  });
  await gzip.write(data);
  await gzip.end();
  return Buffer.concat(out);
}

function assertSame(actual: Decoded, expected: Decoded): void {
  if (expected.error !== undefined) {
    assert.equal(actual.error, expected.error, 'the same error as sequential gunzip');
    return;
  }
  assert.equal(actual.error, undefined, `no error where sequential gunzip has none (got ${actual.error ?? ''})`);
  assert.ok(actual.output?.equals(expected.output as Buffer), 'the same bytes as sequential gunzip');
}

const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 3]);

describe('gzip layers inflated member by member', () => {
  test('a lapin layer is inflated member by member, every member in parallel, with the bytes sequential gunzip gives', async () => {
    const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(500_000, 7), randomBytes(123_457)]);
    const blob = await lapinGzip(data, 64 * 1024);
    const decoded = await byMembers(blob, [65_536], 64 * 1024);
    assertSame(decoded, await sequential(blob));
    assert.ok(decoded.output?.equals(data));
    assert.equal(decoded.parallel, Math.ceil(data.length / (64 * 1024)));
    assert.equal(decoded.sequentialFrom, undefined);
  });

  test('a read holding thousands of members (a block of zeros compresses to a few bytes) starts only a few spans at once', async () => {
    const blob = await lapinGzip(Buffer.alloc(4 << 20), 4096);
    const stream = new MemberGunzip({ blockSize: 4096, concurrency: 3 });
    const decoded = await collect(blob, [blob.length], stream);
    assert.equal(decoded.output?.length, 4 << 20);
    assert.equal(stream.stats.parallel, 1024);
    assert.ok(stream.stats.mostHeld <= 3, `${stream.stats.mostHeld} spans held at once, each with a block of output`);
  });

  test('member headers stored inside members (a gzip -1n file in the rootfs) are false starts, joined across; the layer is still read member by member', async () => {
    // Random bytes do not compress: deflate stores them, and the headers among them, as they are.
    const data = Buffer.concat(Array.from({ length: 20 }, () => Buffer.concat([randomBytes(100), HEADER, randomBytes(1000), HEADER, HEADER, randomBytes(2000)])));
    for (const level of [0, 1]) {
      const blob = await lapinGzip(data, 4096, level);
      const decoded = await byMembers(blob, [1500], 4096);
      assertSame(decoded, await sequential(blob));
      assert.equal(decoded.sequentialFrom, undefined, `level ${level}: read member by member`);
      assert.ok((decoded.joined ?? 0) > 0, `level ${level}: the false starts were joined across`);
    }
  });

  test('a member that ends early, then a zero byte and more members: sequential gunzip stops at the zero, and so does this', async () => {
    // Node's gunzip ends the stream at a zero byte after a member; a chain that took the later members would see more.
    const a = zlib.gzipSync(Buffer.alloc(100, 1), { level: 1 });
    const b = zlib.gzipSync(Buffer.alloc(100, 2), { level: 1 });
    a[9] = 3;
    b[9] = 3;
    const blob = Buffer.concat([a, Buffer.from([0, 5, 5]), b]);
    const expected = await sequential(blob);
    assert.equal(expected.output?.length, 100, 'the reference stops after the first member');
    const decoded = await byMembers(blob, [blob.length], 100);
    assertSame(decoded, expected);
    assert.equal(decoded.sequentialFrom, 0);
  });

  test('members short of a block with more after them (half a million empty ones: 28 s of thread-pool trips) are read by sequential gunzip', async () => {
    const block = randomBytes(4096);
    const first = await lapinGzip(block, 4096);
    // An empty member with the header of lapin's (level 1, Unix): every one of them is a candidate start.
    const empty = zlib.gzipSync(Buffer.alloc(0), { level: 1 });
    empty[9] = 3;
    assert.ok(empty.subarray(0, 10).equals(first.subarray(0, 10)));
    const input = Buffer.concat([first, ...Array<Buffer>(20_000).fill(empty), first]);
    const decoded = await byMembers(input, [input.length], 4096);
    assertSame(decoded, await sequential(input));
    assert.equal(decoded.parallel, 1, 'the first member only');
    assert.equal(decoded.sequentialFrom, first.length);
  });

  test('a foreign gzip file of one long member is read by one gunzip, from the start', async () => {
    const data = randomBytes(200_000);
    const blob = zlib.gzipSync(data, { level: 1 });
    const decoded = await byMembers(blob, [10_000], 4096);
    assertSame(decoded, await sequential(blob));
    assert.equal(decoded.sequentialFrom, 0);
  });

  test('property: random member streams, with headers forged inside stored blocks, cut, damaged, padded or foreign, give what sequential gunzip gives', async () => {
    const blockSize = 512;
    const content = fc.array(
      fc.oneof(
        fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b)),
        fc.integer({ min: 1, max: 2000 }).map((n) => Buffer.alloc(n, 0x41)),
        // lapin's own header bytes in the data: level 0 stores them as they are, so they look like a member start.
        fc.integer({ min: 1, max: 4 }).map((n) => Buffer.concat(Array.from({ length: n }, () => HEADER))),
      ),
      { maxLength: 8 },
    );
    const damage = fc.oneof(
      fc.constant({ kind: 'none' as const }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ kind: fc.constant('pad' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 20 }) }),
      fc.record({ kind: fc.constant('forge' as const), at: fc.nat() }),
      // Bytes between two members (a zero first ends Node's gunzip there; anything else is a broken header).
      fc.record({ kind: fc.constant('gap' as const), which: fc.nat(), zero: fc.boolean(), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
    );
    await fc.assert(
      fc.asyncProperty(content, fc.constantFrom(0, 1, 6), damage, fc.array(fc.integer({ min: 1, max: 3000 }), { maxLength: 20 }), fc.boolean(), async (parts, level, hurt, pieces, foreign) => {
        const data = Buffer.concat(parts);
        let blob = foreign ? zlib.gzipSync(data, { level: Math.max(1, level) }) : await lapinGzip(data, blockSize, level);
        if (hurt.kind === 'cut' && blob.length > 0) blob = blob.subarray(0, hurt.at % blob.length);
        if (hurt.kind === 'flip' && blob.length > 0) {
          blob = Buffer.from(blob);
          const at = hurt.at % blob.length;
          blob[at] = ((blob[at] as number) ^ hurt.value) & 0xff;
        }
        if (hurt.kind === 'pad') blob = Buffer.concat([blob, Buffer.from(hurt.bytes)]);
        if (hurt.kind === 'forge' && blob.length > 0) {
          // A forged member start anywhere: the first header's bytes written over the stream.
          blob = Buffer.from(blob);
          blob.subarray(0, 10).copy(blob, hurt.at % blob.length);
        }
        if (hurt.kind === 'gap' && blob.length > 10) {
          const starts: number[] = [];
          for (let at = blob.indexOf(blob.subarray(0, 10), 1); at > 0; at = blob.indexOf(blob.subarray(0, 10), at + 1)) starts.push(at);
          const at = starts.length > 0 ? (starts[hurt.which % starts.length] as number) : blob.length;
          const gap = Buffer.from(hurt.bytes);
          if (hurt.zero) gap[0] = 0;
          blob = Buffer.concat([blob.subarray(0, at), gap, blob.subarray(at)]);
        }
        const expected = await sequential(blob);
        const decoded = await byMembers(blob, pieces, blockSize);
        assertSame(decoded, expected);
        let forged = 0;
        for (let at = data.indexOf(HEADER); at >= 0; at = data.indexOf(HEADER, at + 1)) forged++;
        // Up to 16 false starts a member: each is joined across (the header may be cut by a block edge, hence 8).
        if (hurt.kind === 'none' && !foreign && forged <= 8) assert.equal(decoded.sequentialFrom, undefined, 'an undamaged lapin layer is read member by member');
      }),
      { numRuns: 300 },
    );
  });
});
