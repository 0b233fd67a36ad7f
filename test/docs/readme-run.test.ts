// README's `lapin run --print linux.tar` sample is what lapin prints for such
// an image: a Linux guest on qemu with an initrd and Cmd ["/init", "first",
// "second"], on a machine without usable KVM (--accel tcg). The kernel is a
// stand-in: --print reads only the image's values and paths.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { build } from '../../src/index.js';
import { fakeElfKernel } from '../helpers/hand-image.js';
import { lapin } from '../registry/helpers.js';
import { ROOT } from './readme-samples.js';

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin readme run '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test('the README\'s lapin run --print sample is what lapin run --print prints without KVM', async () => {
  const readme = (await readFile(path.join(ROOT, 'README.md'), 'utf8')).split('\n');
  const at = readme.indexOf('$ lapin run --print linux.tar');
  assert.ok(at > 0, 'README.md shows lapin run --print linux.tar');
  await writeFile(path.join(work, 'vmlinuz'), fakeElfKernel());
  await writeFile(path.join(work, 'init'), '#!/bin/sh\n');
  await chmod(path.join(work, 'init'), 0o755);
  await writeFile(
    path.join(work, 'bunnyfile'),
    'version: v0.1\nplatforms: {framework: linux, monitor: qemu, architecture: x86}\nkernel: {from: local, path: vmlinuz}\nrootfs:\n  type: initrd\n  include: ["init:/init"]\ncmd: ["/init", "first", "second"]\n',
  );
  await build({ context: work, outputs: [{ type: 'oci', dest: path.join(work, 'linux.tar') }] });
  const printed = await lapin(['run', '--print', '--accel', 'tcg', 'linux.tar'], { cwd: work });
  assert.equal(printed.status, 0, printed.stderr);
  assert.equal(readme[at + 1], printed.stdout.replace(/\n$/, ''), `README.md:${at + 2} is stale`);
  // The run below it shows the same command, shortened, with the args given after --.
  const run = readme[at + 4] ?? '';
  assert.match(run, /^lapin: running qemu-system-x86_64 -m 256M \.\.\. -append '.* rdinit=\/init -- hello'$/);
  assert.ok((readme[at + 1] ?? '').endsWith(run.slice(run.indexOf(" -append '")).replace('-- hello', '-- first second')), `README.md:${at + 5} does not match the command above it`);
});
