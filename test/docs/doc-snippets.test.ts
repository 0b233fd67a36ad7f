// The bunnyfiles README.md and docs/*.md show whole (a `platforms` and a `kernel` at the top
// level, not a fragment of one) are files a reader copies as they are: each must compile.
// The README's rootfs-from-image bunnyfile lacked `version`, which lapin requires.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { compile } from '../../src/index.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DOCS = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Each ```yaml block of `file` that is a whole bunnyfile, with its line. */
function wholeBunnyfiles(file: string): Array<{ line: number; text: string }> {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks: Array<{ line: number; text: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```yaml') continue;
    const start = i + 1;
    while (i + 1 < lines.length && !(lines[i + 1] as string).startsWith('```')) i++;
    const text = `${lines.slice(start, i + 1).join('\n')}\n`;
    if (/^platforms:/m.test(text) && /^kernel:/m.test(text)) blocks.push({ line: start, text });
  }
  return blocks;
}

test('every whole bunnyfile in README.md and docs/ compiles as written', async () => {
  const found = DOCS.flatMap((file) => wholeBunnyfiles(file).map((block) => ({ file, ...block })));
  assert.ok(found.length >= 4, `found ${found.length}`);
  for (const { file, line, text } of found) {
    await compile(text, 'bunnyfile', 'bunnyfile').catch((error: unknown) => {
      assert.fail(`${file}:${line}: ${(error as Error).message}`);
    });
  }
});
