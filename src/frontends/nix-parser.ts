/**
 * A parser for the data subset of the Nix language: attribute sets, lists,
 * strings, numbers, booleans, null and path literals. args.nix files are
 * meant to be plain data, so anything that would need evaluation (variables,
 * functions, `let`, `with`, interpolation, operators) is refused with a
 * LapinError that points at the construct, never evaluated or guessed at.
 *
 * Lexing follows Nix's own lexer (longest match, the same token shapes and
 * string escapes); indented strings are unindented with Nix's algorithm.
 */
import { LapinError, type SourcePosition } from '../errors.js';
import { MAX_NESTING } from './limits.js';

export interface NixAttribute {
  name: string;
  /** Where the attribute's name was first written. */
  at: SourcePosition;
  value: NixValue;
}

export interface NixSet {
  kind: 'set';
  /** In the order first written. */
  attrs: Map<string, NixAttribute>;
  at: SourcePosition;
}

export interface NixList {
  kind: 'list';
  items: NixValue[];
  at: SourcePosition;
}

export interface NixString {
  kind: 'string';
  value: string;
  at: SourcePosition;
}

export interface NixInt {
  kind: 'int';
  /** Nix integers are signed 64-bit. */
  value: bigint;
  at: SourcePosition;
}

export interface NixFloat {
  kind: 'float';
  value: number;
  at: SourcePosition;
}

export interface NixBool {
  kind: 'bool';
  value: boolean;
  at: SourcePosition;
}

export interface NixNull {
  kind: 'null';
  at: SourcePosition;
}

/** A path literal (`./foo`, `/abs`, `~/x`), kept as written; never resolved. */
export interface NixPath {
  kind: 'path';
  text: string;
  at: SourcePosition;
}

export type NixValue = NixSet | NixList | NixString | NixInt | NixFloat | NixBool | NixNull | NixPath;

/** "a string", "an attribute set", ... for messages. */
export function describeNixKind(value: NixValue): string {
  switch (value.kind) {
    case 'set':
      return 'an attribute set';
    case 'list':
      return 'a list';
    case 'string':
      return 'a string';
    case 'int':
      return 'an integer';
    case 'float':
      return 'a float';
    case 'bool':
      return 'a boolean';
    case 'null':
      return 'null';
    case 'path':
      return 'a path';
  }
}

/** Parse `text` (the contents of `file`) as a Nix data value. */
/**
 * `inputs` are what the caller passes to a file that is a function of them,
 * `{ TARGETARCH, ... }: { ... }`: as nixpkgs' callPackage does, the function
 * gets the inputs it names, and an input it names but is not given takes its
 * `? default`. The names are then variables in the body: `"kernel-${TARGETARCH}"`
 * or `TARGETARCH` alone. Nothing else is evaluated.
 */
export function parseNixData(text: string, file: string, inputs: Readonly<Record<string, string>> = {}): NixValue {
  return new NixDataParser(text, file, inputs).parseFile();
}

const MAX_INT = 9223372036854775807n;
/** Deeper nesting than this is refused rather than risking the JS stack. */
const MAX_DEPTH = MAX_NESTING;

const KEYWORDS = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit', 'or']);

const OPERATOR_NAMES: Record<string, string> = {
  '++': 'list concatenation',
  '//': 'attribute set update',
  '+': 'addition or string concatenation',
  '-': 'subtraction',
  '*': 'multiplication',
  '/': 'division',
  '==': 'equality',
  '!=': 'inequality',
  '<': 'comparison',
  '>': 'comparison',
  '<=': 'comparison',
  '>=': 'comparison',
  '&&': 'logical and',
  '||': 'logical or',
  '->': 'logical implication',
  '!': 'logical not',
  '?': 'attribute test',
};

const PLAIN_DATA = 'args.nix must be plain data';

type TokenKind =
  | 'id'
  | 'int'
  | 'float'
  | 'path'
  | 'hpath'
  | 'spath'
  | 'uri'
  | 'string-open'
  | 'ind-string-open'
  | 'punct'
  | 'char'
  | 'eof';

interface Token {
  kind: TokenKind;
  text: string;
  start: number;
  end: number;
}

type ValueContext = 'file' | 'attribute' | 'list' | 'parens';

interface AttrPathSegment {
  name: string;
  start: number;
  at: SourcePosition;
}

interface IndStringPart {
  text: string;
  /** Literal source text takes part in indentation stripping; escapes do not. */
  literal: boolean;
}

