/**
 * The monitor command line urunc builds for each guest, rebuilt here so a
 * user can boot an image without a container runtime. Sources, in
 * github.com/urunc-dev/urunc pkg/unikontainers:
 *   hypervisors/qemu.go          @ d7f875e5 (BuildExecCmd)
 *   hypervisors/firecracker.go   @ efbd251b (config file + --no-api)
 *   hypervisors/hvt.go, spt.go   @ efbd251b (solo5-hvt/spt --mem=... kernel args)
 *   unikernels/linux.go          @ 1b26bc7c (CommandString, MonitorCli, parseCmdLine)
 *   unikernels/unikraft.go, mirage.go, rumprun.go, mewz.go @ efbd251b
 *   unikernels/hermit_rs.go      @ 1951ae86
 * Where lapin differs (no network, no /urunit.conf injection), the
 * difference is reported as a note.
 */
import { LapinError } from '../errors.js';

export interface GuestNetwork {
  tap: string;
  ip: string;
  gateway: string;
  /** Dotted mask, e.g. 255.255.255.0. */
  mask: string;
  mac?: string;
}

export interface MonitorRequest {
  guest: string;
  monitor: string;
  /** Host paths of the files urunc would hand to the monitor. */
  kernel: string;
  initrd?: string;
  block?: string;
  /** urunc values that shape the command. */
  blkMntPoint?: string;
  mountRootfs?: boolean;
  unikernelVersion?: string;
  solo5NetDev?: string;
  solo5BlkDev?: string;
  /** The container's process args (Entrypoint + Cmd, or the args given to run). */
  processArgs: string[];
  env: string[];
  /** Megabytes; urunc's default is 256. */
  memory?: number;
  accel: 'kvm' | 'tcg';
  /** The user chose `accel` (--accel), rather than lapin finding KVM unusable. */
  accelChosen?: boolean;
  architecture: 'amd64' | 'arm64';
  /** urunc always has a tap device; lapin run has none. Tests pass one to compare with urunc. */
  network?: GuestNetwork;
  /** Where firecracker's JSON config goes. */
  firecrackerConfigPath?: string;
  /** urunc enables the monitor's seccomp filter by default. */
  seccomp?: boolean;
}

export interface MonitorCommand {
  /** argv[0] as urunc looks it up on PATH. */
  program: string;
  args: string[];
  /** Files the monitor reads that the command names (firecracker's config). */
  files: Array<{ path: string; content: string }>;
  /** The guest's command line. */
  guestCommandLine: string;
  notes: string[];
}

export const DEFAULT_MEMORY_MB = 256;

/** Which storage urunc hands the guest: initrd if set; else a block image mounted at /; else the container rootfs. */
export function rootfsType(request: Pick<MonitorRequest, 'initrd' | 'block' | 'blkMntPoint' | 'mountRootfs'>): 'initrd' | 'block' | '9pfs' | '' {
  if (request.initrd) return 'initrd';
  if (request.block && request.blkMntPoint === '/') return 'block';
  if (request.mountRootfs) return '9pfs';
  return '';
}

function subnetMaskToCidr(mask: string): number {
  return mask.split('.').reduce((bits, part) => bits + [...Number(part).toString(2)].filter((c) => c === '1').length, 0);
}

function ipv4(text: string): number[] | undefined {
  const parts = text.split('.').map(Number);
  return parts.length === 4 && parts.every((p) => Number.isInteger(p) && p >= 0 && p <= 255) ? parts : undefined;
}

/** linux.go IsIPInSubnet: Go's nil IPs compare equal, so "no network" counts as in the subnet. */
function ipInSubnet(network: GuestNetwork | undefined): boolean {
  if (!network) return true;
  const ip = ipv4(network.ip);
  const gateway = ipv4(network.gateway);
  const mask = ipv4(network.mask);
  if (!ip || !gateway || !mask) return true;
  return ip.every((byte, i) => (byte & (mask[i] ?? 0)) === ((gateway[i] ?? 0) & (mask[i] ?? 0)));
}

