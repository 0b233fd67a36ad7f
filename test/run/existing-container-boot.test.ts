// urunc's "existing container" tutorial, booted: a busybox-based app image
// whose Cmd is a script, and a stand-in /urunit that regroups the quoted
// arguments urunc writes for multi-word args (as urunit does), pushed to a
// test registry with Debian's kernel in a kernel image. A bunnyfile takes
// both from images; the initrd variant boots through `lapin run` (urunc's
// command line: rdinit=/urunit -- ARGS), the block variant with a helper
// initrd that loads Debian's virtio_blk and ext4 modules first, as
// test/rootfs/block-boot.test.ts does. qemu runs under TCG.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import { monitorCommand } from '../../src/run/monitor.js';
import { sharedRootfsArgs, unpackRootfs, withSharedRootfs } from '../../src/run/shared-rootfs.js';
import { openSource } from '../../src/source/open.js';
import { umociUnpack } from '../consumers/harness.js';
import { pushStandIns, type StandIns } from '../helpers/existing-container.js';
import {
  BOOT_TIMEOUT_MS,
  HELPER_FAILED,
  HELPER_MOUNTED,
  bootQemu,
  bootSkip,
  fetchBootAssets,
  toolEnv,
  inBundle,
  moduleLoadOrder,
  uruncValues,
  writeHelperInitrd,
  type BootAssets,
} from '../helpers/guest-boot.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';
import { isolatedEnv, lapin } from '../registry/helpers.js';

const MARKER = 'EXISTING-CONTAINER-BOOTED';
const APP = `#!/bin/sh
echo "${MARKER} argc=$# first=[$1] second=[$2] conf=$(/bin/busybox cat /etc/app.conf)"
`;
/** Joins the words of an argument urunc wrapped in single quotes, then runs the rest, then powers off. */
const URUNIT = `#!/bin/sh
count=$#
i=0
open=0
word=""
while [ "$i" -lt "$count" ]; do
  arg=$1
  shift
  i=$((i + 1))
  if [ "$open" = 1 ]; then
    word="$word $arg"
    case "$arg" in *\\') open=0; set -- "$@" "\${word%\\'}" ;; esac
  else
    case "$arg" in
      \\'*\\') arg=\${arg#\\'}; set -- "$@" "\${arg%\\'}" ;;
      \\'*) open=1; word=\${arg#\\'} ;;
      *) set -- "$@" "$arg" ;;
    esac
  fi
done
"$@"
echo "URUNIT-STAND-IN: the app exited with $?"
/bin/busybox poweroff -f
`;
const CMD = ['/urunit', '/usr/local/bin/app.sh', 'hello quoted world', 'x'];
const EXPECTED = `${MARKER} argc=2 first=[hello quoted world] second=[x] conf=mode=stand-in`;
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };

const skip = bootSkip('the existing-container boot test', ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb', 'flock', 'cpio', 'mke2fs', 'bsdcpio']) || registrySkipReason() || false;
let work: string;
let assets: BootAssets;
let registry: TestRegistry;
let images: StandIns;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin existing-boot-'));
  if (skip) return;
  assets = await fetchBootAssets();
  registry = await startRegistry('anonymous');
  images = await pushStandIns(work, registry.host, 'boot', {
    kernel: await readFile(assets.kernel),
    appScript: APP,
    extraAppFiles: [
      { name: 'bin/', type: 'directory' },
      { name: 'bin/busybox', body: await readFile(assets.busybox), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'urunit', body: URUNIT, mode: 0o755 },
      { name: 'dev/', type: 'directory' },
      { name: 'proc/', type: 'directory' },
    ],
  });
});

