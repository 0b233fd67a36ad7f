// The command line as buildx users meet it: help that lists every output
// type, argument errors in lapin's one format (exit 2), output file-system
// errors as one sentence naming the output, --progress plain and rawjson,
// and one line for a cache hit.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { shellWord } from '../../src/image/copy.js';

const ROOT = path.resolve('.');
const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
let work: string;
const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin usage '));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, LAPIN_CACHE_DIR: path.join(work, 'cache') } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const seed = ['-f', path.join(EXAMPLE, 'bunnyfile'), '-t', 'urunc/prebuilt/network-mirage-hvt:test'];

describe('help', () => {
  test('build --help lists every -o type and shows --load taking an optional engine', () => {
    const r = lapin(['build', '--help']);
    assert.equal(r.status, 0, r.stderr);
    const help = r.stdout.replace(/\s+/g, ' ');
    for (const type of ['type=oci', 'docker', 'local', 'type=registry', 'type=image']) assert.ok(help.includes(type), `--help lacks ${type}:\n${r.stdout}`);
    assert.match(help, /--load \[engine\]/);
    assert.match(help, /--progress <mode> auto .*tty.*plain.*quiet.*rawjson/);
  });
});

describe('argument errors', () => {
  for (const [args, line] of [
    [['build', '--tga', 'x'], "lapin: error: unknown option '--tga' (did you mean --tag?)"],
    [['biuld'], "lapin: error: unknown command 'biuld' (did you mean build?)"],
    // commander's "option '--progress <mode>' argument 'fancy' is invalid. Allowed choices are ... (run with --help for usage)".
    [['build', '--progress', 'fancy'], 'lapin: error: --progress "fancy" is invalid (use one of auto, tty, plain, quiet, rawjson)'],
    [['run', '--memory', '1x', 'x.tar'], 'lapin: error: --memory "1x" is invalid (give megabytes, e.g. 256, 512M or 1G)'],
    [['inspect', '--urunc-version', '0.9', 'x.tar'], 'lapin: error: --urunc-version "0.9" is invalid (lapin knows urunc 0.8, 0.7 and pre-0.7, also written as versions such as v0.7.0 or 0.5.0)'],
    [['build', '-t'], 'lapin: error: -t, --tag needs a value (--tag <name>)'],
    // What docker and skopeo users type for what lapin does in a build.
    [['push'], "lapin: error: unknown command 'push' (lapin build --push pushes as it builds; skopeo copy oci-archive:FILE docker://NAME pushes an archive)"],
    [['version'], "lapin: error: unknown command 'version' (lapin --version prints it)"],
    [['inspect'], "lapin: error: missing required argument 'source' (run with --help for usage)"],
    // What a new user gets wrong first: where the definition file and the context are.
    [['build', '-f', 'nope'], 'lapin: error: definition file nope not found (check the -f path; it is relative to the current directory)'],
    // docker build's habit: -f named as if relative to the context; the file there is named.
    [['build', '-f', 'bunnyfile', EXAMPLE], `lapin: error: definition file bunnyfile not found (it is relative to the current directory, not to the context: did you mean -f ${path.join(EXAMPLE, 'bunnyfile')}?)`],
    [['build', '-f', '.', EXAMPLE], 'lapin: error: definition file . is not a file (pass the bunnyfile, Containerfile or args.nix itself to -f, and its directory as the context)'],
    [['build'], "lapin: error: no bunnyfile, Containerfile, Dockerfile, args.nix in CWD (pass the directory that holds it as the context, as in lapin build DIR, or name the file with -f FILE)"],
    [['build', '-f', path.join(EXAMPLE, 'bunnyfile'), 'no-such-dir'], 'lapin: error: build context CWD/no-such-dir does not exist (pass the directory that holds the files the definition names, e.g. lapin build -f DIR/bunnyfile DIR)'],
  ] as const) {
    test(`lapin ${args.join(' ')}: one line, lapin's format, exit 2`, () => {
      const r = lapin([...args]);
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr, `${line.replace('CWD', work)}\n`);
    });
  }
});

