// The monitor command lines lapin run builds, against the argument lists
// urunc builds. Each expected list is written out from urunc's source
// (github.com/urunc-dev/urunc, pkg/unikontainers), file and commit named
// per case; urunc always has a tap device, so these cases pass one.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { monitorCommand, type MonitorRequest } from '../../src/run/monitor.js';
import { LapinError } from '../../src/errors.js';

const network = { tap: 'tap0', ip: '10.0.0.2', gateway: '10.0.0.1', mask: '255.255.255.0', mac: 'aa:bb:cc:dd:ee:ff' };
const base: MonitorRequest = { guest: 'linux', monitor: 'qemu', kernel: '/.boot/kernel', processArgs: [], env: [], accel: 'kvm', architecture: 'amd64', network };
/** hypervisors/qemu.go @ d7f875e5, BuildExecCmd: the fixed head of every qemu command. */
const QEMU_HEAD = ['-m', '256M', '-L', '/usr/share/qemu', '-cpu', 'host', '-enable-kvm', '-display', 'none', '-vga', 'none', '-serial', 'stdio', '-monitor', 'null'];
/** qemu.go: the generic virtio nic when the guest names no network arguments. */
const QEMU_NET = ['-net', 'nic,model=virtio,macaddr=aa:bb:cc:dd:ee:ff', '-net', 'tap,script=no,downscript=no,ifname=tap0'];

