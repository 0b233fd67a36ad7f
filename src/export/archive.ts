import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { LapinError } from '../errors.js';
import type { BlobTarget, IncomingBlob } from '../image/blob-store.js';
import { digestHex, sha256Digest } from '../image/digest.js';
import { bytesStream, imageParts, type BlobBytes, type ImageModel, type ImageParts } from '../image/model.js';
import { headerBytes, READ_SIZE } from '../image/tar-writer.js';
import { fsyncDirectory, temporaryName, trackTemporary, untrackTemporary } from '../temporaries.js';
import { archiveUnchanged, fileStamp, rememberArchive } from './archive-record.js';
import { OCI_LAYOUT_FILE, dockerManifestJson, dockerRepositoriesJson, indexJson } from './layout.js';

/*
 * One tar that is both an OCI image layout and a `docker save` archive
 * (manifest.json + repositories pointing into blobs/), so docker,
 * containerd, podman, skopeo and umoci all load the same file.
 *
 * Entry order: blobs/, blobs/sha256/, the layers in image order, the
 * config, the manifest, then oci-layout, index.json, manifest.json and
 * repositories. Every consumer extracts or indexes the whole tar, so the
 * order is free; blobs come first so that a layer can be streamed into the
 * archive while it is being made, before the small files that name it
 * exist (test/consumers/ proves all five consumers read it).
 */

const BLOCK = 512;
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);
/** Positional writes in flight at once: enough to keep the disk busy, bounded in memory. */
const MAX_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

function fileHeader(name: string, size: number, mtime: number): Buffer {
  return headerBytes({ name, size, mode: 0o644, uid: 0, gid: 0, mtime, type: '0' });
}

function blobHeader(digest: string, size: number, mtime: number): Buffer {
  return fileHeader(`blobs/sha256/${digestHex(digest)}`, size, mtime);
}

function padding(size: number): Buffer | undefined {
  const rest = size % BLOCK;
  return rest === 0 ? undefined : Buffer.alloc(BLOCK - rest);
}

/** The two directory entries that open the archive. */
function leadingEntries(mtime: number): Buffer {
  const dir = (name: string): Buffer => headerBytes({ name, size: 0, mode: 0o755, uid: 0, gid: 0, mtime, type: '5' });
  return Buffer.concat([dir('blobs/'), dir('blobs/sha256/')]);
}

/** The small files naming the blobs, and the end of the archive. */
function trailingEntries(image: ImageParts, mtime: number, names: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const files: Array<[string, Buffer]> = [
    ['oci-layout', OCI_LAYOUT_FILE],
    ['index.json', indexJson(image, names)],
    ['manifest.json', dockerManifestJson(image, names)],
    ['repositories', dockerRepositoriesJson(image, names)],
  ];
  for (const [name, data] of files) {
    parts.push(fileHeader(name, data.length, mtime), data);
    const pad = padding(data.length);
    if (pad) parts.push(pad);
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** Where an archive reads a blob: a file, a stream, or bytes in hand (the manifest). */
type ArchiveBlobBytes = BlobBytes | { data: Buffer };

/** Every blob of an image once, in archive order: layers, config, manifest. */
function blobsInOrder(image: ImageParts): Array<{ digest: string; size: number; bytes: ArchiveBlobBytes }> {
  const seen = new Set<string>();
  const result: Array<{ digest: string; size: number; bytes: ArchiveBlobBytes }> = [];
  for (const blob of [...image.layers, image.config, image.manifest]) {
    if (seen.has(blob.digest)) continue;
    seen.add(blob.digest);
    result.push({ digest: blob.digest, size: blob.size, bytes: blob === image.manifest ? { data: image.manifestBytes } : image.bytesOf(blob.digest) });
  }
  return result;
}

/** A blob's bytes as a stream (a file opened without following a symlink: it may be a cache blob). */
async function blobChunks(bytes: ArchiveBlobBytes): Promise<AsyncIterable<Buffer>> {
  if ('data' in bytes) return bytesStream(bytes.data);
  if ('open' in bytes) return bytes.open();
  const handle = await openNoFollow(bytes.file);
  return handle.createReadStream({ highWaterMark: READ_SIZE });
}

/** Opens a blob file, refusing one that became a symlink while the build ran. */
async function openNoFollow(file: string): Promise<FileHandle> {
  return open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ELOOP') throw new LapinError(`${file} became a symlink while lapin was building; refusing to follow it`, { hint: 'build again' });
    throw error;
  });
}

