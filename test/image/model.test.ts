// One image model (image/model.ts): a built image, the same image opened from
// its archive or layout, and the same image pulled from a registry all go to
// the one set of sinks, which write byte-identical outputs from each; an index
// opened from an archive goes to the index sinks as a built one does.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { build } from '../../src/build.js';
import type { Artifact, SinkContext } from '../../src/export/sink.js';
import { openSink } from '../../src/export/sinks/index.js';
import type { ImageModel } from '../../src/image/model.js';
import type { OutputSpec } from '../../src/pipeline/types.js';
import { pullImage } from '../../src/registry/pull.js';
import { pulledImage } from '../../src/registry/pulled-image.js';
import { openImageIndex } from '../../src/source/image-index.js';
import { openSource } from '../../src/source/open.js';
import { writePerPlatformContext } from '../helpers/hand-index.js';
import { registrySkipReason, startRegistry, type TestRegistry } from '../registry/harness.js';

const EXAMPLE = path.resolve('examples/mirage-hvt');
const EPOCH = 1_700_000_000;
const skip = registrySkipReason();
const noCredentials = { credentials: async () => undefined, retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 50 } };
let registry: TestRegistry | undefined;
let work: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'lapin image model '));
  if (!skip) registry = await startRegistry('anonymous');
});
after(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Writes the artifact through the sink for `output`, as build() does. */
async function writeThroughSink(output: OutputSpec, artifact: Artifact, names: string[]): Promise<void> {
  const sink = await openSink(output, { cwd: work, haveStdout: false });
  await sink.check(names, artifact.kind === 'image' ? { kind: 'image' } : { kind: 'index', platforms: artifact.index.entries.map((e) => `${e.platform.os}/${e.platform.architecture}`) });
  const context: SinkContext = { cwd: work, mtime: EPOCH, emit: () => undefined, written: [], registry: noCredentials };
  await sink.write(artifact, names, context);
  await sink.close?.();
}

/** Every file of a directory, by relative path, with its sha256. */
async function treeDigests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, file)] = createHash('sha256').update(await readFile(file)).digest('hex');
  }
  return out;
}

describe('one image model for built, opened and pulled images', { skip }, () => {
  test('the archive and layout sinks write a built image, the same image opened, and the same image pulled, byte for byte alike', async () => {
    const host = (registry as TestRegistry).host;
    const name = `${host}/model/same:1`;
    const built = path.join(work, 'built');
    await mkdir(built);
    const result = await build({
      context: EXAMPLE,
      file: path.join(EXAMPLE, 'bunnyfile'),
      tags: [name],
      cwd: built,
      sourceDateEpoch: EPOCH,
      cacheDir: path.join(work, 'cache'),
      registry: noCredentials,
      outputs: [{ type: 'oci', dest: path.join(built, 'image.tar') }, { type: 'oci', dest: path.join(built, 'layout'), tar: false }, { type: 'registry' }],
    });
    const archiveBytes = await readFile(path.join(built, 'image.tar'));
    const layoutFiles = await treeDigests(path.join(built, 'layout'));

    const opened = await openSource(`oci-archive:${path.join(built, 'image.tar')}`);
    const openedLayout = await openSource(`oci:${path.join(built, 'layout')}`);
    const pulled = pulledImage(await pullImage(name, { ...noCredentials, architecture: result.platform.architecture, cacheDir: path.join(work, 'pull-cache') }));
    const images: Array<[string, ImageModel]> = [['opened archive', opened], ['opened layout', openedLayout], ['pulled', pulled]];
    try {
      for (const [what, image] of images) {
        const slug = what.replace(' ', '-');
        await writeThroughSink({ type: 'oci', dest: path.join(work, `${slug}.tar`) }, { kind: 'image', image }, [name]);
        assert.ok((await readFile(path.join(work, `${slug}.tar`))).equals(archiveBytes), `${what}: the archive differs from the built one`);
        await writeThroughSink({ type: 'oci', dest: path.join(work, `${slug}-layout`), tar: false }, { kind: 'image', image }, [name]);
        assert.deepEqual(await treeDigests(path.join(work, `${slug}-layout`)), layoutFiles, `${what}: the layout differs from the built one`);
      }
      // The registry sink pushes an opened image as it pushes a built one: the same manifest digest under the new name.
      const copy = `${host}/model/copy:1`;
      await writeThroughSink({ type: 'registry' }, { kind: 'image', image: opened }, [copy]);
      const again = await pullImage(copy, { ...noCredentials, architecture: result.platform.architecture, cacheDir: path.join(work, 'pull-cache-2') });
      assert.equal(again.manifestDigest, result.digest);
    } finally {
      await opened.close();
      await openedLayout.close();
    }
  });

  test('an index opened from an archive goes to the index sink as the built index does, byte for byte', async () => {
    const context = path.join(work, 'per-platform');
    await writePerPlatformContext(context);
    const dest = path.join(work, 'index.tar');
    const names = ['lapin-test/model-index:1'];
    await build({ context, cwd: work, tags: names, platforms: ['linux/amd64', 'linux/arm64'], sourceDateEpoch: EPOCH, cacheDir: path.join(work, 'cache'), outputs: [{ type: 'oci', dest }] });
    const index = await openImageIndex(`oci-archive:${dest}`);
    try {
      await writeThroughSink({ type: 'oci', dest: path.join(work, 'index-again.tar') }, { kind: 'index', index }, names);
    } finally {
      await index.close();
    }
    assert.ok((await readFile(path.join(work, 'index-again.tar'))).equals(await readFile(dest)));
  });
});
