// A FROM base's layers are indexed, not extracted: the nodes point at their
// data in the layer blob. The index must describe exactly the tree that
// extracting gives, the writers must write exactly the same bytes from it,
// a kept index must serve a second build without the tar being read, and a
// hostile layer must still end in one clean error.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rename, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import tar from 'tar-stream';
import { LapinError } from '../../src/errors.js';
import { closeLayerReaders, readLayerMember } from '../../src/image/layer-member.js';
import { tarChunks } from '../../src/image/tar-writer.js';
import type { FsNode } from '../../src/image/tree.js';
import { cpioNewcStream } from '../../src/rootfs/cpio.js';
import { flattenLayers } from '../../src/registry/extract.js';
import { indexLayers } from '../../src/registry/layer-index.js';
import { SourceError } from '../../src/source/errors.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin layer index-'));
});
after(async () => {
  closeLayerReaders();
  await rm(work, { recursive: true, force: true });
});

interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
}

async function tarOf(entries: readonly Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const data = e.type === undefined || e.type === 'file' ? (e.data ?? '') : '';
    pack.entry({ name: e.name, type: e.type ?? 'file', mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644), mtime: new Date(1_700_000_000_000), ...(e.linkname ? { linkname: e.linkname } : {}) }, data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

let counter = 0;
/** A gzip layer file and its diff_id. */
async function layerFile(entries: readonly Entry[], dir: string): Promise<{ file: string; digest: string; diffId: string }> {
  const plain = await tarOf(entries);
  const blob = gzipSync(plain);
  const hex = createHash('sha256').update(blob).digest('hex');
  const file = path.join(dir, `${counter++}-${hex}`);
  await writeFile(file, blob);
  return { file, digest: `sha256:${hex}`, diffId: `sha256:${createHash('sha256').update(plain).digest('hex')}` };
}

async function bytesOf(node: FsNode): Promise<Buffer> {
  assert.equal(node.type, 'file');
  if (node.type !== 'file') return Buffer.alloc(0);
  if (node.source.kind === 'bytes') return Buffer.from(node.source.data);
  if (node.source.kind === 'path') return readFile(node.source.path);
  const chunks: Buffer[] = [];
  for await (const chunk of readLayerMember(node.source.member)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Node fields that say what the tree is, whatever the data's source. */
function shape(nodes: readonly FsNode[]): unknown[] {
  return nodes.map((n) => ({ ...n, ...(n.type === 'file' ? { source: undefined } : {}) }));
}

async function sha256Of(chunks: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}

const options = (dir: string, capture: string[] = []): Parameters<typeof indexLayers>[1] => ({ image: 'test-image', capture: new Set(capture), scratch: path.join(dir, 'scratch'), captureDir: path.join(dir, 'kept') });

describe('base layers indexed, not extracted', () => {
  test('the index gives the tree extraction gives; the layer and initrd writers write the same bytes from it; nothing is extracted', async () => {
    const dir = await mkdtemp(path.join(work, 'same-'));
    const big = randomBytes(12 * 1024 * 1024);
    const lower = await layerFile(
      [
        { name: 'boot/', type: 'directory' },
        { name: 'boot/kernel', data: randomBytes(100_000), mode: 0o755 },
        { name: 'rootfs.ext4', data: big },
        { name: 'etc/a', data: 'a\n' },
        { name: 'etc/gone', data: 'gone\n' },
        { name: 'etc/link', type: 'link', linkname: 'etc/a' },
        { name: 'etc/sym', type: 'symlink', linkname: 'a' },
        { name: 'opt/x', data: 'x' },
      ],
      dir,
    );
    const upper = await layerFile([{ name: 'etc/.wh.gone' }, { name: 'opt/.wh..wh..opq' }, { name: 'opt/y', data: 'y' }, { name: 'zz', data: 'last' }], dir);
    const flattened = await flattenLayers([lower, upper], path.join(dir, 'data'), 'test-image');
    const indexed = await indexLayers([lower, upper], options(dir));
    assert.deepEqual(shape(indexed), shape(flattened));
    assert.deepEqual(
      indexed.filter((n) => n.type === 'file').map((n) => (n.type === 'file' ? n.source.kind : '')),
      indexed.filter((n) => n.type === 'file').map(() => 'layer'),
    );
    for (const [i, node] of indexed.entries()) if (node.type === 'file') assert.deepEqual(await bytesOf(node), await bytesOf(flattened[i] as FsNode), node.path);
    assert.equal(await sha256Of(tarChunks(indexed)), await sha256Of(tarChunks(flattened)), 'a layer written from the index is the layer written from extracted files');
    assert.equal(await sha256Of(cpioNewcStream(indexed)), await sha256Of(cpioNewcStream(flattened)), 'so is an initrd');
    assert.deepEqual(await readdir(path.join(dir, 'scratch')).catch(() => []), [], 'no file data was written');
  });

  test('a kept index serves the next build without reading the tar; the named kernel is kept beside it', async () => {
    const dir = await mkdtemp(path.join(work, 'kept-'));
    const kernel = randomBytes(300_000);
    const layer = await layerFile([{ name: 'big', data: randomBytes(2 * 1024 * 1024) }, { name: 'unikernel/kernel', data: kernel }], dir);
    const indexFile = path.join(dir, 'cache', 'index', 'sha256', 'x.json');
    const first = await indexLayers([{ ...layer, indexFile }], options(dir, ['unikernel/kernel']));
    const kernelNode = first.find((n) => n.path === 'unikernel/kernel');
    assert.ok(kernelNode?.type === 'file' && kernelNode.source.kind === 'layer' && kernelNode.source.member.file !== undefined, 'the kernel is kept as a file');
    assert.deepEqual(await readdir(path.join(dir, 'cache', 'index', 'files')), [createHash('sha256').update(kernel).digest('hex')]);
    // The blob replaced by bytes that are no tar: a second index read from the blob would fail.
    await writeFile(layer.file, 'not a layer');
    const second = await indexLayers([{ ...layer, indexFile }], options(dir, ['unikernel/kernel']));
    assert.deepEqual(shape(second), shape(first));
    assert.deepEqual(await bytesOf(second.find((n) => n.path === 'unikernel/kernel') as FsNode), kernel);
    // A damaged index is made again (here from the damaged blob, which says so).
    await writeFile(indexFile, '{"version":1,"entries":[["f","../x",420,0,0,0,1,0,null]]');
    await assert.rejects(indexLayers([{ ...layer, indexFile }], options(dir)), (error: Error) => error instanceof SourceError || error instanceof LapinError);
    // An index made for another diff_id is not used.
    const good = await layerFile([{ name: 'a', data: 'a' }], dir);
    const goodIndex = path.join(dir, 'cache', 'index', 'sha256', 'good.json');
    await indexLayers([{ ...good, indexFile: goodIndex }], options(dir));
    await assert.rejects(indexLayers([{ ...good, diffId: `sha256:${'0'.repeat(64)}`, indexFile: goodIndex }], options(dir)), /not the diff_id .* its config lists; refusing the image/);
  });

  test('members read out of order, and two at once, give their own bytes', async () => {
    const dir = await mkdtemp(path.join(work, 'order-'));
    const bodies = Array.from({ length: 6 }, (_, i) => randomBytes(200_000 + i));
    const layer = await layerFile(bodies.map((data, i) => ({ name: `f${i}`, data })), dir);
    const nodes = await indexLayers([layer], options(dir));
    const order = [5, 0, 3, 3, 1, 4, 2];
    for (const i of order) assert.deepEqual(await bytesOf(nodes[i] as FsNode), bodies[i]);
    const both = await Promise.all([bytesOf(nodes[2] as FsNode), bytesOf(nodes[1] as FsNode)]);
    assert.deepEqual(both, [bodies[2], bodies[1]]);
  });

  test('a blob replaced, rewritten, cut or deleted after indexing is never read at the old offsets: a clean error, or its bytes when it still holds the digest', async () => {
    const dir = await mkdtemp(path.join(work, 'changed-'));
    const bodies = [randomBytes(300_000), randomBytes(300_000)];
    const layer = await layerFile(bodies.map((data, i) => ({ name: `f${i}`, data })), dir);
    const original = await readFile(layer.file);
    const read = async (node: FsNode): Promise<Buffer | Error> => bytesOf(node).catch((error: Error) => error);
    const isChanged = (result: Buffer | Error, detail: RegExp): boolean => result instanceof LapinError && detail.test(result.message) && /after lapin indexed it/.test(result.message);

    // Other bytes under the blob's name (another layer of the same shape): refused, not read at the old offsets.
    let nodes = await indexLayers([layer], options(dir));
    const other = await layerFile(bodies.map((_, i) => ({ name: `f${i}`, data: randomBytes(300_000) })), dir);
    await rename(other.file, layer.file);
    assert.ok(isChanged(await read(nodes[1] as FsNode), /no longer holds sha256:/));
    closeLayerReaders();

    // The same bytes written again (a re-pull: a new file): read, and right.
    await writeFile(layer.file, original);
    nodes = await indexLayers([layer], options(dir));
    const again = path.join(dir, 'again');
    await writeFile(again, original);
    await rename(again, layer.file);
    assert.deepEqual(await read(nodes[1] as FsNode), bodies[1]);

    // Cut in place while a reader is kept open on it: refused.
    nodes = await indexLayers([layer], options(dir));
    assert.deepEqual(await read(nodes[0] as FsNode), bodies[0]);
    await truncate(layer.file, original.length - 100);
    assert.ok(isChanged(await read(nodes[1] as FsNode), /no longer holds/));
    closeLayerReaders();

    // Deleted: one clean line, not a raw ENOENT.
    await writeFile(layer.file, original);
    nodes = await indexLayers([layer], options(dir));
    await rm(layer.file);
    assert.ok(isChanged(await read(nodes[0] as FsNode), /cannot be read \(ENOENT\)/));
  });

  test('a kept index whose symlink climbs out of the root is made again from the blob', async () => {
    const dir = await mkdtemp(path.join(work, 'tampered-'));
    const layer = await layerFile([{ name: 'a', data: 'a' }, { name: 'l', type: 'symlink', linkname: 'a' }], dir);
    const indexFile = path.join(dir, 'cache', 'index', 'sha256', 'x.json');
    await indexLayers([{ ...layer, indexFile }], options(dir));
    const kept = await readFile(indexFile, 'utf8');
    assert.ok(kept.includes('"l",'), kept);
    await writeFile(indexFile, kept.replace(/("s","l",(?:[^,]*,){4})"a"/, '$1"../../../etc/passwd"'));
    assert.notEqual(await readFile(indexFile, 'utf8'), kept, 'the index was tampered with');
    const nodes = await indexLayers([{ ...layer, indexFile }], options(dir));
    const link = nodes.find((n) => n.path === 'l');
    assert.ok(link?.type === 'symlink' && link.target === 'a', JSON.stringify(link));
  });

  test('property: a kept index with another offset or size for a file gives that file\'s bytes or one clean error, never other bytes', async () => {
    const dir = await mkdtemp(path.join(work, 'offsets-'));
    const bodies = [randomBytes(5000), randomBytes(5000), randomBytes(70_000), Buffer.from('short')];
    const layer = await layerFile(bodies.map((data, i) => ({ name: `f${i}`, data })), dir);
    const indexFile = path.join(dir, 'cache', 'index', 'sha256', 'x.json');
    await indexLayers([{ ...layer, indexFile }], options(dir));
    const kept = JSON.parse(await readFile(indexFile, 'utf8')) as { entries: unknown[][] };
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 3 }), fc.oneof(fc.integer({ min: -300, max: 300 }), fc.constantFrom(11, -11, 22)), fc.boolean(), fc.boolean(), async (which, shift, blocks, sized) => {
        const entries = kept.entries.map((e) => [...e]);
        const entry = entries[which] as unknown[];
        const delta = blocks ? shift * 512 : shift;
        if (sized) entry[6] = Math.max(0, (entry[6] as number) + delta);
        else entry[7] = Math.max(0, (entry[7] as number) + delta);
        await writeFile(indexFile, JSON.stringify({ ...kept, entries }));
        const nodes = await indexLayers([{ ...layer, indexFile }], options(dir));
        const result = await bytesOf(nodes[which] as FsNode).catch((error: Error) => error);
        if (result instanceof Error) assert.ok(result instanceof LapinError || result instanceof SourceError, `${result.constructor.name}: ${result.message}`);
        else assert.deepEqual(result, bodies[which], `f${which} read at another offset or size gave other bytes`);
      }),
      { numRuns: 80 },
    );
  });

  test('hostile layers end in one clean error: "..", hard link loops, a link to a directory, a cut gzip stream', async () => {
    const dir = await mkdtemp(path.join(work, 'hostile-'));
    const cases: Array<[Entry[], RegExp]> = [
      [[{ name: '../../escape', data: 'x' }], /climbs out of the root/],
      [[{ name: 'a', type: 'link', linkname: 'b' }, { name: 'b', type: 'link', linkname: 'a' }], /hard link \/a to \/b, which is not a file before it/],
      [[{ name: 'self', type: 'link', linkname: 'self' }], /hard link \/self to \/self/],
      [[{ name: 'd/', type: 'directory' }, { name: 'l', type: 'link', linkname: 'd' }], /not a file before it/],
      [[{ name: 'l', type: 'symlink', linkname: '../../etc/passwd' }], /points outside the root/],
    ];
    for (const [entries, message] of cases) {
      const layer = await layerFile(entries, dir);
      await assert.rejects(indexLayers([layer], options(dir)), (error: Error) => error instanceof LapinError && message.test(error.message));
    }
    const whole = gzipSync(await tarOf([{ name: 'f', data: randomBytes(100_000) }]));
    const cut = path.join(dir, 'cut');
    await writeFile(cut, whole.subarray(0, whole.length - 5000));
    await assert.rejects(indexLayers([{ file: cut, digest: 'sha256:cut' }], options(dir)), (error: Error) => error instanceof SourceError && /gzip data is damaged/.test(error.message));
  });

  test('property: for any small layer stack, the index is the extracted tree with the same bytes; damaged bytes give a clean error', async () => {
    const dir = await mkdtemp(path.join(work, 'prop-'));
    const name = fc.constantFrom('a', 'b', 'c', 'a/b', 'a/c', 'b/a', 'c/c/c');
    const entry: fc.Arbitrary<Entry> = fc.oneof(
      fc.record({ name, data: fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)) }),
      name.map((n) => ({ name: `${n}/`, type: 'directory' as const })),
      fc.tuple(name, name).map(([n, t]) => ({ name: n, type: 'symlink' as const, linkname: t })),
      fc.tuple(name, name).map(([n, t]) => ({ name: n, type: 'link' as const, linkname: t })),
      name.map((n) => ({ name: n.includes('/') ? n.replace(/[^/]+$/, (b) => `.wh.${b}`) : `.wh.${n}` })),
      name.map((n) => ({ name: `${n}/.wh..wh..opq` })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(entry, { maxLength: 8 }), { minLength: 1, maxLength: 3 }), fc.nat(), async (stack, cutAt) => {
        const layers = [];
        for (const entries of stack) layers.push(await layerFile(entries, dir));
        const flattened = await flattenLayers(layers, path.join(dir, `data-${counter++}`), 'test-image').catch((error: unknown) => error);
        const indexed = await indexLayers(layers, options(dir)).catch((error: unknown) => error);
        if (flattened instanceof Error) {
          assert.ok(indexed instanceof Error && indexed.message === flattened.message, `${String(indexed)} vs ${flattened.message}`);
          return;
        }
        assert.ok(!(indexed instanceof Error), String(indexed));
        const nodes = indexed as FsNode[];
        const extracted = flattened as FsNode[];
        assert.deepEqual(shape(nodes), shape(extracted));
        for (const [i, node] of nodes.entries()) if (node.type === 'file') assert.deepEqual(await bytesOf(node), await bytesOf(extracted[i] as FsNode));
        // The first layer's blob cut short or with a flipped byte: a result or a clean error, never another exception.
        const blob = await readFile((layers[0] as { file: string }).file);
        const damaged = Buffer.from(blob.subarray(0, Math.max(1, cutAt % (blob.length + 1))));
        if (cutAt % 3 === 0 && damaged.length > 20) damaged.writeUInt8((damaged[cutAt % damaged.length] as number) ^ 0x40, cutAt % damaged.length);
        const file = path.join(dir, `damaged-${counter++}`);
        await writeFile(file, damaged);
        const result = await indexLayers([{ file, digest: 'sha256:damaged' }], options(dir)).catch((error: unknown) => error);
        if (result instanceof Error) assert.ok(result instanceof LapinError || result instanceof SourceError, `${result.constructor.name}: ${result.message}`);
      }),
      { numRuns: 60 },
    );
  });
});
