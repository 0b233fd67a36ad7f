// lapin imagetools create --output gets lapin build's unchanged-archive
// shortcut (export/archive-record.ts): the same sources making the same
// index into an archive lapin wrote there, untouched since, leave it as it
// is. A flipped byte (mtime put back), a truncation, a copy of itself in
// its place, another -t, another source or --no-cache write it again; a
// file another writer renamed over dest right after lapin's rename is not
// recorded as lapin's. Run as users do: no SOURCE_DATE_EPOCH, no
// LAPIN_CACHE_DIR (the XDG cache), a space in TMPDIR and in the cwd.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { program } from '../../src/cli/program.js';
import { runProgram, type ProgramResult } from '../helpers/fixtures.js';
import { writeOciArchive, writeOciLayout } from '../helpers/hand-image.js';
import { unikraftImage } from '../helpers/hand-index.js';
import { tamperArchive } from '../helpers/archive-tampering.js';
import { withRenameRace } from '../helpers/rename-race.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
let cwd: string;
let env: NodeJS.ProcessEnv;

const lapin = (args: string[]): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, 'imagetools', 'create', ...args], { cwd, env });
const UNCHANGED = /^lapin: out\.tar already holds this image index \(sha256:[0-9a-f]{64}\), unchanged since lapin wrote it$/m;
const WROTE = /^lapin: wrote out\.tar \(index sha256:[0-9a-f]{64}\)$/m;

async function fileId(file: string): Promise<string> {
  const s = await stat(file, { bigint: true });
  return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin imagetools unchanged '));
  cwd = join(work, 'the cwd');
  await mkdir(join(work, 'tmp dir'));
  await mkdir(cwd);
  env = { ...process.env, TMPDIR: join(work, 'tmp dir'), XDG_CACHE_HOME: join(work, 'cache home') };
  delete env.SOURCE_DATE_EPOCH;
  delete env.LAPIN_CACHE_DIR;
  await writeOciArchive(join(work, 'amd64.tar'), unikraftImage('amd64'));
  await writeOciLayout(join(work, 'arm64'), unikraftImage('arm64'));
  await writeOciLayout(join(work, 'arm64 other'), { ...unikraftImage('arm64'), labels: { other: 'yes' } });
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('lapin imagetools create --output: the unchanged-archive shortcut', () => {
  test('the same index again leaves the archive; a change to it, another -t, another source or --no-cache writes it', async () => {
    const dest = join(cwd, 'out.tar');
    const sources = [`oci-archive:${join(work, 'amd64.tar')}`, `oci:${join(work, 'arm64')}`];
    const args = ['-t', 'hand/index:1', '--output', 'type=oci,dest=out.tar', ...sources];
    const first = await lapin(args);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, WROTE);
    const original = await readFile(dest);
    const digest = /out\.tar@(sha256:[0-9a-f]{64})/.exec(first.stdout)?.[1];
    assert.ok(digest, first.stdout);

    const unchanged = async (): Promise<void> => {
      const before = await fileId(dest);
      const again = await lapin(args);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, UNCHANGED);
      assert.doesNotMatch(again.stderr, WROTE);
      assert.equal(again.stdout, `out.tar@${digest}\n`);
      assert.equal(await fileId(dest), before);
    };
    const rewritten = async (run: string[] = args): Promise<void> => {
      const again = await lapin(run);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, WROTE);
      assert.doesNotMatch(again.stderr, UNCHANGED);
    };
    await unchanged();

    await tamperArchive(dest, original, cwd, () => rewritten(), unchanged);

    // Another tag is another index.json; another source another index: written, then the first again.
    await rewritten(['-t', 'hand/index:2', ...args.slice(2)]);
    assert.ok(!(await readFile(dest)).equals(original));
    await rewritten();
    assert.ok((await readFile(dest)).equals(original));
    await rewritten([...args.slice(0, -1), `oci:${join(work, 'arm64 other')}`]);
    await rewritten();
    assert.ok((await readFile(dest)).equals(original));
    await unchanged();

    await rewritten(['--no-cache', ...args]);
    assert.ok((await readFile(dest)).equals(original));
  });

  test('a file renamed over the archive right after lapin renamed its own is not recorded as lapin’s', async () => {
    const dir = join(work, 'race');
    await mkdir(dir);
    const dest = join(dir, 'shared.tar');
    const other = join(dir, 'other-writer.tar');
    const steps: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    const savedCache = process.env.LAPIN_CACHE_DIR;
    process.env.LAPIN_CACHE_DIR = join(dir, 'cache');
    const run = async (): Promise<void> => {
      steps.length = 0;
      process.stderr.write = ((chunk: string | Uint8Array) => {
        steps.push(String(chunk));
        return true;
      }) as typeof process.stderr.write;
      const out = process.stdout.write.bind(process.stdout);
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try {
        await program().parseAsync(['imagetools', 'create', '-t', 'race/index:1', '--output', `type=oci,dest=${dest}`, join(work, 'amd64.tar'), join(work, 'arm64')], { from: 'user' });
      } finally {
        process.stderr.write = write;
        process.stdout.write = out;
      }
    };
    try {
      await writeFile(other, 'the archive another writer renamed here\n');
      await withRenameRace(dest, other, run);
      assert.equal(await readFile(dest, 'utf8'), 'the archive another writer renamed here\n');
      // Only a record proving dest is lapin's own file may leave it alone.
      await run();
      assert.ok(!steps.some((s) => s.includes('already holds this image index')), steps.join(''));
      assert.notEqual(await readFile(dest, 'utf8'), 'the archive another writer renamed here\n');
      // And the record written now does prove it.
      await run();
      assert.ok(steps.some((s) => s.includes('already holds this image index')), steps.join(''));
    } finally {
      if (savedCache === undefined) delete process.env.LAPIN_CACHE_DIR;
      else process.env.LAPIN_CACHE_DIR = savedCache;
    }
  });
});
