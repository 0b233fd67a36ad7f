import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { LapinError } from '../../src/errors.js';
import { parseNixData, type NixValue } from '../../src/frontends/nix-parser.js';

type Plain = bigint | number | string | boolean | null | { path: string } | Plain[] | { [name: string]: Plain };

/** The value without positions: sets as objects, paths as { path }. */
function plain(value: NixValue): Plain {
  switch (value.kind) {
    case 'set': {
      const result: { [name: string]: Plain } = {};
      for (const [name, attribute] of value.attrs) result[name] = plain(attribute.value);
      return result;
    }
    case 'list':
      return value.items.map(plain);
    case 'path':
      return { path: value.text };
    case 'null':
      return null;
    default:
      return value.value;
  }
}

function parse(text: string): Plain {
  return plain(parseNixData(text, 'args.nix'));
}

/** The LapinError parsing `text` throws, checked to be at line:column. */
function errorAt(text: string, line: number, column: number, message?: RegExp): LapinError {
  let caught: unknown;
  try {
    parseNixData(text, 'args.nix');
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof LapinError, `expected a LapinError for ${JSON.stringify(text)}, got ${String(caught)}`);
  assert.deepEqual(caught.at, { file: 'args.nix', line, column }, `position of: ${caught.message}`);
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('nix data parser: values', () => {
  test('attribute sets with plain, quoted and dotted names', () => {
    assert.deepEqual(parse('{ a = 1; "b c" = 2; x.y.z = 3; }'), { a: 1n, 'b c': 2n, x: { y: { z: 3n } } });
    assert.deepEqual(parse('{ }'), {});
    assert.deepEqual(parse('{ "" = 1; "a.b" = 2; }'), { '': 1n, 'a.b': 2n });
    assert.deepEqual(parse("{ a-b_c' = 1; or = 2; }"), { "a-b_c'": 1n, or: 2n });
    assert.deepEqual(parse('{ a."b.c".d = true; }'), { a: { 'b.c': { d: true } } });
  });

  test('attributes keep the order they were written in', () => {
    const value = parseNixData('{ z = 1; a = 2; m.x = 3; b = 4; }', 'args.nix');
    assert.equal(value.kind, 'set');
    if (value.kind === 'set') assert.deepEqual([...value.attrs.keys()], ['z', 'a', 'm', 'b']);
  });

  test('dotted paths merge with each other and with literal sets, as in Nix', () => {
    assert.deepEqual(parse('{ a.b = 1; a.c = 2; a = { d = 3; }; }'), { a: { b: 1n, c: 2n, d: 3n } });
    assert.deepEqual(parse('{ a = { b = 1; }; a.c.d = 2; a.c.e = 3; }'), { a: { b: 1n, c: { d: 2n, e: 3n } } });
  });

  test('lists, numbers, booleans, null', () => {
    assert.deepEqual(parse('[ 1 2.5 "x" true false null [ ] { } ]'), [1n, 2.5, 'x', true, false, null, [], {}]);
    assert.deepEqual(parse('-7'), -7n);
    assert.deepEqual(parse('- 7'), -7n);
    assert.deepEqual(parse('-2.5'), -2.5);
    assert.deepEqual(parse('[ (-1) (-0.5) (2) ]'), [-1n, -0.5, 2n]);
    assert.deepEqual(parse('{ a = -1; }'), { a: -1n });
    assert.deepEqual(parse('9223372036854775807'), 9223372036854775807n);
    assert.deepEqual(parse('-9223372036854775807'), -9223372036854775807n);
    assert.deepEqual(parse('[ .5 1. 0.25 1.5e3 2.0E-1 007 ]'), [0.5, 1, 0.25, 1500, 0.2, 7n]);
  });

  test('path literals are kept as written', () => {
    assert.deepEqual(parse('[ ./foo ../x /abs ~/x a/b ./a.b/c-d+e_f ./. ]'), [
      { path: './foo' },
      { path: '../x' },
      { path: '/abs' },
      { path: '~/x' },
      { path: 'a/b' },
      { path: './a.b/c-d+e_f' },
      { path: './.' },
    ]);
  });

  test('comments of both styles are ignored', () => {
    const text = '# leading\n{ /* block\n * comment */ a = 1; # trailing\n b = /**/ 2; }\n# end';
    assert.deepEqual(parse(text), { a: 1n, b: 2n });
    assert.deepEqual(parse('1/*c*/'), 1n);
    assert.deepEqual(parse('{ a = "x#y"; b = "/* no */"; }'), { a: 'x#y', b: '/* no */' });
  });

  test('a leading byte order mark is ignored', () => {
    assert.deepEqual(parse('\ufeff{ a = 1; }'), { a: 1n });
    errorAt('{ a = \ufeff1; }', 1, 7, /U\+FEFF/);
  });

  test('parentheses around data are accepted', () => {
    assert.deepEqual(parse('({ a = ("x"); })'), { a: 'x' });
  });

  test('every node records its 1-based line and column', () => {
    const value = parseNixData('{\n  a = [ 1\n    "s" ];\n\tb.c = -3;\n}', 'f.nix');
    assert.equal(value.kind, 'set');
    if (value.kind !== 'set') return;
    assert.deepEqual(value.at, { file: 'f.nix', line: 1, column: 1 });
    const a = value.attrs.get('a');
    assert.deepEqual(a?.at, { file: 'f.nix', line: 2, column: 3 });
    assert.equal(a?.value.kind, 'list');
    if (a?.value.kind === 'list') {
      assert.deepEqual(a.value.at, { file: 'f.nix', line: 2, column: 7 });
      assert.deepEqual(a.value.items.map((item) => [item.at.line, item.at.column]), [
        [2, 9],
        [3, 5],
      ]);
    }
    const b = value.attrs.get('b');
    assert.deepEqual(b?.at, { file: 'f.nix', line: 4, column: 2 });
    if (b?.value.kind === 'set') {
      const c = b.value.attrs.get('c');
      assert.deepEqual(c?.at, { file: 'f.nix', line: 4, column: 4 });
      assert.deepEqual(c?.value.at, { file: 'f.nix', line: 4, column: 8 });
    } else assert.fail('b should be a set');
  });

  test('columns count characters, and CR LF / CR end lines', () => {
    errorAt('{ a = "é🐇"; b = x; }', 1, 17, /variable reference/);
    errorAt('{\r\n  a = x;\r\n}', 2, 7);
    errorAt('{\r  a = 1;\r  b = y;\r}', 3, 7);
  });
});

describe('nix data parser: strings', () => {
  test('escapes in double-quoted strings', () => {
    assert.equal(parse(String.raw`"a\nb\tc\rd\\e\"f\$g\qh"`), 'a\nb\tc\rd\\e"f$gqh');
    assert.equal(parse(String.raw`"\${x}"`), '${x}');
  });

  test('dollars that do not start an interpolation are literal', () => {
    assert.equal(parse('"$${x}"'), '$${x}');
    assert.equal(parse('"a $ b $"'), 'a $ b $');
    assert.equal(parse('"$\\n"'), '$\n');
    assert.equal(parse('"$$"'), '$$');
  });

  test('CR and CR LF inside a string read as LF', () => {
    assert.equal(parse('"a\r\nb\rc"'), 'a\nb\nc');
  });

  test('non-ASCII text is kept', () => {
    assert.equal(parse('"héllo 🐇 \\🐇"'), 'héllo 🐇 🐇');
  });

  test('indented strings strip the common indentation', () => {
    assert.equal(parse("''\n    foo\n      bar\n    baz\n  ''"), 'foo\n  bar\nbaz\n');
    assert.equal(parse("''foo''"), 'foo');
    assert.equal(parse("''  foo  ''"), 'foo  ');
    assert.equal(parse("''''"), '');
    // Empty lines do not count towards the indentation.
    assert.equal(parse("''\n  a\n\n  b\n''"), 'a\n\nb\n');
    // A whitespace-only last line is dropped, an indented last text line is kept.
    assert.equal(parse("''\n  a\n  b''"), 'a\nb');
    // The opening line's spaces before the newline are skipped.
    assert.equal(parse("''   \n  x\n''"), 'x\n');
    // Tabs are not indentation.
    assert.equal(parse("''\n\tx\n  y\n''"), '\tx\n  y\n');
  });

  test('indented string escapes', () => {
    assert.equal(parse("''a''$b''"), 'a$b');
    assert.equal(parse("''a'''b''"), "a''b");
    assert.equal(parse("''a''\\nb''\\tc''\\\\d''"), 'a\nb\tc\\d');
    assert.equal(parse("''it's''"), "it's");
    assert.equal(parse("''$${x}''"), '$${x}');
    assert.equal(parse("''a$''"), 'a$');
    assert.equal(parse("''a'$''"), "a'$");
  });

  test('escapes end the leading whitespace of their line, like interpolations', () => {
    // The escaped line has indentation 2, so only 2 spaces are removed elsewhere.
    assert.equal(parse("''\n    a\n  ''$b\n''"), '  a\n$b\n');
  });
});

describe('nix data parser: duplicate attributes', () => {
  test('a repeated name is an error at the second definition', () => {
    const error = errorAt('{\n  a = 1;\n  a = 2;\n}', 3, 3, /^attribute 'a' already defined at args\.nix:2:3$/);
    assert.ok(error.hint);
  });

  test('dotted paths through a non-set value collide', () => {
    errorAt('{ a = 1; a.b = 2; }', 1, 10, /^attribute 'a\.b' already defined at args\.nix:1:3$/);
    errorAt('{ a.b = 1; a.b = 2; }', 1, 12, /^attribute 'a\.b' already defined at args\.nix:1:5$/);
    errorAt('{ a.b = 1; a = { b = 3; }; }', 1, 18, /^attribute 'a\.b' already defined at args\.nix:1:5$/);
  });

  test('quoted and unquoted spellings are the same name', () => {
    errorAt('{ a = 1; "a" = 2; }', 1, 10, /attribute 'a' already defined/);
    errorAt('{ "x y" = 1; "x y" = 2; }', 1, 14, /attribute '"x y"' already defined at args\.nix:1:3/);
  });
});

describe('nix data parser: unsupported constructs', () => {
  const cases: Array<[string, string, number, number, RegExp]> = [
    ['string interpolation', '{ a = "x${y}"; }', 1, 9, /string interpolation \("\$\{\.\.\.\}"\)/],
    ['interpolation in an indented string', "{\n  a = ''\n    ${y}\n  '';\n}", 3, 5, /string interpolation/],
    ['dynamic attribute name', '{ ${a} = 1; }', 1, 3, /dynamic attribute name/],
    ['interpolation in an attribute name', '{ "a${b}" = 1; }', 1, 5, /string interpolation/],
    ['bare interpolation', '{ a = ${b}; }', 1, 7, /interpolation/],
    ['function with a name', 'args: { }', 1, 1, /function definition/],
    ['function with @-binding', 'args@{ a }: { }', 1, 1, /function definition/],
    ['let', 'let x = 1; in { a = x; }', 1, 1, /"let \.\.\. in"/],
    ['with', '{ a = with x; y; }', 1, 7, /"with"/],
    ['import', '{ a = import ./x.nix; }', 1, 7, /"import"/],
    ['if', '{ a = if true then 1 else 2; }', 1, 7, /"if \.\.\. then \.\.\. else"/],
    ['assert', 'assert true; { }', 1, 1, /"assert"/],
    ['rec', 'rec { a = 1; }', 1, 1, /recursive attribute set/],
    ['nested rec', '{\n  a = rec { };\n}', 2, 7, /recursive attribute set/],
    ['inherit', '{ inherit a; }', 1, 3, /"inherit"/],
    ['variable reference', '{ a = b; }', 1, 7, /variable reference \('b'\)/],
    ['function application', '(f 1)', 1, 2, /variable reference/],
    ['application of a literal', '("a" "b")', 1, 2, /function application/],
    ['list concatenation', '{ a = [ 1 ] ++ [ 2 ]; }', 1, 13, /operator '\+\+' \(list concatenation\)/],
    ['update', '{ a = { } // { }; }', 1, 11, /operator '\/\/'/],
    ['string concatenation', '{ a = "x" + "y"; }', 1, 11, /operator '\+'/],
    ['operator in a list', '[ 1 ++ 2 ]', 1, 5, /operator '\+\+'/],
    ['subtraction', '{ a = 2 - 1; }', 1, 9, /operator '-'/],
    ['negation of a non-number', '{ a = -b; }', 1, 7, /negation of a non-number/],
    ['not', '{ a = !true; }', 1, 7, /operator '!'/],
    ['comparison', '{ a = 1 < 2; }', 1, 9, /operator '<'/],
    ['attribute selection', '{ a = { b = 1; }.b; }', 1, 17, /attribute selection/],
    ['or default', '{ a = { } or 1; }', 1, 11, /"or" default/],
    ['search path', '{ a = <nixpkgs>; }', 1, 7, /search path \(<nixpkgs>\)/],
    ['URL literal', '{ a = https://example.org; }', 1, 7, /URL literal/],
    ['path interpolation', '{ a = ./${b}; }', 1, 7, /path interpolation/],
    ['path interpolation after a name', '{ a = ./x${b}; }', 1, 7, /path interpolation/],
  ];
  for (const [name, text, line, column, message] of cases) {
    test(name, () => {
      const error = errorAt(text, line, column, message);
      assert.ok(error.hint, 'has a hint');
      if (!/unsupported Nix construct/.test(error.message)) assert.fail(`message should say unsupported: ${error.message}`);
      assert.match(error.message, /; args\.nix must be plain data$/);
    });
  }

  test('the interpolation message reads as documented', () => {
    const error = errorAt('"${x}"', 1, 2);
    assert.equal(error.message, 'unsupported Nix construct: string interpolation ("${...}"); args.nix must be plain data');
    assert.match(error.describe(), /^args\.nix:1:2: unsupported Nix construct: .* \(.+\)$/);
  });
});

describe('nix data parser: syntax errors', () => {
  test('unterminated strings point at the opening quote', () => {
    errorAt('{\n  a = "abc;\n}', 2, 7, /unterminated string/);
    errorAt('"abc\\', 1, 1, /unterminated string/);
    errorAt("{ a = ''abc'; }", 1, 7, /unterminated indented string/);
    errorAt("''abc''\\", 1, 1, /unterminated indented string/);
    errorAt("''a'", 1, 1, /unterminated indented string/);
  });

  test('unterminated block comment points at its start', () => {
    errorAt('{ a = 1; /* open\n', 1, 10, /unterminated comment/);
  });

  test('unexpected end of file', () => {
    errorAt('', 1, 1, /unexpected end of file, expected a value/);
    errorAt('  # only a comment\n', 2, 1, /unexpected end of file/);
    errorAt('{ a = 1;', 1, 9, /attribute set opened at 1:1 is not closed/);
    errorAt('[ 1 2', 1, 6, /list opened at 1:1 is not closed/);
    errorAt('{ a = ', 1, 7, /unexpected end of file, expected a value/);
    errorAt('{ a = 1 }', 1, 9, /unexpected '}', expected ';' after the value of 'a'/);
    errorAt('{ a = 1', 1, 8, /unexpected end of file, expected ';'/);
    errorAt('(1', 1, 3, /expected '\)'/);
  });

  test('stray characters and tokens', () => {
    errorAt('{ a = 1; } ;', 1, 12, /unexpected ';', expected the end of the file/);
    errorAt('{ a = 1; }\n}', 2, 1, /unexpected '}'/);
    errorAt('{ a = §; }', 1, 7, /unexpected character '§'/);
    errorAt('{ a = 1; \u0000 }', 1, 10, /U\+0000/);
    errorAt('{ a = \u00a0 1; }', 1, 7, /U\+00A0/);
    errorAt('{ a = 1, b = 2; }', 1, 8, /unexpected ',', expected ';'/);
    errorAt('{ a = 1 b = 2; }', 1, 9, /unexpected 'b', expected ';' after the value of 'a'/);
    errorAt('{ "a": 1 }', 1, 6, /expected '=' after 'a'/);
    errorAt('{ = 1; }', 1, 3, /expected an attribute name/);
    errorAt('{ a. = 1; }', 1, 6, /expected an attribute name/);
    errorAt('{ if = 1; }', 1, 3, /keyword/);
    errorAt('{ a = then; }', 1, 7, /unexpected keyword 'then'/);
    errorAt('[ ; ]', 1, 3, /unexpected ';', expected a value or '\]'/);
  });

  test('numbers', () => {
    errorAt('{ a = 9223372036854775808; }', 1, 7, /invalid integer/);
    errorAt('1e5', 1, 1, /invalid number '1e5'/);
    errorAt('[ 12abc ]', 1, 3, /invalid number '12abc'/);
    errorAt('[ 1 -2 ]', 1, 5, /negative number in a list must be written in parentheses/);
  });

  test('paths with a trailing slash', () => {
    errorAt('{ a = ./dir/; }', 1, 7, /path '\.\/dir\/' has a trailing slash/);
    errorAt('{ a = ./; }', 1, 7, /path '\.\/' has a trailing slash/);
    errorAt('{ a = ~/; }', 1, 7, /trailing slash/);
  });

  test('very deep nesting is refused cleanly', () => {
    const error = errorAt('['.repeat(5000), 1, 201, /nested more than/);
    assert.ok(error instanceof LapinError);
  });
});
