import { createReadStream, createWriteStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

type TarHeader = Parameters<tar.Pack['entry']>[0];
import type { Image } from '../image/image.js';
import { writeAtomically } from './atomic.js';
import { OCI_LAYOUT_FILE, blobPaths, dockerManifestJson, dockerRepositoriesJson, indexJson } from './layout.js';

/** Fixed tar header fields so the archive's bytes depend only on the image. */
function header(name: string, size: number, mtime: number): TarHeader {
  return { name, size, mode: 0o644, uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(mtime * 1000), type: 'file' };
}

/**
 * Writes one tar that is both an OCI image layout and a `docker save`
 * archive (manifest.json + repositories pointing into blobs/), so docker,
 * containerd, podman, skopeo and umoci all load the same file.
 */
export async function writeArchive(image: Image, out: Writable, mtime: number): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(Readable.from(pack), out);
  const small = async (name: string, data: Buffer): Promise<void> => {
    await new Promise<void>((resolve, reject) => pack.entry(header(name, data.length, mtime), data, (e) => (e ? reject(e) : resolve())));
  };
  const dir = async (name: string): Promise<void> => {
    const h = { ...header(name, 0, mtime), type: 'directory' as const, mode: 0o755 };
    await new Promise<void>((resolve, reject) => pack.entry(h, (e) => (e ? reject(e) : resolve())));
  };
  try {
    await small('oci-layout', OCI_LAYOUT_FILE);
    await small('index.json', indexJson(image));
    await small('manifest.json', dockerManifestJson(image));
    await small('repositories', dockerRepositoriesJson(image));
    await dir('blobs/');
    await dir('blobs/sha256/');
    for (const blob of blobPaths(image)) {
      await new Promise<void>((resolve, reject) => {
        const entry = pack.entry(header(blob.layoutPath, blob.size, mtime), (e) => (e ? reject(e) : resolve()));
        pipeline(createReadStream(image.store.pathOf(blob.digest), { highWaterMark: 1024 * 1024 }), entry).catch(reject);
      });
    }
    pack.finalize();
  } catch (error) {
    pack.destroy(error instanceof Error ? error : new Error(String(error)));
  }
  await done;
}

export async function writeArchiveFile(image: Image, dest: string, mtime: number): Promise<void> {
  await writeAtomically(dest, async (temporary) => {
    await writeArchive(image, createWriteStream(temporary, { mode: 0o644 }), mtime);
  });
}
