/**
 * lapin run: boot an image on this machine with the monitor its urunc values
 * name, with the command line urunc would build (src/run/monitor.ts).
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Writable } from 'node:stream';
import { LapinError } from '../errors.js';
import { inspectSource, type InspectReport } from '../inspect/inspect.js';
import { parseGoBool } from '../plan/rules.js';
import { openPlatformSource } from '../source/image-index.js';
import { openSource } from '../source/open.js';
import { flattenRootfs, normalizeImagePath } from '../source/rootfs.js';
import { escapeLine, escapeTerminalText } from '../text.js';
import { GuestConsoleWatch } from './guest-exit.js';
import { monitorCommand, shellLine, type MonitorRequest } from './monitor.js';
import { CONTAINER_ROOTFS_PATH, sharesRootfs, unpackRootfs, withSharedRootfs } from './shared-rootfs.js';

export interface RunOptions {
  source: string;
  /** Replace the image's Cmd (the Entrypoint stays), as `docker run IMAGE ARGS` does. */
  args?: string[];
  /** Show the command and do not run it. */
  print?: boolean;
  /** Megabytes of guest memory (default 256, urunc's default). */
  memory?: number;
  /** Seconds before the monitor is stopped; exit code 124 then. */
  timeout?: number;
  accel?: 'auto' | 'kvm' | 'tcg';
  /** "linux/arm64": the image of an index for that platform, instead of this machine's (docs/multi-platform.md). */
  platform?: string;
  stdout?: Writable;
  stderr?: Writable;
}

type FileKey = 'binary' | 'initrd' | 'block';

/** KVM is usable when /dev/kvm opens for reading and writing and, for qemu, a paused KVM machine starts. */
export async function kvmUsable(qemu?: string): Promise<boolean> {
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return false;
  }
  return qemu === undefined ? true : qemuKvmProbe(qemu);
}

/**
 * Nested virtualisation can offer /dev/kvm that cannot run a vCPU (qemu
 * aborts setting MSRs). A paused machine with QMP on stdin/stdout settles
 * it: query-status answers only once the vCPUs were reset.
 */
function qemuKvmProbe(qemu: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(qemu, ['-accel', 'kvm', '-cpu', 'host', '-m', '16', '-nodefaults', '-display', 'none', '-S', '-qmp', 'stdio', '-serial', 'none'], { stdio: ['pipe', 'pipe', 'ignore'] });
    let settled = false;
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), 10_000);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('"QMP"') && !output.includes('"return"')) {
        // Leaving capabilities negotiation resets the vCPUs: a broken KVM aborts there.
        child.stdin.write('{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n');
      }
      if (output.includes('"status"')) {
        clearTimeout(timer);
        finish(true);
      }
    });
    child.stdin.on('error', () => finish(false));
    child.on('error', () => finish(false));
    child.on('close', () => {
      clearTimeout(timer);
      finish(false);
    });
  });
}

