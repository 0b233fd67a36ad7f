// lapin inspect on images lapin did not build: each made here by hand
// (tar-stream + zlib) and read back from an archive, a layout directory and
// a docker-archive; verdicts in the library, exit codes through the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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

/** "release engine runs source" for every engine path, or only those of one release. */
function paths(report: InspectReport, release?: string): string[] {
  return report.urunc.engines.filter((e) => release === undefined || e.release === release).map((e) => `${e.release} ${e.engine} ${e.runs ? 'runs' : 'fails'} ${e.source}`);
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
    assert.equal(report.urunc.release, '0.8');
    assert.deepEqual(paths(report), ['pre-0.7', '0.7', '0.8'].flatMap((r) => ['docker', 'containerd', 'cri', 'podman'].map((e) => `${r} ${e} runs uruncJson`)));
    assert.ok(report.urunc.engines.every((e) => e.command === undefined && e.reasons.length === 0));
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

  test("labels only: urunc 0.8's shim reads them under containerd and the CRI (exit 0); older urunc runs it nowhere (exit 1)", async () => {
    const path = await archive({ layers: [kernelLayer], labels: full(unikraft), cmd: ['app'] });
    const report = await inspect(path);
    assert.equal(report.runnable, true, messages(report.errors));
    assert.deepEqual(paths(report, '0.8'), ['0.8 docker fails none', '0.8 containerd runs image-metadata', '0.8 cri runs image-metadata', '0.8 podman fails none']);
    assert.deepEqual(paths(report, '0.7'), ['docker', 'containerd', 'cri', 'podman'].map((e) => `0.7 ${e} fails none`));
    assert.equal(report.effective.source, 'image-metadata');
    assert.match(messages(report.warnings), /on urunc 0\.8, docker does not run it: the image has no \/urunc\.json; docker passes neither/);
    const cli = lapin(['inspect', path]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /config labels: \(urunc 0\.8's shim reads these under containerd and the CRI\)/);
    assert.match(cli.stdout, /yes {2}containerd \(ctr, nerdctl\): from the image's manifest annotations and labels, looked up by urunc's shim/);
    assert.match(cli.stdout, /verdict: urunc 0\.8 can run this image/);
    const old = lapin(['inspect', '--urunc-version', '0.7', path]);
    assert.equal(old.status, 1, old.stderr);
    assert.match(old.stdout, /only in the config labels, which urunc 0\.7 does not read/);
    assert.match(old.stdout, /verdict: urunc 0\.7 cannot run this image/);
    const json = JSON.parse(lapin(['inspect', '--json', '--urunc-version', 'v0.5.0', path]).stdout) as InspectReport;
    assert.equal(json.urunc.release, 'pre-0.7');
    assert.equal(json.runnable, false);
  });

  test('no Cmd and no Entrypoint: inspect gives the docker and nerdctl commands urunc documents (IMAGE unikernel)', async () => {
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(unikraft)]] });
    const report = await inspect(path);
    assert.equal(report.runnable, true, messages(report.errors));
    const commands = report.urunc.engines.filter((e) => e.release === '0.8' && e.command).map((e) => [e.engine, e.command]);
    assert.deepEqual(commands, [
      ['docker', ['docker', 'run', '--runtime', 'io.containerd.urunc.v2', 'IMAGE', 'unikernel']],
      ['containerd', ['nerdctl', 'run', '--runtime', 'io.containerd.urunc.v2', 'IMAGE', 'unikernel']],
      ['podman', ['podman', 'run', '--runtime', 'urunc', 'IMAGE', 'unikernel']],
    ]);
    const cli = lapin(['inspect', path]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /docker run, nerdctl run and podman run need a command:\n {4}docker run --runtime io\.containerd\.urunc\.v2 IMAGE unikernel\n {4}nerdctl run --runtime io\.containerd\.urunc\.v2 IMAGE unikernel\n {4}podman run --runtime urunc IMAGE unikernel\n/);
  });

  test("urunc's storage table: mountRootfs=true for mirage is a warning (exit 0), an initrd for mirage an error (exit 1)", async () => {
    const mirage = { unikernelType: 'mirage', hypervisor: 'qemu', binary: '/unikernel/app' };
    const ignored = await inspect(await archive({ layers: [kernelLayer, [uruncJsonFile({ ...mirage, mountRootfs: 'true' })]], cmd: ['app'] }));
    assert.equal(ignored.runnable, true, messages(ignored.errors));
    assert.match(messages(ignored.warnings), /mountRootfs=true: mirage cannot use the container rootfs; urunc ignores it/);
    const refused = await inspect(await archive({ layers: [kernelLayer, [uruncJsonFile({ ...mirage, initrd: '/unikernel/app' })]], cmd: ['app'] }));
    assert.equal(refused.runnable, false);
    assert.match(messages(refused.errors), /mirage cannot use an initrd: urunc does not give it one/);
  });

  test('Linux process args after an empty first one: a warning (urunc writes no init= and drops them), still runnable', async () => {
    const linux = { unikernelType: 'linux', hypervisor: 'qemu', binary: '/unikernel/app' };
    const report = await inspect(await archive({ layers: [kernelLayer, [uruncJsonFile(linux)]], annotations: full(linux), cmd: ['', 'quiet'] }));
    assert.equal(report.runnable, true, messages(report.errors));
    assert.match(messages(report.warnings), /the process args \["","quiet"\] start with an empty one: urunc [^ ]+ then writes no init= and drops the rest/);
    const alone = await inspect(await archive({ layers: [kernelLayer, [uruncJsonFile(linux)]], annotations: full(linux), cmd: [''] }));
    assert.doesNotMatch(messages(alone.warnings), /empty one/);
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
    assert.equal(json.schemaVersion, 2);
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

  test("sources that disagree: the shim and podman take the annotations, /urunc.json's engines fail; exit 0 with warnings", async () => {
    const json = { ...unikraft, binary: '/unikernel/old-app' };
    const path = await archive({ layers: [kernelLayer, [uruncJsonFile(json)]], annotations: full(unikraft), labels: full({ ...unikraft, hypervisor: 'firecracker' }), cmd: ['app', '-v'] });
    const report = await inspect(path);
    assert.equal(report.runnable, true);
    assert.equal(report.agreement.agree, false);
    assert.deepEqual(report.agreement.differences, [
      { key: 'binary', annotations: '/unikernel/app', labels: '/unikernel/app', uruncJson: '/unikernel/old-app' },
      { key: 'hypervisor', annotations: 'qemu', labels: 'firecracker', uruncJson: 'qemu' },
    ]);
    assert.deepEqual(paths(report, '0.8'), ['0.8 docker fails uruncJson', '0.8 containerd runs image-metadata', '0.8 cri runs image-metadata', '0.8 podman runs spec-annotations']);
    assert.deepEqual(paths(report, '0.7'), ['0.7 docker fails uruncJson', '0.7 containerd fails uruncJson', '0.7 cri fails uruncJson', '0.7 podman runs spec-annotations']);
    // urunc < 0.7 base64-decodes what podman copies: "/unikernel/app" is not base64, so runc runs it.
    assert.match(report.urunc.engines.find((e) => e.release === 'pre-0.7' && e.engine === 'podman')?.reasons.join() ?? '', /is not base64, so urunc runs the container with runc/);
    assert.match(messages(report.warnings), /on urunc 0\.8, docker does not run it: .*old-app is missing/);
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
    // A name written like a path is one, even relative and missing: not a registry lookup.
    for (const command of ['inspect', 'run']) {
      for (const name of ['nothere.tar', './nothere', 'nothere.oci:v1']) {
        const relative = lapin([command, name]);
        assert.equal(relative.status, 2, `${command} ${name}: ${relative.stderr}`);
        assert.match(relative.stderr, /^lapin: error: (\.\/)?nothere(\.tar|\.oci)?: no such file or directory/m, `${command} ${name}`);
        assert.match(relative.stderr, /docker:\/\//, `${command} ${name}`);
      }
    }
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

  test('a rootfs directory (-o type=local) or a docker save archive read as OCI: what to name instead', async () => {
    const rootfs = join(work, 'rootfs-out');
    await mkdir(rootfs);
    const dir = lapin(['inspect', rootfs]);
    assert.equal(dir.status, 2);
    assert.equal(dir.stderr, `lapin: error: ${rootfs} is not an OCI image layout (no index.json) (name an image layout (lapin build -o type=oci,dest=DIR,tar=false writes one; -o type=local writes only the rootfs) or an archive)\n`);
    const saved = join(work, 'saved.tar');
    await writeDockerArchive(saved, { layers: [kernelLayer], cmd: ['app'] });
    const asOci = lapin(['inspect', `oci-archive:${saved}`]);
    assert.equal(asOci.status, 2);
    assert.equal(asOci.stderr, `lapin: error: ${saved} is not an OCI image layout (no index.json) (it is a docker save archive: read it as docker-archive:${saved})\n`);
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
  test("skopeo's source names: PATH:REFERENCE splits at the first colon (x.tar:urunc/net:1), a path with colons is kept; skopeo reads the same names", async () => {
    const example = join(ROOT, 'examples/mirage-hvt');
    const out = join(work, 'named.tar');
    const built = lapin(['build', '-q', '-f', join(example, 'bunnyfile'), '-t', 'urunc/net:1', '-o', out, example]);
    assert.equal(built.status, 0, built.stderr);
    const colons = join(work, 'a:b.tar');
    await writeFile(colons, await readFile(out));
    const skopeo = spawnSync('skopeo', ['--version']).status === 0;
    for (const [source, transport] of [
      [`oci-archive:${out}:urunc/net:1`, 'oci-archive'],
      [`oci-archive:${out}:docker.io/urunc/net:1`, 'oci-archive'],
      [`${out}:urunc/net:1`, 'oci-archive'],
      [`docker-archive:${out}:urunc/net:1`, 'docker-archive'],
      [`docker-archive:${out}:docker.io/urunc/net:1`, 'docker-archive'],
      [`oci-archive:${colons}:1`, 'oci-archive'],
      [`${colons}:urunc/net:1`, 'oci-archive'],
    ] as const) {
      const r = lapin(['inspect', '--json', source]);
      assert.equal(r.status, 0, `${source}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as InspectReport).source.transport, transport, source);
    }
    if (skopeo) {
      // skopeo names the docker-archive image by reference; its oci-archive names ref.name, the tag.
      for (const source of [`docker-archive:${out}:urunc/net:1`, `oci-archive:${out}:1`]) {
        assert.equal(spawnSync('skopeo', ['inspect', source]).status, 0, source);
      }
    }
    const other = lapin(['inspect', `docker-archive:${out}:other:1`]);
    assert.equal(other.status, 2);
    assert.equal(other.stderr, `lapin: error: ${out}: no image named "other:1" (names here: docker.io/urunc/net:1)\n`);
  });
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
    assert.ok(report.urunc.engines.filter((e) => e.release === '0.8').every((e) => e.runs), JSON.stringify(report.urunc.engines));
  });
});
