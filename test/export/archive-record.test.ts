// The "unchanged archive" record must name the file this build renamed into
// place, not whatever is at the path when the record is written: a second
// build renaming its archive over the same path in between must not be
// taken for this build's output on the next rebuild. The same holds for one
// image and for an index archive.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build, type BuildEvent, type BuildOptions } from '../../src/index.js';
import { kernelContainerfile } from '../helpers/fixtures.js';
import { writePerPlatformContext } from '../helpers/hand-index.js';
import { withRenameRace } from '../helpers/rename-race.js';

let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin archive-record '));
  await mkdir(path.join(work, 'one'));
  await cp(path.resolve('examples/mirage-hvt/network.hvt'), path.join(work, 'one/kernel.hvt'));
  await writeFile(path.join(work, 'one/Containerfile'), kernelContainerfile());
  await writePerPlatformContext(path.join(work, 'index'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

for (const [what, extra, unchanged] of [
  ['archive', {}, 'already holds this image,'],
  ['index archive', { platforms: ['linux/amd64', 'linux/arm64'] }, 'already holds this image index'],
] as const) {
  test(`a build B renaming over the ${what} right after build A's rename is not recorded as A's`, async () => {
    const dir = path.join(work, what === 'archive' ? 'one' : 'index');
    const dest = path.join(dir, 'shared.tar');
    const other = path.join(dir, 'build-b.tar');
    await writeFile(other, 'the archive build B wrote\n');
    const steps: string[] = [];
    const options: BuildOptions = {
      context: dir,
      cwd: dir,
      tags: ['race/image:1'],
      outputs: [{ type: 'oci', dest }],
      cacheDir: path.join(dir, 'cache'),
      onEvent: (event: BuildEvent) => {
        if (event.kind === 'step') steps.push(event.message);
      },
      ...extra,
    };
    const run = (): Promise<unknown> => build(options);
    // Build B's rename lands between build A's rename and A's record.
    await withRenameRace(dest, other, run);
    assert.equal(await readFile(dest, 'utf8'), 'the archive build B wrote\n');

    // Every layer is cached now: only a record proving dest is A's own file may leave it alone.
    steps.length = 0;
    await run();
    assert.ok(!steps.some((s) => s.includes(unchanged)), steps.join('\n'));
    assert.notEqual(await readFile(dest, 'utf8'), 'the archive build B wrote\n');

    // And the record A writes now does prove it: the next rebuild leaves the file.
    steps.length = 0;
    await run();
    assert.ok(steps.some((s) => s.includes(unchanged)), steps.join('\n'));
  });
}
