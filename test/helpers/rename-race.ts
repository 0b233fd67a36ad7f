import { createRequire, syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const fsPromises = require('node:fs/promises') as typeof import('node:fs/promises');

/**
 * Runs WORK while another writer renames OTHER over DEST right after lapin's
 * own rename of its temporary into DEST lands, before lapin records the file
 * as its own: the race the unchanged-archive record must not be fooled by.
 */
export async function withRenameRace<T>(dest: string, other: string, work: () => Promise<T>): Promise<T> {
  const realRename = fsPromises.rename;
  const temporary = `.${path.basename(dest)}.lapin-tmp-`;
  fsPromises.rename = async (from, to) => {
    await realRename(from, to);
    if (String(to) === dest && path.basename(String(from)).startsWith(temporary)) await realRename(other, dest);
  };
  syncBuiltinESMExports();
  try {
    return await work();
  } finally {
    fsPromises.rename = realRename;
    syncBuiltinESMExports();
  }
}