after(async () => {
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function buildVariant(type: 'initrd' | 'block' | 'raw'): Promise<string> {
  const context = await mkdtemp(path.join(work, `${type}-`));
  await writeFile(
    path.join(context, 'bunnyfile'),
    `version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86\nrootfs:\n  from: ${images.app}\n  type: ${type}\nkernel:\n  from: ${images.kernel}\n  path: /kernel\ncmd: ${JSON.stringify(CMD)}\n`,
  );
  const archive = path.join(context, 'image.tar');
  await build({ context, tags: [`lapin-test/existing-boot:${type}`], outputs: [{ type: 'oci', dest: archive }], registry: noCredentials, cacheDir: path.join(work, 'cache') });
  return archive;
}

/**
 * A helper initrd standing in for a kernel with 9p built in (Debian builds it as modules):
 * it loads the modules, mounts root= with the rootfstype= and rootflags= of urunc's command
 * line (read from /proc/cmdline), and switch_roots to init= with the args after "--".
 */
async function write9pHelper(dir: string): Promise<string> {
  const modulesDir = path.join(dir, 'modules-all');
  await mkdir(modulesDir);
  await cp(assets.modules, modulesDir, { recursive: true });
  const { stdout } = await promisify(execFile)(path.resolve('scripts/fetch-boot-assets.sh'), [], { env: { ...toolEnv, LAPIN_BOOT_9P: '1' }, timeout: 600_000 });
  const ninePee = stdout.split('\n').find((l) => l.startsWith('MODULES_9P='))?.slice('MODULES_9P='.length);
  assert.ok(ninePee, stdout);
  await cp(ninePee, modulesDir, { recursive: true });
  const modules = await moduleLoadOrder(modulesDir, ['virtio_pci', '9pnet_virtio', '9p'], assets.busybox);
  const stage = path.join(dir, 'helper-9p');
  for (const sub of ['bin', 'proc', 'newroot', 'modules']) await mkdir(path.join(stage, sub), { recursive: true });
  await copyFile(assets.busybox, path.join(stage, 'bin/busybox'));
  await chmod(path.join(stage, 'bin/busybox'), 0o755);
  await Promise.all(modules.map((m, i) => writeFile(path.join(stage, 'modules', `${String(i).padStart(2, '0')}-${m.name}.ko`), m.data)));
  await writeFile(
    path.join(stage, 'init'),
    `#!/bin/busybox sh
bb=/bin/busybox
fail() { $bb echo "${HELPER_FAILED} $*"; $bb poweroff -f; }
$bb mount -t proc proc /proc || fail mount proc
for module in /modules/*.ko; do $bb insmod "$module" || fail insmod "$module"; done
for word in $($bb cat /proc/cmdline); do
  case "$word" in
    --) break ;;
    root=*) root=\${word#root=} ;;
    rootfstype=*) fstype=\${word#rootfstype=} ;;
    rootflags=*) flags=\${word#rootflags=} ;;
    init=*) init=\${word#init=} ;;
  esac
done
$bb mount -t "$fstype" -o "$flags" "$root" /newroot || fail mount "$root"
$bb echo "${HELPER_MOUNTED} $($bb grep ' /newroot ' /proc/mounts)"
$bb umount /proc
exec $bb switch_root /newroot "$init" "$@"
`,
  );
  await chmod(path.join(stage, 'init'), 0o755);
  const initrd = path.join(dir, 'helper-9p.cpio');
  const names = execFileSync('find', ['.', '-mindepth', '1', '-print0'], { cwd: stage }).toString('utf8');
  execFileSync('cpio', ['--null', '-o', '-H', 'newc', '--quiet', '--owner=0:0', '-O', initrd], { cwd: stage, input: names, env: toolEnv });
  return initrd;
}

describe('an existing container boots as a Linux microVM', { skip, timeout: 900_000 }, () => {
  test('as an initrd, through lapin run: urunit regroups the quoted argument and the app prints the marker', async () => {
    const archive = await buildVariant('initrd');
    const run = await lapin(['run', '--accel', 'tcg', '--timeout', String(BOOT_TIMEOUT_MS / 1000), archive], { env: isolatedEnv(work) });
    const output = `${run.stdout}${run.stderr}`;
    // The printed command is shell-quoted: 'hello quoted world' shows as '\''hello quoted world'\''.
    assert.ok(run.stderr.includes("rdinit=/urunit -- /usr/local/bin/app.sh '\\''hello quoted world'\\'' x"), output.slice(-3000));
    assert.ok(run.stdout.includes(EXPECTED), `no marker:\n${output.slice(-3000)}`);
    assert.match(run.stdout, /URUNIT-STAND-IN: the app exited with 0/);
    assert.equal(run.status, 0, output.slice(-3000));
  });

  test('as a block rootfs (ext4 made from the app image), with Debian\'s modules loaded by a helper initrd', async () => {
    const archive = await buildVariant('block');
    const unpacked = await umociUnpack(archive, 'block');
    try {
      const values = await uruncValues(unpacked);
      assert.equal(values.block, '/.boot/rootfs');
      assert.equal(values.blkMntPoint, '/');
      assert.equal(values.binary, '/.boot/kernel');
      assert.deepEqual(unpacked.args, CMD);
      const modules = await moduleLoadOrder(assets.modules, ['virtio_pci', 'virtio_blk', 'ext4'], assets.busybox);
      const helper = await writeHelperInitrd({ dir: work, busybox: assets.busybox, modules, init: '/urunit' });
      // urunc's argument convention: a multi-word argument in single quotes.
      const rest = CMD.slice(1).map((arg) => (arg.includes(' ') ? `'${arg}'` : arg));
      const result = await bootQemu(
        [
          '-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
          '-kernel', inBundle(unpacked, values.binary),
          '-initrd', helper,
          '-device', 'virtio-blk-pci,serial=rootfs,drive=rootfs', '-drive', `format=raw,if=none,id=rootfs,readonly=on,file=${inBundle(unpacked, values.block)}`,
          '-append', `console=ttyS0 panic=-1 rdinit=/init -- ${rest.join(' ')}`,
        ],
        BOOT_TIMEOUT_MS,
      );
      const tail = result.output.slice(-4000);
      assert.ok(!result.timedOut, tail);
      assert.doesNotMatch(result.output, new RegExp(HELPER_FAILED), tail);
      assert.match(result.output, new RegExp(`${HELPER_MOUNTED} /dev/vda /newroot ext4 ro[, ]`), tail);
      assert.ok(result.output.includes(EXPECTED), `no marker:\n${tail}`);
      assert.equal(result.code, 0, tail);
    } finally {
      await unpacked.cleanup();
    }
  });

  test('raw (mountRootfs): lapin run\'s 9p share of the unpacked container rootfs, mounted by the guest with urunc\'s root= and rootflags=', async () => {
    const archive = await buildVariant('raw');
    const source = await openSource(`oci-archive:${archive}`);
    const rootfs = path.join(work, 'shared-rootfs');
    try {
      await unpackRootfs(source, rootfs, path.join(work, 'unpack'));
    } finally {
      await source.close();
    }
    const command = withSharedRootfs(
      // monitorCommand splits its text on spaces as urunc does; the kernel's path (with a space) goes in after.
      monitorCommand({ guest: 'linux', monitor: 'qemu', kernel: 'KERNEL', mountRootfs: true, processArgs: CMD, env: [], accel: 'tcg', architecture: 'amd64' }),
      rootfs,
    );
    const append = command.args.indexOf('-append');
    assert.deepEqual(command.args.slice(append - 4, append), sharedRootfsArgs(rootfs));
    // The helper takes the kernel's place in mounting the 9p root; init= and the args stay urunc's.
    const line = command.guestCommandLine.replace(' init=/urunit -- ', ' rdinit=/init init=/urunit -- ');
    assert.notEqual(line, command.guestCommandLine);
    const helper = await write9pHelper(work);
    const args = command.args.slice(0, append).map((arg) => (arg === 'KERNEL' ? path.join(rootfs, '.boot/kernel') : arg));
    const result = await bootQemu([...args, '-initrd', helper, '-append', line], BOOT_TIMEOUT_MS);
    const tail = result.output.slice(-4000);
    assert.ok(!result.timedOut, tail);
    assert.doesNotMatch(result.output, new RegExp(HELPER_FAILED), tail);
    assert.match(result.output, new RegExp(`${HELPER_MOUNTED} fs0 /newroot 9p rw,`), tail);
    assert.ok(result.output.includes(EXPECTED), `no marker:\n${tail}`);
    assert.equal(result.code, 0, tail);
  });

  test('lapin run on the raw image shares the unpacked rootfs over 9p; Debian\'s kernel (9p as modules) then tries root fs0', async () => {
    const archive = await buildVariant('raw');
    const run = await lapin(['run', '--accel', 'tcg', '--timeout', String(BOOT_TIMEOUT_MS / 1000), archive], { env: isolatedEnv(work) });
    const output = `${run.stdout}${run.stderr}`.slice(-4000);
    assert.match(run.stderr, /lapin: running qemu-system-x86_64 .* -fsdev local,id=rootfs9p,security_model=none,path=\S+\/rootfs -device virtio-9p-pci,fsdev=rootfs9p,mount_tag=fs0 .*root=fs0 rw rootfstype=9p/, output);
    assert.doesNotMatch(run.stderr, /lapin run shares nothing/, output);
    // Without 9p built in the kernel cannot mount the share and panics (panic=-1, -no-reboot: qemu exits).
    assert.match(run.stdout, /VFS: Cannot open root device "?fs0"?|Unable to mount root fs/, output);
  });
});
