/**
 * Gunzip of a layer made of independent gzip members, on every core.
 *
 * lapin writes a gzip layer as concatenated members, each the deflate of a
 * fixed 1 MiB block of the tar, each with the same 10-byte header
 * (src/image/compress/parallel-gzip.ts). Where the members start is not
 * recorded, but every start carries that header, so the places where those
 * 10 bytes recur are candidates. The bytes between two candidates are
 * inflated as a gzip stream of their own, several at once on libuv's
 * thread pool (Node's async zlib), and used in order along a chain that
 * starts at byte 0: a span is used only if zlib consumed every byte of it
 * and reached the end of a member at its last byte. Such a chain reaches
 * every member start that sequential decoding reaches, decoding each
 * member from a fresh state as sequential decoding does (a member's
 * inflate depends on its own bytes only), so the output is the same bytes.
 *
 * A span cut short by a false candidate (a member's header stored inside a
 * member: a `gzip -1n` file in the rootfs) is tried again up to the next
 * candidate, up to 16 times. Anything else that does not verify (a span
 * longer than a member can be, more output than a block, a damaged or cut
 * member, padding after the last member, a gzip file of one member written
 * by another tool) hands the rest over, from the last
 * verified member start, to one sequential zlib gunzip (so does a member
 * short of a block that is not the last): the same output,
 * and the same error, as a gunzip of the whole stream. A span's own error
 * is never shown.
 */
