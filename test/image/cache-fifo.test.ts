// Files in lapin's cache that are not regular files (a FIFO left there by
// anyone who can write the cache) are misses: the build goes on without
// them instead of blocking forever on open or read.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const SEED = join(ROOT, 'examples/mirage-hvt');
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin cache-fifo-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function build(cache: string, output: string): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, 'build', '-f', join(SEED, 'bunnyfile'), '-o', output, SEED], {
    cwd: work,
    encoding: 'utf8',
    timeout: 30_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, LAPIN_CACHE_DIR: cache },
  });
  return { status: result.status, stderr: result.stderr };
}

describe('cache files that are FIFOs', () => {
  for (const dir of ['archives', 'layers', 'blobs/sha256', 'members']) {
    test(`every file in the cache's ${dir} a FIFO: the build ends, with the same archive`, { timeout: 120_000 }, async () => {
      const cache = join(work, `cache-${dir.replace('/', '-')}`);
      const output = join(work, `${dir.replace('/', '-')}.tar`);
      assert.equal(build(cache, output).status, 0);
      const first = await readFile(output);
      // The archive's record only counts for an archive left in place; the others, for a new archive.
      const again = dir === 'archives' ? output : join(work, `${dir.replace('/', '-')}-again.tar`);
      // Members are looked up when a layer is not in the layer cache.
      if (dir === 'members') await rm(join(cache, 'v1', 'layers'), { recursive: true });
      const names = await readdir(join(cache, 'v1', dir));
      assert.ok(names.length > 0);
      for (const name of names) {
        await rm(join(cache, 'v1', dir, name));
        assert.equal(spawnSync('mkfifo', [join(cache, 'v1', dir, name)]).status, 0);
      }
      const result = build(cache, again);
      assert.equal(result.status, 0, `status ${String(result.status)} (null: it blocked): ${result.stderr}`);
      assert.ok((await readFile(again)).equals(first));
    });
  }
});
