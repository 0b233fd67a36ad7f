/**
 * Dockerfile word processing: quote removal, escapes and variable expansion,
 * with the rules BuildKit applies to instruction arguments
 * (moby/buildkit frontend/dockerfile/shell). It is not a shell: there is no
 * command substitution, globbing or word splitting of results.
 */

import { MAX_EXPANDED_WORD, expansionTooLarge } from './limits.js';

/** Looks a variable up; undefined means "not set" (different from set to ""). */
export type VariableLookup = (name: string) => string | undefined;

/** A word that cannot be processed; `offset` is where in the word the problem is. */
export class ShellWordError extends Error {
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(message);
    this.name = 'ShellWordError';
    this.offset = offset;
  }
}

/** Deeper ${...} nesting than this is refused instead of exhausting the stack. */
const MAX_NESTING = 100;

const SPECIAL_PARAMETERS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);
const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;

/**
 * Removes quotes and escapes from `word` and expands `$NAME`, `${NAME}` and
 * the `${NAME<modifier>...}` forms (`-`, `+`, `?`, their `:` variants,
 * `#`, `##`, `%`, `%%`, `/`, `//`), as Docker does for FROM, COPY, ENV,
 * LABEL and the other instructions that expand variables.
 */
export function processWord(word: string, lookup: VariableLookup, escapeToken = '\\', maxLength = MAX_EXPANDED_WORD): string {
  return new WordLexer(word, lookup, escapeToken, maxLength).processStopOn(undefined, false);
}

/**
 * Expands the variables of an unquoted here-document's content as BuildKit
 * does (instructions SourcesAndDest.ExpandRaw: a lexer with backslash as
 * the escape whatever the file's escape directive, and SkipProcessQuotes):
 * quotes are plain characters, a backslash drops and keeps what follows.
 */
export function processHeredoc(content: string, lookup: VariableLookup, maxLength = MAX_EXPANDED_WORD): string {
  return new WordLexer(content, lookup, '\\', maxLength, true).processStopOn(undefined, false);
}

class WordLexer {
  private position = 0;
  private rawEscapes = false;
  private nesting = 0;

  constructor(
    private readonly word: string,
    private readonly lookup: VariableLookup,
    private readonly escapeToken: string,
    private readonly maxLength: number,
    /** Quotes are plain characters (here-document content). */
    private readonly skipQuotes = false,
  ) {}

  /** Refuses a result past the limit as it grows, before doubling chains exhaust memory. */
  private bounded(result: string): string {
    if (result.length > this.maxLength) throw new ShellWordError(expansionTooLarge(this.maxLength), this.position);
    return result;
  }

  private peek(): string | undefined {
    return this.word[this.position];
  }

  private next(): string | undefined {
    const char = this.word[this.position];
    if (char !== undefined) this.position += 1;
    return char;
  }

