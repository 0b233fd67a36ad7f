/**
 * Stage 2: the definition file: found (-f, else a default name in the
 * context), read (bounded) and its syntax detected. Read once, whatever the
 * number of platforms; each platform compiles it on its own (compile.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { LapinError, UsageError } from '../errors.js';
import { decodeDefinition } from '../frontends/decode.js';
import { DEFAULT_FILE_NAMES, detectSyntax } from '../frontends/index.js';
import { MAX_DEFINITION_BYTES, definitionTooLarge } from '../frontends/limits.js';
import { loadContextIgnore, type ContextIgnore } from '../image/dockerignore.js';
import type { Syntax } from '../plan/types.js';
import { displayPath, type BuildSettings } from './options.js';

export interface Definition {
  /** Absolute path. */
  file: string;
  /** As shown in messages: relative to cwd when inside it. */
  displayFile: string;
  text: string;
  syntax: Syntax;
  /** Read from stdin (-f -): there is no file beside which an ignore file could be. */
  fromStdin?: boolean;
}

/** All of a stream, refused past a definition file's limit. */
async function readBounded(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    size += buffer.length;
    if (size > MAX_DEFINITION_BYTES) {
      stream.destroy();
      throw definitionTooLarge(STDIN_NAME);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/** How a definition read from stdin (-f -) is named in messages. */
export const STDIN_NAME = '<stdin>';

export async function readDefinition(settings: BuildSettings): Promise<Definition> {
  const { options, contextDir, cwd } = settings;
  if (options.file === '-') {
    // docker build -f -: the file comes from stdin, its syntax from its text; files still come from the context.
    if (!options.stdin) throw new UsageError('-f - reads the definition file from stdin, and this build has none', 'pass the stdin option, or name the file with -f FILE');
    const bytes = await readBounded(options.stdin);
    const text = decodeDefinition(bytes, STDIN_NAME);
    return { file: STDIN_NAME, displayFile: STDIN_NAME, text, syntax: options.syntax ?? detectSyntax(STDIN_NAME, text), fromStdin: true };
  }
  const file = await locateDefinition(contextDir, options.file, cwd);
  const displayFile = displayPath(file, cwd);
  // Refused before it is read: a definition file is small (src/frontends/limits.ts).
  if (((await stat(file).catch(() => undefined))?.size ?? 0) > MAX_DEFINITION_BYTES) throw definitionTooLarge(displayFile);
  const bytes = await readFile(file).catch((error: unknown) => {
    throw new LapinError(`cannot read ${displayFile}: ${(error as Error).message}`);
  });
  const text = decodeDefinition(bytes, displayFile);
  const syntax = options.syntax ?? detectSyntax(displayFile, text);
  return { file, displayFile, text, syntax };
}

/** The context's .dockerignore (or the file's own ignore file), announced in a step line. */
export async function readContextIgnore(settings: BuildSettings, definition: Definition): Promise<ContextIgnore | undefined> {
  const ignore = await loadContextIgnore(settings.contextDir, definition.fromStdin ? undefined : definition.file, (p) => displayPath(p, settings.cwd));
  if (ignore) settings.emit({ kind: 'step', message: `excluding what ${ignore.file} names from the build context` });
  return ignore;
}

async function locateDefinition(contextDir: string, file: string | undefined, cwd: string): Promise<string> {
  if (file !== undefined) {
    const resolved = path.resolve(cwd, file);
    const stats = await stat(resolved).catch(() => undefined);
    if (!stats) {
      // docker build's -f is relative to the current directory too; a file of that name in the context is the likely meaning.
      const inContext = path.resolve(contextDir, file);
      const there = inContext !== resolved && (await stat(inContext).catch(() => undefined))?.isFile() === true;
      const hint = there ? `it is relative to the current directory, not to the context: did you mean -f ${displayPath(inContext, cwd)}?` : 'check the -f path; it is relative to the current directory';
      throw new LapinError(`definition file ${file} not found`, { hint, exitCode: 2 });
    }
    if (!stats.isFile()) throw new LapinError(`definition file ${file} is not a file`, { hint: 'pass the bunnyfile, Containerfile or args.nix itself to -f, and its directory as the context', exitCode: 2 });
    return resolved;
  }
  for (const name of DEFAULT_FILE_NAMES) {
    const candidate = path.join(contextDir, name);
    const stats = await stat(candidate).catch(() => undefined);
    if (stats?.isFile()) return candidate;
    // A FIFO or device under the name: say so, rather than that there is no such file.
    if (stats && !stats.isDirectory()) throw new LapinError(`${displayPath(candidate, cwd)} is not a regular file`, { hint: 'replace it with the definition file itself, or name another file with -f FILE', exitCode: 2 });
  }
  throw new LapinError(`no ${DEFAULT_FILE_NAMES.join(', ')} in ${contextDir}`, {
    hint: 'pass the directory that holds it as the context, as in lapin build DIR, or name the file with -f FILE',
    exitCode: 2,
  });
}
