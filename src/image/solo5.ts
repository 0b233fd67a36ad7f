/**
 * The Solo5 notes of an hvt/spt unikernel: the manifest ("MFT1"), which
 * names the network and block devices the unikernel expects, and the ABI
 * note ("ABI1"), which says the tender it is built for. solo5-hvt/spt refuse
 * a device the manifest does not declare and a declared device left
 * unattached, and urunc attaches its devices under solo5NetDev/solo5BlkDev
 * (default service/storage), so the names must agree.
 *
 * The layout follows Solo5's include/mft_abi.h and elf_abi.h, and the
 * search follows its tenders (tenders/common/elf.c elf_load_note, mft.c
 * mft_validate): the first note of each PT_NOTE segment, named "Solo5", of
 * the wanted type; the descriptor after the header padded to the structure's
 * alignment (8 for the manifest, 4 for the ABI note). Only 64-bit
 * little-endian ELF, as the tenders load. Every read is bounded and checked
 * against the file size, so a hostile file gives a problem, never a throw.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { NEWEST_URUNC_RELEASE, releaseName, releaseReadsKey, type UruncRelease } from '../plan/releases.js';

export type Solo5DeviceType = 'NET_BASIC' | 'BLOCK_BASIC' | 'PCI_BASIC' | `type ${number}`;

export interface Solo5Device {
  name: string;
  type: Solo5DeviceType;
}

export interface Solo5Notes {
  /** The manifest's devices, without the reserved first entry; absent when there is no manifest note. */
  devices?: Solo5Device[];
  /** The tender the ABI note names: hvt, spt, virtio, muen, genode, xen, or "target N". */
  abi?: string;
  /** Why a Solo5 note that is there cannot be used (solo5 would refuse the binary). */
  problems: string[];
}

/** Reads `length` bytes at `offset`; a shorter buffer at the end of what is there. */
export type ByteReader = (offset: number, length: number) => Buffer;

const SOLO5_NOTE_NAME = Buffer.from('Solo5\0', 'latin1');
const MFT1_NOTE_TYPE = 0x3154464d;
const ABI1_NOTE_TYPE = 0x31494241;
const PT_NOTE = 4;
/** Elf64_Nhdr plus "Solo5\0" padded to 8 bytes. */
const SOLO5_NHDR_BYTES = 20;
const MFT_HEADER_BYTES = 8;
const MFT_ENTRY_BYTES = 104;
const MFT_NAME_SIZE = 68;
const MFT_MAX_ENTRIES = 64;
const MFT_RESERVED_FIRST = 1 << 30;
/** MFT1_NOTE_MAX_SIZE: the alignment padding, struct mft and 64 entries. */
const MFT1_NOTE_MAX_SIZE = 4 + MFT_HEADER_BYTES + MFT_MAX_ENTRIES * MFT_ENTRY_BYTES;
const ABI1_NOTE_BYTES = 16;
/** More program headers than any linker writes for a unikernel; a hostile e_phnum is cut here. */
const MAX_PROGRAM_HEADERS = 512;
const MAX_PROGRAM_HEADER_BYTES = 1024;
const DEVICE_TYPES: Record<number, Solo5DeviceType> = { 1: 'BLOCK_BASIC', 2: 'NET_BASIC', 3: 'PCI_BASIC' };
const ABI_TARGETS: Record<number, string> = { 1: 'hvt', 2: 'spt', 3: 'virtio', 4: 'muen', 5: 'genode', 6: 'xen' };
/** How solo5-elftool accepts device names. */
const DEVICE_NAME = /^[A-Za-z0-9]{1,67}$/;

interface NoteFound {
  offset: number;
  descsz: number;
}

/**
 * The Solo5 notes of an ELF file, or undefined when it is not a 64-bit
 * little-endian ELF (then it is no Solo5 unikernel either).
 */
