/**
 * sha256 of 1 MiB blocks on a worker thread, so that a rebuild's hashing
 * (the gzip member keys, src/image/member-cache.ts) runs on the second core
 * while the main thread reads the tar, hashes its diff_id and writes the
 * layer. A cold build compresses on every core; before this, a one-file
 * rebuild hashed 2.7 GB on the main thread alone (docs/performance.md, "The
 * one-file rebuild").
 *
 * - Under the CLI's start-up snapshot (dist/cli/lapin.blob) a module cannot
 *   import a Node builtin at run time, and a worker cannot load a file of
 *   the bundle: `process.getBuiltinModule` gives worker_threads, and the
 *   worker's code is the string below, eval'd.
 * - Each block is copied into one of a few 1 MiB buffers that go to the
 *   worker and back (transferred, not cloned): one memcpy per block.
 * - The worker is started only once a process has hashed a few blocks on
 *   the main thread (a small layer does not pay a thread's start-up), is
 *   unreferenced while nothing is pending (it never keeps the process
 *   alive), and is stopped by `close`. If it fails, the blocks it held and
 *   every later one are hashed on the main thread: the same bytes.
 * - WebCrypto's `subtle.digest` (the thread pool) was tried before this: its
 *   per-call set-up and copy cost more main-thread time (1.2 s for the 3 300
 *   blocks of a one-file rebuild of a 1.2 GB image) than the hashing itself.
 */
import { createHash } from 'node:crypto';
import type { Worker } from 'node:worker_threads';

/** Blocks hashed on the main thread before the worker is worth starting (8 MiB). */
const MAIN_THREAD_BLOCKS = 8;
/** Bytes a buffer sent to the worker holds; larger blocks are hashed on the main thread. */
const BUFFER_BYTES = 1024 * 1024;

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', (m) => {
  const hash = createHash('sha256').update(new Uint8Array(m.buffer, 0, m.length)).digest('hex');
  parentPort.postMessage({ id: m.id, hash, buffer: m.buffer }, [m.buffer]);
});
`;

interface Request {
  block: Uint8Array;
  resolve: (hash: Buffer) => void;
}

interface Reply {
  id: number;
  hash: string;
  buffer: ArrayBuffer;
}

/** sha256 of one block on the calling thread. */
export function sha256Block(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export class BlockHasher {
  private worker: Worker | undefined;
  /** The worker failed or could not start: everything is hashed here from then on. */
  private failed = false;
  private hashedHere = 0;
  private nextId = 0;
  private readonly pending = new Map<number, Request>();
  private readonly buffers: ArrayBuffer[] = [];

  /** The block's sha256. The block must not change until this settles (a failed worker's blocks are hashed here). */
  sha256(block: Uint8Array): Promise<Buffer> {
    const worker = block.length <= BUFFER_BYTES ? this.start() : undefined;
    if (worker === undefined) {
      this.hashedHere++;
      return Promise.resolve(sha256Block(block));
    }
    const buffer = this.buffers.pop() ?? new ArrayBuffer(BUFFER_BYTES);
    new Uint8Array(buffer, 0, block.length).set(block);
    const id = this.nextId++;
    if (this.pending.size === 0) worker.ref();
    return new Promise<Buffer>((resolve) => {
      this.pending.set(id, { block, resolve });
      worker.postMessage({ id, buffer, length: block.length }, [buffer]);
    });
  }

  /** Stops the worker (once nothing is pending, the pending blocks being hashed here); a later block starts a new one. */
  async close(): Promise<void> {
    const worker = this.worker;
    if (worker === undefined) return;
    this.worker = undefined;
    this.settleHere();
    this.buffers.length = 0;
    await worker.terminate().catch(() => undefined);
  }

  private start(): Worker | undefined {
    if (this.worker !== undefined) return this.worker;
    if (this.failed || this.hashedHere < MAIN_THREAD_BLOCKS) return undefined;
    try {
      const { Worker: WorkerClass } = process.getBuiltinModule('node:worker_threads');
      const worker = new WorkerClass(WORKER_SOURCE, { eval: true });
      worker.unref();
      worker.on('message', (reply: Reply) => this.onReply(reply));
      worker.on('error', () => this.fail(worker));
      worker.on('exit', () => this.fail(worker));
      this.worker = worker;
      return worker;
    } catch {
      this.failed = true;
      return undefined;
    }
  }

  private onReply(reply: Reply): void {
    const request = this.pending.get(reply.id);
    if (request === undefined) return;
    this.pending.delete(reply.id);
    if (this.buffers.length < 16) this.buffers.push(reply.buffer);
    if (this.pending.size === 0) this.worker?.unref();
    request.resolve(Buffer.from(reply.hash, 'hex'));
  }

  /** The worker is gone: what it held is hashed here, and so is everything after. */
  private fail(worker: Worker): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    this.failed = true;
    this.settleHere();
  }

  private settleHere(): void {
    const requests = [...this.pending.values()];
    this.pending.clear();
    for (const request of requests) request.resolve(sha256Block(request.block));
  }
}
