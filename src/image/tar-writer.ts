import type { FileHandle } from 'node:fs/promises';
import { LapinError } from '../errors.js';
import { hasRawBytes, nameBytes } from './names.js';
import { readLayerMember } from './layer-member.js';
import { openSourceFile } from './source-file.js';
import { treePathProblem, type FsNode } from './tree.js';

/**
 * A tar writer for layers that reads each file in large blocks straight
 * into the stream. Headers are ustar with a pax record for names ustar
 * cannot hold, byte for byte what tar-stream writes, so layer digests did
 * not change when lapin stopped going through tar-stream for speed.
 */

const BLOCK = 512;
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
/** Large reads: at 64 KiB the syscalls and stream plumbing cost more than the hashing. */
export const READ_SIZE = 1024 * 1024;

type TypeFlag = '0' | '1' | '2' | '5' | 'x';

interface HeaderFields {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: TypeFlag;
  linkname?: string;
}

function octal(value: number, width: number): string {
  const text = value.toString(8);
  if (text.length > width) return `${'7'.repeat(width)} `;
  return `${'0'.repeat(width - text.length)}${text} `;
}

function checksum(block: Buffer): number {
  let sum = 8 * 32;
  for (let i = 0; i < 148; i++) sum += block[i] as number;
  for (let i = 156; i < BLOCK; i++) sum += block[i] as number;
  return sum;
}

