// Build-side clean errors and leftovers: SOURCE_DATE_EPOCH out of range,
// unreadable context files, a later output or the metadata file failing
// after an earlier output is complete, and temporaries of a build killed
// with SIGKILL, swept by the next build.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build, UsageError } from '../src/index.js';
import { ownerTag } from '../src/temporaries.js';
import { readArchive } from './helpers/archive.js';
import { kernelContainerfile } from './helpers/fixtures.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;
let context: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin build-safety-'));
  await chmod(work, 0o755);
  context = path.join(work, 'context');
  await mkdir(context);
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(context, 'kernel.hvt'));
  await writeFile(path.join(context, 'data.bin'), randomBytes(2 * 1024 * 1024));
  await writeFile(path.join(context, 'Containerfile'), kernelContainerfile('COPY data.bin /data.bin'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; uid?: number } = {}): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: options.cwd ?? work,
    env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache'), ...options.env },
    encoding: 'utf8',
    ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}),
  });
  return { status: result.status, stderr: result.stderr };
}

describe('SOURCE_DATE_EPOCH', () => {
  test('a time after 2106 is refused in a sentence with exit 2, not "Invalid time value"', () => {
    const r = lapin(['build', '--progress', 'quiet', '-o', 'type=oci,dest=epoch.tar', context], { env: { SOURCE_DATE_EPOCH: '99999999999999' } });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr,
      'lapin: error: SOURCE_DATE_EPOCH=99999999999999 is after 4294967295 (2106-02-07T06:28:15Z), the latest time the initrd and layer formats can hold (use a time in seconds since 1970, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct))\n',
    );
  });

  test('the library option is checked the same way', async () => {
    await assert.rejects(build({ context, outputs: [{ type: 'oci', dest: path.join(work, 'e.tar') }], sourceDateEpoch: 1e13, cache: false }), (e: unknown) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, /^sourceDateEpoch 10000000000000 is after 4294967295/);
      return true;
    });
    // The largest accepted time builds.
    await build({ context, outputs: [{ type: 'oci', dest: path.join(work, 'e.tar') }], sourceDateEpoch: 4294967295, cache: false });
  });
});

describe('an unreadable context file', () => {
  const asRoot = process.getuid?.() === 0;
  test('says permission denied and how to fix it, not "keep the build context unchanged"', { skip: asRoot ? false : 'needs root to run the build as another user' }, async () => {
    const dir = path.join(work, 'unreadable');
    await mkdir(dir);
    await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(dir, 'kernel.hvt'));
    await writeFile(path.join(dir, 'secret.conf'), 'x=1\n', { mode: 0o600 });
    await writeFile(path.join(dir, 'Containerfile'), kernelContainerfile('COPY secret.conf /etc/secret.conf'));
    await chmod(dir, 0o777);
    const r = lapin(['build', '--progress', 'quiet', '--no-cache', '-o', 'type=oci,dest=out.tar', '.'], { cwd: dir, uid: 65534, env: { HOME: dir } });
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `lapin: error: cannot read ${path.join(dir, 'secret.conf')}: permission denied (make the file readable by the user running lapin (chmod a+r), or leave it out of the build)\n`);
  });
});

/** A 1 MiB tmpfs at `dir`, or why there is none. */
function smallDisk(dir: string): string | undefined {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `cannot mount a small tmpfs: ${r.stderr.trim()}`;
}

