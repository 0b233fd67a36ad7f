// lapin run end to end: --print on hand-made images of each guest type, a
// missing monitor, and a Linux initrd image booted in qemu (TCG here) whose
// init prints a marker with the args it got. The kernel and busybox come
// from Debian through scripts/fetch-boot-assets.sh (shared with
// test/rootfs/boot.test.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isCI } from '../consumers/harness.js';
import { fetchBootAssets } from '../helpers/guest-boot.js';
import { fakeElfKernel, full, uruncJsonFile, writeOciArchive, type HandImage } from '../helpers/hand-image.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-run-test-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

async function image(name: string, values: Record<string, string>, extra: Partial<HandImage> = {}): Promise<string> {
  const path = join(work, `${name}.tar`);
  await writeOciArchive(path, {
    layers: [[{ name: 'unikernel/', type: 'directory' }, { name: 'unikernel/app', body: fakeElfKernel() }, { name: 'unikernel/disk.img', body: Buffer.alloc(4096) }], [uruncJsonFile(values)]],
    annotations: full(values),
    ...extra,
  });
  return path;
}

describe('lapin run --print', () => {
  test('prints the monitor command for each guest type, with the image paths urunc uses', async () => {
    const cases: Array<[string, Record<string, string>, string[], string]> = [
      ['mirage-hvt', { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/unikernel/app', block: '/unikernel/disk.img' }, ['--port=80'], 'solo5-hvt --mem=256 --block:storage=/unikernel/disk.img /unikernel/app --port=80'],
      ['mirage-spt', { unikernelType: 'mirage', hypervisor: 'spt', binary: '/unikernel/app' }, ['x'], 'solo5-spt --mem=256 /unikernel/app x'],
      ['rumprun-hvt', { unikernelType: 'rumprun', hypervisor: 'hvt', binary: '/unikernel/app' }, ['hello'], `solo5-hvt --mem=256 /unikernel/app '{"cmdline":"hello","blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/data"}}'`],
      ['unikraft-qemu', { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app' }, ['app', 'arg'], "-kernel /unikernel/app -nic none -append 'app      -- arg'"],
      ['mewz-qemu', { unikernelType: 'mewz', hypervisor: 'qemu', binary: '/unikernel/app' }, ['x'], '-no-reboot -device isa-debug-exit,iobase=0x501,iosize=2 -append \'\''],
      ['hermit-qemu', { unikernelType: 'hermit', hypervisor: 'qemu', binary: '/unikernel/app' }, ['hi'], '-kernel /unikernel/app -nic none -no-reboot -append hi'],
      ['linux-qemu', { unikernelType: 'linux', hypervisor: 'qemu', binary: '/unikernel/app' }, ['/init', 'a'], "-no-reboot -nodefaults -append 'panic=-1 console=ttyS0 init=/init -- a'"],
      ['linux-firecracker', { unikernelType: 'linux', hypervisor: 'firecracker', binary: '/unikernel/app' }, ['/init'], 'firecracker --no-api --config-file /tmp/fc.json --no-seccomp'],
      ['unikraft-firecracker', { unikernelType: 'unikraft', hypervisor: 'firecracker', binary: '/unikernel/app' }, ['app'], 'firecracker --no-api --config-file /tmp/fc.json'],
    ];
    for (const [name, values, cmd, expected] of cases) {
      const path = await image(name, values, { cmd });
      const r = lapin(['run', '--print', '--accel', 'kvm', path]);
      assert.equal(r.status, 0, `${name}: ${r.stderr}`);
      assert.ok(r.stdout.includes(expected), `${name}: expected ${expected} in:\n${r.stdout}`);
    }
    const fc = lapin(['run', '--print', join(work, 'linux-firecracker.tar')]);
    assert.match(fc.stdout, /"kernel_image_path":"\/unikernel\/app","boot_args":"panic=-1 console=ttyS0 init=\/init -- "/);
  });

  test('a raw (mountRootfs=true) linux image prints the 9p share of the container rootfs that lapin run adds', async () => {
    const path = await image('linux-raw', { unikernelType: 'linux', hypervisor: 'qemu', binary: '/unikernel/app', mountRootfs: 'true' }, { cmd: ['/init'] });
    const r = lapin(['run', '--print', '--accel', 'tcg', path]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(' -fsdev local,id=rootfs9p,security_model=none,path=/cntrRootfs -device virtio-9p-pci,fsdev=rootfs9p,mount_tag=fs0 -append '), r.stdout);
    assert.match(r.stdout, /root=fs0 rw rootfstype=9p /);
    assert.doesNotMatch(r.stderr, /mountRootfs:/);
    // TCG because --accel says so, not because KVM is unusable: the note says which.
    assert.match(r.stderr, /^lapin: note: --accel tcg: qemu emulates the CPU with TCG, where urunc would pass -cpu host -enable-kvm$/m);
    assert.doesNotMatch(r.stderr, /KVM is not usable here/);
  });

  test('extra args replace the Cmd and keep the Entrypoint, as docker run does; --memory sets -m', async () => {
    const path = await image('entry', { unikernelType: 'linux', hypervisor: 'qemu', binary: '/unikernel/app' }, { entrypoint: ['/init'], cmd: ['default'] });
    const r = lapin(['run', '--print', '--accel', 'tcg', '--memory', '1G', path, '--', 'given', 'args']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^qemu-system-x86_64 -m 1024M -L \/usr\/share\/qemu -cpu max -accel tcg /);
    assert.match(r.stdout, /init=\/init -- given args'$/m);
  });

  test('an image urunc cannot run is refused with the reasons (exit 1)', async () => {
    const path = await image('bad-pair', { unikernelType: 'mirage', hypervisor: 'firecracker', binary: '/unikernel/app' }, { cmd: ['x'] });
    const r = lapin(['run', '--print', path]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^lapin: error: urunc cannot run .*urunc does not run mirage guests on firecracker/m);
  });

  test('a monitor missing from PATH is named', { skip: spawnSync('sh', ['-c', 'command -v solo5-hvt']).status === 0 ? 'solo5-hvt is installed here' : false }, async () => {
    const path = await image('hvt-run', { unikernelType: 'mirage', hypervisor: 'hvt', binary: '/unikernel/app' }, { cmd: ['x'] });
    const r = lapin(['run', path]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /hvt guests need solo5-hvt, which is not on PATH \(install Solo5 from/);
  });
});

/** Why the boot cannot run here, or false; under CI a missing tool fails instead. */
function bootMissing(): string | false {
  const missing = ['qemu-system-x86_64', 'cpio', 'apt-get', 'dpkg-deb'].filter((p) => spawnSync('sh', ['-c', `command -v ${p}`], { env: { ...process.env, PATH: SBIN_PATH } }).status !== 0);
  if (missing.length === 0) return false;
  const reason = `missing ${missing.join(', ')} (scripts/install-deps.sh installs them)`;
  if (isCI()) throw new Error(`CI must boot the Linux guest: ${reason}`);
  return reason;
}

describe('lapin run boots a Linux initrd image', { skip: bootMissing(), timeout: 900_000 }, () => {
  test('the guest prints its marker with the args given after --', async () => {
    const assets = await fetchBootAssets();
    // An initrd made with cpio(1), an image made by hand: nothing here comes from lapin build.
    const tree = join(work, 'initrd-tree');
    await mkdir(join(tree, 'bin'), { recursive: true });
    await copyFile(assets.busybox, join(tree, 'bin/busybox'));
    await chmod(join(tree, 'bin/busybox'), 0o755);
    await symlink('busybox', join(tree, 'bin/sh'));
    await writeFile(join(tree, 'init'), '#!/bin/sh\necho "LAPIN-RUN-MARKER args:$*:"\n/bin/busybox poweroff -f\n', { mode: 0o755 });
    const cpio = spawnSync('sh', ['-c', 'find . | LC_ALL=C sort | cpio -o -H newc --quiet'], { cwd: tree, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(cpio.status, 0, cpio.stderr.toString());
    const values = { unikernelType: 'linux', hypervisor: 'qemu', binary: '/boot/vmlinuz', initrd: '/boot/initrd.cpio' };
    const path = join(work, 'linux.tar');
    await writeOciArchive(path, {
      layers: [[{ name: 'boot/', type: 'directory' }, { name: 'boot/vmlinuz', body: await readFile(assets.kernel) }, { name: 'boot/initrd.cpio', body: cpio.stdout }], [uruncJsonFile(values)]],
      annotations: full(values),
      cmd: ['/init', 'from-image'],
    });
    const inspected = lapin(['inspect', path]);
    assert.equal(inspected.status, 0, inspected.stdout);
    // TCG, as every boot test: some nested-KVM hosts run a paused vCPU (kvmUsable's probe) and
    // even real-mode code, yet never get a Linux guest past its first line.
    const r = lapin(['run', '--accel', 'tcg', '--timeout', '300', path, '--', '/init', 'first-arg', 'second.arg=2']);
    assert.equal(r.status, 0, r.stderr + r.stdout.slice(-3000));
    assert.ok(r.stdout.includes('LAPIN-RUN-MARKER args:first-arg second.arg=2:'), `no marker with the args in:\n${r.stdout.slice(-3000)}`);
    assert.match(r.stdout, /reboot: Power down/);
    assert.match(r.stderr, /rdinit=\/init -- first-arg second.arg=2/);
  });

  /** A Linux initrd image from `files` (path in the initrd -> content; executable when it starts with #!). */
  async function linuxImage(name: string, files: Record<string, string>): Promise<string> {
    const assets = await fetchBootAssets();
    const tree = join(work, `${name}-tree`);
    await mkdir(join(tree, 'bin'), { recursive: true });
    await copyFile(assets.busybox, join(tree, 'bin/busybox'));
    await chmod(join(tree, 'bin/busybox'), 0o755);
    await symlink('busybox', join(tree, 'bin/sh'));
    for (const [file, content] of Object.entries(files)) await writeFile(join(tree, file), content, { mode: content.startsWith('#!') ? 0o755 : 0o644 });
    const cpio = spawnSync('sh', ['-c', 'find . | LC_ALL=C sort | cpio -o -H newc --quiet'], { cwd: tree, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(cpio.status, 0, cpio.stderr.toString());
    const values = { unikernelType: 'linux', hypervisor: 'qemu', binary: '/boot/vmlinuz', initrd: '/boot/initrd.cpio' };
    const path = join(work, `${name}.tar`);
    await writeOciArchive(path, {
      layers: [[{ name: 'boot/', type: 'directory' }, { name: 'boot/vmlinuz', body: await readFile(assets.kernel) }, { name: 'boot/initrd.cpio', body: cpio.stdout }], [uruncJsonFile(values)]],
      annotations: full(values),
      cmd: ['/init'],
    });
    return path;
  }

  test('a guest kernel panic is not success: an initrd without /init exits 125, with a TMPDIR holding a space', async () => {
    const path = await linuxImage('no-init', { 'marker.txt': 'no init here\n' });
    const tmp = join(work, 'tmp dir with space');
    await mkdir(tmp, { recursive: true });
    const r = lapin(['run', '--accel', 'tcg', '--timeout', '300', path], { TMPDIR: tmp });
    // With no rdinit to run, Debian's kernel tries root=/dev/ram0 and panics there.
    assert.match(r.stdout, /Kernel panic - not syncing: VFS: Unable to mount root fs/, r.stderr + r.stdout.slice(-3000));
    assert.equal(r.status, 125, r.stderr);
    assert.match(r.stderr, /^lapin: the guest kernel panicked: VFS: Unable to mount root fs.* \(exit 125\)$/m);
    // The printed command quotes the kernel path, which holds the space; qemu got it as one argument (it booted).
    assert.match(r.stderr, /-kernel '[^']*tmp dir with space\/lapin-run-[^']*'/);
  });

  test("the status of the guest's init is passed through: init exiting 3 exits 3", async () => {
    const path = await linuxImage('exit-3', { init: '#!/bin/sh\necho LAPIN-INIT-EXITING\nexit 3\n' });
    const r = lapin(['run', '--accel', 'tcg', '--timeout', '300', path]);
    assert.match(r.stdout, /LAPIN-INIT-EXITING/, r.stderr + r.stdout.slice(-3000));
    assert.match(r.stdout, /Attempted to kill init! exitcode=0x00000300/);
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /^lapin: the guest's init ended with status 3 and the kernel panicked: Attempted to kill init! exitcode=0x00000300 \(exit 3\)$/m);
  });
});