function linuxCommandLine(request: MonitorRequest): { text: string; notes: string[] } {
  const notes: string[] = [];
  if (request.processArgs.length === 0) {
    throw new LapinError('no init was specified: a linux guest needs process args, and the image has neither Entrypoint nor Cmd', {
      hint: 'give the init after --, e.g. lapin run IMAGE -- /sbin/init',
    });
  }
  const args = request.processArgs.map((arg) => {
    const trimmed = arg.trim();
    return trimmed.includes(' ') ? `'${trimmed}'` : trimmed;
  });
  const app = args[0] as string;
  const command = args.slice(1).join(' ');
  const usesUrunit = app.includes('urunit');
  let text = 'panic=-1';
  text += request.architecture === 'arm64' && request.monitor === 'qemu' ? ' console=ttyAMA0' : ' console=ttyS0';
  let rdinit = '';
  switch (rootfsType(request)) {
    case 'block':
      text += ' root=/dev/vda rw';
      break;
    case 'initrd':
      text += ' root=/dev/ram0 rw';
      rdinit = 'rd';
      break;
    case '9pfs':
      text += ' root=fs0 rw rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=5000000,cache=mmap,posixacl';
      break;
    default:
      break;
  }
  if (request.network) text += ` ip=${request.network.ip}::${request.network.gateway}:${request.network.mask}:urunc:eth0:off`;
  if (!usesUrunit) {
    for (const variable of request.env) text += ` ${variable}`;
  } else {
    text += rootfsType(request) === 'initrd' ? ' URUNIT_CONFIG=/urunit.conf' : ' retain_initrd URUNIT_CONFIG=/sys/firmware/initrd';
    notes.push('urunc writes /urunit.conf (environment, user, working directory) for urunit; lapin run does not, so urunit starts with its defaults');
  }
  if (!ipInSubnet(request.network)) text += ' URUNIT_DEFROUTE=1';
  // linux.go CommandString: an empty first arg (Cmd [""]) adds no init= at all; the kernel's default init runs.
  if (app !== '') text += ` ${rdinit}init=${app} -- ${command}`;
  return { text, notes };
}

function unikraftCommandLine(request: MonitorRequest): string {
  const [app = '', ...rest] = request.processArgs;
  const env = request.env.length > 0 ? `env.vars=[ ${request.env.join(' ')} ]` : '';
  const version = request.unikernelVersion;
  // unikraft.go: versions before 0.16.1 take the old netdev/vfs arguments; none or unparsable takes the current ones.
  const compat = version !== undefined && version !== '' && isVersion(version) && compareVersions(version, '0.16.1') < 0;
  const initrd = rootfsType(request) === 'initrd';
  let address = '';
  let gateway = '';
  let mask = '';
  let rootfs = '';
  const network = request.network;
  if (compat) {
    if (network) {
      address = `netdev.ipv4_addr=${network.ip}`;
      gateway = `netdev.ipv4_gw_addr=${network.gateway}`;
      mask = `netdev.ipv4_subnet_mask=${network.mask}`;
    }
    if (initrd) rootfs = 'vfs.rootfs=initrd';
  } else {
    if (network) address = `netdev.ip=${network.ip}/24:${network.gateway}:8.8.8.8`;
    if (initrd) rootfs = 'vfs.fstab=[ "initrd0:/:extract:::" ]';
  }
  return `${app} ${env} ${address} ${gateway} ${mask} ${rootfs} -- ${rest.join(' ')}`;
}

function isVersion(text: string): boolean {
  return /^v?\d+(\.\d+)*([-+].*)?$/.test(text);
}

