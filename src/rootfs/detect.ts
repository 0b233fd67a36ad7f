/**
 * What kind of rootfs a given file is: read its first bytes and decide
 * between an initrd (cpio) and a block image (ext2/3/4), or refuse with a
 * message that says what the file is and what to do.
 */
import { LapinError } from '../errors.js';
import { hasGlob, resolveInContext } from '../image/context.js';
import { readFileType, type FileType } from '../image/kernel-arch.js';
import type { BuildPlan, RootfsFileCheck } from '../plan/types.js';

export type RootfsKind = 'initrd' | 'block';

export interface RootfsDecision {
  kind: RootfsKind;
  /** One line for the build output. */
  message: string;
  /** Said as a warning: the type was given, the content is unusual for it. */
  warning?: string;
}

const DESCRIPTIONS: Record<FileType, string> = {
  'cpio-newc': 'a cpio archive (newc)',
  'cpio-odc': 'a cpio archive (odc)',
  ext: 'an ext2/3/4 file system',
  squashfs: 'a squashfs file system',
  iso9660: 'an ISO 9660 image',
  erofs: 'an EROFS file system',
  gzip: 'gzip-compressed data',
  zstd: 'zstd-compressed data',
  xz: 'xz-compressed data',
  tar: 'a tar archive',
  elf: 'an ELF executable',
  bzimage: 'an x86 Linux kernel (bzImage)',
  'arm64-image': 'an arm64 Linux kernel Image',
  unknown: 'of no type lapin knows',
};

/** What the content says the file is, when it says anything. */
function kindOf(type: FileType): RootfsKind | 'compressed' | 'other-fs' | 'not-rootfs' | 'unknown' {
  switch (type) {
    case 'cpio-newc':
    case 'cpio-odc':
      return 'initrd';
    case 'ext':
      return 'block';
    case 'gzip':
    case 'zstd':
    case 'xz':
      return 'compressed';
    case 'squashfs':
    case 'iso9660':
    case 'erofs':
      return 'other-fs';
    case 'tar':
    case 'elf':
    case 'bzimage':
    case 'arm64-image':
      return 'not-rootfs';
    case 'unknown':
      return 'unknown';
  }
}

function fail(message: string, check: RootfsFileCheck, hint: string, atDeclared = false): never {
  const at = atDeclared ? (check.declared?.at ?? check.at) : check.at;
  throw new LapinError(message, { ...(at ? { at } : {}), hint });
}

/**
 * Decides the kind of rootfs file `name` from its sniffed type; throws a
 * LapinError when the content contradicts the declared type, when the guest
 * cannot use the kind, or when no kind can be told.
 */
