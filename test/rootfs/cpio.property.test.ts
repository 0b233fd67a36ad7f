import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { FsNode } from '../../src/image/tree.js';
import { comparePaths } from '../../src/image/tree.js';
import { cpioNewcStream, withParentDirs } from '../../src/rootfs/cpio.js';

/** One entry as a strict newc reader sees it. */
interface ReadEntry {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  check: number;
  data: Buffer;
}

/** Parses a whole newc archive, checking magic, alignment, trailer and final padding. */
function readNewc(archive: Buffer): ReadEntry[] {
  const entries: ReadEntry[] = [];
  let offset = 0;
  const field = (index: number): number => {
    const text = archive.subarray(offset + 6 + index * 8, offset + 14 + index * 8).toString('latin1');
    assert.match(text, /^[0-9a-f]{8}$/, `field ${index} at ${offset} is not 8 lowercase hex digits`);
    return parseInt(text, 16);
  };
  while (true) {
    assert.equal(offset % 4, 0, 'header not 4-byte aligned');
    assert.ok(offset + 110 <= archive.length, 'archive ends inside a header');
    assert.equal(archive.subarray(offset, offset + 6).toString('latin1'), '070701');
    const fileSize = field(6);
    const nameSize = field(11);
    const nameStart = offset + 110;
    assert.equal(archive[nameStart + nameSize - 1], 0, 'name is not NUL-terminated');
    const name = archive.subarray(nameStart, nameStart + nameSize - 1).toString('utf8');
    const dataStart = Math.ceil((nameStart + nameSize) / 4) * 4;
    for (let i = nameStart + nameSize; i < dataStart; i++) assert.equal(archive[i], 0, 'name padding is not zero');
    const entry: ReadEntry = {
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      nlink: field(4),
      mtime: field(5),
      devMajor: field(7),
      devMinor: field(8),
      rdevMajor: field(9),
      rdevMinor: field(10),
      check: field(12),
      data: archive.subarray(dataStart, dataStart + fileSize),
    };
    offset = Math.ceil((dataStart + fileSize) / 4) * 4;
    if (name === 'TRAILER!!!') break;
    entries.push(entry);
  }
  assert.equal(archive.length % 512, 0, 'archive not padded to 512 bytes');
  assert.ok(archive.length - offset < 512, 'more than one block of padding');
  assert.ok(archive.subarray(offset).every((byte) => byte === 0), 'final padding is not zero');
  return entries;
}

async function archiveBytes(nodes: Iterable<FsNode>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of cpioNewcStream(nodes)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const TYPE_MASK = 0o170000;

describe('newc layout', () => {
  test('inode numbers, link counts and hardlink data placement', async () => {
    const base = { uid: 0, gid: 0, mtime: 100 };
    const entries = readNewc(
      await archiveBytes([
        { ...base, type: 'dir', path: 'a', mode: 0o755 },
        { ...base, type: 'dir', path: 'a/b', mode: 0o755 },
        { ...base, type: 'dir', path: 'a/c', mode: 0o700 },
        { ...base, type: 'file', path: 'a/f', mode: 0o640, uid: 7, gid: 8, mtime: 55, size: 3, source: { kind: 'bytes', data: Buffer.from('abc') } },
        { ...base, type: 'hardlink', path: 'a/g', target: 'a/f', mode: 0o600 },
        { ...base, type: 'hardlink', path: 'a/h', target: 'a/g', mode: 0o600 },
        { ...base, type: 'symlink', path: 's', target: 'a/f', mode: 0o777 },
      ]),
    );
    assert.deepEqual(
      entries.map((entry) => [entry.name, entry.ino, entry.nlink, entry.mode.toString(8), entry.data.toString()]),
      [
        ['a', 1, 4, '40755', ''],
        ['a/b', 2, 2, '40755', ''],
        ['a/c', 3, 2, '40700', ''],
        ['a/f', 4, 3, '100640', 'abc'],
        ['a/g', 4, 3, '100640', ''],
        ['a/h', 4, 3, '100640', ''],
        ['s', 5, 1, '120777', 'a/f'],
      ],
    );
    // Later links carry the inode's owner and mtime, not their own.
    assert.deepEqual(entries.slice(3, 6).map((entry) => [entry.uid, entry.gid, entry.mtime]), [[7, 8, 55], [7, 8, 55], [7, 8, 55]]);
    for (const entry of entries) {
      assert.deepEqual([entry.devMajor, entry.devMinor, entry.rdevMajor, entry.rdevMinor, entry.check], [0, 0, 0, 0, 0]);
    }
  });
});

/** A random tree description: relative paths over a small alphabet, so collisions and nesting happen. */
// Mostly a few fixed names, so paths nest under each other often.
const segment = fc.oneof(
  { arbitrary: fc.constantFrom('a', 'b', 'c d'), weight: 4 },
  { arbitrary: fc.stringMatching(/^[a-c][a-c. _-]{0,3}$/), weight: 1 },
);
const treePath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => parts.join('/'));
const leafKind = fc.oneof(
  fc.record({ kind: fc.constant('file' as const), data: fc.uint8Array({ maxLength: 40 }), mode: fc.integer({ min: 0, max: 0o7777 }) }),
  fc.record({ kind: fc.constant('dir' as const), mode: fc.integer({ min: 0, max: 0o7777 }) }),
  fc.record({ kind: fc.constant('symlink' as const), target: fc.stringMatching(/^[a-z/.]{1,20}$/) }),
);
type TreeSpec = typeof treeSpec extends fc.Arbitrary<infer Spec> ? Spec : never;
const treeSpec = fc.record({
  leaves: fc.uniqueArray(fc.tuple(treePath, leafKind), { selector: ([path]) => path, maxLength: 25, size: 'medium' }),
  linkPicks: fc.array(fc.nat(), { maxLength: 4 }),
  mtime: fc.integer({ min: 0, max: 0xffffffff }),
  uid: fc.integer({ min: 0, max: 70000 }),
});

