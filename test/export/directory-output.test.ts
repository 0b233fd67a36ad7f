// Several builds into one directory output at once: exactly one wins, the
// others say so in a sentence, and nothing is left beside the destination.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kernelContainerfile } from '../helpers/fixtures.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin dir-output-'));
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(work, 'kernel.hvt'));
  // Enough files that the writes overlap.
  const copies: string[] = [];
  for (let i = 0; i < 200; i++) {
    await writeFile(path.join(work, `f${i}`), `file ${i}\n`.repeat(50));
    copies.push(`COPY f${i} /data/f${i}`);
  }
  await writeFile(path.join(work, 'Containerfile'), kernelContainerfile(...copies));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: work, env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache') }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

describe('concurrent builds into one directory output', () => {
  for (const [label, spec] of [
    ['type=local', 'type=local'],
    ['tar=false', 'type=oci,tar=false'],
  ] as const) {
    test(`${label}: one build wins, the others fail with a sentence, nothing left behind`, async () => {
      for (let round = 0; round < 3; round++) {
        const name = `out-${label.replace('=', '-')}-${round}`;
        const results = await Promise.all(Array.from({ length: 4 }, () => lapin(['build', '-t', 'dirs:1', '--progress', 'quiet', '-o', `${spec},dest=${name}`, '.'])));
        const winners = results.filter((r) => r.status === 0);
        assert.equal(winners.length, 1, results.map((r) => r.stderr).join('\n'));
        for (const loser of results.filter((r) => r.status !== 0)) {
          assert.equal(loser.status, 1, loser.stderr);
          const lines = loser.stderr.trim().split('\n');
          assert.equal(lines.length, 1, loser.stderr);
          assert.match(lines[0] ?? '', /^lapin: error: output directory .* (was filled by another build while this one ran|is not empty)/);
          assert.doesNotMatch(loser.stderr, /ENOTEMPTY|ENOENT|rename/);
        }
        const left = (await readdir(work)).filter((entry) => entry.startsWith(`.${name}`));
        assert.deepEqual(left, []);
        assert.ok((await readdir(path.join(work, name))).length > 0);
      }
    });
  }
});

describe('a directory output where no directory can be made', () => {
  for (const spec of ['type=local,dest=/proc/lapin-xd', 'type=oci,tar=false,dest=/proc/lapin-xl', 'type=oci,dest=/proc/lapin-xa/a.tar']) {
    test(`${spec}: one line and exit 1 within seconds (recursive mkdir under /proc spun forever)`, { timeout: 60_000 }, async () => {
      const result = await lapin(['build', '-t', 'dirs:1', '--progress', 'quiet', '-o', spec, '.']);
      assert.equal(result.status, 1, result.stderr);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
      assert.match(result.stderr, /^lapin: error: .*\/proc\/lapin-x/);
    });
  }
});
