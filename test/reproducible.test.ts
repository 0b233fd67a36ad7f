// The same input gives the same bytes, with the defaults users have: no
// SOURCE_DATE_EPOCH. Every writer (layers, initrd, ext2, ext4, gzip, zstd,
// an OCI layout directory, a local directory, a push) is built twice through
// bin/lapin, the installed command: a second apart, from two copies of the
// context at different paths (one with a space) whose files have other
// mtimes, under another umask, TMPDIR and working directory. The pushed
// manifest's digest must be the archive's. Needs `npm run build` first
// (scripts/test.sh does).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runProgram, type ProgramResult } from './helpers/fixtures.js';
import { fakeElfKernel } from './helpers/hand-image.js';
import { registrySkipReason, startRegistry, type TestRegistry } from './registry/harness.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const LAUNCHER = path.join(ROOT, 'bin/lapin');
const SBIN = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;

let work: string;
/** Two copies of one context; the second's path has a space and its files other mtimes. */
let contexts: [string, string];
let registry: TestRegistry | undefined;

const linux = (rootfs: string): string => `version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: local
  path: vmlinuz
rootfs:
${rootfs}cmd: ["/sbin/init", "--flag"]
`;

const DEFINITIONS: Record<string, string> = {
  'layers.bunnyfile': `version: v0.1
platforms:
  framework: mirage
  monitor: hvt
  architecture: x86
kernel:
  from: local
  path: network.hvt
cmdline: "--ipv4=10.0.0.2/24"
`,
  'raw.bunnyfile': linux('  type: raw\n  include:\n    - files/init:/sbin/init\n    - files/etc:/etc\n'),
  'initrd.bunnyfile': linux('  type: initrd\n  include:\n    - files/init:/sbin/init\n    - files/etc:/etc\n'),
  'ext4.bunnyfile': linux('  type: block\n  include:\n    - files/init:/sbin/init\n    - files/etc:/etc\n'),
  'ext2.bunnyfile': `version: v0.1
platforms:
  framework: rumprun
  monitor: hvt
  architecture: x86
kernel:
  from: local
  path: network.hvt
rootfs:
  type: block
  include:
    - files/etc:/etc
cmd: ["app"]
`,
};

async function writeContext(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'files', 'etc', 'empty.d'), { recursive: true });
  await writeFile(path.join(dir, 'vmlinuz'), fakeElfKernel());
  await writeFile(path.join(dir, 'network.hvt'), fakeElfKernel());
  await writeFile(path.join(dir, 'files', 'init'), '#!/bin/sh\necho hello\n');
  await chmod(path.join(dir, 'files', 'init'), 0o755);
  await writeFile(path.join(dir, 'files', 'etc', 'hostname'), 'guest\n');
  await writeFile(path.join(dir, 'files', 'etc', 'big.bin'), Buffer.alloc(300_000, 7));
  for (const [name, text] of Object.entries(DEFINITIONS)) await writeFile(path.join(dir, name), text);
}

/** Sets every file's and directory's times to `when`, deepest first. */
async function touchAll(dir: string, when: Date): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await touchAll(p, when);
    await utimes(p, when, when);
  }
  await utimes(dir, when, when);
}

interface Side {
  context: string;
  cwd: string;
  tmp: string;
  umask: string;
  cache: string;
}

let sides: [Side, Side];

/** bin/lapin under the side's umask, TMPDIR, cwd and cache, with SOURCE_DATE_EPOCH unset. */
async function lapin(side: Side, args: string[]): Promise<ProgramResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: SBIN, TMPDIR: side.tmp, LAPIN_CACHE_DIR: side.cache, DOCKER_CONFIG: path.join(side.tmp, 'docker') };
  delete env.SOURCE_DATE_EPOCH;
  const result = await runProgram('/bin/sh', ['-c', `umask ${side.umask} && exec "$0" "$@"`, LAUNCHER, ...args], { cwd: side.cwd, env });
  assert.equal(result.status, 0, `lapin ${args.join(' ')}:\n${result.stderr}`);
  return result;
}

