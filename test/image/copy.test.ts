import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, symlink, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { LapinError } from '../../src/errors.js';
import { globSegmentRegExp } from '../../src/image/context.js';
import { applyCopy, type CopyEnvironment } from '../../src/image/copy.js';
import { ImageFilesystem } from '../../src/image/filesystem.js';
import type { CopyOp } from '../../src/plan/types.js';

let context: string;
let env: CopyEnvironment;

before(async () => {
  context = await mkdtemp(path.join(os.tmpdir(), 'lapin-copy-'));
  await mkdir(path.join(context, 'app/bin'), { recursive: true });
  await mkdir(path.join(context, 'app/empty'));
  await writeFile(path.join(context, 'kernel'), 'KERNEL');
  await writeFile(path.join(context, 'app/bin/init'), '#!/bin/sh\n');
  await chmod(path.join(context, 'app/bin/init'), 0o755);
  await writeFile(path.join(context, 'app/config'), 'x');
  await chmod(path.join(context, 'app/config'), 0o600);
  await link(path.join(context, 'app/config'), path.join(context, 'app/config.hard'));
  await symlink('bin/init', path.join(context, 'app/init-link'));
  await symlink('/etc/passwd', path.join(context, 'escape-absolute'));
  await symlink('../../../../../../etc/hostname', path.join(context, 'escape-relative'));
  await symlink('kernel', path.join(context, 'kernel-link'));
  await writeFile(path.join(context, 'a.txt'), 'a');
  await writeFile(path.join(context, 'b.txt'), 'b');
  await writeFile(path.join(context, 'layer.tar.gz'), gzipSync(Buffer.from('x')));
  env = { contextDir: context, stages: new Map(), mtime: 0 };
});

function copy(sources: string[], destination: string, extra: Partial<CopyOp> = {}): CopyOp {
  return { kind: 'copy', sources, destination, at: { file: 'Containerfile', line: 3, column: 1 }, ...extra };
}

async function run(op: CopyOp, fs = new ImageFilesystem({ mtime: 0 })): Promise<ImageFilesystem> {
  await applyCopy(fs, op, env);
  return fs;
}

