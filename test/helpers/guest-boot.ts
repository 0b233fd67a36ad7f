// What the boot tests share: Debian's kernel, busybox-static and kernel
// modules (scripts/fetch-boot-assets.sh), the urunc values of an unpacked
// bundle read as urunc reads them, qemu under TCG, and a small helper initrd
// that loads the modules a virtio disk needs (Debian builds virtio_blk and
// ext4 as modules), mounts the block image as the root and switches to it.
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { isCI, requireConsumers, type UmociUnpackResult } from '../consumers/harness.js';

export const toolEnv = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` };

/** How long a TCG boot of Debian's kernel may take on these 2-core machines. */
export const BOOT_TIMEOUT_MS = 180_000;

/**
 * Why a boot test cannot run here, or false. Under CI a missing tool fails
 * the run instead: CI must boot.
 */
export function bootSkip(what: string, programs: readonly string[]): string | false {
  const umoci = requireConsumers(['umoci']);
  const missing = programs.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`], { env: toolEnv, stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return umoci;
  const reason = `missing ${missing.join(', ')} (scripts/install-deps.sh installs them)`;
  if (isCI()) throw new Error(`CI must run ${what}: ${reason}`);
  return reason;
}

/** A bunnyfile for a Linux guest on qemu booting the context's `vmlinuz` with `rootfs` (indented YAML lines). */
export function linuxGuestBunnyfile(rootfs: string, args: readonly string[]): string {
  return `version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: local
  path: vmlinuz
rootfs:
${rootfs}cmd: ${JSON.stringify(args)}
`;
}

export interface BootAssets {
  kernel: string;
  busybox: string;
  /** lib/modules/<version> of the kernel package, holding only what the fetch script unpacked. */
  modules: string;
}

