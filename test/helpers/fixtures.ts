// Small build inputs several tests share.
import { spawn } from 'node:child_process';

/**
 * A Containerfile for a Mirage/hvt kernel: kernel.hvt copied to
 * /unikernel/kernel.hvt, then `copies` (further COPY lines), then the urunc labels.
 */
export function kernelContainerfile(...copies: string[]): string {
  return [
    'FROM scratch',
    'COPY kernel.hvt /unikernel/kernel.hvt',
    ...copies,
    'LABEL com.urunc.unikernel.binary=/unikernel/kernel.hvt',
    'LABEL com.urunc.unikernel.cmdline=""',
    'LABEL com.urunc.unikernel.unikernelType=mirage',
    'LABEL com.urunc.unikernel.hypervisor=hvt',
    '',
  ].join('\n');
}

export interface ProgramResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program without blocking this process (a synchronous spawn would
 * freeze the proxies and servers a test serves) and collects its output.
 */
export function runProgram(program: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end(options.input ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
