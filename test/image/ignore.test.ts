// .dockerignore patterns with moby/patternmatcher's rules, checked against docs.docker.com's
// "dockerignore" examples and patternmatcher's own cases, plus fast-check properties.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { cleanPath } from '../../src/clean-path.js';
import { IgnoreMatcher, parseIgnoreFile } from '../../src/image/ignore.js';

function matcher(text: string): IgnoreMatcher {
  return new IgnoreMatcher(parseIgnoreFile(text, '.dockerignore'));
}

function check(text: string, excluded: string[], kept: string[]): void {
  const m = matcher(text);
  for (const path of excluded) assert.equal(m.ignores(path), true, `${JSON.stringify(text)} should exclude ${path}`);
  for (const path of kept) assert.equal(m.ignores(path), false, `${JSON.stringify(text)} should keep ${path}`);
}

describe('docs.docker.com "dockerignore" examples', () => {
  test('*/temp*, */*/temp* and temp?, with a comment line', () => {
    const text = '# comment\n*/temp*\n*/*/temp*\ntemp?\n';
    check(
      text,
      ['somedir/temporary.txt', 'somedir/temp', 'somedir/subdir/temporary.txt', 'tempa', 'tempb', 'somedir/temp/inside'],
      ['temporary.txt', 'temp', 'tempab', 'a/b/c/temp', 'somedir/xtemp', '# comment'],
    );
  });
  test('**/*.go excludes .go files anywhere', () => {
    check('**/*.go', ['main.go', 'a/b/c.go', 'vendor/x/y.go'], ['main.golang', 'go', 'a/go.mod']);
  });
  test('*.md with !README.md: root markdown but README.md', () => {
    check('*.md\n!README.md\n', ['CHANGES.md', 'x.md'], ['README.md', 'docs/guide.md', 'README.txt']);
  });
  test('!README*.md then README-secret.md: README files but the secret one', () => {
    check('*.md\n!README*.md\nREADME-secret.md\n', ['README-secret.md', 'a.md'], ['README.md', 'README-public.md']);
  });
  test('README-secret.md then !README*.md: the last match wins, every README is kept', () => {
    check('*.md\nREADME-secret.md\n!README*.md\n', ['a.md'], ['README-secret.md', 'README.md']);
  });
  test('leading and trailing slashes and ./ are cleaned away', () => {
    for (const text of ['/foo/bar/', 'foo/bar', './foo/bar', 'foo//bar', 'foo/./bar', 'foo/x/../bar', '  foo/bar  ']) {
      check(text, ['foo/bar', 'foo/bar/baz'], ['foo', 'bar', 'x/foo/bar', 'foo/barista']);
    }
  });
  test('** matches any number of directories, none included', () => {
    check('a/**/z', ['a/z', 'a/b/z', 'a/b/c/z', 'a/z/inner'], ['z', 'b/a/z', 'a/bz']);
    check('**', ['x', 'a/b'], []);
    check('a/**', ['a/x', 'a/b/c'], ['a', 'b']);
  });
});

