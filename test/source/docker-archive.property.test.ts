// docker save's manifest.json is someone else's JSON: whatever its entries
// hold (RepoTags a number, a list of numbers, an object), opening the
// archive with or without a name ends in an image or a SourceError (exit 2),
// never a TypeError ("(...).some is not a function", exit 1).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { LapinError } from '../../src/errors.js';
import { openSource } from '../../src/source/open.js';
import { handBlobs, sha256, tarOf } from '../helpers/hand-image.js';

let work: string;
let counter = 0;
let files: { config: { name: string; body: Buffer }; layer: { name: string; body: Buffer } };

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-docker-archive-'));
  const made = await handBlobs({ layers: [[{ name: 'a', body: 'x' }]], gzip: false });
  const tar = (made.layers[0] as { tar: Buffer }).tar;
  files = { config: { name: `${sha256(made.config)}.json`, body: made.config }, layer: { name: `${sha256(tar)}/layer.tar`, body: tar } };
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

async function archiveWith(entries: unknown): Promise<string> {
  const path = join(work, `${counter++}.tar`);
  await writeFile(path, await tarOf([files.config, files.layer, { name: 'manifest.json', body: JSON.stringify(entries) }]));
  return path;
}

/** Opens the archive (by name when `tag` is given) and reads its manifest and config. */
async function open(path: string, tag: string | undefined): Promise<void> {
  const source = await openSource(`docker-archive:${path}${tag === undefined ? '' : `:${tag}`}`);
  try {
    await source.manifest();
    await source.config();
  } finally {
    await source.close();
  }
}

describe('docker-archive manifest.json of any shape', () => {
  test('RepoTags that is no list of names is refused in a sentence, with or without a name asked for', async () => {
    for (const repoTags of [5, 'hand/made:1', [1, null], {}]) {
      const path = await archiveWith([{ Config: files.config.name, RepoTags: repoTags, Layers: [files.layer.name] }, { Config: files.config.name, RepoTags: ['x:1'], Layers: [files.layer.name] }]);
      await assert.rejects(open(path, '1'), (error: unknown) => {
        assert.ok(error instanceof LapinError, String(error));
        assert.equal(error.exitCode, 2);
        assert.match(error.message, /manifest\.json is not docker save's format \(RepoTags is not a list of names\)/);
        return true;
      });
    }
  });

  test('property: entries of any shape open or give a LapinError of exit 2', { timeout: 120_000 }, async () => {
    const anything = fc.jsonValue({ maxDepth: 2 });
    const entry = fc.record(
      {
        Config: fc.oneof(fc.constant(files.config.name), anything),
        RepoTags: fc.oneof(fc.constant(['hand/made:1']), fc.array(fc.string()), anything),
        Layers: fc.oneof(fc.constant([files.layer.name]), fc.array(fc.string(), { maxLength: 3 }), anything),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.array(entry, { maxLength: 3 }), anything), fc.option(fc.constantFrom('1', 'made:1', 'hand/made:1', 'x'), { nil: undefined }), async (entries, tag) => {
        const path = await archiveWith(entries);
        try {
          await open(path, tag);
        } catch (error) {
          if (!(error instanceof LapinError)) throw new Error(`not a LapinError: ${String((error as Error).stack ?? error)}`);
          assert.equal(error.exitCode, 2, error.message);
        } finally {
          await rm(path, { force: true });
        }
      }),
      { numRuns: 300 },
    );
  });
});