  /** Processes up to `stop` (consumed) or the end of the word when `stop` is undefined. */
  processStopOn(stop: string | undefined, rawEscapes: boolean): string {
    const savedRawEscapes = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = '';
      for (let char = this.peek(); char !== undefined; char = this.peek()) {
        if (stop !== undefined && char === stop) {
          this.next();
          return result;
        }
        if (char === '$') {
          result = this.bounded(result + this.processDollar());
        } else if (char === "'" && !this.skipQuotes) {
          result += this.processSingleQuote();
        } else if (char === '"' && !this.skipQuotes) {
          result = this.bounded(result + this.processDoubleQuote());
        } else {
          this.next();
          if (char === this.escapeToken) {
            if (this.rawEscapes) result += char;
            const escaped = this.next();
            // An escape at the very end is dropped.
            if (escaped === undefined) break;
            result += escaped;
          } else {
            result += char;
          }
        }
      }
      if (stop !== undefined) {
        throw new ShellWordError(`unexpected end of text while looking for a matching '${stop}'`, this.position);
      }
      return result;
    } finally {
      this.rawEscapes = savedRawEscapes;
    }
  }

  /** Everything between single quotes is literal; a single quote cannot be escaped. */
  private processSingleQuote(): string {
    const start = this.position;
    this.next();
    let result = '';
    for (;;) {
      const char = this.next();
      if (char === undefined) throw new ShellWordError('unterminated single quote', start);
      if (char === "'") return result;
      result += char;
    }
  }

  /** Double quotes keep everything but `$`; the escape token escapes only `"`, `$` and itself. */
  private processDoubleQuote(): string {
    const start = this.position;
    this.next();
    let result = '';
    for (;;) {
      const char = this.peek();
      if (char === undefined) throw new ShellWordError('unterminated double quote', start);
      if (char === '"') {
        this.next();
        return result;
      }
      if (char === '$') {
        result = this.bounded(result + this.processDollar());
        continue;
      }
      this.next();
      if (char === this.escapeToken) {
        if (this.rawEscapes) result += char;
        const following = this.peek();
        if (following === undefined) continue;
        if (following === '"' || following === '$' || following === this.escapeToken) {
          result += following;
          this.next();
          continue;
        }
      }
      result += char;
    }
  }

  private processDollar(): string {
    const dollarAt = this.position;
    this.next();
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      return this.lookup(name) ?? '';
    }
    this.next();
    const first = this.peek();
    if (first === undefined) throw new ShellWordError("missing '}'", dollarAt);
    if (first === '{' || first === '}' || first === ':') {
      throw new ShellWordError('bad substitution', dollarAt);
    }
    const name = this.processName();
    let modifier = this.next();
    let modifierText = modifier ?? '';
    let nullIsUnset = false;
    if (modifier === undefined) throw new ShellWordError("missing '}'", dollarAt);
    if (modifier === '}') return this.lookup(name) ?? '';
    if (modifier === '/') return this.processReplacement(name, dollarAt);
    if (modifier === ':') {
      nullIsUnset = true;
      modifier = this.next();
      modifierText += modifier ?? '';
    }
    if (modifier !== '+' && modifier !== '-' && modifier !== '?' && modifier !== '#' && modifier !== '%') {
      if (modifier === undefined) throw new ShellWordError("missing '}'", dollarAt);
      // Docker reads up to the '}' before complaining; the message is the same either way.
      throw new ShellWordError(`unsupported modifier (${modifierText}) in substitution`, dollarAt);
    }
    const operand = this.nested(() => this.processStopOn('}', modifier === '#' || modifier === '%'), dollarAt);
    const value = this.lookup(name);
    const unset = value === undefined || (nullIsUnset && value === '');
    switch (modifier) {
      case '-':
        return unset ? operand : (value ?? '');
      case '+':
        return unset ? '' : operand;
      case '?':
        if (value === undefined) {
          throw new ShellWordError(`${name}: ${operand === '' ? 'is not allowed to be unset' : operand}`, dollarAt);
        }
        if (nullIsUnset && value === '') {
          throw new ShellWordError(`${name}: ${operand === '' ? 'is not allowed to be empty' : operand}`, dollarAt);
        }
        return value;
      default: {
        // '#' trims a prefix and '%' a suffix; doubled, the longest match.
        const greedy = operand.startsWith(modifier);
        const pattern = greedy ? operand.slice(1) : operand;
        return modifier === '%'
          ? trimSuffix(pattern, value ?? '', greedy, dollarAt)
          : trimPrefix(pattern, value ?? '', greedy, dollarAt);
      }
    }
  }

  /** `${name/pattern/replacement}` and `${name//pattern/replacement}`. */
  private processReplacement(name: string, dollarAt: number): string {
    const replaceAll = this.peek() === '/';
    if (replaceAll) this.next();
    const pattern = this.nested(() => this.processStopOn('/', true), dollarAt);
    const replacement = this.nested(() => this.processStopOn('}', true), dollarAt);
    const value = this.lookup(name) ?? '';
    checkMatchCost(pattern, value, false, dollarAt);
    const regex = patternToRegex(pattern, true, false, dollarAt, replaceAll ? 'g' : '');
    let grown = value.length;
    return value.replace(regex, (match: string) => {
      grown += replacement.length - match.length;
      if (grown > this.maxLength) throw new ShellWordError(expansionTooLarge(this.maxLength), dollarAt);
      return replacement;
    });
  }

  /** Runs a nested part of a ${...}, refusing absurd depths and naming a missing '}'. */
  private nested(run: () => string, dollarAt: number): string {
    if (this.nesting >= MAX_NESTING) throw new ShellWordError('variable substitutions nested too deeply', dollarAt);
    this.nesting += 1;
    try {
      return run();
    } catch (error) {
      if (error instanceof ShellWordError && this.peek() === undefined && error.offset === this.position) {
        throw new ShellWordError("missing '}'", dollarAt);
      }
      throw error;
    } finally {
      this.nesting -= 1;
    }
  }

  /** A name is letters, digits and '_', or all digits, or one special parameter. */
  private processName(): string {
    let name = '';
    for (let char = this.peek(); char !== undefined; char = this.peek()) {
      if (name === '' && DIGIT.test(char)) {
        while (this.peek() !== undefined && DIGIT.test(this.peek() ?? '')) name += this.next() ?? '';
        return name;
      }
      if (name === '' && SPECIAL_PARAMETERS.has(char)) {
        this.next();
        return char;
      }
      if (!LETTER.test(char) && !DIGIT.test(char) && char !== '_') break;
      name += char;
      this.next();
    }
    return name;
  }
}

