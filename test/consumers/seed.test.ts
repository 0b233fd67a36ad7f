// The seed example, built by lapin from each syntax, must load with the
// right name, labels and files in every real consumer.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build, type BuildResult } from '../../src/index.js';
import {
  cleanupAll,
  ctrImport,
  dockerLoad,
  ociArchiveRef,
  podmanLoad,
  requireConsumers,
  skopeoInspect,
  startServices,
  umociUnpack,
  type FileTree,
} from './harness.js';

const EXAMPLE = path.resolve('examples/mirage-hvt');
const kernel = readFileSync(path.join(EXAMPLE, 'network.hvt'));
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface Case {
  file: string;
  tags: string[];
  /** Names as containerd and podman show them. */
  names: string[];
  /** Names as docker shows them. */
  dockerNames: string[];
  /** The tag skopeo and umoci select (the index's ref.name). */
  tag: string;
  binary: string;
}

const cases: Case[] = [
  {
    file: 'bunnyfile',
    tags: ['urunc/prebuilt/network-mirage-hvt:bunnyfile', 'localhost:5000/network:1'],
    names: ['docker.io/urunc/prebuilt/network-mirage-hvt:bunnyfile', 'localhost:5000/network:1'],
    dockerNames: ['urunc/prebuilt/network-mirage-hvt:bunnyfile', 'localhost:5000/network:1'],
    tag: 'bunnyfile',
    binary: '/.boot/kernel',
  },
  {
    file: 'Containerfile',
    tags: ['urunc/prebuilt/network-mirage-hvt:containerfile'],
    names: ['docker.io/urunc/prebuilt/network-mirage-hvt:containerfile'],
    dockerNames: ['urunc/prebuilt/network-mirage-hvt:containerfile'],
    tag: 'containerfile',
    binary: '/unikernel/network.hvt',
  },
  {
    // args.nix names the image itself.
    file: 'args.nix',
    tags: [],
    names: ['docker.io/urunc/prebuilt/network-mirage-hvt:test'],
    dockerNames: ['urunc/prebuilt/network-mirage-hvt:test'],
    tag: 'test',
    binary: '/unikernel/network.hvt',
  },
];

function expectedValues(binary: string): Record<string, string> {
  return {
    'com.urunc.unikernel.binary': binary,
    'com.urunc.unikernel.cmdline': '',
    'com.urunc.unikernel.hypervisor': 'hvt',
    'com.urunc.unikernel.mountRootfs': 'false',
    'com.urunc.unikernel.unikernelType': 'mirage',
    'com.urunc.unikernel.useDMBlock': 'false',
  };
}

function assertFiles(files: FileTree, binary: string, consumer: string): void {
  assert.equal(files.get(binary)?.sha256, sha256(kernel), `${consumer}: kernel bytes`);
  assert.equal(files.get(binary)?.mode, 0o755, `${consumer}: kernel mode`);
  assert.equal(files.get('/urunc.json')?.mode, 0o644, `${consumer}: urunc.json mode`);
  const encoded = files.readJson('/urunc.json') as Record<string, string>;
  const decoded = Object.fromEntries(Object.entries(encoded).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  assert.deepEqual(decoded, expectedValues(binary), `${consumer}: urunc.json`);
}

describe('consumers load lapin archives of the seed example', { skip: requireConsumers(['docker', 'ctr', 'podman', 'skopeo', 'umoci']) }, () => {
  let work = '';
  before(async () => {
    await startServices();
    work = await mkdtemp(path.join(tmpdir(), 'lapin-seed-consumers-'));
  });
  after(async () => {
    await cleanupAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  for (const c of cases) {
    describe(c.file, () => {
      let archive = '';
      let result: BuildResult;
      before(async () => {
        archive = path.join(work, `${c.file}.tar`);
        result = await build({ context: EXAMPLE, file: path.join(EXAMPLE, c.file), tags: c.tags, outputs: [{ type: 'oci', dest: archive }] });
      });

      test('docker load', async () => {
        const loaded = await dockerLoad(archive);
        try {
          assert.deepEqual(loaded.names.sort(), [...c.dockerNames].sort());
          const image = loaded.images[0];
          assert.ok(image);
          assert.equal(image.id, result.configDigest);
          assert.deepEqual(image.labels, expectedValues(c.binary));
          assert.equal(image.architecture, 'amd64');
          assertFiles(await loaded.files(c.dockerNames[0]), c.binary, 'docker');
        } finally {
          await loaded.cleanup();
        }
      });

      test('ctr images import', async () => {
        const imported = await ctrImport(archive);
        try {
          assert.deepEqual(imported.names.sort(), [...c.names].sort());
          const image = imported.images[0];
          assert.ok(image);
          assert.equal(image.targetDigest, result.digest);
          assert.deepEqual(image.manifestAnnotations, expectedValues(c.binary));
          assert.deepEqual(image.labels, expectedValues(c.binary));
          assertFiles(await imported.files(c.names[0]), c.binary, 'ctr');
        } finally {
          await imported.cleanup();
        }
      });

      test('podman load', async () => {
        const loaded = await podmanLoad(archive);
        try {
          assert.deepEqual([...loaded.listed].sort(), [...c.names].sort());
          const image = loaded.images[0];
          assert.ok(image);
          assert.deepEqual(image.labels, expectedValues(c.binary));
          if (c.names.length === 1) {
            assert.equal(image.digest, result.digest);
            assert.deepEqual(image.annotations, expectedValues(c.binary));
          }
          // With several names podman 4.3 refuses the ambiguous OCI index and reads
          // manifest.json instead: names, labels and files survive, annotations do not.
          assertFiles(await loaded.files(c.names[0]), c.binary, 'podman');
        } finally {
          await loaded.cleanup();
        }
      });

      test('skopeo inspect oci-archive:', async () => {
        const seen = await skopeoInspect(ociArchiveRef(archive, c.tag));
        assert.equal(seen.summary.Digest, result.digest);
        assert.deepEqual(seen.annotations, expectedValues(c.binary));
        assert.deepEqual(seen.labels, expectedValues(c.binary));
        assert.equal(seen.layers.length, 2, 'kernel and urunc.json are separate layers');
      });

      test('umoci unpack gives the bundle urunc would see', async () => {
        const unpacked = await umociUnpack(archive, c.tag);
        try {
          for (const [key, value] of Object.entries(expectedValues(c.binary))) {
            assert.equal(unpacked.annotations[key], value, key);
          }
          assertFiles(unpacked.files, c.binary, 'umoci');
        } finally {
          await unpacked.cleanup();
        }
      });
    });
  }
});
