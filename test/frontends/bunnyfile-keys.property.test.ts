// Repeated keys in a bunnyfile: the yaml library's own check searched a
// mapping's keys for every key, so 16,000 keys took 5 s and a 1 MiB file
// minutes. lapin checks them itself with a set per mapping, in linear time,
// and still refuses the first repeated key at its position.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { parseBunnyfile } from '../../src/frontends/bunnyfile.js';

const HEAD = 'version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: k\n';

function outcome(text: string): { ms: number; error?: LapinError } {
  const started = Date.now();
  try {
    parseBunnyfile(text, 'bunnyfile');
    return { ms: Date.now() - started };
  } catch (error) {
    if (!(error instanceof LapinError)) throw error;
    return { ms: Date.now() - started, error };
  }
}

const keys = (count: number, line: (i: number) => string): string => Array.from({ length: count }, (_, i) => line(i)).join('');

describe('bunnyfile: many keys, and repeated ones', () => {
  test('32,000 keys in a block mapping, a flow mapping or at the top end in well under a few seconds', () => {
    for (const [what, text] of [
      ['block', `${HEAD}labels:\n${keys(32_000, (i) => `  k${i}: v\n`)}`],
      ['flow', `${HEAD}labels: {${keys(32_000, (i) => `k${i}: v, `)}}\n`],
      ['top', `${HEAD}${keys(32_000, (i) => `x${i}: 1\n`)}`],
      ['repeated', `${HEAD}labels:\n${keys(32_000, () => '  k: v\n')}`],
    ] as const) {
      const { ms, error } = outcome(text);
      assert.ok(ms < 5000, `${what}: ${ms} ms`);
      assert.ok(error !== undefined, what);
    }
  });

  test('a repeated key is refused at the line of its second use, in a block or a flow mapping, at any depth', () => {
    assert.match(outcome(`${HEAD}a: 1\nb:\n  c: 1\n  c: 2\n`).error?.message ?? '', /YAML syntax error: Map keys must be unique/);
    assert.equal(outcome(`${HEAD}a: 1\nb:\n  c: 1\n  c: 2\n`).error?.at?.line, 11);
    assert.equal(outcome(`${HEAD}a: {x: 1,\n  x: 2}\n`).error?.at?.line, 9);
    // Equal values are equal keys (true and True are both true); two NaN keys are not, as in the yaml library.
    assert.match(outcome(`${HEAD}m:\n  true: 1\n  True: 2\n`).error?.message ?? '', /Map keys must be unique/);
    assert.doesNotMatch(outcome(`${HEAD}m:\n  .nan: 1\n  .NaN: 2\n`).error?.message ?? '', /Map keys must be unique/);
  });

  test('property: a nested mapping is refused for a repeated key exactly when one of its mappings repeats one, at the first', () => {
    type Tree = Array<[string, Tree | string]>;
    const tree: fc.Arbitrary<Tree> = fc.letrec<{ tree: Tree }>((tie) => ({
      tree: fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant('v'), tie('tree'))), { maxLength: 4 }),
    })).tree;
    fc.assert(
      fc.property(tree, (t) => {
        const lines: string[] = [];
        let firstRepeat: number | undefined;
        const render = (node: Tree, indent: string): void => {
          const seen = new Set<string>();
          for (const [key, value] of node) {
            if (seen.has(key) && firstRepeat === undefined) firstRepeat = lines.length;
            seen.add(key);
            if (typeof value === 'string' || value.length === 0) lines.push(`${indent}${key}: ${typeof value === 'string' ? value : '{}'}`);
            else {
              lines.push(`${indent}${key}:`);
              render(value, `${indent}  `);
            }
          }
        };
        render(t, '  ');
        const text = `${HEAD}labels:\n${lines.map((l) => `${l}\n`).join('')}`;
        const { error } = outcome(text);
        const repeated = error !== undefined && /Map keys must be unique/.test(error.message);
        assert.equal(repeated, firstRepeat !== undefined, `${text}\n${error?.message}`);
        if (firstRepeat !== undefined) assert.equal(error?.at?.line, 9 + firstRepeat);
      }),
      { numRuns: 300 },
    );
  });
});
