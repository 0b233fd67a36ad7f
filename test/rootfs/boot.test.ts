// Runs a Linux guest the way urunc would, from nothing but the image lapin
// wrote: Debian's kernel and busybox-static (fetched once by
// scripts/fetch-boot-assets.sh), an initrd lapin builds, `umoci unpack`,
// the urunc values from /urunc.json and the process args from config.json,
// then qemu (TCG; no KVM here) with `rdinit=<args[0]> -- <rest>`.
// The block rootfs built the same way is checked with e2fsck and debugfs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFile, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { build } from '../../src/build.js';
import { isCI, requireConsumers, umociUnpack, type UmociUnpackResult } from '../consumers/harness.js';

const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const toolEnv = { ...process.env, PATH: SBIN_PATH };
const MARKER = 'LAPIN-BOOT-MARKER';
const ARGS = ['/init', 'first-arg', 'second.arg=2'];
const BOOT_TIMEOUT_MS = 180_000;
const INIT_SCRIPT = `#!/bin/sh
echo "${MARKER} args:$*:"
/bin/busybox poweroff -f
`;
const EPOCH = 1_700_000_000;

/** Why the boot test cannot run here, or false; under CI a missing tool fails instead. */
function bootToolsMissing(): string | false {
  const umoci = requireConsumers(['umoci']);
  const programs = ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb', 'mke2fs', 'debugfs', 'e2fsck'];
  const missing = programs.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`], { env: toolEnv, stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return umoci;
  const reason = `missing ${missing.join(', ')} (scripts/install-deps.sh installs them)`;
  if (isCI()) throw new Error(`CI must run the boot test: ${reason}`);
  return reason;
}

interface Assets {
  kernel: string;
  busybox: string;
}

async function fetchAssets(): Promise<Assets> {
  const script = path.resolve('scripts/fetch-boot-assets.sh');
  const { stdout } = await promisify(execFile)(script, [], { env: toolEnv, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  const value = (key: string): string => {
    const line = stdout.split('\n').find((l) => l.startsWith(`${key}=`));
    assert.ok(line, `fetch-boot-assets.sh printed no ${key}:\n${stdout}`);
    return line.slice(key.length + 1);
  };
  return { kernel: value('KERNEL'), busybox: value('BUSYBOX') };
}

/** The urunc values of an unpacked bundle, read the way urunc reads them: /urunc.json, base64. */
async function uruncValues(unpacked: UmociUnpackResult): Promise<Record<string, string>> {
  const root = path.join(unpacked.bundleDir, unpacked.config.root?.path ?? 'rootfs');
  const encoded = JSON.parse(await readFile(path.join(root, 'urunc.json'), 'utf8')) as Record<string, string>;
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(encoded)) values[key.replace(/^com\.urunc\.unikernel\./, '')] = Buffer.from(value, 'base64').toString('utf8');
  return values;
}

function inBundle(unpacked: UmociUnpackResult, imagePath: string): string {
  return path.join(unpacked.bundleDir, unpacked.config.root?.path ?? 'rootfs', imagePath);
}

/** Boots qemu and resolves with everything the guest printed once it powers off (or the timeout kills it). */
function bootQemu(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-system-x86_64', args, { env: toolEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), BOOT_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function bunnyfile(rootfs: string): string {
  return `version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: local
  path: vmlinuz
rootfs:
${rootfs}cmd: ${JSON.stringify(ARGS)}
`;
}

const skip = bootToolsMissing();

describe('a Linux guest boots from what lapin wrote', { skip, timeout: 900_000 }, () => {
  let work: string;
  let context: string;

  before(async () => {
    const assets = await fetchAssets();
    work = await mkdtemp(path.join(tmpdir(), 'lapin-boot-'));
    context = path.join(work, 'context');
    const tree = path.join(context, 'rootfs');
    await mkdir(path.join(tree, 'bin'), { recursive: true });
    await mkdir(path.join(tree, 'empty'));
    await mkdir(path.join(tree, 'etc'));
    await copyFile(assets.kernel, path.join(context, 'vmlinuz'));
    await copyFile(assets.busybox, path.join(tree, 'bin/busybox'));
    await chmod(path.join(tree, 'bin/busybox'), 0o755);
    await symlink('busybox', path.join(tree, 'bin/sh'));
    await writeFile(path.join(tree, 'init'), INIT_SCRIPT);
    await chmod(path.join(tree, 'init'), 0o755);
    await writeFile(path.join(tree, 'etc/motd'), 'hello from lapin\n');
    await chmod(path.join(tree, 'etc/motd'), 0o640);
    await link(path.join(tree, 'etc/motd'), path.join(tree, 'etc/motd.again'));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the initrd boots in qemu and init gets the process args', async () => {
    await writeFile(path.join(context, 'bunnyfile'), bunnyfile('  type: initrd\n  include:\n    - rootfs:/\n'));
    const archive = path.join(work, 'initrd.tar');
    await build({ context, tags: ['lapin-test/boot:initrd'], outputs: [{ type: 'oci', dest: archive }], sourceDateEpoch: EPOCH });
    const unpacked = await umociUnpack(archive, 'initrd');
    try {
      const values = await uruncValues(unpacked);
      assert.equal(values.unikernelType, 'linux');
      assert.equal(values.hypervisor, 'qemu');
      assert.ok(values.binary && values.initrd, `binary and initrd in urunc.json: ${JSON.stringify(values)}`);
      assert.deepEqual(unpacked.args, ARGS);
      assert.equal(values.cmdline, ARGS.join(' '));
      // urunc hands a Linux guest its init as rdinit=<args[0]> and the rest after "--".
      const [init, ...rest] = unpacked.args;
      const result = await bootQemu([
        '-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
        '-kernel', inBundle(unpacked, values.binary),
        '-initrd', inBundle(unpacked, values.initrd),
        '-append', `console=ttyS0 panic=-1 rdinit=${init as string} -- ${rest.join(' ')}`,
      ]);
      assert.ok(result.output.includes(`${MARKER} args:${rest.join(' ')}:`), `the guest did not print the marker with its args:\n${result.output.slice(-3000)}`);
      assert.match(result.output, /reboot: Power down/);
      assert.equal(result.code, 0);
    } finally {
      await unpacked.cleanup();
    }
  });

  test('the block rootfs is fsck-clean and holds the files with their modes', async () => {
    await writeFile(path.join(context, 'bunnyfile'), bunnyfile('  type: block\n  include:\n    - rootfs:/\n'));
    const archive = path.join(work, 'block.tar');
    const steps: string[] = [];
    await build({
      context,
      tags: ['lapin-test/boot:block'],
      outputs: [{ type: 'oci', dest: archive }],
      sourceDateEpoch: EPOCH,
      onEvent: (e) => e.kind === 'step' && steps.push(e.message),
    });
    assert.ok(steps.some((s) => /^block rootfs \/\.boot\/rootfs: ext4/.test(s)), steps.join('\n'));
    const unpacked = await umociUnpack(archive, 'block');
    try {
      const values = await uruncValues(unpacked);
      assert.equal(values.block, '/.boot/rootfs');
      assert.equal(values.blkMntPoint, '/');
      assert.equal(values.initrd, undefined);
      const image = inBundle(unpacked, values.block);
      const fsck = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8', env: toolEnv });
      assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
      const debugfs = (request: string): string => execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', env: toolEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      assert.equal(debugfs('cat /init'), INIT_SCRIPT);
      assert.match(debugfs('stat /init'), /Type: regular\s+Mode:\s+0755/);
      assert.match(debugfs('stat /bin/busybox'), /Type: regular\s+Mode:\s+0755/);
      assert.match(debugfs('stat /bin/sh'), /Type: symlink[\s\S]*Fast link dest: "busybox"/);
      assert.match(debugfs('stat /empty'), /Type: directory/);
      const motd = debugfs('stat /etc/motd');
      assert.match(motd, /Mode:\s+0640[\s\S]*Links: 2/);
      const inode = /Inode: (\d+)/.exec(motd)?.[1];
      assert.equal(/Inode: (\d+)/.exec(debugfs('stat /etc/motd.again'))?.[1], inode, 'the hardlink shares the inode');
      assert.match(debugfs('stat /init'), new RegExp(`mtime: 0x${EPOCH.toString(16)}`));
    } finally {
      await unpacked.cleanup();
    }
  });
});
