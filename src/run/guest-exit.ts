/**
 * How a guest ended, read from its console. urunc execs the monitor, so a
 * container's status is the monitor's; but qemu started with -no-reboot
 * exits 0 both when a Linux guest powers off and when it panics (panic=-1
 * reboots at once). The console tells them apart:
 *   "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"
 * carries init's wait status (here exit 1); any other panic ("No working init
 * found", "VFS: Unable to mount root fs") has none.
 */

/** lapin run's exit code for a guest kernel panic that carries no init status (docs in README, "lapin run"). */
export const GUEST_PANIC_EXIT = 125;

/** Longest console line kept while looking for a panic; the rest of a longer line is dropped. */
const MAX_LINE = 4096;

export interface GuestEnd {
  /** The exit code lapin run returns. */
  code: number;
  /** Why, for a note on stderr; absent when the monitor's status stands. */
  reason?: string;
}

export class GuestConsoleWatch {
  private line = '';
  private panic: string | undefined;
  private initStatus: number | undefined;

  /** Feeds console output as it arrives (any chunking). */
  feed(chunk: Buffer | string): void {
    if (this.panic !== undefined) return;
    const text = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    let start = 0;
    for (;;) {
      const newline = text.indexOf('\n', start);
      const piece = text.slice(start, newline < 0 ? undefined : newline);
      if (this.line.length < MAX_LINE) this.line += piece.slice(0, MAX_LINE - this.line.length);
      if (newline < 0) break;
      this.examine(this.line);
      this.line = '';
      if (this.panic !== undefined) return;
      start = newline + 1;
    }
  }

  /** The exit code once the monitor exited with `monitorCode`. */
  end(monitorCode: number): GuestEnd {
    if (this.panic === undefined) this.examine(this.line);
    if (this.panic === undefined) return { code: monitorCode };
    if (this.initStatus !== undefined && this.initStatus !== 0) {
      return { code: this.initStatus, reason: `the guest's init ended with status ${this.initStatus} and the kernel panicked: ${this.panic}` };
    }
    return { code: GUEST_PANIC_EXIT, reason: `the guest kernel panicked: ${this.panic}` };
  }

  private examine(line: string): void {
    const at = line.indexOf('Kernel panic - not syncing: ');
    if (at < 0) return;
    this.panic = line
      .slice(at + 'Kernel panic - not syncing: '.length)
      .replace(/[^\x20-\x7e]/g, '')
      .replace(/\s*\]---\s*$/, '')
      .trim()
      .slice(0, 200);
    const exit = /Attempted to kill init! exitcode=0x([0-9a-fA-F]{1,8})/.exec(line);
    if (exit) this.initStatus = waitStatusCode(Number.parseInt(exit[1] as string, 16));
  }
}

/** A wait status as a shell reports it: the exit status, or 128 + the signal. */
function waitStatusCode(status: number): number {
  const signal = status & 0x7f;
  return signal === 0 ? (status >> 8) & 0xff : 128 + signal;
}
