/**
 * Build output on stderr, in buildx's --progress modes (docs/progress.md):
 * - tty: step lines, and below them a live region with every long step
 *   still running (elapsed time; bytes, rate and ETA where the size is known);
 * - plain: step lines only, each with the time it took;
 * - quiet: warnings only;
 * - rawjson: one JSON object a line, for CI systems.
 * auto is tty on a terminal, plain otherwise.
 */
import type { BuildEvent, BuildResult } from '../build.js';
import { formatBytes, formatDuration } from '../human.js';
import { escapeLine } from '../text.js';
import type { ProgressMode } from './usage.js';

export interface Reporter {
  event: (event: BuildEvent) => void;
  done: (result: BuildResult) => void;
  /** Before the interrupt message: clear the live region and leave the cursor on a clean line. */
  interrupt: (exitCode: number) => void;
  /** Shows a failure in this mode's form; false when the caller should print its usual line. */
  fail: (message: string, exitCode: number) => boolean;
}

export interface ReporterOptions {
  mode: ProgressMode;
  stream: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Milliseconds since some origin; tests pass their own clock. */
  now?: () => number;
}

/** A step is drawn in the live region once it has run this long (short ones would only flicker). */
const SHOW_AFTER_MS = 150;
const REDRAW_MS = 100;
/** Plain output names a step that is still running after this long. */
const PLAIN_SHOW_AFTER_MS = 1000;
/** rawjson: at most one progress event per id in this time, besides the first and the last. */
const RAWJSON_PROGRESS_MS = 250;
const SPINNER = ['|', '/', '-', '\\'];

interface Task {
  message: string;
  start: number;
  done?: number;
  total?: number;
}

function isTerminal(stream: ReporterOptions['stream']): boolean {
  return (stream as NodeJS.WriteStream).isTTY === true;
}

export function createReporter(options: ReporterOptions): Reporter {
  const mode = options.mode === 'auto' ? (isTerminal(options.stream) ? 'tty' : 'plain') : options.mode;
  if (mode === 'rawjson') return rawJsonReporter(options);
  return textReporter(options, mode);
}

function resultLines(result: BuildResult): string[] {
  const names = result.names.length > 0 ? result.names.join(', ') : '(no name)';
  return [`=> built ${names} for ${result.platform.os}/${result.platform.architecture}`, `=> digest ${result.digest}`];
}

function textReporter(options: ReporterOptions, mode: 'tty' | 'plain' | 'quiet'): Reporter {
  const stream = options.stream;
  const now = options.now ?? (() => performance.now());
  // --progress tty draws the region even when stderr is not a terminal, as buildx does.
  const live = mode === 'tty';
  const tasks = new Map<string, Task>();
  let lastLine = now();
  let drawn = 0;
  let frame = 0;
  let timer: NodeJS.Timeout | undefined;

  const clearRegion = (): string => {
    if (drawn === 0) return '';
    const text = `\x1b[${drawn}A\r\x1b[J`;
    drawn = 0;
    return text;
  };
  const regionText = (): string => {
    const columns = (stream as NodeJS.WriteStream).columns || 80;
    const at = now();
    const lines: string[] = [];
    for (const task of tasks.values()) {
      if (at - task.start < SHOW_AFTER_MS) continue;
      lines.push(fit(taskLine(task, at, SPINNER[frame % SPINNER.length] as string), columns - 1));
    }
    drawn = lines.length;
    return lines.map((line) => `${line}\n`).join('');
  };
  const redraw = (): void => {
    frame++;
    stream.write(clearRegion() + regionText());
  };
  const track = (): void => {
    if (!live) return;
    if (tasks.size > 0 && !timer) {
      timer = setInterval(redraw, REDRAW_MS);
      timer.unref();
    } else if (tasks.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
      stream.write(clearRegion());
    }
  };
  const write = (line: string): void => {
    // Messages carry names and values from images and registries.
    const text = `${escapeLine(line)}\n`;
    if (live) stream.write(clearRegion() + text + regionText());
    else stream.write(text);
  };
  const step = (message: string): void => {
    const at = now();
    write(`=> ${message} [${formatDuration((at - lastLine) / 1000)}]`);
    lastLine = at;
  };
  const stop = (): void => {
    if (timer) clearInterval(timer);
    timer = undefined;
    tasks.clear();
    if (live) stream.write(clearRegion());
  };

  return {
    event(event) {
      if (event.kind === 'warning') {
        write(`lapin: warning: ${event.message}`);
        return;
      }
      if (mode === 'quiet') return;
      if (event.kind === 'step') {
        step(event.message);
      } else if (event.kind === 'begin') {
        tasks.set(event.id, { message: event.message, start: now() });
        // Plain output has no live region: a step still running after a while is named, so a log never goes silent.
        if (!live) {
          const id = event.id;
          setTimeout(() => {
            if (tasks.has(id)) write(`=> ${event.message} …`);
          }, PLAIN_SHOW_AFTER_MS).unref();
        }
        track();
      } else if (event.kind === 'end') {
        tasks.delete(event.id);
        track();
      } else {
        const task = tasks.get(event.id) ?? { message: event.message, start: now() };
        task.done = event.done;
        task.total = event.total;
        tasks.set(event.id, task);
        if (event.done >= event.total) tasks.delete(event.id);
        track();
      }
    },
    done(result) {
      stop();
      if (mode === 'quiet') return;
      for (const line of resultLines(result)) write(line);
    },
    interrupt() {
      stop();
      // The terminal echoed ^C where the cursor was: start the next line clean.
      if (isTerminal(stream)) stream.write('\r\x1b[2K');
    },
    fail() {
      stop();
      return false;
    },
  };
}

