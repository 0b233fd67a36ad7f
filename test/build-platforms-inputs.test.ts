// Issue 13 "Each platform gets its own inputs", end to end: `lapin build
// --platform linux/amd64,linux/arm64` of a bunnyfile, a Containerfile and an
// args.nix that name each platform's kernel with ${TARGETARCH}; each manifest
// of the index holds its own platform's kernel. A file that gives one kernel
// to both platforms stops at the kernel check, at the line that names it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspectAny, type IndexInspectReport } from '../src/inspect/index-report.js';
import { readArchive } from './helpers/archive.js';
import { fakeElf } from './helpers/hand-index.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

/** The CLI as users run it: another cwd, another TMPDIR, no SOURCE_DATE_EPOCH. */
function lapin(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: join(work, 'tmp dir') };
  delete env.SOURCE_DATE_EPOCH;
  return new Promise((done) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: work, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

const BUNNYFILE = `version: v0.1
platforms:
  framework: unikraft
  monitor: qemu
kernel:
  from: local
  path: build/\${TARGETOS}-\${TARGETARCH}/kernel
cmd: ["app"]
`;

const CONTAINERFILE = `ARG TARGETARCH
ARG KERNEL=build/linux-\${TARGETARCH}/kernel
FROM scratch
ARG KERNEL
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH
COPY \${KERNEL} /unikernel/kernel
LABEL com.urunc.unikernel.binary=/unikernel/kernel com.urunc.unikernel.unikernelType=unikraft com.urunc.unikernel.hypervisor=qemu
LABEL org.example.target="$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT]" org.example.build=$BUILDPLATFORM/$BUILDARCH
CMD ["app"]
`;

const ARGS_NIX = `{ TARGETOS, TARGETARCH, ... }:
{
  files = {
    "./build/\${TARGETOS}-\${TARGETARCH}/kernel" = "/unikernel/kernel";
  };
  annotations = {
    unikernelType = "unikraft";
    hypervisor = "qemu";
    binary = "/unikernel/kernel";
    cmdline = "app";
  };
}
`;

const HOST = `linux/${process.arch === 'x64' ? 'amd64' : process.arch}`;

/** A context with one file of `syntax` named `name` and both kernels. */
async function context(dir: string, name: string, text: string): Promise<string> {
  const at = join(work, dir);
  for (const [arch, machine] of [['amd64', 'x86-64'], ['arm64', 'aarch64']] as const) {
    await mkdir(join(at, 'build', `linux-${arch}`), { recursive: true });
    await writeFile(join(at, 'build', `linux-${arch}`, 'kernel'), fakeElf(machine));
  }
  await writeFile(join(at, name), text);
  return at;
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin platform inputs '));
  await mkdir(join(work, 'tmp dir'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('lapin build --platform linux/amd64,linux/arm64: each platform its own kernel', () => {
  for (const [syntax, name, text, kernelPath] of [
    ['bunnyfile', 'bunnyfile', BUNNYFILE, '/.boot/kernel'],
    ['Containerfile', 'Containerfile', CONTAINERFILE, '/unikernel/kernel'],
    ['args.nix', 'args.nix', ARGS_NIX, '/unikernel/kernel'],
  ] as const) {
    test(`${syntax}: every manifest holds its platform's kernel`, async () => {
      const dir = await context(`ok-${name}`, name, text);
      const out = join(work, `${name}.tar`);
      // arm64/v8 is arm64 to BuildKit: TARGETPLATFORM linux/arm64, no TARGETVARIANT.
      const result = await lapin(['build', '--platform', 'linux/amd64,linux/arm64/v8', '-t', `lapin-test/${name.toLowerCase().replace('.', '-')}:1`, '-o', `type=oci,dest=${out}`, dir]);
      assert.equal(result.status, 0, result.stderr);
      const report = (await inspectAny(out)) as IndexInspectReport;
      assert.deepEqual(
        report.platforms.map((p) => [p.platform, p.report.runnable, p.report.files.find((f) => f.key === 'binary')?.path, p.report.files.find((f) => f.key === 'binary')?.architecture]),
        [
          ['linux/amd64', true, kernelPath, 'amd64'],
          ['linux/arm64', true, kernelPath, 'arm64'],
        ],
      );
      if (syntax === 'Containerfile') {
        // The platform args of each platform, and this machine as the build platform.
        const archive = await readArchive(out);
        const index = JSON.parse(archive.blob((JSON.parse(archive.text('index.json')) as { manifests: Array<{ digest: string }> }).manifests[0]?.digest ?? '').toString()) as { manifests: Array<{ digest: string }> };
        const labels = index.manifests.map((m) => {
          const manifest = JSON.parse(archive.blob(m.digest).toString()) as { config: { digest: string } };
          return (JSON.parse(archive.blob(manifest.config.digest).toString()) as { config: { Labels: Record<string, string> } }).config.Labels;
        });
        assert.deepEqual(labels.map((l) => [l['org.example.target'], l['org.example.build']]), [
          ['linux/amd64 linux amd64 []', `${HOST}/${HOST.split('/')[1]}`],
          ['linux/arm64 linux arm64 []', `${HOST}/${HOST.split('/')[1]}`],
        ]);
      }
    });
  }

  for (const [syntax, name, text, where] of [
    ['bunnyfile', 'bunnyfile', BUNNYFILE.replace('${TARGETOS}-${TARGETARCH}', 'linux-amd64'), 'bunnyfile:7:9'],
    ['Containerfile', 'Containerfile', CONTAINERFILE.replace('linux-${TARGETARCH}', 'linux-amd64'), 'Containerfile:7:7'],
    ['args.nix', 'args.nix', ARGS_NIX.replace('${TARGETOS}-${TARGETARCH}', 'linux-amd64'), 'args.nix:9:14'],
  ] as const) {
    test(`${syntax}: one kernel for both platforms is refused at the line that names it, nothing written`, async () => {
      const dir = await context(`one-${name}`, name, text);
      const out = join(work, `never-${name}.tar`);
      const result = await lapin(['build', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${out}`, '-f', join(dir, name), dir]);
      assert.equal(result.status, 1, result.stderr);
      const lines = result.stderr.trim().split('\n').filter((line) => line.startsWith('lapin: error'));
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0] ?? '', new RegExp(`^lapin: error: one-${name.replace('.', '\\.')}/${where.replace('.', '\\.')}: --platform linux/arm64: the kernel /[^ ]+ is built for amd64, not arm64 \\(give each platform its own kernel, e\\.g\\. .*TARGETARCH[^(]*\\)$`));
      assert.doesNotMatch(result.stderr, /\n\s+at /);
      await assert.rejects(readFile(out), 'nothing written');
    });
  }
});
