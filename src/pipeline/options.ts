/**
 * Stage 1: build options → settings. Every default and every check of the
 * options themselves is here, once; the later stages read `BuildSettings`.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { LapinError, UsageError } from '../errors.js';
import { checkSourceDateEpoch } from '../image/epoch.js';
import type { Compression } from '../image/layer.js';
import { defaultCacheDir } from '../image/layer-cache.js';
import { formatReference, parseReference } from '../image/reference.js';
import type { BuildPlan } from '../plan/types.js';
import type { BuildEvent, BuildOptions, OutputSpec } from './types.js';

export interface BuildSettings {
  options: BuildOptions;
  cwd: string;
  contextDir: string;
  /** Reports an event; warnings are also kept for the result. */
  emit: (event: BuildEvent) => void;
  warnings: string[];
  uruncChecks: 'error' | 'warn';
  compression: Compression;
  /** The layer cache's directory, or undefined with the cache turned off. */
  cacheDir: string | undefined;
  /** Run when the build ends, whatever happened (e.g. a builder's image). */
  cleanups: Array<() => Promise<void>>;
}

export async function resolveSettings(options: BuildOptions): Promise<BuildSettings> {
  const cwd = options.cwd ?? process.cwd();
  const contextDir = path.resolve(cwd, options.context ?? '.');
  const warnings: string[] = [];
  const emit = (event: BuildEvent): void => {
    if (event.kind === 'warning') warnings.push(event.message);
    options.onEvent?.(event);
  };
  const contextStats = await stat(contextDir).catch(() => undefined);
  if (options.context === '-' && !contextStats) {
    throw new UsageError('lapin reads no build context from stdin (docker build -)', 'give the context as a directory; the definition file may come from stdin: lapin build -f - DIR');
  }
  if (!contextStats?.isDirectory()) {
    throw new UsageError(`build context ${contextDir} ${contextStats ? 'is not a directory' : 'does not exist'}`, 'pass the directory that holds the files the definition names, e.g. lapin build -f DIR/bunnyfile DIR');
  }
  // buildx refuses this too: two archives on one stream would be one unreadable tar.
  if ((options.outputs ?? []).filter((output) => output.dest === '-').length > 1) {
    throw new UsageError('several outputs write to stdout (dest=-)', 'keep one there and write the others to files, e.g. -o image.tar');
  }
  return {
    options,
    cwd,
    contextDir,
    emit,
    warnings,
    uruncChecks: options.uruncChecks ?? 'error',
    compression: options.compression ?? 'gzip',
    cacheDir: options.cache === false ? undefined : (options.cacheDir ?? defaultCacheDir()),
    cleanups: [],
  };
}

/** Seconds written into layers and the config: the option, else SOURCE_DATE_EPOCH, else 0. */
export function sourceDateEpoch(options: BuildOptions): number {
  if (options.sourceDateEpoch !== undefined) return checkSourceDateEpoch(options.sourceDateEpoch, `sourceDateEpoch ${options.sourceDateEpoch}`);
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return 0;
  if (!/^\d+$/.test(raw)) throw new UsageError(`SOURCE_DATE_EPOCH=${raw} is not a number of seconds`);
  return checkSourceDateEpoch(Number(raw), `SOURCE_DATE_EPOCH=${raw.length > 40 ? `${raw.slice(0, 40)}...` : raw}`);
}

/** What base images are pulled with: the registry options, the policy, the cache and the platform. */
export function pullOptionsOf(settings: BuildSettings, platform: string | undefined) {
  const { options, emit } = settings;
  return { ...options.registry, policy: options.pull ?? 'missing', ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}), ...(platform ? { platform } : {}), onEvent: emit } as const;
}

/** The image's full names: -t, else the file's name and tag; each once. */
export function imageNames(plan: BuildPlan, tags: readonly string[]): string[] {
  const given = [...tags];
  if (given.length === 0 && plan.name) given.push(plan.tag ? `${plan.name.value}:${plan.tag.value}` : plan.name.value);
  const names: string[] = [];
  for (const tag of given) {
    let reference;
    try {
      reference = parseReference(tag);
    } catch (error) {
      if (plan.name && tags.length === 0 && error instanceof LapinError) {
        throw new LapinError(error.message, { ...(plan.name.at ? { at: plan.name.at } : {}), ...(error.hint ? { hint: error.hint } : {}) });
      }
      throw error;
    }
    const name = formatReference(reference);
    if (!names.includes(name)) names.push(name);
  }
  return names;
}

/** The outputs asked for, else an archive named after the image in the current directory. */
export function outputsOf(options: BuildOptions, names: readonly string[], cwd: string): OutputSpec[] {
  return options.outputs && options.outputs.length > 0 ? options.outputs : [defaultOutput(names, cwd)];
}

function defaultOutput(names: readonly string[], cwd: string): OutputSpec {
  const first = names[0];
  if (first === undefined) return { type: 'oci', dest: path.join(cwd, 'image.tar') };
  const ref = parseReference(first);
  const repo = ref.path.split('/').at(-1) as string;
  return { type: 'oci', dest: path.join(cwd, `${repo}-${ref.tag}.tar`) };
}

/** Relative to cwd when inside it, absolute otherwise. */
export function displayPath(p: string, cwd: string): string {
  const relative = path.relative(cwd, p);
  return relative === '' || relative.startsWith('..') ? p : relative;
}