/** Writes an image to a stream (dest=-), with the same bytes as a file output. */
export async function writeArchive(model: ImageModel, out: Writable, mtime: number, names: readonly string[] = []): Promise<void> {
  const image = await imageParts(model, 'the image');
  let failure: Error | undefined;
  const onError = (error: Error): void => {
    failure ??= error;
  };
  out.on('error', onError);
  const put = async (data: Buffer): Promise<void> => {
    if (failure) throw failure;
    if (!out.write(data)) await Promise.race([once(out, 'drain'), once(out, 'close')]);
    if (failure) throw failure;
  };
  try {
    await put(leadingEntries(mtime));
    for (const blob of blobsInOrder(image)) {
      await put(blobHeader(blob.digest, blob.size, mtime));
      let copied = 0;
      for await (const chunk of await blobChunks(blob.bytes)) {
        copied += (chunk as Buffer).length;
        await put(chunk as Buffer);
      }
      if (copied !== blob.size) throw new LapinError(`blob ${blob.digest} changed size while it was copied`);
      const pad = padding(blob.size);
      if (pad) await put(pad);
    }
    await put(trailingEntries(image, mtime, names));
    out.end();
    await once(out, 'finish');
  } finally {
    out.off('error', onError);
  }
}

/** Writes an image to a file, atomically. */
export async function writeArchiveFile(model: ImageModel, dest: string, mtime: number, names: readonly string[] = []): Promise<void> {
  const image = await imageParts(model, 'the image');
  const archive = await ArchiveFile.create(dest, mtime);
  try {
    for (const blob of blobsInOrder(image)) archive.add(blob.digest, blob.size, blob.bytes);
    await archive.finish(image, names);
  } finally {
    await archive.abort();
  }
}

/** Bump when the archive's layout changes, so recorded archives are rewritten. */
const ARCHIVE_FORMAT = 1;

interface Deferred {
  digest: string;
  size: number;
  bytes: ArchiveBlobBytes;
}

/**
 * An archive file being written in place of a staging store: layers are
 * streamed straight into it, each behind a header written once the digest
 * is known (positional write at the header's offset), so compressed bytes
 * are written once. Cached blobs and the config and manifest are queued
 * and copied in order. Written through a temporary sibling renamed over
 * `dest` by `finish`, so readers never see a half-written archive.
 */
export class ArchiveFile implements BlobTarget {
  readonly adoptsFiles = false;
  private position = 0;
  private readonly blobs = new Set<string>();
  private readonly deferred: Deferred[] = [];
  private readonly inFlight: Array<{ done: Promise<void>; size: number }> = [];
  private bytesInFlight = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failure: unknown;
  private blobOpen = false;
  private closed = false;
  /** Whether any blob was made for this archive (not only taken from the cache). */
  private streamed = false;

  private constructor(
    readonly dest: string,
    private readonly temporary: string,
    private readonly handle: FileHandle,
    private readonly mtime: number,
    private readonly records: string | undefined,
  ) {}

  /**
   * `recordDir`: where to remember the archives written (the layer cache's
   * directory), so that a rebuild whose every blob came from the cache can
   * leave an unchanged archive as it is. Undefined: always write.
   */
  static async create(dest: string, mtime: number, recordDir?: string): Promise<ArchiveFile> {
    const temporary = path.join(path.dirname(dest), temporaryName(`.${path.basename(dest)}.lapin-tmp-`));
    trackTemporary(temporary);
    let handle: FileHandle;
    try {
      handle = await open(temporary, 'wx', 0o644);
    } catch (error) {
      untrackTemporary(temporary);
      throw error;
    }
    const archive = new ArchiveFile(dest, temporary, handle, mtime, recordDir);
    await archive.write(leadingEntries(mtime));
    return archive;
  }