export function readSolo5Notes(read: ByteReader): Solo5Notes | undefined {
  const ehdr = read(0, 64);
  if (ehdr.length < 64 || ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2 || ehdr[5] !== 1) return undefined;
  const notes: Solo5Notes = { problems: [] };
  const phoff = ehdr.readBigUInt64LE(32);
  const phentsize = ehdr.readUInt16LE(54);
  const phnum = ehdr.readUInt16LE(56);
  // A table that cannot be read is the ELF loader's problem, not the notes': nothing is reported.
  if (phnum === 0 || phentsize < 56 || phentsize > MAX_PROGRAM_HEADER_BYTES) return notes;
  const count = Math.min(phnum, MAX_PROGRAM_HEADERS);
  const tableBytes = count * phentsize;
  if (phoff > BigInt(Number.MAX_SAFE_INTEGER - tableBytes)) return notes;
  const table = read(Number(phoff), tableBytes);
  if (table.length < tableBytes) return notes;
  const segments: Array<{ offset: bigint; filesz: bigint }> = [];
  for (let i = 0; i < count; i++) {
    const at = i * phentsize;
    if (table.readUInt32LE(at) === PT_NOTE) segments.push({ offset: table.readBigUInt64LE(at + 8), filesz: table.readBigUInt64LE(at + 32) });
  }
  const manifest = findNote(read, segments, MFT1_NOTE_TYPE, MFT1_NOTE_MAX_SIZE, notes.problems);
  if (manifest) readManifest(read, manifest, notes);
  const abi = findNote(read, segments, ABI1_NOTE_TYPE, ABI1_NOTE_BYTES, notes.problems);
  if (abi) {
    const info = read(abi.offset + SOLO5_NHDR_BYTES, 8);
    if (info.length < 8) notes.problems.push('the Solo5 ABI note is cut short');
    else notes.abi = ABI_TARGETS[info.readUInt32LE(0)] ?? `target ${info.readUInt32LE(0)}`;
  }
  return notes;
}

/** The first Solo5 note of `type` in the PT_NOTE segments, as the tenders look for it. */
function findNote(read: ByteReader, segments: ReadonlyArray<{ offset: bigint; filesz: bigint }>, type: number, maxDescsz: number, problems: string[]): NoteFound | undefined {
  for (const segment of segments) {
    if (segment.filesz < BigInt(SOLO5_NHDR_BYTES) || segment.offset > BigInt(Number.MAX_SAFE_INTEGER)) continue;
    const offset = Number(segment.offset);
    const header = read(offset, SOLO5_NHDR_BYTES);
    if (header.length < SOLO5_NHDR_BYTES) continue;
    if (header.readUInt32LE(0) !== SOLO5_NOTE_NAME.length || !header.subarray(12, 18).equals(SOLO5_NOTE_NAME)) continue;
    if (header.readUInt32LE(8) !== type) continue;
    const descsz = header.readUInt32LE(4);
    const what = type === MFT1_NOTE_TYPE ? 'manifest' : 'ABI note';
    if (descsz < 1 || descsz > maxDescsz) {
      problems.push(`the Solo5 ${what} claims ${descsz} bytes (at most ${maxDescsz})`);
      return undefined;
    }
    if (segment.filesz < BigInt(SOLO5_NHDR_BYTES + descsz)) {
      problems.push(`the Solo5 ${what} is longer than its segment`);
      return undefined;
    }
    return { offset, descsz };
  }
  return undefined;
}

/** struct mft after 4 bytes of padding, checked as mft_validate does. */
function readManifest(read: ByteReader, note: NoteFound, notes: Solo5Notes): void {
  const size = note.descsz - 4;
  const data = size > 0 ? read(note.offset + SOLO5_NHDR_BYTES + 4, size) : Buffer.alloc(0);
  const invalid = (why: string): void => {
    notes.problems.push(`the Solo5 manifest is invalid: ${why}`);
  };
  if (size < MFT_HEADER_BYTES || data.length < size) return invalid('it is cut short');
  const version = data.readUInt32LE(0);
  const entries = data.readUInt32LE(4);
  if (version !== 1) return invalid(`version ${version} (solo5 reads version 1)`);
  if (entries < 1 || entries > MFT_MAX_ENTRIES) return invalid(`${entries} entries (1 to ${MFT_MAX_ENTRIES})`);
  if (size !== MFT_HEADER_BYTES + entries * MFT_ENTRY_BYTES) return invalid(`${size} bytes for ${entries} entries`);
  const devices: Solo5Device[] = [];
  for (let i = 0; i < entries; i++) {
    const at = MFT_HEADER_BYTES + i * MFT_ENTRY_BYTES;
    const nameBytes = data.subarray(at, at + MFT_NAME_SIZE);
    if (nameBytes[MFT_NAME_SIZE - 1] !== 0) return invalid(`entry ${i} has an unterminated name`);
    if (data[at + 96] !== 0) return invalid(`entry ${i} is marked attached`);
    const end = nameBytes.indexOf(0);
    const name = nameBytes.subarray(0, end).toString('latin1');
    const type = data.readUInt32LE(at + MFT_NAME_SIZE);
    if (i === 0) {
      if (type !== MFT_RESERVED_FIRST || name !== '') return invalid('the first entry is not the reserved one');
      continue;
    }
    if (!DEVICE_NAME.test(name)) return invalid(`entry ${i} has a name that is not 1 to 67 letters or digits`);
    devices.push({ name, type: DEVICE_TYPES[type] ?? `type ${type}` });
  }
  notes.devices = devices;
}

