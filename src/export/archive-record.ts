/**
 * The records behind the unchanged-archive shortcut (docs/performance.md):
 * after writing an archive, lapin remembers in the cache directory an
 * identity of its bytes and the stamp of the file it renamed into place. A
 * rebuild that would write the same identity leaves the file alone while it
 * still has that stamp. Shared by the single-image archive (archive.ts) and
 * the index archive (imagetools/create.ts).
 */
import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { makeDirectories } from '../mkdirp.js';
import { fileStamp, readRegularFile } from '../regular-file.js';
import { writeFileAtomically } from '../temporaries.js';

interface ArchiveRecord {
  dest: string;
  identity: string;
  file: string;
}

export { fileStamp } from '../regular-file.js';

/** A record is a line of JSON; anything bigger, or not a regular file (a FIFO would block the build), is no record. */
const RECORD_MAX_BYTES = 64 * 1024;

function recordPath(recordDir: string, dest: string): string {
  const key = createHash('sha256').update(dest).digest('hex');
  return path.join(recordDir, 'v1', 'archives', `${key}.json`);
}

/**
 * True when `dest` is the archive lapin last wrote there with this
 * identity, untouched since: same inode, size, mtime and ctime (ctime
 * cannot be set back, so any write or replacement shows).
 */
export async function archiveUnchanged(recordDir: string, dest: string, identity: string): Promise<boolean> {
  try {
    const record = JSON.parse((await readRegularFile(recordPath(recordDir, dest), RECORD_MAX_BYTES)).toString('utf8')) as ArchiveRecord;
    return record.identity === identity && record.file === fileStamp(await lstat(dest, { bigint: true }));
  } catch {
    return false;
  }
}

/** Records `file`, the stamp of the file this build renamed into place, unless dest is already another file. */
export async function rememberArchive(recordDir: string, dest: string, identity: string, file: string): Promise<void> {
  if (file === 'not a file' || fileStamp(await lstat(dest, { bigint: true })) !== file) return;
  const record: ArchiveRecord = { dest, identity, file };
  const target = recordPath(recordDir, dest);
  await makeDirectories(path.dirname(target));
  await writeFileAtomically(target, JSON.stringify(record));
}
