// The layer formats lapin writes — gzip as concatenated members from the
// parallel compressor, and zstd — read back by the real consumers, with the
// files checked byte for byte. docker 20.10 and umoci 0.4.7 cannot read
// zstd: the test pins that down so the docs stay true.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { build, type BuildResult } from '../../src/index.js';
import { layerEntries, readArchive } from '../helpers/archive.js';
import { kernelContainerfile } from '../helpers/fixtures.js';
import {
  cleanupAll,
  ctrImport,
  dockerLoad,
  ociArchiveRef,
  podmanLoad,
  requireConsumers,
  startServices,
  umociUnpack,
  type FileTree,
} from './harness.js';

const run = promisify(execFile);
const KERNEL_PATH = '/unikernel/kernel.hvt';
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** 6 MiB that compress about as well as a kernel: several 1 MiB gzip blocks. */
function kernelBytes(): Buffer {
  const data = Buffer.alloc(6 * 1024 * 1024 + 12345);
  let state = 0x9e3779b9;
  for (let i = 0; i < data.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = (state >>> 0) % 7 === 0 ? state & 0xff : 0x41 + (i % 23);
  }
  return data;
}

/** Gzip members in a blob, walked one by one (lapin's headers carry no optional fields). */
function gzipMembers(blob: Buffer): Buffer[] {
  const members: Buffer[] = [];
  let offset = 0;
  while (offset < blob.length) {
    assert.equal(blob[offset], 0x1f);
    assert.equal(blob[offset + 1], 0x8b);
    assert.equal(blob[offset + 3], 0, 'no optional header fields');
    const { buffer, engine } = inflateRawSync(blob.subarray(offset + 10), { info: true }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    members.push(buffer);
    offset += 10 + engine.bytesWritten + 8;
  }
  return members;
}

const expected = kernelBytes();

function assertKernel(files: FileTree, consumer: string): void {
  assert.equal(files.get(KERNEL_PATH)?.sha256, sha256(expected), `${consumer}: kernel bytes`);
  assert.equal(files.get(KERNEL_PATH)?.size, expected.length, `${consumer}: kernel size`);
}

/** skopeo copies the image to a dir: with its layers decompressed; the kernel comes out of the layer tars. */
async function skopeoKernel(archive: string, tag: string, work: string): Promise<Buffer | undefined> {
  const dir = path.join(work, `skopeo-${tag}`);
  await run('skopeo', ['copy', '-q', '--dest-decompress', ociArchiveRef(archive, tag), `dir:${dir}`]);
  const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string }> };
  for (const layer of manifest.layers) {
    const entries = layerEntries(await readFile(path.join(dir, layer.digest.replace(/^sha256:/, ''))));
    const kernel = entries.find((e) => `/${e.name}` === KERNEL_PATH);
    if (kernel) return kernel.data;
  }
  return undefined;
}

describe('consumers read lapin compressed layers', { skip: requireConsumers(['docker', 'ctr', 'podman', 'skopeo', 'umoci']) }, () => {
  let work = '';
  let context = '';
  before(async () => {
    await startServices();
    work = await mkdtemp(path.join(tmpdir(), 'lapin-compression-consumers-'));
    context = path.join(work, 'context');
    await mkdir(context);
    await writeFile(path.join(context, 'kernel.hvt'), expected, { mode: 0o755 });
    await writeFile(path.join(context, 'Containerfile'), kernelContainerfile());
  });
  after(async () => {
    await cleanupAll();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function buildWith(compression: 'gzip' | 'zstd', tag: string): Promise<{ archive: string; result: BuildResult }> {
    const archive = path.join(work, `${tag}.tar`);
    const result = await build({
      context,
      tags: [`lapin.test/compression:${tag}`],
      outputs: [{ type: 'oci', dest: archive }],
      compression,
      cache: false,
      uruncChecks: 'warn',
    });
    return { archive, result };
  }

  describe('gzip (parallel, concatenated members)', () => {
    let archive = '';
    const tag = 'gzip';
    const name = `lapin.test/compression:${tag}`;
    before(async () => {
      ({ archive } = await buildWith('gzip', tag));
    });

    test('the kernel layer is several gzip members that join to the tar', async () => {
      const reader = await readArchive(archive);
      const manifestDigest = (JSON.parse(reader.text('index.json')) as { manifests: Array<{ digest: string }> }).manifests[0]?.digest as string;
      const manifest = JSON.parse(reader.blob(manifestDigest).toString()) as { layers: Array<{ digest: string; mediaType: string }> };
      const first = manifest.layers[0];
      assert.ok(first);
      assert.equal(first.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      const members = gzipMembers(reader.blob(first.digest));
      assert.ok(members.length >= 6, `expected several members, got ${members.length}`);
      const kernel = layerEntries(Buffer.concat(members)).find((e) => `/${e.name}` === KERNEL_PATH);
      assert.ok(kernel?.data.equals(expected));
    });

    test('docker load', async () => {
      const loaded = await dockerLoad(archive);
      try {
        assertKernel(await loaded.files(name), 'docker');
      } finally {
        await loaded.cleanup();
      }
    });

    test('ctr images import', async () => {
      const imported = await ctrImport(archive);
      try {
        assertKernel(await imported.files(name), 'ctr');
      } finally {
        await imported.cleanup();
      }
    });

    test('podman load', async () => {
      const loaded = await podmanLoad(archive);
      try {
        assertKernel(await loaded.files(name), 'podman');
      } finally {
        await loaded.cleanup();
      }
    });

    test('skopeo copy --dest-decompress', async () => {
      assert.ok((await skopeoKernel(archive, tag, work))?.equals(expected));
    });

    test('umoci unpack', async () => {
      const unpacked = await umociUnpack(archive, tag);
      try {
        assertKernel(unpacked.files, 'umoci');
      } finally {
        await unpacked.cleanup();
      }
    });
  });

  describe('zstd', () => {
    let archive = '';
    const tag = 'zstd';
    const name = `lapin.test/compression:${tag}`;
    before(async () => {
      ({ archive } = await buildWith('zstd', tag));
    });

    test('layers carry the OCI zstd media type', async () => {
      const reader = await readArchive(archive);
      const manifestDigest = (JSON.parse(reader.text('index.json')) as { manifests: Array<{ digest: string }> }).manifests[0]?.digest as string;
      const manifest = JSON.parse(reader.blob(manifestDigest).toString()) as { layers: Array<{ mediaType: string }> };
      for (const layer of manifest.layers) assert.equal(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    });

    test('ctr images import (containerd 1.6)', async () => {
      const imported = await ctrImport(archive);
      try {
        assertKernel(await imported.files(name), 'ctr');
      } finally {
        await imported.cleanup();
      }
    });

    test('podman load', async () => {
      const loaded = await podmanLoad(archive);
      try {
        assertKernel(await loaded.files(name), 'podman');
      } finally {
        await loaded.cleanup();
      }
    });

    test('skopeo copy --dest-decompress', async () => {
      assert.ok((await skopeoKernel(archive, tag, work))?.equals(expected));
    });

    test('docker 20.10 refuses zstd layers', async () => {
      await assert.rejects(async () => {
        const loaded = await dockerLoad(archive);
        await loaded.cleanup();
      }, /invalid tar header|unsupported|zstd|mediatype/i);
    });

    test('umoci 0.4.7 refuses zstd layers', async () => {
      await assert.rejects(async () => {
        const unpacked = await umociUnpack(archive, tag);
        await unpacked.cleanup();
      }, /mediatype|zstd/i);
    });
  });
});