// Token shapes from Nix's lexer.
const PATH_CHARS = 'a-zA-Z0-9._\\-+';
const PATTERNS: ReadonlyArray<[TokenKind, RegExp]> = [
  ['id', /[a-zA-Z_][a-zA-Z0-9_'-]*/y],
  ['int', /[0-9]+/y],
  ['float', /(?:[1-9][0-9]*\.[0-9]*|0?\.[0-9]+)(?:[Ee][+-]?[0-9]+)?/y],
  ['path', new RegExp(`[${PATH_CHARS}]*(?:/[${PATH_CHARS}]+)+`, 'y')],
  ['hpath', new RegExp(`~(?:/[${PATH_CHARS}]+)+`, 'y')],
  ['spath', new RegExp(`<[${PATH_CHARS}]+(?:/[${PATH_CHARS}]+)*>`, 'y')],
  ['uri', /[a-zA-Z][a-zA-Z0-9+\-.]*:[a-zA-Z0-9%/?:@&=+$,\-_.!~*']+/y],
  ['punct', /\.\.\.|\$\{|==|!=|&&|\|\||->|\/\/|\+\+|<=|>=|[{}[\]();=.,?:@+\-*/<>!]/y],
];
/** A path prefix ending in "/" (used for `./${x}` and trailing-slash errors). */
const PATH_PREFIX = new RegExp(`~?[${PATH_CHARS}]*(?:/[${PATH_CHARS}]+)*/`, 'y');

/** PATH_CHARS, and the characters of a URI's scheme ([a-zA-Z0-9+\-.]) and of the rest of it. */
const isPathChar = (code: number): boolean => isAlnum(code) || code === 0x2e || code === 0x5f || code === 0x2d || code === 0x2b;
const isSchemeChar = (code: number): boolean => isAlnum(code) || code === 0x2b || code === 0x2d || code === 0x2e;
const isUriChar = (code: number): boolean => isAlnum(code) || "%/?:@&=+$,-_.!~*'".includes(String.fromCharCode(code));
function isAlnum(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);
}
const isLetter = (code: number): boolean => (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);

/**
 * Where the run of characters `inRun` takes that starts at an offset ends,
 * remembered for the run: every token inside one long run ("a.b.c.d...",
 * 1.2.3...) made the path and URI patterns scan the rest of it, so 4000
 * attribute path segments took 2 s and a 1 MiB file hours.
 */
class RunEnds {
  private from = -1;
  private to = -1;
  constructor(
    private readonly text: string,
    private readonly inRun: (code: number) => boolean,
  ) {}

  end(start: number): number {
    if (this.from >= 0 && start >= this.from && start <= this.to) return this.to;
    let end = start;
    while (end < this.text.length && this.inRun(this.text.charCodeAt(end))) end++;
    this.from = start;
    this.to = end;
    return end;
  }
}

function matchAt(pattern: RegExp, text: string, offset: number): string | undefined {
  pattern.lastIndex = offset;
  const match = pattern.exec(text);
  return match ? match[0] : undefined;
}

function isValueStart(token: Token): boolean {
  switch (token.kind) {
    case 'id':
    case 'int':
    case 'float':
    case 'path':
    case 'hpath':
    case 'spath':
    case 'uri':
    case 'string-open':
    case 'ind-string-open':
      return true;
    case 'punct':
      return token.text === '{' || token.text === '[' || token.text === '(';
    default:
      return false;
  }
}

function showChar(text: string): string {
  const code = text.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f || (code >= 0x80 && code <= 0xa0) || code === 0xfeff) {
    return `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }
  return `'${text}'`;
}

function showToken(token: Token): string {
  switch (token.kind) {
    case 'eof':
      return 'end of file';
    case 'char':
      return `character ${showChar(token.text)}`;
    case 'string-open':
      return 'a string';
    case 'ind-string-open':
      return "an indented string ''...''";
    default:
      return `'${token.text}'`;
  }
}

function showAttrPath(segments: readonly AttrPathSegment[]): string {
  const shown = segments.map((segment) => (/^[a-zA-Z_][a-zA-Z0-9_'-]*$/.test(segment.name) ? segment.name : JSON.stringify(segment.name))).join('.');
  // A path of 100,000 segments would be quoted whole in one error line.
  return shown.length > 200 ? `${shown.slice(0, 200)}...` : shown;
}

/** Nix's unindentation of `''...''` strings (see stripIndentation in Nix's parser). */
function stripIndentation(parts: readonly IndStringPart[]): string {
  let atStartOfLine = true;
  let minIndent = Number.POSITIVE_INFINITY;
  let curIndent = 0;
  for (const part of parts) {
    if (!part.literal) {
      if (atStartOfLine) {
        atStartOfLine = false;
        minIndent = Math.min(minIndent, curIndent);
      }
      continue;
    }
    for (const ch of part.text) {
      if (atStartOfLine) {
        if (ch === ' ') curIndent++;
        else if (ch === '\n') curIndent = 0;
        else {
          atStartOfLine = false;
          minIndent = Math.min(minIndent, curIndent);
        }
      } else if (ch === '\n') {
        atStartOfLine = true;
        curIndent = 0;
      }
    }
  }

  atStartOfLine = true;
  let curDropped = 0;
  let result = '';
  parts.forEach((part, index) => {
    let stripped = '';
    for (const ch of part.text) {
      if (atStartOfLine) {
        if (ch === ' ') {
          if (curDropped++ >= minIndent) stripped += ch;
        } else if (ch === '\n') {
          curDropped = 0;
          stripped += ch;
        } else {
          atStartOfLine = false;
          curDropped = 0;
          stripped += ch;
        }
      } else {
        stripped += ch;
        if (ch === '\n') atStartOfLine = true;
      }
    }
    // A last line of only spaces is dropped (the closing '' is usually indented).
    if (index === parts.length - 1) {
      const lastNewline = stripped.lastIndexOf('\n');
      if (lastNewline !== -1 && /^ *$/.test(stripped.slice(lastNewline + 1))) {
        stripped = stripped.slice(0, lastNewline + 1);
      }
    }
    result += stripped;
  });
  return result;
}

function unescapeChar(ch: string): string {
  if (ch === 'n') return '\n';
  if (ch === 'r') return '\r';
  if (ch === 't') return '\t';
  return ch;
}

class NixDataParser {
  private offset = 0;
  private depth = 0;
  private readonly lineStarts: number[] = [0];
  private lastColumn: { offset: number; column: number } | undefined;
  /** The function's arguments, once a `{ a, b ? x, ... }:` header is read. */
  private readonly scope = new Map<string, NixValue>();
  private isFunction = false;
  private readonly pathRuns: RunEnds;
  private readonly schemeRuns: RunEnds;

  constructor(
    private readonly text: string,
    private readonly file: string,
    private readonly inputs: Readonly<Record<string, string>> = {},
  ) {
    this.pathRuns = new RunEnds(text, isPathChar);
    this.schemeRuns = new RunEnds(text, isSchemeChar);
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === '\n' || (ch === '\r' && text[i + 1] !== '\n')) this.lineStarts.push(i + 1);
    }
  }

  parseFile(): NixValue {
    this.parseFormals();
    const value = this.parseValue('file');
    const next = this.peek();
    if (next.kind !== 'eof') this.failAfterValue(value, next, 'the end of the file', 'file');
    return value;
  }

  // ---- a file that is a function of the platform ----

  /** Whether the file starts with a formals header `{ a, b ? x, ... }:`, read without consuming. */
  private startsWithFormals(): boolean {
    const open = this.peek();
    if (!(open.kind === 'punct' && open.text === '{')) return false;
    const first = this.peekAfter(open);
    if (first.kind === 'punct' && first.text === '...') return true;
    if (first.kind === 'punct' && first.text === '}') {
      const colon = this.peekAfter(first);
      return colon.kind === 'punct' && colon.text === ':';
    }
    if (first.kind !== 'id') return false;
    const after = this.peekAfter(first);
    if (after.kind === 'punct' && (after.text === ',' || after.text === '?')) return true;
    if (!(after.kind === 'punct' && after.text === '}')) return false;
    const colon = this.peekAfter(after);
    return colon.kind === 'punct' && colon.text === ':';
  }

  /** Reads `{ a, b ? "x", ... }:` and binds each name to its input or its default. */
  private parseFormals(): void {
    if (!this.startsWithFormals()) return;
    this.take();
    const seen = new Set<string>();
    while (true) {
      const token = this.take();
      if (token.kind === 'punct' && token.text === '}') break;
      if (token.kind === 'punct' && token.text === '...') {
        const close = this.take();
        if (!(close.kind === 'punct' && close.text === '}')) this.fail(`unexpected ${showToken(close)}, expected '}' after '...'`, close.start);
        break;
      }
      if (token.kind !== 'id' || KEYWORDS.has(token.text)) this.fail(`unexpected ${showToken(token)}, expected an argument name`, token.start);
      if (seen.has(token.text)) this.fail(`duplicate function argument '${token.text}'`, token.start);
      seen.add(token.text);
      let value: NixValue | undefined;
      const next = this.peek();
      if (next.kind === 'punct' && next.text === '?') {
        this.take();
        const fallback = this.parseValue('attribute');
        value = fallback;
      }
      if (Object.hasOwn(this.inputs, token.text)) value = { kind: 'string', value: this.inputs[token.text] as string, at: this.position(token.start) };
      if (value === undefined) {
        const given = Object.keys(this.inputs);
        this.fail(`args.nix is a function of '${token.text}', which lapin does not pass`, token.start, `lapin passes ${given.length === 0 ? 'nothing' : given.join(', ')}; give '${token.text}' a default: ${token.text} ? "value"`);
      }
      this.scope.set(token.text, value);
      const separator = this.take();
      if (separator.kind === 'punct' && separator.text === ',') continue;
      if (separator.kind === 'punct' && separator.text === '}') break;
      this.fail(`unexpected ${showToken(separator)}, expected ',' or '}' in the function's arguments`, separator.start);
    }
    const colon = this.take();
    if (!(colon.kind === 'punct' && colon.text === ':')) this.fail(`unexpected ${showToken(colon)}, expected ':' after the function's arguments`, colon.start);
    this.isFunction = true;
  }

  /** `${name}` in a string at `offset`: the argument's string value, and where the interpolation ends. */
  private interpolate(offset: number, literalHint: string): { value: string; end: number } {
    const saved = this.offset;
    this.offset = offset + 2;
    const name = this.take();
    const close = this.take();
    this.offset = saved;
    const known = name.kind === 'id' && (this.scope.has(name.text) || Object.hasOwn(this.inputs, name.text));
    if (!known || !(close.kind === 'punct' && close.text === '}')) {
      this.unsupported('string interpolation ("${...}")', offset, 'write the text itself; for a literal "${" write ' + literalHint);
    }
    const value = this.variable(name);
    if (value.kind !== 'string') this.fail(`cannot coerce ${describeNixKind(value)} '${name.text}' to a string`, name.start, `give '${name.text}' a string default`);
    return { value: value.value, end: close.end };
  }

  /** A variable: a function argument, or the error Nix gives. */
  private variable(token: Token): NixValue {
    const value = this.scope.get(token.text);
    if (value !== undefined) return value;
    if (Object.hasOwn(this.inputs, token.text) && !this.isFunction) {
      this.fail(`undefined variable '${token.text}'`, token.start, `make args.nix a function of it: { ${token.text}, ... }: { ... }`);
    }
    if (Object.hasOwn(this.inputs, token.text)) this.fail(`undefined variable '${token.text}'`, token.start, `add it to the function's arguments: { ${token.text}, ... }:`);
    return this.unsupported(`variable reference ('${token.text}')`, token.start, `write the value itself, e.g. the string "${token.text}"`);
  }

  // ---- positions and errors ----

  position(offset: number): SourcePosition {
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if ((this.lineStarts[mid] ?? 0) <= offset) low = mid;
      else high = mid - 1;
    }
    const lineStart = this.lineStarts[low] ?? 0;
    // Positions are mostly asked for in increasing order; resume from the last one.
    const resume = this.lastColumn !== undefined && this.lastColumn.offset >= lineStart && this.lastColumn.offset <= offset;
    let column = resume && this.lastColumn ? this.lastColumn.column : 1;
    for (let i = resume && this.lastColumn ? this.lastColumn.offset : lineStart; i < offset; i++) {
      const code = this.text.charCodeAt(i);
      const continuesPair = code >= 0xdc00 && code <= 0xdfff && i > lineStart && this.isHighSurrogate(i - 1);
      if (!continuesPair) column++;
    }
    this.lastColumn = { offset, column };
    return { file: this.file, line: low + 1, column };
  }

  private isHighSurrogate(index: number): boolean {
    const code = this.text.charCodeAt(index);
    return code >= 0xd800 && code <= 0xdbff;
  }

  private fail(message: string, offset: number, hint?: string): never {
    throw new LapinError(message, { at: this.position(offset), ...(hint === undefined ? {} : { hint }) });
  }

  private unsupported(construct: string, offset: number, hint: string): never {
    this.fail(`unsupported Nix construct: ${construct}; ${PLAIN_DATA}`, offset, hint);
  }

  // ---- lexing ----

  /** Skip whitespace and comments from the current offset. */
  private skipTrivia(): void {
    const text = this.text;
    // Editors on some systems start a UTF-8 file with a byte order mark.
    if (this.offset === 0 && text.charCodeAt(0) === 0xfeff) this.offset = 1;
    while (this.offset < text.length) {
      const ch = text[this.offset];
      if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
        this.offset++;
      } else if (ch === '#') {
        while (this.offset < text.length && text[this.offset] !== '\n' && text[this.offset] !== '\r') this.offset++;
      } else if (ch === '/' && text[this.offset + 1] === '*') {
        const close = text.indexOf('*/', this.offset + 2);
        if (close === -1) this.fail('unterminated comment: "/*" has no matching "*/"', this.offset);
        this.offset = close + 2;
      } else {
        return;
      }
    }
  }

  /** The next token after trivia, without consuming it. */
  private peek(): Token {
    this.skipTrivia();
    return this.lexAt(this.offset);
  }

  /** The next token after trivia, consumed. */
  private take(): Token {
    const token = this.peek();
    this.offset = token.end;
    return token;
  }

  /** The token following `token` (lookahead without consuming anything). */
  private peekAfter(token: Token): Token {
    const saved = this.offset;
    this.offset = token.end;
    try {
      return this.peek();
    } finally {
      this.offset = saved;
    }
  }

  private lexAt(start: number): Token {
    const text = this.text;
    if (start >= text.length) return { kind: 'eof', text: '', start, end: start };
    if (text[start] === '"') return { kind: 'string-open', text: '"', start, end: start + 1 };
    if (text.startsWith("''", start)) return { kind: 'ind-string-open', text: "''", start, end: start + 2 };

    // A path has a "/" and a path character right after its run of path characters, a URI a ":" and a
    // URI character after its scheme; where neither is there, their patterns are not tried (each would scan the run).
    const pathEnd = this.pathRuns.end(start);
    const canBePath = text[pathEnd] === '/' && isPathChar(text.charCodeAt(pathEnd + 1));
    const schemeEnd = this.schemeRuns.end(start);
    const canBeUri = isLetter(text.charCodeAt(start)) && text[schemeEnd] === ':' && isUriChar(text.charCodeAt(schemeEnd + 1));
    let best: Token | undefined;
    for (const [kind, pattern] of PATTERNS) {
      if ((kind === 'path' && !canBePath) || (kind === 'uri' && !canBeUri)) continue;
      const match = matchAt(pattern, text, start);
      // Longest match wins; on a tie the earlier pattern does, as in flex.
      if (match !== undefined && match.length > 0 && (best === undefined || match.length > best.text.length)) {
        best = { kind, text: match, start, end: start + match.length };
      }
    }

    if (best !== undefined && (best.kind === 'int' || best.kind === 'float') && /[a-zA-Z_]/.test(text[best.end] ?? '')) {
      const word = matchAt(/[a-zA-Z0-9_.+-]*/y, text, start) ?? best.text;
      this.fail(`invalid number '${word}'`, start, 'write an integer like 42 or a float like 4.2 or 4.2e1');
    }
    if (best !== undefined && (best.kind === 'path' || best.kind === 'hpath')) {
      if (text.startsWith('${', best.end)) {
        this.unsupported('path interpolation ("./foo${...}")', start, 'write the path without "${...}"');
      }
      if (text[best.end] === '/') {
        this.fail(`path '${best.text}/' has a trailing slash`, start, 'remove the trailing "/"');
      }
    } else {
      // Text like "./" or "foo/" that stops at a slash no full token covers.
      // Not a path here, so no path character follows the "/" after the run: the prefix ends at that "/".
      const prefix = text[start] === '~' ? matchAt(PATH_PREFIX, text, start) : text[pathEnd] === '/' ? text.slice(start, pathEnd + 1) : undefined;
      if (prefix !== undefined && (best === undefined || prefix.length >= best.text.length)) {
        const after = prefix.length + start;
        if (text.startsWith('${', after)) {
          this.unsupported('path interpolation ("./${...}")', start, 'write the path without "${...}"');
        }
        if (/^(?:\.\.?|~)\/$/.test(prefix) && text[after] !== '*' && text[after] !== '/') {
          this.fail(`path '${prefix}' has a trailing slash`, start, 'remove the trailing "/", or name a file after it');
        }
      }
    }
    if (best !== undefined) return best;

    const codePoint = text.codePointAt(start) ?? 0;
    const charText = String.fromCodePoint(codePoint);
    return { kind: 'char', text: charText, start, end: start + charText.length };
  }

  // ---- values ----

  private parseValue(context: ValueContext): NixValue {
    const token = this.peek();
    if (token.kind === 'punct' && token.text === '-') {
      if (context === 'list') {
        this.fail('a negative number in a list must be written in parentheses', token.start, 'write [ (-1) ] instead of [ -1 ]; in Nix a list item cannot start with "-"');
      }
      const at = this.position(token.start);
      this.take();
      const operand = this.peek();
      if (operand.kind !== 'int' && operand.kind !== 'float') {
        this.unsupported('negation of a non-number ("-x")', token.start, 'only number literals may be negated, e.g. -1 or -2.5');
      }
      const literal = this.parsePrimary(context);
      if (literal.kind === 'int') return { kind: 'int', value: -literal.value, at };
      if (literal.kind === 'float') return { kind: 'float', value: -literal.value, at };
    }
    return this.parsePrimary(context);
  }

  private parsePrimary(context: ValueContext): NixValue {
    const token = this.peek();
    const at = this.position(token.start);
    switch (token.kind) {
      case 'eof':
        return this.fail('unexpected end of file, expected a value', token.start);
      case 'string-open':
        return { kind: 'string', value: this.readString(), at };
      case 'ind-string-open':
        return { kind: 'string', value: this.readIndString(), at };
      case 'int': {
        this.take();
        const value = BigInt(token.text);
        if (value > MAX_INT) this.fail(`invalid integer '${token.text}': it does not fit in 64 bits`, token.start);
        return { kind: 'int', value, at };
      }
      case 'float': {
        this.take();
        const value = Number(token.text);
        if (!Number.isFinite(value)) this.fail(`invalid float '${token.text}'`, token.start);
        return { kind: 'float', value, at };
      }
      case 'path':
      case 'hpath':
        this.take();
        return { kind: 'path', text: token.text, at };
      case 'spath':
        return this.unsupported(`search path (${token.text})`, token.start, 'args.nix cannot refer to channels or NIX_PATH; write the value itself');
      case 'uri':
        return this.unsupported(`URL literal (${token.text})`, token.start, `quote it: "${token.text}"`);
      case 'id':
        return this.parseIdentifierValue(token, at);
      case 'punct':
        return this.parsePunctValue(token, context);
      case 'char':
        return this.fail(`unexpected ${showToken(token)}, expected a value`, token.start);
    }
  }

  private parseIdentifierValue(token: Token, at: SourcePosition): NixValue {
    switch (token.text) {
      case 'true':
      case 'false':
        this.take();
        return { kind: 'bool', value: token.text === 'true', at };
      case 'null':
        this.take();
        return { kind: 'null', at };
      case 'let':
        return this.unsupported('"let ... in"', token.start, 'write the values out in place');
      case 'with':
        return this.unsupported('"with"', token.start, 'write the values out in place');
      case 'if':
        return this.unsupported('"if ... then ... else"', token.start, 'write the chosen value itself');
      case 'assert':
        return this.unsupported('"assert"', token.start, 'remove the assertion');
      case 'rec':
        return this.unsupported('recursive attribute set ("rec { ... }")', token.start, 'remove "rec" and write the values out in place');
      case 'inherit':
        return this.unsupported('"inherit"', token.start, 'write name = value; instead');
      case 'import':
        return this.unsupported('"import"', token.start, 'put the values in args.nix itself');
    }
    if (KEYWORDS.has(token.text)) this.fail(`unexpected keyword '${token.text}', expected a value`, token.start);
    const next = this.peekAfter(token);
    if (next.kind === 'punct' && (next.text === ':' || next.text === '@')) {
      this.unsupported(`function definition ("${token.text}${next.text === ':' ? ': ...' : '@{ ... }: ...'}")`, token.start, 'args.nix must be an attribute set, not a function');
    }
    const value = this.variable(token);
    this.take();
    return { ...value, at };
  }

  private parsePunctValue(token: Token, context: ValueContext): NixValue {
    switch (token.text) {
      case '{':
        return this.parseSet();
      case '[':
        return this.parseList();
      case '(': {
        this.take();
        this.enter(token);
        const inner = this.parseValue('parens');
        const close = this.peek();
        if (!(close.kind === 'punct' && close.text === ')')) this.failAfterValue(inner, close, "')'", 'parens');
        this.take();
        this.depth--;
        return inner;
      }
      case '${':
        return this.unsupported('interpolation ("${...}")', token.start, 'write the value itself');
      case '...':
        return this.unsupported('function definition ("{ ... }: ...")', token.start, 'args.nix must be an attribute set, not a function');
    }
    const operator = OPERATOR_NAMES[token.text];
    if (operator !== undefined) {
      this.unsupported(`operator '${token.text}' (${operator})`, token.start, 'write the resulting value itself');
    }
    const expected = context === 'list' ? "a value or ']'" : 'a value';
    return this.fail(`unexpected ${showToken(token)}, expected ${expected}`, token.start);
  }

  /** Diagnose what follows a complete value where `expected` should be. */
  private failAfterValue(value: NixValue, token: Token, expected: string, context: ValueContext | 'set'): never {
    const valueStart = this.offsetOf(value.at);
    if (token.kind === 'eof') this.fail(`unexpected end of file, expected ${expected}`, token.start);
    if (token.kind === 'punct') {
      if (token.text === ':' || token.text === '@') {
        this.unsupported('function definition ("{ ... }: ...")', valueStart, 'args.nix must be an attribute set, not a function');
      }
      if (token.text === '.') {
        this.unsupported('attribute selection ("x.y")', token.start, 'write the selected value itself');
      }
      const operator = OPERATOR_NAMES[token.text];
      if (operator !== undefined) {
        this.unsupported(`operator '${token.text}' (${operator})`, token.start, 'write the resulting value itself');
      }
    }
    if (token.kind === 'id' && token.text === 'or') {
      this.unsupported('"or" default', token.start, 'write the value itself');
    }
    if (isValueStart(token)) {
      if (context === 'set') {
        // Far more often a forgotten ';' than an intended function call.
        this.fail(`unexpected ${showToken(token)}, expected ${expected}`, token.start, "end each attribute with ';'; a value followed by another value would be a function call, which args.nix cannot use");
      }
      this.unsupported('function application ("f x")', valueStart, 'write the resulting value itself');
    }
    const hint = context === 'set' && token.kind === 'punct' && token.text === ',' ? "Nix attributes end with ';', not ','" : undefined;
    this.fail(`unexpected ${showToken(token)}, expected ${expected}`, token.start, hint);
  }

  /** Offset of a position this parser produced (for pointing back at a value). */
  private offsetOf(at: SourcePosition): number {
    const lineStart = this.lineStarts[at.line - 1] ?? 0;
    let offset = lineStart;
    for (let column = 1; column < at.column && offset < this.text.length; column++) {
      offset += this.isHighSurrogate(offset) ? 2 : 1;
    }
    return offset;
  }

  private enter(token: Token): void {
    if (++this.depth > MAX_DEPTH) this.fail(`values nested more than ${MAX_DEPTH} deep`, token.start);
  }

  private parseList(): NixList {
    const open = this.take();
    this.enter(open);
    const list: NixList = { kind: 'list', items: [], at: this.position(open.start) };
    const items = list.items;
    while (true) {
      const token = this.peek();
      if (token.kind === 'punct' && token.text === ']') {
        this.take();
        break;
      }
      if (token.kind === 'eof') {
        const opened = this.position(open.start);
        this.fail(`unexpected end of file: the list opened at ${opened.line}:${opened.column} is not closed with ']'`, token.start);
      }
      items.push(this.parseValue('list'));
      const after = this.peek();
      // An operator or selection right after an item is not a separate item.
      if (after.kind === 'punct' && (after.text === '.' || after.text === ':' || after.text === '@' || (OPERATOR_NAMES[after.text] !== undefined && after.text !== '-'))) {
        const last = items[items.length - 1];
        if (last !== undefined) this.failAfterValue(last, after, "a value or ']'", 'list');
      }
    }
    this.depth--;
    return list;
  }

  private parseSet(): NixSet {
    const open = this.take();
    this.enter(open);
    const set: NixSet = { kind: 'set', attrs: new Map(), at: this.position(open.start) };
    const functionHint = 'args.nix must be an attribute set, not a function';
    while (true) {
      const token = this.peek();
      if (token.kind === 'punct' && token.text === '}') {
        this.take();
        break;
      }
      if (token.kind === 'eof') {
        const opened = this.position(open.start);
        this.fail(`unexpected end of file: the attribute set opened at ${opened.line}:${opened.column} is not closed with '}'`, token.start);
      }
      if (token.kind === 'punct' && token.text === '...') {
        this.unsupported('function definition ("{ ... }: ...")', open.start, functionHint);
      }
      if (token.kind === 'id' && token.text === 'inherit') {
        return this.unsupported('"inherit"', token.start, 'write name = value; instead');
      }
      const path = this.parseAttrPath();
      const equals = this.peek();
      if (!(equals.kind === 'punct' && equals.text === '=')) {
        if (equals.kind === 'punct' && (equals.text === ',' || equals.text === '?')) {
          this.unsupported('function definition ("{ a, b }: ...")', open.start, functionHint);
        }
        if (equals.kind === 'punct' && equals.text === '}') {
          const after = this.peekAfter(equals);
          if (after.kind === 'punct' && (after.text === ':' || after.text === '@')) {
            this.unsupported('function definition ("{ a }: ...")', open.start, functionHint);
          }
        }
        const hint = equals.kind === 'punct' && equals.text === ':' ? 'Nix attributes are written name = value;' : undefined;
        this.fail(`unexpected ${showToken(equals)}, expected '=' after '${showAttrPath(path)}'`, equals.start, hint);
      }
      this.take();
      const value = this.parseValue('attribute');
      const semicolon = this.peek();
      if (!(semicolon.kind === 'punct' && semicolon.text === ';')) {
        this.failAfterValue(value, semicolon, `';' after the value of '${showAttrPath(path)}'`, 'set');
      }
      this.take();
      this.addAttribute(set, path, value);
    }
    this.depth--;
    return set;
  }

  private parseAttrPath(): AttrPathSegment[] {
    const segments: AttrPathSegment[] = [];
    while (true) {
      const token = this.peek();
      if (token.kind === 'id') {
        if (KEYWORDS.has(token.text) && token.text !== 'or') {
          this.fail(`'${token.text}' is a Nix keyword and cannot be an attribute name here`, token.start, `quote it: "${token.text}"`);
        }
        this.take();
        segments.push({ name: token.text, start: token.start, at: this.position(token.start) });
      } else if (token.kind === 'string-open') {
        const at = this.position(token.start);
        segments.push({ name: this.readString(), start: token.start, at });
      } else if (token.kind === 'punct' && token.text === '${') {
        this.unsupported('dynamic attribute name ("${...}")', token.start, 'write the attribute name itself');
      } else {
        const expected = segments.length === 0 ? "an attribute name or '}'" : 'an attribute name';
        this.fail(`unexpected ${showToken(token)}, expected ${expected}`, token.start);
      }
      const dot = this.peek();
      if (!(dot.kind === 'punct' && dot.text === '.')) return segments;
      this.take();
    }
  }

  /** Add `path = value` to `set` the way Nix does: dotted paths nest, literal sets merge. */
  private addAttribute(set: NixSet, path: readonly AttrPathSegment[], value: NixValue): void {
    let target = set;
    for (let i = 0; i < path.length - 1; i++) {
      const segment = path[i] as AttrPathSegment;
      const existing = target.attrs.get(segment.name);
      if (existing === undefined) {
        const nested: NixSet = { kind: 'set', attrs: new Map(), at: segment.at };
        target.attrs.set(segment.name, { name: segment.name, at: nested.at, value: nested });
        target = nested;
      } else if (existing.value.kind === 'set') {
        target = existing.value;
      } else {
        this.failDuplicate(path, path[0] as AttrPathSegment, existing.at);
      }
    }
    const last = path[path.length - 1] as AttrPathSegment;
    const existing = target.attrs.get(last.name);
    if (existing === undefined) {
      target.attrs.set(last.name, { name: last.name, at: last.at, value });
      return;
    }
    if (existing.value.kind === 'set' && value.kind === 'set') {
      // `a.b = 1; a = { c = 2; };` is one set in Nix; names may not repeat.
      for (const [name, attribute] of value.attrs) {
        const clash = existing.value.attrs.get(name);
        if (clash !== undefined) {
          const segment = { name, start: this.offsetOf(attribute.at), at: attribute.at };
          this.failDuplicate([...path, segment], segment, clash.at);
        }
        existing.value.attrs.set(name, attribute);
      }
      return;
    }
    this.failDuplicate(path, path[0] as AttrPathSegment, existing.at);
  }

  private failDuplicate(path: readonly AttrPathSegment[], where: AttrPathSegment, previous: SourcePosition): never {
    this.fail(
      `attribute '${showAttrPath(path)}' already defined at ${previous.file}:${previous.line}:${previous.column}`,
      where.start,
      'each attribute may be given once; remove one of the definitions',
    );
  }

  // ---- strings ----

  /** Read a "..." string starting at the current token; returns its value. */
  private readString(): string {
    const open = this.take();
    const text = this.text;
    let i = open.end;
    let value = '';
    while (true) {
      if (i >= text.length) this.fail('unterminated string: missing closing \'"\'', open.start);
      const ch = text[i] as string;
      if (ch === '"') {
        this.offset = i + 1;
        return value;
      }
      if (ch === '\\') {
        if (i + 1 >= text.length) this.fail('unterminated string: missing closing \'"\'', open.start);
        const escaped = String.fromCodePoint(text.codePointAt(i + 1) ?? 0);
        value += unescapeChar(escaped);
        i += 1 + escaped.length;
      } else if (ch === '$') {
        const next = text[i + 1];
        if (next === '{') {
          const interpolated = this.interpolate(i, '"\\${"');
          value += interpolated.value;
          i = interpolated.end;
          continue;
        }
        // "$$" is literal and keeps a following "{" literal too.
        if (next === '$') {
          value += '$$';
          i += 2;
        } else {
          value += '$';
          i += 1;
        }
      } else if (ch === '\r') {
        // Nix reads CR and CR LF inside strings as LF.
        value += '\n';
        i += text[i + 1] === '\n' ? 2 : 1;
      } else {
        value += ch;
        i += 1;
      }
    }
  }

  /** Read a ''...'' string starting at the current token; returns its unindented value. */
  private readIndString(): string {
    const open = this.take();
    const text = this.text;
    let i = open.end;
    // Spaces and a newline right after the opening '' are not part of the string.
    let afterSpaces = i;
    while (text[afterSpaces] === ' ') afterSpaces++;
    if (text[afterSpaces] === '\n') i = afterSpaces + 1;
    else if (text.startsWith('\r\n', afterSpaces)) i = afterSpaces + 2;
    const parts: IndStringPart[] = [];
    const unterminated = (): never => this.fail("unterminated indented string: missing closing ''", open.start);
    while (true) {
      if (i >= text.length) unterminated();
      // Longest run of plain text, as Nix's lexer matches it.
      let end = i;
      while (end < text.length) {
        const ch = text[end];
        const next = text[end + 1];
        if (ch !== '$' && ch !== "'") end++;
        else if (ch === '$' && next !== undefined && next !== '{' && next !== "'") end += 2;
        else if (ch === "'" && next !== undefined && next !== "'" && next !== '$') end += 2;
        else break;
      }
      if (end > i) {
        parts.push({ text: text.slice(i, end), literal: true });
        i = end;
        continue;
      }
      if (text.startsWith("''$", i)) {
        parts.push({ text: '$', literal: false });
        i += 3;
      } else if (text.startsWith("'''", i)) {
        parts.push({ text: "''", literal: false });
        i += 3;
      } else if (text.startsWith("''\\", i)) {
        if (i + 3 >= text.length) unterminated();
        const escaped = String.fromCodePoint(text.codePointAt(i + 3) ?? 0);
        parts.push({ text: unescapeChar(escaped), literal: false });
        i += 3 + escaped.length;
      } else if (text.startsWith("''", i)) {
        this.offset = i + 2;
        return stripIndentation(parts);
      } else if (text.startsWith('${', i)) {
        const interpolated = this.interpolate(i, "''${ in an indented string");
        parts.push({ text: interpolated.value, literal: false });
        i = interpolated.end;
      } else {
        // A lone "$" or "'" (before "'" / "$" or at the end of input).
        parts.push({ text: text[i] as string, literal: false });
        i += 1;
      }
    }
  }
}