describe('odd definition files and values', () => {
  test('a FIFO named Containerfile in the context is named as not a regular file (it was "no Containerfile"), exit 2, nothing read from it', async () => {
    const dir = await mkdtemp(path.join(work, 'fifo '));
    execFileSync('mkfifo', [path.join(dir, 'Containerfile')]);
    const r = lapin(['build', '-o', path.join(dir, 'out.tar'), dir]);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr, `lapin: error: ${path.relative(work, path.join(dir, 'Containerfile'))} is not a regular file (replace it with the definition file itself, or name another file with -f FILE)\n`);
  });

  test('a file whose name says one syntax and whose text is another: the error names the syntax its text reads as', async () => {
    const dir = await mkdtemp(path.join(work, 'misnamed '));
    const cases = [
      ['build.yaml', 'Containerfile', 'the bunnyfile must be a mapping of keys to values', 'a bunnyfile', 'a Containerfile: pass --syntax containerfile'],
      ['Dockerfile.unikernel', 'bunnyfile', 'unknown instruction: version:', 'a Containerfile', 'a bunnyfile: pass --syntax bunnyfile'],
      ['bunny.yml', 'args.nix', 'YAML syntax error: Missing , or : between flow map items', 'a bunnyfile', 'an args.nix: pass --syntax nix'],
    ] as const;
    for (const [name, source, message, read, text] of cases) {
      await writeFile(path.join(dir, name), execFileSync('cat', [path.join(EXAMPLE, source)]));
      const r = lapin(['build', '-f', path.join(dir, name), '-o', path.join(dir, 'x.tar'), EXAMPLE]);
      assert.equal(r.status, 1, r.stderr);
      const shown = path.relative(work, path.join(dir, name));
      assert.match(r.stderr, new RegExp(`^lapin: error: ${escapeRegExp(shown)}:\\d+:\\d+: ${escapeRegExp(message)} \\(${escapeRegExp(shown)} was read as ${read} for its name, but its text reads as ${escapeRegExp(text)}\\)\n$`), r.stderr);
    }
    const forced = lapin(['build', '-f', path.join(dir, 'build.yaml'), '--syntax', 'containerfile', '-o', path.join(dir, 'x.tar'), EXAMPLE]);
    assert.equal(forced.status, 0, forced.stderr);
  });

  test('-f DIR/FILE without DIR as the context (docker build\'s slip): a file beside the definition is named, with the command that builds it', () => {
    const file = path.join(EXAMPLE, 'bunnyfile');
    const r = lapin(['build', '-f', file, '-o', 'slip.tar']);
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('lapin:')).join('\n'), `lapin: error: ${file}:11:9: "network.hvt" not found in the build context ${work} (paths are relative to the context, and this one is beside the definition file: pass its directory as the context, lapin build -f ${shellWord(file)} ${shellWord(EXAMPLE)})`);
    // A path found nowhere keeps the plain hint.
    const dir = path.join(work, 'elsewhere');
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('sh', ['-c', `sed 's/network.hvt/nothere.hvt/' '${file}' > '${dir}/bunnyfile'`]);
    const nowhere = lapin(['build', '-f', path.join(dir, 'bunnyfile'), '-o', 'slip.tar', EXAMPLE]);
    assert.equal(nowhere.status, 1, nowhere.stderr);
    assert.match(nowhere.stderr, /"nothere\.hvt" not found in the build context .* \(check the path; it is relative to the context, not to the definition file\)$/m);
  });

  test("--platform '' is shown quoted, not as a blank", () => {
    const r = lapin(['build', '--platform', '', '-o', path.join(work, 'x.tar'), EXAMPLE]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^lapin: error: unsupported platform "" \(lapin builds linux\/amd64 and linux\/arm64/);
  });
});

