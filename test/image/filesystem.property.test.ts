// Property: whatever sequence of files, hard links and symlinks is put in
// the tree, every name keeps the content it was given (a link takes its
// target's content when made, as a real filesystem does), and the listing
// has every link after a file of that content, in byte order.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ImageFilesystem } from '../../src/image/filesystem.js';
import { comparePaths, type FsNode } from '../../src/image/tree.js';

const PATHS = ['a', 'a-b', 'b', 'c', 'z'];
const base = { mode: 0o644, uid: 0, gid: 0, mtime: 0 };

type Op = { kind: 'file'; path: string; content: string } | { kind: 'link'; path: string; target: string } | { kind: 'symlink'; path: string };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('file' as const), path: fc.constantFrom(...PATHS), content: fc.constantFrom('1', '2', '3', '4') }),
  fc.record({ kind: fc.constant('link' as const), path: fc.constantFrom(...PATHS), target: fc.constantFrom(...PATHS) }),
  fc.record({ kind: fc.constant('symlink' as const), path: fc.constantFrom(...PATHS) }),
);

function contentOf(node: FsNode | undefined): string | undefined {
  return node?.type === 'file' && node.source.kind === 'bytes' ? Buffer.from(node.source.data).toString() : undefined;
}

test('every name keeps its content across replacements; links follow their files in byte order', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
      const fs = new ImageFilesystem({ mtime: 0 });
      const model = new Map<string, string>();
      for (const o of ops) {
        if (o.kind === 'file') {
          fs.put({ ...base, type: 'file', path: o.path, size: o.content.length, source: { kind: 'bytes', data: Buffer.from(o.content) } });
          model.set(o.path, o.content);
        } else if (o.kind === 'symlink') {
          fs.put({ ...base, type: 'symlink', path: o.path, mode: 0o777, target: 'elsewhere' });
          model.set(o.path, 'symlink');
        } else {
          // As copy.ts does: a link only to a name that is a file itself, never to itself.
          if (o.path === o.target || fs.get(o.target)?.type !== 'file') continue;
          fs.put({ ...base, type: 'hardlink', path: o.path, target: o.target });
          model.set(o.path, model.get(o.target) as string);
        }
      }
      const listed = fs.list();
      const byPath = new Map(listed.map((n) => [n.path, n]));
      for (let i = 1; i < listed.length; i++) assert.ok(comparePaths((listed[i - 1] as FsNode).path, (listed[i] as FsNode).path) < 0);
      for (const node of listed) {
        let content: string | undefined;
        if (node.type === 'symlink') content = 'symlink';
        else if (node.type === 'file') content = contentOf(node);
        else if (node.type === 'hardlink') {
          const target = byPath.get(node.target);
          assert.equal(target?.type, 'file', `${node.path} links to ${node.target}, which is not a file`);
          assert.ok(comparePaths(node.target, node.path) < 0, `${node.path} comes before its file ${node.target}`);
          content = contentOf(target);
        }
        assert.equal(content, model.get(node.path), `content of ${node.path}`);
      }
      assert.deepEqual([...byPath.keys()].sort(), [...model.keys()].sort());
    }),
    { numRuns: 2000 },
  );
});
