import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import tar from 'tar-stream';
import { LapinError } from '../../src/errors.js';
import { BlobStore } from '../../src/image/blob-store.js';
import { ParallelGzip } from '../../src/image/compress/parallel-gzip.js';
import { ZstdProcess } from '../../src/image/compress/zstd.js';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_ZSTD, writeLayer } from '../../src/image/layer.js';
import { tarChunks } from '../../src/image/tar-writer.js';
import type { FsNode } from '../../src/image/tree.js';

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function gzipWith(input: Buffer, options: { level: number; concurrency: number; chunkSize: number }, writes: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const gzip = new ParallelGzip(options, (data) => {
    out.push(data);
  });
  let offset = 0;
  for (const size of writes) {
    if (offset >= input.length) break;
    await gzip.write(input.subarray(offset, offset + size));
    offset += size;
  }
  if (offset < input.length) await gzip.write(input.subarray(offset));
  await gzip.end();
  return Buffer.concat(out);
}

function sample(length: number, seed: number): Buffer {
  const data = Buffer.alloc(length);
  let state = seed | 1;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = state % 5 === 0 ? state >>> 24 : 97 + (i % 7);
  }
  return data;
}

describe('parallel gzip', () => {
  test('the bytes do not depend on the thread count or on how the input is written', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 20 }),
        fc.integer({ min: 1, max: 9 }),
        async (length, seed, writes, level) => {
          const input = sample(length, seed);
          const chunkSize = 16 * 1024;
          const one = await gzipWith(input, { level, concurrency: 1, chunkSize }, [input.length || 1]);
          const many = await gzipWith(input, { level, concurrency: 6, chunkSize }, writes);
          assert.ok(one.equals(many));
          assert.ok(gunzipSync(one).equals(input));
        },
      ),
      { numRuns: 40 },
    );
  });

  test('1 worker and N workers give identical bytes at the real block size', async () => {
    const input = sample(5 * 1024 * 1024 + 777, 42);
    const one = await gzipWith(input, { level: 1, concurrency: 1, chunkSize: 1024 * 1024 }, [input.length]);
    const four = await gzipWith(input, { level: 1, concurrency: 4, chunkSize: 1024 * 1024 }, [65536, 1, 3 * 1024 * 1024]);
    assert.ok(one.equals(four));
    assert.ok(gunzipSync(four).equals(input));
  });

  test('empty input is one valid empty member', async () => {
    const out = await gzipWith(Buffer.alloc(0), { level: 6, concurrency: 2, chunkSize: 1024 }, []);
    assert.equal(gunzipSync(out).length, 0);
    assert.equal(out[9], 3, 'OS byte is Unix');
  });

  test('levels give different bytes for the same input', async () => {
    const input = sample(100_000, 7);
    const fast = await gzipWith(input, { level: 1, concurrency: 2, chunkSize: 1 << 20 }, [input.length]);
    const best = await gzipWith(input, { level: 9, concurrency: 2, chunkSize: 1 << 20 }, [input.length]);
    assert.notDeepEqual(fast, best);
  });
});

describe('tar writer', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin-tar-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** What tar-stream writes for the same nodes: lapin's writer must match it byte for byte. */
  async function viaTarStream(nodes: FsNode[]): Promise<Buffer> {
    const pack = tar.pack();
    const collected = (async () => {
      const parts: Buffer[] = [];
      for await (const part of Readable.from(pack)) parts.push(part as Buffer);
      return Buffer.concat(parts);
    })();
    for (const node of nodes) {
      const base = { name: node.path, mode: node.mode, uid: node.uid, gid: node.gid, mtime: new Date(node.mtime * 1000), uname: '', gname: '' };
      await new Promise<void>((resolve, reject) => {
        const done = (error?: Error | null): void => (error ? reject(error) : resolve());
        if (node.type === 'dir') pack.entry({ ...base, name: `${node.path}/`, type: 'directory' }, done);
        else if (node.type === 'symlink') pack.entry({ ...base, type: 'symlink', linkname: node.target }, done);
        else if (node.type === 'hardlink') pack.entry({ ...base, type: 'link', linkname: node.target }, done);
        else pack.entry({ ...base, type: 'file', size: node.size }, node.source.kind === 'bytes' ? Buffer.from(node.source.data) : '', done);
      });
    }
    pack.finalize();
    return collected;
  }

  async function viaLapin(nodes: FsNode[]): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of tarChunks(nodes)) parts.push(part);
    return Buffer.concat(parts);
  }

  test('matches tar-stream byte for byte, long and UTF-8 names included', async () => {
    const segment = fc.stringMatching(/^[a-zA-Z0-9._é-]{1,60}$/).filter((s) => s !== '.' && s !== '..');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(segment, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }),
        fc.constantFrom('file', 'dir', 'symlink', 'hardlink'),
        fc.integer({ min: 1, max: 0o7777 }),
        // tar-stream wraps times from 2038 on ((ms / 1000) | 0); lapin writes them right.
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        fc.uint8Array({ maxLength: 2000 }),
        async (paths, kind, mode, mtime, data) => {
          const nodes: FsNode[] = paths.map((parts) => {
            const p = parts.join('/');
            const base = { path: p, mode, uid: 1000, gid: 0, mtime };
            if (kind === 'dir') return { ...base, type: 'dir' };
            if (kind === 'symlink') return { ...base, type: 'symlink', target: `../${p}` };
            if (kind === 'hardlink') return { ...base, type: 'hardlink', target: p };
            return { ...base, type: 'file', size: data.length, source: { kind: 'bytes', data } };
          });
          assert.ok((await viaLapin(nodes)).equals(await viaTarStream(nodes)));
        },
      ),
      { numRuns: 60 },
    );
  });

  test('a file that changed size is refused', async () => {
    const file = path.join(dir, 'k');
    await writeFile(file, 'abc');
    const node: FsNode = { type: 'file', path: 'k', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 10, source: { kind: 'path', path: file } };
    await assert.rejects(viaLapin([node]), (error: unknown) => error instanceof LapinError && /changed size/.test(error.message));
    await assert.rejects(viaLapin([{ ...node, size: 2 }]), /changed size/);
  });
});

