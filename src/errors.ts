import { resolve } from 'node:path';

/** A position in a user's input file; line and column are 1-based. */
export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

export function formatPosition(at: SourcePosition): string {
  return `${at.file}:${at.line}:${at.column}`;
}

/**
 * An error the user can act on. The CLI prints it as one line
 * ("file:line:col: message") without a stack trace.
 */
export class LapinError extends Error {
  readonly at: SourcePosition | undefined;
  /** What the user can do instead, appended after the message. */
  readonly hint: string | undefined;
  /** Exit code the CLI uses: 1 for a failed build, 2 for wrong usage. */
  readonly exitCode: 1 | 2;

  constructor(message: string, options: { at?: SourcePosition; hint?: string; exitCode?: 1 | 2; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LapinError';
    this.at = options.at;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }

  /** The one-line form shown to users. */
  describe(): string {
    const where = this.at ? `${formatPosition(this.at)}: ` : '';
    const hint = this.hint ? ` (${this.hint})` : '';
    return `${where}${this.message}${hint}`;
  }
}

/** Wrong command-line usage; exits 2. */
export class UsageError extends LapinError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: 2, ...(hint === undefined ? {} : { hint }) });
    this.name = 'UsageError';
  }
}

const FILE_SYSTEM_REASONS: Record<string, string> = {
  ENOENT: 'its directory does not exist or does not take new files',
  ENOTDIR: 'a part of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'the operation is not permitted there',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space is left on the device',
  EDQUOT: 'the disk quota is exceeded',
  EISDIR: 'it is a directory',
  EEXIST: 'something else appeared there while lapin wrote it',
  ENOTEMPTY: 'it is a directory that is not empty',
  EXDEV: 'the temporary file is on another file system',
  EIO: 'the device reported an I/O error',
  EINVAL: 'the file system does not take such a file',
  ENAMETOOLONG: 'the name is too long',
  EFBIG: 'the file is too large for the file system',
};

/**
 * A file-system error (errno code and path) met while writing one of the
 * outputs, as one sentence naming the output as the user wrote it, or
 * undefined when the error's path belongs to none of them. A path belongs to
 * an output when it is the output, under it, or a temporary beside it
 * (".NAME.lapin-tmp-…").
 */
export function outputFailure(error: unknown, outputs: ReadonlyArray<{ given: string; path: string }>): LapinError | undefined {
  const errno = error as NodeJS.ErrnoException & { dest?: string };
  if (!(error instanceof Error) || typeof errno.code !== 'string') return undefined;
  // Node reports the path as it was passed: relative ones are resolved like the outputs.
  const paths = [errno.path, errno.dest].filter((p): p is string => typeof p === 'string').map((p) => resolve(p));
  for (const output of outputs) {
    const dir = output.path.slice(0, output.path.lastIndexOf('/') + 1);
    const base = output.path.slice(dir.length);
    const matches = paths.some((p) => p === output.path || p.startsWith(`${output.path}/`) || p.startsWith(`${dir}.${base}.lapin-tmp-`));
    if (!matches) continue;
    const reason = FILE_SYSTEM_REASONS[errno.code] ?? errno.code;
    const placeHint = ['EACCES', 'EPERM', 'EROFS', 'ENOENT', 'ENOTDIR'].includes(errno.code);
    return new LapinError(`cannot write ${output.given}: ${reason}`, { cause: error, ...(placeHint ? { hint: 'choose a writable place' } : {}) });
  }
  return undefined;
}