  async incoming(): Promise<IncomingBlob> {
    if (this.blobOpen) throw new Error('an archive takes one streamed blob at a time');
    await this.flushDeferred();
    // Gathered bytes go out first: the header's gap below must not land inside them.
    await this.issue();
    this.blobOpen = true;
    this.streamed = true;
    // The header's place is kept; it is written once the digest and size are known.
    const start = this.position;
    this.position += BLOCK;
    let size = 0;
    const rewind = async (): Promise<void> => {
      await this.drain();
      this.position = start;
      await this.handle.truncate(start);
    };
    return {
      write: (data) => {
        size += data.length;
        return this.write(data);
      },
      commit: async (digest) => {
        try {
          if (this.blobs.has(digest)) {
            // The same bytes are already in the archive (two identical layers): keep one.
            await rewind();
          } else {
            const pad = padding(size);
            if (pad) await this.write(pad);
            await this.drain();
            await writeAll(this.handle, [blobHeader(digest, size, this.mtime)], start);
            this.blobs.add(digest);
          }
        } finally {
          this.blobOpen = false;
        }
        return undefined;
      },
      abort: async () => {
        try {
          await rewind();
        } catch {
          // The archive is abandoned with the build.
        } finally {
          this.blobOpen = false;
        }
      },
    };
  }

  addFile(digest: string, size: number, file: string): Promise<void> {
    this.add(digest, size, { file });
    return Promise.resolve();
  }

  putBytes(data: Uint8Array): Promise<{ digest: string; size: number }> {
    const digest = sha256Digest(data);
    this.add(digest, data.length, { data: Buffer.from(data) });
    return Promise.resolve({ digest, size: data.length });
  }

  /** Queues a blob, once, to be copied in order from a file, a stream or bytes. */
  add(digest: string, size: number, bytes: ArchiveBlobBytes): void {
    if (this.blobs.has(digest)) return;
    this.blobs.add(digest);
    this.deferred.push({ digest, size, bytes });
  }

  /**
   * Writes what is left and the files naming the blobs, then renames the
   * archive into place. Returns false when `dest` already held these very
   * bytes and was left alone.
   */
  async finish(image: ImageParts, names: readonly string[] = []): Promise<boolean> {
    if (this.blobOpen) throw new Error('a streamed blob is still open');
    const blobs = blobsInOrder(image);
    for (const blob of blobs) {
      if (!this.blobs.has(blob.digest)) throw new Error(`blob ${blob.digest} was never written to the archive`);
    }
    const trailing = trailingEntries(image, this.mtime, names);
    // The archive's bytes follow from these alone: blobs are named by their digests.
    const identity = createHash('sha256')
      .update(JSON.stringify({ format: ARCHIVE_FORMAT, mtime: this.mtime, blobs: blobs.map((b) => [b.digest, b.size]) }))
      .update(trailing)
      .digest('hex');
    if (!this.streamed && this.records !== undefined && (await archiveUnchanged(this.records, this.dest, identity))) {
      await this.abort();
      return false;
    }
    await this.flushDeferred();
    await this.write(trailing);
    await this.drain();
    this.closed = true;
    let written: string | undefined;
    try {
      // On the disk before it is published: a power loss must not leave an empty archive under dest.
      await this.handle.sync();
      await rename(this.temporary, this.dest);
      // The descriptor is this build's file whatever is at dest by now (another build may rename over it).
      written = fileStamp(await this.handle.stat({ bigint: true }));
    } catch (error) {
      // Not renamed: the temporary is still ours to remove (abort skips a closed archive).
      await this.handle.close().catch(() => undefined);
      await rm(this.temporary, { force: true });
      untrackTemporary(this.temporary);
      throw error;
    }
    untrackTemporary(this.temporary);
    await this.handle.close();
    await fsyncDirectory(path.dirname(this.dest));
    if (this.records !== undefined && written !== undefined) await rememberArchive(this.records, this.dest, identity, written).catch(() => undefined);
    return true;
  }

