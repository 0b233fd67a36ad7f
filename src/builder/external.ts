/**
 * Containerfiles that need execution (RUN and the other instructions lapin
 * does not apply itself) go to a real builder found on the machine:
 * buildah (daemonless), `podman build` or `docker build`. The builder runs
 * the Dockerfile as the user wrote it; its result, saved as an archive, is
 * the base lapin packages on top (urunc values, kernel, init, urunc.json).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, constants, rm } from 'node:fs/promises';
import { makeDirectories } from '../mkdirp.js';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { LapinError, UsageError, formatPosition } from '../errors.js';
import type { Descriptor } from '../image/image.js';
import type { ExecutionNeeded } from '../plan/execution.js';
import { emptyConfig, type BuildPlan } from '../plan/types.js';
import type { BaseConfig, PulledImage } from '../registry/pull.js';
import { openSource } from '../source/open.js';
import { trackTemporary, untrackTemporary } from '../temporaries.js';

export const BUILDERS = ['buildah', 'podman', 'docker'] as const;
export type BuilderName = (typeof BUILDERS)[number];

export interface Builder {
  name: BuilderName;
  program: string;
}

const INSTALL_HINT = 'install one (on Debian: apt-get install buildah, which needs no daemon), or remove the instruction';

/** The program's path on PATH, if it is there and executable. */
async function findOnPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  return undefined;
}

/** The builder `--builder` names, else the first of buildah, podman, docker that is installed. */
export async function chooseBuilder(requested: string | undefined, need: ExecutionNeeded, env: NodeJS.ProcessEnv = process.env): Promise<Builder> {
  if (requested !== undefined) {
    if (!(BUILDERS as readonly string[]).includes(requested)) throw new UsageError(`unknown builder ${JSON.stringify(requested)}`, `use one of ${BUILDERS.join(', ')}`);
    const program = await findOnPath(requested, env);
    if (program === undefined) {
      throw new LapinError(`${need.instruction} needs a container builder, and --builder ${requested} is not installed`, { ...(need.at ? { at: need.at } : {}), hint: INSTALL_HINT });
    }
    return { name: requested as BuilderName, program };
  }
  for (const name of BUILDERS) {
    const program = await findOnPath(name, env);
    if (program !== undefined) return { name, program };
  }
  throw new LapinError(`${need.instruction} needs a container builder to run it, and none of ${BUILDERS.join(', ')} is installed`, {
    ...(need.at ? { at: need.at } : {}),
    hint: INSTALL_HINT,
  });
}

export interface ExternalBuildInput {
  builder: Builder;
  /** The Containerfile and the context, as absolute paths. */
  file: string;
  context: string;
  /** What the user passed; lapin's own platform ARGs stay out. */
  buildArgs: Record<string, string>;
  target?: string;
  platform?: string;
  /** Builder output, a line at a time. */
  onLine?: (line: string) => void;
}

/** Runs a program, passing its output on line by line; resolves with the exit code and the last lines. */
function runProgram(program: string, args: readonly string[], onLine?: (line: string) => void): Promise<{ code: number | null; tail: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    let partial = { out: '', err: '' };
    const feed = (key: 'out' | 'err', chunk: Buffer): void => {
      const lines = (partial[key] + chunk.toString('utf8')).split('\n');
      partial = { ...partial, [key]: lines.pop() ?? '' };
      for (const line of lines) {
        if (line.trim() === '') continue;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onLine?.(line);
      }
    };
    child.stdout.on('data', (chunk: Buffer) => feed('out', chunk));
    child.stderr.on('data', (chunk: Buffer) => feed('err', chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      for (const rest of [partial.out, partial.err]) if (rest.trim() !== '') tail.push(rest);
      resolve({ code, tail });
    });
  });
}

async function step(builder: Builder, args: readonly string[], onLine: ((line: string) => void) | undefined): Promise<void> {
  const { code, tail } = await runProgram(builder.program, args, onLine);
  if (code !== 0) {
    const last = tail.at(-1) ?? 'no output';
    throw new LapinError(`${builder.name} ${args[0]} failed (exit ${code ?? 'by a signal'}): ${last}`, { hint: `the Dockerfile part runs in ${builder.name}; its output is above` });
  }
}

export interface RunOnBuilderInput {
  /** The Containerfile and the context, as absolute paths. */
  file: string;
  context: string;
  buildArgs: Record<string, string>;
  builder?: string;
  target?: string;
  platform?: string;
  emit: (event: { kind: 'step'; message: string }) => void;
}

