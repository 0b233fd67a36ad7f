import { availableParallelism } from 'node:os';
import { constants, gzip, type ZlibOptions } from 'node:zlib';
import type { MemberCache, MemberStats } from '../member-cache.js';

/** Input is cut into blocks of this size, each compressed alone as one gzip member. */
export const GZIP_CHUNK_SIZE = 1024 * 1024;

/**
 * zlib's memLevel: 9, the largest hash table, makes level 1 about 8 % faster
 * than the default 8 and a little smaller (docs/performance.md).
 */
export const GZIP_MEM_LEVEL = 9;

/** Byte 9 of a gzip header; zlib writes its build's OS code there, lapin writes "Unix" everywhere. */
const GZIP_OS_OFFSET = 9;
const GZIP_OS_UNIX = 3;

export interface ParallelGzipOptions {
  /** zlib level, 1-9. */
  level: number;
  /** Blocks compressed at once. Changes speed, never the bytes. Default: the core count. */
  concurrency?: number;
  /** Block size; part of the format, so fixed unless a test needs small blocks. */
  chunkSize?: number;
  /** Members made before from the same block are taken from here instead of compressed again. */
  members?: MemberCache;
}

/** Everything besides a block's bytes that decides its member's bytes: the member cache's key has it. */
export function gzipMemberFormat(level: number): string {
  return `gzip level ${level} memLevel ${GZIP_MEM_LEVEL} os ${GZIP_OS_UNIX} zlib ${process.versions.zlib}`;
}

/**
 * Room for a whole member in one output buffer: deflate's worst case is a
 * few bytes per 16 KiB stored block, plus the gzip header and trailer.
 */
function outputRoom(inputLength: number): number {
  return inputLength + (inputLength >> 10) + 1024;
}

function gzipMember(block: Buffer, options: ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // The async zlib API runs on libuv's thread pool: parallel, without copying into workers.
    // With zlib's default 16 KiB output chunks a 1 MiB block took dozens of
    // trips between the pool and the main thread, each waiting for the main
    // thread; one output buffer that holds the whole member, filled by one
    // Z_FINISH call (the default, Z_NO_FLUSH then Z_FINISH, gave two pieces
    // and a copy to join them; the bytes are the same), makes it one trip.
    gzip(block, { ...options, chunkSize: outputRoom(block.length), flush: constants.Z_FINISH }, (error, result) => {
      if (error) reject(error);
      else {
        result[GZIP_OS_OFFSET] = GZIP_OS_UNIX;
        // A well-compressed member would pin its whole output buffer until written; a copy of its size is cheap.
        resolve(result.length < result.buffer.byteLength / 2 ? Buffer.from(result) : result);
      }
    });
  });
}

/**
 * pigz-style gzip: the input is cut into fixed-size blocks, compressed in
 * parallel, and written in order as concatenated gzip members (RFC 1952
 * allows several members; every gzip reader concatenates them). The bytes
 * depend only on the input, the level and the block size, never on the
 * number of threads or on how the input was split into writes. At most
 * `2 × concurrency` blocks are in flight, so memory stays bounded.
 */
export class ParallelGzip {
  private readonly level: number;
  private readonly concurrency: number;
  private readonly chunkSize: number;
  private readonly memberCache: MemberCache | undefined;
  /** Members reused from the cache and compressed, when there is a cache. */
  readonly stats: MemberStats = { reused: 0, compressed: 0, checked: 0 };
  private readonly inFlight: Array<Promise<Buffer>> = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private members = 0;
  private failure: unknown;

  /** `sink` receives the compressed output in order; its promise is awaited before the next block. */
  constructor(
    options: ParallelGzipOptions,
    private readonly sink: (data: Buffer) => void | Promise<void>,
  ) {
    this.level = options.level;
    this.concurrency = Math.max(1, options.concurrency ?? availableParallelism());
    this.chunkSize = options.chunkSize ?? GZIP_CHUNK_SIZE;
    this.memberCache = options.members?.enabled ? options.members : undefined;
  }

  /** Adds input; resolves once there is room for more. The buffer may be kept until then. */
  async write(data: Buffer): Promise<void> {
    let offset = 0;
    while (offset < data.length) {
      const take = Math.min(this.chunkSize - this.pendingBytes, data.length - offset);
      this.pending.push(offset === 0 && take === data.length ? data : data.subarray(offset, offset + take));
      this.pendingBytes += take;
      offset += take;
      if (this.pendingBytes === this.chunkSize) await this.submit();
    }
  }

  /** Compresses what is left and delivers every remaining member. */
  async end(): Promise<void> {
    // Empty input still makes a valid gzip stream: one empty member.
    if (this.pendingBytes > 0 || this.members === 0) await this.submit();
    while (this.inFlight.length > 0) await this.deliverOne();
    await this.memberCache?.evict();
  }

  private async submit(): Promise<void> {
    const block = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.members++;
    const compress = (): Promise<Buffer> => gzipMember(block, { level: this.level, memLevel: GZIP_MEM_LEVEL });
    // Same order, same bytes: a cached member is one this block compressed to before.
    const member = this.memberCache ? this.memberCache.member(gzipMemberFormat(this.level), block, compress, this.stats) : compress();
    // Keep a rejection from going unhandled while earlier blocks are delivered.
    member.catch((error: unknown) => {
      this.failure ??= error;
    });
    this.inFlight.push(member);
    while (this.inFlight.length >= 2 * this.concurrency) await this.deliverOne();
  }

  private async deliverOne(): Promise<void> {
    const next = this.inFlight.shift();
    if (!next) return;
    if (this.failure !== undefined) throw this.failure;
    await this.sink(await next);
  }
}
