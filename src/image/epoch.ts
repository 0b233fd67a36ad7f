import { UsageError } from '../errors.js';

/**
 * The latest time lapin writes: the newc cpio header holds mtime in 32
 * unsigned bits (2106-02-07T06:28:15Z); tar's 11 octal digits and the
 * config's RFC 3339 `created` hold more. One limit for every output.
 */
export const MAX_SOURCE_DATE_EPOCH = 0xffffffff;

/** Throws a usage error (exit 2) unless `seconds` is a whole number of seconds lapin can write; `what` names its origin. */
export function checkSourceDateEpoch(seconds: number, what: string): number {
  if (!Number.isSafeInteger(seconds) || seconds < 0) {
    throw new UsageError(`${what} is not a whole number of seconds since 1970`, 'use e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)');
  }
  if (seconds > MAX_SOURCE_DATE_EPOCH) {
    throw new UsageError(
      `${what} is after ${MAX_SOURCE_DATE_EPOCH} (${new Date(MAX_SOURCE_DATE_EPOCH * 1000).toISOString().replace('.000Z', 'Z')}), the latest time the initrd and layer formats can hold`,
      'use a time in seconds since 1970, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)',
    );
  }
  return seconds;
}
