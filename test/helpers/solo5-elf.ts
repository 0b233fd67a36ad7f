// A small writer of Solo5-style ELF executables for the tests: a 64-bit
// little-endian ET_EXEC with one PT_LOAD and Solo5's PT_NOTE segments (the
// "OpenBSD" marker note first, as Solo5's linker scripts put it, then the
// ABI1 and MFT1 notes), laid out as Solo5's include/elf_abi.h and
// include/mft_abi.h define them. Written here from those definitions.

export interface Solo5ElfDevice {
  name: string;
  /** 1 = BLOCK_BASIC, 2 = NET_BASIC, or any number for odd manifests. */
  type: 'net' | 'block' | number;
}

export interface Solo5ElfOptions {
  /** 1 = hvt, 2 = spt; absent: no ABI note. */
  abi?: 'hvt' | 'spt' | number;
  /** Absent: no manifest note. */
  devices?: Solo5ElfDevice[];
  /** e_machine: 0x3e x86-64 (default), 0xb7 aarch64. */
  machine?: number;
  /** Bytes of filler code after the notes. */
  padding?: number;
}

const MFT_ENTRY_BYTES = 104;

function note(type: number, descriptor: Buffer, descriptorOffset: number): Buffer {
  // Elf64_Nhdr (namesz, descsz, type) + "Solo5\0" padded to 8, then padding to the descriptor's alignment.
  const header = Buffer.alloc(descriptorOffset);
  header.writeUInt32LE(6, 0);
  header.writeUInt32LE(descriptorOffset - 20 + descriptor.length, 4);
  header.writeUInt32LE(type, 8);
  header.write('Solo5\0', 12, 'latin1');
  return Buffer.concat([header, descriptor]);
}

/** struct mft for `devices`, with the reserved first entry. */
export function manifestDescriptor(devices: readonly Solo5ElfDevice[]): Buffer {
  const entries = devices.length + 1;
  const data = Buffer.alloc(8 + entries * MFT_ENTRY_BYTES);
  data.writeUInt32LE(1, 0);
  data.writeUInt32LE(entries, 4);
  data.writeUInt32LE(1 << 30, 8 + 68);
  devices.forEach((device, i) => {
    const at = 8 + (i + 1) * MFT_ENTRY_BYTES;
    data.write(device.name, at, 67, 'latin1');
    data.writeUInt32LE(device.type === 'block' ? 1 : device.type === 'net' ? 2 : device.type, at + 68);
  });
  return data;
}

/** An hvt/spt-style unikernel binary whose notes say what `options` says. */
export function solo5Elf(options: Solo5ElfOptions = {}): Buffer {
  const notes: Buffer[] = [];
  const openbsd = Buffer.alloc(24);
  openbsd.writeUInt32LE(8, 0);
  openbsd.writeUInt32LE(4, 4);
  openbsd.writeUInt32LE(1, 8);
  openbsd.write('OpenBSD\0', 12, 'latin1');
  notes.push(openbsd);
  if (options.abi !== undefined) {
    const info = Buffer.alloc(16);
    info.writeUInt32LE(options.abi === 'hvt' ? 1 : options.abi === 'spt' ? 2 : options.abi, 0);
    info.writeUInt32LE(2, 4);
    notes.push(note(0x31494241, info, 20));
  }
  if (options.devices !== undefined) notes.push(note(0x3154464d, manifestDescriptor(options.devices), 24));
  const phnum = 1 + notes.length;
  const headersEnd = 64 + phnum * 56;
  const noteOffsets: number[] = [];
  let offset = Math.ceil(headersEnd / 8) * 8;
  for (const n of notes) {
    noteOffsets.push(offset);
    offset = Math.ceil((offset + n.length) / 8) * 8;
  }
  const size = offset + (options.padding ?? 256);
  const file = Buffer.alloc(size, 0);
  file.fill(0x90, offset);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]).copy(file, 0);
  file.writeUInt16LE(2, 16); // ET_EXEC
  file.writeUInt16LE(options.machine ?? 0x3e, 18);
  file.writeUInt32LE(1, 20);
  file.writeBigUInt64LE(0x100000n + BigInt(offset), 24); // e_entry
  file.writeBigUInt64LE(64n, 32); // e_phoff
  file.writeUInt16LE(64, 52); // e_ehsize
  file.writeUInt16LE(56, 54); // e_phentsize
  file.writeUInt16LE(phnum, 56);
  const phdr = (index: number, type: number, flags: number, at: number, length: number, align: number): void => {
    const p = 64 + index * 56;
    file.writeUInt32LE(type, p);
    file.writeUInt32LE(flags, p + 4);
    file.writeBigUInt64LE(BigInt(at), p + 8);
    file.writeBigUInt64LE(0x100000n + BigInt(at), p + 16);
    file.writeBigUInt64LE(0x100000n + BigInt(at), p + 24);
    file.writeBigUInt64LE(BigInt(length), p + 32);
    file.writeBigUInt64LE(BigInt(length), p + 40);
    file.writeBigUInt64LE(BigInt(align), p + 48);
  };
  phdr(0, 1, 5, 0, size, 0x1000); // PT_LOAD, R+X
  notes.forEach((n, i) => {
    n.copy(file, noteOffsets[i] as number);
    // Solo5 declares its notes aligned(4); readelf then finds the descriptor right after the name.
    phdr(i + 1, 4, 4, noteOffsets[i] as number, n.length, 4); // PT_NOTE
  });
  return file;
}
