// lapin build --platform A,B: one build per platform (TARGETARCH picks each
// platform's kernel in a Containerfile), one image index over them, written
// to an archive or pushed; the kernel header check per platform.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspectAny, type IndexInspectReport } from '../src/inspect/index-report.js';
import { runProgram, type ProgramResult } from './helpers/fixtures.js';
import { PER_PLATFORM_CONTAINERFILE, fakeElf, writePerPlatformContext } from './helpers/hand-index.js';
import { registrySkipReason, skopeoInspect, startRegistry, type TestRegistry } from './registry/harness.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
let context: string;

const lapin = (args: string[]): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, ...args], { cwd: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin build platforms '));
  context = join(work, 'context');
  await writePerPlatformContext(context);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('lapin build --platform linux/amd64,linux/arm64', () => {
  test('an archive holding the index; each platform its own kernel; --metadata-file has the index digest', async () => {
    const out = join(work, 'multi.tar');
    const result = await lapin(['build', '--platform', 'linux/amd64,linux/arm64', '-t', 'lapin-test/multi:1', '-o', `type=oci,dest=${out}`, '--metadata-file', join(work, 'meta.json'), context]);
    assert.equal(result.status, 0, result.stderr);
    const report = (await inspectAny(out)) as IndexInspectReport;
    assert.equal(report.kind, 'index');
    assert.deepEqual(report.platforms.map((p) => [p.platform, p.report.runnable, p.report.files.find((f) => f.key === 'binary')?.architecture]), [
      ['linux/amd64', true, 'amd64'],
      ['linux/arm64', true, 'arm64'],
    ]);
    const meta = JSON.parse(await readFile(join(work, 'meta.json'), 'utf8')) as Record<string, { mediaType?: string } | string>;
    assert.equal(meta['containerimage.digest'], report.index.digest);
    assert.equal((meta['containerimage.descriptor'] as { mediaType: string }).mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(meta['image.name'], 'docker.io/lapin-test/multi:1');
  });

  test('one kernel for both platforms: the arm64 build stops at the kernel header check', async () => {
    const single = join(work, 'single-kernel');
    await mkdir(single);
    await writeFile(join(single, 'Containerfile'), PER_PLATFORM_CONTAINERFILE.replace('app-${TARGETARCH}', 'app-amd64'));
    await writeFile(join(single, 'app-amd64'), fakeElf('x86-64'));
    await writeFile(join(single, 'shared.txt'), 'x\n');
    const out = join(work, 'never.tar');
    const result = await lapin(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${out}`, single]);
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /^lapin: error: [^ ]*Containerfile:5:7: --platform linux\/arm64: the kernel \/unikernel\/app is built for amd64, not arm64/m);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
    await assert.rejects(readFile(out), 'nothing written');
  });

  // --load of an index loads this machine's platform: test/build-index.test.ts.
  test('type=docker takes one platform: exit 2', async () => {
    const docker = await lapin(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=docker,dest=${join(work, 'docker.tar')}`, context]);
    assert.equal(docker.status, 2, docker.stderr);
    assert.match(docker.stderr, /^lapin: error: --output type=docker takes one platform/m);
    const twice = await lapin(['build', '--platform', 'linux/amd64,linux/amd64', '-o', `type=oci,dest=${join(work, 'x.tar')}`, context]);
    assert.equal(twice.status, 2, twice.stderr);
  });

  describe('--push', { skip: registrySkipReason() }, () => {
    let registry: TestRegistry;
    before(async () => {
      registry = await startRegistry('anonymous');
    });
    after(async () => {
      await registry?.stop();
    });

    test('pushes every manifest, then the index under the tag', async () => {
      const name = `${registry.host}/multi/built:1`;
      const result = await lapin(['build', '--platform', 'linux/amd64,linux/arm64', '-t', name, '--push', context]);
      assert.equal(result.status, 0, result.stderr);
      const raw = (await skopeoInspect(name, '--raw')) as { manifests: Array<{ platform: { architecture: string } }> };
      assert.deepEqual(raw.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
    });
  });
});
