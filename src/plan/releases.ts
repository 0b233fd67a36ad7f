/**
 * The urunc release lines lapin knows, and what differs between them
 * (../shared/reference/urunc-images.md §1; urunc-dev/urunc
 * pkg/unikontainers and cmd/containerd-shim-urunc-v2 at each tag).
 */

/** A urunc release line: v0.5.0 and mid-2025 main, v0.7.0 (2025-12), v0.8.0 (2026-09). */
export type UruncRelease = 'pre-0.7' | '0.7' | '0.8';

/** Oldest first. */
export const URUNC_RELEASES: readonly UruncRelease[] = ['pre-0.7', '0.7', '0.8'];

/** The release `--urunc-version` defaults to. */
export const NEWEST_URUNC_RELEASE: UruncRelease = '0.8';

/**
 * The release line a `--urunc-version` value names: `0.8`, `v0.8.0`,
 * `0.8.1`, `0.7`, `pre-0.7`, `0.5.0`, `0.6`, ... Undefined when it names none
 * lapin knows (a newer minor than 0.8, a 1.x).
 */
export function parseUruncRelease(text: string): UruncRelease | undefined {
  const trimmed = text.trim();
  if (trimmed === 'pre-0.7') return 'pre-0.7';
  const match = /^v?0\.(\d+)(?:\.\d+)?$/.exec(trimmed);
  if (!match) return undefined;
  const minor = Number(match[1]);
  if (minor < 7) return 'pre-0.7';
  if (minor === 7) return '0.7';
  if (minor === 8) return '0.8';
  return undefined;
}

/**
 * urunc < 0.7 base64-decodes every value it takes from the OCI spec's
 * annotations, strictly, and treats a decode error as "not a unikernel":
 * the container is run with runc. Later releases read spec values as text.
 */
export function decodesSpecAnnotations(release: UruncRelease): boolean {
  return release === 'pre-0.7';
}

/**
 * urunc 0.8's containerd shim (PR #565) fills missing spec annotations from
 * the image's manifest annotations, then its config labels, when the image
 * is in containerd's image store.
 */
export function shimReadsImageMetadata(release: UruncRelease): boolean {
  return release === '0.8';
}

/** urunc < 0.7 builds the guest command line from `cmdline`; later releases from the process args. */
export function readsCmdline(release: UruncRelease): boolean {
  return release === 'pre-0.7';
}

/** Keys a release reads beyond the base set every release knows. */
const ADDED_KEYS: Readonly<Record<string, UruncRelease>> = {
  vAccel: '0.7',
  RPCAddress: '0.7',
  solo5NetDev: '0.8',
  solo5BlkDev: '0.8',
};

/** The release that added `key`, when it is newer than the base set. */
export function releaseAdding(key: string): UruncRelease | undefined {
  return ADDED_KEYS[key];
}

/** Whether `release` is `since` or newer. */
export function atLeast(release: UruncRelease, since: UruncRelease): boolean {
  return URUNC_RELEASES.indexOf(release) >= URUNC_RELEASES.indexOf(since);
}

/** Whether `release` reads `key` (short name) at all. */
export function releaseReadsKey(release: UruncRelease, key: string): boolean {
  if (key === 'cmdline') return readsCmdline(release);
  const since = ADDED_KEYS[key];
  return since === undefined || atLeast(release, since);
}

/** Keys urunc reads from the OCI spec's annotations only, never from /urunc.json. */
export const SPEC_ONLY_KEYS: readonly string[] = ['vAccel', 'RPCAddress'];

/**
 * Guests and monitors each release runs. urunc v0.5.0 had unikraft, rumprun
 * and mirage; linux and mewz came in mid 2025 (main before 0.7). hermit,
 * cloud-hypervisor and hyperlight-unikraft are in 0.8's table; lapin has no
 * source for 0.7's and applies 0.8's, so it never refuses what 0.7 may run.
 */
const GUEST_SINCE: Readonly<Record<string, UruncRelease>> = {
  unikraft: 'pre-0.7',
  rumprun: 'pre-0.7',
  mirage: 'pre-0.7',
  mewz: 'pre-0.7',
  linux: 'pre-0.7',
  hermit: '0.7',
};
const MONITOR_SINCE: Readonly<Record<string, UruncRelease>> = {
  qemu: 'pre-0.7',
  firecracker: 'pre-0.7',
  hvt: 'pre-0.7',
  spt: 'pre-0.7',
  'cloud-hypervisor': '0.7',
  'hyperlight-unikraft': '0.7',
};

/** The first release that knows this guest, or undefined for a name no release knows. */
export function guestSince(guest: string): UruncRelease | undefined {
  return GUEST_SINCE[guest];
}

/** The first release that knows this monitor, or undefined for a name no release knows. */
export function monitorSince(monitor: string): UruncRelease | undefined {
  return MONITOR_SINCE[monitor];
}

/** "urunc 0.8", "urunc < 0.7": for messages. */
export function releaseName(release: UruncRelease): string {
  return release === 'pre-0.7' ? 'urunc < 0.7' : `urunc ${release}`;
}
