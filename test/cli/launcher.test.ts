// bin/lapin, the installed command: it starts Node from the start-up
// snapshot that `npm run build` made (dist/cli/lapin.blob) when the Node on
// PATH made it, and from dist/cli/main.js otherwise. Both must behave like
// the CLI run from source. Needs `npm run build` first (scripts/test.sh does).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { registrySkipReason, startRegistry } from '../registry/harness.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
const LAUNCHER = path.join(ROOT, 'bin/lapin');
const BLOB = path.join(ROOT, 'dist/cli/lapin.blob');
const FROM_SOURCE = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const result = spawnSync(command, args, { cwd: work, env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache'), ...env }, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const launch = (args: string[], env: NodeJS.ProcessEnv = {}, launcher = LAUNCHER): Run => run(launcher, args, env);
const fromSource = (args: string[]): Run => run(process.execPath, [...FROM_SOURCE, ...args]);

/** A copy of the installed package (bin, dist, package.json) whose files a test may break. */
async function packageCopy(name: string): Promise<string> {
  const dir = path.join(work, name);
  await mkdir(dir);
  await cp(path.join(ROOT, 'bin'), path.join(dir, 'bin'), { recursive: true, preserveTimestamps: true });
  await cp(path.join(ROOT, 'dist'), path.join(dir, 'dist'), { recursive: true, preserveTimestamps: true });
  await cp(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'));
  return dir;
}

before(async () => {
  assert.ok(existsSync(path.join(ROOT, 'dist/cli/main.js')), 'dist/cli/main.js is missing: run npm run build first');
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-launcher-'));
});

describe('bin/lapin', () => {
  test('npm run build made a start-up snapshot for this Node', async () => {
    assert.ok(existsSync(BLOB), 'dist/cli/lapin.blob is missing');
    const madeBy = (await readFile(`${BLOB}.id`, 'utf8')).trim();
    assert.equal(madeBy, `${process.version} ${execFileSync('uname', ['-sm'], { encoding: 'utf8' }).trim()}`);
    const stamp = await stat(`${BLOB}.node`);
    assert.equal(stamp.mtimeMs, (await stat(await realpath(process.execPath))).mtimeMs, 'lapin.blob.node must carry the mtime of the Node that made the blob');
  });

  for (const [name, env] of [
    ['from the snapshot', {}],
    ['without it', { LAPIN_NO_SNAPSHOT: '1' }],
  ] as const) {
    test(`${name}: the same archives, output and exit codes as the CLI from source`, () => {
      for (const file of ['bunnyfile', 'Containerfile', 'args.nix']) {
        const args = (out: string) => ['build', '-q', '-f', path.join(EXAMPLE, file), '-t', 'lapin/launcher:test', '-o', out, EXAMPLE];
        const launched = launch(args(path.join(work, `launched-${file}.tar`)), env);
        const source = fromSource(args(path.join(work, `source-${file}.tar`)));
        assert.equal(launched.status, 0, launched.stderr);
        assert.equal(source.status, 0, source.stderr);
        assert.match(launched.stdout, /^sha256:[0-9a-f]{64}\n$/);
        assert.equal(launched.stdout, source.stdout, file);
      }
      assert.equal(launch(['--version'], env).stdout, '0.1.0\n');
      const usage = launch(['build', '--compression', 'lz4', EXAMPLE], env);
      assert.equal(usage.status, 2);
      assert.match(usage.stderr, /lz4/);
      // A definition file that is wrong is a build failure (exit 1), at its position; a missing one is a usage error (exit 2).
      const broken = path.join(work, 'broken Containerfile');
      writeFileSync(broken, 'FROM scratch\nFROBNICATE x\n');
      const failure = launch(['build', '-f', broken, EXAMPLE], env);
      assert.equal(failure.status, 1, failure.stderr);
      assert.match(failure.stderr, /broken Containerfile:2:1: /);
      assert.equal(launch(['build', '-f', path.join(work, 'missing.yaml'), EXAMPLE], env).status, 2);
      assert.equal(failure.stderr.trim().split('\n').length, 1, failure.stderr);
      assert.ok(!/^\s+at /m.test(failure.stderr), failure.stderr);
    });
  }

  // The bundle's undici chunk has only a default export: reading buildConnector off the module failed.
  test('without the snapshot: a push to a TLS registry with an extra CA and --insecure-registry', { skip: registrySkipReason() }, async () => {
    const registry = await startRegistry('tls');
    try {
      for (const [name, args, env] of [
        ['extra-ca', [], { NODE_EXTRA_CA_CERTS: registry.caFile }],
        ['insecure', ['--insecure-registry', registry.host], {}],
      ] as const) {
        const pushed = launch(['build', '-q', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', `${registry.host}/launcher/${name}:1`, '--push', ...args, EXAMPLE], { LAPIN_NO_SNAPSHOT: '1', ...env });
        assert.equal(pushed.status, 0, `${name}: ${pushed.stderr}`);
        assert.match(pushed.stdout, /^sha256:[0-9a-f]{64}\n$/);
      }
    } finally {
      await registry.stop();
    }
  });

  test('starts through a symlink, as npm links it into node_modules/.bin', async () => {
    const link = path.join(work, 'bin-link');
    await mkdir(link);
    await symlink(LAUNCHER, path.join(link, 'lapin'));
    const r = launch(['--version'], {}, path.join(link, 'lapin'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '0.1.0\n');
  });

  test('uses the blob only when this Node made it, and without NODE_OPTIONS', async () => {
    // A broken blob shows which way the launcher went: Node refuses it, main.js does not need it.
    const copy = await packageCopy('broken-blob');
    const launcher = path.join(copy, 'bin/lapin');
    const stamp = path.join(copy, 'dist/cli/lapin.blob.node');
    const id = path.join(copy, 'dist/cli/lapin.blob.id');
    await truncate(path.join(copy, 'dist/cli/lapin.blob'), 4096);
    const works = (env: NodeJS.ProcessEnv = {}): void => {
      const r = launch(['--version'], env, launcher);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '0.1.0\n');
    };
    const takesBlob = (why: string): void => assert.notEqual(launch(['--version'], {}, launcher).status, 0, why);

    takesBlob('the same Node (same modification time) must start from the blob');
    works({ NODE_OPTIONS: '--max-old-space-size=512' });
    works({ LAPIN_NO_SNAPSHOT: '1' });
    // Another modification time: the launcher asks node --version, which still matches.
    await utimes(stamp, new Date(0), new Date(0));
    takesBlob('a Node of the recorded version must start from the blob');
    // The same version on another machine (a published package), then another Node: neither matches.
    const system = execFileSync('uname', ['-sm'], { encoding: 'utf8' }).trim();
    await writeFile(id, `${process.version} ${system.replace(/\S+$/, 'sparc64')}\n`);
    works();
    await writeFile(id, `v0.0.1 ${system}\n`);
    works();
    await rm(stamp);
    works();
  });

  test('a build from the snapshot names its temporaries after its own pid, not the pid that made the snapshot', async () => {
    // The snapshot's warm-up builds run in another process; an owner tag kept from
    // them made every build's temporaries look orphaned to other builds' sweeps.
    const context = path.join(work, 'owner ctx');
    await mkdir(path.join(context, 'files'), { recursive: true });
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'network.hvt'));
    await writeFile(path.join(context, 'files/big'), Buffer.alloc(48 * 1024 * 1024, 7));
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms: {framework: linux, monitor: qemu, architecture: x86}\nkernel: {from: local, path: network.hvt}\nrootfs: {from: scratch, type: block, include: ["files/big:/big"]}\ncmd: ["/init"]\n');
    const tmp = path.join(work, 'owner tmp');
    await mkdir(tmp);
    const child = spawn(LAUNCHER, ['build', '-t', 'owner:1', '-o', path.join(work, 'owner.tar'), context], {
      env: { ...process.env, TMPDIR: tmp, LAPIN_CACHE_DIR: path.join(work, 'owner-cache') },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let seen: string | undefined;
    let done = false;
    void exited.then(() => (done = true));
    while (!done && seen === undefined) {
      seen = (await readdir(tmp)).find((name) => /^lapin-\d+-\d+-\d+-[0-9a-f]{12}$/.test(name));
      if (seen === undefined) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(await exited, 0);
    assert.ok(seen, 'the build made no staging directory in TMPDIR');
    assert.equal(Number(seen.split('-')[2]), child.pid, `staging directory ${seen} names another process`);
  });
});
