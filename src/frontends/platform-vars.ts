/**
 * `${TARGETARCH}` and its three siblings in a bunnyfile's paths and image
 * references: the only text lapin replaces there, so that every other `$`
 * (a file named `a$b`, or `${HOME}`) keeps meaning what bunny reads.
 */
import { closestName } from '../plan/similar.js';
import { TARGET_ARGS } from './platform-args.js';

const TARGET_NAMES: ReadonlySet<string> = new Set(TARGET_ARGS);
/** `$${NAME}` (a literal `${NAME}`), or `${NAME}`. */
const REFERENCE = /(\$?)\$\{([^${}]*)\}/g;

export interface LeftAsWritten {
  /** The `${...}` as written. */
  text: string;
  /** Its offset in the value. */
  offset: number;
  /** The name it is probably a typo of. */
  meant?: string;
}

export interface Substituted {
  value: string;
  /** `${NAME}` references that look meant for lapin but name no platform value. */
  leftAsWritten: LeftAsWritten[];
}

/**
 * Replaces `${TARGETPLATFORM}`, `${TARGETOS}`, `${TARGETARCH}` and
 * `${TARGETVARIANT}` with their values, and `$${NAME}` of those four with a
 * literal `${NAME}`. Anything else stays as written; a `${NAME}` that looks
 * like one of them (TARGET... or BUILD..., or a near miss) is reported.
 */
export function substitutePlatformValues(value: string, values: ReadonlyMap<string, string>): Substituted {
  const leftAsWritten: LeftAsWritten[] = [];
  const result = value.replace(REFERENCE, (whole: string, escape: string, name: string, offset: number) => {
    if (TARGET_NAMES.has(name)) return escape === '' ? (values.get(name) ?? '') : whole.slice(1);
    const meant = closestName(name, TARGET_NAMES);
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && (meant !== undefined || /^(target|build)/i.test(name))) {
      leftAsWritten.push({ text: whole.slice(escape.length), offset: offset + escape.length, ...(meant === undefined ? {} : { meant }) });
    }
    return whole;
  });
  return { value: result, leftAsWritten };
}
