import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * `mkdir -p` in bounded time. Node 20's recursive mkdir loops forever where
 * mkdir says ENOENT although the parent exists (procfs, e.g. /proc/x), so
 * each parent is made at most once and a second ENOENT is the answer.
 */
export async function makeDirectories(dir: string, mode?: number): Promise<void> {
  const target = path.resolve(dir);
  const options = mode === undefined ? {} : { mode };
  try {
    await mkdir(target, options);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if ((await stat(target)).isDirectory()) return;
      throw error;
    }
    const parent = path.dirname(target);
    if (code !== 'ENOENT' || parent === target) throw error;
    await makeDirectories(parent, mode);
  }
  try {
    await mkdir(target, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST' && (await stat(target)).isDirectory()) return;
    throw error;
  }
}
