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
