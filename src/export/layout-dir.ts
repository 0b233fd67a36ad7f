import { copyFile, link, mkdir, writeFile } from 'node:fs/promises';
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
      // A hard link costs nothing when the store is on the same filesystem.
      await link(from, to).catch(() => copyFile(from, to));
    }
  });
}
