/**
 * Layer entry names as bytes. tar-stream decodes names as UTF-8 by default,
 * which turns every invalid byte into U+FFFD, so `x\xff` and a real
 * `x\uFFFD` in one layer become one path and a file is lost. Read as latin1
 * (one char per byte), the names go back to bytes and through names.ts,
 * the mapping the build context and the writers use.
 */
import tar from 'tar-stream';
import { decodeName } from './names.js';

/** The pax records that carry names; values are UTF-8 by spec, raw bytes with hdrcharset=BINARY or from Go's writer. */
const NAME_RECORDS = new Set(['path', 'linkpath']);

interface PaxState {
  _header: { type?: string } | null;
  _pax: Record<string, string> | null;
  _paxGlobal: Record<string, string> | null;
  _decodeLongHeader(buf: Buffer): void;
}

/** The pax records' name values as latin1, so they keep their bytes. */
function paxNames(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let rest = buf;
  while (rest.length > 0) {
    const space = rest.indexOf(0x20);
    if (space <= 0) break;
    const length = Number.parseInt(rest.toString('latin1', 0, space), 10);
    if (!Number.isSafeInteger(length) || length <= space + 1 || length > rest.length) break;
    const record = rest.subarray(space + 1, length - 1);
    const equals = record.indexOf(0x3d);
    if (equals === -1) break;
    const key = record.toString('latin1', 0, equals);
    if (NAME_RECORDS.has(key)) result[key] = record.toString('latin1', equals + 1);
    rest = rest.subarray(length);
  }
  return result;
}

/**
 * A tar-stream extractor whose header names and link names are latin1
 * strings of the raw bytes (ustar, GNU long names and pax path/linkpath);
 * pass each through `layerName`.
 */
export function byteNameExtract(): tar.Extract {
  // A tar-stream option its type declarations leave out.
  const options = { filenameEncoding: 'latin1' } as NonNullable<Parameters<typeof tar.extract>[0]>;
  const extract = tar.extract(options);
  // tar-stream decodes pax records as UTF-8 with no option; its own parse stays (sizes, times), and the name records are read again as bytes.
  const state = extract as unknown as PaxState;
  const decodeLongHeader = state._decodeLongHeader.bind(extract);
  state._decodeLongHeader = (buf: Buffer): void => {
    decodeLongHeader(buf);
    const type = state._header?.type;
    if (type === 'pax-header' && state._pax) Object.assign(state._pax, paxNames(buf));
    else if (type === 'pax-global-header' && state._paxGlobal) Object.assign(state._paxGlobal, paxNames(buf));
  };
  return extract;
}

/** A name from `byteNameExtract` as a tree path string (invalid UTF-8 bytes as names.ts stand-ins). */
export function layerName(latin1: string): string {
  return decodeName(Buffer.from(latin1, 'latin1'));
}