export async function findOnPath(program: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

const INSTALL_HINTS: Record<string, string> = {
  'qemu-system-x86_64': 'install it (Debian: apt-get install qemu-system-x86)',
  'qemu-system-aarch64': 'install it (Debian: apt-get install qemu-system-arm)',
  'solo5-hvt': 'install Solo5 from https://github.com/Solo5/solo5 and put solo5-hvt on PATH',
  'solo5-spt': 'install Solo5 from https://github.com/Solo5/solo5 and put solo5-spt on PATH',
  firecracker: 'download a firecracker release and put the binary on PATH',
};

function requestFor(report: InspectReport, paths: { kernel: string; initrd?: string; block?: string }, options: RunOptions, accel: 'kvm' | 'tcg', configDir: string): MonitorRequest {
  const values = report.effective.values;
  const entrypoint = report.image.entrypoint;
  const processArgs = options.args !== undefined ? [...entrypoint, ...options.args] : report.commandLine.processArgs;
  const mountRootfs = parseGoBool(values.mountRootfs || values.useDMBlock || '') === true;
  return {
    guest: values.unikernelType ?? '',
    monitor: values.hypervisor ?? '',
    kernel: paths.kernel,
    ...(paths.initrd ? { initrd: paths.initrd } : {}),
    ...(paths.block ? { block: paths.block } : {}),
    ...(values.blkMntPoint ? { blkMntPoint: values.blkMntPoint } : {}),
    mountRootfs,
    ...(values.unikernelVersion ? { unikernelVersion: values.unikernelVersion } : {}),
    ...(values.solo5NetDev ? { solo5NetDev: values.solo5NetDev } : {}),
    ...(values.solo5BlkDev ? { solo5BlkDev: values.solo5BlkDev } : {}),
    processArgs,
    env: report.image.env,
    ...(options.memory !== undefined ? { memory: options.memory } : {}),
    accel,
    ...(options.accel === 'kvm' || options.accel === 'tcg' ? { accelChosen: true } : {}),
    architecture: bootArchitecture(report),
    firecrackerConfigPath: join(configDir, 'fc.json'),
  };
}

/**
 * The architecture the monitor is chosen for: the image's (amd64 when it says none). lapin runs
 * amd64 and arm64 guests only, and a kernel built for another one than that never boots there
 * (an index's riscv64 entry went to qemu-system-x86_64, an x86 kernel to qemu-system-aarch64).
 */
function bootArchitecture(report: InspectReport): 'amd64' | 'arm64' {
  const architecture = report.image.architecture ?? 'amd64';
  if (architecture !== 'amd64' && architecture !== 'arm64') {
    throw new LapinError(`${report.source.name} is an image for ${architecture}; lapin run boots amd64 and arm64 images`, { hint: 'run it with urunc on a host of that architecture' });
  }
  const kernel = report.files.find((f) => f.key === 'binary');
  if (kernel?.architecture && kernel.architecture !== architecture) {
    throw new LapinError(`${report.source.name} is an image for ${architecture}, but its kernel ${kernel.path} is built for ${kernel.architecture}`, { hint: `build the ${architecture} image with a kernel built for ${architecture}` });
  }
  return architecture;
}

function refuse(report: InspectReport): never {
  const reasons = report.errors.map((e) => e.message).join('; ');
  throw new LapinError(`urunc cannot run ${report.source.name}: ${reasons}`, { hint: `lapin inspect ${report.source.name} shows why` });
}

/** Runs (or prints) the image; resolves to the monitor's exit code. */
export async function run(options: RunOptions): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const source = options.platform !== undefined ? await openPlatformSource(options.source, options.platform) : await openSource(options.source);
  let workDir: string | undefined;
  try {
    const report = await inspectSource(source);
    // Its own words for a platform it cannot boot come before inspect's verdict, which also refuses a kernel of another architecture.
    bootArchitecture(report);
    if (!report.runnable) refuse(report);
    const values = report.effective.values;
    const qemuProgram = values.hypervisor === 'qemu' ? await findOnPath(bootArchitecture(report) === 'arm64' ? 'qemu-system-aarch64' : 'qemu-system-x86_64') : undefined;
    const accel = options.accel === 'kvm' || options.accel === 'tcg' ? options.accel : (await kvmUsable(qemuProgram)) ? 'kvm' : 'tcg';

    if (options.print) {
      // urunc execs the monitor inside the container rootfs, so the paths are the image's own.
      const paths = { kernel: values.binary ?? '', ...(values.initrd ? { initrd: values.initrd } : {}), ...(values.block ? { block: values.block } : {}) };
      const request = requestFor(report, paths, options, accel, '/tmp');
      // The 9p share `lapin run` adds too, of the container rootfs where urunc has it.
      const command = sharesRootfs(request) ? withSharedRootfs(monitorCommand(request), CONTAINER_ROOTFS_PATH) : monitorCommand(request);
      stdout.write(`${escapeLine(shellLine(command.program, command.args))}\n`);
      for (const file of command.files) stdout.write(`# ${escapeLine(file.path)}:\n${escapeTerminalText(file.content)}\n`);
      for (const note of command.notes) stderr.write(`lapin: note: ${escapeLine(note)}\n`);
      return 0;
    }

    workDir = await mkdtemp(join(tmpdir(), 'lapin-run-'));
    const wanted = new Map<string, FileKey>();
    for (const file of report.files) if (file.exists && file.resolvedPath) wanted.set(file.resolvedPath, file.key);
    const rootfs = await flattenRootfs(source, { capture: (path) => (wanted.has(path) ? { kind: 'file', dir: workDir as string } : undefined) });
    const paths: Partial<Record<FileKey, string>> = {};
    for (const [path, key] of wanted) {
      const entry = rootfs.entries.get(normalizeImagePath(path));
      if (entry?.file) paths[key] = entry.file;
    }
    if (!paths.binary) throw new LapinError(`cannot extract the kernel ${values.binary ?? ''} from ${report.source.name}`);
    const request = requestFor(report, { kernel: paths.binary, ...(paths.initrd ? { initrd: paths.initrd } : {}), ...(paths.block ? { block: paths.block } : {}) }, options, accel, workDir);
    let command = monitorCommand(request);
    // mountRootfs: the container rootfs, unpacked, shared over 9p as urunc does (src/run/shared-rootfs.ts).
    if (sharesRootfs(request)) {
      const rootfsDir = join(workDir, 'rootfs');
      await unpackRootfs(source, rootfsDir, join(workDir, 'unpack'));
      command = withSharedRootfs(command, rootfsDir);
    }
    const program = await findOnPath(command.program);
    if (!program) {
      throw new LapinError(`${values.hypervisor ?? ''} guests need ${command.program}, which is not on PATH`, { hint: INSTALL_HINTS[command.program] ?? `install ${command.program}` });
    }
    for (const file of command.files) await writeFile(file.path, file.content);
    for (const note of command.notes) stderr.write(`lapin: note: ${escapeLine(note)}\n`);
    stderr.write(`lapin: running ${escapeLine(shellLine(command.program, command.args))}\n`);
    return await spawnMonitor(program, command.args, stdout, stderr, options.timeout);
  } finally {
    await source.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  }
}

