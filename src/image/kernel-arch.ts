/**
 * Cheap identification of kernels and file-system images from their first
 * bytes. Nothing here throws on short or odd input: what cannot be read is
 * reported as unknown.
 *
 * Architecture names follow Go's GOARCH / the OCI platform names
 * (amd64, arm64, 386, arm, riscv64, s390x, ppc64le, ...).
 */
import { LapinError } from '../errors.js';
import { openRegularFile } from '../regular-file.js';

export interface KernelInfo {
  format: 'elf' | 'bzimage' | 'arm64-image' | 'unknown';
  architecture?: string;
  bits?: 32 | 64;
  /** One line for people, e.g. "ELF 64-bit LSB executable, x86-64". */
  detail: string;
}

export type FileType =
  | 'cpio-newc'
  | 'cpio-odc'
  | 'ext'
  | 'squashfs'
  | 'iso9660'
  | 'erofs'
  | 'gzip'
  | 'zstd'
  | 'xz'
  | 'tar'
  | 'elf'
  | 'bzimage'
  | 'arm64-image'
  | 'unknown';

/** Enough for every kernel check and a bzImage's version string in most kernels. */
export const KERNEL_HEADER_BYTES = 16 * 1024;
/** Enough for every file-type check (the ISO 9660 descriptor sits at 0x8001). */
export const FILE_TYPE_HEADER_BYTES = 0x8001 + 5;

function hasBytes(header: Uint8Array, offset: number, expected: readonly number[]): boolean {
  if (offset + expected.length > header.length) return false;
  return expected.every((byte, index) => header[offset + index] === byte);
}

function hasAscii(header: Uint8Array, offset: number, text: string): boolean {
  return hasBytes(header, offset, [...Buffer.from(text, 'latin1')]);
}

function u16(header: Uint8Array, offset: number, littleEndian: boolean): number | undefined {
  if (offset + 2 > header.length) return undefined;
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getUint16(offset, littleEndian);
}

function u32le(header: Uint8Array, offset: number): number | undefined {
  if (offset + 4 > header.length) return undefined;
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(offset, true);
}

