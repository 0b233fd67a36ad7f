/**
 * Per platform, step 1: the definition → a BuildPlan. The target platform
 * is an input (TARGETPLATFORM and the other automatic args), so each
 * platform compiles on its own, as BuildKit converts once per platform.
 * What lapin does not apply itself (RUN...) runs on a real builder.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { formatPosition, LapinError } from '../errors.js';
import { temporaryName, trackTemporary, untrackTemporary } from '../temporaries.js';
import type { BuiltBase } from '../builder/external.js';
import { compile, detectSyntax } from '../frontends/index.js';
import { ExecutionNeeded } from '../plan/execution.js';
import type { BuildPlan, Syntax } from '../plan/types.js';
import type { Definition } from './definition.js';
import type { BuildSettings } from './options.js';
import { checkBuildPlatform, hostArchitecture } from './platform.js';

export interface CompiledPlan {
  plan: BuildPlan;
  /** The builder's image, when the file needed one: its plan packages that image. */
  builtBase?: BuiltBase;
}

export async function compileDefinition(definition: Definition, settings: BuildSettings, platform: string | undefined): Promise<CompiledPlan> {
  const { options, contextDir, emit } = settings;
  const { file, displayFile, text, syntax } = definition;
  if (platform !== undefined) checkBuildPlatform(platform);
  // As with buildx: --platform gives TARGETPLATFORM, TARGETARCH..., this machine BUILDPLATFORM... (src/frontends/platform-args.ts).
  const buildArgs = options.buildArgs ?? {};
  const platforms = { ...(platform ? { platform } : {}), buildPlatform: `linux/${hostArchitecture()}` };
  let builtBase: BuiltBase | undefined;
  const plan = await compile(text, displayFile, syntax, buildArgs, { ...platforms, ...(options.target === undefined ? {} : { target: options.target }) }).catch(async (error: unknown) => {
    if (!(error instanceof ExecutionNeeded)) throw options.syntax === undefined ? misnamed(error, displayFile, text, syntax) : error;
    const external = await import('../builder/external.js');
    const builderFile = definition.fromStdin ? await stdinForBuilder(text, settings) : file;
    builtBase = await external.runOnBuilder(error, { file: builderFile, context: contextDir, buildArgs: options.buildArgs ?? {}, ...(options.builder ? { builder: options.builder } : {}), ...(options.target ? { target: options.target } : {}), ...(platform ? { platform } : {}), emit });
    settings.cleanups.push(builtBase.cleanup);
    return external.packagingPlan(displayFile, builtBase.reference);
  });
  emit({ kind: 'step', message: `read ${displayFile} as ${syntax}${options.target === undefined ? '' : `, up to stage ${options.target}`}` });
  return { plan, ...(builtBase ? { builtBase } : {}) };
}

/** The builder reads a file: -f -'s text goes into a temporary one, removed when the build ends. */
async function stdinForBuilder(text: string, settings: BuildSettings): Promise<string> {
  const dir = path.join(os.tmpdir(), temporaryName('lapin-'));
  trackTemporary(dir);
  settings.cleanups.push(async () => {
    await rm(dir, { recursive: true, force: true });
    untrackTemporary(dir);
  });
  await mkdir(dir, { mode: 0o700 });
  const file = path.join(dir, 'Containerfile');
  await writeFile(file, text);
  return file;
}

const SYNTAX_NAMES: Record<Syntax, string> = { bunnyfile: 'a bunnyfile', containerfile: 'a Containerfile', nix: 'an args.nix' };

/**
 * A file whose name chose the syntax (build.yaml, default.nix, Dockerfile.x) but whose text is
 * another one fails in the wrong frontend: the error then says what the text reads as.
 */
function misnamed(error: unknown, displayFile: string, text: string, syntax: Syntax): unknown {
  if (!(error instanceof LapinError)) return error;
  let content: Syntax;
  try {
    content = detectSyntax('', text);
  } catch {
    return error;
  }
  if (content === syntax) return error;
  return new LapinError(error.message, {
    ...(error.at ? { at: error.at } : {}),
    hint: `${displayFile} was read as ${SYNTAX_NAMES[syntax]} for its name, but its text reads as ${SYNTAX_NAMES[content]}: pass --syntax ${content}`,
    exitCode: error.exitCode,
    cause: error,
  });
}

/** The frontend's warnings, with their positions. */
export function reportPlanWarnings(plan: BuildPlan, settings: BuildSettings): void {
  for (const warning of plan.warnings ?? []) {
    settings.emit({ kind: 'warning', message: `${warning.at ? `${formatPosition(warning.at)}: ` : ''}${warning.message}` });
  }
}
