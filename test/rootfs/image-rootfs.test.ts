// A rootfs made from a registry image (bunnyfile `rootfs.from: <image>`):
// a hand-made multi-layer image (whiteout, opaque directory, 0755 script,
// symlink, hardlink, empty directory) is pushed to a real docker-registry on
// loopback, and lapin turns it into an initrd (read back with bsdcpio), a
// block image (e2fsck, debugfs), or keeps it as the container rootfs (raw).
// A second image holding busybox and an init script becomes an initrd that
// boots Debian's kernel in qemu (TCG).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { build, type BuildResult } from '../../src/build.js';
import { registrySkipReason, skopeoInspect, skopeoPush, startRegistry, type TestRegistry } from '../registry/harness.js';
import { fakeElfKernel, writeOciArchive, type HandFile } from '../helpers/hand-image.js';
import { layerEntries, readArchive, type TarEntry } from '../helpers/archive.js';
import { isCI, umociUnpack } from '../consumers/harness.js';
import { BOOT_TIMEOUT_MS, bootQemu, bootSkip, fetchBootAssets, inBundle, toolEnv, uruncValues } from '../helpers/guest-boot.js';

const EPOCH = 1_700_000_000;
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };
const RUN_SH = '#!/bin/sh\necho run\n';

function commandMissing(programs: readonly string[]): string[] {
  return programs.filter((p) => spawnSync('sh', ['-c', `command -v ${p}`], { env: toolEnv, stdio: 'ignore' }).status !== 0);
}

/** Why these tests cannot run here (registry, bsdcpio, e2fsprogs), or undefined; under CI a missing tool fails. */
function toolsMissing(): string | undefined {
  const registry = registrySkipReason();
  if (registry) return registry;
  const missing = commandMissing(['bsdcpio', 'mke2fs', 'debugfs', 'e2fsck']);
  if (missing.length === 0) return undefined;
  if (isCI()) throw new Error(`missing under CI: ${missing.join(', ')} (scripts/install-deps.sh installs them)`);
  return `missing ${missing.join(', ')}; run scripts/install-deps.sh`;
}