describe('lapin run --print: the argument lists urunc builds', () => {
  test('linux on qemu with an initrd (qemu.go @d7f875e5, unikernels/linux.go @1b26bc7c)', () => {
    const command = monitorCommand({ ...base, initrd: '/.boot/rootfs', processArgs: ['/init', 'a', 'b c'], env: ['PATH=/bin'] });
    assert.equal(command.program, 'qemu-system-x86_64');
    assert.deepEqual(command.args, [
      ...QEMU_HEAD, '-kernel', '/.boot/kernel', ...QEMU_NET, '-initrd', '/.boot/rootfs', '-no-reboot', '-nodefaults',
      // linux.go CommandString: rdinit= for an initrd, args with spaces single-quoted (parseCmdLine).
      '-append', "panic=-1 console=ttyS0 root=/dev/ram0 rw ip=10.0.0.2::10.0.0.1:255.255.255.0:urunc:eth0:off PATH=/bin rdinit=/init -- a 'b c'",
    ]);
  });

  test('linux on qemu with a block rootfs (linux.go @1b26bc7c MonitorBlockCli)', () => {
    const command = monitorCommand({ ...base, block: '/.boot/rootfs', blkMntPoint: '/', processArgs: ['/sbin/init'] });
    assert.deepEqual(command.args, [
      ...QEMU_HEAD, '-kernel', '/.boot/kernel', ...QEMU_NET,
      '-device', 'virtio-blk-pci,serial=rootfs,drive=rootfs', '-drive', 'format=raw,if=none,id=rootfs,file=/.boot/rootfs',
      '-no-reboot', '-nodefaults', '-append', 'panic=-1 console=ttyS0 root=/dev/vda rw ip=10.0.0.2::10.0.0.1:255.255.255.0:urunc:eth0:off init=/sbin/init -- ',
    ]);
  });

  test('linux on qemu: a gateway outside the subnet adds URUNIT_DEFROUTE=1; no args is refused like urunc ("no init was specified")', () => {
    const command = monitorCommand({ ...base, initrd: '/i', processArgs: ['/init'], network: { ...network, gateway: '192.168.1.1' } });
    assert.match(command.guestCommandLine, / URUNIT_DEFROUTE=1 rdinit=\/init -- $/);
    assert.throws(() => monitorCommand({ ...base, processArgs: [] }), (error: unknown) => error instanceof LapinError && /no init was specified/.test(error.message) && /lapin run IMAGE -- \/sbin\/init/.test(error.hint ?? ''));
  });

  test('linux with an empty first arg (Cmd [""], what a bunnyfile with no cmd gets): no init= at all, as linux.go\'s `if l.App != ""`', () => {
    for (const [storage, root] of [[{ initrd: '/.boot/rootfs' }, 'root=/dev/ram0 rw'], [{ block: '/.boot/rootfs', blkMntPoint: '/' }, 'root=/dev/vda rw']] as const) {
      const command = monitorCommand({ ...base, ...storage, network: undefined, processArgs: [''] });
      assert.equal(command.guestCommandLine, `panic=-1 console=ttyS0 ${root}`);
    }
  });

  test('linux on firecracker (hypervisors/firecracker.go @efbd251b): --no-api and a JSON config', () => {
    const command = monitorCommand({ ...base, monitor: 'firecracker', initrd: '/.boot/rootfs', processArgs: ['/init'], firecrackerConfigPath: '/tmp/fc.json', seccomp: true });
    assert.equal(command.program, 'firecracker');
    assert.deepEqual(command.args, ['--no-api', '--config-file', '/tmp/fc.json']);
    assert.deepEqual(JSON.parse(command.files[0]?.content ?? ''), {
      'boot-source': { kernel_image_path: '/.boot/kernel', boot_args: 'panic=-1 console=ttyS0 root=/dev/ram0 rw ip=10.0.0.2::10.0.0.1:255.255.255.0:urunc:eth0:off rdinit=/init -- ', initrd_path: '/.boot/rootfs' },
      'machine-config': { vcpu_count: 1, mem_size_mib: 256, smt: false, track_dirty_pages: false },
      drives: [],
      'network-interfaces': [{ iface_id: 'net1', guest_mac: 'aa:bb:cc:dd:ee:ff', host_dev_name: 'tap0' }],
    });
    assert.deepEqual(monitorCommand({ ...base, monitor: 'firecracker', processArgs: ['/init'] }).args.at(-1), '--no-seccomp');
  });

  test('unikraft on qemu, current and pre-0.16.1 arguments (unikernels/unikraft.go @efbd251b)', () => {
    const current = monitorCommand({ ...base, guest: 'unikraft', initrd: '/.boot/rootfs', processArgs: ['nginx', '-c', '/nginx.conf'], env: ['A=1'], unikernelVersion: '0.17.0' });
    assert.deepEqual(current.args, [
      ...QEMU_HEAD, '-kernel', '/.boot/kernel', ...QEMU_NET, '-initrd', '/.boot/rootfs',
      '-append', 'nginx env.vars=[ A=1 ] netdev.ip=10.0.0.2/24:10.0.0.1:8.8.8.8   vfs.fstab=[ "initrd0:/:extract:::" ] -- -c /nginx.conf',
    ]);
    const compat = monitorCommand({ ...base, guest: 'unikraft', initrd: '/.boot/rootfs', processArgs: ['app'], unikernelVersion: '0.15.0' });
    assert.equal(compat.args.at(-1), 'app  netdev.ipv4_addr=10.0.0.2 netdev.ipv4_gw_addr=10.0.0.1 netdev.ipv4_subnet_mask=255.255.255.0 vfs.rootfs=initrd -- ');
  });

  test('mirage on solo5-hvt and solo5-spt (hypervisors/hvt.go, spt.go, unikernels/mirage.go @efbd251b)', () => {
    for (const monitor of ['hvt', 'spt']) {
      const command = monitorCommand({ ...base, guest: 'mirage', monitor, kernel: '/unikernel/net.hvt', block: '/disk.img', processArgs: ['--port', '8080'] });
      assert.equal(command.program, `solo5-${monitor}`);
      assert.deepEqual(command.args, ['--mem=256', '--net:service=tap0', '--block:storage=/disk.img', '/unikernel/net.hvt', '--ipv4=10.0.0.2/24', '--ipv4-gateway=10.0.0.1', '--port', '8080']);
    }
    // urunc 0.8's solo5NetDev/solo5BlkDev rename the devices.
    const named = monitorCommand({ ...base, guest: 'mirage', monitor: 'hvt', processArgs: [], solo5NetDev: 'net0' });
    assert.deepEqual(named.args.slice(0, 2), ['--mem=256', '--net:net0=tap0']);
  });

  test('rumprun on solo5-hvt: the JSON command line (unikernels/rumprun.go @efbd251b)', () => {
    const command = monitorCommand({ ...base, guest: 'rumprun', monitor: 'hvt', kernel: '/k', block: '/data.img', processArgs: ['redis-server', '/data/redis.conf'] });
    const json = '{"cmdline":"redis-server /data/redis.conf","net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"10.0.0.2","mask":"1","gw":"10.0.0.1"},"blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/data"}}';
    assert.equal(command.guestCommandLine, json);
    // hvt.go splits the whole string on spaces; solo5 joins the trailing args back.
    assert.deepEqual(command.args, ['--mem=256', '--net:tap=tap0', '--block:rootfs=/data.img', '/k', ...json.split(' ')]);
  });

  test('mewz on qemu (unikernels/mewz.go @efbd251b): its own nic and isa-debug-exit; the args are not used', () => {
    const command = monitorCommand({ ...base, guest: 'mewz', processArgs: ['ignored'] });
    assert.deepEqual(command.args, [
      ...QEMU_HEAD, '-kernel', '/.boot/kernel',
      '-device', 'virtio-net-pci,netdev=net0,disable-legacy=on,disable-modern=off', '-netdev', 'tap,script=no,downscript=no,id=net0,ifname=tap0',
      '-no-reboot', '-device', 'isa-debug-exit,iobase=0x501,iosize=2', '-append', 'ip=10.0.0.2/24 gateway=10.0.0.1 ',
    ]);
  });

  test('hermit on qemu (unikernels/hermit_rs.go @1951ae86)', () => {
    const command = monitorCommand({ ...base, guest: 'hermit', processArgs: ['hello', 'world'] });
    assert.deepEqual(command.args, [
      ...QEMU_HEAD, '-kernel', '/.boot/kernel',
      '-netdev', 'tap,id=net0,ifname=tap0,script=no,downscript=no', '-device', 'virtio-net-pci,netdev=net0,disable-legacy=on,mac=aa:bb:cc:dd:ee:ff',
      '-no-reboot', '-append', 'ip=10.0.0.2/24 gateway=10.0.0.1 -- hello world',
    ]);
  });

  test('mirage on qemu; without a network (lapin run) qemu gets -nic none; TCG replaces -cpu host -enable-kvm', () => {
    const command = monitorCommand({ ...base, guest: 'mirage', network: undefined, accel: 'tcg', memory: 512, processArgs: ['--hello'] });
    assert.deepEqual(command.args, ['-m', '512M', '-L', '/usr/share/qemu', '-cpu', 'max', '-accel', 'tcg', '-display', 'none', '-vga', 'none', '-serial', 'stdio', '-monitor', 'null', '-kernel', '/.boot/kernel', '-nic', 'none', '-append', '  --hello']);
    assert.match(command.notes.join('\n'), /^KVM is not usable here .*: qemu emulates the CPU with TCG/);
    const chosen = monitorCommand({ ...base, guest: 'mirage', network: undefined, accel: 'tcg', accelChosen: true, processArgs: [] });
    assert.deepEqual(chosen.notes, ['--accel tcg: qemu emulates the CPU with TCG, where urunc would pass -cpu host -enable-kvm']);
  });

  test('monitors lapin run does not drive yet are named', () => {
    assert.throws(
      () => monitorCommand({ ...base, monitor: 'cloud-hypervisor', processArgs: ['/init'] }),
      (error: unknown) => {
        // A LapinError, so the CLI prints what to do instead of "run with --debug for details".
        assert.ok(error instanceof LapinError);
        assert.equal(error.describe(), 'lapin run does not build cloud-hypervisor command lines yet; it knows qemu, firecracker, hvt and spt (run the image under urunc, which starts cloud-hypervisor itself; lapin inspect shows what urunc reads from it)');
        return true;
      },
    );
  });
});

