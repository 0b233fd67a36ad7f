import type { SourcePosition } from '../errors.js';
import { isUruncKey } from './urunc-keys.js';

/** A problem found while checking an image against urunc's rules. */
export interface Finding {
  severity: 'error' | 'warning';
  message: string;
  at?: SourcePosition;
  hint?: string;
}

/** Which guests each monitor accepts (urunc 0.8). */
export const MONITOR_GUESTS: Readonly<Record<string, readonly string[]>> = {
  hvt: ['rumprun', 'mirage'],
  spt: ['rumprun', 'mirage'],
  qemu: ['unikraft', 'mirage', 'mewz', 'linux', 'hermit'],
  firecracker: ['unikraft', 'linux'],
  'cloud-hypervisor': ['linux'],
  'hyperlight-unikraft': ['unikraft'],
};

export const GUESTS: readonly string[] = ['unikraft', 'rumprun', 'mirage', 'mewz', 'linux', 'hermit'];
export const MONITORS: readonly string[] = Object.keys(MONITOR_GUESTS);

/** urunc's keys that hold paths inside the image. */
export const PATH_KEYS = ['binary', 'initrd', 'block', 'blkMntPoint'] as const;
/** Path keys that name a file the rootfs must contain. */
export const FILE_KEYS = ['binary', 'initrd', 'block'] as const;

const MAX_PATH_BYTES = 4096;
const PATH_CHARACTERS = /^[A-Za-z0-9._/-]+$/;
const SOLO5_DEVICE = /^[A-Za-z0-9]{1,67}$/;

/** The strings Go's strconv.ParseBool accepts, which is what urunc uses. */
const GO_BOOLEANS: Readonly<Record<string, boolean>> = {
  '1': true, t: true, T: true, TRUE: true, true: true, True: true,
  '0': false, f: false, F: false, FALSE: false, false: false, False: false,
};

export function parseGoBool(text: string): boolean | undefined {
  return Object.hasOwn(GO_BOOLEANS, text) ? GO_BOOLEANS[text] : undefined;
}

/** Why urunc would refuse this path value, or undefined when it is fine. */
export function pathProblem(key: string, value: string): string | undefined {
  if (Buffer.byteLength(value) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (!PATH_CHARACTERS.test(value)) {
    const bad = [...value].find((c) => !/[A-Za-z0-9._/-]/.test(c)) ?? '';
    return `contains ${JSON.stringify(bad)}; urunc allows only letters, digits, ".", "_", "/" and "-"`;
  }
  if (value === '.') return 'is "."';
  if (value.startsWith('..')) return 'starts with ".."';
  if (value.startsWith('-')) return 'starts with "-"';
  if (value !== '/' && value.endsWith('/')) return 'ends with "/"';
  if (value.includes('//')) return 'contains "//"';
  if (/(^|\/)\.\.?(\/|$)/.test(value)) return 'contains a "." or ".." segment';
  if (key !== 'blkMntPoint' && value === '/') return 'is "/", which names no file';
  return undefined;
}

/**
 * Checks final urunc values (short keys, empty values already dropped)
 * against what urunc 0.8 accepts. `at` gives where each value came from.
 */
export function checkUruncValues(
  values: Readonly<Record<string, string>>,
  at: Readonly<Record<string, SourcePosition | undefined>> = {},
): Finding[] {
  const findings: Finding[] = [];
  const error = (key: string, message: string, hint?: string): void => {
    const where = at[key];
    findings.push({ severity: 'error', message, ...(where ? { at: where } : {}), ...(hint ? { hint } : {}) });
  };

  for (const key of ['unikernelType', 'hypervisor', 'binary'] as const) {
    if (values[key] === undefined) {
      error(key, `missing required urunc value com.urunc.unikernel.${key}`, requiredHint(key));
    }
  }

  const guest = values.unikernelType;
  const monitor = values.hypervisor;
  if (guest !== undefined && !GUESTS.includes(guest)) {
    error('unikernelType', `unknown unikernelType ${JSON.stringify(guest)}`, `use one of ${GUESTS.join(', ')} (values are case-sensitive)`);
  }
  if (monitor !== undefined && !MONITORS.includes(monitor)) {
    error('hypervisor', `unknown hypervisor ${JSON.stringify(monitor)}`, `use one of ${MONITORS.join(', ')} (values are case-sensitive)`);
  }
  if (guest !== undefined && monitor !== undefined && GUESTS.includes(guest) && MONITORS.includes(monitor)) {
    const accepted = MONITOR_GUESTS[monitor] ?? [];
    if (!accepted.includes(guest)) {
      const monitorsForGuest = MONITORS.filter((m) => MONITOR_GUESTS[m]?.includes(guest));
      error('hypervisor', `urunc does not run ${guest} guests on ${monitor}`, `${guest} runs on ${monitorsForGuest.join(', ')}`);
    }
  }

  for (const key of PATH_KEYS) {
    const value = values[key];
    if (value === undefined) continue;
    const problem = pathProblem(key, value);
    if (problem) error(key, `com.urunc.unikernel.${key} ${JSON.stringify(value)} ${problem}`, 'write a clean absolute path such as /.boot/kernel');
  }

  for (const key of ['mountRootfs', 'useDMBlock'] as const) {
    const value = values[key];
    if (value !== undefined && parseGoBool(value) === undefined) {
      error(key, `com.urunc.unikernel.${key} ${JSON.stringify(value)} is not a boolean`, 'write true or false');
    }
  }

  for (const key of ['solo5NetDev', 'solo5BlkDev'] as const) {
    const value = values[key];
    if (value !== undefined && !SOLO5_DEVICE.test(value)) {
      error(key, `com.urunc.unikernel.${key} ${JSON.stringify(value)} is not a Solo5 device name`, 'use 1 to 67 letters or digits');
    }
  }

  for (const key of Object.keys(values)) {
    if (!isUruncKey(key)) {
      const where = at[key];
      findings.push({
        severity: 'warning',
        message: `com.urunc.unikernel.${key} is not a value urunc 0.8 reads`,
        ...(where ? { at: where } : {}),
      });
    }
  }
  return findings;
}

function requiredHint(key: 'unikernelType' | 'hypervisor' | 'binary'): string {
  switch (key) {
    case 'unikernelType':
      return `name the guest: one of ${GUESTS.join(', ')}`;
    case 'hypervisor':
      return `name the monitor: one of ${MONITORS.join(', ')}`;
    case 'binary':
      return 'give the path of the kernel inside the image';
  }
}
