import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** A pass-through stream that hashes (sha256) and counts the bytes crossing it. */
export class DigestStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
  private count = 0;

  /** `onBytes` sees the running byte count, for progress. */
  constructor(private readonly onBytes?: (count: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.count += chunk.length;
    this.onBytes?.(this.count);
    callback(null, chunk);
  }

  /** The "sha256:<hex>" digest; call once the stream has ended. */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }

  get size(): number {
    return this.count;
  }
}

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The hex part of a "sha256:<hex>" digest. */
export function digestHex(digest: string): string {
  const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!match) throw new Error(`not a sha256 digest: ${digest}`);
  return match[1] as string;
}
