// The README's build and inspect samples are what lapin prints today: each
// marked block is run (test/docs/readme-samples.ts) and compared line for
// line. When output changes on purpose, `npm run docs:samples` rewrites them.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { ROOT, renderSamples, sampleBlocks } from './readme-samples.js';

test('README.md samples match real runs (regenerate with npm run docs:samples)', async (t) => {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = sampleBlocks(readme);
  assert.ok(blocks.some((b) => b.args[0] === 'build'), 'the README has a build sample');
  assert.ok(blocks.some((b) => b.args[0] === 'inspect'), 'the README has an inspect sample');
  const rendered = await renderSamples(readme);
  blocks.forEach((block, i) => {
    const expected = rendered[i];
    if (expected === undefined) {
      t.diagnostic(`README.md:${block.line + 1}: not checked here, ${block.setup ?? ''} needs a program that is not installed`);
      return;
    }
    // Step durations (--progress plain's "[0.1s]") vary from run to run: compared as a duration, not a value.
    const timeless = (lines: readonly string[]): string[] => lines.map((line) => line.replace(/ \[\d+(\.\d)?s\]$/, ' [DURATION]'));
    assert.deepEqual(timeless(block.content), timeless(expected), `README.md:${block.line + 1}: the sample of lapin ${block.args.join(' ')} is stale; run npm run docs:samples`);
  });
});

test('the build command the README opens with is the one its build sample runs', async () => {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const build = sampleBlocks(readme).find((b) => b.args[0] === 'build');
  assert.ok(build);
  assert.ok(readme.includes(` && lapin ${build.args.join(' ')}\n`), `README.md does not open with "… && lapin ${build.args.join(' ')}"`);
  // One way to call it throughout: the installed command (npx adds about 1.5 s a call).
  assert.ok(!readme.includes('npx lapin'), 'README.md still says npx lapin');
});
