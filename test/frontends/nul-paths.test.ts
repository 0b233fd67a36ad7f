// A NUL byte in a path a definition file names (a YAML "\0" escape, or a raw
// byte in a Containerfile) is refused at its position, as one clean line: it
// was a bare Node message (kernel.path) or a layer error with no position.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin nul-'));
  await copyFile(join(ROOT, 'examples/mirage-hvt/network.hvt'), join(work, 'network.hvt'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function build(name: string, text: string | Buffer): Promise<{ status: number | null; error: string }> {
  await writeFile(join(work, name), text);
  const result = spawnSync(process.execPath, [...CLI, 'build', '-f', join(work, name), '-o', join(work, `${name}.tar`), work], { cwd: work, encoding: 'utf8', timeout: 30_000 });
  const errors = result.stderr.split('\n').filter((line) => line.startsWith('lapin: error:'));
  assert.equal(errors.length, 1, result.stderr);
  assert.doesNotMatch(result.stderr, /\n\s+at |null bytes/);
  return { status: result.status, error: errors[0] as string };
}

describe('NUL bytes in paths', () => {
  test('bunnyfile kernel.path and include entries', async () => {
    const seed = await readFile(join(ROOT, 'examples/mirage-hvt/bunnyfile'), 'utf8');
    const kernel = await build('kernel-nul', seed.replace('path: network.hvt', 'path: "network.hvt\\0x"'));
    assert.equal(kernel.status, 1);
    assert.match(kernel.error, /kernel-nul:\d+:\d+: kernel\.path contains a NUL byte/);
    const include = await build('include-nul', `${seed}rootfs:\n  from: scratch\n  include:\n    - "network.hvt:/a\\0b"\n`);
    assert.equal(include.status, 1);
    assert.match(include.error, /include-nul:\d+:\d+: include entry contains a NUL byte/);
  });

  test('a Containerfile COPY destination', async () => {
    const result = await build(
      'Containerfile.nul',
      Buffer.from('FROM scratch\nCOPY network.hvt /unikernel/a\0b\nCOPY network.hvt /unikernel/network.hvt\nLABEL com.urunc.unikernel.binary=/unikernel/network.hvt com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt\n'),
    );
    assert.equal(result.status, 1);
    assert.match(result.error, /Containerfile\.nul:2:18: COPY destination contains a NUL byte/);
  });

  test('a Containerfile WORKDIR (a relative COPY destination joins it; alone it would be the config\'s WorkingDir)', async () => {
    const labels = 'LABEL com.urunc.unikernel.binary=/unikernel/network.hvt com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt\n';
    for (const rest of ['COPY network.hvt k\n', '']) {
      const result = await build('Containerfile.wd', Buffer.from(`FROM scratch\nWORKDIR /w\0x\nCOPY network.hvt /unikernel/network.hvt\n${rest}${labels}`));
      assert.equal(result.status, 1);
      assert.match(result.error, /Containerfile\.wd:2:1: WORKDIR contains a NUL byte/);
    }
  });
});
