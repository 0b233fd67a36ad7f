// Issue 15 "Containerfile conventions": --target STAGE and the warning for a --build-arg no ARG consumes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { LapinError, UsageError } from '../../src/errors.js';
import { parseContainerfile } from '../../src/frontends/containerfile.js';
import { compile } from '../../src/frontends/index.js';

const FILE = 'Containerfile';
const STAGES = [
  'FROM scratch AS kernel',
  'COPY k /k',
  'LABEL com.urunc.unikernel.binary=/k',
  'FROM scratch AS Debug',
  'COPY --from=kernel /k /k',
  'LABEL com.urunc.unikernel.binary=/k com.urunc.unikernel.cmdline=debug',
  'FROM scratch',
  'RUN make',
  '',
].join('\n');

describe('--target', () => {
  test('the target stage becomes the image; later stages are not read', () => {
    const plan = parseContainerfile(STAGES, FILE, {}, { target: 'debug' });
    assert.deepEqual(plan.stages.map((stage) => stage.name), ['kernel']);
    assert.equal(plan.urunc.cmdline?.value, 'debug');
    assert.equal((plan.ops[0] as { fromStage?: string }).fromStage, 'kernel');
    const first = parseContainerfile(STAGES, FILE, {}, { target: 'kernel' });
    assert.deepEqual(first.stages, []);
    assert.equal(first.urunc.binary?.value, '/k');
    assert.equal(first.urunc.cmdline, undefined);
  });
  test('without --target the last stage is the image (and its RUN is refused)', () => {
    assert.throws(() => parseContainerfile(STAGES, FILE), /not supported: RUN/);
  });
  test('an unknown stage is a usage error listing the stages, with the one meant', () => {
    const error = (() => {
      try {
        parseContainerfile(STAGES, FILE, {}, { target: 'kernal' });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    assert.ok(error instanceof UsageError);
    assert.equal(error.exitCode, 2);
    assert.equal(error.describe(), '--target kernal: Containerfile has no stage named kernal (did you mean kernel? the stages are kernel, debug)');
    assert.throws(() => parseContainerfile('FROM scratch\n', FILE, {}, { target: 'x' }), (e: unknown) => e instanceof UsageError && /FROM <image> AS <name>/.test(e.hint ?? ''));
  });
  test('other syntaxes have no stages', async () => {
    await assert.rejects(compile('{ }', 'args.nix', 'nix', {}, { target: 'x' }), (e: unknown) => e instanceof UsageError && /a nix has no build stages/.test(e.message));
  });
});

describe('build-args no ARG consumes', () => {
  const text = 'ARG GLOBAL\nFROM scratch AS a\nARG USED=1\nFROM scratch\nARG LAST\n';
  test('are named in one warning, as docker does', () => {
    const plan = parseContainerfile(text, FILE, { USED: '2', GLOBAL: 'g', UNUSED: 'x', ALSO: 'y', LAST: 'z' });
    assert.deepEqual(plan.warnings, [{ message: 'one or more build-args [ALSO UNUSED] were not consumed: no ARG in Containerfile declares them' }]);
  });
  test("docker's predefined proxy and platform args are not warned about", () => {
    const plan = parseContainerfile(text, FILE, { HTTP_PROXY: 'p', no_proxy: 'q', TARGETPLATFORM: 'linux/amd64', BUILDARCH: 'amd64' });
    assert.deepEqual(plan.warnings, []);
  });
  test('an ARG only in a stage after --target does not consume', () => {
    const plan = parseContainerfile(text, FILE, { LAST: 'z' }, { target: 'a' });
    assert.match(plan.warnings?.[0]?.message ?? '', /\[LAST\]/);
  });
  test('a bunnyfile or args.nix consumes none', async () => {
    const plan = await compile('{ }', 'args.nix', 'nix', { X: '1', TARGETPLATFORM: 'linux/amd64' });
    assert.deepEqual(plan.warnings, [{ message: 'one or more build-args [X] were not consumed: a nix has no ARG' }]);
    assert.ok(!(plan instanceof LapinError));
  });
});

describe('lapin build --target and --build-arg (CLI)', () => {
  const CLI = ['--import', import.meta.resolve('tsx'), path.resolve('src/cli/main.ts')];
  test('--target picks the stage; an unused --build-arg is a warning; an unknown target exits 2', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'lapin target '));
    const context = path.join(dir, 'ctx');
    await mkdir(context);
    await writeFile(path.join(context, 'k'), 'kernel');
    await writeFile(
      path.join(context, 'Containerfile'),
      'FROM scratch AS unikernel\nARG V=1\nCOPY k /k\nLABEL com.urunc.unikernel.binary=/k com.urunc.unikernel.unikernelType=mirage com.urunc.unikernel.hypervisor=hvt\nFROM scratch\nRUN make\n',
    );
    const run = (...args: string[]) => spawnSync(process.execPath, [...CLI, 'build', ...args, context], { cwd: dir, encoding: 'utf8' });
    const built = run('--progress', 'plain', '--target', 'unikernel', '--build-arg', 'V=2', '--build-arg', 'NOPE=1', '-o', `type=oci,dest=${path.join(dir, 'out.tar')}`);
    assert.equal(built.status, 0, built.stderr);
    assert.match(built.stderr, /one or more build-args \[NOPE\] were not consumed/);
    const unknown = run('--target', 'unikernl', '-o', `type=oci,dest=${path.join(dir, 'no.tar')}`);
    assert.equal(unknown.status, 2, unknown.stderr);
    assert.match(unknown.stderr, /--target unikernl: ctx\/Containerfile has no stage named unikernl \(did you mean unikernel\? the stages are unikernel\)/);
  });
});
