// lapin imagetools create --platform keeps only those platforms of the
// sources, as `docker buildx imagetools create --platform` filters them,
// and reads each value as buildx does (pipeline/platform.ts): aarch64 is
// linux/arm64, x86_64 linux/amd64, any case. One no source has, or one that
// is no platform, is one line and exit 2.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { runProgram, type ProgramResult } from '../helpers/fixtures.js';
import { writeOciArchive, writeOciLayout } from '../helpers/hand-image.js';
import { unikraftImage } from '../helpers/hand-index.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
const lapin = (args: string[]): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, 'imagetools', 'create', ...args], { cwd: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin imagetools platform '));
  await writeOciArchive(join(work, 'amd64.tar'), unikraftImage('amd64'));
  await writeOciLayout(join(work, 'arm64'), unikraftImage('arm64'));
});
after(() => rm(work, { recursive: true, force: true }));

const architectures = (result: ProgramResult): string[] => (JSON.parse(result.stdout) as { manifests: Array<{ platform: { architecture: string } }> }).manifests.map((m) => m.platform.architecture);

test('--platform keeps the platforms named, in any form buildx takes', async () => {
  for (const [given, want] of [['aarch64', ['arm64']], ['linux/arm64/v8', ['arm64']], ['X86_64', ['amd64']], ['amd64,ARM64', ['amd64', 'arm64']]] as const) {
    const result = await lapin(['--dry-run', '--platform', given, 'amd64.tar', 'arm64']);
    assert.equal(result.status, 0, `${given}: ${result.stderr}`);
    assert.deepEqual(architectures(result), want, given);
  }
  const all = await lapin(['--dry-run', 'amd64.tar', 'arm64']);
  assert.deepEqual(architectures(all), ['amd64', 'arm64']);
});

test('a platform no source has, or no platform at all: one line, exit 2', async () => {
  for (const [given, message] of [
    ['linux/s390x', /^lapin: error: --platform linux\/s390x: no source has an image for linux\/s390x \(they have linux\/amd64, linux\/arm64\)$/],
    ['pentium', /^lapin: error: --platform "pentium" is not a platform \(write OS\/ARCH\[\/VARIANT\] as buildx takes it, e\.g\. linux\/arm64 or arm64\)$/],
  ] as const) {
    const result = await lapin(['--dry-run', '--platform', given, 'amd64.tar', 'arm64']);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr.trimEnd(), message);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  }
});

test('with --strategy merge the index already at the target keeps its platforms, named or not', async () => {
  const first = await lapin(['--output', 'type=oci,dest=merged.tar', 'amd64.tar']);
  assert.equal(first.status, 0, first.stderr);
  const merged = await lapin(['--strategy', 'merge', '--platform', 'arm64', '--output', 'type=oci,dest=merged.tar', 'arm64']);
  assert.equal(merged.status, 0, merged.stderr);
  const again = await lapin(['--dry-run', 'merged.tar']);
  assert.deepEqual(architectures(again), ['amd64', 'arm64']);
});
