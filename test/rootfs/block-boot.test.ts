// A block rootfs lapin wrote, booted in a real Linux guest the way urunc
// would: the image is unpacked with umoci, `binary`, `block` and
// `blkMntPoint` come from its /urunc.json alone, the block image is attached
// as a read-only virtio disk, and the guest's init comes from the process args.
//
// Debian's kernel has virtio_blk and ext4 as modules (CONFIG_VIRTIO_BLK=m,
// CONFIG_EXT4_FS=m), so `root=/dev/vda` cannot work on its own. A helper
// initrd made here (busybox-static and the modules from the kernel package)
// loads them, mounts /dev/vda read-only as ext4 and switch_roots into it;
// from there the block image's own /init (a 0755 script run through the
// bin/sh -> busybox symlink) prints the marker file, its own mode and the
// symlink's target, read from the ext4 root.
//
// Two images: one from `include` files, one from an image pushed to a
// docker-registry on loopback (`rootfs.from: <image>`, `type: block`).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { build } from '../../src/index.js';
import { umociUnpack } from '../consumers/harness.js';
import { registrySkipReason, skopeoPush, startRegistry, type TestRegistry } from '../registry/harness.js';
import { writeOciArchive } from '../helpers/hand-image.js';
import {
  HELPER_FAILED,
  HELPER_MOUNTED,
  BOOT_TIMEOUT_MS,
  bootQemu,
  bootSkip,
  fetchBootAssets,
  inBundle,
  linuxGuestBunnyfile,
  moduleLoadOrder,
  uruncValues,
  writeHelperInitrd,
  type BootAssets,
} from '../helpers/guest-boot.js';

const EPOCH = 1_700_000_000;
const MARKER = 'LAPIN-BLOCK-BOOT';
const ARGS = ['/init', 'blk-arg', 'n=7'];
// What a virtio disk holding ext4 needs on Debian's kernel; their dependencies are found from .modinfo.
const MODULES = ['virtio_pci', 'virtio_blk', 'ext4'];
const INIT_SCRIPT = `#!/bin/sh
bb=/bin/busybox
$bb echo "${MARKER} marker:$($bb cat /marker.txt) mode:$($bb stat -c %a /init) link:$($bb readlink /bin/sh) extra:$($bb cat /etc/extra) args:$*:"
$bb poweroff -f
`;
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };

