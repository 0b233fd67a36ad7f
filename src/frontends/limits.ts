/**
 * Limits on definition files (docs/syntaxes.md "Limits"): far above any
 * real file, low enough that a hostile or broken one ends in a positioned
 * error in bounded time and memory instead of gigabytes of strings.
 */
import { LapinError, type SourcePosition } from '../errors.js';

/** A definition file's size: real ones are a few kilobytes. */
export const MAX_DEFINITION_BYTES = 1024 * 1024;
/** The result of expanding one word ($VAR, ${VAR...}) in a Containerfile. */
export const MAX_EXPANDED_WORD = 1024 * 1024;
/** All expansion results of one Containerfile together. */
export const MAX_EXPANDED_TOTAL = 16 * 1024 * 1024;
/** Stages (FROM lines) in one Containerfile: each is checked against the ones before it. */
export const MAX_STAGES = 1000;
/** Nesting of lists and sets (Nix) or sequences and mappings (YAML). */
export const MAX_NESTING = 200;

function mebibytes(bytes: number): string {
  return `${bytes / (1024 * 1024)} MiB`;
}

/** The position of character `index` in `text`. */
export function positionOf(text: string, index: number, file: string): SourcePosition {
  const before = text.slice(0, index);
  const lineStart = before.lastIndexOf('\n') + 1;
  let line = 1;
  for (let at = before.indexOf('\n'); at >= 0; at = before.indexOf('\n', at + 1)) line += 1;
  return { file, line, column: index - lineStart + 1 };
}

/** Refuses a definition file over MAX_DEFINITION_BYTES, at the first character past the limit. */
export function checkDefinitionSize(text: string, file: string): void {
  if (text.length <= MAX_DEFINITION_BYTES / 4 || Buffer.byteLength(text) <= MAX_DEFINITION_BYTES) return;
  let bytes = 0;
  let index = 0;
  for (const char of text) {
    bytes += Buffer.byteLength(char);
    if (bytes > MAX_DEFINITION_BYTES) break;
    index += char.length;
  }
  throw definitionTooLarge(file, positionOf(text, index, file));
}

export function definitionTooLarge(file: string, at?: SourcePosition): LapinError {
  return new LapinError(`${at === undefined ? `${file} ` : 'the file '}is larger than ${mebibytes(MAX_DEFINITION_BYTES)}, lapin's limit for a definition file`, {
    ...(at === undefined ? {} : { at }),
    hint: 'a definition file names files in the build context; put large data in a file there and COPY it',
  });
}

export function expansionTooLarge(limit: number): string {
  return limit === MAX_EXPANDED_WORD
    ? `variable expansion makes a word longer than ${mebibytes(MAX_EXPANDED_WORD)}, lapin's limit`
    : `variable expansions add up to more than ${mebibytes(MAX_EXPANDED_TOTAL)} in this file, lapin's limit`;
}

/** A stack overflow in a parser (a library's, or ours) as a clean error. */
export function tooDeep(error: unknown, file: string): unknown {
  if (error instanceof RangeError && /call stack/i.test(error.message)) {
    return new LapinError(`${file} nests too deeply to read`, {
      at: { file, line: 1, column: 1 },
      hint: `keep lists and mappings under ${MAX_NESTING} levels deep`,
    });
  }
  return error;
}