export function decideRootfsKind(check: RootfsFileCheck, type: FileType, name: string): RootfsDecision {
  const what = DESCRIPTIONS[type];
  const kind = kindOf(type);
  const declared = check.declared?.value;
  const allowedText = check.allowed.join(' or ');
  let decided: RootfsKind;
  let warning: string | undefined;
  if (declared !== undefined) {
    decided = declared;
    if ((kind === 'initrd' || kind === 'block') && kind !== declared) {
      fail(`rootfs ${name} is ${what}, not ${declared === 'initrd' ? 'an initrd' : 'a block image'}`, check, `set rootfs.type: ${kind}, or drop type to let lapin detect it`, true);
    }
    if (kind === 'not-rootfs') fail(`rootfs ${name} is ${what}, not a rootfs`, check, `point rootfs.path at the ${declared} file`);
    if (kind === 'compressed' && declared === 'block') fail(`rootfs ${name} is ${what}; a block image is attached as is`, check, 'decompress it first');
    if (kind === 'other-fs') {
      if (declared === 'initrd') fail(`rootfs ${name} is ${what}, not a cpio initrd`, check, 'set rootfs.type: block if the guest mounts it, or build a cpio initrd', true);
      warning = `rootfs ${name} is ${what}; urunc's guests mount ext2/3/4 block images, so check that the ${check.framework} guest can mount it`;
    }
  } else if (kind === 'initrd' || kind === 'block') {
    decided = kind;
  } else if (kind === 'compressed') {
    // Linux unpacks gzip/xz/zstd initramfs archives itself; a compressed block image would be useless.
    decided = 'initrd';
  } else if (kind === 'other-fs') {
    fail(`rootfs ${name} is ${what}; lapin detects only cpio initrds and ext2/3/4 block images`, check, 'set rootfs.type: block if the guest mounts it, or convert it to ext4 or a cpio archive');
  } else if (kind === 'not-rootfs') {
    fail(`rootfs ${name} is ${what}, not a rootfs`, check, `point rootfs.path at a cpio initrd or an ext2/3/4 image`);
  } else {
    fail(`cannot tell what kind of rootfs ${name} is (not a cpio archive or an ext file system)`, check, `set rootfs.type to ${allowedText}`);
  }
  if (!check.allowed.includes(decided)) {
    fail(`${check.framework} does not support a ${decided} rootfs, and ${name} is ${what}`, check, `give a ${allowedText} instead`, declared !== undefined);
  }
  const where = decided === 'block' ? `block image mounted at ${check.blockMountPoint}` : 'initrd';
  const how = declared === undefined ? 'detected as' : 'used as';
  const compressedNote = kind === 'compressed' && declared === undefined ? ' (taken as a compressed initramfs)' : '';
  return { kind: decided, message: `rootfs ${name}: ${what}${compressedNote}, ${how} ${where}`, ...(warning ? { warning } : {}) };
}

/**
 * Reads the plan's rootfs file from the build context and settles its kind:
 * sets `initrd`, or `block` and `blkMntPoint`, when the type was not given.
 * Returns undefined when the plan has no such file, or it is not in the
 * context (the copy reports that).
 */
export async function resolveRootfsFile(plan: BuildPlan, contextDir: string): Promise<RootfsDecision | undefined> {
  const check = plan.rootfsFile;
  if (check === undefined) return undefined;
  const copy = plan.ops.find((op) => op.kind === 'copy' && op.destination === check.path && op.fromStage === undefined);
  const source = copy?.kind === 'copy' && copy.sources.length === 1 ? copy.sources[0] : undefined;
  if (source === undefined) return undefined;
  if (hasGlob(source)) {
    if (check.declared !== undefined) return undefined;
    throw new LapinError(`rootfs.path ${source} is a pattern; lapin reads one file to tell its kind`, { ...(check.at ? { at: check.at } : {}), hint: 'name the file, or set rootfs.type' });
  }
  const file = await resolveInContext(contextDir, source, check.at);
  if (file === undefined) return undefined;
  const type = await readFileType(file).catch((error: unknown) => {
    // A FIFO or a device is refused here, at the line; an unreadable file is left to the copy to report.
    if (error instanceof LapinError && ((error.cause as NodeJS.ErrnoException | undefined)?.code === undefined)) {
      throw new LapinError(`rootfs.path ${source} ${error.message.startsWith(`file ${file} `) ? error.message.slice(`file ${file} `.length) : error.message}`, { ...(check.at ? { at: check.at } : {}), hint: 'give a cpio initrd or an ext2/3/4 image file' });
    }
    return undefined;
  });
  if (type === undefined) return undefined;
  const decision = decideRootfsKind(check, type, source);
  if (check.declared === undefined) {
    const at = check.at;
    if (decision.kind === 'initrd') {
      plan.urunc.initrd = { value: check.path, ...(at ? { at } : {}) };
    } else {
      plan.urunc.block = { value: check.path, ...(at ? { at } : {}) };
      plan.urunc.blkMntPoint = { value: check.blockMountPoint, ...(at ? { at } : {}) };
    }
  }
  return decision;
}
