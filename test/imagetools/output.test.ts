// lapin imagetools create --output on outputs that cannot be written and
// sources that lie: each is one clean line and exit 2, checked before any
// source is read where it can be, and leaves nothing behind (no output, no
// temporary sibling).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeOciArchive, writeOciLayout } from '../helpers/hand-image.js';
import { unikraftImage } from '../helpers/hand-index.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** One `lapin: error:` line, no stack trace. */
function oneLine(result: { stderr: string }, pattern: RegExp): void {
  assert.match(result.stderr.trimEnd(), pattern);
  assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  assert.doesNotMatch(result.stderr, /^\s+at /m);
}

const image = unikraftImage;

/** A copy of the arm64 layout whose first layer's descriptor says SIZE, or whose layer bytes are flipped. */
async function lyingLayout(name: string, lie: { size?: unknown; flip?: boolean }): Promise<string> {
  const dir = join(work, name);
  await cp(join(work, 'arm64'), dir, { recursive: true });
  const indexJson = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; size: number }> };
  const top = indexJson.manifests[0] as { digest: string; size: number };
  const manifest = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', top.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string; size: unknown }> };
  const layer = manifest.layers[0] as { digest: string; size: unknown };
  if (lie.flip) {
    const path = join(dir, 'blobs', 'sha256', layer.digest.slice(7));
    const bytes = await readFile(path);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 0xff;
    await writeFile(path, bytes);
  }
  if ('size' in lie) layer.size = lie.size;
  const bytes = Buffer.from(JSON.stringify(manifest));
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(dir, 'blobs', 'sha256', hex), bytes);
  top.digest = `sha256:${hex}`;
  top.size = bytes.length;
  await writeFile(join(dir, 'index.json'), JSON.stringify(indexJson));
  return dir;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin imagetools output '));
  await writeOciArchive(join(work, 'amd64.tar'), image('amd64'));
  await writeOciLayout(join(work, 'arm64'), image('arm64'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('lapin imagetools create --output', () => {
  test('a parent that is missing or a file, an archive over a directory: exit 2 before reading, nothing written', async () => {
    for (const [dest, message] of [
      ['missing/index.tar', /^lapin: error: cannot write missing\/index\.tar: .*missing is not a directory \(create it first\)$/],
      ['amd64.tar/index.tar', /^lapin: error: cannot write amd64\.tar\/index\.tar: .*amd64\.tar is not a directory/],
      ['arm64', /^lapin: error: cannot write the archive to arm64: it is a directory/],
    ] as const) {
      const r = lapin(['imagetools', 'create', '--output', `type=oci,dest=${dest}`, 'amd64.tar']);
      assert.equal(r.status, 2, `${dest}: ${r.stderr}`);
      oneLine(r, message);
    }
    assert.deepEqual((await readdir(work)).sort(), ['amd64.tar', 'arm64']);
  });

  test('--strategy merge into an existing layout directory: refused before reading, saying how to merge', async () => {
    await mkdir(join(work, 'merged'));
    await writeFile(join(work, 'merged', 'keep'), 'x');
    const r = lapin(['imagetools', 'create', '--strategy', 'merge', '--output', 'type=oci,dest=merged,tar=false', 'oci:arm64']);
    assert.equal(r.status, 2, r.stderr);
    oneLine(r, /^lapin: error: --strategy merge cannot write the layout directory merged over itself.*\(give oci:merged as a SOURCE and write a new directory, or merge into an archive: tar=true\)$/);
    assert.deepEqual(await readdir(join(work, 'merged')), ['keep']);
    await rm(join(work, 'merged'), { recursive: true });
  });

  test('a layer whose size field lies (smaller, larger, negative, a string) or whose bytes are damaged: exit 2, nothing written', async () => {
    const cases: Array<[string, { size?: unknown; flip?: boolean }, RegExp]> = [
      ['smaller', { size: 10 }, /is \d+ bytes, but its manifest says 10; nothing was written$/],
      ['larger', { size: 1e12 }, /is \d+ bytes, but its manifest says 1000000000000; nothing was written$/],
      ['negative', { size: -5 }, /is \d+ bytes, but its manifest says -5; nothing was written$/],
      ['string', { size: 'abc' }, /is \d+ bytes, but its manifest says "abc"; nothing was written$/],
      ['damaged', { flip: true }, /does not match its digest \(got sha256:[0-9a-f]{64}\); nothing was written$/],
    ];
    for (const [name, lie, message] of cases) {
      const dir = await lyingLayout(`lying ${name}`, lie);
      for (const output of [`type=oci,dest=${name}.tar`, `type=oci,dest=${name}-layout,tar=false`]) {
        const r = lapin(['imagetools', 'create', '--output', output, `oci:${dir}`]);
        assert.equal(r.status, 2, `${name} ${output}: ${r.stderr}`);
        oneLine(r, message);
      }
      await rm(dir, { recursive: true });
    }
    assert.deepEqual((await readdir(work)).sort(), ['amd64.tar', 'arm64']);
  });
});