const skip = bootSkip('the block boot test', ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb', 'flock', 'cpio', 'mke2fs', 'debugfs', 'e2fsck']);
const registrySkip = skip || registrySkipReason() || false;
let work: string;
let assets: BootAssets;
let helperModules: Awaited<ReturnType<typeof moduleLoadOrder>>;
let registry: TestRegistry | undefined;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-block-boot-'));
  if (skip) return;
  assets = await fetchBootAssets();
  helperModules = await moduleLoadOrder(assets.modules, MODULES, assets.busybox);
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A context with the kernel, /etc/extra's source and the bunnyfile. */
async function makeContext(name: string, rootfs: string, extra: string): Promise<string> {
  const context = await mkdtemp(path.join(work, `${name}-`));
  await copyFile(assets.kernel, path.join(context, 'vmlinuz'));
  await writeFile(path.join(context, 'extra.txt'), `${extra}\n`);
  await writeFile(path.join(context, 'bunnyfile'), linuxGuestBunnyfile(rootfs, ARGS));
  return context;
}

/** Builds with lapin, unpacks with umoci, and boots what /urunc.json and the process args name. */
async function buildAndBoot(context: string, tag: string): Promise<string> {
  const archive = path.join(context, 'image.tar');
  await build({
    context,
    tags: [`lapin-test/block-boot:${tag}`],
    outputs: [{ type: 'oci', dest: archive }],
    sourceDateEpoch: EPOCH,
    registry: noCredentials,
    cacheDir: path.join(work, 'cache'),
  });
  const unpacked = await umociUnpack(archive, tag);
  try {
    const values = await uruncValues(unpacked);
    assert.equal(values.unikernelType, 'linux');
    assert.equal(values.hypervisor, 'qemu');
    assert.equal(values.initrd, undefined, 'urunc takes an initrd before a block image');
    assert.ok(values.binary && values.block, `binary and block in urunc.json: ${JSON.stringify(values)}`);
    // urunc makes the block image the guest's root only when blkMntPoint is "/".
    assert.equal(values.blkMntPoint, '/');
    assert.deepEqual(unpacked.args, ARGS);
    const [init, ...rest] = unpacked.args as [string, ...string[]];
    const helper = await writeHelperInitrd({ dir: context, busybox: assets.busybox, modules: helperModules, init });
    const result = await bootQemu(
      [
        '-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
        '-kernel', inBundle(unpacked, values.binary),
        '-initrd', helper,
        '-drive', `file=${inBundle(unpacked, values.block)},format=raw,if=virtio,readonly=on`,
        '-append', `console=ttyS0 panic=-1 rdinit=/init -- ${rest.join(' ')}`,
      ],
      BOOT_TIMEOUT_MS,
    );
    const tail = result.output.slice(-4000);
    assert.ok(!result.timedOut, `the guest did not power off within ${BOOT_TIMEOUT_MS / 1000} s:\n${tail}`);
    assert.doesNotMatch(result.output, new RegExp(HELPER_FAILED), tail);
    // /proc/mounts: "/dev/vda /newroot ext4 ro,relatime 0 0".
    assert.match(result.output, new RegExp(`${HELPER_MOUNTED} /dev/vda /newroot ext4 ro[, ]`), tail);
    assert.match(result.output, /reboot: Power down/, tail);
    assert.equal(result.code, 0, tail);
    const line = result.output.split(/\r?\n/).find((l) => l.startsWith(`${MARKER} `));
    assert.ok(line, `the block image's init printed no marker:\n${tail}`);
    return line;
  } finally {
    await unpacked.cleanup();
  }
}

describe('a block rootfs lapin wrote boots a Linux guest', { skip, timeout: 900_000 }, () => {
  test('from include files: the guest runs /init from the ext4 root and reads the marker, modes and symlink', async () => {
    const context = await makeContext('include', '  type: block\n  include:\n    - tree:/\n    - extra.txt:/etc/extra\n', 'extra from include');
    const tree = path.join(context, 'tree');
    await mkdir(path.join(tree, 'bin'), { recursive: true });
    await copyFile(assets.busybox, path.join(tree, 'bin/busybox'));
    await chmod(path.join(tree, 'bin/busybox'), 0o755);
    await symlink('busybox', path.join(tree, 'bin/sh'));
    await writeFile(path.join(tree, 'init'), INIT_SCRIPT);
    await chmod(path.join(tree, 'init'), 0o755);
    await writeFile(path.join(tree, 'marker.txt'), 'marker-from-include');
    await chmod(path.join(tree, 'marker.txt'), 0o600);
    const line = await buildAndBoot(context, 'include');
    assert.equal(line, `${MARKER} marker:marker-from-include mode:755 link:busybox extra:extra from include args:${ARGS.slice(1).join(' ')}:`);
  });

  test('from a registry image (rootfs.from, type block): the image\'s files and an include, booted', { skip: registrySkip }, async () => {
    registry = await startRegistry('anonymous');
    const busybox = await readFile(assets.busybox);
    const layout = path.join(work, 'pushed.oci.tar');
    // busybox and a stale marker below; the upper layer replaces the marker and adds /init.
    await writeOciArchive(layout, {
      layers: [
        [
          { name: 'bin/', type: 'directory' },
          { name: 'bin/busybox', body: busybox, mode: 0o755 },
          { name: 'bin/sh', type: 'symlink', linkname: 'busybox', mode: 0o777 },
          { name: 'marker.txt', body: 'stale marker' },
        ],
        [
          { name: 'marker.txt', body: 'marker-from-registry', mode: 0o644 },
          { name: 'init', body: INIT_SCRIPT, mode: 0o755 },
        ],
      ],
    });
    const reference = `${registry.host}/block-boot/busybox:1`;
    await skopeoPush(layout, reference);
    const context = await makeContext('registry', `  from: ${reference}\n  type: block\n  include:\n    - extra.txt:/etc/extra\n`, 'extra over the image');
    const line = await buildAndBoot(context, 'registry');
    assert.equal(line, `${MARKER} marker:marker-from-registry mode:755 link:busybox extra:extra over the image args:${ARGS.slice(1).join(' ')}:`);
  });
});
