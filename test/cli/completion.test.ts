// lapin completion bash|zsh|fish and the man page, both generated from the
// commander definitions that --help prints.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { manPage } from '../../src/cli/completion.js';
import { program, VERSION } from '../../src/cli/program.js';

const ROOT = path.resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const have = (tool: string): boolean => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const bashScript = lapin(['completion', 'bash']).stdout;

/** What bash offers after `words` (the last one being completed), with the script loaded as a user would. */
function bashComplete(words: string[], cwd = ROOT): string[] {
  const script = `source <(cat)
complete -p lapin
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
_lapin_completion
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script], { cwd, input: bashScript, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [registration, ...offers] = r.stdout.split('\n').filter((line) => line !== '');
  assert.equal(registration, 'complete -o filenames -F _lapin_completion lapin');
  return offers;
}

describe('lapin completion bash', { skip: have('bash') ? false : 'bash is missing' }, () => {
  test('completes subcommands', () => {
    assert.deepEqual(bashComplete(['lapin', '']), ['build', 'inspect', 'run', 'imagetools', 'login', 'logout', 'completion']);
    assert.deepEqual(bashComplete(['lapin', 'bu']), ['build']);
  });

  test("completes each subcommand's flags, from the same definitions as --help", () => {
    assert.deepEqual(bashComplete(['lapin', 'build', '--ta']), ['--tag', '--target']);
    assert.deepEqual(bashComplete(['lapin', 'build', '--tag']), ['--tag']);
    assert.deepEqual(bashComplete(['lapin', 'build', '--prog']), ['--progress']);
    assert.deepEqual(bashComplete(['lapin', 'run', '--']).sort(), ['--accel', '--help', '--memory', '--platform', '--print', '--timeout']);
    const help = lapin(['build', '--help']).stdout;
    for (const flag of bashComplete(['lapin', 'build', '--'])) assert.ok(help.includes(flag), `${flag} is not in build --help`);
  });

  test('completes choices of an option, and paths where a path goes', () => {
    assert.deepEqual(bashComplete(['lapin', 'build', '--progress', '']), ['auto', 'tty', 'plain', 'quiet', 'rawjson']);
    assert.deepEqual(bashComplete(['lapin', 'build', '--compression', 'z']), ['zstd']);
    assert.deepEqual(bashComplete(['lapin', 'completion', '--help', 'ba']), []);
    assert.deepEqual(bashComplete(['lapin', 'build', '-f', 'examples/mirage-hvt/bunny']), ['examples/mirage-hvt/bunnyfile']);
  });
});

describe('lapin completion zsh and fish', () => {
  test('zsh: the script parses', { skip: have('zsh') ? false : 'zsh is missing' }, () => {
    const r = spawnSync('zsh', ['-n'], { input: lapin(['completion', 'zsh']).stdout, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
  test('fish: completes subcommands, flags and choices (complete -C)', { skip: have('fish') ? false : 'fish is missing' }, () => {
    const script = path.join(mkdtempSync(path.join(os.tmpdir(), 'lapin-fish-')), 'lapin.fish');
    writeFileSync(script, lapin(['completion', 'fish']).stdout);
    const offers = (line: string): string[] => {
      const r = spawnSync('fish', ['--no-config', '-c', `source ${JSON.stringify(script)}; complete -C ${JSON.stringify(line)}`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t')[0] as string);
    };
    assert.deepEqual(offers('lapin bu'), ['build']);
    assert.deepEqual(offers('lapin build --prog'), ['--progress']);
    assert.deepEqual(offers('lapin build --progress=').sort(), ['--progress=auto', '--progress=plain', '--progress=quiet', '--progress=rawjson', '--progress=tty']);
    rmSync(path.dirname(script), { recursive: true, force: true });
  });
  test('both name every subcommand and every build flag', () => {
    const zsh = lapin(['completion', 'zsh']).stdout;
    const fish = lapin(['completion', 'fish']).stdout;
    for (const command of ['build', 'inspect', 'run', 'imagetools', 'login', 'logout', 'completion']) {
      assert.match(zsh, new RegExp(`'${command}:`));
      assert.match(fish, new RegExp(`-a ${command} -d`));
    }
    for (const flag of ['progress', 'output', 'load', 'tag', 'rootfs-size']) {
      assert.ok(zsh.includes(`'--${flag}`), flag);
      assert.ok(fish.includes(`-l ${flag}`), flag);
    }
  });
  test('an unknown shell is a usage error', () => {
    const r = lapin(['completion', 'tcsh']);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'lapin: error: shell "tcsh" is invalid (use one of bash, zsh, fish)\n');
  });
});

function stripOverstrike(text: string): string {
  let out = '';
  for (const char of text) {
    if (char === '\b') out = out.slice(0, -1);
    else out += char;
  }
  return out;
}

describe('man page', () => {
  test('docs/lapin.1 is what the definitions generate (npm run man rewrites it)', async () => {
    assert.equal(await readFile(path.join(ROOT, 'docs/lapin.1'), 'utf8'), manPage(program(), VERSION));
  });

  test('renders with man -l, listing every command and build option', { skip: have('man') ? false : 'man is missing' }, () => {
    const r = spawnSync('man', ['-l', path.join(ROOT, 'docs/lapin.1')], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '200', LC_ALL: 'C.UTF-8' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    // man may overstrike for bold (c BACKSPACE c); drop the overstruck characters.
    const text = stripOverstrike(r.stdout);
    for (const command of ['build', 'inspect', 'run', 'imagetools', 'login', 'logout', 'completion']) assert.match(text, new RegExp(`lapin ${command}`));
    for (const flag of ['--progress <mode>', '--load [engine]', '--output <spec>', 'type=registry']) assert.ok(text.includes(flag), `${flag} missing in:\n${text}`);
  });
});
