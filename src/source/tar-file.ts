/**
 * Random access to the members of an uncompressed tar file on disk: one pass
 * over the headers (bodies are skipped, never read), then each member is read
 * by offset. Image archives hold blobs of any size, so nothing is buffered.
 */
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { openRegularFile, readExactly } from '../regular-file.js';
import { SourceError } from './errors.js';

export interface TarMember {
  name: string;
  /** Offset of the body in the file. */
  offset: number;
  size: number;
  type: 'file' | 'directory' | 'symlink' | 'link' | 'other';
  linkname: string;
}

const BLOCK = 512;
/** pax and GNU long-name headers hold a few names; anything bigger is not a real archive. */
const LONG_HEADER_LIMIT = 1024 * 1024;
/** Members of an archive lapin indexes (an image archive holds a handful of blobs per image). */
const MEMBER_LIMIT = 1_000_000;

/** A tar header or pax record that is not what the format allows. */
class TarFormatError extends Error {}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end < 0 ? length : end).toString('utf8');
}

/**
 * A numeric header field: octal digits with optional leading spaces and a
 * NUL or space terminator, or GNU base-256 (first byte 0x80) for big values.
 * Negative base-256 values (0xff) and anything past 2^53 are refused.
 */
export function tarNumber(block: Buffer, offset: number, length: number, name: string): number {
  const first = block[offset] ?? 0;
  if (first & 0x80) {
    if (first !== 0x80) throw new TarFormatError(`a negative or malformed base-256 ${name}`);
    let value = 0;
    for (let i = 1; i < length; i++) {
      value = value * 256 + (block[offset + i] ?? 0);
      if (value > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`a ${name} too large to be real`);
    }
    return value;
  }
  const text = block.subarray(offset, offset + length).toString('latin1');
  const match = /^ *([0-7]*)[ \0]*$/.exec(text.replace(/\0.*$/s, ''));
  if (!match) throw new TarFormatError(`a ${name} field that is not octal`);
  const digits = match[1] ?? '';
  return digits === '' ? 0 : parseInt(digits, 8);
}

/** pax extended header records ("LEN key=value\n"), each checked: the length covers the record exactly. */
export function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  // A NUL-padded tail is tolerated, as GNU tar and libarchive do.
  while (position < data.length && data[position] !== 0) {
    const space = data.indexOf(0x20, position);
    const lengthText = space < 0 ? '' : data.subarray(position, space).toString('latin1');
    if (!/^[1-9][0-9]{0,9}$/.test(lengthText)) throw new TarFormatError('a pax record without a valid length');
    const length = Number(lengthText);
    const end = position + length;
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a) throw new TarFormatError('a pax record whose length does not match it');
    const record = data.subarray(space + 1, end - 1).toString('utf8');
    const equals = record.indexOf('=');
    if (equals <= 0) throw new TarFormatError('a pax record that is not key=value');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    position = end;
  }
  return records;
}

