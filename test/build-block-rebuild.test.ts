// A block rootfs built from `include` is a layer of lapin's own staging
// files, keyed on its tar's sha256 (image/layer-cache.ts). A second identical
// build must take it from the layer cache and leave the unchanged archive
// alone; a one-byte change must patch the kept image (rootfs/ext-patch.ts)
// and give the bytes a cold build of the changed tree gives; so must a size
// change, which mke2fs builds anew.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build, type BuildEvent } from '../src/index.js';

let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin block rebuild '));
  await mkdir(path.join(work, 'ctx/files'), { recursive: true });
  await cp(path.resolve('examples/mirage-hvt/network.hvt'), path.join(work, 'ctx/vmlinuz'));
  // 12 MiB of distinct blocks: a dozen gzip members, each its own.
  const data = Buffer.alloc(12 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  await writeFile(path.join(work, 'ctx/files/data.bin'), data);
  await writeFile(path.join(work, 'ctx/files/small.txt'), 'hello\n');
  await writeFile(
    path.join(work, 'ctx/bunnyfile'),
    ['version: v0.1', 'platforms:', '  framework: linux', '  monitor: qemu', '  architecture: x86_64', 'kernel:', '  from: local', '  path: vmlinuz', 'rootfs:', '  type: block', '  include:', '    - files:/data', 'cmd: ["/bin/sh"]', ''].join('\n'),
  );
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function run(dest: string, cacheDir: string | undefined): Promise<string[]> {
  const steps: string[] = [];
  await build({
    context: path.join(work, 'ctx'),
    cwd: work,
    file: path.join(work, 'ctx/bunnyfile'),
    tags: ['block/rebuild:1'],
    outputs: [{ type: 'oci', dest }],
    ...(cacheDir === undefined ? { cache: false } : { cacheDir }),
    uruncChecks: 'warn',
    onEvent: (event: BuildEvent) => {
      if (event.kind === 'step') steps.push(event.message);
    },
  });
  return steps;
}

test('a second identical block rootfs build takes the layer from the cache and leaves the archive; a one-byte change is a cold build of it', async () => {
  const dest = path.join(work, 'out.tar');
  const cacheDir = path.join(work, 'cache');
  const first = await run(dest, cacheDir);
  assert.ok(first.some((s) => s.startsWith('wrote ')), first.join('\n'));
  const before = await stat(dest, { bigint: true });

  const second = await run(dest, cacheDir);
  assert.ok(second.some((s) => /^block rootfs \/\.boot\/rootfs: ext4, .*, the last build's image, unchanged$/.test(s)), second.join('\n'));
  assert.ok(second.some((s) => /^layer guest rootfs: sha256:[0-9a-f]{64} \(.*, cached\)$/.test(s)), second.join('\n'));
  assert.ok(second.some((s) => s.includes('already holds this image')), second.join('\n'));
  const after = await stat(dest, { bigint: true });
  assert.deepEqual([after.ino, after.mtimeNs, after.ctimeNs], [before.ino, before.mtimeNs, before.ctimeNs]);

  const file = path.join(work, 'ctx/files/data.bin');
  const data = await readFile(file);
  data[5 * 1024 * 1024] = (data[5 * 1024 * 1024] as number) ^ 0xff;
  await writeFile(file, data);
  const third = await run(dest, cacheDir);
  assert.ok(third.some((s) => /^block rootfs \/\.boot\/rootfs: .*, the last build's image with 1 file rewritten$/.test(s)), third.join('\n'));
  assert.ok(third.some((s) => /^layer guest rootfs: .*gzip members reused\)$/.test(s)), third.join('\n'));
  assert.ok(!third.some((s) => s.includes('already holds this image')), third.join('\n'));
  const cold = path.join(work, 'cold.tar');
  await run(cold, undefined);
  assert.ok((await readFile(dest)).equals(await readFile(cold)), 'the warm rebuild differs from a cold build');

  // A file that grows is another shape: mke2fs runs, and the bytes are a cold build's.
  await writeFile(path.join(work, 'ctx/files/small.txt'), 'hello, again\n');
  const grown = await run(dest, cacheDir);
  assert.ok(grown.some((s) => /^block rootfs \/\.boot\/rootfs: ext4, [^,]*entries, [^,]*$/.test(s)), grown.join('\n'));
  await run(cold, undefined);
  assert.ok((await readFile(dest)).equals(await readFile(cold)), 'the rebuild after a size change differs from a cold build');
});
