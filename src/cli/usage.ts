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
  // docker's and skopeo's verbs for what lapin does during a build, or leaves to them.
  "unknown command 'push'": 'lapin build --push pushes as it builds; skopeo copy oci-archive:FILE docker://NAME pushes an archive',
  "unknown command 'load'": 'lapin build --load loads as it builds; docker load -i FILE loads an archive',
  "unknown command 'pull'": 'a build pulls the base images it names; lapin inspect docker://NAME reads one from its registry',
  "unknown command 'version'": 'lapin --version prints it',
};

/**
 * commander's "option '--memory <size>' argument '1x' is invalid. give megabytes." (or
 * "Allowed choices are a, b.") as message and hint: the flag, the value, then what to give.
 */
function invalidValue(message: string): { message: string; hint: string } | undefined {
  const option = /^option '([^']*)' argument '(.*)' is invalid\. (.*?)\.?$/s.exec(message);
  const argument = /^command-argument value '(.*)' is invalid for argument '([^']*)'\. (.*?)\.?$/s.exec(message);
  if (!option && !argument) return undefined;
  const flag = option ? (option[1]?.split(/[ ,]+/).find((word) => word.startsWith('--')) ?? option[1]) : argument?.[2];
  const value = (option ? option[2] : argument?.[1]) ?? '';
  const reason = (option ? option[3] : argument?.[3]) ?? '';
  const choices = /^Allowed choices are (.*)$/.exec(reason);
  return { message: `${flag} ${JSON.stringify(value)} is invalid`, hint: choices ? `use one of ${choices[1]}` : reason };
}

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
  const invalid = invalidValue(message);
  if (invalid) return `lapin: error: ${invalid.message} (${invalid.hint})\n`;
  const missing = /^option '(.*) (<[^>]*>)' argument missing$/.exec(message);
  if (missing) return `lapin: error: ${missing[1]} needs a value (${missing[1]?.split(/[ ,]+/).at(-1)} ${missing[2]})\n`;
  const suggestion = lines.slice(1).find((line) => /^\(Did you mean .*\)$/.test(line));
  const hint = suggestion ? `did you mean ${suggestion.slice('(Did you mean '.length, -1)}` : (OTHER_TOOLS_WORDS[message] ?? 'run with --help for usage');
  return `lapin: error: ${message} (${hint})\n`;
}

/** buildx refuses to write an archive into a terminal; so does lapin. */
export function refuseTerminalStdout(outputs: ReadonlyArray<{ dest?: string | undefined }>, stdoutIsTerminal: boolean): void {
  if (stdoutIsTerminal && outputs.some((output) => output.dest === '-')) {
    throw new UsageError('refusing to write the image archive to stdout, which is a terminal', 'redirect stdout to a file or a pipe, e.g. > image.tar, or give a file: -o image.tar');
  }
}

/** docker build -f - reads the file from stdin; a terminal there would wait for typing that never ends. */
export function refuseTerminalStdin(file: string | undefined, stdinIsTerminal: boolean): void {
  if (file === '-' && stdinIsTerminal) {
    throw new UsageError('-f - reads the definition file from stdin, which is a terminal here', 'pipe it in, e.g. lapin build -f - . < Containerfile, or name the file with -f FILE');
  }
}