describe('COPY semantics', () => {
  test('a file to an exact path, with parents created 0755', async () => {
    const fs = await run(copy(['kernel'], '/.boot/kernel'));
    assert.deepEqual(fs.list().map((n) => [n.path, n.type, n.mode.toString(8)]), [
      ['.boot', 'dir', '755'],
      ['.boot/kernel', 'file', '644'],
    ]);
  });

  test('a trailing slash copies into the directory', async () => {
    const fs = await run(copy(['kernel'], '/boot/'));
    assert.equal(fs.get('/boot/kernel')?.type, 'file');
  });

  test('a directory copies its contents, keeping modes, links and empty dirs', async () => {
    const fs = await run(copy(['app'], '/opt/app'));
    const byPath = new Map(fs.list().map((n) => [n.path, n]));
    assert.equal(byPath.get('opt/app/bin/init')?.mode, 0o755);
    assert.equal(byPath.get('opt/app/config')?.mode, 0o600);
    assert.equal(byPath.get('opt/app/empty')?.type, 'dir');
    const link = byPath.get('opt/app/init-link');
    assert.equal(link?.type === 'symlink' && link.target, 'bin/init');
    const hard = byPath.get('opt/app/config.hard');
    assert.equal(hard?.type === 'hardlink' && hard.target, 'opt/app/config');
  });

  test('--chmod and --chown apply to every copied entry', async () => {
    const fs = await run(copy(['app'], '/x/', { mode: 0o700, uid: 1000, gid: 100 }));
    for (const node of fs.subtree('x')) {
      if (node.type === 'symlink') continue;
      assert.equal(node.mode, 0o700, node.path);
      assert.equal(node.uid, 1000);
    }
  });

  test('globs expand within the context', async () => {
    const fs = await run(copy(['*.txt'], '/data/'));
    assert.deepEqual(fs.subtree('data').map((n) => n.path), ['data', 'data/a.txt', 'data/b.txt']);
  });

  test('a top-level symlink is followed inside the context', async () => {
    const fs = await run(copy(['kernel-link'], '/k'));
    const node = fs.get('/k');
    assert.equal(node?.type === 'file' && node.source.kind === 'path' && path.basename(node.source.path), 'kernel');
  });

  for (const name of ['escape-absolute', 'escape-relative']) {
    test(`a symlink out of the context (${name}) is resolved inside it, so it is not found`, async () => {
      await assert.rejects(run(copy([name], '/x')), (e: unknown) => e instanceof LapinError && /not found in the build context/.test(e.message));
    });
  }

  test('".." sources are refused with the position', async () => {
    await assert.rejects(run(copy(['../etc/passwd'], '/x')), (e: unknown) => {
      assert.ok(e instanceof LapinError);
      assert.match(e.describe(), /^Containerfile:3:1: "\.\.\/etc\/passwd" is outside the build context/);
      return true;
    });
  });

  test('a missing source names the file', async () => {
    await assert.rejects(run(copy(['nope.hvt'], '/x')), /"nope\.hvt" not found in the build context/);
  });

  test('a glob segment matches in linear time; a range out of order is a positioned bad pattern', () => {
    const stars = globSegmentRegExp(`*${'a*'.repeat(30)}b`);
    const started = Date.now();
    assert.equal(stars.test('a'.repeat(250)), false);
    assert.equal(stars.test(`${'a'.repeat(250)}b`), true);
    // A backtracking engine runs for minutes here.
    assert.ok(Date.now() - started < 2000, `${Date.now() - started} ms`);
    assert.equal(globSegmentRegExp('?.txt').test('😀.txt'), true);
    const at = { file: 'Containerfile', line: 3, column: 1 };
    assert.throws(() => globSegmentRegExp('[z-a]', at), (e: unknown) => e instanceof LapinError && e.describe().startsWith('Containerfile:3:1: bad pattern "[z-a]"'));
  });

  test('a glob that matches nothing is an error', async () => {
    await assert.rejects(run(copy(['*.none'], '/x/')), /no files in the build context match/);
  });

  test('ADD refuses archives it would unpack', async () => {
    await assert.rejects(run(copy(['layer.tar.gz'], '/x', { isAdd: true })), /ADD would unpack the archive/);
    const fs = await run(copy(['kernel'], '/x', { isAdd: true }));
    assert.equal(fs.get('/x')?.type, 'file');
  });

  test('COPY --from copies out of an earlier stage', async () => {
    const stage = await run(copy(['app'], '/build/'));
    const target = new ImageFilesystem({ mtime: 0 });
    await applyCopy(target, copy(['/build/bin/init'], '/init', { fromStage: 'builder' }), { ...env, stages: new Map([['builder', stage]]) });
    assert.equal(target.get('/init')?.mode, 0o755);
    await assert.rejects(
      applyCopy(target, copy(['/x'], '/y', { fromStage: 'other' }), { ...env, stages: new Map([['builder', stage]]) }),
      /no build stage named "other"/,
    );
  });

  test('COPY --from of a directory holding a hard link to a file outside it copies that file', async () => {
    const stage = new ImageFilesystem({ mtime: 0 });
    stage.put({ type: 'file', path: 'a/x', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 4, source: { kind: 'bytes', data: Buffer.from('data') } });
    stage.put({ type: 'hardlink', path: 'd/y', mode: 0o644, uid: 0, gid: 0, mtime: 0, target: 'a/x' });
    stage.put({ type: 'hardlink', path: 'd/z', mode: 0o644, uid: 0, gid: 0, mtime: 0, target: 'd/w' });
    stage.put({ type: 'file', path: 'd/w', mode: 0o600, uid: 0, gid: 0, mtime: 0, size: 1, source: { kind: 'bytes', data: Buffer.from('w') } });
    const target = new ImageFilesystem({ mtime: 0 });
    await applyCopy(target, copy(['/d'], '/dest', { fromStage: 'builder' }), { ...env, stages: new Map([['builder', stage]]) });
    const y = target.get('/dest/y');
    assert.equal(y?.type, 'file');
    assert.deepEqual(y?.type === 'file' && y.source.kind === 'bytes' ? Buffer.from(y.source.data).toString() : undefined, 'data');
    // A link inside the copied directory stays a link, retargeted.
    assert.deepEqual(target.get('/dest/z'), { type: 'hardlink', path: 'dest/z', mode: 0o644, uid: 0, gid: 0, mtime: 0, target: 'dest/w' });
  });

  test('a file copied onto an existing directory lands inside it', async () => {
    const fs = await run(copy(['app'], '/opt/app'));
    await run(copy(['kernel'], '/opt'), fs);
    assert.equal(fs.get('/opt/kernel')?.type, 'file');
  });

  test('a directory cannot replace a file', async () => {
    const fs = await run(copy(['kernel'], '/k'));
    await assert.rejects(run(copy(['app'], '/k'), fs), /cannot replace a file with a directory at \/k/);
  });

  test('resolve follows symlinks inside the tree', async () => {
    const fs = await run(copy(['app'], '/opt/app'));
    assert.equal(fs.resolve('/opt/app/init-link')?.path, 'opt/app/bin/init');
  });
});
