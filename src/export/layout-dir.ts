import { constants } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Image } from '../image/image.js';
import { requireFreshDirectory, writeAtomically } from './atomic.js';
import { OCI_LAYOUT_FILE, blobPaths, indexJson } from './layout.js';

/** Writes an OCI image layout directory (buildx's `type=oci,tar=false`). */
export async function writeLayoutDirectory(image: Image, dest: string): Promise<void> {
  await requireFreshDirectory(dest);
  await writeAtomically(dest, async (temporary) => {
    await mkdir(path.join(temporary, 'blobs', 'sha256'), { recursive: true });
    await writeFile(path.join(temporary, 'oci-layout'), OCI_LAYOUT_FILE);
    await writeFile(path.join(temporary, 'index.json'), indexJson(image));
    for (const blob of blobPaths(image)) {
      const from = image.store.pathOf(blob.digest);
      const to = path.join(temporary, blob.layoutPath);
      // A copy, not a hard link: the store may be the layer cache, which a user's edit must not reach.
      // FICLONE makes it a cheap reflink where the filesystem supports one.
      await copyFile(from, to, constants.COPYFILE_FICLONE);
    }
  });
}
