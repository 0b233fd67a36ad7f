/**
 * The Containerfile frontend: Dockerfile syntax compiled into a BuildPlan,
 * limited to what packaging pre-built files needs (FROM, COPY/ADD of local
 * files, LABEL, ENV, ARG, CMD, ENTRYPOINT and the other config instructions).
 *
 * dockerfile-ast finds the parser directives, the instructions and the flags
 * of COPY, ADD and FROM. Where it reads a file differently from BuildKit's
 * Dockerfile parser (moby/buildkit frontend/dockerfile/parser and
 * instructions), BuildKit's reading wins, so a file means here what it means
 * to `docker buildx build`; argument words follow BuildKit via shell-words.ts.
 * Anything that would run a command (RUN) or needs a registry is refused with
 * the position of the offending text.
 */
import { Add, Copy, DockerfileParser, From, Keyword, type Dockerfile, type Instruction as SyntaxInstruction } from 'dockerfile-ast';
import { cleanPath } from '../clean-path.js';
import { LapinError, UsageError, type SourcePosition } from '../errors.js';
import { ExecutionNeeded } from '../plan/execution.js';
import { closestName } from '../plan/similar.js';
import { MAX_EXPANDED_TOTAL, MAX_STAGES, checkDefinitionSize, expansionTooLarge, tooDeep } from './limits.js';
import {
  emptyConfig,
  type Architecture,
  type BasePlan,
  type BuildPlan,
  type ConfigPlan,
  type CopyOp,
  type FsOp,
  type InlineFile,
  type Located,
  type PlanWarning,
  type StagePlan,
  type UruncInput,
} from '../plan/types.js';
import { canMountRootfs } from '../plan/storage.js';
import { checkUruncKey } from './urunc-names.js';
import { shortUruncKey } from '../plan/urunc-keys.js';
import { ShellWordError, processHeredoc, processWord, type VariableLookup } from './shell-words.js';
import { BUILD_PLATFORMS_HINT, buildArchitecture } from '../pipeline/platform.js';
import { platformArgs, type PlatformInputs } from './platform-args.js';

const KEYWORDS = new Set<string>(Object.values(Keyword));

/** Parser directives BuildKit knows; any other `# key=value` line ends the directives. */
const DIRECTIVES = new Set(['escape', 'syntax', 'check']);
const DIRECTIVE_LINE = /^#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*$/;
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;
const DEFAULT_SHELL = ['/bin/sh', '-c'];
const MAX_ID = 4294967295;

/** Go's unicode.IsSpace without the line feed, as a regular expression character class body. */
const SPACES = '\\t\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE = new RegExp(`^[\\n${SPACES}]$`);
const LEADING_SPACES = new RegExp(`^[${SPACES}]+`);
/** A flag dockerfile-ast reads as BuildKit does: no quotes or escapes (BuildKit removes them), no spaces, not a lone `--`. */
const PLAIN_FLAG = new RegExp(`^--[^"'\\\\\`\\n${SPACES}]+$`);

/** Go's unicode.IsSpace, which BuildKit uses to trim lines and split words. */
function isSpace(char: string | undefined): boolean {
  return char !== undefined && SPACE.test(char);
}

function isBlank(text: string): boolean {
  return Array.from(text).every((char) => isSpace(char));
}

/** BuildKit's `[\t\v\f\r ]`, which separates an instruction from its arguments and plain words. */
function isWordSeparator(char: string | undefined): boolean {
  return char === ' ' || char === '\t' || char === '\v' || char === '\f' || char === '\r';
}

/** One instruction with its continuation lines joined, and where each piece came from. */
class LogicalLine {
  text = '';
  /** One entry per appended piece: where it starts in `text`, and its source line and first column. */
  private readonly pieces: Array<{ start: number; line: number; column: number }> = [];

  constructor(private readonly file: string) {}

  append(physical: string, line: number, from: number, to: number): void {
    if (to <= from) return;
    this.pieces.push({ start: this.text.length, line, column: from + 1 });
    this.text += physical.slice(from, to);
  }

  /** The piece holding `text[index]` (index < text.length), found by binary search. */
  private piece(index: number): { start: number; line: number; column: number } | undefined {
    let low = 0;
    let high = this.pieces.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if ((this.pieces[middle]?.start ?? 0) <= index) low = middle;
      else high = middle - 1;
    }
    return this.pieces[low];
  }

  /** The source position of `text[index]`; past the end, just after the last character. */
  at(index: number): SourcePosition {
    const clamped = Math.max(0, Math.min(index, this.text.length));
    if (clamped < this.text.length) {
      const piece = this.piece(clamped);
      return { file: this.file, line: piece?.line ?? 1, column: (piece?.column ?? 1) + clamped - (piece?.start ?? 0) };
    }
    if (this.text.length === 0) return { file: this.file, line: 1, column: 1 };
    const last = this.at(this.text.length - 1);
    return { ...last, column: last.column + 1 };
  }

  /** The index in `text` of the character at a 1-based line and column, if it is part of this line. */
  indexOf(line: number, column: number): number | undefined {
    for (const [position, piece] of this.pieces.entries()) {
      const end = this.pieces[position + 1]?.start ?? this.text.length;
      if (piece.line === line && column >= piece.column && column < piece.column + end - piece.start) {
        return piece.start + column - piece.column;
      }
    }
    return undefined;
  }
}

interface RawFlag {
  name: string;
  /** Undefined for `--name` without `=`. */
  value: string | undefined;
  index: number;
}

interface Instruction {
  keyword: string;
  written: string;
  line: LogicalLine;
  at: SourcePosition;
  flags: RawFlag[];
  /** The arguments after the flags. */
  args: string;
  /** Index of `args` in `line.text`. */
  argsStart: number;
  /** The here-documents whose bodies follow the instruction (COPY, ADD, RUN), in order. */
  heredocs: Heredoc[];
}

interface Word {
  text: string;
  /** Index in the instruction's `line.text`. */
  index: number;
  /** Set for JSON array items, whose text differs from the source: errors point at the array. */
  fromJson?: boolean;
}

interface NameValue {
  name: Word;
  value: Word;
}

type FlagKind = 'string' | 'bool';

interface Flag {
  name: string;
  value: string;
  at: SourcePosition;
  index: number;
}

interface Stage {
  index: number;
  name?: string;
  base: BasePlan;
  ops: FsOp[];
  at: SourcePosition;
  config: ConfigPlan;
  urunc: UruncInput;
  env: Map<string, string>;
  args: Map<string, string | undefined>;
  workdir: string;
  shell: string[];
  architecture?: Located<Architecture>;
}

/**
 * Compiles a Containerfile into a BuildPlan. `buildArgs` are `--build-arg`
 * values; they override ARG defaults and may set the predefined platform
 * ARGs (TARGETPLATFORM, TARGETARCH, ...), which otherwise describe
 * `options.platform` and `options.buildPlatform` (platform-args.ts).
 */
export function parseContainerfile(
  text: string,
  file: string,
  buildArgs: Record<string, string> = {},
  options: ContainerfileOptions = {},
): BuildPlan {
  checkDefinitionSize(text, file);
  try {
    return compileContainerfile(text, file, buildArgs, options);
  } catch (error) {
    throw tooDeep(error, file);
  }
}

function compileContainerfile(text: string, file: string, buildArgs: Record<string, string>, options: ContainerfileOptions): BuildPlan {
  const { escapeToken, instructions } = readStructure(text, file);
  if (instructions.length === 0) {
    throw new LapinError(`${file} has no instructions`, {
      hint: 'a Containerfile starts with FROM scratch, then COPY and LABEL',
    });
  }
  const compiler = new Compiler(file, escapeToken, buildArgs, instructions, options);
  const target = options.target?.toLowerCase();
  if (target !== undefined) compiler.checkTarget(options.target ?? target);
  for (const instruction of instructions) {
    // --target: the build stops where the stage after the target begins.
    if (target !== undefined && instruction.keyword === 'FROM' && compiler.currentStageName() === target) break;
    compiler.dispatch(instruction);
  }
  return compiler.finish();
}

export interface ContainerfileOptions extends PlatformInputs {
  /** `--target`: the stage that is the image; later stages are not built. */
  target?: string;
}

