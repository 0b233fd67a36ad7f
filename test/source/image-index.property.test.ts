// Property tests of the index reader (src/source/image-index.ts) on bytes it
// did not write: any index.json and index blob either opens or fails with a
// SourceError (exit 2), never another exception; a valid index of N distinct
// platforms always opens with N entries in order; platform text round-trips.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { formatPlatform, openImageIndex, parsePlatform, pickPlatform, samePlatform, type Platform } from '../../src/source/image-index.js';
import { normalizePlatform } from '../../src/pipeline/platform.js';
import { SourceError } from '../../src/source/open.js';
import { sha256 } from '../helpers/hand-image.js';
import { handIndex, writeIndexLayout } from '../helpers/hand-index.js';

let work: string;
let counter = 0;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-index-prop-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const descriptor = fc.record(
  {
    mediaType: fc.constantFrom('application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json', 'text/plain', ''),
    digest: fc.oneof(fc.constant('sha256:' + '0'.repeat(64)), fc.string(), fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256:${h}`)),
    size: fc.oneof(fc.nat(), fc.integer(), fc.constant(1e12)),
    platform: fc.option(fc.record({ os: fc.option(fc.string(), { nil: undefined }), architecture: fc.option(fc.constantFrom('amd64', 'arm64', 'unknown', ''), { nil: undefined }) }, { requiredKeys: [] }), { nil: undefined }),
    annotations: fc.option(fc.dictionary(fc.constantFrom('org.opencontainers.image.ref.name', 'io.containerd.image.name', 'x'), fc.string()), { nil: undefined }),
  },
  { requiredKeys: ['mediaType', 'digest'] },
);
const indexDocument = fc.oneof(
  fc.record({ schemaVersion: fc.constant(2), manifests: fc.array(descriptor, { maxLength: 4 }) }),
  fc.jsonValue(),
  fc.string(),
);

describe('image index reader (properties)', () => {
  test('arbitrary index.json and nested index blobs: an index or a SourceError, nothing else', async () => {
    await fc.assert(
      fc.asyncProperty(indexDocument, fc.option(indexDocument, { nil: undefined }), async (top, nested) => {
        const dir = join(work, `l${counter++}`);
        await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
        let topText = typeof top === 'string' ? top : JSON.stringify(top);
        if (nested !== undefined) {
          // A real blob for a nested index, so the reader gets past the digest check sometimes.
          const blob = Buffer.from(typeof nested === 'string' ? nested : JSON.stringify(nested));
          await writeFile(join(dir, 'blobs', 'sha256', sha256(blob)), blob);
          topText = JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${sha256(blob)}`, size: blob.length }] });
        }
        await writeFile(join(dir, 'index.json'), topText ?? '');
        try {
          const index = await openImageIndex(`oci:${dir}`);
          assert.ok(index.entries.length >= 0);
          await index.close();
        } catch (error) {
          assert.ok(error instanceof SourceError, `not a SourceError: ${(error as Error).stack ?? String(error)}`);
        }
      }),
      { numRuns: 150 },
    );
  });

  test('an index whose manifest and config are arbitrary JSON: entries or a SourceError', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), fc.jsonValue(), async (manifestValue, configValue) => {
        const dir = join(work, `m${counter++}`);
        await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
        const put = async (data: Buffer): Promise<string> => {
          await writeFile(join(dir, 'blobs', 'sha256', sha256(data)), data);
          return `sha256:${sha256(data)}`;
        };
        const config = Buffer.from(JSON.stringify(configValue) ?? 'null');
        const configDigest = await put(config);
        // Half the time a manifest that points at the config, so the config is read too.
        const manifestJson = typeof manifestValue === 'object' && manifestValue !== null && !Array.isArray(manifestValue) ? { ...manifestValue, config: { mediaType: 'x', digest: configDigest, size: config.length }, layers: [] } : manifestValue;
        const manifest = Buffer.from(JSON.stringify(manifestJson) ?? 'null');
        const manifestDigest = await put(manifest);
        const nested = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length }] }));
        const nestedDigest = await put(nested);
        await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: nestedDigest, size: nested.length }] }));
        try {
          await openImageIndex(`oci:${dir}`);
        } catch (error) {
          assert.ok(error instanceof SourceError, `not a SourceError: ${(error as Error).stack ?? String(error)}`);
        }
      }),
      { numRuns: 100 },
    );
  });

  test('an index of distinct platforms opens with each platform, in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.constantFrom('amd64', 'arm64', 'riscv64', 's390x', 'ppc64le'), { minLength: 1, maxLength: 4 }), fc.boolean(), async (architectures, inIndex) => {
        const made = await handIndex(architectures.map((architecture) => ({ architecture, layers: [[{ name: 'f', body: architecture }]] })), { platformInIndex: inIndex });
        const dir = join(work, `v${counter++}`);
        await writeIndexLayout(dir, made);
        const index = await openImageIndex(dir);
        assert.equal(index.index?.digest, made.indexDigest);
        assert.deepEqual(index.entries.map((e) => e.platform.architecture), architectures);
        assert.deepEqual(index.entries.map((e) => e.descriptor.digest), made.manifests);
      }),
      { numRuns: 25 },
    );
  });

  test('nested indexes sharing children (a DAG, each index listing children many times): each reachable image once, in first-seen order', async () => {
    const made = await handIndex(['amd64', 'arm64', 'riscv64'].map((architecture) => ({ architecture, layers: [[{ name: 'f', body: architecture }]] })));
    const manifestDescriptors = made.manifests.map((digest, i) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: (made.blobs.get(digest.slice(7)) as Buffer).length, platform: { os: 'linux', architecture: ['amd64', 'arm64', 'riscv64'][i] as string } }));
    // Level k lists nodes of level k+1 (indexes) or images; up to 3 levels of indexes under index.json.
    const level = fc.array(fc.array(fc.tuple(fc.boolean(), fc.nat(5), fc.integer({ min: 1, max: 30 })), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 });
    await fc.assert(
      fc.asyncProperty(fc.array(level, { minLength: 1, maxLength: 3 }), async (levels) => {
        const dir = join(work, `d${counter++}`);
        await writeIndexLayout(dir, made);
        // Build bottom-up: the last level's indexes list images only.
        let below: Array<{ descriptor: object; reaches: string[] }> = manifestDescriptors.map((d) => ({ descriptor: d, reaches: [d.digest] }));
        const images = below;
        for (let k = levels.length - 1; k >= 0; k--) {
          const built: typeof below = [];
          for (const children of levels[k] as Array<Array<[boolean, number, number]>>) {
            const listed: typeof below = [];
            for (const [image, pick, times] of children) {
              const pool = image || k === levels.length - 1 ? images : below;
              const child = pool[pick % pool.length] as (typeof below)[number];
              for (let t = 0; t < times; t++) listed.push(child);
            }
            const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: listed.map((l) => l.descriptor) }));
            await writeFile(join(dir, 'blobs', 'sha256', sha256(bytes)), bytes);
            built.push({ descriptor: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${sha256(bytes)}`, size: bytes.length }, reaches: [...new Set(listed.flatMap((l) => l.reaches))] });
          }
          below = built;
        }
        const top = below[0] as (typeof below)[number];
        await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [top.descriptor] }));
        const index = await openImageIndex(`oci:${dir}`);
        assert.deepEqual(index.entries.map((e) => e.descriptor.digest), top.reaches);
      }),
      { numRuns: 40 },
    );
  });

  test('parsePlatform and formatPlatform round-trip OS/ARCH[/VARIANT]', () => {
    const word = fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,10}$/).filter((w) => !['x86_64', 'x86-64', 'aarch64'].includes(w));
    // containerd's OS part has no dot; the parts come back as containerd normalizes them (aarch64 → arm64, arm64/v8 → arm64).
    const osWord = word.filter((w) => !w.includes('.'));
    fc.assert(
      fc.property(osWord, word, fc.option(word, { nil: undefined }), (os, architecture, variant) => {
        const text = [os, architecture, ...(variant ? [variant] : [])].join('/');
        const parsed = parsePlatform(text);
        assert.ok(parsed);
        assert.equal(formatPlatform(parsed), formatPlatform(normalizePlatform({ os, architecture, ...(variant ? { variant } : {}) })));
        assert.deepEqual(parsePlatform(formatPlatform(parsed)), parsed);
      }),
    );
    // Any case and surrounding whitespace name the same platform (containerd lowercases); any text parses or is undefined.
    fc.assert(
      fc.property(word, word, fc.option(word, { nil: undefined }), fc.array(fc.boolean(), { maxLength: 40 }), fc.constantFrom('', ' ', '\t', '\n'), (os, architecture, variant, upper, space) => {
        const text = [os, architecture, ...(variant ? [variant] : [])].join('/');
        const cased = [...text].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('');
        assert.deepEqual(parsePlatform(`${space}${cased}${space}`), parsePlatform(text));
      }),
    );
    fc.assert(fc.property(fc.string(), (text) => void parsePlatform(text)));
    assert.equal(parsePlatform('linux/arm64/v8/extra'), undefined);
    assert.equal(parsePlatform('linux//arm64'), undefined);
    assert.deepEqual(parsePlatform('linux/aarch64'), { os: 'linux', architecture: 'arm64' });
  });

  test('pickPlatform: the entry samePlatform finds when there is one; amd64/vN falls back to the highest lower level only', () => {
    const platform = fc.record({ os: fc.constantFrom('linux', 'windows'), architecture: fc.constantFrom('amd64', 'arm64', 'arm'), variant: fc.option(fc.constantFrom('v1', 'v2', 'v3', 'v4', 'v7', 'v8'), { nil: undefined }) }).map((p): Platform => ({ os: p.os, architecture: p.architecture, ...(p.variant ? { variant: p.variant } : {}) }));
    fc.assert(
      fc.property(fc.array(platform, { maxLength: 6 }), platform, (platforms, wanted) => {
        const entries = platforms.map((p, i) => ({ platform: p, i }));
        const picked = pickPlatform(entries, wanted);
        const exact = entries.find((e) => samePlatform(e.platform, wanted));
        if (exact) assert.equal(picked, exact);
        else if (picked) {
          assert.equal(wanted.architecture, 'amd64');
          assert.equal(picked.platform.architecture, 'amd64');
          assert.equal(picked.platform.os, wanted.os);
          assert.ok((picked.platform.variant ?? 'v1') < (wanted.variant ?? 'v1'), JSON.stringify([picked, wanted]));
        }
      }),
    );
  });
});
