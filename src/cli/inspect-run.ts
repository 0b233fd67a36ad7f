/** The `inspect` and `run` subcommands (kept apart from main.ts, which many hands edit). */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { parseUruncRelease, type UruncRelease } from '../plan/releases.js';
import { escapeLine } from '../text.js';

// inspect and run are loaded by their own commands only, so `lapin build` and --version do not pay for them.

/** "512", "512M", "1G" → megabytes. */
export function parseMemory(text: string): number {
  const match = /^(\d+)([MmGg]i?[Bb]?)?$/.exec(text);
  if (!match) throw new InvalidArgumentError('give megabytes, e.g. 256, 512M or 1G');
  const value = Number(match[1]);
  const megabytes = match[2]?.toLowerCase().startsWith('g') ? value * 1024 : value;
  if (megabytes < 1) throw new InvalidArgumentError('must be at least 1M');
  return megabytes;
}

/** `--urunc-version`: a release line lapin knows (build and inspect). */
export function uruncVersion(text: string): UruncRelease {
  const release = parseUruncRelease(text);
  if (release === undefined) throw new InvalidArgumentError('lapin knows urunc 0.8, 0.7 and pre-0.7, also written as versions such as v0.7.0 or 0.5.0');
  return release;
}

function seconds(text: string): number {
  if (!/^\d+(\.\d+)?$/.test(text) || Number(text) <= 0) throw new InvalidArgumentError('give a number of seconds');
  return Number(text);
}

export function inspectCommand(root: Command, setExitCode: (code: number) => void): void {
  root
    .command('inspect')
    .description('judge whether urunc can run an image, and on which paths')
    .argument('<source>', 'oci-archive:PATH[:TAG], oci:DIR[:TAG], docker-archive:PATH[:NAME], docker-daemon:NAME, docker://REF, or a path')
    .option('--json', 'print the report as JSON (docs/inspect.md)')
    .option('--urunc-version <version>', 'the urunc release the verdict and exit code are for: 0.8 (default), 0.7 or pre-0.7', uruncVersion)
    .option('--insecure-registry <host>', 'HOST[:PORT] may use HTTPS without certificate checks, or plain HTTP (localhost and 127.0.0.0/8 may use plain HTTP); repeatable', (value: string, previous: string[] = []) => [...previous, value])
    .action(async (source: string, opts: { json?: boolean; insecureRegistry?: string[]; uruncVersion?: UruncRelease }) => {
      const [{ inspectAny, isIndexReport, formatIndexReport }, { formatReport }] = await Promise.all([import('../inspect/index-report.js'), import('../inspect/format.js')]);
      // As for a build: --debug shows each registry request (method, URL without its query, status), never a header.
      const debug = root.opts<{ debug?: boolean }>().debug === true;
      const registry = {
        insecureRegistries: opts.insecureRegistry ?? [],
        ...(debug ? { debug: (message: string) => process.stderr.write(`lapin: debug: ${escapeLine(message)}\n`) } : {}),
      };
      // An index is judged per platform (docs/inspect.md, "Image indexes").
      const report = await inspectAny(source, { registry, ...(opts.uruncVersion ? { release: opts.uruncVersion } : {}) });
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : isIndexReport(report) ? formatIndexReport(report) : formatReport(report));
      setExitCode(report.runnable ? 0 : 1);
    });
}

export function runCommand(root: Command, setExitCode: (code: number) => void): void {
  root
    .command('run')
    .description('boot an image here with the monitor urunc would use')
    .argument('<source>', 'the image, as for inspect')
    .argument('[args...]', 'after --: replace the image Cmd, as docker run IMAGE ARGS does')
    .option('--print', 'print the monitor command instead of running it')
    .option('--memory <size>', 'guest memory (default 256M, as urunc)', parseMemory)
    .option('--timeout <seconds>', 'stop the guest after this long (exit 124)', seconds)
    .addOption(new Option('--accel <accel>', 'qemu accelerator').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--platform <os/arch>', "boot this platform's image of an index (e.g. linux/arm64, or arm64 or aarch64 as buildx takes it) instead of this machine's")
    .action(async (source: string, args: string[], opts: { print?: boolean; memory?: number; timeout?: number; accel: 'auto' | 'kvm' | 'tcg'; platform?: string }) => {
      const { run } = await import('../run/run.js');
      const code = await run({
        source,
        ...(args.length > 0 ? { args } : {}),
        ...(opts.print ? { print: true } : {}),
        ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
        ...(opts.timeout !== undefined ? { timeout: opts.timeout } : {}),
        accel: opts.accel,
        ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
      });
      setExitCode(code);
    });
}
