// lapin inspect on images lapin did not build: each made here by hand
// (tar-stream + zlib) and read back from an archive, a layout directory and
// a docker-archive; verdicts in the library, exit codes through the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect, type InspectReport } from '../../src/inspect/inspect.js';
import { fakeElfKernel, full, uruncJsonFile, writeDockerArchive, writeOciArchive, writeOciLayout, type HandImage } from '../helpers/hand-image.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-inspect-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function lapin(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd: work, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const unikraft = { unikernelType: 'unikraft', hypervisor: 'qemu', binary: '/unikernel/app', cmdline: 'app -v' };
const kernelLayer = [
  { name: 'unikernel/', type: 'directory' as const },
  { name: 'unikernel/app', body: fakeElfKernel(), mode: 0o755 },
];

let counter = 0;
async function archive(image: HandImage): Promise<string> {
  const path = join(work, `image-${counter++}.tar`);
  await writeOciArchive(path, image);
  return path;
}

function messages(list: Array<{ message: string }>): string {
  return list.map((m) => m.message).join('\n');
}

describe('lapin inspect: hand-made images', () => {
  test('urunc.json only: every path reads /urunc.json; exit 0', async () => {
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(unikraft)]], cmd: ['app', '-v'] });
    const report = await inspect(`oci-archive:${path}`);
    assert.equal(report.runnable, true, messages(report.errors));
    assert.equal(report.values.annotations.found, false);
    assert.equal(report.values.uruncJson.found, true);
    assert.deepEqual(report.values.uruncJson.values, unikraft);
    assert.equal(report.effective.source, 'uruncJson');
    assert.deepEqual(report.consumers.map((c) => [c.id, c.works, c.source]), [
      ['docker', true, 'uruncJson'],
      ['containerd-annotations', true, 'uruncJson'],
      ['containerd', true, 'uruncJson'],
    ]);
    const binary = report.files.find((f) => f.key === 'binary');
    assert.equal(binary?.exists, true);
    assert.equal(binary?.size, 4096);
    assert.equal(binary?.type, 'elf');
    assert.equal(binary?.architecture, 'amd64');
    assert.equal(report.commandLine.cmdline, 'app -v');
    assert.deepEqual(report.commandLine.processArgs, ['app', '-v']);
    assert.equal(report.commandLine.consistent, true);
    assert.equal(report.commandLine.guest, 'app      -- -v');
    assert.equal(lapin(['inspect', path]).status, 0);
  });

  test('labels only: urunc reads no labels, so no path works; exit 1', async () => {
    const path = await archive({ layers: [kernelLayer], labels: full(unikraft), cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.match(messages(report.errors), /only in the config labels, which urunc never reads/);
    assert.ok(report.consumers.every((c) => !c.works && c.source === 'none'));
    const cli = lapin(['inspect', path]);
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(cli.stdout, /verdict: urunc cannot run this image/);
  });

  test('a guest/monitor pair urunc refuses; exit 1', async () => {
    const values = { unikernelType: 'mirage', hypervisor: 'firecracker', binary: '/unikernel/app' };
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(values)]], annotations: full(values), cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.equal(report.pair.accepted, false);
    assert.deepEqual(report.pair.monitorsForGuest, ['hvt', 'spt', 'qemu']);
    assert.match(messages(report.errors), /urunc does not run mirage guests on firecracker/);
    const cli = lapin(['inspect', '--json', path]);
    assert.equal(cli.status, 1);
    const json = JSON.parse(cli.stdout) as InspectReport;
    assert.equal(json.schemaVersion, 1);
    assert.equal(json.pair.accepted, false);
  });

  test('a missing binary; exit 1', async () => {
    const values = { ...unikraft, binary: '/unikernel/missing' };
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(values)]], annotations: full(values), cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.deepEqual(report.files.map((f) => [f.key, f.exists]), [['binary', false]]);
    assert.match(messages(report.errors), /\/unikernel\/missing is missing in the image rootfs/);
  });

  test('an unclean path; exit 1', async () => {
    const values = { ...unikraft, binary: '/unikernel//app' };
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(values)]], annotations: full(values), cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.deepEqual(report.paths, [{ key: 'binary', value: '/unikernel//app', problem: 'contains "//"' }]);
  });

  test('sources that disagree: containerd with annotations works, docker does not; exit 0 with warnings', async () => {
    const json = { ...unikraft, binary: '/unikernel/old-app' };
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(json)]], annotations: full(unikraft), labels: full({ ...unikraft, hypervisor: 'firecracker' }), cmd: ['app', '-v'] });
    const report = await inspect(path);
    assert.equal(report.runnable, true);
    assert.equal(report.agreement.agree, false);
    assert.deepEqual(report.agreement.differences, [
      { key: 'binary', annotations: '/unikernel/app', labels: '/unikernel/app', uruncJson: '/unikernel/old-app' },
      { key: 'hypervisor', annotations: 'qemu', labels: 'firecracker', uruncJson: 'qemu' },
    ]);
    assert.deepEqual(report.consumers.map((c) => [c.id, c.works]), [
      ['docker', false],
      ['containerd-annotations', true],
      ['containerd', false],
    ]);
    assert.match(messages(report.warnings), /works only on some paths: docker fails: .*old-app is missing/);
    assert.match(messages(report.warnings), /the sources disagree on binary/);
    assert.equal(report.errors.length, 0);
  });

  test('a plain non-unikernel image; exit 1', async () => {
    const path = await archive({ layers: [[{ name: 'bin/', type: 'directory' }, { name: 'bin/sh', body: '#!/bin/true\n', mode: 0o755 }]], cmd: ['/bin/sh'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.match(messages(report.errors), /not a unikernel image/);
    assert.equal(lapin(['inspect', path]).status, 1);
  });

  test('plain-text urunc.json values are caught: urunc base64-decodes "qemu" into garbage', async () => {
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(unikraft, false)]], cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, false);
    assert.match(messages(report.errors), /hypervisor "qemu" is plain text|is not base64/);
  });

  test('whiteouts and opaque directories decide what the flattened rootfs holds', async () => {
    const values = { ...unikraft, initrd: '/boot/initrd' };
    const path = await archive({
      layers: [
        [...kernelLayer, { name: 'boot/', type: 'directory' }, { name: 'boot/initrd', body: '070701' + '0'.repeat(200) }],
        // Layer 2 deletes the kernel and empties /boot (opaque), then puts a new kernel back under another name.
        [{ name: 'unikernel/.wh.app' }, { name: 'boot/', type: 'directory' }, { name: 'boot/.wh..wh..opq' }, { name: 'unikernel/app2', body: fakeElfKernel() }],
        [uruncJsonFile(values)],
      ],
      cmd: ['app'],
    });
    const report = await inspect(path);
    assert.deepEqual(report.files.map((f) => [f.key, f.exists]), [['binary', false], ['initrd', false]]);
    const fixed = await archive({
      layers: [
        [...kernelLayer, { name: 'boot/', type: 'directory' }],
        [{ name: 'unikernel/.wh.app' }, { name: 'unikernel/app', type: 'symlink', linkname: 'app2' }, { name: 'unikernel/app2', body: fakeElfKernel() }, { name: 'boot/initrd', body: '070701' + '0'.repeat(200) }],
        [uruncJsonFile(values)],
      ],
      cmd: ['app'],
    });
    const good = await inspect(fixed);
    assert.equal(good.runnable, true, messages(good.errors));
    const binary = good.files.find((f) => f.key === 'binary');
    assert.equal(binary?.resolvedPath, '/unikernel/app2');
    assert.equal(good.files.find((f) => f.key === 'initrd')?.type, 'cpio-newc');
  });

  test('the same image read from a layout directory, a docker archive and with oci: / docker-archive: prefixes', async () => {
    const image: HandImage = { layers: [kernelLayer, [uruncJsonFile(unikraft)]], annotations: full(unikraft), cmd: ['app', '-v'], tag: 'v1' };
    const layout = join(work, 'layout');
    await writeOciLayout(layout, image);
    const docker = join(work, 'docker.tar');
    await writeDockerArchive(docker, image);
    for (const source of [layout, `oci:${layout}`, `oci:${layout}:v1`, docker, `docker-archive:${docker}`]) {
      const report = await inspect(source);
      assert.equal(report.runnable, true, `${source}: ${messages(report.errors)}`);
      assert.equal(report.values.uruncJson.values.binary, '/unikernel/app');
    }
    assert.equal((await inspect(layout)).source.transport, 'oci');
    // docker save drops manifest annotations; urunc.json carries the values.
    const fromDocker = await inspect(docker);
    assert.equal(fromDocker.source.transport, 'docker-archive');
    assert.equal(fromDocker.values.annotations.found, false);
    const wrongTag = lapin(['inspect', `oci:${layout}:v2`]);
    assert.equal(wrongTag.status, 2);
    assert.match(wrongTag.stderr, /no image tagged "v2"/);
  });
});

