/**
 * Reading a base image's file from its layer blob, for the writers that
 * need its bytes. A base's layers are indexed, not extracted (a FROM build
 * reuses them as they are); a file's data is decompressed from the blob
 * when a step reads it. Layers are read in order, and so are the writers'
 * files, so a reader that finished one member keeps its place and serves
 * the next one further on: writing a whole tree decompresses each layer
 * about once. A member asked for behind a reader's place starts a new one.
 */
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, createWriteStream, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import path from 'node:path';
import { Readable, pipeline as pipelineCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LapinError } from '../errors.js';
import { makeDirectories } from '../mkdirp.js';
import { LayerDecompressor } from '../source/decompress.js';
import { temporaryName } from '../temporaries.js';
import type { BlobCheck, FileSource, LayerMember } from './tree.js';

export type LayerSource = Extract<FileSource, { kind: 'layer' }>;

/** A decompressing reader of one blob, positioned in its uncompressed tar. */
class BlobReader {
  position = 0;
  private pending: Buffer | undefined;
  private readonly stream: Readable;
  private readonly chunks: AsyncIterator<Buffer>;
  /** Whether the blob is zstd: its reader runs a zstd process, which is not kept between members. */
  readonly zstd: boolean;
  private readonly file: Readable;

  constructor(
    readonly blob: string,
    readonly fd: number,
    what: string,
  ) {
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    this.zstd = head.readUInt32BE(0) === 0x28b52ffd;
    const decompressor = new LayerDecompressor(what);
    // autoClose off: a stream that closed the fd at the blob's end left a window in which takeReader
    // fstat-ed a closed (or reused) descriptor. The fd lives until close() destroys the file stream,
    // which closes it once (after any read in flight).
    const file = createReadStream(blob, { fd, start: 0, autoClose: false });
    this.file = file;
    this.stream = pipelineCallback(file, decompressor, () => {
      // Errors reach the reader through the stream's iterator.
    });
    this.chunks = this.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  /** The next piece, at most `max` bytes; undefined at the end of the tar. */
  async next(max: number): Promise<Buffer | undefined> {
    let chunk = this.pending;
    this.pending = undefined;
    if (!chunk) {
      const result = await this.chunks.next();
      if (result.done) return undefined;
      chunk = result.value;
    }
    if (chunk.length > max) {
      this.pending = chunk.subarray(max);
      chunk = chunk.subarray(0, max);
    }
    this.position += chunk.length;
    return chunk;
  }

  close(): void {
    this.stream.destroy();
    this.file.destroy();
  }
}

/** Readers that finished a member, by blob, to serve the next member further on. */
const idle = new Map<string, BlobReader[]>();
const IDLE_PER_BLOB = 2;
const IDLE_MS = 10_000;

const sameFile = (info: Stats, check: BlobCheck): boolean => info.dev === check.dev && info.ino === check.ino && info.size === check.size && info.mtimeMs === check.mtimeMs;

/** Whether the open blob still holds the digest its layer was indexed from. */
async function holdsDigest(fd: number, check: BlobCheck): Promise<boolean> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream('', { fd, start: 0, autoClose: false }) as AsyncIterable<Buffer>) hash.update(chunk);
  } catch {
    return false;
  }
  return `sha256:${hash.digest('hex')}` === check.digest;
}

function blobChanged(member: LayerMember, detail: string): LapinError {
  return new LapinError(`${member.what}: the layer blob ${member.blob} ${detail} after lapin indexed it; nothing was written from it`, {
    hint: 'something changed the pull cache during the build; build again (--pull=always pulls the layer again)',
  });
}

/**
 * Opens the member's blob, checked against the file that was indexed: the
 * offsets are into those bytes, so a blob replaced, cut or rewritten since
 * is read only if it still hashes to the layer's digest (a re-pull of the
 * same layer), else refused; a deleted one is a clean error.
 */
