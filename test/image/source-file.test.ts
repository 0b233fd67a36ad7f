// A context file is read twice: when the build scans the context, and when
// a writer (layer, initrd, block image, directory output) copies its bytes.
// What was put at the path in between must not be read in its place.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { IncomingBlob } from '../../src/image/blob-store.js';
import { writeLayer } from '../../src/image/layer.js';
import type { FileNode, FsNode } from '../../src/image/tree.js';
import { writeLocalDirectory } from '../../src/export/local-dir.js';
import { writeCpioNewc } from '../../src/rootfs/cpio.js';
import { writeExtImage } from '../../src/rootfs/ext.js';

let work: string;
const haveMke2fs = spawnSync('sh', ['-c', 'command -v mke2fs']).status === 0;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-source-file-'));
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A context with dir/app.txt, and outside it a file of the same size the swaps point at. */
async function scene(name: string): Promise<{ context: string; outside: string; node: FileNode; tree: FsNode[] }> {
  const root = path.join(work, name);
  const context = path.join(root, 'context');
  const outside = path.join(root, 'outside');
  await mkdir(path.join(context, 'dir'), { recursive: true });
  await mkdir(outside);
  const file = path.join(context, 'dir', 'app.txt');
  await writeFile(file, 'inside');
  await writeFile(path.join(outside, 'app.txt'), 'SECRET');
  const info = await lstat(file);
  // As copy.ts records it when the context is read.
  const node: FileNode = { type: 'file', path: 'dir/app.txt', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 6, source: { kind: 'path', path: file, identity: { dev: info.dev, ino: info.ino } } };
  const tree: FsNode[] = [{ type: 'dir', path: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0 }, node];
  return { context, outside, node, tree };
}

const swaps: Record<string, (context: string, outside: string) => Promise<void>> = {
  'the file swapped for a symlink': async (context, outside) => {
    await rm(path.join(context, 'dir', 'app.txt'));
    await symlink(path.join(outside, 'app.txt'), path.join(context, 'dir', 'app.txt'));
  },
  'the file replaced by another': async (context) => {
    await writeFile(path.join(context, 'dir', 'app.txt.new'), 'SECRET');
    await rename(path.join(context, 'dir', 'app.txt.new'), path.join(context, 'dir', 'app.txt'));
  },
  'its directory swapped for a symlink': async (context, outside) => {
    await rename(path.join(context, 'dir'), path.join(context, 'dir.old'));
    await symlink(outside, path.join(context, 'dir'));
  },
};

/** Every writer that copies context files, each returning what it wrote. */
const writers: Record<string, (tree: FsNode[], out: string) => Promise<string>> = {
  layer: async (tree) => {
    const chunks: Buffer[] = [];
    const incoming: IncomingBlob = { write: async (data) => void chunks.push(Buffer.from(data)), commit: async () => undefined, abort: async () => undefined };
    await writeLayer(tree, { incoming: async () => incoming } as never, { compression: 'none' });
    return Buffer.concat(chunks).toString('latin1');
  },
  initrd: async (tree) => {
    const sink = new PassThrough();
    const chunks: Buffer[] = [];
    sink.on('data', (chunk: Buffer) => chunks.push(chunk));
    await writeCpioNewc(tree, sink);
    return Buffer.concat(chunks).toString('latin1');
  },
  'local directory': async (tree, out) => {
    await writeLocalDirectory(tree, out);
    return readFile(path.join(out, 'dir', 'app.txt'), 'latin1');
  },
  'block image': async (tree, out) => {
    await mkdir(out);
    await writeExtImage(tree, path.join(out, 'rootfs.ext2'), { flavor: 'ext2', mtime: 0, workDir: path.join(out, 'work') });
    return readFile(path.join(out, 'rootfs.ext2'), 'latin1');
  },
};

describe('context files changed between the scan and the write', () => {
  let counter = 0;
  for (const [writer, write] of Object.entries(writers)) {
    const skip = writer === 'block image' && !haveMke2fs && process.env.CI !== 'true' ? 'mke2fs is not installed' : false;
    test(`${writer}: the unchanged file is written`, { skip }, async () => {
      const { tree } = await scene(`ok-${++counter}`);
      assert.ok((await write(tree, path.join(work, `out-${counter}`))).includes('inside'));
    });
    for (const [what, swap] of Object.entries(swaps)) {
      test(`${writer}: ${what} is refused, and nothing of it is written`, { skip }, async () => {
        const { context, outside, tree } = await scene(`swap-${++counter}`);
        await swap(context, outside);
        let written = '';
        await assert.rejects(
          write(tree, path.join(work, `out-${counter}`)).then((text) => {
            written = text;
          }),
          /became a symlink while lapin was building|was replaced by another file while lapin was building/,
        );
        assert.ok(!written.includes('SECRET'));
      });
    }
  }
});
