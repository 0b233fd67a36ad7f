// --platform as docker buildx reads it (containerd's platforms.Parse, then
// Normalize): a lone architecture is on linux, aarch64 is arm64, x86_64 is
// amd64, arm64/v8 is arm64, any case. `lapin build` and `lapin run` take
// every such form through pipeline/platform.ts and give the frontends the
// normalized one, so TARGETARCH is "arm64" for `--platform aarch64`.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { platformArgs } from '../../src/frontends/platform-args.js';
import { buildArchitecture, checkPlatformList, formatPlatform, hostArchitecture, parsePlatform, samePlatform, splitPlatforms } from '../../src/pipeline/platform.js';
import { openPlatformSource } from '../../src/source/image-index.js';
import { readArchive } from '../helpers/archive.js';
import { runProgram, type ProgramResult } from '../helpers/fixtures.js';
import { handIndex, unikraftImage, writeIndexLayout, writePerPlatformContext } from '../helpers/hand-index.js';

const parsed = (text: string): string | undefined => {
  const platform = parsePlatform(text);
  return platform === undefined ? undefined : formatPlatform(platform);
};

describe('parsePlatform: containerd platforms.Parse + Normalize', () => {
  test('the forms buildx takes, normalized as buildx does', () => {
    const host = `linux/${hostArchitecture()}`;
    const cases: Array<[string, string | undefined]> = [
      ['arm64', 'linux/arm64'],
      ['aarch64', 'linux/arm64'],
      ['x86_64', 'linux/amd64'],
      ['x86-64', 'linux/amd64'],
      ['amd64', 'linux/amd64'],
      ['AARCH64', 'linux/arm64'],
      ['linux/aarch64', 'linux/arm64'],
      ['linux/x86_64', 'linux/amd64'],
      ['Linux/X86_64', 'linux/amd64'],
      ['linux/arm64/v8', 'linux/arm64'],
      ['linux/arm64/8', 'linux/arm64'],
      ['linux/arm64/v8.0', 'linux/arm64'],
      ['linux/aarch64/v8', 'linux/arm64'],
      ['linux/arm64/9', 'linux/arm64/v9'],
      ['linux/amd64/v1', 'linux/amd64'],
      ['linux/amd64/v3', 'linux/amd64/v3'],
      ['linux/arm', 'linux/arm/v7'],
      ['armhf', 'linux/arm/v7'],
      ['linux/armel', 'linux/arm/v6'],
      ['linux/i386', 'linux/386'],
      ['macos/arm64', 'darwin/arm64'],
      ['riscv64', 'linux/riscv64'],
      ['linux', host],
      ['local', host],
      ['LOCAL', host],
      // Not a platform: an unknown lone word, too many parts, empty parts, path tricks.
      ['pentium', undefined],
      ['linux/arm64/v8/x', undefined],
      ['linux/', undefined],
      ['/arm64', undefined],
      ['', undefined],
      ['../../x', undefined],
      ['linux/arm64 x', undefined],
      ['linux/*', undefined],
    ];
    for (const [text, want] of cases) assert.equal(parsed(text), want, text);
  });

  test('what lapin builds: linux/amd64 and linux/arm64 in any form; nothing else', () => {
    for (const text of ['amd64', 'x86_64', 'X86-64', 'linux/amd64/v1', 'LINUX/AMD64']) assert.equal(buildArchitecture(text), 'amd64', text);
    for (const text of ['arm64', 'aarch64', 'linux/aarch64', 'linux/arm64/v8', 'Linux/ARM64/8']) assert.equal(buildArchitecture(text), 'arm64', text);
    for (const text of ['linux/arm/v7', 'linux/riscv64', 'darwin/arm64', 'linux/arm64/v9', 'linux/amd64/v2', 'windows/amd64', 'linux/arm64/v8/x']) assert.equal(buildArchitecture(text), undefined, text);
  });

  test('lists are normalized; one platform in two spellings is named twice', () => {
    assert.deepEqual(splitPlatforms('x86_64, AARCH64'), ['linux/amd64', 'linux/arm64']);
    assert.throws(() => checkPlatformList(['arm64', 'linux/aarch64']), /--platform names linux\/arm64 twice \(arm64 and linux\/aarch64\)/);
    assert.throws(() => splitPlatforms('linux/amd64,linux/s390x'), (error: Error & { hint?: string }) => /^unsupported platform linux\/s390x$/.test(error.message) && /lapin builds linux\/amd64 and linux\/arm64/.test(error.hint ?? ''));
  });

  test('property: normalizing is idempotent, case-blind, and what the frontends give as TARGETPLATFORM', () => {
    const word = (choices: string[]) => fc.constantFrom(...choices).chain((w) => fc.array(fc.boolean(), { minLength: w.length, maxLength: w.length }).map((ups) => [...w].map((c, i) => (ups[i] ? c.toUpperCase() : c)).join('')));
    const text = fc.oneof(
      word(['amd64', 'x86_64', 'x86-64', 'arm64', 'aarch64', 'arm', 'armhf', 'riscv64', 'i386', 'local', 'linux']),
      fc.tuple(word(['linux', 'macos', 'windows']), word(['amd64', 'x86_64', 'aarch64', 'arm64', 'arm', 'armel', 's390x'])).map(([o, a]) => `${o}/${a}`),
      fc.tuple(word(['linux']), word(['amd64', 'x86_64', 'aarch64', 'arm64', 'arm']), word(['v1', 'v2', 'v7', 'v8', '8', 'v8.0', '9', 'v9.0', 'v5'])).map(([o, a, v]) => `${o}/${a}/${v}`),
    );
    fc.assert(
      fc.property(text, (t) => {
        const once = parsed(t);
        assert.ok(once !== undefined, t);
        assert.equal(parsed(once), once, `${t} → ${once}`);
        assert.equal(parsed(t.toLowerCase()), once);
        assert.equal(parsed(t.toUpperCase()), once);
        assert.ok(samePlatform(parsePlatform(t)!, parsePlatform(once)!));
        // The frontends take the normalized value, and give it back as BuildKit does.
        const args = platformArgs({ platform: once });
        const p = parsePlatform(once)!;
        assert.equal(args.get('TARGETPLATFORM'), once);
        assert.equal(args.get('TARGETARCH'), p.architecture);
        assert.equal(args.get('TARGETVARIANT'), p.variant ?? '');
      }),
      { numRuns: 300 },
    );
  });
});