/** A reader over bytes in memory (e.g. the first KiB of a file inspect captured). */
export function bufferReader(data: Buffer): ByteReader {
  return (offset, length) => (offset >= data.length ? Buffer.alloc(0) : data.subarray(offset, Math.min(data.length, offset + length)));
}

/**
 * The Solo5 notes from the first bytes of a file of `fileSize` bytes;
 * undefined when they lie past those bytes (nothing is known then).
 */
export function readSolo5NotesFromHeader(header: Buffer, fileSize: number): Solo5Notes | undefined {
  let overran = false;
  const notes = readSolo5Notes((offset, length) => {
    if (offset + length > header.length && header.length < fileSize) overran = true;
    return bufferReader(header)(offset, length);
  });
  return overran ? undefined : notes;
}

/**
 * The Solo5 notes of a file on disk, read in small bounded pieces; undefined
 * for what is not a regular file or cannot be read (the layer writer then
 * reports it).
 */
export function readSolo5NotesFromFile(file: string): Solo5Notes | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) return undefined;
    const size = stats.size;
    return readSolo5Notes((offset, length) => {
      const wanted = Math.max(0, Math.min(length, size - offset));
      const buffer = Buffer.alloc(wanted);
      let done = 0;
      while (done < wanted) {
        const n = readSync(fd, buffer, done, wanted - done, offset + done);
        if (n === 0) break;
        done += n;
      }
      return buffer.subarray(0, done);
    });
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** One line for people: "net service, block storage (hvt)". */
export function describeSolo5(notes: Solo5Notes): string {
  const parts: string[] = [];
  if (notes.devices) {
    parts.push(notes.devices.length === 0 ? 'no devices' : notes.devices.map((d) => `${d.type === 'NET_BASIC' ? 'net' : d.type === 'BLOCK_BASIC' ? 'block' : d.type} ${d.name}`).join(', '));
  } else {
    parts.push('no manifest');
  }
  if (notes.abi) parts.push(`ABI ${notes.abi}`);
  return [...parts, ...notes.problems].join('; ');
}

export interface Solo5Advice {
  /** Values to write because the manifest names the device another way and nothing was given. */
  set: Partial<Record<'solo5NetDev' | 'solo5BlkDev', string>>;
  warnings: string[];
}

/**
 * What the manifest means for the urunc values: which device names to set,
 * and what solo5 would refuse. A value absent from `values` was not given
 * (urunc then uses its default). Only for guests whose devices urunc names
 * with solo5NetDev/solo5BlkDev (not rumprun, which uses its own names).
 * A release older than 0.8 reads neither key and always attaches
 * service/storage, so a manifest naming another device fails there even
 * when the key is set (it is still set, for urunc 0.8).
 */
