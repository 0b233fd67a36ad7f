// Every output is on the disk before it is published: strace shows an
// fsync of the temporary (and of each file in a temporary directory) before
// the rename onto the destination, and an fsync of the directory after it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kernelContainerfile } from '../helpers/fixtures.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const noStrace = spawnSync('strace', ['-V']).status === 0 ? false : 'strace is not installed (scripts/install-deps.sh)';
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin fsync-'));
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(work, 'kernel.hvt'));
  await writeFile(path.join(work, 'app.conf'), 'x=1\n');
  await writeFile(path.join(work, 'Containerfile'), kernelContainerfile('COPY app.conf /etc/app.conf'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Call {
  kind: 'fsync' | 'rename';
  /** fsync: the file's path; rename: [from, to]. */
  paths: string[];
}

/** Runs lapin build under strace; returns its fsync and rename calls in order. */
function traced(args: string[]): Call[] {
  const log = path.join(work, `strace-${Date.now()}.log`);
  const r = spawnSync('strace', ['-f', '-qq', '-y', '-s', '4096', '-o', log, '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2', process.execPath, ...CLI, 'build', '--progress', 'quiet', ...args, '.'], {
    cwd: work,
    env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache') },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const text = spawnSync('cat', [log], { encoding: 'utf8' }).stdout;
  const calls: Call[] = [];
  for (const line of text.split('\n')) {
    if (/= -1 /.test(line)) continue;
    const sync = /\b(?:fsync|fdatasync)\(\d+<([^>]*)>\)/.exec(line);
    if (sync) calls.push({ kind: 'fsync', paths: [sync[1] as string] });
    const moved = /\brename(?:at2?)?\((?:[^,]+, )?"([^"]*)", (?:[^,]+, )?"([^"]*)"/.exec(line);
    if (moved) calls.push({ kind: 'rename', paths: [moved[1] as string, moved[2] as string] });
  }
  return calls;
}

/** Asserts that `dest` was renamed into place after `flushed(path)` held for some fsync, and that its directory was flushed after. */
function assertFlushedBeforeRename(calls: Call[], dest: string, flushed: (file: string, temporary: string) => boolean): void {
  const at = calls.findIndex((c) => c.kind === 'rename' && c.paths[1] === dest);
  assert.ok(at >= 0, `no rename onto ${dest}`);
  const temporary = (calls[at] as Call).paths[0] as string;
  assert.ok(
    calls.slice(0, at).some((c) => c.kind === 'fsync' && flushed(c.paths[0] as string, temporary)),
    `no fsync of ${temporary} before its rename onto ${dest}`,
  );
  assert.ok(
    calls.slice(at + 1).some((c) => c.kind === 'fsync' && c.paths[0] === path.dirname(dest)),
    `no fsync of ${path.dirname(dest)} after the rename onto ${dest}`,
  );
}

describe('fsync before the final rename', { skip: noStrace }, () => {
  test('a lone archive, the metadata file and the cache records', () => {
    const calls = traced(['-t', 'sync:1', '-o', 'type=oci,dest=out.tar', '--metadata-file', 'meta.json']);
    const same = (file: string, temporary: string): boolean => file === temporary;
    assertFlushedBeforeRename(calls, path.join(work, 'out.tar'), same);
    assertFlushedBeforeRename(calls, path.join(work, 'meta.json'), same);
    const cacheRenames = calls.filter((c) => c.kind === 'rename' && (c.paths[1] as string).startsWith(path.join(work, 'cache')));
    assert.ok(cacheRenames.some((c) => (c.paths[0] as string).includes('/.incoming-')), 'a layer blob was filed in the cache');
    assert.ok(cacheRenames.some((c) => (c.paths[1] as string).includes('/v1/layers/')), 'a layer entry was recorded');
    // Compressed members are not flushed (src/image/member-cache.ts): each is hashed against its header
    // before every use, so one torn by a crash is a miss, not wrong bytes.
    for (const rename of cacheRenames) if (!(rename.paths[1] as string).includes('/v1/members/')) assertFlushedBeforeRename(calls, rename.paths[1] as string, same);
  });

  test('an OCI layout directory and a rootfs directory', () => {
    const calls = traced(['-t', 'sync:1', '--no-cache', '-o', 'type=oci,tar=false,dest=layout', '-o', 'type=local,dest=rootfs']);
    const inside = (name: string) => (file: string, temporary: string) => file === path.join(temporary, name);
    assertFlushedBeforeRename(calls, path.join(work, 'layout'), inside('index.json'));
    assertFlushedBeforeRename(calls, path.join(work, 'layout'), inside('oci-layout'));
    assertFlushedBeforeRename(calls, path.join(work, 'layout'), (file, temporary) => file === temporary);
    assertFlushedBeforeRename(calls, path.join(work, 'rootfs'), inside('urunc.json'));
    assertFlushedBeforeRename(calls, path.join(work, 'rootfs'), inside('etc/app.conf'));
  });
});

test('a rootfs directory whose image makes a directory unreadable is still written when lapin is not root', { skip: process.getuid?.() === 0 ? false : 'needs root to run the build as another user' }, async () => {
  const context = path.join(work, 'closed');
  await mkdir(path.join(context, 'd'), { recursive: true });
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(context, 'kernel.hvt'));
  await writeFile(path.join(context, 'd/secret'), 'x\n');
  await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY --chmod=000 d/ /d/'));
  await chmod(work, 0o755);
  await chmod(context, 0o777);
  const r = spawnSync(process.execPath, [...CLI, 'build', '--progress', 'quiet', '--no-cache', '-o', 'type=local,dest=rootfs', '.'], {
    cwd: context,
    env: { ...process.env, HOME: context },
    encoding: 'utf8',
    uid: 65534,
    gid: 65534,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.ok((await readdir(path.join(context, 'rootfs'))).includes('d'));
  await chmod(path.join(context, 'rootfs', 'd'), 0o755);
});