describe('lapin run: host paths stay one argument each (argv arrays end to end)', () => {
  const spaced = '/tmp/a dir/lapin-run-x';
  test('qemu: kernel, initrd and block paths with spaces; a comma in the block path is doubled for -drive', () => {
    const linux = monitorCommand({ ...base, network: undefined, kernel: `${spaced}/kernel`, initrd: `${spaced}/initrd`, processArgs: ['/init'] });
    assert.equal(linux.args[linux.args.indexOf('-kernel') + 1], `${spaced}/kernel`);
    assert.equal(linux.args[linux.args.indexOf('-initrd') + 1], `${spaced}/initrd`);
    const block = monitorCommand({ ...base, network: undefined, kernel: `${spaced}/kernel`, block: `${spaced}/disk,1.img`, blkMntPoint: '/', processArgs: ['/init'] });
    assert.equal(block.args[block.args.indexOf('-drive') + 1], `format=raw,if=none,id=rootfs,file=${spaced}/disk,,1.img`);
  });
  test('solo5: the kernel and the block flag are one argument each', () => {
    const command = monitorCommand({ ...base, guest: 'mirage', monitor: 'hvt', network: undefined, kernel: `${spaced}/k.hvt`, block: `${spaced}/disk.img`, processArgs: [] });
    assert.ok(command.args.includes(`${spaced}/k.hvt`), command.args.join('|'));
    assert.ok(command.args.includes(`--block:storage=${spaced}/disk.img`), command.args.join('|'));
  });
});
