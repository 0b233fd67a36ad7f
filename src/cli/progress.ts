import type cliProgressModule from 'cli-progress';
import type { BuildEvent, BuildResult } from '../build.js';

export interface Reporter {
  event: (event: BuildEvent) => void;
  done: (result: BuildResult) => void;
}

/** Layers smaller than this finish before a bar is worth drawing. */
const BAR_THRESHOLD_BYTES = 8 * 1024 * 1024;

/**
 * Build output on stderr: steps unless quiet, warnings always, and on a
 * terminal a bar for each large layer while it is written.
 */
export function createReporter(options: { quiet: boolean; plain: boolean }): Reporter {
  const tty = Boolean(process.stderr.isTTY) && !options.plain && !options.quiet;
  // Loaded only for a terminal; until it arrives, progress is simply not drawn.
  let cliProgress: typeof cliProgressModule | undefined;
  if (tty) void import('cli-progress').then((module) => (cliProgress = module.default));
  let bars: cliProgressModule.MultiBar | undefined;
  const active = new Map<string, cliProgressModule.SingleBar>();
  const write = (line: string): void => {
    if (bars) bars.log(`${line}\n`);
    else process.stderr.write(`${line}\n`);
  };
  const stopBars = (): void => {
    bars?.stop();
    bars = undefined;
    active.clear();
  };
  return {
    event(event) {
      if (event.kind === 'warning') {
        write(`lapin: warning: ${event.message}`);
      } else if (event.kind === 'step') {
        if (!options.quiet) write(`=> ${event.message}`);
      } else if (cliProgress && event.total >= BAR_THRESHOLD_BYTES) {
        bars ??= new cliProgress.MultiBar(
          { stream: process.stderr, format: '   {label} [{bar}] {percentage}% {value}/{total} MiB', hideCursor: true, clearOnComplete: true },
          cliProgress.Presets.shades_classic,
        );
        const mib = (n: number): number => Math.round(n / (1024 * 1024));
        let bar = active.get(event.id);
        if (!bar) {
          bar = bars.create(mib(event.total), 0, { label: event.message });
          active.set(event.id, bar);
        }
        bar.update(Math.min(mib(event.done), mib(event.total)));
        if (event.done >= event.total) {
          active.delete(event.id);
          if (active.size === 0) stopBars();
        }
      }
    },
    done(result) {
      stopBars();
      if (options.quiet) return;
      const names = result.names.length > 0 ? result.names.join(', ') : '(no name)';
      write(`=> built ${names} for ${result.platform.os}/${result.platform.architecture}`);
      write(`=> digest ${result.digest}`);
    },
  };
}
