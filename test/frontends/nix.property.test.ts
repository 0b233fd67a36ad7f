import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseNixData, type NixValue } from '../../src/frontends/nix-parser.js';
import { parseArgsNix } from '../../src/frontends/nix.js';

const seedText = readFileSync(fileURLToPath(new URL('../fixtures/nix/args.nix', import.meta.url)), 'utf8');

// ---- a model of Nix data, a printer for it, and the parsed value in the same shape ----

type Model =
  | { kind: 'set'; entries: Array<[string, Model]> }
  | { kind: 'list'; items: Model[] }
  | { kind: 'string'; value: string }
  | { kind: 'int'; value: bigint }
  | { kind: 'float'; value: number }
  | { kind: 'bool'; value: boolean }
  | { kind: 'null' }
  | { kind: 'path'; text: string };

function fromParsed(value: NixValue): Model {
  switch (value.kind) {
    case 'set':
      return { kind: 'set', entries: [...value.attrs.values()].map((attribute) => [attribute.name, fromParsed(attribute.value)]) };
    case 'list':
      return { kind: 'list', items: value.items.map(fromParsed) };
    case 'null':
      return { kind: 'null' };
    case 'path':
      return { kind: 'path', text: value.text };
    case 'string':
      return { kind: 'string', value: value.value };
    case 'int':
      return { kind: 'int', value: value.value };
    case 'float':
      return { kind: 'float', value: value.value };
    case 'bool':
      return { kind: 'bool', value: value.value };
  }
}

/** Text pieces that may be special somewhere in Nix strings. */
const trickyText = fc.string({
  unit: fc.oneof(
    fc.constantFrom('$', '{', '}', '${', '$${', '\\', '"', "'", "''", "'''", '\n', '\r', '\r\n', '\t', ' ', '  ', '#', '/*', '*/', 'a', 'é', '🐇'),
    fc.string({ maxLength: 1 }),
  ),
  maxLength: 12,
});

const NIX_FLOAT_LIMIT = 1e300;

/** fc.record without a null prototype, so deepEqual compares like with like. */
const plainRecord = <T>(fields: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> => fc.record(fields, { noNullPrototype: true });

const modelArbitrary = fc.letrec<{ value: Model }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    plainRecord({ kind: fc.constant('string' as const), value: trickyText }),
    plainRecord({ kind: fc.constant('int' as const), value: fc.bigInt(-(2n ** 63n) + 1n, 2n ** 63n - 1n) }),
    plainRecord({
      kind: fc.constant('float' as const),
      value: fc.double({ noNaN: true, noDefaultInfinity: true, min: -NIX_FLOAT_LIMIT, max: NIX_FLOAT_LIMIT }),
    }),
    plainRecord({ kind: fc.constant('bool' as const), value: fc.boolean() }),
    fc.constant({ kind: 'null' as const }),
    plainRecord({
      kind: fc.constant('path' as const),
      text: fc.stringMatching(/^(\.\/|\.\.\/|\/|~\/|[a-z]+\/)[a-zA-Z0-9._+-]{1,6}(\/[a-zA-Z0-9._+-]{1,6}){0,2}$/),
    }),
    plainRecord({ kind: fc.constant('list' as const), items: fc.array(tie('value'), { maxLength: 4 }) }),
    plainRecord({
      kind: fc.constant('set' as const),
      entries: fc.uniqueArray(fc.tuple(fc.oneof(trickyText, fc.constantFrom('a', 'b', 'or', 'if', 'x-y', "z'", 'true')), tie('value')), {
        maxLength: 4,
        selector: ([name]) => name,
      }),
    }),
  ),
})).value;

interface PrintStyle {
  /** Whitespace and comments to put between tokens, used in turn. */
  separators: string[];
  indentedStrings: boolean;
  dottedPaths: boolean;
  escapeEverything: boolean;
}

