import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { resolveInContext } from './context.js';
import { IgnoreMatcher, parseIgnoreFile } from './ignore.js';

/** An ignore file is a list of patterns; anything near a definition file's limit is a mistake. */
const MAX_IGNORE_FILE_BYTES = 1024 * 1024;

export interface ContextIgnore {
  matcher: IgnoreMatcher;
  /** The file the patterns came from, as shown in messages. */
  file: string;
}

/**
 * The ignore file BuildKit would use for this definition file: `<file>.dockerignore`
 * beside it wins over `.dockerignore` at the root of the context. Undefined when there is none.
 */
export async function loadContextIgnore(
  contextDir: string,
  definitionFile: string | undefined,
  display: (file: string) => string,
): Promise<ContextIgnore | undefined> {
  // The context's .dockerignore is read as a context file: a symlink resolves inside the context, never out of it.
  const inContext = await resolveInContext(contextDir, '.dockerignore');
  const candidates = [
    ...(definitionFile === undefined ? [] : [{ candidate: `${definitionFile}.dockerignore`, written: `${definitionFile}.dockerignore` }]),
    ...(inContext === undefined ? [] : [{ candidate: inContext, written: path.join(contextDir, '.dockerignore') }]),
  ];
  for (const { candidate, written } of candidates) {
    const info = await stat(candidate).catch(() => undefined);
    if (info === undefined) continue;
    const shown = display(written);
    if (!info.isFile()) throw new LapinError(`${shown} is not a regular file`, { hint: 'an ignore file is a text file of patterns' });
    if (info.size > MAX_IGNORE_FILE_BYTES) throw new LapinError(`${shown} is larger than 1 MiB, lapin's limit for an ignore file`);
    const text = await readFile(candidate, 'utf8').catch((error: unknown) => {
      throw new LapinError(`cannot read ${shown}: ${(error as Error).message}`);
    });
    return { matcher: new IgnoreMatcher(parseIgnoreFile(text, shown)), file: shown };
  }
  return undefined;
}
