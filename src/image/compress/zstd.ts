import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { LapinError } from '../../errors.js';

export const ZSTD_DEFAULT_LEVEL = 3;

/**
 * The argument list fixes everything that could vary the bytes: the level,
 * multi-threaded mode (whose output zstd keeps identical for any number of
 * threads ≥ 1, unlike its single-thread mode), no checksum (the layer's
 * sha256 already covers it) and no content size (a stream has none).
 */
export function zstdArguments(level: number): string[] {
  return ['-q', '-c', `-${level}`, '-T0', '--no-check', '--no-content-size', ...(level > 19 ? ['--ultra'] : [])];
}

/**
 * Compresses through Debian's `zstd` program, streaming: writes go to its
 * stdin, its stdout goes to `sink` in order. See docs/performance.md for
 * why a program and not an npm binding.
 */
export class ZstdProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly output: Promise<void>;
  private readonly exit: Promise<number | null>;
  private spawnError: Error | undefined;
  private stderr = '';

  constructor(level: number, sink: (data: Buffer) => void | Promise<void>) {
    const child = spawn(process.env.LAPIN_ZSTD ?? 'zstd', zstdArguments(level), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.child.on('error', (error) => {
      this.spawnError = error;
    });
    this.child.stdin.on('error', () => {
      // EPIPE when zstd died; the exit status says why.
    });
    this.child.stderr.on('data', (data: Buffer) => {
      this.stderr += data.toString();
    });
    this.exit = new Promise((resolve) => {
      this.child.on('close', (code) => resolve(code));
    });
    this.output = (async () => {
      for await (const data of child.stdout) await sink(data as Buffer);
    })();
    this.output.catch(() => {
      // reported by end()
    });
  }

  async write(data: Buffer): Promise<void> {
    if (this.spawnError) throw this.describe();
    if (!this.child.stdin.write(data)) {
      await Promise.race([once(this.child.stdin, 'drain'), this.exit]);
    }
  }

  async end(): Promise<void> {
    this.child.stdin.end();
    const code = await this.exit;
    await this.output;
    if (this.spawnError || code !== 0) throw this.describe(code);
  }

  /** Stops the program after a failure elsewhere. */
  kill(): void {
    this.child.kill();
  }

  private describe(code?: number | null): LapinError {
    if ((this.spawnError as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      return new LapinError('--compression zstd needs the zstd program, which is not installed', {
        hint: 'install it (apt-get install zstd), or use --compression gzip',
      });
    }
    const detail = this.spawnError?.message ?? (this.stderr.trim() || `exit status ${String(code)}`);
    return new LapinError(`zstd failed: ${detail}`);
  }
}