function spawnMonitor(program: string, args: string[], stdout: Writable, stderr: Writable, timeoutSeconds: number | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // The guest console (-serial stdio): a panic there overrides qemu's 0 (src/run/guest-exit.ts).
    const guestConsole = new GuestConsoleWatch();
    child.stdout.on('data', (chunk: Buffer) => {
      guestConsole.feed(chunk);
      stdout.write(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => stderr.write(chunk));
    let timedOut = false;
    const stopper =
      timeoutSeconds !== undefined && timeoutSeconds > 0
        ? setTimeout(() => {
            timedOut = true;
            stderr.write(`lapin: stopping the guest after ${timeoutSeconds}s (--timeout)\n`);
            child.kill('SIGTERM');
            setTimeout(() => child.kill('SIGKILL'), 5000).unref();
          }, timeoutSeconds * 1000)
        : undefined;
    const forward = (): void => {
      child.kill('SIGTERM');
    };
    process.once('SIGINT', forward);
    process.once('SIGTERM', forward);
    child.on('error', (error) => {
      if (stopper) clearTimeout(stopper);
      reject(new LapinError(`cannot start ${program}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      if (stopper) clearTimeout(stopper);
      process.removeListener('SIGINT', forward);
      process.removeListener('SIGTERM', forward);
      if (timedOut) {
        resolve(124);
        return;
      }
      const ended = guestConsole.end(code ?? (signal ? 128 + 15 : 1));
      if (ended.reason) stderr.write(`lapin: ${ended.reason} (exit ${ended.code})\n`);
      resolve(ended.code);
    });
  });
}
