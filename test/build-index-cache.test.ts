// The layer cache and the unchanged-archive shortcut of an index build (issue
// 13): a second identical `lapin build --platform A,B` takes every layer of
// every platform from the cache and leaves the archive it wrote alone; a
// change in one platform's input rebuilds that platform's layer only; a layer
// both platforms share is stored once; a tampered archive or another tag is
// written again; a layout directory is refused when not empty, as for one
// platform. Run the way users run lapin: no SOURCE_DATE_EPOCH, a cwd that is
// not the context, a TMPDIR with a space.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fakeElf, writePerPlatformContext } from './helpers/hand-index.js';
import { tamperArchive } from './helpers/archive-tampering.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const PLATFORMS = ['--platform', 'linux/amd64,linux/arm64'];
let work: string;
let env: NodeJS.ProcessEnv;

interface Run {
  status: number | null;
  stderr: string;
}

function lapin(cwd: string, args: string[]): Promise<Run> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [...CLI, 'build', '--progress', 'plain', ...args], { cwd, env });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => done({ status, stderr }));
  });
}

/** Each platform's layer step lines: "kernel" -> cached or not. */
function layerSteps(stderr: string): Record<string, Record<string, boolean>> {
  const result: Record<string, Record<string, boolean>> = {};
  let platform: Record<string, boolean> | undefined;
  for (const line of stderr.split('\n')) {
    const building = /^=> building (linux\/\w+)/.exec(line);
    if (building) platform = result[building[1] as string] = {};
    const layer = /^=> layer ([\w ]+): sha256:[0-9a-f]{64} \(\d+ B(, cached)?\)/.exec(line);
    if (layer && platform) platform[layer[1] as string] = layer[2] !== undefined;
  }
  return result;
}

async function newContext(name: string): Promise<string> {
  const context = join(work, name);
  await writePerPlatformContext(context, `one layer for both (${name})\n`);
  return context;
}

/** Another cwd: the build's own directory, not the context. */
async function newCwd(name: string): Promise<string> {
  const cwd = join(work, 'out dirs', name);
  await mkdir(cwd, { recursive: true });
  return cwd;
}

async function fileId(file: string): Promise<string> {
  const s = await stat(file, { bigint: true });
  return `${s.ino}:${s.mtimeNs}:${s.ctimeNs}`;
}

