/**
 * Undoes a layer's compression, judged by its first bytes (media types lie
 * in the wild): gzip through zlib, zstd through the `zstd` program (as
 * lapin writes it, and on every Node lapin supports), plain tar as is.
 * Output is streamed with backpressure, so memory stays bounded.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Duplex, PassThrough, type Readable, type Writable } from 'node:stream';
import { SourceError } from './errors.js';
import { MemberGunzip } from './gzip-members.js';

type Kind = 'gzip' | 'zstd' | 'none';

function kindOf(head: Buffer): Kind {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

export class LayerDecompressor extends Duplex {
  private input: Writable | undefined;
  private output: Readable | undefined;
  private child: ChildProcessWithoutNullStreams | undefined;
  private head = Buffer.alloc(0);
  private zstdError = '';

  constructor(private readonly what: string) {
    super();
  }

  private start(kind: Kind): void {
    if (kind === 'zstd') {
      const child = spawn(process.env.LAPIN_ZSTD ?? 'zstd', ['-q', '-d', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
      this.child = child;
      child.stderr.on('data', (data: Buffer) => {
        if (this.zstdError.length < 1000) this.zstdError += data.toString('utf8');
      });
      child.stdin.on('error', () => {
        // EPIPE when zstd stops reading; its exit status says why.
      });
      child.on('error', (error: NodeJS.ErrnoException) => {
        this.destroy(
          error.code === 'ENOENT'
            ? new SourceError(`${this.what} has zstd-compressed layers, which lapin reads through the zstd program, and zstd is not installed`, 'install it (apt-get install zstd)')
            : new SourceError(`${this.what}: cannot run zstd (${error.code ?? error.message})`),
        );
      });
      this.input = child.stdin;
      this.output = child.stdout;
    } else {
      // lapin's own layers inflate member by member on every core; anything else through one gunzip
      // (large output pieces: a 1 GB layer in 16 KiB ones spent more time passing them on than inflating).
      const stream = kind === 'gzip' ? new MemberGunzip({ chunkSize: 256 * 1024 }) : new PassThrough();
      stream.on('error', (error: Error) => this.destroy(new SourceError(`${this.what}: the layer's gzip data is damaged (${error.message})`)));
      this.input = stream;
      this.output = stream;
    }
    const output = this.output;
    output.on('data', (data: Buffer) => {
      if (!this.push(data)) output.pause();
    });
    output.on('end', () => {
      if (!this.child) {
        this.push(null);
        return;
      }
      const child = this.child;
      const finish = (code: number | null): void => {
        if (code === 0) this.push(null);
        else this.destroy(new SourceError(`${this.what}: the layer's zstd data is damaged (${this.zstdError.trim().split('\n')[0] || `zstd exit status ${String(code)}`})`));
      };
      if (child.exitCode !== null || child.signalCode !== null) finish(child.exitCode);
      else child.once('exit', finish);
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (!this.input) {
      // Four bytes tell the kind; a first chunk shorter than that waits for more.
      this.head = Buffer.concat([this.head, chunk]);
      if (this.head.length < 4) {
        callback();
        return;
      }
      this.start(kindOf(this.head));
      chunk = this.head;
      this.head = Buffer.alloc(0);
    }
    const input = this.input as Writable;
    if (input.write(chunk)) callback();
    else input.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.input) this.start(kindOf(this.head));
    const input = this.input as Writable;
    if (this.head.length > 0) input.write(this.head);
    this.head = Buffer.alloc(0);
    input.end();
    callback();
  }

  override _read(): void {
    this.output?.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.child?.kill();
    if (this.output && (this.output as unknown) !== this.input) this.output.destroy();
    (this.input as Writable | undefined)?.destroy();
    callback(error);
  }
}
