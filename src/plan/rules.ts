import type { SourcePosition } from '../errors.js';
import { guestSince, monitorSince, NEWEST_URUNC_RELEASE, releaseAdding, releaseName, releaseReadsKey, atLeast, SPEC_ONLY_KEYS, type UruncRelease } from './releases.js';
import { checkStorage } from './storage.js';
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
 * against what `release` accepts (urunc 0.8 by default), with urunc's
 * storage table. `at` gives where each value came from.
 */
export function checkUruncValues(
  values: Readonly<Record<string, string>>,
  at: Readonly<Record<string, SourcePosition | undefined>> = {},
  release: UruncRelease = NEWEST_URUNC_RELEASE,
): Finding[] {
  const findings: Finding[] = [];
  const error = (key: string, message: string, hint?: string): void => {
    const where = at[key];
    findings.push({ severity: 'error', message, ...(where ? { at: where } : {}), ...(hint ? { hint } : {}) });
  };

  // A missing value has no position of its own: point at where the file gives the others.
  const givenAt = Object.values(at).find((where) => where !== undefined);
  for (const key of ['unikernelType', 'hypervisor', 'binary'] as const) {
    if (values[key] === undefined) {
      const where = at[key] ?? givenAt;
      findings.push({ severity: 'error', message: `missing required urunc value com.urunc.unikernel.${key}`, ...(where ? { at: where } : {}), hint: requiredHint(key) });
    }
  }

  const guest = values.unikernelType;
  const monitor = values.hypervisor;
  if (guest !== undefined && !GUESTS.includes(guest)) {
    error('unikernelType', `unknown unikernelType ${JSON.stringify(guest)}`, knownValueHint(guest, GUESTS));
  }
  if (monitor !== undefined && !MONITORS.includes(monitor)) {
    error('hypervisor', `unknown hypervisor ${JSON.stringify(monitor)}`, knownValueHint(monitor, MONITORS));
  }
  const guestFrom = guest === undefined ? undefined : guestSince(guest);
  const monitorFrom = monitor === undefined ? undefined : monitorSince(monitor);
  if (guestFrom !== undefined && !atLeast(release, guestFrom)) {
    error('unikernelType', `${releaseName(release)} has no ${guest} guest`, `${guest} came with ${releaseName(guestFrom)}; choose --urunc-version for the urunc you run`);
  }
  if (monitorFrom !== undefined && !atLeast(release, monitorFrom)) {
    error('hypervisor', `${releaseName(release)} has no ${monitor} monitor`, `${monitor} came with ${releaseName(monitorFrom)}; choose --urunc-version for the urunc you run`);
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

  const vAccel = values.vAccel;
  if (vAccel !== undefined && releaseReadsKey(release, 'vAccel')) {
    if (vAccel !== 'vsock') error('vAccel', `com.urunc.unikernel.vAccel ${JSON.stringify(vAccel)} is not a transport urunc offers`, 'urunc supports only vAccel=vsock');
    else if (values.RPCAddress === undefined) error('vAccel', 'com.urunc.unikernel.vAccel=vsock needs com.urunc.unikernel.RPCAddress', 'give the vAccel RPC agent address as RPCAddress');
  }

  const specOnly = SPEC_ONLY_KEYS.filter((key) => values[key] !== undefined && releaseReadsKey(release, key));
  if (specOnly.length > 0) {
    const where = at[specOnly[0] as string];
    findings.push({
      severity: 'warning',
      message: `${specOnly.join(' and ')} ${specOnly.length > 1 ? 'are' : 'is'} read from the OCI spec's annotations only, never from /urunc.json: podman passes them, and so does urunc 0.8's shim on containerd and the CRI; docker, and containerd before urunc 0.8, do not`,
      ...(where ? { at: where } : {}),
      hint: 'run it with podman, or with urunc 0.8 under containerd or Kubernetes',
    });
  }

  for (const key of Object.keys(values)) {
    const where = at[key];
    const warn = (message: string, hint?: string): void => {
      findings.push({ severity: 'warning', message, ...(where ? { at: where } : {}), ...(hint ? { hint } : {}) });
    };
    if (!isUruncKey(key)) {
      warn(`com.urunc.unikernel.${key} is not a value ${releaseName(release)} reads`);
    } else if (!releaseReadsKey(release, key) && key !== 'cmdline') {
      // cmdline is written for urunc < 0.7 on purpose; the others are newer than this release.
      const since = releaseAdding(key);
      warn(`${releaseName(release)} does not read com.urunc.unikernel.${key}${since ? ` (${releaseName(since)} does)` : ''}`);
    }
  }
  findings.push(...checkStorage(values, at));
  return findings;
}

/** urunc compares these values exactly: "Mirage" is named as mirage's spelling, anything else gets the list. */
function knownValueHint(given: string, known: readonly string[]): string {
  const meant = known.find((value) => value === given.trim().toLowerCase());
  return meant !== undefined ? `write ${meant}: urunc's values are case-sensitive` : `use one of ${known.join(', ')}; urunc's values are case-sensitive`;
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
