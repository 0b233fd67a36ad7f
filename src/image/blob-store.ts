import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DigestStream, digestHex, sha256Digest } from './digest.js';

/** A content-addressed directory of blobs, laid out as an OCI layout's blobs/. */
export class BlobStore {
  constructor(readonly dir: string) {}

  pathOf(digest: string): string {
    return path.join(this.dir, 'sha256', digestHex(digest));
  }

  async has(digest: string): Promise<boolean> {
    try {
      await stat(this.pathOf(digest));
      return true;
    } catch {
      return false;
    }
  }

  async putBytes(data: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(data);
    await mkdir(path.join(this.dir, 'sha256'), { recursive: true });
    const target = this.pathOf(digest);
    const temp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(temp, data);
    await rename(temp, target);
    return { digest, size: data.length };
  }

  /**
   * Writes a blob from a stream, hashing as the bytes pass, and files it
   * under its digest. `stages` may transform the stream first (e.g. gzip).
   */
  async putStream(source: Readable, stages: Array<Readable | Writable | NodeJS.ReadWriteStream> = []): Promise<{ digest: string; size: number }> {
    await mkdir(path.join(this.dir, 'sha256'), { recursive: true });
    const temp = path.join(this.dir, 'sha256', `.incoming-${randomBytes(8).toString('hex')}`);
    const hasher = new DigestStream();
    try {
      const streams: Array<NodeJS.ReadableStream | NodeJS.WritableStream | NodeJS.ReadWriteStream> = [source, ...stages, hasher, createWriteStream(temp)];
      await pipeline(streams);
      const digest = hasher.digest();
      await rename(temp, this.pathOf(digest));
      return { digest, size: hasher.size };
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  open(digest: string): Readable {
    return createReadStream(this.pathOf(digest));
  }
}
