// .dockerignore in builds: COPY and ADD see what BuildKit's context would hold. The documented
// examples are built by lapin and by docker build (the services' dockerd) and must copy the same files.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { build, LapinError } from '../../src/index.js';
import { dockerFiles, fileTreeFromDir, requireConsumers, servicesEnv, uniqueName } from '../consumers/harness.js';
import { runProgram } from '../helpers/fixtures.js';

const FILES = [
  'README.md', 'README-secret.md', 'CHANGES.md', 'docs/guide.md', 'main.go', 'a/b/c.go', 'somedir/temporary.txt',
  'somedir/temp/x', 'somedir/subdir/temporary.txt', 'tempa', 'tempb', 'temp', 'foo/bar/baz', 'foo/barista', 'kernel',
];

/** The documented examples (docs.docker.com, "dockerignore files"), one context each. */
const EXAMPLES = [
  '# comment\n*/temp*\n*/*/temp*\ntemp?\n',
  '**/*.go\n',
  '*.md\n!README.md\n',
  '*.md\n!README*.md\nREADME-secret.md\n',
  '*.md\nREADME-secret.md\n!README*.md\n',
  '/foo/bar/\n',
  'docs\nsomedir\n!somedir/temp\n',
];

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin dockerignore '));
});

async function context(name: string, ignore: Record<string, string>, file = 'FROM scratch\nCOPY . /ctx/\n'): Promise<string> {
  const dir = path.join(work, name);
  await rm(dir, { recursive: true, force: true });
  for (const relative of FILES) {
    await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await writeFile(path.join(dir, relative), relative);
  }
  await writeFile(path.join(dir, 'Dockerfile'), file);
  for (const [where, text] of Object.entries(ignore)) {
    await mkdir(path.dirname(path.join(dir, where)), { recursive: true });
    await writeFile(path.join(dir, where), text);
  }
  return dir;
}

/**
 * A Containerfile without urunc labels is a Linux guest that pulls bunny's urunit and kernel
 * images (src/plan/linux-guest.ts); these contexts only test what COPY sees, so they name a
 * binary and leave the init out.
 */
const NO_GUEST_IMAGES = { labels: { 'bunny.urunit': 'false', 'com.urunc.unikernel.binary': '/ctx/kernel' } };

/** The files lapin copies under /ctx, as sorted paths. */
async function lapinCopies(dir: string, extra: Parameters<typeof build>[0] = {}): Promise<string[]> {
  const dest = path.join(work, uniqueName('local'));
  await build({ context: dir, cwd: dir, uruncChecks: 'warn', outputs: [{ type: 'local', dest }], ...NO_GUEST_IMAGES, ...extra });
  return (await fileTreeFromDir(path.join(dest, 'ctx'))).paths();
}

describe('.dockerignore in lapin builds', () => {
  test('an excluded file named by COPY is an error at the COPY, naming the ignore file', async () => {
    const dir = await context('named', { '.dockerignore': 'kernel\n' }, 'FROM scratch\nCOPY kernel /k\n');
    await assert.rejects(build({ context: dir, cwd: dir, uruncChecks: 'warn', outputs: [{ type: 'local', dest: path.join(work, 'named-out') }], ...NO_GUEST_IMAGES }), (error: unknown) => {
      assert.ok(error instanceof LapinError);
      assert.equal(error.describe(), 'Dockerfile:2:1: "kernel" is excluded from the build context by .dockerignore (remove its pattern from .dockerignore, or add an exception !kernel)');
      return true;
    });
  });
  test('globs do not match excluded files', async () => {
    const dir = await context('glob', { '.dockerignore': 'README-*\n' }, 'FROM scratch\nCOPY README* /ctx/\n');
    assert.deepEqual(await lapinCopies(dir), ['/README.md']);
  });
  test('<file>.dockerignore beside the definition file wins over the context root .dockerignore', async () => {
    const dir = await context('beside', { '.dockerignore': '*.md\n', 'build/Dockerfile.dockerignore': 'foo\nsomedir\n' });
    await writeFile(path.join(dir, 'build', 'Dockerfile'), 'FROM scratch\nCOPY . /ctx/\n');
    const copied = await lapinCopies(dir, { file: path.join(dir, 'build', 'Dockerfile') });
    assert.ok(copied.includes('/README.md') && !copied.some((p) => p.startsWith('/foo') || p.startsWith('/somedir')), copied.join(' '));
    assert.ok(copied.includes('/build/Dockerfile.dockerignore'));
    // Without its own ignore file the root one applies.
    const root = await lapinCopies(dir, { file: path.join(dir, 'Dockerfile') });
    assert.ok(!root.includes('/README.md') && root.includes('/docs/guide.md') && root.includes('/foo/bar/baz'), root.join(' '));
  });
  test('a .dockerignore symlink resolves inside the context, never out of it', async () => {
    const outside = path.join(work, 'outside-ignore');
    await writeFile(outside, '[secret-outside\n');
    const dir = await context('symlink-out', {});
    await writeFile(path.join(dir, 'inside-ignore'), '*.md\n');
    // An absolute target is read from the context root, as BuildKit resolves context symlinks.
    await symlink(outside, path.join(dir, '.dockerignore'));
    const copied = await lapinCopies(dir);
    assert.ok(copied.includes('/README.md'), copied.join(' '));
    await rm(path.join(dir, '.dockerignore'));
    await symlink('inside-ignore', path.join(dir, '.dockerignore'));
    assert.ok(!(await lapinCopies(dir)).includes('/README.md'));
  });
  test('a bad pattern stops the build at its line', async () => {
    const dir = await context('bad', { '.dockerignore': 'ok\n[z-\n' });
    await assert.rejects(lapinCopies(dir), (error: unknown) => error instanceof LapinError && error.describe().startsWith('.dockerignore:2:1: bad pattern "[z-"'));
  });
});

describe('.dockerignore: lapin copies what docker build copies', { skip: requireConsumers(['docker']) }, () => {
  for (const [index, text] of EXAMPLES.entries()) {
    test(`example ${index + 1}: ${JSON.stringify(text)}`, async () => {
      const dir = await context(`example-${index}`, { '.dockerignore': text });
      const tag = `${uniqueName('lapin-ignore')}:1`;
      const env = { DOCKER_HOST: servicesEnv().dockerHost, DOCKER_BUILDKIT: '0' };
      const built = await runProgram(servicesEnv().dockerBin, ['build', '-q', '-t', tag, dir], { env });
      assert.equal(built.status, 0, built.stderr);
      try {
        const docker = (await dockerFiles(tag)).paths().filter((p) => p.startsWith('/ctx/')).map((p) => p.slice('/ctx'.length));
        assert.deepEqual(await lapinCopies(dir), docker);
      } finally {
        await runProgram(servicesEnv().dockerBin, ['rmi', '-f', tag], { env });
      }
    });
  }
});
