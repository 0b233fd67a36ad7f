import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';

const ROOT = path.resolve('.');
const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
/** Runs the CLI from source, whatever the child's working directory. */
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-cli-'));
});

function lapin(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const result = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: options.cwd ?? work,
    env: { ...process.env, ...options.env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

function assertCleanError(stderr: string): void {
  const lines = stderr.trim().split('\n');
  assert.ok(lines.every((line) => !/^\s+at /.test(line)), `stack trace in:\n${stderr}`);
}

describe('lapin build (CLI)', () => {
  test('builds the seed, prints the digest with -q and writes buildx metadata', () => {
    const metadata = path.join(work, 'meta.json');
    const out = path.join(work, 'q.tar');
    const r = lapin(['build', '-q', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', 'urunc/prebuilt/network-mirage-hvt:test', '--output', `type=oci,dest=${out}`, '--metadata-file', metadata, EXAMPLE]);
    assert.equal(r.status, 0, r.stderr);
    const digest = r.stdout.toString().trim();
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    return readFile(metadata, 'utf8').then((text) => {
      const meta = JSON.parse(text);
      assert.equal(meta['containerimage.digest'], digest);
      assert.match(meta['containerimage.config.digest'], /^sha256:/);
      assert.equal(meta['image.name'], 'docker.io/urunc/prebuilt/network-mirage-hvt:test');
    });
  });

  test('dest=- writes the archive to stdout and messages to stderr', async () => {
    const file = path.join(work, 'ref.tar');
    const a = lapin(['build', '-f', path.join(EXAMPLE, 'args.nix'), '-o', `type=oci,dest=${file}`, EXAMPLE]);
    assert.equal(a.status, 0, a.stderr);
    const b = lapin(['build', '-f', path.join(EXAMPLE, 'args.nix'), '-o', 'dest=-', EXAMPLE]);
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(b.stdout, await readFile(file));
    assert.match(b.stderr, /digest sha256:/);
  });

  test('finds the definition file in the context when -f is absent', async () => {
    const context = await mkdtemp(path.join(work, 'ctx-'));
    await cp(path.join(EXAMPLE, 'network.hvt'), path.join(context, 'network.hvt'));
    await cp(path.join(EXAMPLE, 'args.nix'), path.join(context, 'args.nix'));
    const r = lapin(['build', context], { cwd: context });
    assert.equal(r.status, 0, r.stderr);
    assert.ok((await readdir(context)).includes('network-mirage-hvt-test.tar'));
  });

  const usage: Array<[string, string[], RegExp]> = [
    ['an unknown option', ['build', '--bogus'], /unknown option '--bogus'/],
    ['a bad --output', ['build', '--output', 'type=zip,dest=x'], /type=zip is not supported/],
    ['a bad tag', ['build', '-f', path.join(EXAMPLE, 'bunnyfile'), '-t', 'Bad:Name:x', EXAMPLE], /invalid image name/],
    ['a bad syntax name', ['build', '--syntax', 'yaml', EXAMPLE], /unknown syntax "yaml"/],
  ];
  for (const [what, args, message] of usage) {
    test(`${what} exits 2`, () => {
      const r = lapin(args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assertCleanError(r.stderr);
    });
  }

  const broken: Array<[string, string, RegExp]> = [
    ['bunnyfile', 'version: v0.1\nplatforms:\n  framework: mirage\n  monitor: [hvt\n', /^lapin: error: .*bunnyfile:\d+:\d+: /m],
    // (RUN goes to a builder when one is installed: test/builder/external.test.ts.)
    ['Containerfile', 'FROM scratch\nCOPY a\n', /^lapin: error: .*Containerfile:2:1: COPY needs a source and a destination/m],
    ['args.nix', '{\n  name = "x";\n  tag = "${y}";\n}\n', /^lapin: error: .*args\.nix:3:\d+: unsupported Nix construct/m],
  ];
  for (const [file, text, message] of broken) {
    test(`a broken ${file} gives one positioned line and exit 1`, async () => {
      const context = await mkdtemp(path.join(work, 'broken-'));
      await writeFile(path.join(context, file), text);
      const r = lapin(['build', context]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, message);
      assertCleanError(r.stderr);
      assert.deepEqual(await readdir(context), [file]);
    });
  }

  /** Runs the CLI with stdout and stderr pipes whose reading ends close at once, as `| head -0` does. */
  async function lapinIntoClosedPipes(args: string[], cwd: string): Promise<number | null> {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    child.stderr.destroy();
    return new Promise((resolve) => child.on('exit', (code, signal) => resolve(signal ? -1 : code)));
  }

  test('a closed stderr or stdout (| head -1) ends the messages, not the build: the archive is whole, no temporary is left', async () => {
    const context = await mkdtemp(path.join(work, 'pipe-'));
    await cp(EXAMPLE, context, { recursive: true });
    const reference = lapin(['build', '--no-cache', '-o', 'type=oci,dest=ref.tar', '.'], { cwd: context });
    assert.equal(reference.status, 0, reference.stderr);
    assert.equal(await lapinIntoClosedPipes(['build', '--no-cache', '--progress', 'plain', '-o', 'type=oci,dest=piped.tar', '.'], context), 0);
    assert.deepEqual(await readFile(path.join(context, 'piped.tar')), await readFile(path.join(context, 'ref.tar')));
    assert.equal(await lapinIntoClosedPipes(['build', '-q', '--no-cache', '-o', 'type=oci,dest=quiet.tar', '.'], context), 0);
    assert.deepEqual(await readFile(path.join(context, 'quiet.tar')), await readFile(path.join(context, 'ref.tar')));
    // inspect's verdict is still its exit code.
    assert.equal(await lapinIntoClosedPipes(['inspect', 'ref.tar'], context), lapin(['inspect', 'ref.tar'], { cwd: context }).status);
    assert.deepEqual((await readdir(context)).filter((n) => n.includes('.lapin-tmp-')), []);
  });

  test('SIGTERM during a build removes partial output', async () => {
    const context = await mkdtemp(path.join(work, 'sig-'));
    await writeFile(path.join(context, 'kernel'), randomBytes(96 * 1024 * 1024));
    await writeFile(path.join(context, 'bunnyfile'), 'version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel\n');
    const tmpBefore = new Set(await readdir(os.tmpdir()));
    const child = spawn(process.execPath, [...CLI, 'build', '--compression-level', '9', '-o', 'type=oci,dest=out.tar', '.'], { cwd: context });
    // 143, or death by SIGTERM itself when a thread-pool request was in flight (the shell sees 143 either way).
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c, signal) => resolve(signal === 'SIGTERM' ? 143 : c)));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // Kill once the archive's temporary file exists, i.e. mid-write (a fixed delay raced fast builds).
    while (!(await readdir(context)).some((n) => n.includes('.lapin-tmp-')) && child.exitCode === null) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    child.kill('SIGTERM');
    const code = await exited;
    assert.equal(code, 143, stderr);
    assert.deepEqual((await readdir(context)).sort(), ['bunnyfile', 'kernel']);
    const leftovers = (await readdir(os.tmpdir())).filter((n) => !tmpBefore.has(n) && n.startsWith(`lapin-${child.pid}-`));
    assert.deepEqual(leftovers, []);
  });
});
