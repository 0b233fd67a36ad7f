import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import path from 'node:path';
import type { BuildOptions, OutputSpec } from '../build.js';
import { LapinError, outputFailure, UsageError } from '../errors.js';
import { removePendingSync } from '../export/atomic.js';
import { completedOutputs } from '../temporaries.js';
import { escapeLine } from '../text.js';
import { restoreNodeExtraCaCerts } from '../registry/ca-env.js';
import { parseByteSize } from '../rootfs/size.js';
import type { RegistryOptions } from '../registry/client.js';
import type { UruncRelease } from '../plan/releases.js';
import { imagetoolsCommand } from './imagetools.js';
import { inspectCommand, runCommand, uruncVersion } from './inspect-run.js';
import { commanderErrorLine, PROGRESS_MODES, refuseTerminalStdin, refuseTerminalStdout, SHELLS, type ProgressMode, type Shell } from './usage.js';
import { registerLoginCommands } from './login.js';

export const VERSION = '0.1.0';

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

/** The --output fields lapin reads; buildx's `oci-mediatypes=true` is what lapin always writes. */
const OUTPUT_FIELDS = ['type', 'dest', 'tar', 'name', 'push', 'oci-mediatypes'];

/**
 * One line of CSV, as buildx reads --output (Go's encoding/csv): a field that starts
 * with `"` runs to the closing quote, `""` inside it is one quote, so
 * `"name=a:1,b:2"` is one field.
 */
export function csvFields(line: string): string[] {
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (line[i] === '"') {
      i++;
      for (;;) {
        const quote = line.indexOf('"', i);
        if (quote < 0) throw new UsageError(`--output ${JSON.stringify(line)}: a quote is not closed`, 'close it, e.g. "name=a:1,b:2"');
        field += line.slice(i, quote);
        i = quote + 1;
        if (line[i] !== '"') break;
        field += '"';
        i++;
      }
      if (i < line.length && line[i] !== ',') throw new UsageError(`--output ${JSON.stringify(line)}: text after a closing quote`, 'quote the whole field, e.g. "name=a:1,b:2"');
    } else {
      const comma = line.indexOf(',', i);
      field = line.slice(i, comma < 0 ? line.length : comma);
      if (field.includes('"')) throw new UsageError(`--output ${JSON.stringify(line)}: a quote inside a field`, 'quote the whole field, e.g. "name=a:1,b:2"');
      i = comma < 0 ? line.length : comma;
    }
    fields.push(field);
    if (i >= line.length) return fields;
    i++;
  }
}

/** buildx's output fields that are build-wide flags in lapin: which flag to use instead. */
function buildxFieldHint(key: string, value: string): string | undefined {
  if (key === 'compression' || key === 'compression-level') return `lapin compresses every output alike: use --${key} ${value}`;
  if (key === 'force-compression') return 'lapin compresses every layer it writes as --compression says; drop it';
  const annotation = /^annotation(?:-manifest)?(?:\[[^\]]*\])?\.(.+)$/.exec(key);
  if (annotation) return `use --annotation ${annotation[1]}=${value}`;
  if (key === 'registry.insecure') return 'use --insecure-registry HOST';
  if (key === 'unpack' || key === 'store') return 'lapin keeps no image store; drop it, or use --load to hand the image to docker or containerd';
  return undefined;
}

