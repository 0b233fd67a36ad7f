/** Command-line usage pieces shared by the commands, kept light: --help and --version load this. */
import { UsageError } from '../errors.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'quiet', 'rawjson'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/** What users of other tools type, too far from lapin's word for commander to suggest it. */
const OTHER_TOOLS_WORDS: Record<string, string> = {
  // docker buildx imagetools inspect: lapin inspect reads an index (and judges each platform).
  "unknown command 'inspect'": 'lapin inspect SOURCE reads image indexes too',
};

/**
 * commander's error text ("error: unknown option '--tga'\n(Did you mean
 * --tag?)\n") as lapin's one error format: one line, `lapin: error:`, the
 * suggestion or the way to usage as the hint in parentheses.
 */
export function commanderErrorLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  const message = (lines[0] ?? 'wrong usage').replace(/^error: /, '');
  const suggestion = lines.slice(1).find((line) => /^\(Did you mean .*\)$/.test(line));
  const hint = suggestion ? `did you mean ${suggestion.slice('(Did you mean '.length, -1)}` : (OTHER_TOOLS_WORDS[message] ?? 'run with --help for usage');
  return `lapin: error: ${message} (${hint})\n`;
}

/** buildx refuses to write an archive into a terminal; so does lapin. */
export function refuseTerminalStdout(outputs: ReadonlyArray<{ dest?: string | undefined }>, stdoutIsTerminal: boolean): void {
  if (stdoutIsTerminal && outputs.some((output) => output.dest === '-')) {
    throw new UsageError('refusing to write the image archive to a terminal (-o -)', 'redirect stdout to a file or a pipe, e.g. > image.tar, or give a file: -o image.tar');
  }
}