function taskLine(task: Task, at: number, spinner: string): string {
  const seconds = (at - task.start) / 1000;
  const elapsed = formatDuration(seconds);
  const message = escapeLine(task.message);
  if (task.total === undefined || task.done === undefined || task.total <= 0) return `   ${spinner} ${message} ${elapsed}`;
  const fraction = Math.min(1, task.done / task.total);
  const width = 20;
  const filled = Math.round(fraction * width);
  const bar = `${'='.repeat(filled)}${' '.repeat(width - filled)}`;
  let line = `   ${message} [${bar}] ${formatBytes(task.done)} / ${formatBytes(task.total)}`;
  if (seconds >= 0.5 && task.done > 0) {
    const rate = task.done / seconds;
    line += `  ${formatBytes(rate)}/s`;
    if (fraction < 1) line += `  ETA ${formatDuration((task.total - task.done) / rate)}`;
  }
  return `${line}  ${elapsed}`;
}

/** Cut to the terminal width: a wrapped line would throw off the count of lines to redraw. */
function fit(line: string, columns: number): string {
  return line.length <= columns ? line : `${line.slice(0, Math.max(0, columns - 1))}…`;
}

function rawJsonReporter(options: ReporterOptions): Reporter {
  const stream = options.stream;
  const now = options.now ?? (() => performance.now());
  const began = new Map<string, number>();
  const lastProgress = new Map<string, number>();
  const emit = (record: Record<string, unknown>): void => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
  };
  return {
    event(event) {
      if (event.kind === 'step' || event.kind === 'warning') {
        emit({ kind: event.kind, message: event.message });
      } else if (event.kind === 'begin') {
        began.set(event.id, now());
        emit({ kind: 'begin', id: event.id, message: event.message });
      } else if (event.kind === 'end') {
        const start = began.get(event.id);
        began.delete(event.id);
        emit({ kind: 'end', id: event.id, ...(start !== undefined ? { seconds: Number(((now() - start) / 1000).toFixed(3)) } : {}) });
      } else {
        const at = now();
        const previous = lastProgress.get(event.id);
        const last = event.done >= event.total;
        if (previous !== undefined && !last && at - previous < RAWJSON_PROGRESS_MS) return;
        lastProgress.set(event.id, at);
        if (last) lastProgress.delete(event.id);
        emit({ kind: 'progress', id: event.id, message: event.message, done: event.done, total: event.total });
      }
    },
    done(result) {
      emit({ kind: 'result', digest: result.digest, names: result.names, platform: `${result.platform.os}/${result.platform.architecture}`, outputs: result.outputs, warnings: result.warnings.length });
    },
    interrupt(exitCode) {
      emit({ kind: 'error', message: 'interrupted', exitCode });
    },
    fail(message, exitCode) {
      emit({ kind: 'error', message, exitCode });
      return true;
    },
  };
}
