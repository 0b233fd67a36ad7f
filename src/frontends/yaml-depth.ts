/**
 * A cheap scan of YAML text for nesting deeper than MAX_NESTING, run before
 * the yaml library parses it: the library builds every level before its own
 * stack overflows (500 MB for 1 MiB of `[`). It counts flow brackets outside
 * quotes and comments, block indentation levels and `- ` items on one line;
 * a bunnyfile needs a handful of levels, so an overestimate costs nothing.
 */
import { MAX_NESTING } from './limits.js';

/** The offset where nesting first goes past MAX_NESTING, or undefined. */
export function yamlTooDeep(text: string): number | undefined {
  let flow = 0;
  const indents: number[] = [];
  let offset = 0;
  /** Lines of a block scalar (`|`, `>`) are more indented than this; -1 outside one. */
  let scalarIndent = -1;
  let quote: '"' | "'" | undefined;
  for (const line of text.split('\n')) {
    const lineStart = offset;
    offset += line.length + 1;
    const indent = line.length - line.replace(/^ +/, '').length;
    const blank = line.trim() === '' || line.trimStart().startsWith('#');
    if (scalarIndent >= 0) {
      if (blank || indent > scalarIndent) continue;
      scalarIndent = -1;
    }
    let index = 0;
    if (flow === 0 && quote === undefined && !blank) {
      while (indents.length > 0 && (indents[indents.length - 1] ?? 0) >= indent) indents.pop();
      indents.push(indent);
      index = indent;
      let items = 0;
      if (indents.length > MAX_NESTING) return lineStart + index;
      while (line.startsWith('- ', index) || line.startsWith('? ', index)) {
        items += 1;
        if (indents.length + items > MAX_NESTING) return lineStart + index;
        index += 2;
        while (line[index] === ' ') index += 1;
      }
    }
    for (; index < line.length; index += 1) {
      const char = line[index];
      const previous = index === 0 ? ' ' : (line[index - 1] ?? ' ');
      if (quote === '"') {
        if (char === '\\') index += 1;
        else if (char === '"') quote = undefined;
        continue;
      }
      if (quote === "'") {
        if (char === "'" && line[index + 1] === "'") index += 1;
        else if (char === "'") quote = undefined;
        continue;
      }
      if (char === '#' && (previous === ' ' || previous === '\t')) break;
      if ((char === '"' || char === "'") && ' \t[{,:'.includes(previous)) {
        quote = char;
      } else if (char === '[' || char === '{') {
        flow += 1;
        if (indents.length + flow > MAX_NESTING) return lineStart + index;
      } else if ((char === ']' || char === '}') && flow > 0) {
        flow -= 1;
      }
    }
    if (flow === 0 && quote === undefined && /(^|[\s:-])[|>][0-9+-]*\s*(#.*)?$/.test(line)) scalarIndent = indent;
  }
  return undefined;
}