describe('lapin inspect: sources it cannot read exit 2', () => {
  test('a missing file, a file that is not an archive, an unknown registry', async () => {
    const missing = lapin(['inspect', join(work, 'nope.tar')]);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /^lapin: error: .*no such file/m);
    const text = join(work, 'text.tar');
    await writeFile(text, 'not a tar at all\n'.repeat(64));
    const notTar = lapin(['inspect', `oci-archive:${text}`]);
    assert.equal(notTar.status, 2);
    assert.match(notTar.stderr, /not a tar archive/);
    // A registry that cannot be reached (here: a name that never resolves) is not a verdict either.
    const registry = lapin(['inspect', 'docker://registry.invalid/app:1']);
    assert.equal(registry.status, 2);
    assert.match(registry.stderr, /^lapin: error: docker:\/\/registry\.invalid\/app:1: cannot (resolve|reach) the registry host registry\.invalid|^lapin: error: docker:\/\/registry\.invalid\/app:1: cannot reach registry\.invalid/m);
    for (const r of [missing, notTar, registry]) assert.doesNotMatch(r.stderr, /^\s+at /m);
  });

  test('a truncated archive is an I/O error, not a verdict', async () => {
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(unikraft)]], cmd: ['app'] });
    const { readFile } = await import('node:fs/promises');
    const data = await readFile(path);
    const cut = join(work, 'cut.tar');
    await writeFile(cut, data.subarray(0, Math.floor(data.length * 0.6)));
    assert.equal(lapin(['inspect', cut]).status, 2);
  });
});

describe("lapin inspect: lapin's own seed build", () => {
  test('the seed archive is runnable: exit 0, all three sources agree', () => {
    const out = join(work, 'seed.tar');
    const example = join(ROOT, 'examples/mirage-hvt');
    const built = lapin(['build', '-q', '-f', join(example, 'bunnyfile'), '-t', 'urunc/prebuilt/network-mirage-hvt:test', '--output', `type=oci,dest=${out}`, example]);
    assert.equal(built.status, 0, built.stderr);
    const r = lapin(['inspect', '--json', `oci-archive:${out}:test`]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as InspectReport;
    assert.equal(report.agreement.agree, true);
    assert.equal(report.pair.guest, 'mirage');
    assert.equal(report.pair.monitor, 'hvt');
    assert.equal(report.pair.accepted, true);
    assert.equal(report.files[0]?.detail, 'ELF 64-bit LSB executable, x86-64');
    assert.equal(report.consumers.find((c) => c.id === 'containerd-annotations')?.works, true);
  });
});
