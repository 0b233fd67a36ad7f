// The README's output samples, run for real. A sample is the fenced block
// after a marker line
//   <!-- sample: stderr lapin build ARGS -->   (or stdout)
// whose content is what that lapin command prints on that stream, run from
// a scratch directory holding a copy of examples/ (so paths print as in the
// README), with a fresh cache, no SOURCE_DATE_EPOCH and no credentials. A
// block whose first line starts with "$ " shows the command line too.
// Commands run in README order, so a later one may read an earlier one's
// output. `npm run docs:samples` rewrites the blocks; test/docs/readme.test.ts
// fails while they differ.
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const MARKER = /^<!-- sample: (stdout|stderr) lapin (.+) -->$/;

export interface SampleBlock {
  stream: 'stdout' | 'stderr';
  args: string[];
  /** The marker's line index; the fence opens on the next line. */
  line: number;
  /** The block's lines between the fences. */
  content: string[];
  showsCommand: boolean;
}

/** Splits a marker's command the way a shell would for these plain words (no quotes needed in samples). */
function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== '');
}

export function sampleBlocks(readme: string): SampleBlock[] {
  const lines = readme.split('\n');
  const blocks: SampleBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const match = MARKER.exec(lines[i] as string);
    if (!match) continue;
    if (!(lines[i + 1] ?? '').startsWith('```')) throw new Error(`README.md:${i + 1}: a sample marker must be followed by a fenced block`);
    const end = lines.findIndex((l, n) => n > i + 1 && l.startsWith('```'));
    if (end < 0) throw new Error(`README.md:${i + 1}: the sample block is not closed`);
    const content = lines.slice(i + 2, end);
    blocks.push({ stream: match[1] as 'stdout' | 'stderr', args: words(match[2] as string), line: i, content, showsCommand: (content[0] ?? '').startsWith('$ ') });
  }
  return blocks;
}

function runLapin(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; status: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ stdout, stderr, status }));
  });
}

/** What each sample block should hold, from real runs, in README order. */
export async function renderSamples(readme: string): Promise<string[][]> {
  const blocks = sampleBlocks(readme);
  const work = await mkdtemp(path.join(os.tmpdir(), 'lapin-readme-'));
  try {
    await cp(path.join(ROOT, 'examples'), path.join(work, 'examples'), { recursive: true });
    await mkdir(path.join(work, 'home'));
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: path.join(work, 'home'),
      LAPIN_CACHE_DIR: path.join(work, 'cache'),
      DOCKER_CONFIG: path.join(work, 'home', 'docker'),
      LC_ALL: 'C',
      TZ: 'UTC',
    };
    const rendered: string[][] = [];
    for (const block of blocks) {
      const result = await runLapin(block.args, work, env);
      const output = (block.stream === 'stdout' ? result.stdout : result.stderr).replace(/\n$/, '');
      const lines = output === '' ? [] : output.split('\n');
      rendered.push(block.showsCommand ? [`$ lapin ${block.args.join(' ')}`, ...lines] : lines);
    }
    return rendered;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The README with every sample block replaced by its rendering. */
export function withSamples(readme: string, rendered: readonly string[][]): string {
  const lines = readme.split('\n');
  const blocks = sampleBlocks(readme);
  for (let b = blocks.length - 1; b >= 0; b--) {
    const block = blocks[b] as SampleBlock;
    lines.splice(block.line + 2, block.content.length, ...(rendered[b] as string[]));
  }
  return lines.join('\n');
}