const REGEX_SPECIAL = new Set(['[', ']', '{', '}', '.', '+', '(', ')', '|', '^', '$']);

/**
 * JavaScript's backtracking regular expressions take about n^(k+1) steps to
 * fail an unanchored pattern with k `*` on n characters (n^k anchored), where
 * BuildKit's Go regexp is linear: past MATCH_STEPS such a match would run for
 * minutes, so it is refused (docs/syntaxes.md "Limits").
 */
const MATCH_STEPS = 2 ** 28;

function checkMatchCost(pattern: string, value: string, anchored: boolean, offset: number): void {
  const stars = (pattern.replace(/\\./g, '').match(/\*/g) ?? []).length;
  const power = stars + (anchored ? 0 : 1);
  if (stars > 0 && power > 1 && value.length ** power > MATCH_STEPS) {
    throw new ShellWordError(
      `a pattern with ${stars} '*' on a value of ${value.length} characters is past lapin's limit for pattern substitutions`,
      offset,
    );
  }
}

/** A shell pattern (`*`, `?`, escapes; no brackets) as a regular expression. */
function patternToRegex(pattern: string, greedy: boolean, anchored: boolean, offset: number, flags = ''): RegExp {
  const chars = Array.from(pattern);
  let source = anchored ? '^' : '';
  for (let index = 0; index < chars.length; index += 1) {
    const char = chars[index] ?? '';
    if (char === '*') {
      source += greedy ? '.*' : '.*?';
    } else if (char === '?') {
      source += '.';
    } else if (char === '\\') {
      const following = chars[index + 1];
      // "\}" and "\/" only protect the ${...} syntax; they are not part of the pattern.
      if (following === '}' || following === '/') continue;
      if (following !== '*' && following !== '?' && following !== '\\') {
        throw new ShellWordError(`invalid escape '\\${following ?? ''}' in pattern ${pattern}`, offset);
      }
      source += '\\' + following;
      index += 1;
    } else if (REGEX_SPECIAL.has(char)) {
      source += '\\' + char;
    } else {
      source += char.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&');
    }
  }
  try {
    return new RegExp(source, flags);
  } catch {
    throw new ShellWordError(`invalid pattern (${pattern}) in substitution`, offset);
  }
}

function trimPrefix(pattern: string, value: string, greedy: boolean, offset: number): string {
  checkMatchCost(pattern, value, true, offset);
  const match = patternToRegex(pattern, greedy, true, offset).exec(value);
  return match === null ? value : value.slice(match.index + match[0].length);
}

/** The shortest or longest matching suffix, found as a prefix of the reversed value. */
function trimSuffix(pattern: string, value: string, greedy: boolean, offset: number): string {
  const reversed = trimPrefix(reversePattern(pattern), Array.from(value).reverse().join(''), greedy, offset);
  return Array.from(reversed).reverse().join('');
}

/** Reverses a pattern while keeping each escape in front of the character it escapes. */
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const tokens: string[] = [];
  for (let index = 0; index < chars.length; index += 1) {
    const char = chars[index] ?? '';
    if (char === '\\' && index + 1 < chars.length) {
      tokens.push(char + (chars[index + 1] ?? ''));
      index += 1;
    } else {
      tokens.push(char);
    }
  }
  return tokens.reverse().join('');
}
