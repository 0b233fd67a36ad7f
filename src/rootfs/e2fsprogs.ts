/** Running the e2fsprogs tools (mke2fs, debugfs, e2fsck) the block image writers drive. */
import { spawn } from 'node:child_process';
import { LapinError } from '../errors.js';

export const E2FSPROGS_HINT = 'install e2fsprogs (Debian/Ubuntu: apt-get install e2fsprogs; Fedora: dnf install e2fsprogs; Alpine: apk add e2fsprogs)';

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runTool(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new LapinError(`building a block rootfs needs ${file} from e2fsprogs, which is not installed`, { hint: E2FSPROGS_HINT }));
      } else {
        reject(new LapinError(`cannot run ${file}: ${error.message}`));
      }
    });
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** The clock e2fsprogs runs at: the epoch, but never 0, which it takes for the wall clock. */
export function toolClock(mtime: number): number {
  return Math.max(1, Math.floor(mtime));
}

/** PATH with the sbin directories where Debian installs e2fsprogs, for users without them on PATH. */
export function toolEnv(mtime: number, config: string): NodeJS.ProcessEnv {
  const pathList = (process.env.PATH ?? '').split(':').filter((p) => p !== '');
  for (const dir of ['/usr/sbin', '/sbin']) if (!pathList.includes(dir)) pathList.push(dir);
  // debugfs pipes long output (stat) through a pager when it finds one.
  return { ...process.env, PATH: pathList.join(':'), LC_ALL: 'C', E2FSPROGS_FAKE_TIME: String(toolClock(mtime)), MKE2FS_CONFIG: config, DEBUGFS_PAGER: '__none__' };
}

/** The last lines of a tool's output that say something (not its version banner). */
export function lastLines(text: string): string {
  return text.trim().split('\n').filter((l) => l.trim() !== '' && !/^(mke2fs|debugfs|e2fsck) \d/.test(l)).slice(-3).join('; ');
}

let version: Promise<string> | undefined;

/** `mke2fs -V` as printed (tool and library versions): a kept image is reused only with the e2fsprogs that made it. */
export function e2fsprogsVersion(env: NodeJS.ProcessEnv): Promise<string> {
  version ??= runTool('mke2fs', ['-V'], env).then((result) => {
    if (result.code !== 0) throw new LapinError(`mke2fs -V failed: ${lastLines(result.stderr || result.stdout)}`, { hint: E2FSPROGS_HINT });
    return (result.stderr + result.stdout).trim();
  });
  return version.catch((error: unknown) => {
    version = undefined;
    throw error;
  });
}
