import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * What the unchanged-archive shortcut must see through, in turn: one byte
 * flipped in place with its mtime put back (ctime shows it), a truncation,
 * and a copy of itself in its place (another inode, same times). After each,
 * `rewritten` runs lapin again, which must write the archive (back to
 * `original`), and `unchanged` runs it once more, which must leave it alone.
 */
export async function tamperArchive(dest: string, original: Buffer, scratch: string, rewritten: () => Promise<unknown>, unchanged: () => Promise<unknown>): Promise<void> {
  const before = await stat(dest);
  const changed = Buffer.from(original);
  const at = changed.length - 3000;
  changed[at] = (changed[at] as number) ^ 0xff;
  await writeFile(dest, changed);
  execFileSync('touch', ['-d', `@${before.mtimeMs / 1000}`, dest]);
  await rewritten();
  assert.ok((await readFile(dest)).equals(original));
  await unchanged();

  await truncate(dest, original.length - 1024);
  await rewritten();
  assert.ok((await readFile(dest)).equals(original));
  await unchanged();

  await cp(dest, join(scratch, 'copy.tar'));
  await rm(dest);
  await cp(join(scratch, 'copy.tar'), dest, { preserveTimestamps: true });
  await rewritten();
  await unchanged();
}
