// The unchanged-archive record of an index archive must name the file this
// build renamed into place, not whatever is at the path when the record is
// written: a second build renaming its archive over the same path in between
// must not be taken for this build's output on the next rebuild (as
// test/export/archive-record.test.ts proves for one image).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build, type BuildEvent } from '../src/index.js';
import { fakeElf } from './helpers/hand-index.js';

const require = createRequire(import.meta.url);
const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');
const realRename = fsPromises.rename;
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin index record '));
  const context = path.join(work, 'context');
  await mkdir(context);
  await writeFile(
    path.join(context, 'Containerfile'),
    'FROM scratch\nARG TARGETARCH\nCOPY app-${TARGETARCH} /unikernel/app\nLABEL com.urunc.unikernel.binary=/unikernel/app\nLABEL com.urunc.unikernel.unikernelType=unikraft\nLABEL com.urunc.unikernel.hypervisor=qemu\n',
  );
  await writeFile(path.join(context, 'app-amd64'), fakeElf('x86-64'));
  await writeFile(path.join(context, 'app-arm64'), fakeElf('aarch64'));
});
after(async () => {
  fsPromises.rename = realRename;
  syncBuiltinESMExports();
  await rm(work, { recursive: true, force: true });
});

test("a build B renaming over the index archive right after build A's rename is not recorded as A's", async () => {
  const dest = path.join(work, 'shared.tar');
  const other = path.join(work, 'build-b.tar');
  await writeFile(other, 'the archive build B wrote\n');
  const steps: string[] = [];
  const options = {
    context: path.join(work, 'context'),
    cwd: work,
    tags: ['race/index:1'],
    platforms: ['linux/amd64', 'linux/arm64'],
    outputs: [{ type: 'oci' as const, dest }],
    cacheDir: path.join(work, 'cache'),
    onEvent: (event: BuildEvent) => {
      if (event.kind === 'step') steps.push(event.message);
    },
  };
  // Build B's rename lands between build A's rename and A's record.
  fsPromises.rename = async (from, to) => {
    await realRename(from, to);
    if (String(to) === dest && path.basename(String(from)).startsWith('.shared.tar.lapin-tmp-')) await realRename(other, dest);
  };
  syncBuiltinESMExports();
  try {
    await build(options);
  } finally {
    fsPromises.rename = realRename;
    syncBuiltinESMExports();
  }
  assert.equal(await readFile(dest, 'utf8'), 'the archive build B wrote\n');

  // Every layer is cached now: only a record proving dest is A's own file may leave it alone.
  steps.length = 0;
  await build(options);
  assert.ok(!steps.some((s) => s.includes('already holds this image index')), steps.join('\n'));
  assert.notEqual(await readFile(dest, 'utf8'), 'the archive build B wrote\n');

  // And the record A writes now does prove it: the next rebuild leaves the file.
  steps.length = 0;
  await build(options);
  assert.ok(steps.some((s) => s.includes('already holds this image index')), steps.join('\n'));
});