describe('tar writer blocks', () => {
  test('files are read into fixed-size blocks: every chunk but the last is one block, and the bytes do not change', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'lapin-blocks-'));
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 3000 }), async (sizes, blockSize) => {
          const nodes: FsNode[] = [];
          for (const [i, size] of sizes.entries()) {
            const file = path.join(dir, `f${i}`);
            const data = Buffer.alloc(size, i + 1);
            await writeFile(file, data);
            nodes.push({ type: 'file', path: `f${i}`, mode: 0o644, uid: 0, gid: 0, mtime: 0, size, source: { kind: 'path', path: file } });
            nodes.push({ type: 'file', path: `m${i}`, mode: 0o644, uid: 0, gid: 0, mtime: 0, size, source: { kind: 'bytes', data } });
          }
          const chunks: Buffer[] = [];
          for await (const chunk of tarChunks(nodes, blockSize)) chunks.push(chunk);
          chunks.slice(0, -1).forEach((chunk) => assert.equal(chunk.length, blockSize));
          const whole: Buffer[] = [];
          for await (const chunk of tarChunks(nodes)) whole.push(chunk);
          assert.ok(Buffer.concat(chunks).equals(Buffer.concat(whole)));
        }),
        { numRuns: 40 },
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('writeLayer', () => {
  let dir = '';
  let kernel = '';
  let nodes: FsNode[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'lapin-layer-'));
    kernel = path.join(dir, 'kernel');
    const data = sample(3 * 1024 * 1024 + 5, 9);
    await writeFile(kernel, data);
    nodes = [
      { type: 'dir', path: 'boot', mode: 0o755, uid: 0, gid: 0, mtime: 0 },
      { type: 'file', path: 'boot/kernel', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: data.length, source: { kind: 'path', path: kernel } },
    ];
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function tarOf(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of tarChunks(nodes)) parts.push(part);
    return Buffer.concat(parts);
  }

  test('gzip: diff_id hashes the tar, digest the blob, and the blob unzips to the tar', async () => {
    const store = new BlobStore(path.join(dir, 'gzip'));
    const layer = await writeLayer(nodes, store, { compression: 'gzip', concurrency: 3 });
    const blob = await readFile(store.pathOf(layer.digest));
    const plain = await tarOf();
    assert.equal(layer.digest, sha256(blob));
    assert.equal(layer.size, blob.length);
    assert.equal(layer.diffId, sha256(plain));
    assert.ok(gunzipSync(blob).equals(plain));
    const again = await writeLayer(nodes, new BlobStore(path.join(dir, 'gzip1')), { compression: 'gzip', concurrency: 1 });
    assert.equal(again.digest, layer.digest);
  });

  test('none: the blob is the tar and digest equals diff_id', async () => {
    const store = new BlobStore(path.join(dir, 'none'));
    const layer = await writeLayer(nodes, store, { compression: 'none' });
    assert.equal(layer.mediaType, MEDIA_TYPE_LAYER_TAR);
    assert.equal(layer.digest, layer.diffId);
    assert.ok((await readFile(store.pathOf(layer.digest))).equals(await tarOf()));
  });

  test('zstd: deterministic, media type, and zstd -d gives the tar back', async () => {
    const first = await writeLayer(nodes, new BlobStore(path.join(dir, 'zstd1')), { compression: 'zstd' });
    const store = new BlobStore(path.join(dir, 'zstd2'));
    const second = await writeLayer(nodes, store, { compression: 'zstd' });
    assert.equal(first.digest, second.digest);
    assert.equal(second.mediaType, MEDIA_TYPE_LAYER_ZSTD);
    const plain = execFileSync('zstd', ['-d', '-c', store.pathOf(second.digest)], { maxBuffer: 64 * 1024 * 1024 });
    assert.ok(plain.equals(await tarOf()));
    assert.equal(second.diffId, sha256(plain));
  });

  test('zstd without the program is one clear error and leaves no partial blob', async () => {
    const previous = process.env.LAPIN_ZSTD;
    process.env.LAPIN_ZSTD = path.join(dir, 'no-such-zstd');
    try {
      const store = new BlobStore(path.join(dir, 'nozstd'));
      await assert.rejects(writeLayer(nodes, store, { compression: 'zstd' }), (error: unknown) => {
        return error instanceof LapinError && /needs the zstd program/.test(error.message);
      });
      const left = execFileSync('find', [store.dir, '-type', 'f']).toString();
      assert.equal(left, '');
    } finally {
      if (previous === undefined) delete process.env.LAPIN_ZSTD;
      else process.env.LAPIN_ZSTD = previous;
    }
  });

  test('ZstdProcess reports a failing program', async () => {
    const previous = process.env.LAPIN_ZSTD;
    process.env.LAPIN_ZSTD = 'false';
    try {
      const z = new ZstdProcess(3, () => undefined);
      await assert.rejects(z.end(), /zstd failed/);
    } finally {
      if (previous === undefined) delete process.env.LAPIN_ZSTD;
      else process.env.LAPIN_ZSTD = previous;
    }
  });
});