/** Parses buildx's --output syntax: "type=oci,dest=x.tar", "dest=-", or a bare path. */
export function parseOutput(spec: string, pushFlag = false): OutputSpec {
  if (spec.trim() === '') throw new UsageError('--output needs a value', 'e.g. -o type=oci,dest=image.tar, -o image.tar or -o type=docker');
  if (!spec.includes('=')) {
    // buildx: a bare path is a local directory; an archive name or "-" is clearly an archive.
    if (spec === '-' || spec.endsWith('.tar')) return { type: 'oci', dest: spec };
    return { type: 'local', dest: spec };
  }
  const fields: Record<string, string> = {};
  for (const part of csvFields(spec)) {
    const equals = part.indexOf('=');
    if (equals <= 0) throw new UsageError(`--output ${JSON.stringify(spec)}: ${JSON.stringify(part)} is not key=value`);
    fields[part.slice(0, equals).trim()] = part.slice(equals + 1).trim();
  }
  const type = fields.type ?? 'oci';
  const dest = fields.dest;
  for (const [key, value] of Object.entries(fields)) {
    if (!OUTPUT_FIELDS.includes(key)) {
      throw new UsageError(`--output: unknown field ${JSON.stringify(key)}`, buildxFieldHint(key, value) ?? 'lapin understands type, dest, tar, name, push and oci-mediatypes');
    }
  }
  if (fields['oci-mediatypes'] !== undefined && !parseBoolean(fields['oci-mediatypes'], 'oci-mediatypes')) {
    throw new UsageError('--output oci-mediatypes=false: lapin writes OCI media types only', 'drop oci-mediatypes=false; docker 20.10, containerd, podman, skopeo and umoci all read them');
  }
  // buildx: name= names the image in this output (the -t names otherwise).
  const names = fields.name ? fields.name.split(/[,;\s]+/).filter((n) => n !== '') : [];
  const named = names.length > 0 ? { names } : {};
  if (type === 'registry' || type === 'image') {
    // buildx: type=registry is type=image,push=true (so is type=image with --push); name= overrides the -t names.
    const push = type === 'registry' || (fields.push === undefined && pushFlag) || (fields.push !== undefined && parseBoolean(fields.push, 'push'));
    if (!push) throw new UsageError('--output type=image without push=true has no image store to go to', 'add push=true, or use --load');
    return { type: 'registry', ...named };
  }
  if (type !== 'oci' && type !== 'docker' && type !== 'local') {
    throw new UsageError(`--output type=${type} is not supported`, 'use type=oci, type=docker, type=local or type=registry');
  }
  // buildx: type=docker without dest loads into docker.
  if (type === 'docker' && dest === undefined && fields.tar === undefined) return { type: 'load', engine: 'docker', ...named };
  const tar = type === 'local' || fields.tar === undefined ? true : parseBoolean(fields.tar, 'tar');
  // buildx: an archive output without dest goes to stdout (and is refused on a terminal).
  if (type === 'oci' && tar && (dest === undefined || dest === '')) return { type, dest: '-', tar, ...named };
  if (dest === undefined || dest === '') {
    throw new UsageError(`--output ${JSON.stringify(spec)} needs dest=PATH`, type === 'local' ? 'name the directory for the rootfs, e.g. dest=rootfs' : tar ? 'name the archive, e.g. dest=image.tar' : 'name the layout directory, e.g. dest=layout');
  }
  if (dest === '-' && (type === 'local' || !tar)) {
    // buildx would stream the files as a tar; lapin writes them only into a directory.
    throw new UsageError(`--output ${JSON.stringify(spec)}: ${type === 'local' ? 'type=local' : 'tar=false'} writes a directory, not stdout`, type === 'local' ? 'name a directory, e.g. dest=rootfs, or write the image archive to stdout with -o -' : 'name a directory, e.g. dest=layout, or drop tar=false for an archive on stdout');
  }
  if (type === 'local') return { type: 'local', dest };
  return { type, dest, tar, ...named };
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
  strategy?: 'abort' | 'overwrite' | 'merge';
  metadataFile?: string;
  quiet?: boolean;
  uruncChecks: 'error' | 'warn';
  uruncVersion?: UruncRelease;
  compression: 'gzip' | 'zstd' | 'none';
  compressionLevel?: number;
  rootfsSize?: number;
  cache: boolean;
  progress: ProgressMode;
  push?: boolean;
  load?: string[];
  insecureRegistry?: string[];
  pull: 'missing' | 'always' | 'never';
  target?: string;
  kernelImage?: string;
  initImage?: string;
  builder?: string;
}

function byteSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === undefined) throw new InvalidArgumentError('expected a byte count or a number with K, M or G, e.g. 64M');
  return bytes;
}

export function program(): Command {
  const root = new Command('lapin')
    .description('Package pre-built unikernels as OCI images that urunc can run')
    .version(VERSION)
    .option('--debug', 'show stack traces for failures')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text), outputError: (text, write) => write(commanderErrorLine(text)) });

  root
    .command('build')
    .description('build an image from a bunnyfile, Containerfile or args.nix')
    .argument('[context]', 'build context directory', '.')
    .option('-f, --file <path>', 'definition file, - for stdin (default: bunnyfile, Containerfile, Dockerfile or args.nix in the context)')
    .option('--syntax <syntax>', 'bunnyfile, containerfile or nix (default: detected)')
    .option('-t, --tag <name>', 'image name NAME[:TAG]; repeatable', collect)
    .option('-o, --output <spec>', 'type=oci|docker|local,dest=PATH[,tar=false], type=registry or type=image,push=true[,name=NAME]; dest=- (or type=oci without dest) writes to stdout; repeatable', collect)
    .option('--build-arg <key=value>', 'set a Containerfile ARG; repeatable', collect)
    .option('--target <stage>', 'build the Containerfile up to this stage, which becomes the image')
    .option('--annotation <key=value>', 'add a manifest annotation; repeatable', collect)
    .option('--label <key=value>', 'add an image label; repeatable', collect)
    .option('--platform <platform>', 'linux/amd64 or linux/arm64, in any form buildx takes (arm64, aarch64, x86_64, linux/arm64/v8; default: from the file, else the kernel); linux/amd64,linux/arm64 builds both and an image index')
    .addOption(new Option('--strategy <strategy>', 'with --push, build an image index and: merge it into the index at each -t, abort if a platform built is there, or overwrite it').choices(['abort', 'overwrite', 'merge']))
    .option('--metadata-file <path>', 'write build metadata (digests, names) as JSON')
    .addOption(new Option('--urunc-checks <mode>', 'error: refuse images urunc would reject; warn: build them anyway').choices(['error', 'warn']).default('error'))
    .option('--urunc-version <version>', "the urunc release whose rules are enforced: 0.8 (default), 0.7 or pre-0.7", uruncVersion)
    .addOption(new Option('--compression <type>', 'layer compression').choices(['gzip', 'zstd', 'none']).default('gzip'))
    .option('--compression-level <n>', 'gzip 1-9 (default 1), zstd 1-19 (default 3)', integer)
    .option('--no-cache', 'do not reuse or record layers, gzip members or block images in the cache')
    .option('--rootfs-size <size>', 'size of a block rootfs built from files, e.g. 64M or 1G (overrides rootfs.size)', byteSize)
    .addOption(new Option('--progress <mode>', 'auto (tty on a terminal, else plain), tty, plain (each step with its duration), quiet or rawjson (one JSON event a line, docs/progress.md)').choices([...PROGRESS_MODES]).default('auto'))
    .option('-q, --quiet', 'print only the image digest')
    .option('--push', 'push the image to its registry under every -t name (same as --output type=registry)')
    .addOption(new Option('--load [engine]', 'load the image into docker (--load) or containerd (--load=containerd[,namespace=NS,address=SOCK]); repeatable').preset('docker').argParser(collect))
    .option('--insecure-registry <host>', 'HOST[:PORT] may use HTTPS without certificate checks, or plain HTTP (localhost and 127.0.0.0/8 may use plain HTTP); repeatable', collect)
    .addOption(new Option('--pull <mode>', 'base images: pull when not cached, always (also --pull alone, as buildx), or never').choices(['missing', 'always', 'never']).default('missing'))
    .option('--kernel-image <image>', "Containerfile Linux guest: copy /.boot/kernel from this image (default: bunny's linux-kernel-qemu or -firecracker)")
    .option('--init-image <image>', "Containerfile Linux guest: copy /urunit from this image (default: bunny's urunit)")
    .option('--builder <name>', 'builder for Containerfiles with RUN: buildah, podman or docker (default: the first installed)')
    .action(async (context: string, opts: BuildCommandOptions) => {
      // Loaded here, not at the top: --version and --help stay fast (docs/performance.md).
      const [{ build, checkMetadataFile, writeMetadataFile }, { parseSyntaxName }, { createReporter }] = await Promise.all([
        import('../build.js'),
        import('../frontends/index.js'),
        import('./progress.js'),
      ]);
      const outputs = (opts.output ?? []).map((spec) => parseOutput(spec, opts.push === true));
      if (opts.push && !outputs.some((o) => o.type === 'registry')) outputs.push({ type: 'registry' });
      if (opts.load) {
        const { parseLoadSpec } = await import('../export/load.js');
        for (const spec of opts.load) outputs.push({ type: 'load', ...parseLoadSpec(spec) });
      }
      const toStdout = outputs.some((o) => o.dest === '-');
      refuseTerminalStdout(outputs, process.stdout.isTTY === true);
      refuseTerminalStdin(opts.file, process.stdin.isTTY === true);
      const reporter = createReporter({ mode: opts.quiet === true ? 'quiet' : opts.progress, stream: process.stderr });
      activeReporter = reporter;
      const maxLevel = opts.compression === 'zstd' ? 19 : 9;
      if (opts.compressionLevel !== undefined && (opts.compressionLevel < 1 || opts.compressionLevel > maxLevel)) {
        throw new UsageError(`--compression-level must be between 1 and ${maxLevel} for ${opts.compression}`);
      }
      if (opts.metadataFile !== undefined) await checkMetadataFile(opts.metadataFile);
      const written = [...outputs.flatMap((o) => (o.dest !== undefined && o.dest !== '-' ? [o.dest] : [])), ...(opts.metadataFile !== undefined ? [opts.metadataFile] : [])];
      const buildOptions: BuildOptions = {
        context,
        ...(opts.file !== undefined ? { file: opts.file } : {}),
        ...(opts.syntax !== undefined ? { syntax: parseSyntaxName(opts.syntax) } : {}),
        tags: opts.tag ?? [],
        outputs,
        buildArgs: keyValues(opts.buildArg ?? [], '--build-arg', true),
        ...(opts.target !== undefined ? { target: opts.target } : {}),
        annotations: keyValues(opts.annotation ?? [], '--annotation'),
        labels: keyValues(opts.label ?? [], '--label'),
        ...(opts.platform !== undefined ? { platform: opts.platform } : {}),
        uruncChecks: opts.uruncChecks,
        ...(opts.uruncVersion ? { uruncVersion: opts.uruncVersion } : {}),
        compression: opts.compression,
        ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
        ...(opts.rootfsSize !== undefined ? { rootfsSize: opts.rootfsSize } : {}),
        cache: opts.cache,
        stdout: process.stdout,
        ...(opts.file === '-' ? { stdin: process.stdin } : {}),
        onEvent: reporter.event,
        registry: registryOptions(opts.insecureRegistry ?? [], root.opts<{ debug?: boolean }>().debug === true),
        pull: opts.pull,
        ...(opts.kernelImage !== undefined ? { kernelImage: opts.kernelImage } : {}),
        ...(opts.initImage !== undefined ? { initImage: opts.initImage } : {}),
        ...(opts.builder !== undefined ? { builder: opts.builder } : {}),
      };
      if (opts.platform?.includes(',') || opts.strategy !== undefined) {
        // Several platforms, or one merged into an index: one image each, then an image index (docs/multi-platform.md).
        const { splitPlatforms } = await import('../pipeline/platform.js');
        const { platform, ...rest } = buildOptions;
        const platforms = platform === undefined ? [] : splitPlatforms(platform);
        if (platforms.length === 0) throw new UsageError('--strategy builds an image index: it needs --platform', 'e.g. --platform linux/arm64 --push --strategy merge');
        const built = await withOutputNames(written, () =>
          build({ ...rest, platforms, ...(opts.strategy ? { strategy: opts.strategy } : {}) }).then(async (done) => {
            if (opts.metadataFile) await writeMetadataFile(opts.metadataFile, done);
            return done;
          }),
        );
        // The display's result lines are for one image: stop it (and clear its line) and say what was built here.
        reporter.interrupt(0);
        if (opts.quiet && !toStdout) process.stdout.write(`${built.digest}\n`);
        else if (opts.quiet !== true && opts.progress !== 'quiet') process.stderr.write(`lapin: built index ${built.digest} (${built.platforms.join(', ')}) -> ${built.outputs.map((o) => (o.digest !== undefined && o.digest !== built.digest ? `${o.dest} (index ${o.digest})` : o.dest)).join(', ')}\n`);
        return;
      }
      const result = await withOutputNames(written, () => build(buildOptions).then(async (built) => {
        if (opts.metadataFile) await writeMetadataFile(opts.metadataFile, built);
        return built;
      }));
      reporter.done(result);
      if (opts.quiet && !toStdout) process.stdout.write(`${result.digest}\n`);
    });
  inspectCommand(root, setExitCode);
  runCommand(root, setExitCode);
  imagetoolsCommand(root);
  registerLoginCommands(root, collect);
  root
    .command('completion')
    .description('print a shell completion script: source <(lapin completion bash), lapin completion fish | source')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices([...SHELLS]))
    .action(async (shell: Shell) => {
      const { completionScript } = await import('./completion.js');
      process.stdout.write(completionScript(root, shell));
    });
  return root;
}

