/** Prefix of every value urunc reads from an image. */
export const URUNC_PREFIX = 'com.urunc.unikernel.';

/** The short keys urunc knows, in the order lapin writes them. */
export const URUNC_KEYS = [
  'unikernelType',
  'hypervisor',
  'binary',
  'cmdline',
  'unikernelVersion',
  'initrd',
  'block',
  'blkMntPoint',
  'mountRootfs',
  'useDMBlock',
  'solo5NetDev',
  'solo5BlkDev',
  'vAccel',
  'RPCAddress',
] as const;

export type UruncKey = (typeof URUNC_KEYS)[number];

export function isUruncKey(key: string): key is UruncKey {
  return (URUNC_KEYS as readonly string[]).includes(key);
}

export function fullUruncKey(key: string): string {
  return URUNC_PREFIX + key;
}

/** The short key of a full `com.urunc.unikernel.*` name, or undefined. */
export function shortUruncKey(fullKey: string): string | undefined {
  return fullKey.startsWith(URUNC_PREFIX) ? fullKey.slice(URUNC_PREFIX.length) : undefined;
}