async function openBlob(member: LayerMember): Promise<number> {
  let fd: number;
  try {
    fd = openSync(member.blob, 'r');
  } catch (error) {
    throw blobChanged(member, `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const check = member.blobCheck;
  if (check) {
    const info = fstatSync(fd);
    if (!sameFile(info, check)) {
      if (info.size !== check.size || !(await holdsDigest(fd, check))) {
        closeSync(fd);
        throw blobChanged(member, `no longer holds ${check.digest}`);
      }
      Object.assign(check, { dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs });
    }
  }
  return fd;
}

async function takeReader(member: LayerMember): Promise<BlobReader> {
  const readers = idle.get(member.blob) ?? [];
  let best = -1;
  for (const [index, reader] of readers.entries()) {
    if (reader.position <= member.offset - 512 && (best < 0 || reader.position > (readers[best] as BlobReader).position)) best = index;
  }
  if (best >= 0) {
    const reader = readers.splice(best, 1)[0] as BlobReader;
    // A blob written in place since this reader opened it is not read on from there.
    if (!member.blobCheck || sameFile(fstatSync(reader.fd), member.blobCheck)) return reader;
    reader.close();
  }
  const fd = await openBlob(member);
  try {
    return new BlobReader(member.blob, fd, member.what);
  } catch (error) {
    closeSync(fd);
    throw blobChanged(member, `cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
}

function giveBack(reader: BlobReader): void {
  if (reader.zstd) {
    reader.close();
    return;
  }
  const readers = idle.get(reader.blob) ?? [];
  readers.push(reader);
  while (readers.length > IDLE_PER_BLOB) readers.shift()?.close();
  idle.set(reader.blob, readers);
  // A reader nobody took again lets its file go; the timer does not hold the process.
  setTimeout(() => {
    const at = readers.indexOf(reader);
    if (at < 0) return;
    readers.splice(at, 1);
    reader.close();
    if (readers.length === 0 && idle.get(reader.blob) === readers) idle.delete(reader.blob);
  }, IDLE_MS).unref();
}

/** Closes the readers kept between members (the end of a build). */
export function closeLayerReaders(): void {
  for (const readers of idle.values()) for (const reader of readers) reader.close();
  idle.clear();
}

function cutShort(member: LayerMember): LapinError {
  return new LapinError(`${member.what}: the layer ends before the file's ${member.size} bytes do`, { hint: 'the cached layer is damaged; pull the image again (--pull=always)' });
}

/** Whether `block` is a checksummed tar header of a regular file of `size` bytes (sizes past the octal field's 8 GiB are not compared). */
function isFileHeader(block: Buffer, size: number): boolean {
  const octal = (start: number, length: number): number => Number.parseInt(block.toString('latin1', start, start + length).replace(/[\0 ]+$/, '').trim() || 'x', 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
  if (octal(148, 8) !== sum) return false;
  const type = block[156];
  if (type !== 0x30 && type !== 0 && type !== 0x37) return false;
  return size >= 0o77777777777 || ((block[124] as number) & 0x80) !== 0 || octal(124, 12) === size;
}

/** Whether the header names `entryPath`; a long or non-ASCII name, which a pax or GNU record carries instead, is not compared. */
function namesPath(block: Buffer, entryPath: string | undefined): boolean {
  if (entryPath === undefined || !/^[\x21-\x7e]{1,99}$/.test(entryPath.replace(/ /g, '_'))) return true;
  const field = (start: number, length: number): string => block.toString('latin1', start, start + length).replace(/\0[\s\S]*$/, '');
  const prefix = block.toString('latin1', 257, 263).startsWith('ustar') ? field(345, 155) : '';
  const name = `${prefix === '' ? '' : `${prefix}/`}${field(0, 100)}`.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
  return name === entryPath;
}

function notItsHeader(member: LayerMember): LapinError {
  return new LapinError(`${member.what}: the layer's index in lapin's pull cache does not point at this file's data (offset ${member.offset}); nothing was written from it`, {
    hint: "the cache was changed by hand or damaged; delete the registry/index directory of lapin's cache ($LAPIN_CACHE_DIR, else ~/.cache/lapin) and build again",
  });
}

/** The member's bytes, in pieces, exactly `size` of them. */
export async function* readLayerMember(member: LayerMember): AsyncGenerator<Buffer> {
  if (member.file !== undefined) {
    let seen = 0;
    for await (const chunk of createReadStream(member.file) as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > member.size) break;
      yield chunk;
    }
    if (seen !== member.size) throw new LapinError(`${member.file} (${member.what}) changed size while lapin was building`, { hint: 'build again' });
    return;
  }
  if (!Number.isSafeInteger(member.offset) || member.offset < 512 || member.offset % 512 !== 0) throw notItsHeader(member);
  const reader = await takeReader(member);
  let whole = false;
  try {
    // The 512 bytes before the data are the file's tar header: an index whose offset is not a file's is not read from.
    const header = Buffer.alloc(512);
    while (reader.position < member.offset) {
      const into = 512 - (member.offset - reader.position);
      const chunk = await reader.next(member.offset - reader.position);
      if (chunk === undefined) throw cutShort(member);
      if (into + chunk.length > 0) chunk.subarray(Math.max(0, -into)).copy(header, Math.max(0, into));
    }
    if (!isFileHeader(header, member.size) || !namesPath(header, member.entryPath)) throw notItsHeader(member);
    let left = member.size;
    while (left > 0) {
      const chunk = await reader.next(Math.min(left, 1 << 20));
      if (chunk === undefined) throw cutShort(member);
      left -= chunk.length;
      yield chunk;
    }
    whole = true;
  } finally {
    // A reader stopped half-way (an error, or a consumer that read enough) is not at a member's end.
    if (whole) giveBack(reader);
    else reader.close();
  }
}

const extracting = new WeakMap<LayerMember, Promise<string>>();

/** A file holding the member's data: its kept file, or one extracted (once) into its scratch directory. */
export function layerMemberFile(member: LayerMember): Promise<string> {
  if (member.file !== undefined) return Promise.resolve(member.file);
  let pending = extracting.get(member);
  if (!pending) {
    pending = (async () => {
      if (member.scratch === undefined) throw new LapinError(`internal: no place to extract ${member.what} to`);
      await makeDirectories(member.scratch);
      const file = path.join(member.scratch, temporaryName('member-'));
      await pipeline(Readable.from(readLayerMember(member)), createWriteStream(file));
      member.file = file;
      return file;
    })();
    extracting.set(member, pending);
  }
  return pending;
}

/** The path of a file source on disk, extracting a layer member when it is one. */
export async function sourceFilePath(source: Exclude<FileSource, { kind: 'bytes' }>): Promise<string> {
  return source.kind === 'path' ? source.path : layerMemberFile(source.member);
}

/** Writes a layer member's bytes to `target`. */
export async function writeLayerMember(member: LayerMember, target: string | Buffer): Promise<void> {
  await pipeline(Readable.from(readLayerMember(member)), createWriteStream(target));
}