/** A file-system error on an output becomes one sentence naming the output as given on the command line. */
async function withOutputNames<T>(given: string[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw outputFailure(error, given.map((name) => ({ given: name, path: path.resolve(name) }))) ?? error;
  }
}

/** The build's progress display, told of an interrupt so that its last line is finished first. */
let activeReporter: { interrupt: (exitCode: number) => void; fail: (message: string, exitCode: number) => boolean } | undefined;

/** Set by commands whose outcome is an exit code (inspect's verdict, the guest's exit status). */
let commandExitCode = 0;
function setExitCode(code: number): void {
  commandExitCode = code;
}

/** Registry settings from flags; --debug shows requests (method, URL without query, status), never headers. */
function registryOptions(insecureRegistries: string[], debug: boolean): RegistryOptions {
  return {
    insecureRegistries,
    ...(debug ? { debug: (message: string) => process.stderr.write(`lapin: debug: ${escapeLine(message)}\n`) } : {}),
  };
}

/** Kinds of request that run on libuv's thread pool and may block there for good (process.getActiveResourcesInfo). */
const THREAD_POOL_REQUESTS = new Set(['FSReqCallback', 'FSReqPromise', 'GetAddrInfoReqWrap', 'GetNameInfoReqWrap']);

function installSignalHandlers(): void {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(signal, () => {
      activeReporter?.interrupt(code);
      removePendingSync();
      const kept = completedOutputs();
      process.stderr.write(`lapin: interrupted; removed partial output${kept.length > 0 ? `; complete and kept: ${escapeLine(kept.join(', '))}` : ''}\n`);
      // exit() waits for the libuv thread pool, and a thread stuck in open() of a FIFO never returns:
      // then die of the signal itself (the shell still sees 128 + signal number).
      if (process.getActiveResourcesInfo().some((resource) => THREAD_POOL_REQUESTS.has(resource))) {
        process.removeAllListeners(signal);
        process.kill(process.pid, signal);
        return;
      }
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

/** Go's strconv.ParseBool, which buildx's boolean flags use: `--push=1`, `--push=True`, `--push=false`. */
function goBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

/** buildx's boolean flags, whose bare form lapin also has: what each means when true. */
const BOOLEAN_FLAGS: Record<string, string> = { '--push': '--push', '--no-cache': '--no-cache', '--load': '--load=docker' };
const PULL_MODES = ['missing', 'always', 'never'];

/**
 * buildx's forms of lapin build's flags, as lapin's own: `--load` alone means docker
 * (so it never takes the context that follows as its value) while `--load=containerd`
 * names an engine; `--push=true`/`=false` (any Go boolean), `--no-cache=...`,
 * `--load=false`, the last one written winning as in buildx; a bare `--pull` is
 * `--pull=always`, `--pull=true`/`false` are always/missing.
 */
export function normalizeLoadFlag(argv: string[]): string[] {
  const command = argv.find((arg) => !arg.startsWith('-'));
  if (command !== 'build') return argv;
  const end = argv.indexOf('--');
  const options = end < 0 ? argv.length : end;
  // Each boolean flag's last occurrence decides it: what it becomes there (undefined: dropped).
  const last = new Map<string, { at: number; becomes: string | undefined }>();
  for (const [i, arg] of argv.slice(0, options).entries()) {
    const equals = arg.indexOf('=');
    const name = equals < 0 ? arg : arg.slice(0, equals);
    const meaning = BOOLEAN_FLAGS[name];
    if (meaning === undefined) continue;
    if (equals < 0) {
      last.set(name, { at: i, becomes: meaning });
      continue;
    }
    const value = goBool(arg.slice(equals + 1));
    // --load=ENGINE[,...] is a value of its own; any other non-boolean is left for the parser to refuse.
    last.set(name, { at: i, becomes: value === undefined ? arg : value ? meaning : undefined });
  }
  const result: string[] = [];
  for (const [i, arg] of argv.entries()) {
    if (i >= options) {
      result.push(arg);
      continue;
    }
    const equals = arg.indexOf('=');
    const name = equals < 0 ? arg : arg.slice(0, equals);
    const decided = last.get(name);
    if (decided !== undefined) {
      if (decided.at === i && decided.becomes !== undefined) result.push(decided.becomes);
      continue;
    }
    if (arg === '--pull' && !PULL_MODES.includes(argv[i + 1] ?? '')) result.push('--pull=always');
    else if (name === '--pull' && equals > 0 && goBool(arg.slice(equals + 1)) !== undefined) result.push(goBool(arg.slice(equals + 1)) ? '--pull=always' : '--pull=missing');
    else result.push(arg);
  }
  return result;
}

/**
 * A reader that closes stdout or stderr (`| head -1`) ends what lapin says there, not the build:
 * without a listener the EPIPE would be an uncaught exception, exit 1 with the output half-written.
 * The archive written to stdout (`dest=-`) sees the error through its own stream and fails as before.
 */
function toleratePipeClosing(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
    });
  }
  // Whatever ends the process (an uncaught error included), it leaves no temporaries.
  process.on('exit', removePendingSync);
}

export async function main(argv: string[]): Promise<number> {
  // Here, not at the top of a module: module top levels are frozen into the start-up snapshot.
  restoreNodeExtraCaCerts();
  installSignalHandlers();
  toleratePipeClosing();
  const debug = argv.includes('--debug');
  try {
    await program().parseAsync(normalizeLoadFlag(argv), { from: 'user' });
    return commandExitCode;
  } catch (error) {
    removePendingSync();
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.exitCode === 0) return 0;
      return 2;
    }
    if (error instanceof LapinError) {
      if (activeReporter?.fail(error.describe(), error.exitCode) !== true) process.stderr.write(`lapin: error: ${escapeLine(error.describe())}\n`);
      if (debug && error.stack) process.stderr.write(`${error.stack}\n`);
      return error.exitCode;
    }
    if (activeReporter?.fail(describeUnexpected(error), 1) !== true) process.stderr.write(`lapin: error: ${escapeLine(describeUnexpected(error))}\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return 1;
  }
}

/** Runs the CLI on `argv` (the arguments after the program name) and sets the exit code. */
export function runCli(argv: string[]): void {
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.exitCode = 1;
    },
  );
}
