/**
 * Text from an image or a registry, made safe for a terminal: C0 controls
 * (ESC among them), DEL, C1 controls and the Unicode format characters that
 * reorder or hide text (bidi overrides such as U+202E, zero-width marks,
 * line separators) are shown as escapes, so input cannot move the cursor,
 * clear the screen or forge a line of lapin's output.
 */

// C0 and DEL and C1; bidi marks and overrides, zero-width characters, the line/paragraph separators, BOM.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/gu;
// eslint-disable-next-line no-control-regex -- as above
const UNSAFE_WITH_LINES = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]/gu;

function escapeOne(char: string): string {
  const code = char.codePointAt(0) as number;
  if (char === '\n') return '\\n';
  if (char === '\t') return '\\t';
  if (char === '\r') return '\\r';
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
}

/** Escapes what a terminal would act on; newlines and tabs between lines stay (for whole reports). */
export function escapeTerminalText(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/** Escapes everything escapeTerminalText does and newlines and tabs too: one value, or one line. */
export function escapeLine(text: string): string {
  return text.replace(UNSAFE_WITH_LINES, escapeOne);
}