/** Builds a valid sorted node list from a spec: a leaf under another leaf's path makes that leaf a dir. */
function buildTree(spec: TreeSpec): FsNode[] {
  const parents = new Set<string>();
  for (const [path] of spec.leaves) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) parents.add(parts.slice(0, i).join('/'));
  }
  const meta = { uid: spec.uid, gid: spec.uid + 1, mtime: spec.mtime };
  const nodes: FsNode[] = spec.leaves.map(([path, leaf]) => {
    if (leaf.kind === 'dir' || parents.has(path)) return { ...meta, type: 'dir', path, mode: leaf.kind === 'symlink' ? 0o755 : leaf.mode };
    if (leaf.kind === 'symlink') return { ...meta, type: 'symlink', path, target: leaf.target, mode: 0o777 };
    return { ...meta, type: 'file', path, mode: leaf.mode, size: leaf.data.length, source: { kind: 'bytes', data: leaf.data } };
  });
  const files = nodes.filter((node) => node.type === 'file');
  spec.linkPicks.forEach((pick, index) => {
    const target = files[pick % Math.max(files.length, 1)];
    if (target !== undefined) nodes.push({ ...meta, type: 'hardlink', path: `${target.path}~link${index}`, target: target.path, mode: 0o644 });
  });
  return withParentDirs(nodes, { mode: 0o711, mtime: 9 });
}


describe('round trip through a newc reader', () => {
  test('random trees read back with the same entries, contents and metadata', async () => {
    await fc.assert(
      fc.asyncProperty(treeSpec, async (spec) => {
        const nodes = buildTree(spec);
        const archive = await archiveBytes(nodes);
        const entries = readNewc(archive);
        assert.deepEqual(entries.map((entry) => entry.name), nodes.map((node) => node.path));
        assert.ok(nodes.every((node, index) => index === 0 || comparePaths(nodes[index - 1]!.path, node.path) < 0));

        const inoByPath = new Map<string, number>();
        let expectedIno = 1;
        for (const [index, node] of nodes.entries()) {
          const entry = entries[index]!;
          switch (node.type) {
            case 'dir': {
              const subdirs = nodes.filter((other) => other.type === 'dir' && other.path.startsWith(`${node.path}/`) && !other.path.slice(node.path.length + 1).includes('/'));
              assert.equal(entry.mode, 0o040000 | node.mode);
              assert.equal(entry.nlink, 2 + subdirs.length);
              assert.equal(entry.data.length, 0);
              assert.equal(entry.ino, expectedIno++);
              break;
            }
            case 'symlink':
              assert.equal(entry.mode, 0o120000 | node.mode);
              assert.equal(entry.data.toString(), node.target);
              assert.equal(entry.ino, expectedIno++);
              break;
            case 'file': {
              const links = nodes.filter((other) => other.type === 'hardlink' && other.target === node.path).length;
              assert.equal(entry.mode, 0o100000 | node.mode);
              assert.equal(entry.nlink, 1 + links);
              assert.ok(node.source.kind === 'bytes' && Buffer.from(node.source.data).equals(entry.data));
              assert.equal(entry.ino, expectedIno++);
              inoByPath.set(node.path, entry.ino);
              break;
            }
            case 'hardlink':
              assert.equal(entry.ino, inoByPath.get(node.target));
              assert.equal(entry.mode & TYPE_MASK, 0o100000);
              assert.equal(entry.data.length, 0);
              break;
          }
          assert.equal(entry.uid, node.uid);
          assert.equal(entry.mtime, node.mtime);
        }
        // Deterministic: a second write is byte-identical.
        assert.ok((await archiveBytes(nodes)).equals(archive));
      }),
      { numRuns: 300 },
    );
  });
});
