/**
 * urunc's storage table: which guest can use which rootfs kind
 * (../shared/reference/urunc-images.md §1 "Storage each guest can use";
 * urunc's unikernels' SupportsBlock/SupportsFS and the monitors' initrd and
 * block handling). `lapin build` and `lapin inspect` both judge with it.
 */
import type { SourcePosition } from '../errors.js';
import type { Finding } from './rules.js';

export type StorageKind = 'initrd' | 'block' | 'mountRootfs';

/**
 * What urunc does with one kind for one guest:
 * - `uses`: hands it to the guest;
 * - `fails`: the guest cannot boot as packaged (an error);
 * - `ignores`: urunc drops it without a word (a warning).
 */
export type StorageUse = 'uses' | 'fails' | 'ignores';

interface StorageRow {
  initrd: StorageUse;
  block: StorageUse;
  mountRootfs: StorageUse;
  /** What the guest takes, for messages. */
  takes: string;
}

/**
 * An initrd or block image a guest cannot read is an error: it is the
 * rootfs the image was packaged with, and the guest would boot without it.
 * `mountRootfs=true` on such a guest is a warning: urunc skips it (it is
 * bunny's default for Containerfiles, so images carry it by accident).
 */
export const STORAGE_TABLE: Readonly<Record<string, StorageRow>> = {
  linux: { initrd: 'uses', block: 'uses', mountRootfs: 'uses', takes: 'an initrd, a block image (ext2/3/4), or the container rootfs (devmapper, virtiofs or 9pfs)' },
  unikraft: { initrd: 'uses', block: 'fails', mountRootfs: 'uses', takes: 'an initrd, or the container rootfs over 9pfs on qemu' },
  rumprun: { initrd: 'fails', block: 'uses', mountRootfs: 'uses', takes: 'a block image (ext2, mounted at /data), or the devmapper snapshot' },
  mirage: { initrd: 'fails', block: 'uses', mountRootfs: 'ignores', takes: 'a block image (a Solo5 block device) only' },
  mewz: { initrd: 'fails', block: 'fails', mountRootfs: 'ignores', takes: 'no rootfs (its file system is linked into the kernel)' },
  hermit: { initrd: 'fails', block: 'fails', mountRootfs: 'ignores', takes: 'no rootfs yet' },
};

/** How urunc treats `kind` for `guest` on `monitor`; undefined for a guest urunc does not know. */
export function storageUse(guest: string, monitor: string | undefined, kind: StorageKind): StorageUse | undefined {
  const row = STORAGE_TABLE[guest];
  if (!row) return undefined;
  // unikraft reads the container rootfs over 9pfs, which urunc sets up on qemu only.
  if (guest === 'unikraft' && kind === 'mountRootfs' && monitor !== undefined && monitor !== 'qemu') return 'ignores';
  return row[kind];
}

/**
 * Whether a default `mountRootfs=true` would reach this guest (Containerfile
 * defaults); true for a guest urunc does not know, which is an error anyway.
 */
export function canMountRootfs(guest: string, monitor: string | undefined): boolean {
  const use = storageUse(guest, monitor === '' ? undefined : monitor, 'mountRootfs');
  return use === undefined || use === 'uses';
}

function isTrue(text: string | undefined): boolean {
  return text !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(text);
}

/**
 * Storage findings for final urunc values (short keys, empty values dropped).
 * `mountRootfs` counts only when no initrd and no root block image take
 * precedence, as urunc picks: initrd, else block with blkMntPoint=/, else
 * the container rootfs.
 */
export function checkStorage(
  values: Readonly<Record<string, string>>,
  at: Readonly<Record<string, SourcePosition | undefined>> = {},
): Finding[] {
  const guest = values.unikernelType;
  const monitor = values.hypervisor;
  if (guest === undefined || STORAGE_TABLE[guest] === undefined) return [];
  const row = STORAGE_TABLE[guest] as StorageRow;
  const findings: Finding[] = [];
  const add = (use: StorageUse | undefined, key: string, message: string, hint: string): void => {
    if (use === undefined || use === 'uses') return;
    const where = at[key];
    findings.push({
      severity: use === 'fails' ? 'error' : 'warning',
      message,
      ...(where ? { at: where } : {}),
      hint,
    });
  };
  const takes = `${guest} takes ${row.takes}`;
  if (values.initrd !== undefined) {
    add(storageUse(guest, monitor, 'initrd'), 'initrd', `${guest} cannot use an initrd: urunc does not give it one, so the guest would boot without ${values.initrd}`, takes);
  }
  if (values.block !== undefined) {
    add(storageUse(guest, monitor, 'block'), 'block', `${guest} cannot use a block image: urunc does not attach ${values.block} for it, so the guest would boot without it`, takes);
  }
  const mountKey = values.mountRootfs !== undefined ? 'mountRootfs' : 'useDMBlock';
  const mount = values.mountRootfs ?? values.useDMBlock;
  const shadowed = values.initrd !== undefined || (values.block !== undefined && values.blkMntPoint === '/');
  if (isTrue(mount) && !shadowed) {
    const use = storageUse(guest, monitor, 'mountRootfs');
    const why = guest === 'unikraft' ? `unikraft reads the container rootfs over 9pfs, which urunc sets up on qemu only, not ${monitor ?? 'this monitor'}` : `${guest} cannot use the container rootfs`;
    add(use, mountKey, `${mountKey}=true: ${why}; urunc ignores it`, `set ${mountKey}=false, or give the files as ${guest === 'unikraft' ? 'an initrd' : 'the storage the guest takes'}`);
  }
  if (guest === 'rumprun' && values.block !== undefined && values.blkMntPoint !== undefined && values.blkMntPoint !== '/data') {
    add('ignores', 'blkMntPoint', `rumprun mounts its block image at /data whatever blkMntPoint says (${values.blkMntPoint})`, 'set blkMntPoint=/data');
  }
  if (monitor === 'hyperlight-unikraft' && values.initrd === undefined) {
    const where = at.hypervisor;
    findings.push({
      severity: 'error',
      message: 'hyperlight-unikraft needs an initrd, and com.urunc.unikernel.initrd is not set',
      ...(where ? { at: where } : {}),
      // The plan does not know the syntax, so the hint names each one's way.
      hint: 'give the application as an initrd: bunnyfile rootfs.type: initrd, Containerfile LABEL com.urunc.unikernel.initrd=PATH, or args.nix annotations.initrd',
    });
  }
  return findings;
}
