/**
 * File names as bytes. Tree paths are strings; a name that is not UTF-8
 * (Linux names are bytes) keeps its bytes by mapping each byte that is not
 * part of a valid UTF-8 sequence to a lone surrogate, U+DC80..U+DCFF (the
 * "surrogateescape" of Python's os.fsdecode). Valid UTF-8 never decodes to
 * a lone surrogate, so the mapping is one to one, and `nameBytes` gives the
 * exact bytes back for the tar and cpio writers and for the file system.
 */

/** A lone low surrogate of the escaped range (one after a high surrogate is half of a real character). */
const ESCAPED = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/;

/** The name's bytes as a string; the bytes of invalid UTF-8 become U+DC80 + byte. */
export function decodeName(raw: Buffer): string {
  const text = raw.toString('utf8');
  if (!text.includes('\uFFFD') || Buffer.from(text, 'utf8').equals(raw)) return text;
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const length = sequenceLength(raw, i);
    if (length === 0) {
      out += String.fromCharCode(0xdc00 + (raw[i] as number));
      i += 1;
    } else {
      out += raw.toString('utf8', i, i + length);
      i += length;
    }
  }
  return out;
}

/** The length of the valid UTF-8 sequence at `i`, or 0 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF). */
function sequenceLength(raw: Buffer, i: number): number {
  const b0 = raw[i] as number;
  if (b0 < 0x80) return 1;
  const cont = (k: number, low = 0x80, high = 0xbf): boolean => {
    const b = raw[i + k];
    return b !== undefined && b >= low && b <= high;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) return cont(1) ? 2 : 0;
  if (b0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if ((b0 >= 0xe1 && b0 <= 0xec) || b0 === 0xee || b0 === 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

/** True when the name holds bytes that are not UTF-8. */
export function hasRawBytes(name: string): boolean {
  return ESCAPED.test(name);
}

/** The exact bytes of a name made by `decodeName`. */
export function nameBytes(name: string): Buffer {
  if (!ESCAPED.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xdc80 && unit <= 0xdcff) {
      // A lone low surrogate: a high one before it would make a pair, which String iteration keeps whole.
      const previous = i > 0 ? name.charCodeAt(i - 1) : 0;
      if (previous >= 0xd800 && previous <= 0xdbff) continue;
      parts.push(Buffer.from(name.slice(start, i), 'utf8'), Buffer.of(unit - 0xdc00));
      start = i + 1;
    }
  }
  parts.push(Buffer.from(name.slice(start), 'utf8'));
  return Buffer.concat(parts);
}

/** A path to hand to node:fs: the string, or its exact bytes when it holds non-UTF-8 ones. */
export function fsPath(p: string): string | Buffer {
  return ESCAPED.test(p) ? nameBytes(p) : p;
}
