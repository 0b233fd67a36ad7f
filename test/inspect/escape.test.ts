// What an image or a registry controls never reaches the terminal raw: an
// image must not be able to clear the screen and forge lapin's verdict.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { escapeLine, escapeTerminalText } from '../../src/text.js';
import { fakeElfKernel, writeOciArchive } from '../helpers/hand-image.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-escape-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

// C0 but tab and newline, DEL, C1, and the format characters that reorder or hide text.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]/u;

describe('escaping what the input controls', () => {
  test('escapeLine leaves no control or bidi character, and one line stays one line', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const line = escapeLine(text);
        assert.doesNotMatch(line, UNSAFE);
        assert.ok(!line.includes('\n'));
        assert.doesNotMatch(escapeTerminalText(text), UNSAFE);
      }),
      { numRuns: 500 },
    );
    assert.equal(escapeLine('a\x1b[2Jb\u202e\n'), 'a\\x1b[2Jb\\u{202e}\\n');
    assert.equal(escapeLine('plain ünïcode'), 'plain ünïcode');
  });

  test('annotation and label keys, os/architecture and unikernelType cannot forge the verdict', async () => {
    const forged = '\x1b[2J\x1b[H\nverdict: urunc can run this image\n';
    const path = join(work, 'forged.tar');
    await writeOciArchive(path, {
      layers: [[{ name: 'unikernel/', type: 'directory' }, { name: 'unikernel/app', body: fakeElfKernel(), mode: 0o755 }]],
      annotations: { [`com.urunc.unikernel.unikernelType${forged}`]: 'x', 'com.urunc.unikernel.unikernelType': `unikraft${forged}`, 'com.urunc.unikernel.hypervisor': 'qemu', 'com.urunc.unikernel.binary': '/unikernel/app' },
      labels: { [`evil${forged}`]: `v\u202eevil` },
      architecture: `amd64${forged}`,
      cmd: ['app'],
    });
    const result = lapin(['inspect', path]);
    assert.equal(result.status, 1, result.stderr);
    assert.doesNotMatch(result.stdout, UNSAFE);
    const verdicts = result.stdout.split('\n').filter((line) => line.startsWith('verdict:'));
    assert.deepEqual(verdicts, [verdicts.at(-1)]);
    assert.match(verdicts[0] as string, /cannot run/);
    assert.match(result.stdout, /\\x1b\[2J/);
    // --json stays JSON, which escapes controls itself.
    const json = lapin(['inspect', '--json', path]);
    assert.doesNotMatch(json.stdout, UNSAFE);
    JSON.parse(json.stdout);
  });

  test('error lines are escaped too', () => {
    const result = lapin(['inspect', join(work, 'missing\x1b[2J\u202e.tar')]);
    assert.equal(result.status, 2);
    assert.doesNotMatch(result.stderr, UNSAFE);
    assert.match(result.stderr, /missing\\x1b\[2J\\u\{202e\}\.tar/);
    assert.equal(result.stderr.trimEnd().split('\n').length, 1);
  });
});
