// A cache hit is verified before use (a flipped byte, a symlink out of the
// cache: rebuilt, with a warning), and a cache whose disk is full is turned
// off with a warning while the build goes on.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build, type BuildEvent, type OutputSpec } from '../../src/index.js';
import { readArchive } from '../helpers/archive.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin cache-safety-'));
  await cp(path.resolve('examples/mirage-hvt/network.hvt'), path.join(work, 'kernel.hvt'));
  // Random bytes: the layer stays about 2 MiB compressed, more than the small disk below holds.
  await writeFile(path.join(work, 'data.bin'), randomBytes(2 * 1024 * 1024));
  await writeFile(path.join(work, 'Containerfile'), kernelContainerfile('COPY data.bin /data.bin'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function run(outputs: OutputSpec[], cacheDir: string): Promise<string[]> {
  const warnings: string[] = [];
  await build({ context: work, tags: ['cache:1'], outputs, cacheDir, onEvent: (e: BuildEvent) => e.kind === 'warning' && warnings.push(e.message) });
  return warnings;
}

/** Every blob of an archive hashes to its name. */
async function assertBlobsMatch(archive: string): Promise<void> {
  const reader = await readArchive(archive);
  const blobs = reader.names.filter((n) => /^blobs\/sha256\/[0-9a-f]{64}$/.test(n));
  assert.ok(blobs.length >= 3);
  for (const name of blobs) {
    const hex = name.slice('blobs/sha256/'.length);
    assert.equal(createHash('sha256').update(reader.blob(hex)).digest('hex'), hex, `${name} does not match its digest`);
  }
}

/** The largest blob of the cache: the data layer's. */
async function largestCachedBlob(cacheDir: string): Promise<string> {
  const dir = path.join(cacheDir, 'v1', 'blobs', 'sha256');
  let best = { file: '', size: -1 };
  for (const name of await readdir(dir)) {
    const s = await stat(path.join(dir, name));
    if (s.size > best.size) best = { file: path.join(dir, name), size: s.size };
  }
  return best.file;
}

describe('cache hits are verified', () => {
  for (const [label, outputs] of [
    ['one archive (streamed)', (d: string) => [{ type: 'oci' as const, dest: path.join(d, 'a.tar') }]],
    ['two archives (staged)', (d: string) => [{ type: 'oci' as const, dest: path.join(d, 'a.tar') }, { type: 'docker' as const, dest: path.join(d, 'b.tar') }]],
  ] as const) {
    test(`${label}: a flipped byte in a cached blob is rebuilt, not copied`, async () => {
      const dir = await mkdtemp(path.join(work, 'flip-'));
      const cacheDir = path.join(dir, 'cache');
      await run(outputs(dir), cacheDir);
      const blob = await largestCachedBlob(cacheDir);
      const bytes = await readFile(blob);
      const middle = Math.floor(bytes.length / 2);
      bytes[middle] = (bytes[middle] as number) ^ 0xff;
      await writeFile(blob, bytes);
      const warnings = await run(outputs(dir), cacheDir);
      assert.ok(warnings.some((w) => /cached layer sha256:[0-9a-f]{64} does not match its digest; building the layer again/.test(w)), warnings.join('\n'));
      for (const output of outputs(dir)) await assertBlobsMatch(output.dest);
    });

    test(`${label}: a same-size symlink out of the cache is not followed`, async () => {
      const dir = await mkdtemp(path.join(work, 'link-'));
      const cacheDir = path.join(dir, 'cache');
      await run(outputs(dir), cacheDir);
      const blob = await largestCachedBlob(cacheDir);
      const outside = path.join(dir, 'outside-the-cache');
      await writeFile(outside, randomBytes((await stat(blob)).size));
      await rm(blob);
      await symlink(outside, blob);
      const warnings = await run(outputs(dir), cacheDir);
      assert.ok(warnings.some((w) => /cached layer sha256:[0-9a-f]{64} is a symlink; building the layer again/.test(w)), warnings.join('\n'));
      for (const output of outputs(dir)) await assertBlobsMatch(output.dest);
    });
  }
});

/** A 1 MiB tmpfs, or why there is none (mounting needs root). */
function smallDisk(dir: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (error) {
    return `cannot mount a small tmpfs: ${(error as Error).message.split('\n')[0]}`;
  }
}

describe('a cache on a full disk', () => {
  for (const [label, outputs] of [
    ['one archive (streamed)', (d: string) => [{ type: 'oci' as const, dest: path.join(d, 'a.tar') }]],
    ['two archives (staged)', (d: string) => [{ type: 'oci' as const, dest: path.join(d, 'a.tar') }, { type: 'docker' as const, dest: path.join(d, 'b.tar') }]],
  ] as const) {
    test(`${label}: warns and builds without the cache`, async (t) => {
      const dir = await mkdtemp(path.join(work, 'full-'));
      const cacheDir = path.join(dir, 'cache');
      await mkdir(cacheDir);
      const problem = smallDisk(cacheDir);
      if (problem) {
        t.skip(problem);
        return;
      }
      try {
        const warnings = await run(outputs(dir), cacheDir);
        assert.ok(warnings.some((w) => w.includes(`layer cache off: cannot write to ${cacheDir} (no space left); building without it`)), warnings.join('\n'));
        assert.equal(warnings.filter((w) => w.startsWith('layer cache off')).length, 1, warnings.join('\n'));
        for (const output of outputs(dir)) await assertBlobsMatch(output.dest);
        const left = await readdir(path.join(cacheDir, 'v1', 'blobs', 'sha256'));
        assert.deepEqual(left.filter((n) => n.startsWith('.incoming')), []);
      } finally {
        execFileSync('umount', [cacheDir]);
      }
    });
  }
});

test('a cache that cannot be created warns the same way and builds', async () => {
  const dir = await mkdtemp(path.join(work, 'blocked-'));
  const cacheDir = path.join(dir, 'cache');
  await writeFile(cacheDir, 'a file where the cache directory should be');
  const warnings = await run([{ type: 'oci', dest: path.join(dir, 'a.tar') }], cacheDir);
  assert.deepEqual(
    warnings.filter((w) => w.startsWith('layer cache off')),
    [`layer cache off: cannot write to ${cacheDir} (a file is in the way); building without it`],
  );
  await assertBlobsMatch(path.join(dir, 'a.tar'));
});