describe('a later output failing', () => {
  test('says which output failed and that the earlier one is complete and kept', async (t) => {
    const full = path.join(work, 'full');
    await mkdir(full);
    const problem = smallDisk(full);
    if (problem) {
      t.skip(problem);
      return;
    }
    try {
      const r = lapin(['build', '--progress', 'quiet', '-t', 'partial:1', '-o', 'type=oci,dest=first.tar', '-o', `type=oci,tar=false,dest=${path.join(full, 'layout')}`, context]);
      assert.equal(r.status, 1, r.stderr);
      assert.equal(
        r.stderr,
        `lapin: error: writing the OCI layout directory full/layout failed: no space left on the device; nothing of it was left, and the earlier output is complete and kept: first.tar (fix that output and build again)\n`,
      );
      assert.deepEqual(await readdir(full), []);
      assert.ok((await readArchive(path.join(work, 'first.tar'))).names.includes('index.json'));
    } finally {
      spawnSync('umount', [full]);
    }
  });

  test('a metadata file that cannot be written says the image is complete, and where', () => {
    // /proc exists, so the check before the build passes and the write itself fails.
    const r = lapin(['build', '--progress', 'quiet', '-t', 'meta:1', '-o', 'type=oci,dest=meta.tar', '--metadata-file', '/proc/lapin-meta.json', context]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `lapin: error: cannot write the metadata file /proc/lapin-meta.json (no such directory); the image itself is complete: ${path.join(work, 'meta.tar')} (fix the metadata path or free space, and build again to write it)\n`);
  });

  test('a push that fails after an archive: its own hint last, not in parentheses inside the sentence', async () => {
    // A loopback port nothing listens on.
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const r = lapin(['build', '--progress', 'quiet', '-t', `127.0.0.1:${port}/team/net:1`, '--push', '-o', 'type=oci,dest=kept.tar', context]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `lapin: error: the push failed: cannot connect to 127.0.0.1:${port}: connection refused; nothing of it was left, and the earlier output is complete and kept: kept.tar (is the registry running, and is the host:port right?)\n`);
  });

  test('a metadata file in a missing directory is refused before the build, nothing written', () => {
    const r = lapin(['build', '--progress', 'quiet', '-t', 'meta:1', '-o', 'type=oci,dest=meta-early.tar', '--metadata-file', 'missing-dir/meta.json', context]);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr, `lapin: error: cannot write the metadata file missing-dir/meta.json: ${path.join(work, 'missing-dir')} does not exist (create it first)\n`);
    assert.equal(spawnSync('ls', [path.join(work, 'meta-early.tar')]).status, 2);
  });
});

describe('temporaries of a build killed with SIGKILL', () => {
  test('are swept by the next build; a live build\'s are kept', async () => {
    const dir = path.join(work, 'killed');
    const tmp = path.join(dir, 'tmp dir');
    const cache = path.join(dir, 'cache');
    const out = path.join(dir, 'out');
    const big = path.join(dir, 'context');
    await mkdir(tmp, { recursive: true });
    await mkdir(out);
    await mkdir(big);
    await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(big, 'kernel.hvt'));
    // Random bytes compress slowly: the build is still writing when it is killed.
    const stream = createWriteStream(path.join(big, 'rootfs.bin'));
    for (let i = 0; i < 160; i++) if (!stream.write(randomBytes(1024 * 1024))) await new Promise<void>((resolve) => stream.once('drain', () => resolve()));
    await new Promise<void>((resolve) => stream.end(() => resolve()));
    await writeFile(path.join(big, 'Containerfile'), kernelContainerfile('COPY rootfs.bin /rootfs.bin'));
    const env = { ...process.env, TMPDIR: tmp, LAPIN_CACHE_DIR: cache };
    const child = spawn(process.execPath, [...CLI, 'build', '--progress', 'quiet', '-t', 'killed:1', '-o', 'type=oci,dest=out.tar', big], { cwd: out, env, stdio: 'ignore' });
    const blobs = path.join(cache, 'v1', 'blobs', 'sha256');
    const leftovers = async (): Promise<string[]> => {
      const list = async (d: string): Promise<string[]> => (await readdir(d).catch(() => [] as string[])).map((n) => path.join(d, n));
      return [
        ...(await list(tmp)).filter((p) => path.basename(p).startsWith('lapin-')),
        ...(await list(blobs)).filter((p) => path.basename(p).startsWith('.incoming-')),
        ...(await list(out)).filter((p) => path.basename(p).includes('.lapin-tmp-')),
      ];
    };
    const deadline = Date.now() + 120_000;
    while ((await leftovers()).length < 3) {
      assert.ok(Date.now() < deadline, 'the build never had its three temporaries');
      assert.equal(child.exitCode, null, 'the build ended before it was killed');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('close', resolve));
    assert.equal((await leftovers()).length, 3);
    // A temporary of a live process (this one) must stay.
    const live = path.join(blobs, `.incoming-${ownerTag()}-0123456789ab`);
    await writeFile(live, 'being written');

    const small = path.join(dir, 'small');
    await mkdir(small);
    await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(small, 'kernel.hvt'));
    await writeFile(path.join(small, 'Containerfile'), kernelContainerfile());
    const r = spawnSync(process.execPath, [...CLI, 'build', '--progress', 'quiet', '-t', 'small:1', '-o', 'type=oci,dest=out.tar', small], { cwd: out, env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await leftovers(), [live]);
    assert.ok((await stat(path.join(out, 'out.tar'))).size > 0);
    await rm(live);
  });
});