const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/** Every entry under `dir` with its type, permission bits, size, mtime and content hash or link target. */
async function treeListing(dir: string, prefix = ''): Promise<string[]> {
  const lines: string[] = [];
  for (const name of (await readdir(path.join(dir, prefix))).sort()) {
    const rel = path.join(prefix, name);
    const p = path.join(dir, rel);
    const s = await lstat(p);
    const mode = (s.mode & 0o7777).toString(8);
    const time = Math.floor(s.mtimeMs / 1000);
    if (s.isDirectory()) lines.push(`d ${rel} ${mode} ${time}`, ...(await treeListing(dir, rel)));
    else if (s.isSymbolicLink()) lines.push(`l ${rel} -> ${await readlink(p)}`);
    else lines.push(`f ${rel} ${mode} ${s.size} ${time} ${sha256(await readFile(p))}`);
  }
  return lines;
}

/** Waits past the next whole second, so a clock stamped anywhere would differ. */
const nextSecond = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1100));

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-repro-'));
  contexts = [path.join(work, 'first', 'context'), path.join(work, 'second copy', 'the context')];
  await writeContext(contexts[0]);
  await mkdir(path.dirname(contexts[1]), { recursive: true });
  await cp(contexts[0], contexts[1], { recursive: true });
  await touchAll(contexts[0], new Date('2021-03-04T05:06:07Z'));
  await touchAll(contexts[1], new Date('2025-11-12T13:14:15Z'));
  const side = async (name: string, context: string, umask: string): Promise<Side> => {
    const base = path.join(work, name);
    const s: Side = { context, cwd: path.join(base, 'cwd'), tmp: path.join(base, 'tmp dir'), umask, cache: path.join(base, 'cache') };
    for (const d of [s.cwd, s.tmp]) await mkdir(d, { recursive: true });
    return s;
  };
  sides = [await side('side a', contexts[0], '022'), await side('side b', contexts[1], '077')];
  if (registrySkipReason() === undefined) registry = await startRegistry('anonymous');
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

interface Case {
  name: string;
  definition: string;
  extra?: string[];
}

const ARCHIVE_CASES: Case[] = [
  { name: 'layers (a kernel and urunc.json)', definition: 'layers.bunnyfile' },
  { name: 'raw rootfs (include files as a layer)', definition: 'raw.bunnyfile' },
  { name: 'initrd', definition: 'initrd.bunnyfile' },
  { name: 'ext4 block image, gzip', definition: 'ext4.bunnyfile', extra: ['--compression', 'gzip'] },
  { name: 'ext2 block image (rumprun)', definition: 'ext2.bunnyfile' },
  { name: 'ext4 block image, zstd', definition: 'ext4.bunnyfile', extra: ['--compression', 'zstd'] },
  { name: 'ext2 block image, uncompressed', definition: 'ext2.bunnyfile', extra: ['--compression', 'none'] },
];

const e2fsprogs = ['mke2fs', 'debugfs', 'e2fsck'].every((tool) => SBIN.split(':').some((d) => existsSync(path.join(d, tool))));

