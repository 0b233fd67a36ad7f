/** `lapin imagetools create` (docs/multi-platform.md); kept apart from program.ts, which many hands edit. */
import { Option, type Command } from 'commander';
import { defaultCacheDir } from '../image/layer-cache.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

interface CreateOpts {
  tag?: string[];
  strategy: 'abort' | 'overwrite' | 'merge';
  output?: string;
  dryRun?: boolean;
  insecureRegistry?: string[];
  cache: boolean;
  platform?: string;
}

export function imagetoolsCommand(root: Command): void {
  const imagetools = root.command('imagetools').description('work on image indexes (multi-platform images) that already exist');
  imagetools
    .command('create')
    .description('make one image index from images that already exist, and push it or write it')
    .argument('<source...>', 'images or indexes: docker://REF or a reference, oci-archive:PATH[:TAG], oci:DIR[:TAG]')
    .option('-t, --tag <name>', 'NAME[:TAG] to push the index to (with --output: its name in the layout); repeatable', collect)
    .addOption(new Option('--strategy <strategy>', 'a platform given twice: abort (an error), overwrite (the later wins), merge (keep the index already at the target, add to it)').choices(['abort', 'overwrite', 'merge']).default('abort'))
    .option('--platform <platforms>', 'only these platforms of the sources, comma-separated, as buildx takes them (linux/arm64, arm64, aarch64, x86_64...)')
    .option('--output <spec>', 'type=oci,dest=PATH[,tar=false]: write an OCI archive (or layout directory) instead of pushing')
    .option('--dry-run', 'print the index instead of pushing or writing it')
    .option('--no-cache', 'write the --output archive even when it already holds this index, unchanged since lapin wrote it')
    .option('--insecure-registry <host>', 'HOST[:PORT] may use HTTPS without certificate checks, or plain HTTP; repeatable', collect)
    .action(async (sources: string[], opts: CreateOpts) => {
      const { createIndex, parseIndexOutput } = await import('../imagetools/create.js');
      // A UsageError, printed by main: commander prints no InvalidArgumentError thrown from an action.
      const output = opts.output === undefined ? undefined : parseIndexOutput(opts.output);
      const debug = root.opts<{ debug?: boolean }>().debug === true;
      const created = await createIndex({
        tags: opts.tag ?? [],
        sources,
        strategy: opts.strategy,
        ...(opts.platform !== undefined ? { platforms: opts.platform.split(',').map((p) => p.trim()) } : {}),
        ...(output ? { output } : {}),
        ...(opts.dryRun ? { dryRun: true } : {}),
        // As lapin build: an archive already holding this very index, untouched since lapin wrote it, is left alone (export/archive-record.ts).
        ...(opts.cache ? { recordDir: defaultCacheDir() } : {}),
        registry: {
          insecureRegistries: opts.insecureRegistry ?? [],
          ...(debug ? { debug: (message: string) => process.stderr.write(`lapin: debug: ${message}\n`) } : {}),
        },
        onEvent: (event) => {
          if (event.kind === 'step') process.stderr.write(`lapin: ${event.message}\n`);
        },
      });
      if (opts.dryRun) {
        process.stdout.write(`${JSON.stringify(JSON.parse(created.bytes.toString('utf8')), null, 2)}\n`);
        return;
      }
      for (const pushed of created.pushed) process.stdout.write(`${pushed.name}@${pushed.digest}\n`);
      if (output) process.stdout.write(`${output.dest}@${created.digest}\n`);
    });
}
