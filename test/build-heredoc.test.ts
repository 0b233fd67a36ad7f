// A Containerfile with COPY here-documents is built by lapin itself: no
// builder runs (Debian's buildah 1.28 predates here-documents and fails with
// `copier: stat: "/<<EOT": no such file`, so there is nothing to compare
// with here), and the inline files are in the layer as BuildKit writes them.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { build } from '../src/index.js';
import { layerEntries, readArchive, type TarEntry } from './helpers/archive.js';

const EXAMPLE = path.resolve('examples/mirage-hvt');
const EPOCH = 1700000000;
let work: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lapin-heredoc-'));
  await copyFile(path.join(EXAMPLE, 'network.hvt'), path.join(work, 'network.hvt'));
});

const CONTAINERFILE = `FROM scratch
COPY network.hvt /unikernel/network.hvt
COPY <<EOT /etc/motd
hello
EOT
ARG who=world
COPY --chmod=0600 --chown=1000:100 <<CONF <<-'RAW' /etc/app/
greeting=hello \${who}
CONF
\tkeep \${who}
\tRAW
LABEL com.urunc.unikernel.binary=/unikernel/network.hvt
LABEL com.urunc.unikernel.unikernelType=mirage
LABEL com.urunc.unikernel.hypervisor=hvt
`;

test('the example builds with lapin alone; the files have BuildKit content, mode and owner and the build epoch', async () => {
  const file = path.join(work, 'Containerfile');
  await writeFile(file, CONTAINERFILE);
  const dest = path.join(work, 'image.tar');
  const steps: string[] = [];
  await build({
    context: work,
    file,
    tags: ['heredoc:test'],
    outputs: [{ type: 'oci', dest }],
    sourceDateEpoch: EPOCH,
    onEvent: (event) => {
      if ('message' in event && typeof event.message === 'string') steps.push(event.message);
    },
  });
  assert.ok(!steps.some((message) => /needs execution|buildah/.test(message)), steps.join('\n'));

  const archive = await readArchive(dest);
  const index = JSON.parse(archive.text('index.json'));
  const manifest = JSON.parse(archive.blob(index.manifests[0].digest).toString());
  const entries = new Map<string, TarEntry>();
  const layers: Buffer[] = [];
  for (const layer of manifest.layers) {
    const tar = gunzipSync(archive.blob(layer.digest));
    layers.push(tar);
    for (const entry of layerEntries(tar)) entries.set(entry.name, entry);
  }
  const motd = entries.get('etc/motd');
  assert.ok(motd);
  assert.deepEqual([motd.data.toString(), motd.type, motd.mode, motd.uid, motd.gid, motd.mtime], ['hello\n', 'file', 0o644, 0, 0, EPOCH]);
  const conf = entries.get('etc/app/CONF');
  assert.deepEqual([conf?.data.toString(), conf?.mode, conf?.uid, conf?.gid], ['greeting=hello world\n', 0o600, 1000, 100]);
  const raw = entries.get('etc/app/RAW');
  assert.deepEqual([raw?.data.toString(), raw?.mode, raw?.uid, raw?.gid], ['keep ${who}\n', 0o600, 1000, 100]);

  // GNU tar reads the same from the layer.
  const layerFile = path.join(work, 'layer.tar');
  const withMotd = layers.find((tar) => layerEntries(tar).some((entry) => entry.name === 'etc/motd'));
  assert.ok(withMotd);
  await writeFile(layerFile, withMotd);
  const listing = execFileSync('tar', ['-tvf', layerFile, '--numeric-owner', '--full-time'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  assert.match(listing, /^-rw-r--r-- 0\/0 +6 2023-11-14 22:13:20 etc\/motd$/m);
  assert.match(listing, /^-rw------- 1000\/100 +21 2023-11-14 22:13:20 etc\/app\/CONF$/m);
  assert.equal(execFileSync('tar', ['-xOf', layerFile, 'etc/motd'], { encoding: 'utf8' }), 'hello\n');
});
