// Which leftover temporaries a build sweeps: a dead owner's (same pid
// namespace) at once; another namespace's, or an unowned old-style name's,
// only once old; a live owner's never.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ownerTag, sweepStaleTemporaries, temporaryName } from '../src/temporaries.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'lapin temporaries-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('sweeps dead and old temporaries, keeps live, foreign-and-recent and unrelated ones', async () => {
  const [namespace] = ownerTag().split('-');
  const twoDaysAgo = Date.now() / 1000 - 2 * 24 * 3600;
  const names = {
    live: temporaryName('.incoming-'),
    liveDirectory: temporaryName('lapin-'),
    // pid 1's start time is never 1 tick after boot in a namespace where lapin runs: a reused pid.
    reusedPid: `.incoming-${namespace}-1-1-0123456789ab`,
    deadPid: `.out.tar.lapin-tmp-${namespace}-4194300-77-0123456789ab`,
    foreignRecent: '.incoming-1-4194300-77-0123456789ab',
    foreignOld: 'entry.json.tmp-1-4194300-77-0123456789ab',
    unownedRecent: '.incoming-0123456789abcdef',
    unownedOld: 'lapin-812-0123456789ab',
    unrelated: 'lapin-build-x1y2z3',
  };
  for (const name of Object.values(names)) await writeFile(path.join(dir, name), 'x');
  await rm(path.join(dir, names.liveDirectory));
  await mkdir(path.join(dir, names.liveDirectory, 'blobs'), { recursive: true });
  for (const name of [names.foreignOld, names.unownedOld]) await utimes(path.join(dir, name), twoDaysAgo, twoDaysAgo);
  const removed = await sweepStaleTemporaries([dir]);
  assert.deepEqual(removed.map((p) => path.basename(p)).sort(), [names.deadPid, names.foreignOld, names.reusedPid, names.unownedOld].sort());
  assert.deepEqual((await readdir(dir)).sort(), [names.foreignRecent, names.live, names.liveDirectory, names.unownedRecent, names.unrelated].sort());
});