const styleArbitrary: fc.Arbitrary<PrintStyle> = fc.record({
  separators: fc.array(fc.constantFrom(' ', '\n', '\t', '\r\n', ' # comment $ { "\n', ' /* block\n ${ */ ', '  \n  '), { minLength: 1, maxLength: 5 }),
  indentedStrings: fc.boolean(),
  dottedPaths: fc.boolean(),
  escapeEverything: fc.boolean(),
});

const KEYWORDS = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit', 'or']);

class Printer {
  private turn = 0;
  constructor(private readonly style: PrintStyle) {}

  private sep(): string {
    const separator = this.style.separators[this.turn % this.style.separators.length] ?? ' ';
    this.turn++;
    return separator;
  }

  quoted(text: string): string {
    let out = '"';
    for (let i = 0; i < text.length; i++) {
      const ch = text[i] as string;
      if (ch === '\\' || ch === '"') out += '\\' + ch;
      else if (ch === '\r') out += '\\r';
      else if (ch === '\n') out += this.style.escapeEverything ? '\\n' : '\n';
      else if (ch === '\t') out += this.style.escapeEverything ? '\\t' : '\t';
      else if (ch === '$' && (text[i + 1] === '{' || this.style.escapeEverything)) out += '\\$';
      else out += ch;
    }
    return out + '"';
  }

  /** An indented string whose value is exactly `text` (no indentation is stripped). */
  indented(text: string): string {
    const chars = [...text];
    const escape = (ch: string): string => {
      if (ch === '\n') return "''\\n";
      if (ch === '\r') return "''\\r";
      if (ch === '\t') return "''\\t";
      // ''\n means a newline, so these letters can only be written as themselves.
      if (ch === 'n' || ch === 'r' || ch === 't') return ch;
      return "''\\" + ch;
    };
    let out = "''";
    chars.forEach((ch, index) => {
      // An escape first makes the minimum indentation zero, so nothing is stripped;
      // an escaped last space is not dropped as a whitespace-only last line.
      const first = index === 0;
      const lastSpace = index === chars.length - 1 && ch === ' ';
      if (first || lastSpace || this.style.escapeEverything || ch === "'") out += escape(ch);
      else if (ch === '$') out += "''$";
      else out += ch;
    });
    return out + "''";
  }

  string(text: string): string {
    return this.style.indentedStrings ? this.indented(text) : this.quoted(text);
  }

