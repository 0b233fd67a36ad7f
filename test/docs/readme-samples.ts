// The README's output samples, run for real. A sample is the fenced block
// after a marker line
//   <!-- sample: stderr lapin build ARGS -->   (or stdout; stdout+status and
//   stderr+status also show the exit code)
// whose content is what that lapin command prints on that stream, run from
// a scratch directory holding a copy of examples/ (so paths print as in the
// README), with a fresh cache, no SOURCE_DATE_EPOCH and no credentials. A
// block whose first line starts with "$ " shows the command line too.
// Commands run in README order, so a later one may read an earlier one's
// output. `npm run docs:samples` rewrites the blocks; test/docs/readme.test.ts
// fails while they differ.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];
const MARKER = /^<!-- sample: (stdout|stderr|stdout\+status|stderr\+status) lapin (.+?)(?: \(after ([\w-]+)\))? -->$/;

/** Images other tools make, for samples that inspect them; each runs in the scratch directory. */
const SETUPS: Record<string, Array<[string, ...string[]]>> = {
  // buildah from scratch with the urunc values only as config labels.
  'buildah-labels': [
    ['buildah', ...buildahStorage(), 'from', '--name', 'labels', '--isolation', 'chroot', 'scratch'],
    ['buildah', ...buildahStorage(), 'copy', 'labels', 'examples/mirage-hvt/network.hvt', '/unikernel/network.hvt'],
    ['buildah', ...buildahStorage(), 'config', '--label', 'com.urunc.unikernel.unikernelType=mirage', '--label', 'com.urunc.unikernel.hypervisor=hvt', '--label', 'com.urunc.unikernel.binary=/unikernel/network.hvt', 'labels'],
    ['buildah', ...buildahStorage(), 'commit', '--quiet', '--timestamp', '0', 'labels', 'oci-archive:labels.tar'],
    ['buildah', ...buildahStorage(), 'rm', 'labels'],
  ],
};

function buildahStorage(): string[] {
  return ['--root', 'buildah/root', '--runroot', 'buildah/run', '--storage-driver', 'vfs'];
}

/** The programs the samples' setups need (for skips). */
export const SETUP_PROGRAMS: Record<string, string> = { 'buildah-labels': 'buildah' };

export interface SampleBlock {
  stream: 'stdout' | 'stderr' | 'stdout+status' | 'stderr+status';
  args: string[];
  setup?: string;
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
    if (match[3] !== undefined && SETUPS[match[3]] === undefined) throw new Error(`README.md:${i + 1}: no sample setup named ${match[3]}`);
    blocks.push({ stream: match[1] as SampleBlock['stream'], args: words(match[2] as string), ...(match[3] !== undefined ? { setup: match[3] } : {}), line: i, content, showsCommand: (content[0] ?? '').startsWith('$ ') });
  }
  return blocks;
}

function runProgram(program: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; status: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ stdout, stderr, status }));
  });
}

function installed(program: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(path.join(dir, program)));
}

/**
 * What each sample block should hold, from real runs, in README order;
 * undefined for a block whose setup needs a program that is not installed
 * (an error under CI).
 */
export async function renderSamples(readme: string): Promise<Array<string[] | undefined>> {
  const blocks = sampleBlocks(readme);
  const work = await mkdtemp(path.join(os.tmpdir(), 'lapin-readme-'));
  try {
    await cp(path.join(ROOT, 'examples'), path.join(work, 'examples'), { recursive: true });
    await mkdir(path.join(work, 'home', 'docker'), { recursive: true });
    // No credentials; buildah wants the file DOCKER_CONFIG names to exist.
    await writeFile(path.join(work, 'home', 'docker', 'config.json'), '{"auths":{}}\n');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: path.join(work, 'home'),
      LAPIN_CACHE_DIR: path.join(work, 'cache'),
      DOCKER_CONFIG: path.join(work, 'home', 'docker'),
      LC_ALL: 'C',
      TZ: 'UTC',
    };
    const rendered: Array<string[] | undefined> = [];
    for (const block of blocks) {
      const needs = block.setup !== undefined ? SETUP_PROGRAMS[block.setup] : undefined;
      if (needs !== undefined && !installed(needs)) {
        if (process.env.CI === 'true') throw new Error(`CI must run every README sample: ${needs} is missing (scripts/install-deps.sh installs it)`);
        rendered.push(undefined);
        continue;
      }
      for (const [program, ...args] of block.setup !== undefined ? (SETUPS[block.setup] ?? []) : []) {
        const step = await runProgram(program, args, work, env);
        if (step.status !== 0) throw new Error(`sample setup ${block.setup}: ${program} ${args.join(' ')}: ${step.stderr}`);
      }
      const result = await runProgram(process.execPath, [...CLI, ...block.args], work, env);
      const output = (block.stream.startsWith('stderr') ? result.stderr : result.stdout).replace(/\n$/, '');
      const lines = output === '' ? [] : output.split('\n');
      const withStatus = block.stream.endsWith('+status');
      if (withStatus) lines.push(String(result.status));
      const redirect = block.stream === 'stderr+status' ? ' 2>&1 >/dev/null' : '';
      rendered.push(block.showsCommand ? [`$ lapin ${block.args.join(' ')}${redirect}${withStatus ? '; echo $?' : ''}`, ...lines] : lines);
    }
    return rendered;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The README with every sample block replaced by its rendering. */
export function withSamples(readme: string, rendered: ReadonlyArray<string[] | undefined>): string {
  const lines = readme.split('\n');
  const blocks = sampleBlocks(readme);
  for (let b = blocks.length - 1; b >= 0; b--) {
    const block = blocks[b] as SampleBlock;
    const next = rendered[b];
    if (next !== undefined) lines.splice(block.line + 2, block.content.length, ...next);
  }
  return lines.join('\n');
}
