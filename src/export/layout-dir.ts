import { constants, createWriteStream } from 'node:fs';
import { copyFile, open, writeFile } from 'node:fs/promises';
import { LapinError } from '../errors.js';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { imageParts, type ImageModel } from '../image/model.js';
import { requireFreshDirectory, writeAtomically } from './atomic.js';
import { OCI_LAYOUT_FILE, blobPaths, indexJson } from './layout.js';
import { makeDirectories } from '../mkdirp.js';

/** Writes an OCI image layout directory (buildx's `type=oci,tar=false`). */
export async function writeLayoutDirectory(model: ImageModel, dest: string, names: readonly string[] = []): Promise<void> {
  await requireFreshDirectory(dest);
  const image = await imageParts(model, 'the image');
  await writeAtomically(dest, async (temporary) => {
    await makeDirectories(path.join(temporary, 'blobs', 'sha256'));
    await writeFile(path.join(temporary, 'oci-layout'), OCI_LAYOUT_FILE);
    await writeFile(path.join(temporary, 'index.json'), indexJson(image, names));
    for (const blob of blobPaths(image)) {
      const to = path.join(temporary, blob.layoutPath);
      if (blob.digest === image.manifest.digest) {
        await writeFile(to, image.manifestBytes);
        continue;
      }
      const bytes = image.bytesOf(blob.digest);
      if ('open' in bytes) {
        // Read from another image, which checks it against its digest as it reads.
        const out = createWriteStream(to);
        await pipeline(await bytes.open(), out);
        if (out.bytesWritten !== blob.size) throw new LapinError(`blob ${blob.digest} is not the ${blob.size} bytes its descriptor says`, { hint: 'the source is damaged' });
        continue;
      }
      const from = bytes.file;
      // A copy, not a hard link: the store may be the layer cache, which a user's edit must not reach.
      // Through a descriptor opened without following a symlink: a cache blob swapped for one is not copied.
      // FICLONE makes it a cheap reflink where the filesystem supports one.
      const handle = await open(from, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ELOOP') throw new LapinError(`${from} became a symlink while lapin was building; refusing to follow it`, { hint: 'build again' });
        throw error;
      });
      try {
        const info = await handle.stat();
        if (!info.isFile() || info.size !== blob.size) throw new LapinError(`blob ${blob.digest} changed while lapin was building`, { hint: 'build again' });
        await copyFile(`/proc/self/fd/${handle.fd}`, to, constants.COPYFILE_FICLONE).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
          // No /proc: copy through the descriptor itself.
          await pipeline(handle.createReadStream({ start: 0, autoClose: false }), createWriteStream(to));
        });
      } finally {
        await handle.close();
      }
    }
  });
}
