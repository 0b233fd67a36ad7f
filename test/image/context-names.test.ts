// File names that are not UTF-8 are refused by name (escaped), never
// dropped or misread as another file; escapeName is checked on any bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { escapeName } from '../../src/image/context-names.js';
import { kernelContainerfile } from '../helpers/fixtures.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin names-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A context whose d/ holds `names` (raw bytes), built with COPY d/ /d/ (or the glob COPY d/* /d/). */
async function contextWith(label: string, names: Buffer[], copy: string): Promise<string> {
  const context = path.join(work, label);
  await mkdir(path.join(context, 'd'), { recursive: true });
  await cp(path.join(ROOT, 'examples/mirage-hvt/network.hvt'), path.join(context, 'kernel.hvt'));
  for (const name of names) await writeFile(Buffer.concat([Buffer.from(`${path.join(context, 'd')}/`), name]), name);
  await writeFile(path.join(context, 'Containerfile'), kernelContainerfile(copy));
  return context;
}

function lapinBuild(context: string): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, 'build', '-t', 'names:1', '--no-cache', '--progress', 'quiet', '-o', 'type=oci,dest=out.tar', '.'], { cwd: context, encoding: 'utf8' });
  return { status: result.status, stderr: result.stderr };
}

describe('non-UTF-8 names in the build context', () => {
  for (const copy of ['COPY d/ /d/', 'COPY d/* /d/']) {
    test(`a lone bad\\xff is refused by name (${copy})`, async () => {
      const context = await contextWith(`lone-${copy.length}`, [Buffer.from('bad\xff', 'latin1')], copy);
      const r = lapinBuild(context);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, 'lapin: error: the build context has a file whose name is not UTF-8: d/bad\\xff (give it a UTF-8 name or leave it out of the build; lapin writes layers and initrds with UTF-8 names)\n');
      assert.deepEqual((await readdir(context)).filter((n) => n.includes('out.tar')), []);
    });

    test(`x\\xff beside x\\uFFFD is refused, not dropped (${copy})`, async () => {
      const context = await contextWith(`pair-${copy.length}`, [Buffer.from('x\uFFFD', 'utf8'), Buffer.from('x\xff', 'latin1')], copy);
      const r = lapinBuild(context);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /^lapin: error: the build context has a file whose name is not UTF-8: d\/x\\xff \(/);
    });
  }

  test('escapeName: printable ASCII as is, every other byte as \\xNN, and it can be read back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const text = escapeName(Buffer.from(bytes));
        assert.match(text, /^[\x20-\x7e]*$/);
        const back = Buffer.from(text.replace(/\\x([0-9a-f]{2})|([\s\S])/g, (_, hex: string | undefined, c: string) => (hex ? String.fromCharCode(parseInt(hex, 16)) : c)), 'latin1');
        assert.ok(back.equals(Buffer.from(bytes)));
      }),
    );
  });
});
