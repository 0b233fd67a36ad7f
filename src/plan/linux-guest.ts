/**
 * bunny 0.0.5's Containerfile mode (hops/parse_file.go, containerfileToPack):
 * a Containerfile whose labels leave them out describes a Linux guest, and
 * the build adds what an existing container needs to boot as a microVM: the
 * urunit init, copied from an image to /urunit and put first in Entrypoint,
 * and a Linux kernel copied from a per-monitor kernel image to /.boot/kernel.
 * The frontend sets the urunc defaults (linux, qemu, mountRootfs); this runs
 * after the base image's config is inherited, because its labels decide.
 */
import type { BuildPlan, CopyOp } from './types.js';
import { shortUruncKey } from './urunc-keys.js';

/** bunny's images and paths; a user's Containerfile behaves as under bunny. */
export const DEFAULT_INIT_IMAGE = 'harbor.nbfc.io/nubificus/urunit:latest';
export const DEFAULT_QEMU_KERNEL_IMAGE = 'harbor.nbfc.io/nubificus/bunny/linux-kernel-qemu:latest';
export const DEFAULT_FIRECRACKER_KERNEL_IMAGE = 'harbor.nbfc.io/nubificus/bunny/linux-kernel-firecracker:latest';
export const INIT_PATH = '/urunit';
export const KERNEL_PATH = '/.boot/kernel';

/** `LABEL bunny.urunit=false` leaves the init out (bunny's label). */
export const URUNIT_LABEL = 'bunny.urunit';
/** lapin's labels naming other images than bunny's defaults. */
export const KERNEL_IMAGE_LABEL = 'lapin.kernel-image';
export const INIT_IMAGE_LABEL = 'lapin.init-image';

export interface LinuxGuestOptions {
  /** Image holding the kernel at /.boot/kernel; default bunny's for the monitor. */
  kernelImage?: string;
  /** Image holding the init at /urunit; default bunny's urunit image. */
  initImage?: string;
  /** --label and --annotation values: they override the file's, here as in the image. */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** One image the guest parts come from, for the build's report. */
export interface GuestPart {
  role: 'kernel' | 'init';
  image: string;
  /** Where in the image the file is read and where it goes. */
  path: string;
  /** What chose the image: "default", the flag, or the label. */
  chosenBy: string;
}

export interface LinuxGuestResult {
  plan: BuildPlan;
  parts: GuestPart[];
}

/** The kernel image bunny uses for a monitor: qemu's, else firecracker's. */
export function defaultKernelImage(hypervisor: string): string {
  return hypervisor === 'qemu' ? DEFAULT_QEMU_KERNEL_IMAGE : DEFAULT_FIRECRACKER_KERNEL_IMAGE;
}

/** A urunc value as the image will have it: --annotation, then --label, then the plan. */
function effectiveUrunc(plan: BuildPlan, options: LinuxGuestOptions, key: string): string | undefined {
  for (const source of [options.annotations, options.labels]) {
    for (const [name, value] of Object.entries(source ?? {})) if (shortUruncKey(name) === key) return value;
  }
  return plan.urunc[key]?.value;
}

function choose(flag: string | undefined, flagName: string, label: string | undefined, labelName: string, fallback: string): { image: string; chosenBy: string } {
  if (flag !== undefined && flag !== '') return { image: flag, chosenBy: flagName };
  if (label !== undefined && label !== '') return { image: label, chosenBy: `label ${labelName}` };
  return { image: fallback, chosenBy: 'default' };
}

/**
 * Adds bunny's urunit init and Linux kernel to a Containerfile plan of a
 * Linux guest. Other syntaxes and guests are returned unchanged.
 */
export function addLinuxGuestParts(plan: BuildPlan, options: LinuxGuestOptions = {}): LinuxGuestResult {
  if (plan.syntax !== 'containerfile') return { plan, parts: [] };
  const labels = { ...plan.config.labels, ...options.labels };
  const type = effectiveUrunc(plan, options, 'unikernelType');
  if (type !== 'linux') return { plan, parts: [] };
  const parts: GuestPart[] = [];
  const ops: CopyOp[] = [];
  let config = plan.config;
  let urunc = plan.urunc;

  if (labels[URUNIT_LABEL] !== 'false') {
    const { image, chosenBy } = choose(options.initImage, '--init-image', labels[INIT_IMAGE_LABEL], INIT_IMAGE_LABEL, DEFAULT_INIT_IMAGE);
    ops.push({ kind: 'copy', sources: [INIT_PATH], destination: INIT_PATH, fromStage: image });
    const entrypoint = config.entrypoint?.value ?? [];
    let args = [...entrypoint, ...(config.cmd?.value ?? [])];
    const cmdline = effectiveUrunc(plan, options, 'cmdline') ?? '';
    if (args.length === 0 && cmdline.trim() !== '') {
      // No Cmd or Entrypoint: the cmdline label is the command (as for urunc < 0.7). It becomes Cmd,
      // so the init goes in front of it and cmdline follows the args again (finalize), instead of
      // urunc >= 0.7 booting the init alone.
      args = cmdline.split(/\s+/).filter((word) => word !== '');
      config = { ...config, cmd: { value: args } };
      const { cmdline: _dropped, ...rest } = urunc;
      urunc = rest;
    }
    // Args that already start with the init (a base built by bunny or lapin, or a cmdline written for urunit) keep one.
    if (args[0] !== INIT_PATH) {
      config = { ...config, entrypoint: { value: [INIT_PATH, ...entrypoint], ...(config.entrypoint?.at ? { at: config.entrypoint.at } : {}) } };
    }
    parts.push({ role: 'init', image, path: INIT_PATH, chosenBy });
  }

  if ((effectiveUrunc(plan, options, 'binary') ?? '') === '') {
    const hypervisor = effectiveUrunc(plan, options, 'hypervisor') ?? 'qemu';
    const { image, chosenBy } = choose(options.kernelImage, '--kernel-image', labels[KERNEL_IMAGE_LABEL], KERNEL_IMAGE_LABEL, defaultKernelImage(hypervisor));
    ops.push({ kind: 'copy', sources: [KERNEL_PATH], destination: KERNEL_PATH, fromStage: image });
    urunc = { ...urunc, binary: { value: KERNEL_PATH } };
    parts.push({ role: 'kernel', image, path: KERNEL_PATH, chosenBy });
  }
  return { plan: { ...plan, ops: [...plan.ops, ...ops], config, urunc }, parts };
}