function u64le(header: Uint8Array, offset: number): bigint | undefined {
  if (offset + 8 > header.length) return undefined;
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getBigUint64(offset, true);
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

interface ElfMachine {
  name: string;
  architecture: (bits: 32 | 64, littleEndian: boolean) => string;
}

/** e_machine values from the System V ABI / <elf.h>. */
const ELF_MACHINES: ReadonlyMap<number, ElfMachine> = new Map<number, ElfMachine>([
  [0x03, { name: 'Intel 80386', architecture: () => '386' }],
  [0x08, { name: 'MIPS', architecture: (bits, le) => (bits === 64 ? 'mips64' : 'mips') + (le ? 'le' : '') }],
  [0x14, { name: 'PowerPC', architecture: () => 'ppc' }],
  [0x15, { name: 'PowerPC64', architecture: (_bits, le) => (le ? 'ppc64le' : 'ppc64') }],
  [0x16, { name: 'IBM S/390', architecture: (bits) => (bits === 64 ? 's390x' : 's390') }],
  [0x28, { name: 'ARM', architecture: () => 'arm' }],
  [0x3e, { name: 'x86-64', architecture: () => 'amd64' }],
  [0xb7, { name: 'AArch64', architecture: () => 'arm64' }],
  [0xf3, { name: 'RISC-V', architecture: (bits) => (bits === 64 ? 'riscv64' : 'riscv32') }],
  [0x102, { name: 'LoongArch', architecture: (bits) => (bits === 64 ? 'loong64' : 'loong32') }],
]);

const ELF_TYPES: ReadonlyMap<number, string> = new Map([
  [1, 'relocatable'],
  [2, 'executable'],
  [3, 'shared object'],
  [4, 'core file'],
]);

function sniffElf(header: Uint8Array): KernelInfo {
  const elfClass = header[4];
  const elfData = header[5];
  const bits: 32 | 64 | undefined = elfClass === 1 ? 32 : elfClass === 2 ? 64 : undefined;
  const littleEndian = elfData === 1 ? true : elfData === 2 ? false : undefined;
  if (bits === undefined || littleEndian === undefined) {
    return { format: 'elf', detail: 'ELF with an invalid class or byte order' };
  }
  const endianText = littleEndian ? 'LSB' : 'MSB';
  const type = u16(header, 16, littleEndian);
  const machineNumber = u16(header, 18, littleEndian);
  const typeText = type === undefined ? 'file' : (ELF_TYPES.get(type) ?? `type ${type}`);
  if (machineNumber === undefined) {
    return { format: 'elf', bits, detail: `ELF ${bits}-bit ${endianText} ${typeText}, header too short for the machine field` };
  }
  const machine = ELF_MACHINES.get(machineNumber);
  if (machine === undefined) {
    return { format: 'elf', bits, detail: `ELF ${bits}-bit ${endianText} ${typeText}, unknown machine 0x${machineNumber.toString(16)}` };
  }
  return {
    format: 'elf',
    architecture: machine.architecture(bits, littleEndian),
    bits,
    detail: `ELF ${bits}-bit ${endianText} ${typeText}, ${machine.name}`,
  };
}

function isBzImage(header: Uint8Array): boolean {
  return hasBytes(header, 0x1fe, [0x55, 0xaa]) && hasAscii(header, 0x202, 'HdrS');
}

/** Reads the NUL-terminated kernel_version string of a bzImage, if it lies within the header. */
function bzImageVersion(header: Uint8Array): string | undefined {
  const pointer = u16(header, 0x20e, true);
  if (pointer === undefined || pointer === 0) return undefined;
  const start = pointer + 0x200;
  if (start >= header.length) return undefined;
  let end = start;
  while (end < header.length && end - start < 256 && header[end] !== 0) end++;
  if (end >= header.length || header[end] !== 0) return undefined;
  const text = Buffer.from(header.subarray(start, end)).toString('latin1');
  return /^[\x20-\x7e]+$/.test(text) ? text : undefined;
}

/** x86 boot protocol (Documentation/arch/x86/boot.rst). */
function sniffBzImage(header: Uint8Array): KernelInfo {
  const protocol = u16(header, 0x206, true);
  const protocolText = protocol === undefined ? '' : `, boot protocol ${protocol >> 8}.${(protocol & 0xff).toString().padStart(2, '0')}`;
  const version = bzImageVersion(header);
  const versionText = version === undefined ? '' : `, version ${version}`;
  const xloadflags = u16(header, 0x236, true);
  // xloadflags exists from protocol 2.12; bit 0 (XLF_KERNEL_64) marks a 64-bit kernel.
  if (protocol !== undefined && protocol >= 0x020c && xloadflags !== undefined) {
    const is64 = (xloadflags & 1) === 1;
    return {
      format: 'bzimage',
      architecture: is64 ? 'amd64' : '386',
      bits: is64 ? 64 : 32,
      detail: `x86 bzImage, ${is64 ? '64' : '32'}-bit${protocolText}${versionText}`,
    };
  }
  return { format: 'bzimage', architecture: 'amd64', detail: `x86 bzImage (32/64-bit not recorded)${protocolText}${versionText}` };
}

/** arm64 Image header (Documentation/arch/arm64/booting.rst): magic "ARM\x64" at 0x38. */
function isArm64Image(header: Uint8Array): boolean {
  return hasBytes(header, 0x38, [0x41, 0x52, 0x4d, 0x64]);
}

function sniffArm64Image(header: Uint8Array): KernelInfo {
  const imageSize = u64le(header, 16);
  const flags = u64le(header, 24);
  const sizeText = imageSize === undefined || imageSize === 0n ? '' : `, image size ${imageSize}`;
  const endianText = flags === undefined ? '' : (flags & 1n) === 1n ? ', big-endian' : ', little-endian';
  return { format: 'arm64-image', architecture: 'arm64', bits: 64, detail: `arm64 Linux Image${endianText}${sizeText}` };
}

const UNKNOWN_DETAILS: Partial<Record<FileType, string>> = {
  gzip: 'gzip-compressed data; decompress it to see the kernel inside',
  zstd: 'zstd-compressed data; decompress it to see the kernel inside',
  xz: 'xz-compressed data; decompress it to see the kernel inside',
  'cpio-newc': 'a cpio archive (an initrd?), not a kernel',
  'cpio-odc': 'a cpio archive, not a kernel',
  ext: 'an ext2/3/4 file system, not a kernel',
  squashfs: 'a squashfs file system, not a kernel',
  erofs: 'an EROFS file system, not a kernel',
  iso9660: 'an ISO 9660 image, not a kernel',
  tar: 'a tar archive, not a kernel',
};

/** Identifies a kernel binary from its first bytes (KERNEL_HEADER_BYTES is plenty). */
export function sniffKernel(header: Uint8Array): KernelInfo {
  if (hasBytes(header, 0, ELF_MAGIC)) return sniffElf(header);
  if (isBzImage(header)) return sniffBzImage(header);
  if (isArm64Image(header)) return sniffArm64Image(header);
  const type = sniffFileType(header);
  const known = UNKNOWN_DETAILS[type];
  if (known !== undefined) return { format: 'unknown', detail: known };
  if (hasAscii(header, 0, 'MZ')) return { format: 'unknown', detail: 'a PE/COFF (EFI) executable without a Linux boot header' };
  if (header.length === 0) return { format: 'unknown', detail: 'empty file' };
  return { format: 'unknown', detail: 'no known kernel header' };
}

/** Identifies archives, file-system images, compressed data and kernels. */
export function sniffFileType(header: Uint8Array): FileType {
  if (hasAscii(header, 0, '070701') || hasAscii(header, 0, '070702')) return 'cpio-newc';
  if (hasAscii(header, 0, '070707')) return 'cpio-odc';
  if (hasAscii(header, 0, 'hsqs')) return 'squashfs';
  if (hasBytes(header, 0, [0x1f, 0x8b])) return 'gzip';
  if (hasBytes(header, 0, [0x28, 0xb5, 0x2f, 0xfd])) return 'zstd';
  if (hasBytes(header, 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'xz';
  if (hasBytes(header, 0, ELF_MAGIC)) return 'elf';
  if (isBzImage(header)) return 'bzimage';
  if (isArm64Image(header)) return 'arm64-image';
  if (hasAscii(header, 257, 'ustar')) return 'tar';
  if (u32le(header, 1024) === 0xe0f5e1e2) return 'erofs';
  // ext superblock at 1024: s_magic at +56; s_log_block_size (+24) is 0..6 in practice.
  const logBlockSize = u32le(header, 1024 + 24);
  if (u16(header, 1024 + 56, true) === 0xef53 && logBlockSize !== undefined && logBlockSize <= 6) return 'ext';
  if (hasAscii(header, 0x8001, 'CD001')) return 'iso9660';
  return 'unknown';
}

async function readHeader(path: string, bytes: number, what: string): Promise<Uint8Array> {
  // Non-blocking and fstat-checked: a FIFO or a device here must not hang the build.
  // An unreadable source: exit 2, in openRegularFile's sentence (never a bare errno code).
  const { handle } = await openRegularFile(path, { what: `${what} ${path}`, followSymlink: true, exitCode: 2, hint: `make ${path} a readable file, or name another` });
  try {
    const buffer = Buffer.alloc(bytes);
    let filled = 0;
    while (filled < bytes) {
      const { bytesRead } = await handle.read(buffer, filled, bytes - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } catch (error) {
    throw new LapinError(`cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  } finally {
    await handle.close();
  }
}

/** Reads the first KERNEL_HEADER_BYTES of a file and identifies the kernel. */
export async function readKernelInfo(path: string): Promise<KernelInfo> {
  return sniffKernel(await readHeader(path, KERNEL_HEADER_BYTES, 'kernel'));
}

/** Reads the first FILE_TYPE_HEADER_BYTES of a file and identifies its type. */
export async function readFileType(path: string): Promise<FileType> {
  return sniffFileType(await readHeader(path, FILE_TYPE_HEADER_BYTES, 'file'));
}