  key(name: string): string {
    return /^[a-zA-Z_][a-zA-Z0-9_'-]*$/.test(name) && !KEYWORDS.has(name) ? name : this.quoted(name);
  }

  value(model: Model, inList: boolean): string {
    switch (model.kind) {
      case 'string':
        return this.string(model.value);
      case 'int':
      case 'float': {
        const text = model.kind === 'int' ? model.value.toString() : printFloat(model.value);
        return text.startsWith('-') && inList ? `(${text})` : text;
      }
      case 'bool':
        return String(model.value);
      case 'null':
        return 'null';
      case 'path':
        return model.text;
      case 'list':
        return `[${model.items.map((item) => this.sep() + this.value(item, true)).join('')}${this.sep()}]`;
      case 'set': {
        const bindings = model.entries.flatMap(([name, value]) => this.bindings([this.key(name)], value));
        return `{${bindings.map((binding) => this.sep() + binding).join('')}${this.sep()}}`;
      }
    }
  }

  private bindings(path: string[], value: Model): string[] {
    if (this.style.dottedPaths && value.kind === 'set' && value.entries.length > 0) {
      return value.entries.flatMap(([name, inner]) => this.bindings([...path, this.key(name)], inner));
    }
    return [`${path.join('.')}${this.sep()}=${this.sep()}${this.value(value, false)};`];
  }
}

/** A float literal Nix reads back exactly: it needs a '.', so always use exponent form. */
function printFloat(value: number): string {
  const text = Math.abs(value).toExponential(16);
  return Object.is(value, -0) || value < 0 ? `-${text}` : text;
}

// ---- robustness: any input yields a value or a positioned LapinError ----

function lines(text: string): string[] {
  return text.split(/\r\n|\r|\n/);
}

function checkOutcome(text: string, parse: (text: string) => unknown): void {
  try {
    parse(text);
  } catch (error) {
    if (!(error instanceof LapinError)) {
      assert.fail(`non-LapinError for ${JSON.stringify(text)}: ${error instanceof Error ? error.stack : String(error)}`);
    }
    assert.ok(error.at, `error without a position: ${error.message}`);
    const allLines = lines(text);
    assert.ok(error.at.line >= 1 && error.at.line <= allLines.length, `line ${error.at.line} of ${allLines.length}: ${error.message}`);
    const lineLength = [...(allLines[error.at.line - 1] ?? '')].length;
    assert.ok(error.at.column >= 1 && error.at.column <= lineLength + 1, `column ${error.at.column} of ${lineLength}: ${error.message}`);
    assert.ok(error.message.length > 0);
  }
}

function checkBoth(text: string): void {
  checkOutcome(text, (t) => parseNixData(t, 'args.nix'));
  checkOutcome(text, (t) => parseArgsNix(t, 'args.nix'));
}

const nixFragments = fc.constantFrom(
  '{', '}', '[', ']', '(', ')', '"', "''", "'", '${', '$', '\\', '=', ';', '.', '..', '...', '/', '//', '*', '/*', '*/', '#',
  '\n', '\r', ' ', 'a', 'x.y', '1', '1.5', '-', '+', '++', '~', '<', '>', ':', '@', ',', '?', '!', 'rec', 'let', 'in', 'inherit',
  'true', 'null', './a', '/b', '~/c', '<nixpkgs>', 'http://x', 'e5', '\uD800', '🐇', '\u0000',
);

/** Text edits applied to the seed file: insertions and deletions at random places. */
const seedMutation = fc.array(
  fc.record({
    at: fc.nat(),
    deleteCount: fc.nat({ max: 6 }),
    insert: fc.oneof(fc.string({ maxLength: 4 }), nixFragments),
  }),
  { minLength: 1, maxLength: 4 },
);

function mutate(text: string, edits: Array<{ at: number; deleteCount: number; insert: string }>): string {
  let result = text;
  for (const edit of edits) {
    const offset = edit.at % (result.length + 1);
    result = result.slice(0, offset) + edit.insert + result.slice(offset + edit.deleteCount);
  }
  return result;
}

describe('nix data parser properties', () => {
  test('printed values parse back to the same value', () => {
    fc.assert(
      fc.property(modelArbitrary, styleArbitrary, (model, style) => {
        const text = new Printer(style).value(model, false);
        let parsed: NixValue;
        try {
          parsed = parseNixData(text, 'gen.nix');
        } catch (error) {
          assert.fail(`failed to parse ${JSON.stringify(text)}: ${error instanceof LapinError ? error.describe() : String(error)}`);
        }
        assert.deepEqual(fromParsed(parsed), model, `text: ${JSON.stringify(text)}`);
      }),
      { numRuns: 400 },
    );
  });

  test('arbitrary strings give a value or a positioned LapinError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 60 }), checkBoth), { numRuns: 300 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), checkBoth), { numRuns: 300 });
    fc.assert(fc.property(fc.string({ unit: nixFragments, maxLength: 30 }), checkBoth), { numRuns: 500 });
  });

  test('mutations of the seed args.nix give a plan or a positioned LapinError', () => {
    fc.assert(
      fc.property(seedMutation, (edits) => checkBoth(mutate(seedText, edits))),
      { numRuns: 500 },
    );
  });

  test('the unmutated seed parses', () => {
    assert.equal(parseArgsNix(seedText, 'args.nix').urunc.hypervisor?.value, 'hvt');
  });
});
