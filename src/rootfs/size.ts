/** Sizes users write for images ("64M", "1G", "1048576"). Pure, so frontends can use it. */

const MIB = 1024 * 1024;
const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: MIB, g: 1024 * MIB, t: 1024 * 1024 * MIB };

/**
 * Parses an image size: a byte count, or a number with K, M, G or T (binary
 * multiples; "KiB", "MB" and lower case are accepted too). Returns undefined
 * when the text is not a positive size.
 */
export function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$/.exec(text);
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.ceil(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

/** A cache cap from an environment variable's text: the default when unset, empty or not a size; "0" turns the cache off. */
export function capFromEnv(text: string | undefined, fallback: number): number {
  if (text === undefined || text.trim() === '') return fallback;
  if (/^\s*0+\s*$/.test(text)) return 0;
  return parseByteSize(text) ?? fallback;
}
