/**
 * A definition file's bytes as text. All three syntaxes are UTF-8 (YAML,
 * Dockerfile and Nix tools all read it so); a file in another encoding is
 * refused at the first byte that is not UTF-8, instead of having U+FFFD
 * silently put into its paths and values.
 */
import { LapinError, type SourcePosition } from '../errors.js';

const SAVE_AS_UTF8 = 'save the file as UTF-8, e.g. with';

/** UTF-16 and UTF-32 byte order marks, longest first (UTF-32LE starts like UTF-16LE). */
const BYTE_ORDER_MARKS: ReadonlyArray<[string, readonly number[]]> = [
  ['UTF-32 (little-endian)', [0xff, 0xfe, 0x00, 0x00]],
  ['UTF-32 (big-endian)', [0x00, 0x00, 0xfe, 0xff]],
  ['UTF-16 (little-endian)', [0xff, 0xfe]],
  ['UTF-16 (big-endian)', [0xfe, 0xff]],
];

/** The encoding a byte order mark or NUL pattern names, for files that are surely not UTF-8. */
function otherEncoding(bytes: Uint8Array): string | undefined {
  for (const [name, mark] of BYTE_ORDER_MARKS) {
    if (bytes.length >= mark.length && mark.every((byte, i) => bytes[i] === byte)) return name;
  }
  // UTF-32 text without a mark: ASCII characters with three NULs beside each (tested first: it also looks like UTF-16).
  if (bytes.length >= 8 && bytes[0] !== 0 && bytes[1] === 0 && bytes[2] === 0 && bytes[3] === 0 && bytes[4] !== 0 && bytes[5] === 0) return 'UTF-32 (little-endian)';
  if (bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0 && bytes[2] === 0 && bytes[3] !== 0 && bytes[4] === 0 && bytes[7] !== 0) return 'UTF-32 (big-endian)';
  // UTF-16 text without a mark: ASCII characters with a NUL beside each.
  if (bytes.length >= 4 && bytes[0] !== 0 && bytes[1] === 0 && bytes[2] !== 0 && bytes[3] === 0) return 'UTF-16 (little-endian)';
  if (bytes.length >= 4 && bytes[0] === 0 && bytes[1] !== 0 && bytes[2] === 0 && bytes[3] !== 0) return 'UTF-16 (big-endian)';
  return undefined;
}

/** Length of the UTF-8 sequence starting at `i`, or 0 when it is not valid UTF-8 (RFC 3629). */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i] as number;
  if (lead < 0x80) return 1;
  const continuation = (at: number, low = 0x80, high = 0xbf): boolean => at < bytes.length && (bytes[at] as number) >= low && (bytes[at] as number) <= high;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(i + 1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    // No overlong forms (E0 80..9F) and no surrogates (ED A0..BF).
    const low = lead === 0xe0 ? 0xa0 : 0x80;
    const high = lead === 0xed ? 0x9f : 0xbf;
    return continuation(i + 1, low, high) && continuation(i + 2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const low = lead === 0xf0 ? 0x90 : 0x80;
    const high = lead === 0xf4 ? 0x8f : 0xbf;
    return continuation(i + 1, low, high) && continuation(i + 2) && continuation(i + 3) ? 4 : 0;
  }
  return 0;
}

/** The 1-based line and column (in characters) of byte `offset` of valid UTF-8 `bytes`. */
function positionOfByte(bytes: Uint8Array, offset: number, file: string): SourcePosition {
  let lineStart = 0;
  let line = 1;
  for (let i = 0; i < offset; i++) {
    if (bytes[i] === 0x0a) {
      line += 1;
      lineStart = i + 1;
    }
  }
  const column = Buffer.from(bytes.subarray(lineStart, offset)).toString('utf8').length + 1;
  return { file, line, column };
}

/**
 * Decodes a definition file. A UTF-8 byte order mark is kept (each parser
 * skips it, and positions stay those of the file); anything that is not
 * UTF-8 is a LapinError at the offending byte.
 */
export function decodeDefinition(bytes: Uint8Array, file: string): string {
  const other = otherEncoding(bytes);
  if (other !== undefined) {
    throw new LapinError(`the file is ${other} text; lapin reads definition files as UTF-8`, {
      at: { file, line: 1, column: 1 },
      hint: `${SAVE_AS_UTF8} iconv -f ${other.slice(0, 6)} -t UTF-8, or PowerShell's Set-Content -Encoding utf8`,
    });
  }
  try {
    return STRICT_UTF8.decode(bytes);
  } catch {
    // Not UTF-8: find the first offending byte for the message.
  }
  for (let i = 0; i < bytes.length; ) {
    const length = sequenceLength(bytes, i);
    if (length === 0) {
      const shown = Array.from(bytes.subarray(i, Math.min(i + 4, bytes.length)), (b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
      throw new LapinError(`the byte at offset ${i} (${shown}) is not UTF-8; lapin reads definition files as UTF-8`, {
        at: positionOfByte(bytes, i, file),
        hint: `${SAVE_AS_UTF8} iconv -f LATIN1 -t UTF-8 for a Latin-1 file`,
      });
    }
    i += length;
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/** Throws on bytes that are not UTF-8; keeps a leading byte order mark. */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