import { availableParallelism } from 'node:os';
import { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';
import { GZIP_CHUNK_SIZE } from '../image/compress/parallel-gzip.js';

const HEADER_BYTES = 10;

export interface MemberGunzipOptions {
  /** The uncompressed size of a member (lapin's block size); a span giving more is not a lapin member. Default 1 MiB. */
  blockSize?: number;
  /** Spans inflating or waiting to be passed on, at most. Default: twice the cores. */
  concurrency?: number;
  /** zlib's output piece size for the sequential gunzip. */
  chunkSize?: number;
}

/** What a span became: its output, or undefined when it does not verify. */
interface Span {
  data: Buffer;
  settled: boolean;
  output: Buffer | undefined;
  /** Candidates this span was joined across (false starts inside one member). */
  joins: number;
}

/** False starts one span may be joined across: each join inflates the span again, so hostile input cannot make it quadratic. */
const MAX_JOINS = 16;

/** Statistics for tests and the bench: how the stream was read. */
export interface MemberGunzipStats {
  /** Members (spans) inflated in parallel and used. */
  parallel: number;
  /** The byte offset from which the sequential gunzip took over, if it did. */
  sequentialFrom: number | undefined;
  /** The most spans held at once (inflating, or inflated and waiting): what bounds memory. */
  mostHeld: number;
  /** Spans tried again across a false start. */
  joined: number;
}

/** The deflate input room a 1-block member can need: stored blocks add 5 bytes per 64 KiB, plus header and trailer. */
function maxSpanBytes(blockSize: number): number {
  return blockSize + (blockSize >> 10) + 1024;
}

export class MemberGunzip extends Duplex {
  readonly stats: MemberGunzipStats = { parallel: 0, sequentialFrom: undefined, mostHeld: 0, joined: 0 };
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly chunkSize: number;
  private mode: 'undecided' | 'chain' | 'sequential' = 'undecided';
  /** The first member's header: the bytes every candidate start repeats. */
  private header: Buffer | undefined;
  /** Bytes received before the mode was decided. */
  private head: Buffer[] = [];
  private headBytes = 0;
  /** Spans dispatched, in order, not yet passed on. */
  private readonly spans: Span[] = [];
  /** Candidate starts found and not yet cut into spans, in order. */
  private starts: number[] = [];
  /** Bytes from the current span's start (a candidate) to the last byte received. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  /** The last bytes received (up to 9), for a header cut between two writes. */
  private tail = Buffer.alloc(0);
  /** Offset of the current span's start, and of the first byte not yet passed on. */
  private spanStart = 0;
  private delivered = 0;
  private received = 0;
  private ended = false;
  private finished = false;
  private wanting = true;
  private heldWrite: (() => void) | undefined;
  private gunzip: zlib.Gunzip | undefined;

  constructor(options: MemberGunzipOptions = {}) {
    super({ readableHighWaterMark: options.blockSize ?? GZIP_CHUNK_SIZE });
    this.blockSize = options.blockSize ?? GZIP_CHUNK_SIZE;
    this.concurrency = Math.max(1, options.concurrency ?? 2 * availableParallelism());
    this.chunkSize = options.chunkSize ?? 256 * 1024;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.mode === 'undecided') {
      this.head.push(chunk);
      this.headBytes += chunk.length;
      if (this.headBytes < HEADER_BYTES) {
        callback();
        return;
      }
      chunk = Buffer.concat(this.head, this.headBytes);
      this.head = [];
      // A header with no optional fields (FLG 0), as zlib writes it: its 10 bytes mark the member starts.
      if (chunk[0] === 0x1f && chunk[1] === 0x8b && chunk[2] === 8 && chunk[3] === 0) {
        this.mode = 'chain';
        this.header = Buffer.from(chunk.subarray(0, HEADER_BYTES));
      } else {
        this.fallBack();
      }
    }
    if (this.mode === 'sequential') {
      this.toGunzip(chunk, callback);
      return;
    }
    this.accept(chunk);
    this.pump();
    // Either may have handed over to the sequential gunzip.
    if (this.gunzip !== undefined) this.toGunzip(Buffer.alloc(0), callback);
    else if (this.starts.length > 0 || this.spans.length >= this.concurrency) this.heldWrite = () => callback();
    else callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.ended = true;
    if (this.mode === 'undecided') {
      // Fewer bytes than a header: the gunzip gets them and ends.
      this.fallBack();
    } else if (this.mode === 'sequential') {
      (this.gunzip as zlib.Gunzip).end();
    } else {
      this.pump();
      this.advance();
    }
    callback();
  }

  override _read(): void {
    this.wanting = true;
    if (this.mode === 'sequential') this.gunzip?.resume();
    else this.advance();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.gunzip?.destroy();
    this.spans.length = 0;
    this.partial = [];
    callback(error);
  }

  /** Adds received bytes to the current span, cutting a span at every candidate start found. */
  private accept(chunk: Buffer): void {
    const header = this.header as Buffer;
    const chunkStart = this.received;
    // A header that began in the previous write: searched in the last bytes of it and the first of this one.
    const cutStarts: number[] = [];
    if (this.tail.length > 0) {
      const seam = Buffer.concat([this.tail, chunk.subarray(0, HEADER_BYTES - 1)]);
      for (let at = seam.indexOf(header); at >= 0 && at < this.tail.length; at = seam.indexOf(header, at + 1)) cutStarts.push(chunkStart - this.tail.length + at);
    }
    for (let at = chunk.indexOf(header); at >= 0; at = chunk.indexOf(header, at + 1)) cutStarts.push(chunkStart + at);
    this.received += chunk.length;
    this.tail = Buffer.from(chunk.length >= HEADER_BYTES - 1 ? chunk.subarray(chunk.length - (HEADER_BYTES - 1)) : Buffer.concat([this.tail, chunk]).subarray(-(HEADER_BYTES - 1)));
    this.partial.push(chunk);
    this.partialBytes += chunk.length;
    for (const start of cutStarts) if (start > (this.starts.at(-1) ?? this.spanStart)) this.starts.push(start);
    // No member of a block is this long: not lapin's layout (one member from another tool, or a false start).
    if (this.received - (this.starts.at(-1) ?? this.spanStart) > maxSpanBytes(this.blockSize) + HEADER_BYTES) this.fallBack();
  }

  /**
   * Starts spans from the candidates found, a few at a time: a 1 MiB read
   * of zeros' members holds a thousand of them, and each span's output is a
   * whole block. The last span starts once the input has ended.
   */
  private pump(): void {
    while (this.mode === 'chain' && this.spans.length < this.concurrency) {
      const start = this.starts[0];
      if (start === undefined) {
        if (this.ended && this.partialBytes > 0) this.dispatch(this.cut(this.partialBytes));
        return;
      }
      this.starts.shift();
      if (start - this.spanStart > maxSpanBytes(this.blockSize)) {
        this.fallBack();
        return;
      }
      this.dispatch(this.cut(start - this.spanStart));
    }
  }

  /** Takes the first `length` bytes of the current span's data, which start the next span. */
  private cut(length: number): Buffer {
    const pieces: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const first = this.partial[0] as Buffer;
      if (first.length <= left) {
        pieces.push(first);
        this.partial.shift();
        left -= first.length;
      } else {
        pieces.push(first.subarray(0, left));
        this.partial[0] = first.subarray(left);
        left = 0;
      }
    }
    this.partialBytes -= length;
    this.spanStart += length;
    return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces, length);
  }

  private dispatch(data: Buffer, joins = 0): void {
    const span: Span = { data, settled: false, output: undefined, joins };
    if (joins > 0) this.spans.unshift(span);
    else this.spans.push(span);
    this.stats.mostHeld = Math.max(this.stats.mostHeld, this.spans.length);
    // One trip to the thread pool: the output buffer has room for the whole block.
    zlib.gunzip(data, { info: true, chunkSize: this.blockSize + 1024, maxOutputLength: this.blockSize }, (error, result) => {
      span.settled = true;
      // With `info`, zlib gives its engine too (Node's types do not say so): bytesWritten is the input it consumed.
      const info = result as unknown as { buffer: Buffer; engine: zlib.Gunzip } | undefined;
      // Verified: no error, every byte consumed (zlib stops early at a zero byte after a member's end).
      if (!error && info && info.engine.bytesWritten === data.length) span.output = info.buffer;
      if (this.mode === 'chain' && !this.destroyed) this.advance();
    });
  }

  /** Passes on settled spans in order; the first that does not verify hands over to the sequential gunzip. */
  private advance(): void {
    while (this.mode === 'chain' && this.wanting) {
      const span = this.spans[0];
      if (!span?.settled) break;
      if (span.output === undefined) {
        // A candidate inside a member (its header's bytes in a stored block) ends a span early: the span
        // is tried again up to the next candidate. Anything else, or too many, goes to sequential gunzip.
        const next = this.spans[1];
        if (next && span.joins < MAX_JOINS && span.data.length + next.data.length <= maxSpanBytes(this.blockSize)) {
          this.spans.splice(0, 2);
          this.stats.joined++;
          this.dispatch(Buffer.concat([span.data, next.data]), span.joins + 1);
          continue;
        }
        if (!next && span.joins < MAX_JOINS && !(this.ended && this.starts.length === 0 && this.partialBytes === 0)) break;
        this.fallBack();
        return;
      }
      if (span.output.length < this.blockSize) {
        // lapin's members each hold a whole block but the last: a short one with more after it is another
        // writer's (half a million empty members took 28 s of thread-pool trips), so sequential gunzip reads on.
        if (this.spans.length > 1 || this.starts.length > 0 || this.partialBytes > 0) {
          this.fallBack();
          return;
        }
        if (!this.ended) break;
      }
      this.spans.shift();
      this.delivered += span.data.length;
      this.stats.parallel++;
      this.wanting = this.push(span.output);
    }
    if (this.mode !== 'chain') return;
    this.pump();
    if (this.mode !== 'chain') return;
    if (this.starts.length === 0 && this.spans.length < this.concurrency && this.heldWrite) {
      const release = this.heldWrite;
      this.heldWrite = undefined;
      release();
    }
    if (this.ended && !this.finished && this.spans.length === 0 && this.starts.length === 0 && this.partialBytes === 0) {
      this.finished = true;
      this.push(null);
    }
  }

  /** From the last member start passed on, the rest goes through one gunzip, as if it had from the start. */
  private fallBack(): void {
    if (this.mode === 'sequential') return;
    this.mode = 'sequential';
    this.stats.sequentialFrom = this.delivered;
    const gunzip = zlib.createGunzip({ chunkSize: this.chunkSize });
    this.gunzip = gunzip;
    gunzip.on('data', (data: Buffer) => {
      if (!this.push(data)) gunzip.pause();
    });
    gunzip.on('end', () => this.push(null));
    gunzip.on('error', (error: Error) => this.destroy(error));
    const pending = [...this.head, ...this.spans.map((span) => span.data), ...this.partial];
    this.head = [];
    this.spans.length = 0;
    this.partial = [];
    this.partialBytes = 0;
    this.starts = [];
    for (const data of pending) gunzip.write(data);
    if (this.ended) gunzip.end();
    const release = this.heldWrite;
    this.heldWrite = undefined;
    release?.();
  }

  private toGunzip(chunk: Buffer, callback: () => void): void {
    const gunzip = this.gunzip as zlib.Gunzip;
    if (chunk.length === 0 || gunzip.write(chunk)) {
      if (gunzip.writableNeedDrain) gunzip.once('drain', callback);
      else callback();
    } else gunzip.once('drain', callback);
  }
}