  /** Removes the temporary file; nothing once `finish` has renamed it. */
  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await Promise.allSettled(this.inFlight.map((w) => w.done));
      await this.handle.close().catch(() => undefined);
      await rm(this.temporary, { force: true });
    }
    untrackTemporary(this.temporary);
  }

  private async flushDeferred(): Promise<void> {
    for (const blob of this.deferred.splice(0)) {
      await this.write(blobHeader(blob.digest, blob.size, this.mtime));
      if ('data' in blob.bytes) await this.write(blob.bytes.data);
      else if ('file' in blob.bytes) await this.copyFile(blob.bytes.file, blob.size);
      else await this.copyStream(await blob.bytes.open(), blob.digest, blob.size);
      const pad = padding(blob.size);
      if (pad) await this.write(pad);
    }
  }

  /** A blob read from another image (an archive, a layout, a registry), which checks it against its digest as it reads. */
  private async copyStream(stream: AsyncIterable<Buffer>, digest: string, size: number): Promise<void> {
    let copied = 0;
    for await (const chunk of stream) {
      copied += chunk.length;
      if (copied > size) break;
      await this.write(chunk);
    }
    if (copied !== size) throw new LapinError(`blob ${digest} is not the ${size} bytes its descriptor says`, { hint: 'the source is damaged' });
  }

  private async copyFile(file: string, size: number): Promise<void> {
    // Not through a symlink: the file may be a cache blob, which only lapin should have put there.
    const source = await openNoFollow(file);
    try {
      let left = size;
      while (left > 0) {
        const buffer = Buffer.allocUnsafe(Math.min(READ_SIZE, left));
        const { bytesRead } = await source.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        left -= bytesRead;
        await this.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead));
      }
      const probe = Buffer.alloc(1);
      if (left !== 0 || (await source.read(probe, 0, 1, null)).bytesRead !== 0) {
        throw new LapinError(`${file} changed size while it was copied into the archive`, { hint: 'build again' });
      }
    } finally {
      await source.close();
    }
  }

  /**
   * Appends data; resolves once there is room for more. Small pieces (zstd's
   * 64 KiB pipe reads, gzip members) are gathered into positional writes of
   * at least 1 MiB: one thread-pool trip per piece cost more than the
   * write. Gathered, not joined: writev takes them as they are, no copy.
   */
  private async write(data: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.pending.push(data);
    this.pendingBytes += data.length;
    this.position += data.length;
    if (this.pendingBytes >= READ_SIZE) await this.issue();
  }

  /** Starts the positional write of what `write` has gathered. */
  private async issue(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buffers = this.pending;
    const size = this.pendingBytes;
    const offset = this.position - size;
    this.pending = [];
    this.pendingBytes = 0;
    const done = writeAll(this.handle, buffers, offset);
    done.catch((error: unknown) => {
      this.failure ??= error;
    });
    this.inFlight.push({ done, size });
    this.bytesInFlight += size;
    while (this.bytesInFlight > MAX_BYTES_IN_FLIGHT) await this.settleOne();
  }

  private async drain(): Promise<void> {
    await this.issue();
    while (this.inFlight.length > 0) await this.settleOne();
    if (this.failure !== undefined) throw this.failure;
  }

  private async settleOne(): Promise<void> {
    const next = this.inFlight.shift();
    if (!next) return;
    this.bytesInFlight -= next.size;
    await next.done;
  }
}

/** Writes buffers one after another at `position`, all of them (a short write is continued). */
async function writeAll(handle: FileHandle, data: Buffer[], position: number): Promise<void> {
  let buffers = data.filter((b) => b.length > 0);
  let at = position;
  while (buffers.length > 0) {
    const first = buffers[0] as Buffer;
    const { bytesWritten } = buffers.length === 1 ? await handle.write(first, 0, first.length, at) : await handle.writev(buffers, at);
    if (bytesWritten === 0) throw new Error('the archive file took no bytes');
    at += bytesWritten;
    let skip = bytesWritten;
    let written = 0;
    while (written < buffers.length && skip >= (buffers[written] as Buffer).length) skip -= (buffers[written++] as Buffer).length;
    buffers = buffers.slice(written);
    if (skip > 0) buffers[0] = (buffers[0] as Buffer).subarray(skip);
  }
}