/** ARGs docker predefines, which a --build-arg may set without an ARG (BuildKit's builtinAllowedBuildArgs). */
const PREDEFINED_ARGS = new Set([
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);


// ---------------------------------------------------------------------------
// Structure

/** Physical lines as BuildKit reads them: split at LF only, a CR before the LF dropped. */
function physicalLines(text: string): string[] {
  return text.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/**
 * The text for dockerfile-ast, of the same length so its positions hold for
 * `text`. dockerfile-ast takes a lone CR for a line break and only space and
 * tab for blanks; BuildKit breaks lines at LF only and trims any Unicode
 * space from the start of a line, so CRs and leading spaces become spaces.
 */
function structuralText(text: string): string {
  return text
    .split('\n')
    .map((line, index) => {
      const bom = index === 0 && line.startsWith('\uFEFF') ? '\uFEFF' : '';
      const rest = line.slice(bom.length);
      return bom + rest.replace(LEADING_SPACES, (spaces) => ' '.repeat(spaces.length)).replaceAll('\r', ' ');
    })
    .join('\n');
}

interface Directive {
  name: string;
  value: string;
}

/** The escape character and the instructions, found by dockerfile-ast and read as BuildKit reads them. */
function readStructure(text: string, file: string): { escapeToken: string; instructions: Instruction[] } {
  const physical = physicalLines(text);
  const { escapeToken, directives } = readDirectives(physical, file);
  let structural = structuralText(text);
  let document = DockerfileParser.parse(structural);
  const found = document.getDirectives();
  const oneALine = found.every((directive, index) => directive.getRange().start.line === index);
  if (escapeToken !== document.getEscapeCharacter() || !oneALine) {
    // dockerfile-ast read other directives than BuildKit (see readDirectives): parse again with BuildKit's, one a line.
    const lines = structural.split('\n');
    for (const directive of found) {
      const lineIndex = directive.getRange().start.line;
      lines[lineIndex] = (lines[lineIndex] ?? '').replaceAll('=', ' ');
    }
    directives.forEach(({ name, value }, lineIndex) => {
      const line = lines[lineIndex] ?? '';
      const bom = line.startsWith('\uFEFF') ? '\uFEFF' : '';
      lines[lineIndex] = `${bom}#${name}=${name === 'escape' ? value : '_'}`.padEnd(line.length);
    });
    structural = lines.join('\n');
    document = DockerfileParser.parse(structural);
  }
  return { escapeToken, instructions: readInstructions(document, structural, physical, text.split('\n'), file, escapeToken) };
}

/**
 * The parser directives at the top of the file, as BuildKit reads them.
 * dockerfile-ast's getDirectives() differs: it takes any `# name=value`,
 * takes the value only up to the first blank and then reads on along the
 * line (skipping one line for each extra directive found there).
 */
function readDirectives(physical: string[], file: string): { escapeToken: string; directives: Directive[] } {
  let escapeToken = '\\';
  const directives: Directive[] = [];
  for (const [lineIndex, text] of physical.entries()) {
    const line = text.replace(lineIndex === 0 ? /^\uFEFF/ : '', '').replace(LEADING_SPACES, '');
    const match = DIRECTIVE_LINE.exec(line);
    const name = match?.[1]?.toLowerCase();
    if (match === null || name === undefined || !DIRECTIVES.has(name)) break;
    const at = { file, line: lineIndex + 1, column: 1 };
    if (directives.some((earlier) => earlier.name === name)) {
      throw new LapinError(`only one ${name} parser directive can be used`, { at });
    }
    const value = match[2] ?? '';
    if (name === 'escape') {
      if (value !== '`' && value !== '\\') {
        throw new LapinError(`invalid escape directive '${value}'`, { at, hint: 'the escape character is \\ or `' });
      }
      escapeToken = value;
    }
    directives.push({ name, value });
  }
  return { escapeToken, directives };
}

/**
 * The instructions dockerfile-ast finds, each with its continuation lines
 * joined as BuildKit joins them. dockerfile-ast's joined text
 * (getArgumentsContent) keeps indented comment lines and blank lines, which
 * BuildKit drops, so the lines are joined here.
 */
function readInstructions(
  document: Dockerfile,
  structural: string,
  physical: string[],
  raw: string[],
  file: string,
  escapeToken: string,
): Instruction[] {
  const continuation = new RegExp(`\\${escapeToken}[ \\t]*$`);
  const instructions: Instruction[] = [];
  /** The last physical line read into an instruction. */
  let consumed = -1;
  let found = document.getInstructions();
  // After a reparse dockerfile-ast reads a segment: the directive lines and a comment, then lines [from, segmentEnd).
  const lines = structural.split('\n');
  // A plain comment after them ends the directives, so a `# key=value` line at a segment's start stays a comment.
  const directives = [...lines.slice(0, document.getDirectives().length), '#'];
  let lineShift = 0;
  let segmentEnd = lines.length;
  let window = MIN_SEGMENT_LINES;
  const parseSegment = (from: number): void => {
    segmentEnd = Math.min(lines.length, from + window);
    found = DockerfileParser.parse([...directives, ...lines.slice(from, segmentEnd)].join('\n')).getInstructions();
    lineShift = from - directives.length;
  };
  for (let next = 0; ; next += 1) {
    if (next >= found.length) {
      if (segmentEnd >= lines.length) break;
      // The segment is done: read on in a longer one, so long stretches cost linear time.
      window *= 2;
      parseSegment(consumed + 1);
      next = -1;
      continue;
    }
    const syntax = found[next];
    if (syntax === undefined) continue;
    const range = syntax.getRange();
    const start = { line: range.start.line + lineShift, character: range.start.character };
    const end = { line: range.end.line + lineShift };
    if (start.line > consumed) {
      const { line, last } = joinLines(physical, start.line, start.character, continuation, file);
      consumed = last;
      // A line holding only the escape character joins nothing to the next one.
      if (!isBlank(line.text)) {
        const instruction = splitInstruction(syntax, line, lineShift);
        // The here-document bodies follow the instruction's last line, as BuildKit's parser reads them.
        consumed = readHeredocs(instruction, raw, consumed);
        instructions.push(instruction);
      }
    }
    if (end.line > consumed) {
      // dockerfile-ast read on past BuildKit's end of the instruction (here-documents, a line starting `\#`), or
      // the segment cut it: find the rest again, in a short segment from there, so that each such place costs
      // a bounded parse instead of one of the rest of the file.
      window = MIN_SEGMENT_LINES;
      parseSegment(consumed + 1);
      next = -1;
    }
  }
  return instructions;
}

/**
 * Reads one instruction from `firstLine`: a line ending in the escape
 * character continues on the next line that is not a comment or blank line.
 * Returns the joined line and the last physical line it took.
 */
function joinLines(
  physical: string[],
  firstLine: number,
  firstColumn: number,
  continuation: RegExp,
  file: string,
): { line: LogicalLine; last: number } {
  const line = new LogicalLine(file);
  let index = firstLine;
  let from = firstColumn;
  for (;;) {
    const text = physical[index] ?? '';
    const match = continuation.exec(text.slice(from));
    line.append(text, index + 1, from, match === null ? text.length : from + match.index);
    if (match === null) return { line, last: index };
    do index += 1;
    while (index < physical.length && isCommentOrBlank(physical[index] ?? ''));
    if (index >= physical.length) return { line, last: physical.length - 1 };
    from = 0;
  }
}

function isCommentOrBlank(line: string): boolean {
  const text = line.replace(LEADING_SPACES, '');
  return text === '' || text.startsWith('#');
}

/** The lines dockerfile-ast reads again after it read an instruction differently; doubled while all goes well. */
const MIN_SEGMENT_LINES = 16;

/** Splits a joined line into keyword, flags and arguments, as BuildKit's splitCommand does. */
function splitInstruction(syntax: SyntaxInstruction, line: LogicalLine, lineShift: number): Instruction {
  const text = line.text;
  let start = 0;
  while (isSpace(text[start])) start += 1;
  let end = text.length;
  while (end > start && isSpace(text[end - 1])) end -= 1;
  // The joined line's first word: getInstruction() differs for a line holding only the escape character and at \v, \f.
  let keywordEnd = start;
  while (keywordEnd < end && !isWordSeparator(text[keywordEnd])) keywordEnd += 1;
  let restStart = keywordEnd;
  while (restStart < end && isWordSeparator(text[restStart])) restStart += 1;
  const split = syntaxFlags(syntax, line, restStart, lineShift) ?? extractFlags(text, restStart, end);
  const argsStart = Math.min(split.argsStart, end);
  const written = text.slice(start, keywordEnd);
  return {
    keyword: written.toUpperCase(),
    written,
    line,
    at: line.at(start),
    flags: split.flags,
    args: text.slice(argsStart, end),
    argsStart,
    heredocs: [],
  };
}

/**
 * The flags of COPY, ADD and FROM as dockerfile-ast reads them, and where
 * the arguments start. Undefined where BuildKit reads the flags differently:
 * it removes quotes and escapes, splits at any Unicode space, stops at a
 * lone `--` and at the first word that is not a flag.
 */
function syntaxFlags(
  syntax: SyntaxInstruction,
  line: LogicalLine,
  restStart: number,
  lineShift: number,
): { flags: RawFlag[]; argsStart: number } | undefined {
  if (!(syntax instanceof Copy || syntax instanceof Add || syntax instanceof From)) return undefined;
  const flags: RawFlag[] = [];
  let previousEnd = restStart;
  for (const flag of syntax.getFlags()) {
    const { start } = flag.getRange();
    const index = line.indexOf(start.line + lineShift + 1, start.character + 1);
    const name = flag.getName();
    const value = flag.getValue();
    const written = `--${name}${value === null ? '' : `=${value}`}`;
    if (
      index === undefined ||
      !PLAIN_FLAG.test(written) ||
      line.text.slice(index, index + written.length) !== written ||
      !isBlank(line.text[index + written.length] ?? '') ||
      !isBlank(line.text.slice(previousEnd, index))
    ) {
      return undefined;
    }
    flags.push({ name, value: value ?? undefined, index });
    previousEnd = index + written.length;
  }
  let argsStart = previousEnd;
  while (isSpace(line.text[argsStart])) argsStart += 1;
  if (line.text.startsWith('--', argsStart)) return undefined;
  return { flags, argsStart };
}

/**
 * Takes the leading `--flag[=value]` words off the arguments in
 * `text[from, to)`, removing quotes and backslash escapes from them as
 * BuildKit's extractBuilderFlags does.
 */
function extractFlags(text: string, from: number, to: number): { flags: RawFlag[]; argsStart: number } {
  const rest = text.slice(from, to);
  const flags: RawFlag[] = [];
  const done = (argsOffset: number): { flags: RawFlag[]; argsStart: number } => ({ flags, argsStart: from + argsOffset });
  const add = (word: string, wordStart: number): void => {
    const body = word.slice(2);
    const equals = body.indexOf('=');
    flags.push({
      name: equals < 0 ? body : body.slice(0, equals),
      value: equals < 0 ? undefined : body.slice(equals + 1),
      index: from + wordStart,
    });
  };
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let wordStart = 0;
  let quote = '';
  let blankOK = false;
  const skipSpaces = (start: number): number => {
    let position = start;
    while (isSpace(rest[position])) position += 1;
    return position;
  };
  for (let position = 0; position <= rest.length; position += 1) {
    const char = rest[position] ?? '';
    if (phase === 'spaces') {
      if (position === rest.length) break;
      if (isSpace(char)) continue;
      if (char !== '-' || rest[position + 1] !== '-') return done(position);
      phase = 'word';
      wordStart = position;
    }
    if (position === rest.length) {
      if (word !== '--' && (blankOK || word.length > 0)) add(word, wordStart);
      break;
    }
    if (phase === 'word') {
      if (isSpace(char)) {
        phase = 'spaces';
        // A lone "--" ends the flags.
        if (word === '--') return done(skipSpaces(position));
        if (blankOK || word.length > 0) add(word, wordStart);
        word = '';
        blankOK = false;
        continue;
      }
      if (char === "'" || char === '"') {
        quote = char;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (char === '\\') {
        if (position + 1 === rest.length) continue;
        position += 1;
        word += rest[position] ?? '';
        continue;
      }
      word += char;
      continue;
    }
    if (char === quote) {
      phase = 'word';
      continue;
    }
    if (char === '\\') {
      if (position + 1 === rest.length) {
        phase = 'word';
        continue;
      }
      position += 1;
      word += rest[position] ?? '';
      continue;
    }
    word += char;
  }
  return done(rest.length);
}

// ---------------------------------------------------------------------------
// Here-documents (moby/buildkit frontend/dockerfile/parser/parser.go)

/** BuildKit's reHeredoc: a file descriptor, `<<`, `-` to strip tabs, the delimiter word (Go's `\s` is ASCII). */
const HEREDOC = /^(\d*)<<(-?)[\t\n\f\r ]*([^<]*)$/;
/** The instructions BuildKit reads here-documents for (heredocDirectives; ONBUILD of one of them too). */
const HEREDOC_KEYWORDS = new Set(['ADD', 'COPY', 'RUN']);

/** What a `<<WORD` says: the delimiter, whether tabs are stripped and whether the content is expanded. */
interface HeredocWord {
  name: string;
  chomp: boolean;
  /** False when any part of the delimiter is quoted (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`). */
  expand: boolean;
}

interface Heredoc extends HeredocWord {
  /** The body lines as written, each with its line break (CR LF kept), without the terminator line. */
  content: string;
  /** 1-based line of the body's first line. */
  bodyLine: number;
}

/** BuildKit's ParseHeredoc of one word; undefined when it is not a here-document (MustParseHeredoc). */
function heredocWord(word: string): HeredocWord | undefined {
  const match = HEREDOC.exec(word);
  const rest = match?.[3];
  if (match === null || rest === undefined || rest === '') return undefined;
  const name = heredocName(rest);
  return name === undefined ? undefined : { ...name, chomp: match[2] === '-' };
}

/**
 * The delimiter with quotes and backslash escapes removed, as BuildKit's
 * lexer does with no variables set (SkipUnsetEnv: `$X` stays `$X`);
 * undefined unless it is one word. Quoting any part turns expansion off.
 */
function heredocName(rest: string): { name: string; expand: boolean } | undefined {
  const words: string[] = [];
  let word = '';
  let quoted = false;
  for (let position = 0; position < rest.length; position += 1) {
    const char = rest[position] ?? '';
    if (char === "'") {
      const end = rest.indexOf("'", position + 1);
      if (end < 0) return undefined;
      word += rest.slice(position + 1, end);
      position = end;
      quoted = true;
    } else if (char === '"') {
      let inner = position + 1;
      for (;;) {
        const next = rest[inner];
        if (next === undefined) return undefined;
        if (next === '"') break;
        const escaped = rest[inner + 1];
        if (next === '\\' && (escaped === '"' || escaped === '$' || escaped === '\\')) {
          word += escaped;
          inner += 2;
        } else {
          word += next;
          inner += 1;
        }
      }
      position = inner;
      quoted = true;
    } else if (char === '\\') {
      position += 1;
      word += rest[position] ?? '';
    } else if (isSpace(char)) {
      if (word !== '') words.push(word);
      word = '';
    } else {
      word += char;
    }
  }
  if (word !== '') words.push(word);
  const name = words[0];
  return words.length === 1 && name !== undefined ? { name, expand: !quoted } : undefined;
}

/**
 * The words of a whole instruction line as BuildKit's heredocsFromLine
 * splits them (RawQuotes, RawEscapes): quotes and escapes kept, `<<`
 * followed by blanks glued to the next word. Undefined for an unterminated
 * quote, where BuildKit finds no here-documents.
 */
function rawWords(text: string): Array<{ text: string; index: number }> | undefined {
  const words: Array<{ text: string; index: number }> = [];
  let start = -1;
  const begin = (position: number): void => {
    if (start < 0) start = position;
  };
  for (let position = 0; position < text.length; position += 1) {
    const char = text[position] ?? '';
    if (char === "'") {
      begin(position);
      const end = text.indexOf("'", position + 1);
      if (end < 0) return undefined;
      position = end;
    } else if (char === '"') {
      begin(position);
      let inner = position + 1;
      while (text[inner] !== '"') {
        if (inner >= text.length) return undefined;
        inner += text[inner] === '\\' && inner + 1 < text.length ? 2 : 1;
      }
      position = inner;
    } else if (char === '\\') {
      begin(position);
      position += 1;
    } else if (char === '<' && text[position + 1] === '<') {
      begin(position);
      position += 2;
      while (text[position] === ' ' || text[position] === '\t' || text[position] === '\r') position += 1;
      position -= 1;
    } else if (isSpace(char)) {
      if (start >= 0) words.push({ text: text.slice(start, position), index: start });
      start = -1;
    } else {
      begin(position);
    }
  }
  if (start >= 0) words.push({ text: text.slice(start), index: start });
  return words;
}

/** Whether the text is a JSON array of strings, BuildKit's JSON form (which reads no here-documents). */
function isJsonForm(text: string): boolean {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[')) return false;
  try {
    const parsed: unknown = JSON.parse(trimmed);
    return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string');
  } catch {
    return false;
  }
}

/** BuildKit's canContainHeredoc: COPY, ADD and RUN (also behind ONBUILD), not in JSON form. */
function canContainHeredoc(instruction: Instruction): boolean {
  if (HEREDOC_KEYWORDS.has(instruction.keyword)) return !isJsonForm(instruction.args);
  if (instruction.keyword !== 'ONBUILD') return false;
  const inner = /^(\S+)\s*(.*)$/s.exec(instruction.args);
  return inner !== null && HEREDOC_KEYWORDS.has((inner[1] ?? '').toUpperCase()) && !isJsonForm(inner[2] ?? '');
}

/** A line without its trailing CRs (and LFs), as BuildKit's trimNewline; a loop, not a regular expression, for long hostile lines. */
function trimTrailingReturns(line: string): string {
  let end = line.length;
  while (end > 0 && (line[end - 1] === '\r' || line[end - 1] === '\n')) end -= 1;
  return line.slice(0, end);
}

function leadingTabs(line: string): number {
  let count = 0;
  while (line[count] === '\t') count += 1;
  return count;
}

/**
 * Reads the bodies of the instruction's here-documents from the lines after
 * `last` (the instruction's last line), one after the other in the order the
 * `<<` words come: each ends at a line that is its delimiter exactly (after
 * trailing CRs; after leading tabs too for `<<-`). Returns the last line read.
 */
function readHeredocs(instruction: Instruction, raw: string[], last: number): number {
  const { line } = instruction;
  if (!line.text.includes('<<') || !canContainHeredoc(instruction)) return last;
  let index = last;
  for (const word of rawWords(line.text) ?? []) {
    const heredoc = heredocWord(word.text);
    if (heredoc === undefined) continue;
    const bodyLine = index + 2;
    let content = '';
    let terminated = false;
    // A final line break ends the last line; the empty string after it is no line.
    const lineCount = raw.length - (raw[raw.length - 1] === '' ? 1 : 0);
    for (index += 1; index < lineCount; index += 1) {
      const text = raw[index] ?? '';
      const candidate = trimTrailingReturns(text);
      if ((heredoc.chomp ? candidate.slice(leadingTabs(candidate)) : candidate) === heredoc.name) {
        terminated = true;
        break;
      }
      content += index < raw.length - 1 ? `${text}\n` : text;
    }
    if (!terminated) {
      throw new LapinError(`unterminated here-document: ${abbreviate(word.text)} has no line ${abbreviate(heredoc.name)} to end it`, {
        at: line.at(word.index),
        hint: `end the here-document with a line holding only ${abbreviate(heredoc.name)}`,
      });
    }
    instruction.heredocs.push({ ...heredoc, content, bodyLine });
  }
  return index;
}

/** `<<-`: leading tabs removed from every line (BuildKit's ChompHeredocContent), and how many went from each. */
function chompContent(content: string): { content: string; removed: number[] } {
  const removed: number[] = [];
  const lines = content.split('\n').map((text) => {
    const tabs = leadingTabs(text);
    removed.push(tabs);
    return text.slice(tabs);
  });
  return { content: lines.join('\n'), removed };
}

// ---------------------------------------------------------------------------
// Words

/** Arguments split at whitespace, quotes not considered (FROM, COPY, EXPOSE, VOLUME). */
function plainWords(instruction: Instruction): Word[] {
  const words: Word[] = [];
  const { args, argsStart } = instruction;
  let position = 0;
  while (position < args.length) {
    while (position < args.length && isWordSeparator(args[position])) position += 1;
    const start = position;
    while (position < args.length && !isWordSeparator(args[position])) position += 1;
    if (position > start) words.push({ text: args.slice(start, position), index: argsStart + start });
  }
  return words;
}

/**
 * Arguments split at whitespace outside quotes, quotes and escapes kept for
 * the word processing that follows (ARG, ENV, LABEL): BuildKit's parseWords.
 */
function quotedWords(instruction: Instruction, escapeToken: string): Word[] {
  const words: Word[] = [];
  const { args, argsStart } = instruction;
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let quote = '';
  let blankOK = false;
  let word = '';
  let wordStart = 0;
  for (let position = 0; position <= args.length; position += 1) {
    let char = args[position] ?? '';
    if (phase === 'spaces') {
      if (position === args.length) break;
      if (isSpace(char)) continue;
      phase = 'word';
      wordStart = position;
    }
    if (position === args.length) {
      if (blankOK || word.length > 0) words.push({ text: word, index: argsStart + wordStart });
      break;
    }
    if (phase === 'word') {
      if (isSpace(char)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push({ text: word, index: argsStart + wordStart });
        word = '';
        blankOK = false;
        continue;
      }
      if (char === "'" || char === '"') {
        quote = char;
        blankOK = true;
        phase = 'quote';
      }
      if (char === escapeToken) {
        if (position + 1 === args.length) continue;
        word += char;
        position += 1;
        char = args[position] ?? '';
      }
      word += char;
      continue;
    }
    if (char === quote) phase = 'word';
    if (char === escapeToken && quote !== "'") {
      if (position + 1 === args.length) {
        phase = 'word';
        continue;
      }
      word += char;
      position += 1;
      char = args[position] ?? '';
    }
    word += char;
  }
  return words;
}

/**
 * The JSON array form (`["a", "b"]`) when the arguments are one; undefined
 * when they are not JSON. An array holding anything but strings is an error.
 */
function jsonArray(instruction: Instruction): string[] | undefined {
  const text = instruction.args.trimStart();
  if (!text.startsWith('[')) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  const strings: string[] = [];
  for (const item of parsed as unknown[]) {
    if (typeof item !== 'string') {
      throw new LapinError(`${instruction.keyword} in JSON form takes an array of strings only`, {
        at: instruction.line.at(instruction.argsStart),
      });
    }
    strings.push(item);
  }
  return strings;
}

/** Sets a key on a plain record without tripping over `__proto__` and friends. */
function setEntry<T>(record: Partial<Record<string, T>>, key: string, value: T): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A `FROM --platform` value made of the target platform's automatic args ($TARGETPLATFORM, ${TARGETOS}/${TARGETARCH}): it follows the target. */
const TARGET_ARG_REFERENCE = /\$\{?TARGET(PLATFORM|OS|ARCH|VARIANT)\b/;
/** One made of the build platform's ($BUILDPLATFORM): this machine's, which BuildKit's image takes only when no --platform is given. */
const BUILD_ARG_REFERENCE = /\$\{?BUILD(PLATFORM|OS|ARCH|VARIANT)\b/;

/** bunny's values for urunc labels a Containerfile leaves out. */
export function withBunnyDefaults(urunc: UruncInput): UruncInput {
  const result: UruncInput = { ...urunc };
  if (result.unikernelType === undefined) result.unikernelType = { value: 'linux' };
  if (result.hypervisor === undefined) result.hypervisor = { value: 'qemu' };
  const useDMBlockGiven = (result.useDMBlock?.value ?? '') !== '';
  if (result.mountRootfs === undefined && !useDMBlockGiven) {
    const hasInitrd = (result.initrd?.value ?? '') !== '';
    const blockIsRoot = result.blkMntPoint?.value === '/';
    // Not for a guest that cannot use the container rootfs (mirage, mewz, hermit): urunc would ignore it.
    const usable = canMountRootfs(result.unikernelType.value, result.hypervisor.value);
    result.mountRootfs = { value: hasInitrd || blockIsRoot || !usable ? 'false' : 'true' };
  }
  return result;
}

/** A Linux signal name (with or without SIG) or number, as STOPSIGNAL takes. */
const SIGNALS = new Set([
  'ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL',
  'PROF', 'PWR', 'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1',
  'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ', 'RTMIN', 'RTMAX',
]);

function isSignal(value: string): boolean {
  if (/^\d+$/.test(value)) return Number(value) >= 1 && Number(value) <= 64;
  const name = value.toUpperCase().replace(/^SIG/, '');
  if (SIGNALS.has(name)) return true;
  const realtime = /^RTMIN\+(\d+)$|^RTMAX-(\d+)$/.exec(name);
  return realtime !== null && Number(realtime[1] ?? realtime[2]) <= 30;
}

// ---------------------------------------------------------------------------
// Instructions

/** What a stage's config lists hold: env lines by name, volumes, exposed ports by protocol. */
interface StageIndex {
  envLines: Map<string, number>;
  volumes: Set<string>;
  ports: Map<string, PortRuns>;
}

/** Ports taken, each pointing at the next one that may be free, so a range visits only the ports it adds. */
class PortRuns {
  private readonly next = new Map<number, number>();

  /** The first port at or after `port` not taken. */
  free(port: number): number {
    let free = port;
    const passed: number[] = [];
    for (let next = this.next.get(free); next !== undefined; next = this.next.get(free)) {
      passed.push(free);
      free = next;
    }
    for (const taken of passed) this.next.set(taken, free);
    return free;
  }

  take(port: number): void {
    this.next.set(port, port + 1);
  }
}

class Compiler {
  private readonly globalArgs = new Map<string, string | undefined>();
  private readonly platformValues: Map<string, string>;
  /** --platform was given: BuildKit's image then has the target's platform whatever the final stage's FROM --platform (its implicitTarget is false). */
  private readonly targetGiven: boolean;
  private readonly stages: Stage[] = [];
  /** Per stage, what its config's lists hold, so a long file adds to them in linear time. */
  private readonly stageIndexes = new WeakMap<Stage, StageIndex>();
  private current: Stage | undefined;
  /** Every `AS name`, so COPY --from can tell a later stage from an image. */
  private readonly allStageNames = new Set<string>();
  /** ARG names declared in what was built, for the unused --build-arg warning. */
  private readonly declaredArgs = new Set<string>();
  private readonly warnings: PlanWarning[] = [];
  /** Characters all expansions produced so far, against MAX_EXPANDED_TOTAL. */
  private expanded = 0;

  constructor(
    private readonly file: string,
    private readonly escapeToken: string,
    private readonly buildArgs: Record<string, string>,
    instructions: Instruction[],
    platforms: PlatformInputs,
  ) {
    this.platformValues = platformArgs(platforms, buildArgs);
    this.targetGiven = platforms.platform !== undefined;
    for (const instruction of instructions) {
      if (instruction.keyword !== 'FROM') continue;
      const words = plainWords(instruction);
      if (words.length === 3) this.allStageNames.add(words[2]?.text.toLowerCase() ?? '');
    }
  }

  currentStageName(): string | undefined {
    return this.current?.name;
  }

  /** An unknown --target is a usage error that lists the stages there are. */
  checkTarget(target: string): void {
    if (this.allStageNames.has(target.toLowerCase())) return;
    const names = [...this.allStageNames];
    const close = closestName(target, names);
    throw new UsageError(
      `--target ${target}: ${this.file} has no stage named ${target}`,
      names.length === 0
        ? 'name a stage with FROM <image> AS <name>'
        : `${close === undefined ? '' : `did you mean ${close}? `}the stages are ${names.join(', ')}`,
    );
  }

  dispatch(instruction: Instruction): void {
    const { keyword } = instruction;
    if (!KEYWORDS.has(keyword)) {
      const close = closestName(keyword, KEYWORDS);
      throw new LapinError(`unknown instruction: ${instruction.written}`, { at: instruction.at, ...(close !== undefined ? { hint: `did you mean ${close}?` } : {}) });
    }
    if (keyword === 'RUN') {
      throw new ExecutionNeeded('RUN', 'not supported: RUN executes commands; lapin packages pre-built artifacts', {
        at: instruction.at,
        hint: 'build the artifact beforehand and COPY it into the image',
      });
    }
    if (keyword === 'FROM') return this.from(instruction);
    if (keyword === 'ARG') return this.arg(instruction, this.current);
    const stage = this.current;
    if (stage === undefined) {
      throw new LapinError(`${keyword} before the first FROM; only ARG may come before FROM`, { at: instruction.at });
    }
    switch (keyword) {
      case 'COPY':
        return this.copy(instruction, stage, false);
      case 'ADD':
        return this.copy(instruction, stage, true);
      case 'LABEL':
        return this.label(instruction, stage);
      case 'ENV':
        return this.env(instruction, stage);
      case 'CMD':
      case 'ENTRYPOINT':
        return this.command(instruction, stage);
      case 'SHELL':
        return this.shell(instruction, stage);
      case 'WORKDIR':
        return this.workdir(instruction, stage);
      case 'USER':
        return this.user(instruction, stage);
      case 'EXPOSE':
        return this.expose(instruction, stage);
      case 'STOPSIGNAL':
        return this.stopSignal(instruction, stage);
      case 'VOLUME':
        return this.volume(instruction, stage);
      case 'MAINTAINER':
        return this.maintainer(instruction, stage);
      case 'HEALTHCHECK':
        return this.healthcheck(instruction);
      case 'ONBUILD':
      default:
        throw new ExecutionNeeded(
          'ONBUILD',
          'not supported: ONBUILD; its instructions run when another build starts FROM this image',
          { at: instruction.at, hint: 'remove the ONBUILD line' },
        );
    }
  }

  finish(): BuildPlan {
    const final = this.current;
    if (final === undefined) {
      throw new LapinError(`${this.file} has no FROM instruction`, {
        hint: 'a Containerfile starts with FROM scratch, then COPY and LABEL',
      });
    }
    const stages: StagePlan[] = this.stages.map((stage) => ({
      ...(stage.name === undefined ? {} : { name: stage.name }),
      base: stage.base,
      ops: stage.ops,
      at: stage.at,
    }));
    return {
      syntax: 'containerfile',
      file: this.file,
      ...(final.architecture === undefined ? {} : { architecture: final.architecture }),
      base: final.base,
      stages,
      ops: final.ops,
      config: final.config,
      urunc: withBunnyDefaults(final.urunc),
      annotations: {},
      warnings: [...this.warnings, ...this.unusedBuildArgs()],
    };
  }

  /** docker's "[Warning] One or more build-args [X] were not consumed". */
  private unusedBuildArgs(): PlanWarning[] {
    const unused = Object.keys(this.buildArgs).filter(
      (name) => !this.declaredArgs.has(name) && !PREDEFINED_ARGS.has(name) && !this.platformValues.has(name),
    );
    if (unused.length === 0) return [];
    return [{ message: `one or more build-args [${unused.sort().join(' ')}] were not consumed: no ARG in ${this.file} declares them` }];
  }

  // --- helpers

  private at(instruction: Instruction, index: number): SourcePosition {
    return instruction.line.at(index);
  }

  /** Quote removal and variable expansion of one word; errors point into the word. */
  private expand(text: string, lookup: VariableLookup, at: (offset: number) => SourcePosition): string {
    let result: string;
    try {
      result = processWord(text, lookup, this.escapeToken);
    } catch (error) {
      if (error instanceof ShellWordError) throw new LapinError(`${error.message} in "${abbreviate(text)}"`, { at: at(error.offset) });
      throw error;
    }
    this.expanded += result.length;
    if (this.expanded > MAX_EXPANDED_TOTAL) {
      throw new LapinError(expansionTooLarge(MAX_EXPANDED_TOTAL), { at: at(0), hint: 'expand fewer or shorter variables' });
    }
    return result;
  }

  private expandWord(instruction: Instruction, word: Word, lookup: VariableLookup): string {
    return this.expand(word.text, lookup, (offset) => this.at(instruction, word.index + (word.fromJson ? 0 : offset)));
  }

  private expandFlag(flag: Flag, lookup: VariableLookup): string {
    return this.expand(flag.value, lookup, () => flag.at);
  }

  /** The stages before the next FROM: the finished ones and the current one. */
  private definedStages(): Stage[] {
    return this.current === undefined ? this.stages : [...this.stages, this.current];
  }

  private globalLookup(): VariableLookup {
    return (name) => this.globalArgs.get(name) ?? this.platformValues.get(name);
  }

  private stageLookup(stage: Stage): VariableLookup {
    return (name) => (stage.env.has(name) ? stage.env.get(name) : stage.args.get(name));
  }

  private buildArg(name: string): string | undefined {
    return Object.hasOwn(this.buildArgs, name) ? this.buildArgs[name] : undefined;
  }

  /** Parses the instruction's flags against the ones it accepts. */
  private takeFlags(instruction: Instruction, accepted: Record<string, FlagKind>): Map<string, Flag> {
    const flags = new Map<string, Flag>();
    for (const raw of instruction.flags) {
      const at = this.at(instruction, raw.index);
      const { name } = raw;
      const kind = Object.hasOwn(accepted, name) ? accepted[name] : undefined;
      if (kind === undefined) {
        throw new LapinError(`unknown flag --${name} for ${instruction.keyword}`, { at });
      }
      if (flags.has(name)) throw new LapinError(`flag --${name} given twice`, { at });
      let { value } = raw;
      if (kind === 'string' && value === undefined) {
        throw new LapinError(`flag --${name} needs a value: --${name}=<value>`, { at });
      }
      if (kind === 'bool') {
        const parsed = parseBool(value ?? 'true');
        if (parsed === undefined) throw new LapinError(`flag --${name} takes true or false, not ${value}`, { at });
        value = String(parsed);
      }
      flags.set(name, { name, value: value ?? '', at, index: raw.index });
    }
    return flags;
  }

  /** NAME=VALUE pairs of ENV and LABEL, or the legacy `NAME VALUE` form. */
  private nameValues(instruction: Instruction): NameValue[] {
    const words = quotedWords(instruction, this.escapeToken);
    const first = words[0];
    if (first === undefined) {
      throw new LapinError(`${instruction.keyword} needs at least one name=value pair`, { at: instruction.at });
    }
    if (!first.text.includes('=')) {
      // Legacy form: the name, then everything after the first run of whitespace.
      const { args, argsStart } = instruction;
      let nameEnd = 0;
      while (nameEnd < args.length && !isWordSeparator(args[nameEnd])) nameEnd += 1;
      let valueStart = nameEnd;
      while (valueStart < args.length && isWordSeparator(args[valueStart])) valueStart += 1;
      if (nameEnd === args.length) {
        throw new LapinError(`${instruction.keyword} ${args} has no value`, {
          at: this.at(instruction, argsStart),
          hint: `write ${instruction.keyword} ${args}=<value>`,
        });
      }
      return [
        {
          name: { text: args.slice(0, nameEnd), index: argsStart },
          value: { text: args.slice(valueStart), index: argsStart + valueStart },
        },
      ];
    }
    return words.map((word) => {
      const equals = word.text.indexOf('=');
      if (equals < 0) {
        throw new LapinError(`expected name=value, found ${word.text}`, { at: this.at(instruction, word.index) });
      }
      return {
        name: { text: word.text.slice(0, equals), index: word.index },
        value: { text: word.text.slice(equals + 1), index: word.index + equals + 1 },
      };
    });
  }

  /** The whole argument text as one word (WORKDIR, USER, STOPSIGNAL). */
  private singleArgument(instruction: Instruction, stage: Stage, what: string): string {
    if (instruction.args === '') throw new LapinError(`${instruction.keyword} needs ${what}`, { at: instruction.at });
    const value = this.expandWord(instruction, { text: instruction.args, index: instruction.argsStart }, this.stageLookup(stage));
    if (value === '') {
      throw new LapinError(`${instruction.keyword} is empty after variable expansion`, {
        at: this.at(instruction, instruction.argsStart),
      });
    }
    return value;
  }

  // --- FROM and ARG

  private from(instruction: Instruction): void {
    const flags = this.takeFlags(instruction, { platform: 'string' });
    const words = plainWords(instruction);
    const image = words[0];
    const asWord = words[1];
    if (image === undefined || !(words.length === 1 || (words.length === 3 && asWord?.text.toLowerCase() === 'as'))) {
      throw new LapinError('FROM takes an image and an optional stage name: FROM <image> [AS <name>]', {
        at: asWord === undefined ? instruction.at : this.at(instruction, asWord.index),
      });
    }
    const lookup = this.globalLookup();
    const reference = this.expandWord(instruction, image, lookup);
    const imageAt = this.at(instruction, image.index);
    if (reference === '') throw new LapinError('FROM names no image after variable expansion', { at: imageAt });

    let name: string | undefined;
    const nameWord = words[2];
    if (nameWord !== undefined) {
      name = nameWord.text.toLowerCase();
      const nameAt = this.at(instruction, nameWord.index);
      if (!STAGE_NAME.test(name)) {
        throw new LapinError(`invalid stage name ${nameWord.text}`, {
          at: nameAt,
          hint: "a stage name starts with a letter and has only letters, digits, '-', '_' and '.'",
        });
      }
      if (this.definedStages().some((stage) => stage.name === name)) {
        throw new LapinError(`duplicate stage name ${name}`, { at: nameAt });
      }
    }
    const earlier = this.definedStages().find((stage) => stage.name === reference.toLowerCase());
    if (earlier !== undefined) {
      throw new LapinError(`FROM ${reference} is not supported yet: a stage cannot start from another stage`, {
        at: imageAt,
        hint: `start from scratch and COPY --from=${earlier.name} what you need`,
      });
    }
    const base: BasePlan = reference === 'scratch' ? { kind: 'scratch' } : { kind: 'image', reference, at: imageAt };

    let architecture: Located<Architecture> | undefined;
    const platform = flags.get('platform');
    if (platform !== undefined) {
      // Read as --platform is (pipeline/platform.ts): aarch64, x86_64, linux/arm64/v8, local.
      const value = this.expandFlag(platform, lookup);
      const arch = buildArchitecture(value);
      if (arch === undefined) {
        throw new LapinError(`unsupported platform ${value === platform.value ? value : `${value} (${platform.value})`}`, { at: platform.at, hint: BUILD_PLATFORMS_HINT });
      }
      // The target's own args name whatever is built (--platform, else the kernel's): no architecture of the file's own.
      // $BUILDPLATFORM with --platform given: BuildKit's image is the target's (the base alone is the build machine's).
      const followsTarget = TARGET_ARG_REFERENCE.test(platform.value) || (this.targetGiven && BUILD_ARG_REFERENCE.test(platform.value));
      if (!followsTarget) architecture = { value: arch, at: platform.at };
    }

    if (this.current !== undefined) this.stages.push(this.current);
    if (this.stages.length >= MAX_STAGES) {
      throw new LapinError(`more than ${MAX_STAGES} stages (FROM lines), lapin's limit for a Containerfile`, { at: instruction.at, hint: 'an image needs a few stages; COPY --from= what you need from fewer of them' });
    }
    this.current = {
      index: this.stages.length,
      ...(name === undefined ? {} : { name }),
      base,
      ops: [],
      at: instruction.at,
      config: emptyConfig(),
      urunc: {},
      env: new Map(),
      args: new Map(),
      workdir: '/',
      shell: DEFAULT_SHELL,
      ...(architecture === undefined ? {} : { architecture }),
    };
  }

  /** ARG before FROM declares a global (usable in FROM); inside a stage it brings a value into scope. */
  private arg(instruction: Instruction, stage: Stage | undefined): void {
    this.takeFlags(instruction, {});
    const words = quotedWords(instruction, this.escapeToken);
    if (words.length === 0) throw new LapinError('ARG needs a name: ARG <name>[=<default>]', { at: instruction.at });
    for (const word of words) {
      const equals = word.text.indexOf('=');
      const name = equals < 0 ? word.text : word.text.slice(0, equals);
      if (name === '') throw new LapinError('ARG names cannot be blank', { at: this.at(instruction, word.index) });
      this.declaredArgs.add(name);
      const lookup = stage === undefined ? this.globalLookup() : this.stageLookup(stage);
      let value = this.buildArg(name);
      if (value === undefined && equals >= 0) {
        value = this.expandWord(instruction, { text: word.text.slice(equals + 1), index: word.index + equals + 1 }, lookup);
      }
      if (stage === undefined) {
        this.globalArgs.set(name, value ?? this.platformValues.get(name));
      } else {
        stage.args.set(name, value ?? this.globalArgs.get(name) ?? this.platformValues.get(name));
      }
    }
  }

  // --- filesystem

  private copy(instruction: Instruction, stage: Stage, isAdd: boolean): void {
    const keyword = instruction.keyword;
    const flags = this.takeFlags(
      instruction,
      isAdd
        ? { chown: 'string', chmod: 'string', link: 'bool', checksum: 'string', 'keep-git-dir': 'bool', exclude: 'string', unpack: 'bool' }
        : { from: 'string', chown: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'string' },
    );
    for (const name of ['checksum', 'keep-git-dir', 'unpack', 'parents', 'exclude']) {
      const flag = flags.get(name);
      if (flag !== undefined) {
        throw new ExecutionNeeded(`${keyword} --${name}`, `not supported: ${keyword} --${name}`, {
          at: flag.at,
          hint: name === 'exclude' || name === 'parents' ? 'list the files to copy explicitly' : 'remove the flag',
        });
      }
    }
    const json = jsonArray(instruction);
    if (json === undefined && /^\[\s*["']/.test(instruction.args.trimStart())) {
      // docker reads it as paths too, so ["a", is a source named `["a",`; [a-z]* is a glob.
      this.warnings.push({
        message: `${keyword} starts with "[" but is not a JSON array, so its words are read as paths: ${plainWords(instruction).map((w) => w.text).join(' ')}; check the brackets and quotes`,
        at: this.at(instruction, instruction.argsStart + instruction.args.indexOf('[')),
      });
    }
    const words: Word[] =
      json === undefined
        ? plainWords(instruction)
        : json.map((text) => ({ text, index: instruction.argsStart + instruction.args.indexOf('['), fromJson: true }));
    const destinationWord = words[words.length - 1];
    if (destinationWord === undefined || words.length < 2) {
      throw new LapinError(`${keyword} needs a source and a destination: ${keyword} <source>... <destination>`, {
        at: instruction.at,
      });
    }
    const lookup = this.stageLookup(stage);
    const sources: string[] = [];
    const inline: InlineFile[] = [];
    for (const word of words.slice(0, -1)) {
      const at = this.at(instruction, word.index);
      const heredoc = heredocWord(word.text);
      if (heredoc !== undefined) {
        inline.push(this.inlineFile(instruction, word, heredoc, lookup));
        continue;
      }
      if (!word.fromJson && /^\d*<<-?$/.test(word.text)) {
        throw new LapinError(`${keyword} ${word.text} with a blank before the delimiter is no here-document: ${word.text.endsWith('-') ? 'BuildKit reads no body, so the body lines would be read as instructions' : 'BuildKit reads the body but copies files named << and the delimiter'}`, {
          at,
          hint: `write ${word.text}EOF, without the blank`,
        });
      }
      const source = this.expandWord(instruction, word, lookup);
      if (source === '') throw new LapinError(`${keyword} source is empty after variable expansion`, { at });
      if (/^(https?|git):\/\//i.test(source) || source.startsWith('git@')) {
        throw new ExecutionNeeded(`${keyword} of a URL`, `not supported: ${keyword} of a URL; lapin packages local pre-built artifacts`, {
          at,
          hint: 'download the file into the build context first and COPY it',
        });
      }
      sources.push(source);
    }
    const destinationAt = this.at(instruction, destinationWord.index);
    if (heredocWord(destinationWord.text) !== undefined) {
      throw new LapinError(`${keyword} cannot take a here-document as its destination`, {
        at: destinationAt,
        hint: `write ${keyword} <<EOF <destination>`,
      });
    }
    const written = this.expandWord(instruction, destinationWord, lookup);
    if (written === '') throw new LapinError(`${keyword} destination is empty after variable expansion`, { at: destinationAt });
    if (written.includes('\0')) throw new LapinError(`${keyword} destination contains a NUL byte, which no path can hold`, { at: destinationAt, hint: 'remove it from the file or the build argument' });
    const intoDirectory = written.endsWith('/') || written === '.' || written.endsWith('/.');
    let destination = cleanPath(written.startsWith('/') ? written : `${stage.workdir}/${written}`);
    if (intoDirectory && !destination.endsWith('/')) destination += '/';
    if (sources.length + inline.length > 1 && !destination.endsWith('/')) {
      throw new LapinError(`${keyword} with more than one source needs a directory destination ending in /`, {
        at: destinationAt,
        hint: `write ${written}/`,
      });
    }

    const op: CopyOp = { kind: 'copy', sources, destination, at: instruction.at };
    if (inline.length > 0) op.inline = inline;
    if (isAdd) op.isAdd = true;
    const from = flags.get('from');
    if (from !== undefined) {
      op.fromStage = this.fromStage(keyword, from, stage, lookup);
      op.fromAt = from.at;
    }
    const chmod = flags.get('chmod');
    if (chmod !== undefined) op.mode = this.mode(keyword, chmod, lookup);
    const chown = flags.get('chown');
    if (chown !== undefined) Object.assign(op, this.owner(keyword, chown, lookup));
    stage.ops.push(op);
  }

  /**
   * The file a `<<NAME` source writes (instructions parseSourcesAndDest):
   * the body of the instruction's last here-document of that name, `<<-`
   * stripping leading tabs, then, unless the delimiter is quoted, variables
   * expanded with the stage's ARG and ENV values (SourcesAndDest.ExpandRaw).
   */
  private inlineFile(instruction: Instruction, word: Word, heredoc: HeredocWord, lookup: VariableLookup): InlineFile {
    const { keyword } = instruction;
    const at = this.at(instruction, word.index);
    const { name } = heredoc;
    if (name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
      throw new LapinError(`${keyword} ${abbreviate(word.text)}: a here-document's delimiter is the name of its file, and ${JSON.stringify(abbreviate(name))} is not a file name`, {
        at,
        hint: 'use a delimiter such as EOF, and name the file in the destination',
      });
    }
    const body = instruction.heredocs.findLast((candidate) => candidate.name === name);
    if (body === undefined) {
      // JSON form: BuildKit reads no body, yet takes the word for a here-document.
      this.warnings.push({ message: `${keyword} in JSON form reads no here-document body, so ${abbreviate(word.text)} is an empty file ${abbreviate(name)}, as in BuildKit`, at });
      return { name, data: '' };
    }
    const chomped = heredoc.chomp ? chompContent(body.content) : { content: body.content, removed: [] };
    if (!heredoc.expand) return { name, data: chomped.content };
    const position = (offset: number): SourcePosition => {
      const before = chomped.content.slice(0, offset);
      const line = before.split('\n').length - 1;
      const column = offset - (before.lastIndexOf('\n') + 1) + (chomped.removed[line] ?? 0) + 1;
      return { file: this.file, line: body.bodyLine + line, column };
    };
    let data: string;
    try {
      data = processHeredoc(chomped.content, lookup);
    } catch (error) {
      if (error instanceof ShellWordError) {
        const message = error.message.replaceAll('\r', '\\r').replaceAll('\n', '\\n');
        throw new LapinError(`${message} in the here-document ${abbreviate(name)}`, {
          at: position(error.offset),
          hint: `quote the delimiter (${keyword} <<"${abbreviate(name)}") to keep $ and \\ as they are`,
        });
      }
      throw error;
    }
    this.expanded += data.length;
    if (this.expanded > MAX_EXPANDED_TOTAL) {
      throw new LapinError(expansionTooLarge(MAX_EXPANDED_TOTAL), { at: position(0), hint: 'expand fewer or shorter variables' });
    }
    return { name, data };
  }

  /** The stage a `--from` names: an earlier stage's name, or its index as a decimal string. */
  private fromStage(keyword: string, flag: Flag, stage: Stage, lookup: VariableLookup): string {
    const reference = this.expandFlag(flag, lookup);
    if (/^\d+$/.test(reference)) {
      const index = Number(reference);
      if (index < stage.index) return String(index);
      throw new LapinError(
        index === stage.index
          ? `${keyword} --from=${reference} refers to this stage itself`
          : `${keyword} --from=${reference}: there is no stage ${reference} before this one`,
        { at: flag.at },
      );
    }
    const name = reference.toLowerCase();
    if (this.stages.some((earlier) => earlier.name === name)) return name;
    if (stage.name === name) throw new LapinError(`${keyword} --from=${reference} refers to this stage itself`, { at: flag.at });
    if (this.allStageNames.has(name)) {
      throw new LapinError(`${keyword} --from=${reference} refers to a stage defined later`, {
        at: flag.at,
        hint: `move stage ${name} before this one`,
      });
    }
    // Not a stage: an image, which the build pulls (src/registry/base.ts).
    return reference;
  }

  private mode(keyword: string, flag: Flag, lookup: VariableLookup): number {
    const value = this.expandFlag(flag, lookup);
    const mode = /^[0-7]+$/.test(value) ? parseInt(value, 8) : NaN;
    if (!(mode <= 0o7777)) {
      throw new LapinError(`${keyword} --chmod=${value} is not an octal mode`, { at: flag.at, hint: 'write e.g. --chmod=0755' });
    }
    return mode;
  }

  private owner(keyword: string, flag: Flag, lookup: VariableLookup): { uid: number; gid: number } {
    const value = this.expandFlag(flag, lookup);
    const parts = value.split(':');
    if (parts.length > 2) {
      throw new LapinError(`${keyword} --chown=${value} is not uid[:gid]`, { at: flag.at });
    }
    const id = (part: string, what: 'user' | 'group'): number => {
      if (part === 'root') return 0;
      if (/^\d+$/.test(part) && Number(part) <= MAX_ID) return Number(part);
      if (part === '' || /^\d+$/.test(part)) {
        throw new LapinError(`${keyword} --chown=${value} has an invalid ${what}`, { at: flag.at });
      }
      throw new LapinError(`${keyword} --chown=${value}: ${what} names need the image's /etc/passwd and /etc/group`, {
        at: flag.at,
        hint: 'use numeric ids, e.g. --chown=1000:1000 (root is accepted)',
      });
    };
    const uid = id(parts[0] ?? '', 'user');
    const gid = parts[1] === undefined ? uid : id(parts[1], 'group');
    return { uid, gid };
  }

  // --- config

  private label(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const lookup = this.stageLookup(stage);
    for (const pair of this.nameValues(instruction)) {
      const at = this.at(instruction, pair.name.index);
      const name = this.expandWord(instruction, pair.name, lookup);
      if (name === '') throw new LapinError('LABEL names cannot be blank', { at });
      const value = this.expandWord(instruction, pair.value, lookup);
      const short = shortUruncKey(name);
      if (short === undefined) setEntry(stage.config.labels, name, value);
      else setEntry(stage.urunc, checkUruncKey(short, name, at), { value, at });
    }
  }

  private stageIndex(stage: Stage): StageIndex {
    let index = this.stageIndexes.get(stage);
    if (index === undefined) {
      index = { envLines: new Map(), volumes: new Set(stage.config.volumes), ports: new Map() };
      for (const [i, line] of stage.config.env.entries()) {
        const name = line.slice(0, line.indexOf('='));
        if (!index.envLines.has(name)) index.envLines.set(name, i);
      }
      for (const entry of stage.config.exposedPorts) {
        const [port, protocol] = entry.split('/');
        let runs = index.ports.get(protocol ?? 'tcp');
        if (runs === undefined) {
          runs = new PortRuns();
          index.ports.set(protocol ?? 'tcp', runs);
        }
        runs.take(Number(port));
      }
      this.stageIndexes.set(stage, index);
    }
    return index;
  }

  private env(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    // All pairs see the variables as they were before this ENV, as in Docker: every pair is expanded before any is set
    // (a copy of the variables for each ENV made 16,000 ENV lines take 29 s).
    const lookup = this.stageLookup(stage);
    const assignments = this.nameValues(instruction).map((pair) => {
      const at = this.at(instruction, pair.name.index);
      const name = this.expandWord(instruction, pair.name, lookup);
      if (name === '') throw new LapinError('ENV names cannot be blank', { at });
      return { name, value: this.expandWord(instruction, pair.value, lookup) };
    });
    // Where each name's NAME=value line is: a search of the list for every pair made 8000 pairs take a second, a 1 MiB file minutes.
    const lines = this.stageIndex(stage).envLines;
    for (const { name, value } of assignments) {
      stage.env.set(name, value);
      const entry = `${name}=${value}`;
      const existing = lines.get(name);
      if (existing === undefined) {
        lines.set(name, stage.config.env.length);
        stage.config.env.push(entry);
      } else stage.config.env[existing] = entry;
    }
  }

  /** CMD and ENTRYPOINT: a JSON array as is, anything else run by the SHELL. */
  private command(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    if (instruction.args === '') {
      throw new LapinError(`${instruction.keyword} needs a command`, {
        at: instruction.at,
        hint: `write ${instruction.keyword} ["program", "argument"]`,
      });
    }
    const json = jsonArray(instruction);
    const bracket = instruction.args.indexOf('[');
    if (json === undefined && instruction.args.trimStart().startsWith('[')) {
      // docker takes it as the shell form too; a unikernel has no shell to run it.
      this.warnings.push({
        message: `${instruction.keyword} starts with "[" but is not a JSON array, so it is read as a shell command: ${JSON.stringify([...stage.shell, instruction.args])}; check the brackets and quotes`,
        at: this.at(instruction, instruction.argsStart + bracket),
      });
    }
    const value = json ?? [...stage.shell, instruction.args];
    const located = { value, at: instruction.at };
    if (instruction.keyword === 'CMD') stage.config.cmd = located;
    else stage.config.entrypoint = located;
  }

  private shell(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const value = jsonArray(instruction);
    if (value === undefined || value.length === 0) {
      throw new LapinError('SHELL takes a non-empty JSON array', {
        at: instruction.at,
        hint: 'write SHELL ["/bin/sh", "-c"]',
      });
    }
    stage.shell = value;
  }

  private workdir(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const path = this.singleArgument(instruction, stage, 'a path');
    if (path.includes('\0')) throw new LapinError('WORKDIR contains a NUL byte, which no path can hold', { at: instruction.at, hint: 'remove it from the file or the build argument' });
    stage.workdir = cleanPath(path.startsWith('/') ? path : `${stage.workdir}/${path}`);
    stage.config.workingDir = stage.workdir;
  }

  private user(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    stage.config.user = this.singleArgument(instruction, stage, 'a user: USER <uid>[:<gid>]');
  }

  private expose(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const words = plainWords(instruction);
    if (words.length === 0) throw new LapinError('EXPOSE needs at least one port', { at: instruction.at });
    const lookup = this.stageLookup(stage);
    for (const word of words) {
      const at = this.at(instruction, word.index);
      const spec = this.expandWord(instruction, word, lookup);
      const match = /^(\d+)(?:-(\d+))?(?:\/([A-Za-z]+))?$/.exec(spec);
      const first = Number(match?.[1]);
      const last = match?.[2] === undefined ? first : Number(match[2]);
      const protocol = (match?.[3] ?? 'tcp').toLowerCase();
      if (match === null || !(first <= last && last <= 65535) || !['tcp', 'udp', 'sctp'].includes(protocol)) {
        throw new LapinError(`invalid port ${spec}`, {
          at,
          hint: 'EXPOSE takes <port>[/tcp|udp|sctp] or <first>-<last>[/protocol]',
        });
      }
      // Only the ports not yet exposed are visited: 'EXPOSE 1-65535' 100,000 times walked each range whole, again and again.
      const index = this.stageIndex(stage);
      let runs = index.ports.get(protocol);
      if (runs === undefined) {
        runs = new PortRuns();
        index.ports.set(protocol, runs);
      }
      for (let port = runs.free(first); port <= last; port = runs.free(port + 1)) {
        stage.config.exposedPorts.push(`${port}/${protocol}`);
        runs.take(port);
      }
    }
  }

  private stopSignal(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const signal = this.singleArgument(instruction, stage, 'a signal');
    if (!isSignal(signal)) {
      throw new LapinError(`unknown signal ${signal}`, {
        at: this.at(instruction, instruction.argsStart),
        hint: 'write a signal name such as SIGTERM, or its number',
      });
    }
    stage.config.stopSignal = signal;
  }

  private volume(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    const json = jsonArray(instruction);
    const words: Word[] =
      json === undefined
        ? plainWords(instruction)
        : json.map((text) => ({ text, index: instruction.argsStart + instruction.args.indexOf('['), fromJson: true }));
    if (words.length === 0) throw new LapinError('VOLUME needs at least one path', { at: instruction.at });
    const lookup = this.stageLookup(stage);
    for (const word of words) {
      const path = this.expandWord(instruction, word, lookup);
      if (path === '') {
        throw new LapinError('VOLUME paths cannot be empty', { at: this.at(instruction, word.index) });
      }
      const volumes = this.stageIndex(stage).volumes;
      if (!volumes.has(path)) stage.config.volumes.push(path);
      volumes.add(path);
    }
  }

  /** MAINTAINER is deprecated; its text is kept as the `maintainer` label Docker recommends instead. */
  private maintainer(instruction: Instruction, stage: Stage): void {
    this.takeFlags(instruction, {});
    if (instruction.args === '') throw new LapinError('MAINTAINER needs a name', { at: instruction.at });
    setEntry(stage.config.labels, 'maintainer', instruction.args);
  }

  private healthcheck(instruction: Instruction): void {
    if (instruction.flags.length === 0 && instruction.args.toUpperCase() === 'NONE') return;
    throw new LapinError('not supported: HEALTHCHECK; urunc runs no health checks inside a unikernel', {
      at: instruction.at,
      hint: 'remove it (HEALTHCHECK NONE is accepted)',
    });
  }
}

/** A word as quoted in a message: long ones are cut, so the one-line error stays one line. */
function abbreviate(text: string): string {
  return text.length <= 80 ? text : `${text.slice(0, 60)}...`;
}

/** Go's strconv.ParseBool. */
function parseBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}
