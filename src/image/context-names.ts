import { readdir } from 'node:fs/promises';
import { LapinError } from '../errors.js';
import { decodeName } from './names.js';

/**
 * Reading a directory of the build context. Names are bytes: one that is
 * not UTF-8 is kept byte for byte (names.ts), never read as U+FFFD, which
 * would name another file (or none) when the build opens it.
 */
export async function readContextDirectory(dir: string | Buffer): Promise<string[]> {
  let names: Buffer[];
  try {
    names = await readdir(dir, { encoding: 'buffer' });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new LapinError(`cannot read the directory ${typeof dir === 'string' ? dir : escapeName(dir)} of the build context: permission denied`, {
        hint: 'make it readable by the user running lapin (chmod a+rx), or leave it out of the build',
        exitCode: 2,
      });
    }
    throw error;
  }
  return names.map(decodeName);
}

/** A name's bytes as text: printable ASCII as is, everything else (and "\\") as \xNN. */
export function escapeName(raw: Buffer): string {
  let text = '';
  for (const byte of raw) text += byte >= 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  return text;
}
