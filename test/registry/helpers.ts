// Shared pieces of the registry tests: running the CLI without blocking the
// in-process proxies and token issuer, and reading files out of an OCI layout.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { layerEntries, type TarEntry } from '../helpers/archive.js';
import { runProgram, type ProgramResult } from '../helpers/fixtures.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const EXAMPLE = path.join(ROOT, 'examples/mirage-hvt');
/** node's arguments that run the CLI from source. */
export const CLI = ['--import', import.meta.resolve('tsx'), path.join(ROOT, 'src/cli/main.ts')];

export type CliResult = ProgramResult;

/** Runs lapin asynchronously: a synchronous spawn would freeze the proxies this process serves. */
export function lapin(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return runProgram(process.execPath, [...CLI, ...args], { ...options, cwd: options.cwd ?? ROOT });
}

/** An environment with no credentials but the ones a test writes. */
export function isolatedEnv(dir: string): NodeJS.ProcessEnv {
  return {
    DOCKER_CONFIG: path.join(dir, 'docker'),
    REGISTRY_AUTH_FILE: path.join(dir, 'no-auth.json'),
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
  };
}

export function assertNoStack(stderr: string): void {
  if (stderr.split('\n').some((line) => /^\s+at /.test(line))) throw new Error(`stack trace in:\n${stderr}`);
}

interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Every layer entry of the first image in an OCI layout directory, last layer winning. */
export async function layoutFiles(dir: string): Promise<Map<string, TarEntry>> {
  const blob = (digest: string): Promise<Buffer> => readFile(path.join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)));
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: OciDescriptor[] };
  const manifest = JSON.parse((await blob((index.manifests[0] as OciDescriptor).digest)).toString()) as { layers: OciDescriptor[] };
  const files = new Map<string, TarEntry>();
  for (const layer of manifest.layers) {
    const data = await blob(layer.digest);
    const tar = data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data;
    for (const entry of layerEntries(tar)) files.set(entry.name.replace(/^\.\//, '').replace(/\/$/, ''), entry);
  }
  return files;
}