describe('pull errors', () => {
  test('a registry host that does not resolve: the FROM position, the name and what to check', async () => {
    const dir = await mkdtemp(path.join(work, 'pull-'));
    await writeFile(path.join(dir, 'Containerfile'), 'FROM no-such-host.invalid/app:1\n');
    const r = lapin(['build', '-o', path.join(dir, 'out.tar'), dir]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^lapin: error: .*Containerfile:1:6: cannot pull no-such-host\.invalid\/app:1: cannot resolve the registry host no-such-host\.invalid \(check the image name, and this machine's DNS and network\)$/m);
  });
});

describe('output errors', () => {
  test('-o /proc/x.tar: one sentence naming the output as given, no temporary name, no errno text', () => {
    const r = lapin(['build', ...seed, '-o', '/proc/x.tar', EXAMPLE]);
    assert.equal(r.status, 1, r.stderr);
    const last = r.stderr.trim().split('\n').at(-1) ?? '';
    assert.equal(last, 'lapin: error: cannot write /proc/x.tar: its directory does not exist or does not take new files (choose a writable place)');
    assert.doesNotMatch(r.stderr, /lapin-tmp|ENOENT/);
  });

  test('--metadata-file in a read-only place is named the same way', () => {
    const r = lapin(['build', ...seed, '-o', 'seed.tar', '--metadata-file', '/proc/meta.json', EXAMPLE]);
    assert.equal(r.status, 1, r.stderr);
    // The image was written: the message says so and where (test/build-safety.test.ts).
    assert.match(r.stderr, /^lapin: error: cannot write the metadata file \/proc\/meta\.json \(no such directory\); the image itself is complete: /m);
    assert.doesNotMatch(r.stderr, /ENOENT|lapin-tmp/);
  });

  test('a relative output in a missing directory is named as given', () => {
    const output = lapin(['build', ...seed, '-o', 'no-such-dir/seed2.tar', EXAMPLE]);
    assert.notEqual(output.status, 0, output.stderr);
    assert.match(output.stderr.trim().split('\n').at(-1) ?? '', /^lapin: error: cannot write no-such-dir\/seed2\.tar: /);
    assert.doesNotMatch(output.stderr, /ENOENT|lapin-tmp/);
    const metadata = lapin(['build', ...seed, '-o', 'seed2.tar', '--metadata-file', 'no-such-dir/meta.json', EXAMPLE]);
    assert.equal(metadata.status, 1, metadata.stderr);
    assert.equal(metadata.stderr, `lapin: error: cannot write the metadata file no-such-dir/meta.json: ${path.join(work, 'no-such-dir')} does not exist (create it first)\n`);
  });
});

describe('--progress', () => {
  test('plain prints each step with its duration; a cache hit is one line', () => {
    const first = lapin(['build', ...seed, '--progress', 'plain', '-o', 'hit.tar', EXAMPLE]);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /^=> layer kernel: sha256:[0-9a-f]{64} \(189 B(, cached)?\) \[\d+\.\ds\]$/m);
    assert.match(first.stderr, /^=> wrote oci archive to hit\.tar \[\d+\.\ds\]$/m);
    const again = lapin(['build', ...seed, '--progress', 'plain', '-o', 'hit.tar', EXAMPLE]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /^=> hit\.tar already holds this image, unchanged since lapin wrote it \[/m);
    assert.doesNotMatch(again.stderr, /wrote oci archive/);
  });

  test('rawjson prints one JSON event a line, ending with the result (docs/progress.md)', () => {
    const r = lapin(['build', ...seed, '--progress', 'rawjson', '-o', 'json.tar', EXAMPLE]);
    assert.equal(r.status, 0, r.stderr);
    const events = r.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const event of events) {
      assert.match(String(event.time), /^\d{4}-\d\d-\d\dT/);
      assert.ok(['step', 'warning', 'begin', 'end', 'progress', 'result', 'error'].includes(String(event.kind)), JSON.stringify(event));
    }
    assert.ok(events.some((e) => e.kind === 'step' && String(e.message).startsWith('read ')));
    const begin = events.find((e) => e.kind === 'begin');
    assert.ok(begin && events.some((e) => e.kind === 'end' && e.id === begin.id && typeof e.seconds === 'number'));
    const result = events.at(-1) as Record<string, unknown>;
    assert.equal(result.kind, 'result');
    assert.match(String(result.digest), /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(result.names, ['docker.io/urunc/prebuilt/network-mirage-hvt:test']);
  });

  test('rawjson reports a failure as an error event with its exit code', () => {
    const r = lapin(['build', ...seed, '--progress', 'rawjson', '-o', '/proc/x.tar', EXAMPLE]);
    assert.equal(r.status, 1, r.stderr);
    const last = JSON.parse(r.stderr.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
    assert.deepEqual({ kind: last.kind, exitCode: last.exitCode }, { kind: 'error', exitCode: 1 });
    assert.match(String(last.message), /^cannot write \/proc\/x\.tar: /);
  });
});