/** Two layers: the second deletes /etc/gone (whiteout), empties /opt/old of the first's files (opaque), and adds files. */
const IMAGE_LAYERS: HandFile[][] = [
  [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/run.sh', body: RUN_SH, mode: 0o755 },
    { name: 'bin/sh-link', type: 'symlink', linkname: 'run.sh', mode: 0o777 },
    { name: 'etc/', type: 'directory' },
    { name: 'etc/keep', body: 'keep\n', mode: 0o640 },
    { name: 'etc/keep.again', type: 'link', linkname: 'etc/keep', mode: 0o640 },
    { name: 'etc/gone', body: 'gone\n' },
    { name: 'etc/motd', body: 'from the image\n' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/old/', type: 'directory' },
    { name: 'opt/old/a', body: 'a\n' },
    { name: 'opt/old/sub/', type: 'directory' },
    { name: 'opt/old/sub/b', body: 'b\n' },
    { name: 'opt/kept', body: 'kept\n' },
    { name: 'var/', type: 'directory' },
    { name: 'var/empty/', type: 'directory', mode: 0o700 },
    // No entries for usr/ and usr/share/: the layer leaves its parents out.
    { name: 'usr/share/data.txt', body: 'data\n' },
  ],
  [
    { name: 'etc/.wh.gone' },
    { name: 'opt/old/', type: 'directory', mode: 0o750 },
    { name: 'opt/old/new', body: 'new\n' },
    // After opt/old/new on purpose: the opaque marker hides only the layers below.
    { name: 'opt/old/.wh..wh..opq' },
    { name: 'etc/upper', body: 'upper\n', mode: 0o600 },
  ],
];

/** What the flattened image plus the includes must hold, as [path, type, mode]. */
const EXPECTED: Array<[string, 'file' | 'dir' | 'symlink', number]> = [
  ['bin', 'dir', 0o755],
  ['bin/run.sh', 'file', 0o755],
  ['bin/sh-link', 'symlink', 0o777],
  ['copied', 'dir', 0o755],
  ['copied/data.txt', 'file', 0o644],
  ['etc', 'dir', 0o755],
  ['etc/hello.txt', 'file', 0o644],
  ['etc/keep', 'file', 0o640],
  ['etc/keep.again', 'file', 0o640],
  ['etc/motd', 'file', 0o644],
  ['etc/upper', 'file', 0o600],
  ['opt', 'dir', 0o755],
  ['opt/kept', 'file', 0o644],
  ['opt/old', 'dir', 0o750],
  ['opt/old/new', 'file', 0o644],
  ['usr', 'dir', 0o755],
  ['usr/bin', 'dir', 0o755],
  ['usr/bin/tool', 'file', 0o755],
  ['usr/share', 'dir', 0o755],
  ['usr/share/data.txt', 'file', 0o644],
  ['var', 'dir', 0o755],
  ['var/empty', 'dir', 0o700],
];
const GONE = ['etc/gone', 'opt/old/a', 'opt/old/sub', 'opt/old/sub/b'];

const skip = toolsMissing();
let work: string;
let registry: TestRegistry;
let imageRef: string;

async function pushHandImage(name: string, layers: HandFile[][], extra: { cmd?: string[] } = {}): Promise<string> {
  const archive = path.join(work, `${name.replace(/[/:]/g, '_')}.oci.tar`);
  await writeOciArchive(archive, { layers, ...extra });
  const reference = `${registry.host}/${name}`;
  await skopeoPush(archive, reference);
  return reference;
}

function bunnyfile(framework: string, rootfs: string, cmd = '["/bin/run.sh"]'): string {
  const monitor = framework === 'rumprun' ? 'hvt' : 'qemu';
  return `version: v0.1\nplatforms:\n  framework: ${framework}\n  monitor: ${monitor}\n  architecture: x86_64\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n${rootfs}cmd: ${cmd}\n`;
}

/** A build context with a fake kernel and the files the includes name. */
async function makeContext(name: string, rootfs: string, framework = 'linux'): Promise<string> {
  const context = await mkdtemp(path.join(work, `${name}-`));
  await writeFile(path.join(context, 'vmlinuz'), fakeElfKernel());
  await writeFile(path.join(context, 'hello.txt'), 'hello from the context\n');
  await writeFile(path.join(context, 'motd'), 'from an include\n');
  await writeFile(path.join(context, 'tool'), '#!/bin/sh\necho tool\n');
  await chmod(path.join(context, 'tool'), 0o755);
  await writeFile(path.join(context, 'bunnyfile'), bunnyfile(framework, rootfs));
  return context;
}

const INCLUDES = (image: string): string =>
  `  include:\n    - hello.txt:/etc/hello.txt\n    - motd:/etc/motd\n    - tool:/usr/bin/tool\n    - from: ${image}\n      source: /usr/share/data.txt\n      destination: /copied/data.txt\n`;

interface Built {
  result: BuildResult;
  steps: string[];
  manifest: { layers: Array<{ digest: string }>; annotations: Record<string, string> };
  /** Every entry of every layer, last layer winning. */
  files: Map<string, TarEntry>;
}

async function buildArchive(context: string, out: string): Promise<Built> {
  const steps: string[] = [];
  const result = await build({
    context,
    tags: ['lapin-test/image-rootfs:1'],
    outputs: [{ type: 'oci', dest: out }],
    sourceDateEpoch: EPOCH,
    registry: noCredentials,
    cacheDir: path.join(work, 'cache'),
    onEvent: (e) => e.kind === 'step' && steps.push(e.message),
  });
  const archive = await readArchive(out);
  const index = JSON.parse(archive.text('index.json')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(archive.blob((index.manifests[0] as { digest: string }).digest).toString()) as Built['manifest'];
  const files = new Map<string, TarEntry>();
  for (const layer of manifest.layers) {
    const data = archive.blob(layer.digest);
    for (const entry of layerEntries(data[0] === 0x1f ? gunzipSync(data) : data)) files.set(entry.name.replace(/^\.\//, '').replace(/\/$/, ''), entry);
  }
  return { result, steps, manifest, files };
}

async function rootfsFile(built: Built, name: string): Promise<string> {
  const entry = built.files.get('.boot/rootfs');
  assert.ok(entry, `no /.boot/rootfs in the image: ${[...built.files.keys()].join(', ')}`);
  const file = path.join(work, name);
  await writeFile(file, entry.data);
  return file;
}

const typeOfMode: Record<string, 'file' | 'dir' | 'symlink'> = { '-': 'file', d: 'dir', l: 'symlink' };
function modeBits(text: string): number {
  let bits = 0;
  for (const [i, ch] of [...text.slice(1)].entries()) if (ch !== '-') bits |= 1 << (8 - i);
  return bits;
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-image-rootfs-'));
  if (skip) return;
  registry = await startRegistry('anonymous');
  imageRef = await pushHandImage('layered/app:1', IMAGE_LAYERS, { cmd: ['/bin/from-the-image'] });
});

after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('a rootfs file made from a registry image', { skip, timeout: 300_000 }, () => {
  test('type initrd: the flattened image plus the includes, read back by bsdcpio', async () => {
    const context = await makeContext('initrd', `  from: ${imageRef}\n  type: initrd\n${INCLUDES(imageRef)}`);
    const built = await buildArchive(context, path.join(context, 'out.tar'));
    assert.equal(built.result.urunc.initrd, '/.boot/rootfs');
    assert.equal(built.result.urunc.mountRootfs, 'false');
    assert.equal(built.result.urunc.block, undefined);
    assert.equal(built.manifest.annotations['com.urunc.unikernel.initrd'], '/.boot/rootfs');
    assert.ok(built.steps.some((s) => s.startsWith('initrd rootfs /.boot/rootfs: ') && s.endsWith(`from ${imageRef}`)), built.steps.join('\n'));
    // The image is read, not built on: its files are not in the new image's layers; the bunnyfile's cmd wins over its Cmd.
    assert.equal(built.files.get('bin/run.sh'), undefined);
    assert.deepEqual([...built.files.keys()].filter((k) => !k.startsWith('.boot')).sort(), ['urunc.json']);
    const initrd = await rootfsFile(built, 'rootfs.cpio');

    const listing = execFileSync('bsdcpio', ['-itv', '-F', initrd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const entries = new Map<string, { type: string; mode: number; links: number; target?: string }>();
    for (const line of listing.trim().split('\n')) {
      const match = /^(\S)(\S{9})\s+(\d+)\s+\S+\s+\S+\s+\d+\s+\S+\s+\d+\s+\S+\s+(.+)$/.exec(line);
      assert.ok(match, `unexpected bsdcpio line: ${line}`);
      const [, kind, perms, links, rest] = match as unknown as [string, string, string, string, string];
      // bsdcpio writes "NAME -> TARGET" for a symlink and "NAME link to FIRST" for a later name of a hard link.
      const [name, target] = kind === 'l' ? rest.split(' -> ') : rest.split(' link to ');
      entries.set(name as string, { type: typeOfMode[kind] ?? kind, mode: modeBits(`-${perms}`), links: Number(links), ...(target ? { target } : {}) });
    }
    assert.deepEqual(
      [...entries].map(([name, e]) => [name, e.type, e.mode]),
      EXPECTED.map(([p, type, mode]) => [p, type, mode]),
      listing,
    );
    for (const gone of GONE) assert.ok(!entries.has(gone), `${gone} is whited out`);
    assert.equal(entries.get('bin/sh-link')?.target, 'run.sh');
    assert.equal(entries.get('etc/keep')?.links, 2, 'the hard link is one inode with two names');
    assert.equal(entries.get('etc/keep.again')?.target, 'etc/keep');

    // Extracted by bsdcpio: contents, and the hard link sharing an inode.
    const out = await mkdtemp(path.join(work, 'initrd-x-'));
    execFileSync('bsdcpio', ['-id', '--no-preserve-owner', '-F', initrd], { cwd: out, stdio: ['ignore', 'pipe', 'pipe'] });
    const read = (p: string): Promise<string> => readFile(path.join(out, p), 'utf8');
    assert.equal(await read('bin/run.sh'), RUN_SH);
    assert.equal(await read('etc/hello.txt'), 'hello from the context\n');
    assert.equal(await read('etc/motd'), 'from an include\n', 'an include replaces the image file');
    assert.equal(await read('copied/data.txt'), 'data\n', 'an include from the image');
    assert.equal(await read('opt/old/new'), 'new\n');
    assert.equal(await readlink(path.join(out, 'bin/sh-link')), 'run.sh');
    assert.equal((await lstat(path.join(out, 'etc/keep.again'))).ino, (await lstat(path.join(out, 'etc/keep'))).ino);
    assert.equal(await read('etc/keep.again'), 'keep\n');
  });

  test('type block: e2fsck-clean ext4 holding the flattened image and includes with their modes; deterministic', async () => {
    const context = await makeContext('block', `  from: ${imageRef}\n  type: block\n${INCLUDES(imageRef)}`);
    const built = await buildArchive(context, path.join(context, 'out.tar'));
    assert.equal(built.result.urunc.block, '/.boot/rootfs');
    assert.equal(built.result.urunc.blkMntPoint, '/');
    assert.equal(built.result.urunc.initrd, undefined);
    assert.ok(built.steps.some((s) => /^block rootfs \/\.boot\/rootfs: ext4, .*from /.test(s)), built.steps.join('\n'));
    const image = await rootfsFile(built, 'rootfs.img');
    const fsck = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8', env: toolEnv });
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
    const debugfs = (request: string): string => execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', env: toolEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const kinds: Record<string, string> = { file: 'regular', dir: 'directory', symlink: 'symlink' };
    for (const [p, type, mode] of EXPECTED) {
      assert.match(debugfs(`stat /${p}`), new RegExp(`Type: ${kinds[type] as string}\\s+Mode:\\s+0${mode.toString(8)}\\b`), `/${p}`);
    }
    for (const gone of GONE) {
      const lookup = spawnSync('debugfs', ['-R', `stat /${gone}`, image], { encoding: 'utf8', env: toolEnv });
      assert.match(lookup.stdout + lookup.stderr, /File not found/, `${gone} is whited out`);
    }
    assert.equal(debugfs('cat /bin/run.sh'), RUN_SH);
    assert.equal(debugfs('cat /etc/motd'), 'from an include\n');
    assert.equal(debugfs('cat /copied/data.txt'), 'data\n');
    assert.match(debugfs('stat /bin/sh-link'), /Fast link dest: "run.sh"/);
    const keep = debugfs('stat /etc/keep');
    assert.match(keep, /Links: 2/);
    assert.equal(/Inode: (\d+)/.exec(debugfs('stat /etc/keep.again'))?.[1], /Inode: (\d+)/.exec(keep)?.[1], 'the hard link shares the inode');
    // `ls -p` prints /inode/mode/uid/gid/name/size/ per entry.
    assert.deepEqual(debugfs('ls -p /var/empty').trim().split('\n').map((l) => l.split('/')[5]), ['.', '..'], 'the empty directory stays empty');

    const again = await buildArchive(context, path.join(context, 'again.tar'));
    assert.equal(again.result.digest, built.result.digest, 'two builds give the same image');
  });

  test('rumprun block: ext2 with blkMntPoint /data', async () => {
    const context = await makeContext('rumprun', `  from: ${imageRef}\n  type: block\n`, 'rumprun');
    const built = await buildArchive(context, path.join(context, 'out.tar'));
    assert.equal(built.result.urunc.blkMntPoint, '/data');
    assert.ok(built.steps.some((s) => /^block rootfs \/\.boot\/rootfs: ext2, /.test(s)), built.steps.join('\n'));
    const image = await rootfsFile(built, 'rumprun.img');
    const fsck = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8', env: toolEnv });
    assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
    assert.doesNotMatch(execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', env: toolEnv, stdio: ['ignore', 'pipe', 'pipe'] }), /has_journal/);
  });

  test('type raw: the image\'s layers are the lower layers, includes on top, mountRootfs=true', async () => {
    const context = await makeContext('raw', `  from: ${imageRef}\n  type: raw\n  include:\n    - hello.txt:/etc/hello.txt\n`);
    const built = await buildArchive(context, path.join(context, 'out.tar'));
    assert.equal(built.result.urunc.mountRootfs, 'true');
    assert.equal(built.result.urunc.initrd, undefined);
    assert.equal(built.result.urunc.block, undefined);
    const pushed = (await skopeoInspect(imageRef, '--raw')) as { layers: Array<{ digest: string }> };
    assert.equal(pushed.layers.length, 2);
    assert.deepEqual(built.manifest.layers.slice(0, 2).map((l) => l.digest), pushed.layers.map((l) => l.digest), 'the image\'s layers come first, unchanged');
    assert.ok(built.manifest.layers.length > 2);
    assert.equal(built.files.get('etc/hello.txt')?.data.toString(), 'hello from the context\n');
    assert.equal(built.files.get('bin/run.sh')?.mode, 0o755);
  });
});

// ---------------------------------------------------------------------------
// The initrd made from an image boots.

const MARKER = 'LAPIN-IMAGE-ROOTFS-MARKER';
const ARGS = ['/init', 'from-image', 'n=3'];
const INIT_SCRIPT = `#!/bin/sh
echo "${MARKER} args:$*: $(/bin/busybox cat /etc/greeting)"
/bin/busybox poweroff -f
`;

describe('an initrd made from a registry image boots', { skip: skip || bootSkip('the image boot test', ['qemu-system-x86_64', 'apt-get', 'apt-cache', 'dpkg-deb']), timeout: 900_000 }, () => {
  test('busybox and an init script from the image, a file from include: qemu prints the marker with the args', async () => {
    const assets = await fetchBootAssets();
    const busybox = await readFile(assets.busybox);
    // busybox in one layer, the init script in another, and a stale init the upper layer whites out.
    const reference = await pushHandImage('boot/busybox:1', [
      [
        { name: 'bin/', type: 'directory' },
        { name: 'bin/busybox', body: busybox, mode: 0o755 },
        { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
        { name: 'sbin/', type: 'directory' },
        { name: 'sbin/init', body: '#!/bin/sh\necho wrong init\n', mode: 0o755 },
      ],
      [{ name: 'sbin/.wh.init' }, { name: 'init', body: INIT_SCRIPT, mode: 0o755 }],
    ]);
    const context = await mkdtemp(path.join(work, 'boot-'));
    await writeFile(path.join(context, 'vmlinuz'), await readFile(assets.kernel));
    await mkdir(path.join(context, 'etc'));
    await writeFile(path.join(context, 'etc/greeting'), 'included-greeting\n');
    await writeFile(path.join(context, 'bunnyfile'), bunnyfile('linux', `  from: ${reference}\n  type: initrd\n  include:\n    - etc/greeting:/etc/greeting\n`, JSON.stringify(ARGS)));
    const archive = path.join(context, 'image.tar');
    await build({ context, tags: ['lapin-test/image-boot:1'], outputs: [{ type: 'oci', dest: archive }], sourceDateEpoch: EPOCH, registry: noCredentials, cacheDir: path.join(work, 'cache') });
    const unpacked = await umociUnpack(archive, '1');
    try {
      const values = await uruncValues(unpacked);
      assert.equal(values.initrd, '/.boot/rootfs');
      assert.deepEqual(unpacked.args, ARGS);
      const [init, ...rest] = unpacked.args;
      const result = await bootQemu([
        '-accel', 'tcg', '-m', '256', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
        '-kernel', inBundle(unpacked, values.binary as string),
        '-initrd', inBundle(unpacked, values.initrd),
        '-append', `console=ttyS0 panic=-1 rdinit=${init as string} -- ${rest.join(' ')}`,
      ], BOOT_TIMEOUT_MS);
      assert.ok(result.output.includes(`${MARKER} args:${rest.join(' ')}: included-greeting`), `the guest did not print the marker:\n${result.output.slice(-3000)}`);
      assert.doesNotMatch(result.output, /wrong init/);
      assert.match(result.output, /reboot: Power down/);
      assert.equal(result.code, 0);
    } finally {
      await unpacked.cleanup();
    }
  });
});