export async function fetchBootAssets(): Promise<BootAssets> {
  const script = path.resolve('scripts/fetch-boot-assets.sh');
  const { stdout } = await promisify(execFile)(script, [], { env: toolEnv, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  const value = (key: string): string => {
    const line = stdout.split('\n').find((l) => l.startsWith(`${key}=`));
    if (!line) throw new Error(`fetch-boot-assets.sh printed no ${key}:\n${stdout}`);
    return line.slice(key.length + 1);
  };
  return { kernel: value('KERNEL'), busybox: value('BUSYBOX'), modules: value('MODULES') };
}

/** A busybox rootfs tree: bin/busybox, bin/sh linked to it, and an executable /init with `script`'s text. */
export async function busyboxRootfs(tree: string, busybox: string, script: string): Promise<void> {
  await mkdir(path.join(tree, 'bin'), { recursive: true });
  await copyFile(busybox, path.join(tree, 'bin/busybox'));
  await chmod(path.join(tree, 'bin/busybox'), 0o755);
  await symlink('busybox', path.join(tree, 'bin/sh'));
  await writeFile(path.join(tree, 'init'), script);
  await chmod(path.join(tree, 'init'), 0o755);
}

/** Debian's arm64 kernel and busybox-static:arm64 (scripts/fetch-boot-assets.sh arm64, after dpkg --add-architecture arm64). */
export async function fetchArm64BootAssets(): Promise<{ kernel: string; busybox: string }> {
  const { stdout } = await promisify(execFile)(path.resolve('scripts/fetch-boot-assets.sh'), ['arm64'], { env: toolEnv, timeout: 600_000 });
  const value = (key: string): string => {
    const line = stdout.split('\n').find((l) => l.startsWith(`${key}=`));
    if (!line) throw new Error(`fetch-boot-assets.sh arm64 printed no ${key}:\n${stdout}`);
    return line.slice(key.length + 1);
  };
  return { kernel: value('KERNEL'), busybox: value('BUSYBOX') };
}

/** The CLI run from source in `cwd` (with /usr/sbin on PATH), killed after a boot's time. */
export function lapinCli(args: readonly string[], cwd: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const cli = ['--import', import.meta.resolve('tsx'), path.resolve('src/cli/main.ts')];
  return new Promise((done) => {
    const child = spawn(process.execPath, [...cli, ...args], { cwd, env: toolEnv });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), BOOT_TIMEOUT_MS);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

/** The urunc values of an unpacked bundle, read the way urunc reads them: /urunc.json, base64, prefix dropped. */
export async function uruncValues(unpacked: UmociUnpackResult): Promise<Record<string, string>> {
  const encoded = JSON.parse(await readFile(inBundle(unpacked, 'urunc.json'), 'utf8')) as Record<string, string>;
  return Object.fromEntries(Object.entries(encoded).map(([key, value]) => [key.replace(/^com\.urunc\.unikernel\./, ''), Buffer.from(value, 'base64').toString('utf8')]));
}

export function inBundle(unpacked: UmociUnpackResult, imagePath: string): string {
  return path.join(unpacked.bundleDir, unpacked.config.root?.path ?? 'rootfs', imagePath);
}

/** Runs qemu and resolves with everything it printed once the guest powers off (or the timeout kills it). */
export function bootQemu(args: readonly string[], timeoutMs: number): Promise<{ code: number | null; output: string; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-system-x86_64', args, { env: toolEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

// ---------------------------------------------------------------------------
// Kernel modules: the .modinfo section of each, and a load order.

/** The key=value strings of an ELF64 little-endian module's .modinfo section. */
export function modinfo(module: Buffer): Map<string, string[]> {
  if (module.length < 64 || module.readUInt32BE(0) !== 0x7f454c46 || module[4] !== 2 || module[5] !== 1) throw new Error('not an ELF64 little-endian kernel module');
  const sectionTable = Number(module.readBigUInt64LE(0x28));
  const entrySize = module.readUInt16LE(0x3a);
  const count = module.readUInt16LE(0x3c);
  const namesIndex = module.readUInt16LE(0x3e);
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = sectionTable + i * entrySize;
    return { name: module.readUInt32LE(at), offset: Number(module.readBigUInt64LE(at + 0x18)), size: Number(module.readBigUInt64LE(at + 0x20)) };
  };
  const names = section(namesIndex);
  const info = new Map<string, string[]>();
  for (let i = 0; i < count; i++) {
    const s = section(i);
    const nameEnd = module.indexOf(0, names.offset + s.name);
    if (module.toString('latin1', names.offset + s.name, nameEnd) !== '.modinfo') continue;
    for (const entry of module.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const key = entry.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
    }
    return info;
  }
  throw new Error('the module has no .modinfo section');
}

/** A module's name as the kernel spells it: file name without .ko[.xz|.zst|.gz], dashes as underscores. */
const moduleName = (file: string): string => path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

/** The module's ELF bytes; Debian 12 ships plain .ko, later releases may compress them. */
function moduleBytes(file: string, busybox: string): Buffer {
  if (file.endsWith('.ko')) return readFileSync(file);
  if (file.endsWith('.gz')) return gunzipSync(readFileSync(file));
  // busybox-static carries an xz decoder; zstd comes from scripts/install-deps.sh.
  if (file.endsWith('.xz')) return execFileSync(busybox, ['xzcat', file], { maxBuffer: 64 * 1024 * 1024 });
  return execFileSync('zstd', ['-dc', file], { env: toolEnv, maxBuffer: 64 * 1024 * 1024 });
}

interface KernelModule {
  name: string;
  data: Buffer;
  info: Map<string, string[]>;
}

async function moduleFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await moduleFiles(full)));
    else if (/\.ko(\.(xz|zst|gz))?$/.test(entry.name)) found.push(full);
  }
  return found;
}

/**
 * The modules to insmod, dependencies first, for `wanted` (module names):
 * `depends=` from each module's .modinfo, and `softdep=pre:` names or
 * aliases (ext4 and jbd2 want crypto-crc32c) when a module here provides them.
 */