/** One ustar header block, or undefined when the name or link needs pax. */
function ustarBlock(fields: HeaderFields): Buffer | undefined {
  let name = fields.name;
  let prefix = '';
  if (Buffer.byteLength(name) !== name.length) return undefined;
  while (name.length > 100) {
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${name.slice(0, slash)}` : name.slice(0, slash);
    name = name.slice(slash + 1);
  }
  if (name.length > 100 || prefix.length > 155) return undefined;
  if (fields.linkname !== undefined && (Buffer.byteLength(fields.linkname) > 100 || hasRawBytes(fields.linkname))) return undefined;
  return encodeBlock(fields, name, prefix);
}

function encodeBlock(fields: HeaderFields, name: string, prefix: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0);
  block.write(octal(fields.mode & 0o7777, 6), 100);
  block.write(octal(fields.uid, 6), 108);
  block.write(octal(fields.gid, 6), 116);
  if (fields.size.toString(8).length > 11) {
    // base-256 for sizes of 8 GiB and more
    block[124] = 0x80;
    let rest = fields.size;
    for (let i = 11; i > 0; i--) {
      block[124 + i] = rest % 256;
      rest = Math.floor(rest / 256);
    }
  } else {
    block.write(octal(fields.size, 11), 124);
  }
  block.write(octal(Math.trunc(fields.mtime), 11), 136);
  block[156] = fields.type.charCodeAt(0);
  if (fields.linkname) block.write(fields.linkname, 157);
  block.write('ustar\0', 257, 'latin1');
  block.write('00', 263);
  block.write(octal(0, 6), 329);
  block.write(octal(0, 6), 337);
  if (prefix) block.write(prefix, 345);
  block.write(octal(checksum(block), 6), 148);
  return block;
}

/** One pax record; the value as its exact bytes (names.ts), so a name that is not UTF-8 keeps them. */
function paxRecord(key: string, value: string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), nameBytes(value), Buffer.from('\n')]);
  const length = body.length;
  let digits = String(length).length;
  if (length + digits >= 10 ** digits) digits++;
  return Buffer.concat([Buffer.from(String(length + digits)), body]);
}

function padding(size: number): Buffer | undefined {
  const rest = size % BLOCK;
  return rest === 0 ? undefined : Buffer.alloc(BLOCK - rest);
}

/** The header bytes of one entry (pax header and data first when needed). */
export function headerBytes(fields: HeaderFields): Buffer {
  const plain = ustarBlock(fields);
  if (plain) return plain;
  // POSIX: names that are not UTF-8 are declared binary, so readers take their bytes as they are.
  const binary = hasRawBytes(fields.name) || (fields.linkname !== undefined && hasRawBytes(fields.linkname));
  const pax = Buffer.concat([
    ...(binary ? [paxRecord('hdrcharset', 'BINARY')] : []),
    ...(fields.name ? [paxRecord('path', fields.name)] : []),
    ...(fields.linkname ? [paxRecord('linkpath', fields.linkname)] : []),
  ]);
  const paxFields: HeaderFields = {
    ...fields,
    name: 'PaxHeader',
    size: pax.length,
    type: 'x',
    ...(fields.linkname ? { linkname: 'PaxHeader' } : {}),
  };
  const parts = [encodeBlock(paxFields, 'PaxHeader', ''), pax];
  const pad = padding(pax.length);
  if (pad) parts.push(pad);
  parts.push(encodeBlock({ ...paxFields, size: fields.size, type: fields.type }, 'PaxHeader', ''));
  return Buffer.concat(parts);
}

function fieldsOf(node: FsNode): HeaderFields {
  const common = { mode: node.mode, uid: node.uid, gid: node.gid, mtime: node.mtime };
  switch (node.type) {
    case 'dir':
      return { ...common, name: `${node.path}/`, size: 0, type: '5' };
    case 'file':
      return { ...common, name: node.path, size: node.size, type: '0' };
    case 'symlink':
      return { ...common, name: node.path, size: 0, type: '2', linkname: node.target };
    case 'hardlink':
      return { ...common, name: node.path, size: 0, type: '1', linkname: node.target };
  }
}

/** Uncompressed size of a layer's tar stream (pax records aside), for progress totals. */
export function tarSize(nodes: readonly FsNode[]): number {
  let size = 2 * BLOCK;
  for (const node of nodes) size += BLOCK + (node.type === 'file' ? Math.ceil(node.size / BLOCK) * BLOCK : 0);
  return size;
}

function changedSize(node: FsNode): LapinError {
  return new LapinError(`/${node.path} changed size while lapin was reading it`, { hint: 'rebuild once the file is complete' });
}

/** Reads exactly `length` bytes at `position` into `buffer` at `offset`; a short file is a changed file. */
async function readExactly(handle: FileHandle, buffer: Buffer, offset: number, length: number, position: number, node: FsNode): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, offset + done, length - done, position + done);
    if (bytesRead === 0) throw changedSize(node);
    done += bytesRead;
  }
}

/**
 * The tar bytes of nodes (in byte order, parents first) as buffers of
 * `blockSize` bytes, the last one shorter. Files are read straight into
 * these buffers at their place in the stream, and headers copied in, so a
 * consumer cutting the stream into blocks of that size (the gzip blocks)
 * never has to join pieces. Each buffer is fresh: consumers may keep it.
 */
export async function* tarChunks(nodes: readonly FsNode[], blockSize = READ_SIZE): AsyncGenerator<Buffer> {
  let current = Buffer.allocUnsafe(blockSize);
  let fill = 0;
  const nextBuffer = (): void => {
    current = Buffer.allocUnsafe(blockSize);
    fill = 0;
  };
  function* copyIn(data: Uint8Array): Generator<Buffer> {
    let offset = 0;
    while (offset < data.length) {
      const length = Math.min(blockSize - fill, data.length - offset);
      current.set(data.subarray(offset, offset + length), fill);
      fill += length;
      offset += length;
      if (fill === blockSize) {
        yield current;
        nextBuffer();
      }
    }
  }
  for (const node of nodes) {
    // A layer entry that escapes the root would write outside it when unpacked.
    for (const p of node.type === 'hardlink' ? [node.path, node.target] : [node.path]) {
      const problem = treePathProblem(p);
      if (problem) throw new LapinError(`layer entry "${p}": ${problem}`);
    }
    yield* copyIn(headerBytes(fieldsOf(node)));
    if (node.type !== 'file') continue;
    if (node.source.kind === 'bytes') {
      if (node.source.data.length !== node.size) throw changedSize(node);
      yield* copyIn(node.source.data);
    } else if (node.source.kind === 'layer') {
      // A base image's file (COPY --from an image): read from its layer blob.
      let seen = 0;
      for await (const chunk of readLayerMember(node.source.member)) {
        seen += chunk.length;
        yield* copyIn(chunk);
      }
      if (seen !== node.size) throw changedSize(node);
    } else {
      const { handle } = await openSourceFile(node.source);
      const size = node.size;
      let position = 0;
      // Reserves the next piece of the file in the current buffer and starts reading it there.
      const startRead = (): { buffer: Buffer; full: boolean; done: Promise<void> } => {
        const length = Math.min(blockSize - fill, size - position);
        const piece = { buffer: current, full: fill + length === blockSize, done: readExactly(handle, current, fill, length, position, node) };
        // Awaited in order below; a failure of a read ahead must not go unhandled meanwhile.
        piece.done.catch(() => undefined);
        fill += length;
        position += length;
        if (piece.full) nextBuffer();
        return piece;
      };
      let ahead: Promise<void> | undefined;
      try {
        let next = size > 0 ? startRead() : undefined;
        while (next) {
          const piece = next;
          // One read ahead: the next block is read while the consumer hashes and compresses this one.
          next = position < size ? startRead() : undefined;
          ahead = next?.done;
          await piece.done;
          if (piece.full) yield piece.buffer;
        }
        ahead = undefined;
        const probe = Buffer.alloc(1);
        if ((await handle.read(probe, 0, 1, size)).bytesRead !== 0) throw changedSize(node);
      } finally {
        await ahead?.catch(() => undefined);
        await handle.close();
      }
    }
    const pad = padding(node.size);
    if (pad) yield* copyIn(pad);
  }
  yield* copyIn(END_OF_ARCHIVE);
  if (fill > 0) yield current.subarray(0, fill);
}
