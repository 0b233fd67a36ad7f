import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { fsyncDirectory, fsyncPath, temporaryName, trackTemporary, untrackTemporary, writeFileAtomically } from '../temporaries.js';
import { digestHex, sha256Digest } from './digest.js';
import { makeDirectories } from '../mkdirp.js';

export interface IncomingBlob {
  /** Takes the buffer over: the caller must not change it afterwards. */
  write(data: Buffer): Promise<void>;
  /** Files the blob under `digest`; returns its path when it is a file of its own. */
  commit(digest: string): Promise<string | undefined>;
  abort(): Promise<void>;
}

/**
 * Where a build puts its blobs: a staging BlobStore, or straight into the
 * output archive (src/export/archive.ts). A blob given twice is kept once.
 */
export interface BlobTarget {
  /** True when `addFile` only remembers the file (no copy), so writing elsewhere first costs nothing. */
  readonly adoptsFiles: boolean;
  incoming(): Promise<IncomingBlob>;
  /** Adds a blob that already exists as a file (a layer cache hit). */
  addFile(digest: string, size: number, file: string): Promise<void>;
  putBytes(data: Uint8Array): Promise<{ digest: string; size: number }>;
}

/** A content-addressed directory of blobs, laid out as an OCI layout's blobs/. */
export class BlobStore implements BlobTarget {
  readonly adoptsFiles = true;
  /** Blobs kept elsewhere (the layer cache), by digest. */
  private readonly adopted = new Map<string, string>();

  /** `durable`: blobs are flushed to the disk before they are filed (a cache that outlives the build). */
  constructor(
    readonly dir: string,
    private readonly durable = false,
  ) {}

  pathOf(digest: string): string {
    return this.adopted.get(digest) ?? path.join(this.dir, 'sha256', digestHex(digest));
  }

  /** Serves a blob from a file outside the store, without copying it. */
  adopt(digest: string, file: string): void {
    this.adopted.set(digest, file);
  }

  addFile(digest: string, _size: number, file: string): Promise<void> {
    this.adopt(digest, file);
    return Promise.resolve();
  }

  /**
   * A blob being written whose digest the caller computes; `commit` files
   * it under that digest (temp + rename, so readers never see a partial blob).
   */
  async incoming(): Promise<IncomingBlob> {
    await makeDirectories(path.join(this.dir, 'sha256'));
    const temp = path.join(this.dir, 'sha256', temporaryName('.incoming-'));
    // The store may be the layer cache, which outlives the build: an interrupt must not leave a partial blob there.
    trackTemporary(temp);
    const out = createWriteStream(temp, { highWaterMark: 4 * 1024 * 1024 });
    let failure: Error | undefined;
    out.on('error', (error) => {
      failure = error;
    });
    const closed = new Promise<void>((resolve, reject) => {
      out.once('close', () => (failure ? reject(failure) : resolve()));
    });
    closed.catch(() => undefined);
    return {
      write: async (data) => {
        if (failure) throw failure;
        if (!out.write(data)) await Promise.race([once(out, 'drain'), closed]);
      },
      commit: async (digest) => {
        out.end();
        await closed;
        const target = this.pathOf(digest);
        // Flushed first: a cache entry must never name a blob a power loss emptied.
        if (this.durable) await fsyncPath(temp);
        await rename(temp, target);
        untrackTemporary(temp);
        if (this.durable) await fsyncDirectory(path.dirname(target));
        return target;
      },
      abort: async () => {
        out.destroy();
        await closed.catch(() => undefined);
        await rm(temp, { force: true });
        untrackTemporary(temp);
      },
    };
  }

  async putBytes(data: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(data);
    await makeDirectories(path.join(this.dir, 'sha256'));
    const target = this.pathOf(digest);
    await writeFileAtomically(target, data);
    return { digest, size: data.length };
  }
}