/** A pax size or offset value: decimal digits, a safe integer. */
function paxNumber(text: string, name: string): number {
  if (!/^[0-9]{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) throw new TarFormatError(`a pax ${name} that is not a size (${JSON.stringify(text.slice(0, 20))})`);
  return Number(text);
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
    const { handle, size } = await openRegularFile(path, { followSymlink: true });
    try {
      return new TarFile(path, await indexMembers(handle, size, path));
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

  /** The member's bytes, from a descriptor checked as the archive was (a regular file, no FIFO). */
  async stream(member: TarMember): Promise<Readable> {
    const { handle } = await openRegularFile(this.path, { followSymlink: true });
    if (member.size === 0) {
      await handle.close();
      return Readable.from([]);
    }
    return handle.createReadStream({ start: member.offset, end: member.offset + member.size - 1 });
  }

  /** The member's bytes in memory, refused past `maxBytes`. */
  async read(member: TarMember, maxBytes = Number.MAX_SAFE_INTEGER): Promise<Buffer> {
    if (member.size > maxBytes) throw new SourceError(`${this.path}: ${member.name} is ${member.size} bytes, more than the ${maxBytes} lapin reads for it`);
    const { handle } = await openRegularFile(this.path, { followSymlink: true });
    try {
      return await readExactly(handle, member.size, member.offset, `${this.path}: ${member.name}`);
    } finally {
      await handle.close();
    }
  }
}

async function indexMembers(handle: FileHandle, fileSize: number, path: string): Promise<Map<string, TarMember>> {
  try {
    return await walkHeaders(handle, fileSize);
  } catch (error) {
    if (error instanceof TarFormatError) throw new SourceError(`${path} is not a tar archive, or a damaged one (${error.message})`, 'give an OCI or docker archive (.tar), or a layout directory');
    throw error;
  }
}

/**
 * One pass over the headers. Every step moves forward by at least one
 * block, every body must end inside the file, and long headers are bounded,
 * so a hostile archive ends in time linear in its size.
 */
async function walkHeaders(handle: FileHandle, fileSize: number): Promise<Map<string, TarMember>> {
  const members = new Map<string, TarMember>();
  const header = Buffer.alloc(BLOCK);
  let offset = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  let sawHeader = false;
  let count = 0;
  let ended = false;
  while (offset + BLOCK <= fileSize) {
    const { bytesRead } = await handle.read(header, 0, BLOCK, offset);
    if (bytesRead < BLOCK) throw new TarFormatError(`the header at byte ${offset} is cut short`);
    if (header.every((b) => b === 0)) {
      ended = true;
      break;
    }
    const at = ` at byte ${offset}`;
    if (!checksumMatches(header)) throw new TarFormatError(`bad header checksum${at}`);
    sawHeader = true;
    if (++count > MEMBER_LIMIT) throw new TarFormatError(`more than ${MEMBER_LIMIT} headers`);
    const typeflag = String.fromCharCode(header[156] ?? 0x30);
    let size: number;
    try {
      size = tarNumber(header, 124, 12, 'size');
    } catch (error) {
      throw new TarFormatError(`${(error as Error).message}${at}`);
    }
    const bodyOffset = offset + BLOCK;
    const isLong = typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K';
    if (isLong && size > LONG_HEADER_LIMIT) throw new TarFormatError(`an extended header of ${size} bytes${at}`);
    const readBody = async (): Promise<Buffer> => {
      if (bodyOffset + size > fileSize) throw new TarFormatError(`the header${at} runs past the end of the file`);
      const body = Buffer.alloc(size);
      const { bytesRead: got } = await handle.read(body, 0, size, bodyOffset);
      if (got < size) throw new TarFormatError(`the header${at} is cut short`);
      return body;
    };
    try {
      if (typeflag === 'x') {
        pax = paxRecords(await readBody());
      } else if (typeflag === 'g') {
        // Global pax headers carry nothing a member name depends on here; still they must parse.
        paxRecords(await readBody());
      } else if (typeflag === 'L') {
        longName = field(await readBody(), 0, size);
      } else if (typeflag === 'K') {
        longLink = field(await readBody(), 0, size);
      } else {
        const prefix = field(header, 345, 155);
        const base = field(header, 0, 100);
        const ustar = field(header, 257, 5) === 'ustar';
        const name = pax.get('path') ?? longName ?? (ustar && prefix ? `${prefix}/${base}` : base);
        const linkname = pax.get('linkpath') ?? longLink ?? field(header, 157, 100);
        const paxSize = pax.get('size');
        if (paxSize !== undefined) size = paxNumber(paxSize, 'size');
        // As tar-stream reads layers: a directory has no body, whatever its size says.
        if (typeflag === '5') size = 0;
        const type: TarMember['type'] =
          typeflag === '0' || typeflag === '\0' || typeflag === '7' ? 'file' : typeflag === '5' ? 'directory' : typeflag === '2' ? 'symlink' : typeflag === '1' ? 'link' : 'other';
        if (bodyOffset + size > fileSize) throw new TarFormatError(`${JSON.stringify(name.slice(0, 200))} runs past the end of the file`);
        const key = normalizeMemberName(name);
        members.set(key, { name: key, offset: bodyOffset, size: type === 'file' ? size : 0, type, linkname });
        pax = new Map();
        longName = undefined;
        longLink = undefined;
      }
    } catch (error) {
      if (error instanceof TarFormatError && !error.message.includes(' at byte ') && !error.message.includes('runs past')) throw new TarFormatError(`${error.message}${at}`);
      throw error;
    }
    // size >= 0 always, so the walk moves forward by one block at least.
    offset = bodyOffset + Math.ceil(size / BLOCK) * BLOCK;
  }
  if (!ended && offset < fileSize) throw new TarFormatError(`the header at byte ${offset} is cut short`);
  if (!sawHeader) throw new TarFormatError('no members');
  return members;
}

/** The header checksum: the sum of its bytes with the checksum field as spaces (unsigned, or signed as old tars wrote). */
function checksumMatches(header: Buffer): boolean {
  let stored: number;
  try {
    stored = tarNumber(header, 148, 8, 'checksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}