export function adviseSolo5(notes: Solo5Notes, values: Readonly<Record<string, string>>, release: UruncRelease = NEWEST_URUNC_RELEASE): Solo5Advice {
  const advice: Solo5Advice = { set: {}, warnings: [] };
  const monitor = values.hypervisor;
  if (monitor !== 'hvt' && monitor !== 'spt') return advice;
  for (const problem of notes.problems) advice.warnings.push(`the kernel's ${problem}; solo5-${monitor} refuses it`);
  if (notes.abi !== undefined && notes.abi !== monitor) advice.warnings.push(`the kernel is built for solo5-${notes.abi} (its Solo5 ABI note) but the image says hypervisor ${monitor}`);
  if (values.unikernelType === 'rumprun' || notes.devices === undefined) return advice;
  const tender = `solo5-${monitor}`;
  const kinds = [
    { key: 'solo5NetDev', type: 'NET_BASIC', fallback: 'service', what: 'network', attached: true },
    { key: 'solo5BlkDev', type: 'BLOCK_BASIC', fallback: 'storage', what: 'block', attached: values.block !== undefined },
  ] as const;
  for (const kind of kinds) {
    const declared = notes.devices.filter((d) => d.type === kind.type).map((d) => d.name);
    const value = values[kind.key];
    if (declared.length > 1) {
      advice.warnings.push(`the kernel's Solo5 manifest declares ${declared.length} ${kind.what} devices (${declared.join(', ')}); urunc attaches one, and ${tender} refuses a declared device left unattached`);
      continue;
    }
    const name = declared[0];
    if (name === undefined) {
      if (kind.type === 'NET_BASIC') {
        advice.warnings.push(`the kernel's Solo5 manifest declares no network device, but urunc attaches one whenever the container has a network interface, and ${tender} refuses a device the manifest does not declare; run it with no network (docker run --network none)`);
      }
      if (kind.type === 'BLOCK_BASIC' && values.block !== undefined) {
        advice.warnings.push(`the image has a block rootfs but the kernel's Solo5 manifest declares no block device; ${tender} refuses the one urunc attaches`);
      }
      continue;
    }
    if (kind.type === 'BLOCK_BASIC' && !kind.attached) {
      advice.warnings.push(`the kernel's Solo5 manifest declares the block device ${name}, but the image has no block rootfs for urunc to attach; ${tender} refuses to start without it`);
      continue;
    }
    if (!releaseReadsKey(release, kind.key)) {
      if (name !== kind.fallback) {
        advice.warnings.push(`the kernel's Solo5 manifest names its ${kind.what} device ${JSON.stringify(name)}, but ${releaseName(release)} always attaches it as ${JSON.stringify(kind.fallback)} (it does not read ${kind.key}; urunc 0.8 does); ${tender} refuses it`);
        if (value === undefined) advice.set[kind.key] = name;
      }
      continue;
    }
    const effective = value ?? kind.fallback;
    if (effective === name) continue;
    if (value !== undefined) {
      advice.warnings.push(`${kind.key} is ${JSON.stringify(effective)} but the kernel's Solo5 manifest names its ${kind.what} device ${JSON.stringify(name)}; ${tender} refuses the device urunc attaches`);
    } else {
      advice.set[kind.key] = name;
    }
  }
  return advice;
}

/** The metadata fields a build changes when the manifest names a device. */
export interface Solo5Metadata {
  urunc: Record<string, string>;
  config: { labels: Record<string, string> };
  annotations: Record<string, string>;
}

/**
 * At build time: reads the kernel's notes, sets solo5NetDev/solo5BlkDev
 * where the manifest names a device otherwise and nothing was given, and
 * returns the lines to print (steps and warnings).
 */
export function applySolo5Notes(
  notes: Solo5Notes | undefined,
  metadata: Solo5Metadata,
  keyOrder: readonly string[],
  release: UruncRelease = NEWEST_URUNC_RELEASE,
): { steps: string[]; warnings: string[] } {
  if (notes === undefined || (notes.devices === undefined && notes.abi === undefined && notes.problems.length === 0)) return { steps: [], warnings: [] };
  const advice = adviseSolo5(notes, metadata.urunc, release);
  const steps = [`kernel Solo5 notes: ${describeSolo5(notes)}`];
  for (const [key, value] of Object.entries(advice.set)) {
    const full = `com.urunc.unikernel.${key}`;
    const next: Record<string, string> = {};
    for (const k of [...keyOrder, ...Object.keys(metadata.urunc)]) {
      const v = k === key ? value : metadata.urunc[k];
      if (v !== undefined && !(k in next)) next[k] = v;
    }
    for (const k of Object.keys(metadata.urunc)) delete metadata.urunc[k];
    Object.assign(metadata.urunc, next);
    metadata.config.labels = sorted({ ...metadata.config.labels, [full]: value });
    const annotations = sorted({ ...metadata.annotations, [full]: value });
    for (const k of Object.keys(metadata.annotations)) delete metadata.annotations[k];
    Object.assign(metadata.annotations, annotations);
    steps.push(`${key}=${value}: the device name the kernel's Solo5 manifest declares`);
  }
  return { steps, warnings: advice.warnings };
}

function sorted(record: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
