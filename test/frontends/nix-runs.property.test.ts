// args.nix tokens inside one long run of path characters ("a.b.c...",
// "1.2.3..."): the path and URI patterns were tried at every token and each
// scanned the rest of the run, so 4000 attribute path segments took 2 s and
// a 1 MiB file of them hours. Each must end in time linear in the file.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseArgsNix } from '../../src/frontends/nix.js';

/** Parses `text`; a value or a LapinError, and how long it took. */
function timed(text: string): { ms: number; error?: LapinError } {
  const started = Date.now();
  try {
    parseArgsNix(text, 'args.nix');
    return { ms: Date.now() - started };
  } catch (error) {
    if (!(error instanceof LapinError)) throw error;
    return { ms: Date.now() - started, error };
  }
}

const run = (unit: string, count: number): string => unit.repeat(count);

describe('args.nix: long runs of path characters', () => {
  test('100,000 tokens in one run end in well under a second or two, with a line of bounded length', () => {
    for (const text of [
      `{ ${run('a.', 100_000)}a = 1; }`,
      `{ ${run('a.', 100_000)}a/ = 1; }`,
      `{ ${run('a.', 100_000)}a: = 1; }`,
      `{ x = ${run('1.', 100_000)}1; }`,
      `{ x = [ ${run('a.', 100_000)}a ]; }`,
    ]) {
      const { ms, error } = timed(text);
      assert.ok(ms < 3000, `${text.slice(0, 40)}: ${ms} ms`);
      assert.ok(error !== undefined && error.message.length < 1000, `${text.slice(0, 40)}: ${error?.message.length}`);
    }
  });

  test('a path and a URI at the end of a long run are still read as a path and a URI', () => {
    assert.match(timed(`{ x = ${run('a.', 1000)}a/b; }`).error?.message ?? '', /unknown args\.nix attribute 'x'/);
    assert.match(timed(`{ x = ${run('a.', 1000)}a:b; }`).error?.message ?? '', /unsupported Nix construct: URL literal \(a\.a\.a/);
    assert.match(timed(`{ x = ./${run('a.', 1000)}a/; }`).error?.message ?? '', /has a trailing slash/);
  });

  test('property: any unit of tokens repeated 20,000 times, as a value, a name or a list item, ends in linear time', { timeout: 120_000 }, () => {
    const piece = fc.constantFrom('a', 'b1', '1', '0', '.', '/', ':', '-', '_', '+', '~', '<', '>', '"', "''", ' ', '*', '%', '@', '=', ';', "'", '!', ',', '?', 'e', '..', './', 'x:');
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 4 }), fc.constantFrom(0, 1, 2), (unit, where) => {
        const body = run(unit.join(''), 20_000);
        const text = where === 0 ? `{ x = ${body}; }` : where === 1 ? `{ ${body} = 1; }` : `{ x = [ ${body} ]; }`;
        const { ms } = timed(text);
        assert.ok(ms < 3000, `${JSON.stringify(unit)} at ${where}: ${ms} ms`);
      }),
      { numRuns: 40 },
    );
  });
});
