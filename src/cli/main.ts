#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { build, writeMetadataFile, type OutputSpec } from '../build.js';
import { LapinError, UsageError } from '../errors.js';
import { removePendingSync } from '../export/atomic.js';
import { parseSyntaxName } from '../frontends/index.js';
import { createReporter } from './progress.js';

const VERSION = '0.1.0';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Parses repeated K=V options; `K` alone reads $K, as docker does for --build-arg. */
export function keyValues(values: string[], option: string, fromEnvironment = false): Record<string, string> {
  const result: Record<string, string> = {};
  for (const value of values) {
    const equals = value.indexOf('=');
    if (equals <= 0) {
      if (fromEnvironment && equals < 0 && value !== '') {
        const env = process.env[value];
        if (env !== undefined) result[value] = env;
        continue;
      }
      throw new UsageError(`${option} ${JSON.stringify(value)} is not KEY=VALUE`);
    }
    result[value.slice(0, equals)] = value.slice(equals + 1);
  }
  return result;
}

/** Parses buildx's --output syntax: "type=oci,dest=x.tar", "dest=-", or a bare path. */
export function parseOutput(spec: string): OutputSpec {
  if (!spec.includes('=')) {
    // buildx: a bare path is a local directory; an archive name or "-" is clearly an archive.
    if (spec === '-' || spec.endsWith('.tar')) return { type: 'oci', dest: spec };
    return { type: 'local', dest: spec };
  }
  const fields: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const equals = part.indexOf('=');
    if (equals <= 0) throw new UsageError(`--output ${JSON.stringify(spec)}: ${JSON.stringify(part)} is not key=value`);
    fields[part.slice(0, equals).trim()] = part.slice(equals + 1).trim();
  }
  const type = fields.type ?? 'oci';
  const dest = fields.dest;
  for (const key of Object.keys(fields)) {
    if (!['type', 'dest', 'tar', 'name'].includes(key)) {
      throw new UsageError(`--output: unknown field ${JSON.stringify(key)}`, 'lapin understands type, dest and tar');
    }
  }
  if (dest === undefined || dest === '') throw new UsageError(`--output ${JSON.stringify(spec)} needs dest=PATH`);
  if (type === 'local') return { type: 'local', dest };
  if (type !== 'oci' && type !== 'docker') {
    throw new UsageError(`--output type=${type} is not supported`, 'use type=oci, type=docker or type=local');
  }
  const tar = fields.tar === undefined ? true : parseBoolean(fields.tar, 'tar');
  return { type, dest, tar };
}

function parseBoolean(text: string, name: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new UsageError(`--output ${name}=${text} must be true or false`);
}

function integer(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('not a whole number');
  return Number(value);
}

interface BuildCommandOptions {
  file?: string;
  syntax?: string;
  tag?: string[];
  output?: string[];
  buildArg?: string[];
  annotation?: string[];
  label?: string[];
  platform?: string;
  metadataFile?: string;
  quiet?: boolean;
  uruncChecks: 'error' | 'warn';
  compression: 'gzip' | 'none';
  compressionLevel?: number;
  progress: 'auto' | 'plain' | 'quiet';
}

export function program(): Command {
  const root = new Command('lapin')
    .description('Package pre-built unikernels as OCI images that urunc can run')
    .version(VERSION)
    .option('--debug', 'show stack traces for failures')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });

  root
    .command('build')
    .description('build an image from a bunnyfile, Containerfile or args.nix')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <path>', 'definition file (default: bunnyfile, Containerfile, Dockerfile or args.nix in the context)')
    .option('--syntax <syntax>', 'bunnyfile, containerfile or nix (default: detected)')
    .option('-t, --tag <name>', 'image name NAME[:TAG]; repeatable', collect)
    .option('-o, --output <spec>', 'type=oci|docker|local,dest=PATH[,tar=false]; dest=- writes to stdout; repeatable', collect)
    .option('--build-arg <key=value>', 'set a Containerfile ARG; repeatable', collect)
    .option('--annotation <key=value>', 'add a manifest annotation; repeatable', collect)
    .option('--label <key=value>', 'add an image label; repeatable', collect)
    .option('--platform <platform>', 'linux/amd64 or linux/arm64 (default: from the file, else the kernel)')
    .option('--metadata-file <path>', 'write build metadata (digests, names) as JSON')
    .addOption(new Option('--urunc-checks <mode>', 'error: refuse images urunc would reject; warn: build them anyway').choices(['error', 'warn']).default('error'))
    .addOption(new Option('--compression <type>', 'layer compression').choices(['gzip', 'none']).default('gzip'))
    .option('--compression-level <n>', 'gzip level 1-9', integer)
    .addOption(new Option('--progress <mode>', 'progress output').choices(['auto', 'plain', 'quiet']).default('auto'))
    .option('-q, --quiet', 'print only the image digest')
    .action(async (context: string, opts: BuildCommandOptions) => {
      const outputs = (opts.output ?? []).map(parseOutput);
      const toStdout = outputs.some((o) => o.dest === '-');
      const quiet = opts.quiet === true || opts.progress === 'quiet';
      const reporter = createReporter({ quiet, plain: opts.progress === 'plain' });
      if (opts.compressionLevel !== undefined && (opts.compressionLevel < 1 || opts.compressionLevel > 9)) {
        throw new UsageError('--compression-level must be between 1 and 9');
      }
      const result = await build({
        context,
        ...(opts.file !== undefined ? { file: opts.file } : {}),
        ...(opts.syntax !== undefined ? { syntax: parseSyntaxName(opts.syntax) } : {}),
        tags: opts.tag ?? [],
        outputs,
        buildArgs: keyValues(opts.buildArg ?? [], '--build-arg', true),
        annotations: keyValues(opts.annotation ?? [], '--annotation'),
        labels: keyValues(opts.label ?? [], '--label'),
        ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
        uruncChecks: opts.uruncChecks,
        compression: opts.compression,
        ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
        stdout: process.stdout,
        onEvent: reporter.event,
      });
      if (opts.metadataFile) await writeMetadataFile(opts.metadataFile, result);
      reporter.done(result);
      if (opts.quiet && !toStdout) process.stdout.write(`${result.digest}\n`);
    });
  return root;
}

function installSignalHandlers(): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(signal, () => {
      removePendingSync();
      process.stderr.write(`lapin: interrupted; removed partial output\n`);
      process.exit(code);
    });
  }
}

function describeUnexpected(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ENOSPC') return `no space left on the device (${message}); partial output was removed`;
  if (code === 'EACCES' || code === 'EPERM') return `permission denied: ${message}`;
  if (code === 'EPIPE') return 'the output pipe closed before the image was written';
  return `${message} (run with --debug for details)`;
}

export async function main(argv: string[]): Promise<number> {
  installSignalHandlers();
  const debug = argv.includes('--debug');
  try {
    await program().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    removePendingSync();
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return 0;
      return 2;
    }
    if (error instanceof LapinError) {
      process.stderr.write(`lapin: error: ${error.describe()}\n`);
      if (debug && error.stack) process.stderr.write(`${error.stack}\n`);
      return error.exitCode;
    }
    process.stderr.write(`lapin: error: ${describeUnexpected(error)}\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  () => {
    process.exitCode = 1;
  },
);