function compareVersions(a: string, b: string): number {
  const parse = (text: string): number[] => text.replace(/^v/, '').split(/[-+]/)[0]!.split('.').map(Number);
  const left = parse(a);
  const right = parse(b);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

function mirageCommandLine(request: MonitorRequest): string {
  const network = request.network;
  const address = network ? `--ipv4=${network.ip}/24` : '';
  const gateway = network ? `--ipv4-gateway=${network.gateway}` : '';
  return `${address} ${gateway} ${request.processArgs.join(' ')}`;
}

function rumprunCommandLine(request: MonitorRequest): string {
  const blk = { source: 'etfs', path: '/dev/ld0a', fstype: 'blk', mountpoint: '/data' };
  const cmdline = request.processArgs.join(' ');
  if (!request.network) return JSON.stringify({ cmdline, blk });
  const net = {
    if: 'ukvmif0',
    cloner: 'True',
    type: 'inet',
    method: 'static',
    addr: request.network.ip,
    mask: String(subnetMaskToCidr('128.0.0.0')),
    gw: request.network.gateway,
  };
  return JSON.stringify({ cmdline, net, blk });
}

function mewzCommandLine(request: MonitorRequest): string {
  // mewz.go ignores the process args: the application is linked into the kernel.
  if (!request.network) return '';
  return `ip=${request.network.ip}/${subnetMaskToCidr(request.network.mask)} gateway=${request.network.gateway} `;
}

function hermitCommandLine(request: MonitorRequest): string {
  const parts: string[] = [];
  if (request.network) {
    parts.push(`ip=${request.network.ip}/${subnetMaskToCidr(request.network.mask)}`);
    parts.push(`gateway=${request.network.gateway}`);
  }
  const app = request.processArgs.join(' ').trim();
  if (parts.length > 0 && app !== '') parts.push('--');
  if (app !== '') parts.push(app);
  return parts.join(' ');
}

/** The guest command line urunc passes (qemu -append, firecracker boot_args, solo5 trailing args). */
export function guestCommandLine(request: MonitorRequest): { text: string; notes: string[] } {
  switch (request.guest) {
    case 'linux':
      return linuxCommandLine(request);
    case 'unikraft':
      return { text: unikraftCommandLine(request), notes: [] };
    case 'mirage':
      return { text: mirageCommandLine(request), notes: [] };
    case 'rumprun':
      return { text: rumprunCommandLine(request), notes: [] };
    case 'mewz':
      return { text: mewzCommandLine(request), notes: [] };
    case 'hermit':
      return { text: hermitCommandLine(request), notes: [] };
    default:
      throw new Error(`urunc has no guest type ${JSON.stringify(request.guest)}`);
  }
}

/**
 * urunc builds the monitor command as a string and splits it on spaces; lapin
 * builds the same words as an argv array, so that a path with a space (a
 * TMPDIR, a kernel name) stays one argument. Flags with fixed text are split
 * here; every value that comes from a path or the image is one element.
 */
function words(text: string): string[] {
  return text.split(' ').filter((word) => word !== '');
}

function qemuCommand(request: MonitorRequest, guestLine: string): MonitorCommand {
  const notes: string[] = [];
  const memory = request.memory ?? DEFAULT_MEMORY_MB;
  const program = `qemu-system-${request.architecture === 'arm64' ? 'aarch64' : 'x86_64'}`;
  const args = ['-m', `${memory}M`, '-L', '/usr/share/qemu'];
  args.push(...(request.accel === 'kvm' ? ['-cpu', 'host', '-enable-kvm'] : ['-cpu', 'max', '-accel', 'tcg']));
  if (request.accel === 'tcg') {
    const why = request.accelChosen ? '--accel tcg' : 'KVM is not usable here (no writable /dev/kvm, or it cannot run a vCPU)';
    notes.push(`${why}: qemu emulates the CPU with TCG, where urunc would pass -cpu host -enable-kvm`);
  }
  args.push(...words('-display none -vga none -serial stdio -monitor null'));
  if (request.seccomp) args.push('--sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  if (request.architecture === 'arm64') args.push('-M', 'virt');
  args.push('-kernel', request.kernel);
  const network = request.network;
  if (network) {
    if (request.guest === 'mewz') {
      args.push('-device', 'virtio-net-pci,netdev=net0,disable-legacy=on,disable-modern=off', '-netdev', `tap,script=no,downscript=no,id=net0,ifname=${network.tap}`);
    } else if (request.guest === 'hermit') {
      args.push('-netdev', `tap,id=net0,ifname=${network.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=net0,disable-legacy=on${network.mac ? `,mac=${network.mac}` : ''}`);
    } else {
      args.push('-net', `nic,model=virtio,macaddr=${network.mac ?? ''}`, '-net', `tap,script=no,downscript=no,ifname=${network.tap}`);
    }
  } else {
    args.push('-nic', 'none');
  }
  if (request.block && ['linux', 'mirage'].includes(request.guest)) {
    const id = request.guest === 'linux' ? 'rootfs' : (request.solo5BlkDev ?? 'storage');
    // qemu's option syntax doubles a comma inside a value: a path with a comma stays one file name.
    const file = request.block.replace(/,/g, ',,');
    args.push('-device', `virtio-blk-pci,serial=${id},drive=${id}${request.guest === 'linux' ? '' : ',scsi=off'}`, '-drive', `format=raw,if=none,id=${id},file=${file}`);
  } else if (request.block) {
    notes.push(`urunc attaches no block device to ${request.guest} guests on qemu; ${request.block} is left out`);
  }
  if (request.initrd) args.push('-initrd', request.initrd);
  if (rootfsType(request) === '9pfs') {
    notes.push('mountRootfs: urunc shares the container rootfs over 9pfs (or virtiofs/devmapper); lapin run shares nothing, so the guest finds no root file system');
  }
  if (request.guest === 'linux') args.push('-no-reboot', '-nodefaults');
  if (request.guest === 'mewz') args.push('-no-reboot', '-device', 'isa-debug-exit,iobase=0x501,iosize=2');
  if (request.guest === 'hermit') args.push('-no-reboot');
  return { program, args: [...args, '-append', guestLine], files: [], guestCommandLine: guestLine, notes };
}

function solo5Command(request: MonitorRequest, guestLine: string): MonitorCommand {
  const program = request.monitor === 'spt' ? 'solo5-spt' : 'solo5-hvt';
  const memory = request.memory ?? DEFAULT_MEMORY_MB;
  const args = [`--mem=${memory}`];
  const netFlag = request.guest === 'rumprun' ? '--net:tap=' : `--net:${request.solo5NetDev ?? 'service'}=`;
  const blockFlag = request.guest === 'rumprun' ? '--block:rootfs=' : `--block:${request.solo5BlkDev ?? 'storage'}=`;
  if (request.network) args.push(`${netFlag}${request.network.tap}`);
  if (request.block) args.push(`${blockFlag}${request.block}`);
  args.push(request.kernel);
  // The guest line is split on spaces, as urunc does: solo5 joins the trailing args back into the guest's command line.
  return { program, args: [...args, ...words(guestLine)], files: [], guestCommandLine: guestLine, notes: [] };
}

function firecrackerCommand(request: MonitorRequest, guestLine: string): MonitorCommand {
  const configPath = request.firecrackerConfigPath ?? '/tmp/fc.json';
  const args = ['--no-api', '--config-file', configPath];
  if (!request.seccomp) args.push('--no-seccomp');
  const bootArgs = request.architecture === 'arm64' ? `${guestLine} console=ttyS0` : guestLine;
  const config = {
    'boot-source': { kernel_image_path: request.kernel, boot_args: bootArgs, ...(request.initrd ? { initrd_path: request.initrd } : {}) },
    'machine-config': { vcpu_count: 1, mem_size_mib: request.memory ?? DEFAULT_MEMORY_MB, smt: false, track_dirty_pages: false },
    drives: request.block ? [{ drive_id: 'rootfs', is_read_only: false, is_root_device: true, path_on_host: request.block }] : [],
    'network-interfaces': request.network ? [{ iface_id: 'net1', guest_mac: request.network.mac ?? '', host_dev_name: request.network.tap }] : [],
  };
  const notes = request.accel === 'tcg' ? [request.accelChosen ? 'firecracker always uses KVM; --accel tcg does not change that' : 'firecracker needs KVM, which is not usable here'] : [];
  return { program: 'firecracker', args, files: [{ path: configPath, content: JSON.stringify(config) }], guestCommandLine: guestLine, notes };
}

/** The monitor invocation urunc would exec for this guest. */
export function monitorCommand(request: MonitorRequest): MonitorCommand {
  const guest = guestCommandLine(request);
  let command: MonitorCommand;
  switch (request.monitor) {
    case 'qemu':
      command = qemuCommand(request, guest.text);
      break;
    case 'hvt':
    case 'spt':
      command = solo5Command(request, guest.text);
      break;
    case 'firecracker':
      command = firecrackerCommand(request, guest.text);
      break;
    default:
      throw new LapinError(`lapin run does not build ${request.monitor} command lines yet; it knows qemu, firecracker, hvt and spt`, {
        hint: `run the image under urunc, which starts ${request.monitor} itself; lapin inspect shows what urunc reads from it`,
      });
  }
  command.notes.unshift(...guest.notes);
  return command;
}

/** One line a shell can run: arguments quoted where needed. */
export function shellLine(program: string, args: readonly string[]): string {
  const quote = (word: string): string => (/^[A-Za-z0-9_./:=,+@%-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  return [program, ...args].map(quote).join(' ');
}
