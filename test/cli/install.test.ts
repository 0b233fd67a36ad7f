// lapin installed as a user installs it: `npm pack`, then `npm install -g
// --prefix DIR` of the tarball (no build at install: the package carries
// dist/), then `lapin` from DIR/bin builds the seed from another directory.
// The start-up snapshot is used when this Node made it and skipped otherwise.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
const FROM_SOURCE = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;
let prefix: string;
let lapinBin: string;
let packed: string[];

const npm = (args: string[], cwd: string): string => execFileSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' }, maxBuffer: 64 * 1024 * 1024 });

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin install '));
  // Packed from a copy of the checkout: `prepare` (tsc, the bundle and its snapshot) rebuilds
  // dist/, which other test files run meanwhile.
  const checkout = path.join(work, 'checkout');
  for (const entry of ['bin', 'src', 'scripts', 'docs', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md']) {
    await cp(path.join(ROOT, entry), path.join(checkout, entry), { recursive: true });
  }
  await symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'));
  const report = JSON.parse(npm(['pack', '--json', '--pack-destination', work], checkout)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const tarball = path.join(work, report[0]?.filename ?? '');
  packed = (report[0]?.files ?? []).map((f) => f.path);
  prefix = path.join(work, 'prefix');
  // Dependencies from npm's cache when it has them (npm ci filled it), else from the registry.
  npm(['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], work);
  lapinBin = path.join(prefix, 'bin', 'lapin');
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache'), ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm pack + npm install -g --prefix', { timeout: 600_000 }, () => {
  test('the tarball carries the built CLI, its snapshot and the man page, and no sources or tests', () => {
    for (const file of ['bin/lapin', 'dist/cli/main.js', 'dist/cli/lapin.blob', 'dist/cli/lapin.blob.id', 'dist/index.js', 'docs/lapin.1', 'package.json', 'README.md']) assert.ok(packed.includes(file), `${file} is not in the package`);
    assert.ok(!packed.some((file) => file.startsWith('src/') || file.startsWith('test/')), packed.filter((f) => /^(src|test)\//.test(f)).join(', '));
    assert.ok(existsSync(path.join(prefix, 'share/man/man1/lapin.1')), 'npm did not install the man page');
  });

  test('the installed lapin builds the seed from another directory, the same image as from source', async () => {
    const cwd = path.join(work, 'a project');
    await mkdir(cwd);
    await cp(EXAMPLE, path.join(cwd, 'seed'), { recursive: true });
    const args = ['build', '-q', '-t', 'urunc/prebuilt/network-mirage-hvt:test', '-f', 'seed/bunnyfile', '-o', 'network.tar', 'seed'];
    const installed = run(lapinBin, args, cwd);
    assert.equal(installed.status, 0, installed.stderr);
    const reference = run(process.execPath, [...FROM_SOURCE, ...args.slice(0, -3), '-o', 'ref.tar', 'seed'], cwd);
    assert.equal(reference.status, 0, reference.stderr);
    assert.equal(installed.stdout, reference.stdout);
    assert.deepEqual(await readFile(path.join(cwd, 'network.tar')), await readFile(path.join(cwd, 'ref.tar')));
    assert.equal(run(lapinBin, ['--version'], cwd).stdout, '0.1.0\n');
  });

  test('the snapshot is used when this Node made it, and skipped when another did', async () => {
    const cli = path.join(prefix, 'lib/node_modules/lapin/dist/cli');
    // npm pack sets every mtime to 1985: the launcher falls back to comparing node --version and uname -sm.
    const traced = run('sh', ['-x', lapinBin, '--version'], work);
    assert.equal(traced.status, 0, traced.stderr);
    assert.match(traced.stderr, /exec \S*node --snapshot-blob .+\/dist\/cli\/lapin\.blob -- --version$/m);
    const id = await readFile(path.join(cli, 'lapin.blob.id'), 'utf8');
    assert.equal(id, `${execFileSync(process.execPath, ['--version'], { encoding: 'utf8' }).trim()} ${execFileSync('uname', ['-sm'], { encoding: 'utf8' }).trim()}\n`);
    // Another Node's blob: the launcher must not start from it, and lapin still works.
    await writeFile(path.join(cli, 'lapin.blob.id'), 'v0.0.0 Plan9 mips\n');
    try {
      const other = run('sh', ['-x', lapinBin, 'build', '-q', '-f', path.join(EXAMPLE, 'bunnyfile'), '-o', 'other.tar', EXAMPLE], work);
      assert.equal(other.status, 0, other.stderr);
      assert.doesNotMatch(other.stderr, /--snapshot-blob/);
      assert.match(other.stderr, /exec node .+\/dist\/cli\/main\.js build /);
      assert.match(other.stdout, /^sha256:[0-9a-f]{64}\n$/);
    } finally {
      await writeFile(path.join(cli, 'lapin.blob.id'), id);
    }
  });
});