describe('patternmatcher details', () => {
  test('a directory pattern excludes what is inside it; an exception brings a file back', () => {
    check('docs\n!docs/keep.md\n', ['docs', 'docs/a.md', 'docs/sub/b.md'], ['docs/keep.md', 'doc']);
  });
  test('an exception for a file in an excluded directory, then the directory again', () => {
    check('a\n!a/b\na/b/c\n', ['a/x', 'a/b/c'], ['a/b', 'a/b/d']);
  });
  test('? and * do not cross /, [ ] ranges and escapes work, regexp characters are literal', () => {
    check('a?c', ['abc'], ['a/c', 'ac']);
    check('*', ['x', 'x/y'], []);
    check('[a-c]x', ['ax', 'cx'], ['dx']);
    check('[^a]x', ['bx'], ['ax']);
    check('\\*x', ['*x'], ['ax']);
    check('a.b+(c)|{d}$', ['a.b+(c)|{d}$'], ['aXb+(c)|{d}$']);
  });
  test('**foo is a suffix match, as patternmatcher reads it', () => {
    check('**foo', ['barfoo', 'a/foo', 'a/xfoo'], ['foobar']);
  });
  test('comments only at the start of a line; a BOM and blank lines are ignored', () => {
    check('\uFEFFa\n\n   \n #b\n', ['a', '#b'], ['b', ' #b']);
  });
  test('bad patterns are refused at their line', () => {
    for (const [text, line] of [['ok\n[a-', 2], ['x\ny\n!', 3], ['abc\\', 1]] as const) {
      assert.throws(
        () => parseIgnoreFile(text, '.dockerignore'),
        (error: unknown) => error instanceof LapinError && error.at?.line === line && error.at.file === '.dockerignore',
        text,
      );
    }
  });
  test("matching takes linear time, as Go's regexp does: nested ** and many * on deep, long paths", () => {
    const globstars = new IgnoreMatcher(parseIgnoreFile(`${Array.from({ length: 12 }, () => '**/a').join('/')}/**/b\n`, '.dockerignore'));
    const stars = new IgnoreMatcher(parseIgnoreFile(`*${'a*'.repeat(30)}b\n`, '.dockerignore'));
    const started = Date.now();
    assert.equal(globstars.ignores(`${'a/'.repeat(40)}c`), false);
    assert.equal(globstars.ignores(`${'a/'.repeat(40)}b`), true);
    assert.equal(stars.ignores('a'.repeat(200)), false);
    assert.equal(stars.ignores(`${'a'.repeat(200)}b`), true);
    // A backtracking engine takes minutes here; RE2 a few milliseconds.
    assert.ok(Date.now() - started < 2000, `${Date.now() - started} ms`);
  });
  test('cleanPath is Go path.Clean', () => {
    const cases: Array<[string, string]> = [['', '.'], ['./a', 'a'], ['a/../..', '..'], ['/../a', '/a'], ['a//b/', 'a/b'], ['/', '/']];
    for (const [input, output] of cases) assert.equal(cleanPath(input), output, input);
  });
});

describe('properties', () => {
  const segment = fc.constantFrom('a', 'b', 'c.md', 'dir', 'x y', 'é', '*', '?', '**', '[ab]', '*.md');
  const name = fc.constantFrom('a', 'b', 'c.md', 'dir', 'x y', 'é', 'README.md');
  const pattern = fc.tuple(fc.boolean(), fc.array(segment, { minLength: 1, maxLength: 4 })).map(([exception, parts]) => `${exception ? '!' : ''}${parts.join('/')}`);
  const path = fc.array(name, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('/'));

  test('any text reads as patterns or is refused with a LapinError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.array(fc.string({ maxLength: 30 }), { maxLength: 5 }), (text, paths) => {
        try {
          const m = new IgnoreMatcher(parseIgnoreFile(text, '.dockerignore'));
          for (const p of paths) m.ignores(p);
        } catch (error) {
          assert.ok(error instanceof LapinError, String(error));
        }
      }),
      { numRuns: 500 },
    );
  });
  test('spelling a pattern with ./, a leading / or a trailing / changes nothing', () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 6 }), path, (patterns, p) => {
        const plain = matcher(patterns.join('\n')).ignores(p);
        const respelt = patterns.map((q, i) => (q.startsWith('!') ? `!${['./', '/'][i % 2]}${q.slice(1)}/` : `${['./', '/'][i % 2]}${q}/`));
        assert.equal(matcher(respelt.join('\n')).ignores(p), plain);
      }),
      { numRuns: 300 },
    );
  });
  test('the last pattern naming a path decides it', () => {
    fc.assert(
      fc.property(fc.array(pattern, { maxLength: 6 }), path, (patterns, p) => {
        assert.equal(matcher([...patterns, p].join('\n')).ignores(p), true);
        assert.equal(matcher([...patterns, `!${p}`].join('\n')).ignores(p), false);
      }),
      { numRuns: 300 },
    );
  });
  test('without exceptions, what is inside an excluded path is excluded', () => {
    fc.assert(
      fc.property(fc.array(pattern.filter((q) => !q.startsWith('!')), { maxLength: 6 }), path, name, (patterns, p, child) => {
        const m = matcher(patterns.join('\n'));
        if (m.ignores(p)) assert.equal(m.ignores(`${p}/${child}`), true);
      }),
      { numRuns: 300 },
    );
  });
});