export async function moduleLoadOrder(modulesDir: string, wanted: readonly string[], busybox: string): Promise<KernelModule[]> {
  const byName = new Map<string, KernelModule>();
  for (const file of await moduleFiles(modulesDir)) {
    const data = moduleBytes(file, busybox);
    byName.set(moduleName(file), { name: moduleName(file), data, info: modinfo(data) });
  }
  const byAlias = new Map<string, string>();
  for (const module of byName.values()) for (const alias of module.info.get('alias') ?? []) if (!byAlias.has(alias)) byAlias.set(alias, module.name);

  const order: KernelModule[] = [];
  const visiting = new Set<string>();
  const visit = (name: string, neededBy: string): void => {
    const normalized = name.replace(/-/g, '_');
    const module = byName.get(normalized);
    if (!module) throw new Error(`kernel module ${name} (needed by ${neededBy}) is not in ${modulesDir}; add it to scripts/fetch-boot-assets.sh`);
    if (order.includes(module) || visiting.has(normalized)) return;
    visiting.add(normalized);
    for (const softdep of module.info.get('softdep') ?? []) {
      const pre = /pre:\s*(.*?)\s*(post:|$)/.exec(softdep)?.[1] ?? '';
      for (const dep of pre.split(/\s+/).filter(Boolean)) {
        const provider = byName.has(dep.replace(/-/g, '_')) ? dep : byAlias.get(dep);
        if (provider) visit(provider, normalized);
      }
    }
    for (const dep of (module.info.get('depends') ?? []).join(',').split(',').filter(Boolean)) visit(dep, normalized);
    order.push(module);
  };
  for (const name of wanted) visit(name, 'the test');
  return order;
}

// ---------------------------------------------------------------------------
// The helper initrd: stands in for the part of urunc + a kernel with virtio_blk built in.

const shellQuote = (word: string): string => `'${word.replace(/'/g, `'\\''`)}'`;

/** A marker the helper prints once the block device is mounted, followed by its /proc/mounts line. */
export const HELPER_MOUNTED = 'LAPIN-HELPER-MOUNTED:';
export const HELPER_FAILED = 'LAPIN-HELPER-FAILED:';

/**
 * Writes a newc initrd (GNU cpio) whose /init loads `modules` in order,
 * mounts /dev/vda read-only as ext4 and `switch_root`s into it, running
 * `init` there with the arguments the kernel passes after `--`. Returns its path.
 */
export async function writeHelperInitrd(options: { dir: string; busybox: string; modules: readonly KernelModule[]; init: string }): Promise<string> {
  const stage = await mkdtemp(path.join(options.dir, 'helper-'));
  try {
    for (const dir of ['bin', 'dev', 'proc', 'newroot', 'modules']) await mkdir(path.join(stage, dir));
    await copyFile(options.busybox, path.join(stage, 'bin/busybox'));
    await chmod(path.join(stage, 'bin/busybox'), 0o755);
    await Promise.all(options.modules.map((m, i) => writeFile(path.join(stage, 'modules', `${String(i).padStart(2, '0')}-${m.name}.ko`), m.data)));
    const script = `#!/bin/busybox sh
bb=/bin/busybox
fail() { $bb echo "${HELPER_FAILED} $*"; $bb poweroff -f; }
$bb mount -t proc proc /proc || fail mount proc
$bb mount -t devtmpfs devtmpfs /dev || fail mount devtmpfs
for module in /modules/*.ko; do $bb insmod "$module" || fail insmod "$module"; done
tries=0
while [ ! -b /dev/vda ]; do
  tries=$((tries + 1)); [ "$tries" -gt 100 ] && fail no /dev/vda
  $bb usleep 100000
done
$bb mount -t ext4 -o ro /dev/vda /newroot || fail mount /dev/vda
$bb echo "${HELPER_MOUNTED} $($bb grep ' /newroot ' /proc/mounts)"
$bb umount /proc
exec $bb switch_root /newroot ${shellQuote(options.init)} "$@"
`;
    await writeFile(path.join(stage, 'init'), script);
    await chmod(path.join(stage, 'init'), 0o755);
    const initrd = path.join(options.dir, 'helper.cpio');
    const names = execFileSync('find', ['.', '-mindepth', '1', '-print0'], { cwd: stage }).toString('utf8');
    execFileSync('cpio', ['--null', '-o', '-H', 'newc', '--quiet', '--owner=0:0', '-O', initrd], { cwd: stage, input: names, env: toolEnv });
    return initrd;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
