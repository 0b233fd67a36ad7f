// Build context paths a hostile or broken context holds: a symlink loop and a
// name longer than the system allows end at the definition file's line, as
// one clean line, not as a bare errno message.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LapinError } from '../../src/errors.js';
import { resolveInContext } from '../../src/image/context.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin context-'));
  await copyFile(join(ROOT, 'examples/mirage-hvt/network.hvt'), join(work, 'network.hvt'));
  await symlink('loop2', join(work, 'loop1'));
  await symlink('loop1', join(work, 'loop2'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function build(source: string): { status: number | null; stderr: string } {
  const file = join(work, 'Containerfile');
  const result = spawnSync(process.execPath, [...CLI, 'build', '-f', file, '--build-arg', `SRC=${source}`, '-o', join(work, 'out.tar'), work], {
    cwd: work,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: result.status, stderr: result.stderr };
}

describe('build context paths', () => {
  before(async () => {
    await writeFile(
      join(work, 'Containerfile'),
      'FROM scratch\nARG SRC\nCOPY network.hvt /unikernel/network.hvt\nCOPY ${SRC} /x\nLABEL com.urunc.unikernel.binary=/unikernel/network.hvt com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt\n',
    );
  });

  test('a symlink loop is an error at the COPY line', async () => {
    await assert.rejects(resolveInContext(work, 'loop1', { file: 'F', line: 4, column: 1 }), (error: unknown) => error instanceof LapinError && error.at?.line === 4 && /more than 255 symbolic links/.test(error.message));
    const result = build('loop1');
    assert.equal(result.status, 1, result.stderr);
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('lapin: error:'));
    assert.equal(errors.length, 1, result.stderr);
    assert.match(errors[0] as string, /Containerfile:4:1: "loop1" leads through more than 255 symbolic links in the build context, a loop/);
  });

  test('a name longer than the system allows is not in the context (was a bare ENAMETOOLONG)', async () => {
    const long = 'a'.repeat(300);
    assert.equal(await resolveInContext(work, long), undefined);
    const result = build(long);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /Containerfile:4:1: "a{300}" not found in the build context/);
    assert.doesNotMatch(result.stderr, /ENAMETOOLONG|\n\s+at /);
  });
});