/** Chooses the builder, says why it is used, and builds the file with it. */
export async function runOnBuilder(need: ExecutionNeeded, input: RunOnBuilderInput): Promise<BuiltBase> {
  const builder = await chooseBuilder(input.builder, need);
  const where = need.at ? `${formatPosition(need.at)}: ` : '';
  input.emit({ kind: 'step', message: `${where}${need.instruction} needs execution: the Dockerfile part is built by ${builder.name} (${builder.program})` });
  return buildWithBuilder({
    builder,
    file: input.file,
    context: input.context,
    buildArgs: input.buildArgs,
    ...(input.target !== undefined ? { target: input.target } : {}),
    ...(input.platform !== undefined ? { platform: input.platform } : {}),
    onLine: (line) => input.emit({ kind: 'step', message: `${builder.name}: ${line}` }),
  });
}

/** What a builder made, imported: the base image of the packaging, and how to remove its files. */
export interface BuiltBase {
  reference: string;
  image: PulledImage;
  cleanup(): Promise<void>;
}

/** Builds the Containerfile with the builder and imports the result as an archive. */
export async function buildWithBuilder(input: ExternalBuildInput): Promise<BuiltBase> {
  const { builder } = input;
  const id = randomBytes(6).toString('hex');
  const tag = `localhost/lapin-build-${id}:latest`;
  const dir = path.join(os.tmpdir(), `lapin-builder-${process.pid}-${id}`);
  trackTemporary(dir);
  const cleanup = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    untrackTemporary(dir);
  };
  try {
    await makeDirectories(dir);
    const args = [
      '-f', input.file,
      '-t', tag,
      ...Object.entries(input.buildArgs).flatMap(([key, value]) => ['--build-arg', `${key}=${value}`]),
      ...(input.target !== undefined ? ['--target', input.target] : []),
      ...(input.platform !== undefined ? ['--platform', input.platform] : []),
      input.context,
    ];
    const archive = path.join(dir, 'built.tar');
    await step(builder, [builder.name === 'buildah' ? 'bud' : 'build', ...args], input.onLine);
    try {
      if (builder.name === 'buildah') await step(builder, ['push', tag, `oci-archive:${archive}`], input.onLine);
      else if (builder.name === 'podman') await step(builder, ['save', '--format', 'oci-archive', '-o', archive, tag], input.onLine);
      else await step(builder, ['save', '-o', archive, tag], input.onLine);
    } finally {
      // The builder's copy is not needed once the archive is written.
      await runProgram(builder.program, ['rmi', tag]).catch(() => undefined);
    }
    const transport = builder.name === 'docker' ? 'docker-archive' : 'oci-archive';
    const image = await importArchive(`${transport}:${archive}`, path.join(dir, 'layers'), `${builder.name} build of ${path.basename(input.file)}`);
    return { reference: tag, image, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** Drops the null values docker and buildah write for absent fields. */
function cleanConfig(config: Record<string, unknown> | undefined): BaseConfig['config'] {
  const clean: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config ?? {})) if (value !== null && value !== undefined) clean[key] = value;
  return clean as BaseConfig['config'];
}

/** Reads an archive the builder wrote into the form of a pulled base image, its layers as files. */
async function importArchive(source: string, layersDir: string, display: string): Promise<PulledImage> {
  const image = await openSource(source);
  try {
    await makeDirectories(layersDir);
    const { manifest, digest, bytes: manifestBytes } = await image.manifest();
    const { config, digest: configDigest, bytes: configBytes } = await image.config();
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== manifest.layers.length) throw new LapinError(`${display}: the config lists ${diffIds.length} layers, the manifest ${manifest.layers.length}`);
    const layers: PulledImage['layers'] = [];
    for (const [index, layer] of manifest.layers.entries()) {
      const file = path.join(layersDir, String(index));
      await pipeline(await image.blob(layer), createWriteStream(file));
      layers.push({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size, diffId: diffIds[index] as string, file });
    }
    const configDescriptor: Descriptor = { mediaType: manifest.config.mediaType, digest: manifest.config.digest, size: manifest.config.size };
    const baseConfig: BaseConfig = { ...(config as BaseConfig), config: cleanConfig(config.config as Record<string, unknown> | undefined) };
    return {
      reference: { domain: 'localhost', path: 'lapin-build', tag: 'latest', display },
      manifestDigest: digest ?? configDigest,
      ...(manifestBytes ? { manifestBytes } : {}),
      manifestAnnotations: manifest.annotations ?? {},
      config: baseConfig,
      configDescriptor,
      ...(configBytes ? { configBytes } : {}),
      layers,
      fetched: false,
    };
  } finally {
    await image.close();
  }
}

/**
 * The plan of the packaging on top of a builder's image: its layers and
 * config as the base; urunc values come from its labels (the file's LABELs),
 * and bunny's defaults are applied once they are inherited.
 */
export function packagingPlan(file: string, reference: string): BuildPlan {
  return { syntax: 'containerfile', file, base: { kind: 'image', reference }, stages: [], ops: [], config: emptyConfig(), urunc: {}, annotations: {} };
}
