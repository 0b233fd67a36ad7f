import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';

/**
 * Reading a directory of the build context. Names must be UTF-8: tree
 * paths, the cache key and every writer hold names as text, and Node turns
 * the bytes of another encoding into U+FFFD, which names another file (or
 * none) when the build opens it. Such a name is refused, by its bytes
 * escaped, rather than dropped or misread.
 */
export async function readContextDirectory(dir: string, contextDir: string): Promise<string[]> {
  let names: Buffer[];
  try {
    names = await readdir(dir, { encoding: 'buffer' });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new LapinError(`cannot read the directory ${dir} of the build context: permission denied`, {
        hint: 'make it readable by the user running lapin (chmod a+rx), or leave it out of the build',
        exitCode: 2,
      });
    }
    throw error;
  }
  const result: string[] = [];
  for (const raw of names) {
    const name = raw.toString('utf8');
    if (!Buffer.from(name, 'utf8').equals(raw)) {
      const where = path.relative(contextDir, path.join(dir, escapeName(raw)));
      throw new LapinError(`the build context has a file whose name is not UTF-8: ${where}`, {
        hint: 'give it a UTF-8 name or leave it out of the build; lapin writes layers and initrds with UTF-8 names',
        exitCode: 2,
      });
    }
    result.push(name);
  }
  return result;
}

/** A name's bytes as text: printable ASCII as is, everything else (and "\\") as \xNN. */
export function escapeName(raw: Buffer): string {
  let text = '';
  for (const byte of raw) text += byte >= 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  return text;
}
