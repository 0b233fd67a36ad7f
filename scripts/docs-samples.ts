// Rewrites README.md's output samples from real runs (test/docs/readme-samples.ts
// says how a sample is marked). Run after changing what build or inspect print:
//   npm run docs:samples
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, renderSamples, sampleBlocks, withSamples } from '../test/docs/readme-samples.js';

const file = path.join(ROOT, 'README.md');
const readme = await readFile(file, 'utf8');
const next = withSamples(readme, await renderSamples(readme));
await writeFile(file, next);
const count = sampleBlocks(readme).length;
process.stdout.write(next === readme ? `README.md: ${count} samples already match\n` : `README.md: ${count} samples rewritten\n`);
