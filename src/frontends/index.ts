import path from 'node:path';
import { LapinError, UsageError } from '../errors.js';
import type { BuildPlan, Syntax } from '../plan/types.js';
import { PLATFORM_ARG_NAMES, type PlatformInputs } from './platform-args.js';

export const SYNTAXES: readonly Syntax[] = ['bunnyfile', 'containerfile', 'nix'];

/** File names looked for in the context when -f is not given, in order. */
export const DEFAULT_FILE_NAMES = ['bunnyfile', 'Containerfile', 'Dockerfile', 'args.nix'] as const;

export function parseSyntaxName(name: string): Syntax {
  const lower = name.toLowerCase();
  if (lower === 'dockerfile') return 'containerfile';
  if ((SYNTAXES as readonly string[]).includes(lower)) return lower as Syntax;
  throw new UsageError(`unknown syntax ${JSON.stringify(name)}`, `use one of ${SYNTAXES.join(', ')}`);
}

/**
 * Guesses the syntax from the file name, then from the content: Nix data
 * starts with "{", a bunnyfile has a top-level "version:", and anything
 * with a FROM instruction is a Containerfile.
 */
export function detectSyntax(file: string, text: string): Syntax {
  const base = path.basename(file).toLowerCase();
  if (base.endsWith('.nix')) return 'nix';
  if (base.startsWith('bunnyfile') || base.endsWith('.bunnyfile') || base.endsWith('.yaml') || base.endsWith('.yml')) return 'bunnyfile';
  if (base.startsWith('containerfile') || base.startsWith('dockerfile') || base.endsWith('.containerfile') || base.endsWith('.dockerfile')) {
    return 'containerfile';
  }
  const meaningful = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('//'));
  const first = meaningful[0] ?? '';
  if (first.startsWith('{') || first.startsWith('/*')) return 'nix';
  if (meaningful.some((line) => /^version\s*:/.test(line))) return 'bunnyfile';
  if (meaningful.some((line) => /^(FROM|ARG)\s/i.test(line))) return 'containerfile';
  throw new LapinError(`${file}: cannot tell which syntax this file is in`, {
    hint: 'pass --syntax bunnyfile, --syntax containerfile or --syntax nix',
  });
}

/** What the command line adds to a definition file. */
export interface CompileOptions {
  /** `--target`: the Containerfile stage to build; other syntaxes have no stages. */
  target?: string;
  /**
   * `--platform`: the image's platform (`linux/arm64`), which sets TARGETPLATFORM,
   * TARGETARCH... in every syntax (docs/multi-platform.md). Defaults to `buildPlatform`.
   */
  platform?: string;
  /**
   * The platform of the machine that builds, for BUILDPLATFORM, BUILDARCH...; the
   * caller says it (a frontend reads no process state). Defaults to `platform`, then linux/amd64.
   */
  buildPlatform?: string;
}

/**
 * Compiles a definition file's text into a BuildPlan. Each frontend is
 * loaded when its syntax is used: yaml and dockerfile-ast cost tens of
 * milliseconds to load, a good part of a small build (docs/performance.md).
 */
export async function compile(
  text: string,
  file: string,
  syntax: Syntax,
  buildArgs: Record<string, string> = {},
  options: CompileOptions = {},
): Promise<BuildPlan> {
  if (options.target !== undefined && syntax !== 'containerfile') {
    throw new UsageError(`--target ${options.target}: a ${syntax} has no build stages`, 'drop --target; only Containerfiles have stages');
  }
  const plan = await compileSyntax(text, file, syntax, buildArgs, options);
  if (syntax !== 'containerfile') {
    const unused = Object.keys(buildArgs).filter((name) => !PLATFORM_ARG_NAMES.has(name));
    if (unused.length > 0) {
      plan.warnings = [...(plan.warnings ?? []), { message: `one or more build-args [${unused.sort().join(' ')}] were not consumed: a ${syntax} has no ARG` }];
    }
  }
  return plan;
}

async function compileSyntax(text: string, file: string, syntax: Syntax, buildArgs: Record<string, string>, options: CompileOptions): Promise<BuildPlan> {
  switch (syntax) {
    case 'bunnyfile':
      return (await import('./bunnyfile.js')).parseBunnyfile(text, file, platformOptions(options), buildArgs);
    case 'containerfile':
      return (await import('./containerfile.js')).parseContainerfile(text, file, buildArgs, options);
    case 'nix':
      return (await import('./nix.js')).parseArgsNix(text, file, platformOptions(options), buildArgs);
  }
}

function platformOptions(options: CompileOptions): PlatformInputs {
  return {
    ...(options.platform === undefined ? {} : { platform: options.platform }),
    ...(options.buildPlatform === undefined ? {} : { buildPlatform: options.buildPlatform }),
  };
}
