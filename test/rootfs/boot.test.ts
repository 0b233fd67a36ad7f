// Runs a Linux guest the way urunc would, from nothing but the image lapin
// wrote: Debian's kernel and busybox-static (fetched once by
// scripts/fetch-boot-assets.sh), an initrd lapin builds, `umoci unpack`,
// the urunc values from /urunc.json and the process args from config.json,
// then qemu (TCG; no KVM here) with `rdinit=<args[0]> -- <rest>`.
// The block rootfs built the same way is checked with e2fsck and debugfs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, link, mkdir, mkdtemp, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from '../../src/build.js';
import { umociUnpack } from '../consumers/harness.js';
import { BOOT_TIMEOUT_MS, bootQemu, bootSkip, fetchBootAssets, inBundle, linuxGuestBunnyfile, toolEnv, uruncValues } from '../helpers/guest-boot.js';

const MARKER = 'LAPIN-BOOT-MARKER';
const ARGS = ['/init', 'first-arg', 'second.arg=2'];
const INIT_SCRIPT = `#!/bin/sh
echo "${MARKER} args:$*:"
/bin/busybox poweroff -f
`;
const EPOCH = 1_700_000_000;

const skip = bootSkip('the boot test', ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb', 'mke2fs', 'debugfs', 'e2fsck']);

describe('a Linux guest boots from what lapin wrote', { skip, timeout: 900_000 }, () => {
  let work: string;
  let context: string;

  before(async () => {
    const assets = await fetchBootAssets();
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
    await writeFile(path.join(context, 'bunnyfile'), linuxGuestBunnyfile('  type: initrd\n  include:\n    - rootfs:/\n', ARGS));
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
      ], BOOT_TIMEOUT_MS);
      assert.ok(result.output.includes(`${MARKER} args:${rest.join(' ')}:`), `the guest did not print the marker with its args:\n${result.output.slice(-3000)}`);
      assert.match(result.output, /reboot: Power down/);
      assert.equal(result.code, 0);
    } finally {
      await unpacked.cleanup();
    }
  });

  test('the block rootfs is fsck-clean and holds the files with their modes', async () => {
    await writeFile(path.join(context, 'bunnyfile'), linuxGuestBunnyfile('  type: block\n  include:\n    - rootfs:/\n', ARGS));
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