const UNCHANGED = /^=> out\.tar already holds this image index \(sha256:[0-9a-f]{64}\), unchanged since lapin wrote it/m;
const WROTE = /^=> wrote out\.tar \(index sha256:[0-9a-f]{64}\)/m;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin index cache '));
  const temporaries = join(work, 'tmp dir');
  await mkdir(temporaries);
  env = { ...process.env, TMPDIR: temporaries, XDG_CACHE_HOME: join(work, 'cache home') };
  delete env.SOURCE_DATE_EPOCH;
  delete env.LAPIN_CACHE_DIR;
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('an index build and the layer cache', () => {
  test('a second identical build takes every layer of every platform from the cache and leaves the archive; one platform changed rebuilds its layer only', async () => {
    const context = await newContext('context a');
    const cwd = await newCwd('a');
    const args = [...PLATFORMS, '-t', 'cache/a:1', '-o', 'type=oci,dest=out.tar', context];
    const first = await lapin(cwd, args);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, WROTE);
    // amd64 fills the empty cache; arm64 takes the two layers it shares with amd64 from it.
    assert.deepEqual(layerSteps(first.stderr), {
      'linux/amd64': { kernel: false, files: false, 'urunc metadata': false },
      'linux/arm64': { kernel: false, files: true, 'urunc metadata': true },
    });
    const written = await fileId(join(cwd, 'out.tar'));
    const bytes = await readFile(join(cwd, 'out.tar'));

    const second = await lapin(cwd, args);
    assert.equal(second.status, 0, second.stderr);
    assert.deepEqual(layerSteps(second.stderr), {
      'linux/amd64': { kernel: true, files: true, 'urunc metadata': true },
      'linux/arm64': { kernel: true, files: true, 'urunc metadata': true },
    });
    assert.match(second.stderr, UNCHANGED);
    assert.doesNotMatch(second.stderr, WROTE);
    assert.equal(await fileId(join(cwd, 'out.tar')), written);
    assert.ok((await readFile(join(cwd, 'out.tar'))).equals(bytes));

    // The shared layers have one digest in both manifests and one entry in the archive.
    const tar = (...more: string[]): string => execFileSync('tar', more, { cwd, encoding: 'utf8' });
    const blobs = tar('-tf', 'out.tar').split('\n').filter((l) => /^blobs\/sha256\/./.test(l));
    const blob = (digest: string): unknown => JSON.parse(tar('-xOf', 'out.tar', `blobs/sha256/${digest.slice('sha256:'.length)}`));
    const top = JSON.parse(tar('-xOf', 'out.tar', 'index.json')) as { manifests: Array<{ digest: string }> };
    const index = blob((top.manifests[0] as { digest: string }).digest) as { manifests: Array<{ digest: string }> };
    const manifests = index.manifests.map((m) => blob(m.digest) as { config: { digest: string }; layers: Array<{ digest: string }> });
    const [amd, arm] = manifests.map((m) => m.layers.map((l) => l.digest)) as [string[], string[]];
    assert.equal(amd.length, 3);
    assert.notEqual(amd[0], arm[0]);
    assert.deepEqual(amd.slice(1), arm.slice(1));
    const distinct = new Set([(top.manifests[0] as { digest: string }).digest, ...index.manifests.map((m) => m.digest), ...manifests.flatMap((m) => [m.config.digest, ...m.layers.map((l) => l.digest)])]);
    // The index, 2 manifests, 2 configs, 2 kernels and the 2 layers both share: 9, each once.
    assert.equal(distinct.size, 9);
    assert.equal(blobs.length, 9);
    assert.deepEqual(new Set(blobs.map((b) => `sha256:${b.slice('blobs/sha256/'.length)}`)), distinct);

    // arm64's kernel changes: only that layer is built again, and the archive is written again.
    const kernel = fakeElf('aarch64');
    kernel[4000] = 0x42;
    await writeFile(join(context, 'app-arm64'), kernel);
    const third = await lapin(cwd, args);
    assert.equal(third.status, 0, third.stderr);
    assert.deepEqual(layerSteps(third.stderr), {
      'linux/amd64': { kernel: true, files: true, 'urunc metadata': true },
      'linux/arm64': { kernel: false, files: true, 'urunc metadata': true },
    });
    assert.match(third.stderr, WROTE);
    assert.doesNotMatch(third.stderr, UNCHANGED);
    assert.notEqual(await fileId(join(cwd, 'out.tar')), written);
  });

  test('a changed or truncated archive, or another tag, is written again; --no-cache always writes', async () => {
    const context = await newContext('context b');
    const cwd = await newCwd('b');
    const dest = join(cwd, 'out.tar');
    const args = [...PLATFORMS, '-t', 'cache/b:1', '-o', 'type=oci,dest=out.tar', context];
    assert.equal((await lapin(cwd, args)).status, 0);
    const original = await readFile(dest);
    const unchanged = async (): Promise<void> => {
      const before = await fileId(dest);
      const again = await lapin(cwd, args);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, UNCHANGED);
      assert.equal(await fileId(dest), before);
    };
    const rewritten = async (run: string[] = args): Promise<Run> => {
      const again = await lapin(cwd, run);
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stderr, WROTE);
      assert.doesNotMatch(again.stderr, UNCHANGED);
      return again;
    };
    await unchanged();

    await tamperArchive(dest, original, cwd, () => rewritten(), unchanged);

    // Another tag is another index.json: written.
    await rewritten([...PLATFORMS, '-t', 'cache/b:2', '-o', 'type=oci,dest=out.tar', context]);
    assert.ok(!(await readFile(dest)).equals(original));
    await rewritten();
    assert.ok((await readFile(dest)).equals(original));

    await rewritten([...args.slice(0, -1), '--no-cache', context]);
    assert.ok((await readFile(dest)).equals(original));
  });

  test('a layout directory (tar=false) is refused on a second build, as for one platform, before any layer; an empty one is written', async () => {
    const context = await newContext('context c');
    const cwd = await newCwd('c');
    const first = await lapin(cwd, [...PLATFORMS, '-t', 'cache/c:1', '-o', 'type=oci,dest=layout,tar=false', context]);
    assert.equal(first.status, 0, first.stderr);
    const index = await fileId(join(cwd, 'layout', 'index.json'));
    const again = await lapin(cwd, [...PLATFORMS, '-t', 'cache/c:1', '-o', 'type=oci,dest=layout,tar=false', context]);
    const single = await lapin(cwd, ['-t', 'cache/c:1', '-o', 'type=oci,dest=layout,tar=false', context]);
    for (const run of [again, single]) {
      assert.equal(run.status, 1, run.stderr);
      assert.match(run.stderr, /^lapin: error: output directory \S.* is not empty \(choose a new directory or remove this one first\)$/m);
      assert.doesNotMatch(run.stderr, /=> layer /);
    }
    assert.equal(lastLine(again.stderr), lastLine(single.stderr));
    assert.equal(await fileId(join(cwd, 'layout', 'index.json')), index);
    await mkdir(join(cwd, 'empty'));
    const empty = await lapin(cwd, [...PLATFORMS, '-t', 'cache/c:1', '-o', 'type=oci,dest=empty,tar=false', context]);
    assert.equal(empty.status, 0, empty.stderr);
    assert.ok(JSON.parse(await readFile(join(cwd, 'empty', 'index.json'), 'utf8')));
  });
});

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '';
}
