// lapin imagetools create as users run it: bin/lapin, from the start-up
// snapshot `npm run build` made (test/cli/launcher.test.ts). The snapshot
// cannot import('node:...') at run time ("A dynamic import callback was not
// specified"): a push that uploads a blob and --strategy merge into an
// archive failed there while every test from source passed. Needs
// `npm run build` first (scripts/test.sh does).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeOciArchive, writeOciLayout } from '../helpers/hand-image.js';
import { unikraftImage } from '../helpers/hand-index.js';
import { registrySkipReason, skopeoInspect, startRegistry, type TestRegistry } from '../registry/harness.js';

const ROOT = resolve(import.meta.dirname, '../..');
const LAUNCHER = join(ROOT, 'bin/lapin');
let work: string;

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(LAUNCHER, args, { cwd: work, encoding: 'utf8', env: { ...process.env, LAPIN_CACHE_DIR: join(work, 'cache') } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const image = unikraftImage;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'dist/cli/main.js')), 'dist/cli/main.js is missing: run npm run build first');
  work = await mkdtemp(join(tmpdir(), 'lapin imagetools installed '));
  await writeOciArchive(join(work, 'amd64.tar'), image('amd64'));
  await writeOciLayout(join(work, 'arm64'), image('arm64'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('bin/lapin imagetools create', () => {
  test('--strategy merge into an existing archive adds the platform', () => {
    const first = lapin(['imagetools', 'create', '-t', 'lapin/merged:1', '--output', 'type=oci,dest=merged.tar', 'amd64.tar']);
    assert.equal(first.status, 0, first.stderr);
    const merged = lapin(['imagetools', 'create', '-t', 'lapin/merged:1', '--strategy', 'merge', '--output', 'type=oci,dest=merged.tar', 'oci:arm64']);
    assert.equal(merged.status, 0, merged.stderr);
    const inspected = lapin(['inspect', 'merged.tar']);
    assert.equal(inspected.status, 0, inspected.stderr);
    assert.match(inspected.stdout, /^ {2}linux\/amd64: urunc 0\.8 can run it\n {2}linux\/arm64: urunc 0\.8 can run it$/m);
  });

  test('to a docker-registry, uploading the blobs it lacks', { skip: registrySkipReason() }, async () => {
    const registry: TestRegistry = await startRegistry('anonymous');
    try {
      const pushed = lapin(['imagetools', 'create', '-t', `${registry.host}/lapin/installed:1`, 'amd64.tar', 'oci:arm64']);
      assert.equal(pushed.status, 0, pushed.stderr);
      const index = (await skopeoInspect(`${registry.host}/lapin/installed:1`, '--raw')) as { manifests: Array<{ platform: { architecture: string } }> };
      assert.deepEqual(index.manifests.map((m) => m.platform.architecture), ['amd64', 'arm64']);
    } finally {
      await registry.stop();
    }
  });
});

// The same rule for every module, checked where it is cheap: no import() of a Node builtin in src/.
test('src/ has no dynamic import of a node: builtin (the start-up snapshot cannot load one)', async () => {
  const offenders: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.name.endsWith('.ts') && /\bimport\(\s*['"]node:/.test(await readFile(path, 'utf8'))) offenders.push(relative(ROOT, path));
    }
  };
  await walk(join(ROOT, 'src'));
  assert.deepEqual(offenders, []);
});