describe('lapin build and run take what buildx takes', () => {
  const ROOT = path.resolve('.');
  const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
  let work: string;
  let context: string;
  const lapin = (args: string[]): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, ...args], { cwd: work });

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'lapin platform forms '));
    context = path.join(work, 'context');
    await writePerPlatformContext(context);
    const file = path.join(context, 'Containerfile');
    await writeFile(file, `${await readFile(file, 'utf8')}ARG TARGETPLATFORM\nARG TARGETVARIANT\nLABEL target.platform=\${TARGETPLATFORM} target.arch=\${TARGETARCH} target.variant=x\${TARGETVARIANT}\n`);
  });
  after(() => rm(work, { recursive: true, force: true }));

  const configOf = async (archive: string, manifestDigest?: string): Promise<{ architecture: string; variant?: string; config: { Labels: Record<string, string> } }> => {
    const read = await readArchive(archive);
    const digest = manifestDigest ?? (JSON.parse(read.text('index.json')) as { manifests: Array<{ digest: string }> }).manifests[0]!.digest;
    const manifest = JSON.parse(read.blob(digest).toString('utf8')) as { config: { digest: string } };
    return JSON.parse(read.blob(manifest.config.digest).toString('utf8')) as { architecture: string; variant?: string; config: { Labels: Record<string, string> } };
  };

  test('--platform aarch64 builds linux/arm64, with TARGETARCH arm64 and the arm64 kernel', async () => {
    for (const given of ['aarch64', 'ARM64', 'linux/arm64/v8']) {
      const out = path.join(work, `one-${given.replaceAll('/', '-')}.tar`);
      const result = await lapin(['build', '--platform', given, '-o', `type=oci,dest=${out}`, context]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stderr, /^=> built \(no name\) for linux\/arm64$/m, given);
      const config = await configOf(out);
      assert.equal(config.architecture, 'arm64', given);
      assert.equal(config.variant, undefined, given);
      assert.deepEqual([config.config.Labels['target.platform'], config.config.Labels['target.arch'], config.config.Labels['target.variant']], ['linux/arm64', 'arm64', 'x'], given);
    }
  });

  test('--platform x86_64,linux/aarch64 builds an index of linux/amd64 and linux/arm64', async () => {
    const out = path.join(work, 'both.tar');
    const result = await lapin(['build', '--platform', 'x86_64,linux/aarch64', '-o', `type=oci,dest=${out}`, context]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stderr, /built index sha256:[0-9a-f]{64} \(linux\/amd64, linux\/arm64\)/);
    const read = await readArchive(out);
    const top = JSON.parse(read.text('index.json')) as { manifests: Array<{ digest: string }> };
    const index = JSON.parse(read.blob(top.manifests[0]!.digest).toString('utf8')) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
    assert.deepEqual(index.manifests.map((m) => m.platform), [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
    for (const entry of index.manifests) {
      const labels = (await configOf(out, entry.digest)).config.Labels;
      assert.equal(labels['target.arch'], entry.platform.architecture);
    }
  });

  test('what lapin cannot build is one line and exit 2, naming what it takes', async () => {
    for (const given of ['linux/riscv64', 'arm', 'linux/amd64,linux/s390x', 'pentium']) {
      const result = await lapin(['build', '--platform', given, '-o', `type=oci,dest=${path.join(work, 'never.tar')}`, context]);
      assert.equal(result.status, 2, `${given}: ${result.stderr}`);
      assert.match(result.stderr, /^lapin: error: unsupported platform [^ ]+ \(lapin builds linux\/amd64 and linux\/arm64, in any form buildx takes: .*\)\n$/, given);
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    }
    const twice = await lapin(['build', '--platform', 'arm64,aarch64', '-o', `type=oci,dest=${path.join(work, 'never.tar')}`, context]);
    assert.equal(twice.status, 2, twice.stderr);
    assert.match(twice.stderr, /--platform names linux\/arm64 twice \(arm64 and aarch64\)/);
  });

  test('run --platform (the image of an index) takes the same forms', async () => {
    const dir = path.join(work, 'layout');
    await writeIndexLayout(dir, await handIndex([unikraftImage('amd64'), unikraftImage('arm64')]));
    for (const [given, want] of [['aarch64', 'arm64'], ['LINUX/ARM64/8', 'arm64'], ['x86-64', 'amd64'], ['linux/x86_64/v1', 'amd64']] as const) {
      const source = await openPlatformSource(`oci:${dir}`, given);
      try {
        assert.equal((await source.config()).config.architecture, want, given);
      } finally {
        await source.close();
      }
    }
  });
});