describe('the same input gives the same bytes with SOURCE_DATE_EPOCH unset (bin/lapin)', { skip: existsSync(path.join(ROOT, 'dist/cli/main.js')) ? false : 'run npm run build first' }, () => {
  for (const c of ARCHIVE_CASES) {
    const needsE2fs = c.definition.startsWith('ext');
    test(`${c.name}: two archives are byte for byte the same`, { skip: needsE2fs && !e2fsprogs ? 'e2fsprogs is not installed' : false }, async () => {
      const archives: Buffer[] = [];
      const digests: string[] = [];
      for (const [i, side] of sides.entries()) {
        if (i > 0) await nextSecond();
        const out = path.join(side.cwd, `${c.definition}.tar`);
        const r = await lapin(side, ['build', '-q', '--no-cache', '-f', path.join(side.context, c.definition), ...(c.extra ?? []), '-o', `type=oci,dest=${out}`, side.context]);
        digests.push(r.stdout.trim());
        archives.push(await readFile(out));
      }
      assert.match(digests[0] ?? '', /^sha256:[0-9a-f]{64}$/);
      assert.equal(digests[1], digests[0], 'the image digests differ');
      assert.ok((archives[0] as Buffer).equals(archives[1] as Buffer), 'the archives differ');
    });
  }

  test('tar=false: two OCI layout directories hold the same files', { skip: e2fsprogs ? false : 'e2fsprogs is not installed' }, async () => {
    const listings: string[][] = [];
    for (const [i, side] of sides.entries()) {
      if (i > 0) await nextSecond();
      const out = path.join(side.cwd, 'layout dir');
      await lapin(side, ['build', '-q', '--no-cache', '-f', path.join(side.context, 'ext4.bunnyfile'), '-o', `type=oci,dest=${out},tar=false`, side.context]);
      // Only the content: directory modes follow the umask, as docker buildx's do.
      listings.push((await treeListing(out)).filter((l) => l.startsWith('f ')).map((l) => l.split(' ').filter((_, n) => n !== 2 && n !== 4).join(' ')));
    }
    assert.ok((listings[0] as string[]).length >= 4, 'the layout has blobs');
    assert.deepEqual(listings[1], listings[0]);
  });

  test('type=local: two directories hold the same files, modes and times', async () => {
    const listings: string[][] = [];
    for (const [i, side] of sides.entries()) {
      if (i > 0) await nextSecond();
      const out = path.join(side.cwd, 'local dir');
      await lapin(side, ['build', '--no-cache', '-f', path.join(side.context, 'raw.bunnyfile'), '-o', `type=local,dest=${out}`, side.context]);
      listings.push(await treeListing(out));
    }
    assert.ok((listings[0] as string[]).some((l) => l.startsWith('f sbin/init 755 ')), (listings[0] as string[]).join('\n'));
    assert.deepEqual(listings[1], listings[0]);
  });

  test('push: the pushed manifest digest is the archive digest, and the second push is the same manifest', { skip: registrySkipReason() ?? (e2fsprogs ? false : 'e2fsprogs is not installed') }, async () => {
    const r = registry as TestRegistry;
    const digests: string[] = [];
    const [first, second] = sides;
    const archive = path.join(first.cwd, 'to-compare.tar');
    const archived = await lapin(first, ['build', '-q', '--no-cache', '-f', path.join(first.context, 'ext4.bunnyfile'), '-o', `type=oci,dest=${archive}`, first.context]);
    for (const [i, side] of [second, first].entries()) {
      await nextSecond();
      const name = `${r.host}/repro/ext4:${i}`;
      await lapin(side, ['build', '--no-cache', '-f', path.join(side.context, 'ext4.bunnyfile'), '-t', name, '--push', side.context]);
      const raw = (await runProgram('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`])).stdout;
      digests.push(`sha256:${sha256(raw)}`);
    }
    assert.deepEqual(digests, [archived.stdout.trim(), archived.stdout.trim()]);
  });

  test('an unchanged rebuild of a block image hits the layer cache for every layer', { skip: e2fsprogs ? false : 'e2fsprogs is not installed' }, async () => {
    const side = sides[1];
    const args = ['build', '--progress', 'plain', '-f', path.join(side.context, 'ext4.bunnyfile'), '-o', `type=oci,dest=${path.join(side.cwd, 'cached.tar')}`, side.context];
    const cold = await lapin(side, args);
    await nextSecond();
    const warm = await lapin(side, args);
    const layerLines = (text: string): string[] => text.split('\n').filter((l) => /layer .*: sha256:/.test(l));
    assert.ok(layerLines(cold.stderr).length >= 3, cold.stderr);
    assert.ok(layerLines(cold.stderr).every((l) => !l.includes(', cached')), cold.stderr);
    assert.equal(layerLines(warm.stderr).length, layerLines(cold.stderr).length, warm.stderr);
    assert.ok(layerLines(warm.stderr).every((l) => l.includes(', cached')), warm.stderr);
    assert.match(warm.stderr, /rootfs.*cached|cached.*rootfs/, 'the block image layer came from the cache');
  });
});
