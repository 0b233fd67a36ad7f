/**
 * Random access to the members of an uncompressed tar file on disk: one pass
 * over the headers (bodies are skipped, never read), then each member is read
 * by offset. Image archives hold blobs of any size, so nothing is buffered.
 */
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';

export interface TarMember {
  name: string;
  /** Offset of the body in the file. */
  offset: number;
  size: number;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'other';
  linkname: string;
}

const BLOCK = 512;

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

function numeric(block: Buffer, offset: number, length: number): number {
  const first = block[offset] ?? 0;
  if (first & 0x80) {
    // GNU base-256 for sizes of 8 GiB and more.
    let value = 0;
    for (let i = 1; i < length; i++) value = value * 256 + (block[offset + i] ?? 0);
    return value;
  }
  const text = field(block, offset, length).trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length) {
    const space = data.indexOf(0x20, position);
    if (space < 0) break;
    const length = Number(data.subarray(position, space).toString('ascii'));
    if (!Number.isInteger(length) || length <= 0) break;
    const record = data.subarray(space + 1, position + length - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1));
    position += length;
  }
  return records;
}

/** Strips "./" and leading "/" so "./blobs/x" and "blobs/x" are one name. */
export function normalizeMemberName(name: string): string {
  const normalized = posix.normalize(`/${name}`).replace(/\/+$/, '');
  return normalized.slice(1);
}

export class TarFile {
  private constructor(
    readonly path: string,
    private readonly members: Map<string, TarMember>,
  ) {}

  static async open(path: string): Promise<TarFile> {
    const handle = await open(path, 'r');
    try {
      return new TarFile(path, await indexMembers(handle, path));
    } finally {
      await handle.close();
    }
  }

  names(): string[] {
    return [...this.members.keys()];
  }

  /** The member with this name, following symlinks and hard links inside the archive. */
  member(name: string): TarMember | undefined {
    let current = this.members.get(normalizeMemberName(name));
    for (let hops = 0; current && hops < 16; hops++) {
      if (current.type === 'file') return current;
      if (current.type === 'link') current = this.members.get(normalizeMemberName(current.linkname));
      else if (current.type === 'symlink') {
        const target = current.linkname.startsWith('/') ? current.linkname : posix.join(posix.dirname(current.name), current.linkname);
        current = this.members.get(normalizeMemberName(target));
      } else return undefined;
    }
    return undefined;
  }

  stream(member: TarMember): Readable {
    if (member.size === 0) return createReadStream(this.path, { start: 1, end: 0 });
    return createReadStream(this.path, { start: member.offset, end: member.offset + member.size - 1 });
  }

  async read(member: TarMember): Promise<Buffer> {
    const handle = await open(this.path, 'r');
    try {
      const data = Buffer.alloc(member.size);
      let filled = 0;
      while (filled < member.size) {
        const { bytesRead } = await handle.read(data, filled, member.size - filled, member.offset + filled);
        if (bytesRead === 0) throw new Error(`${this.path}: ${member.name} is cut short`);
        filled += bytesRead;
      }
      return data;
    } finally {
      await handle.close();
    }
  }
}

async function indexMembers(handle: FileHandle, path: string): Promise<Map<string, TarMember>> {
  const { size: fileSize } = await handle.stat();
  const members = new Map<string, TarMember>();
  const header = Buffer.alloc(BLOCK);
  let offset = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  let sawHeader = false;
  while (offset + BLOCK <= fileSize) {
    const { bytesRead } = await handle.read(header, 0, BLOCK, offset);
    if (bytesRead < BLOCK) break;
    if (header.every((b) => b === 0)) break;
    if (!field(header, 257, 5).startsWith('ustar') && !isV7Checksum(header)) {
      throw new Error(`${path} is not a tar archive (bad header at byte ${offset})`);
    }
    sawHeader = true;
    const typeflag = String.fromCharCode(header[156] ?? 0x30);
    let size = numeric(header, 124, 12);
    const bodyOffset = offset + BLOCK;
    const readBody = async (): Promise<Buffer> => {
      const body = Buffer.alloc(size);
      await handle.read(body, 0, size, bodyOffset);
      return body;
    };
    if (typeflag === 'x') {
      pax = paxRecords(await readBody());
    } else if (typeflag === 'g') {
      // Global pax headers carry nothing a member name depends on here.
    } else if (typeflag === 'L') {
      longName = field(await readBody(), 0, size);
    } else if (typeflag === 'K') {
      longLink = field(await readBody(), 0, size);
    } else {
      const prefix = field(header, 345, 155);
      const base = field(header, 0, 100);
      const name = pax.get('path') ?? longName ?? (prefix ? `${prefix}/${base}` : base);
      const linkname = pax.get('linkpath') ?? longLink ?? field(header, 157, 100);
      const paxSize = pax.get('size');
      if (paxSize !== undefined) size = Number(paxSize);
      const type: TarMember['type'] =
        typeflag === '0' || typeflag === '\0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : typeflag === '2' ? 'symlink' : typeflag === '1' ? 'link' : 'other';
      const key = normalizeMemberName(name);
      members.set(key, { name: key, offset: bodyOffset, size: type === 'file' ? size : 0, type, linkname });
      pax = new Map();
      longName = undefined;
      longLink = undefined;
    }
    offset = bodyOffset + Math.ceil(size / BLOCK) * BLOCK;
  }
  if (!sawHeader) throw new Error(`${path} is not a tar archive (no members)`);
  return members;
}

function isV7Checksum(header: Buffer): boolean {
  const stored = numeric(header, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
  return stored === sum;
}
