// lapin build on a real terminal (tmux): the live region of running steps
// with rate and ETA, a clean line after Ctrl-C, and -o - refused on a terminal.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isCI } from '../consumers/harness.js';

const ROOT = path.resolve('.');
const TSX = import.meta.resolve('tsx');
const haveTmux = spawnSync('sh', ['-c', 'command -v tmux'], { stdio: 'ignore' }).status === 0;
if (!haveTmux && isCI()) throw new Error('CI must run the terminal tests: tmux is missing (scripts/install-deps.sh installs it)');

let work: string;
// A tmux server of this test's own (-S), so no other tmux user on the machine (a server whose
// last session is ending) can take it down mid-test; one session per run.
let socket: string;
const tmux = (args: string[]): string[] => ['-S', socket, ...args];
let runs = 0;
let session = `lapin-test-${process.pid}-0`;

function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Starts `lapin ARGS` in a detached 150x40 tmux window; it prints EXIT=<code> when done. The shell
 * traps SIGINT: a shell whose child dies of Ctrl-C exits too, and with its session gone the tmux
 * server does, before the test reads the pane (seen in CI). The child gets the default handler.
 */
function startInTmux(args: string[], cwd: string): void {
  const command = [process.execPath, '--import', TSX, path.join(ROOT, 'src/cli/main.ts'), ...args].map(shellQuote).join(' ');
  const previous = session;
  session = `lapin-test-${process.pid}-${++runs}`;
  execFileSync('tmux', tmux(['new-session', '-d', '-s', session, '-x', '150', '-y', '40', `trap : INT; cd ${shellQuote(cwd)} && ${command}; echo EXIT=$?; sleep 600`]));
  spawnSync('tmux', tmux(['kill-session', '-t', previous]), { stdio: 'ignore' });
}

function pane(): string {
  return execFileSync('tmux', tmux(['capture-pane', '-p', '-t', session]), { encoding: 'utf8' });
}

async function waitFor(predicate: (text: string) => boolean, timeoutMs: number, seen: string[] = []): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = pane();
    seen.push(text);
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`timed out; the pane shows:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 80));
  }
}

/** An x86-64 ELF header followed by `size` random bytes: a kernel that takes a while to compress. */
function bigKernel(size: number): Buffer {
  const elf = Buffer.alloc(256);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1], 0);
  elf.writeUInt16LE(2, 16);
  elf.writeUInt16LE(0x3e, 18);
  return Buffer.concat([elf, randomBytes(size)]);
}

describe('lapin build on a terminal', { skip: haveTmux ? false : 'tmux is missing (scripts/install-deps.sh installs it)', timeout: 240_000 }, () => {
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'lapin term '));
    socket = path.join(work, 'tmux.sock');
    await writeFile(path.join(work, 'vmlinuz'), bigKernel(96 * 1024 * 1024));
    // Large enough that mke2fs runs well past the live region's 150 ms on an idle machine.
    await writeFile(path.join(work, 'big.bin'), randomBytes(256 * 1024 * 1024));
    await writeFile(path.join(work, 'init'), '#!/bin/sh\n', { mode: 0o755 });
    const bunnyfile = ['version: v0.1', 'platforms:', '  framework: linux', '  monitor: qemu', '  architecture: x86_64', 'kernel:', '  from: local', '  path: vmlinuz', 'rootfs:', '  type: block', '  include:', '    - big.bin:/big.bin', '    - init:/init', 'cmd: ["/init"]', ''];
    await writeFile(path.join(work, 'bunnyfile'), bunnyfile.join('\n'));
  });
  after(async () => {
    spawnSync('tmux', tmux(['kill-server']), { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  });

  test('every long step is shown while it runs: mke2fs, then the layer with its size, rate and ETA', async () => {
    startInTmux(['build', '--no-cache', '--compression-level', '6', '-o', 'out.tar', '.'], work);
    const seen: string[] = [];
    const final = await waitFor((text) => /EXIT=\d+/.test(text), 180_000, seen);
    assert.match(final, /EXIT=0/, final);
    const all = seen.join('\n');
    assert.match(all, /writing block rootfs \/\.boot\/rootfs \(mke2fs, ext4, 2 entries\) \d/, 'mke2fs was never shown while it ran');
    assert.match(all, /layer kernel \[=* *\] \d+(\.\d)? MiB \/ 96 MiB {2}\d+(\.\d)? MiB\/s {2}ETA \d/, 'the kernel layer never showed bytes, rate and ETA');
    // Sizes in human units, singular and plural right; the live region is gone at the end.
    assert.match(final, /=> block rootfs \/\.boot\/rootfs: ext4, 2 entries, \d+ MiB \[\d/);
    assert.match(final, /=> layer kernel: sha256:[0-9a-f]{64} \(\d+ MiB\) \[/);
    assert.doesNotMatch(final, /bytes|MiB\/s/);
  });

  test('Ctrl-C leaves the message on a line of its own, not glued to the bar', async () => {
    startInTmux(['build', '--no-cache', '--compression-level', '9', '-o', 'out2.tar', '.'], work);
    await waitFor((text) => /layer kernel \[/.test(text), 120_000);
    execFileSync('tmux', tmux(['send-keys', '-t', session, 'C-c']));
    const final = await waitFor((text) => /EXIT=\d+/.test(text), 30_000);
    assert.match(final, /EXIT=130/, final);
    assert.match(final, /^lapin: interrupted; removed partial output$/m, final);
    assert.doesNotMatch(final, /\^C|layer kernel \[/, final);
  });

  for (const output of ['-', 'type=oci']) {
    test(`-o ${output} on a terminal is refused (exit 2) and writes nothing into it`, async () => {
      startInTmux(['build', '-o', output, '.'], work);
      const final = await waitFor((text) => /EXIT=\d+/.test(text), 60_000);
      assert.match(final, /EXIT=2/, final);
      assert.match(final, /^lapin: error: refusing to write the image archive to stdout, which is a terminal \(redirect stdout/m, final);
      assert.doesNotMatch(final, /oci-layout|ustar|=> read/, final);
    });
  }
});
