// Property tests for the source layer's parsers: the tar indexer against
// tar-stream's writer, whiteout handling against a model of the layer
// rules, and symlink resolution on arbitrary link graphs.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { openSource, parseSource } from '../../src/source/open.js';
import { flattenRootfs, resolveFile, type FlatRootfs, type RootfsEntry } from '../../src/source/rootfs.js';
import { TarFile } from '../../src/source/tar-file.js';
import { tarOf, writeOciArchive, type HandFile } from '../helpers/hand-image.js';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin-source-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const segment = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,40}$/).filter((s) => !s.startsWith('.wh.') && s !== '.' && s !== '..');
const longPath = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));

describe('source parsers (properties)', () => {
  test('TarFile finds every member tar-stream wrote, long names and sizes included', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.tuple(longPath, fc.uint8Array({ maxLength: 2000 })), { minLength: 1, maxLength: 12, selector: ([name]) => name }), async (members) => {
        // Keep names that are not also a prefix directory of another member.
        const files: HandFile[] = members
          .filter(([name]) => !members.some(([other]) => other !== name && other.startsWith(`${name}/`)))
          .map(([name, body]) => ({ name, body: Buffer.from(body) }));
        const path = join(work, 'p.tar');
        await writeFile(path, await tarOf(files));
        const archive = await TarFile.open(path);
        for (const file of files) {
          const member = archive.member(file.name);
          assert.ok(member, file.name);
          assert.deepEqual(await archive.read(member), file.body);
        }
      }),
      { numRuns: 40 },
    );
  });

  test('flattening applies whiteouts like the model: a path exists iff its last layer added it and nothing later removed it', async () => {
    const names = ['a', 'b', 'd/x', 'd/y'];
    const op = fc.oneof(fc.constantFrom(...names).map((n) => ({ kind: 'add' as const, n })), fc.constantFrom(...names).map((n) => ({ kind: 'whiteout' as const, n })), fc.constant({ kind: 'opaque' as const, n: 'd' }));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uniqueArray(op, { maxLength: 4, selector: (o) => `${o.kind}${o.n}` }), { minLength: 1, maxLength: 4 }), async (layers) => {
        const model = new Set<string>();
        const handLayers: HandFile[][] = layers.map((ops) => {
          const files: HandFile[] = [];
          const added = new Set<string>();
          for (const o of ops) {
            if (o.kind === 'add') {
              if (o.n.startsWith('d/')) files.push({ name: 'd/', type: 'directory' });
              files.push({ name: o.n, body: o.n });
              added.add(o.n);
            } else if (o.kind === 'whiteout' && !added.has(o.n)) {
              const slash = o.n.lastIndexOf('/');
              files.push({ name: `${o.n.slice(0, slash + 1)}.wh.${o.n.slice(slash + 1)}` });
              model.delete(o.n);
            } else if (o.kind === 'opaque') {
              files.push({ name: 'd/', type: 'directory' }, { name: 'd/.wh..wh..opq' });
              for (const name of [...model]) if (name.startsWith('d/')) model.delete(name);
            }
          }
          for (const name of added) model.add(name);
          return files;
        });
        const path = join(work, 'w.tar');
        await writeOciArchive(path, { layers: handLayers });
        const source = await openSource(path);
        const rootfs = await flattenRootfs(source);
        const files = [...rootfs.entries.values()].filter((e) => e.type === 'file').map((e) => e.path.slice(1)).sort();
        assert.deepEqual(files, [...model].sort());
      }),
      { numRuns: 60 },
    );
  });

  test('resolveFile terminates on any symlink graph and never leaves the rootfs', () => {
    const paths = ['/a', '/b', '/c', '/d/e'];
    const target = fc.constantFrom('a', 'b', '/c', '../a', '../../d/e', 'd/e', '/nope', '..', '/');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...paths), fc.oneof(target, fc.constant(null))), { maxLength: 8 }), (links) => {
        const entries = new Map<string, RootfsEntry>();
        entries.set('/d', { path: '/d', type: 'directory', size: 0, mode: 0o755, linkname: '', layer: 0 });
        for (const [path, link] of links) {
          entries.set(path, link === null ? { path, type: 'file', size: 1, mode: 0o644, linkname: '', layer: 0 } : { path, type: 'symlink', size: 0, mode: 0o777, linkname: link, layer: 0 });
        }
        const rootfs: FlatRootfs = { entries, layerCount: 1 };
        for (const path of paths) {
          const resolved = resolveFile(rootfs, path);
          if (resolved.entry) assert.ok(entries.has(resolved.entry.path));
          else assert.ok(resolved.problem);
        }
      }),
    );
  });

  test('parseSource reads transports and never throws anything but a SourceError', async () => {
    assert.deepEqual(await parseSource('oci-archive:/x/y.tar:v1'), { transport: 'oci-archive', target: '/x/y.tar', tag: 'v1' });
    assert.deepEqual(await parseSource('oci:/x/layout'), { transport: 'oci', target: '/x/layout' });
    assert.deepEqual(await parseSource('docker-daemon:busybox:1'), { transport: 'docker-daemon', target: 'busybox:1' });
    assert.deepEqual(await parseSource('docker://ghcr.io/a/b:1'), { transport: 'docker', target: 'ghcr.io/a/b:1' });
    assert.deepEqual(await parseSource('ghcr.io/a/b:1'), { transport: 'docker', target: 'ghcr.io/a/b:1' });
    for (const path of ['nothere.tar', 'a/b.tgz', './x', '../x/y', '/no/such', '~/img.oci', 'x.tar:v1']) {
      await assert.rejects(parseSource(path), /no such file or directory/, path);
    }
    // skopeo's PATH:REFERENCE: the first colon after an existing path, whatever colons the path or the reference hold.
    const colonName = fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,8}$/), { minLength: 1, maxLength: 3 }).map((parts) => parts.join(':'));
    const reference = fc.tuple(fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,20}$/), fc.option(fc.stringMatching(/^[\w][\w.-]{0,10}$/), { nil: undefined })).map(([name, tag]) => (tag === undefined ? name : `${name}:${tag}`));
    const archivePath = join(work, 'split-source.tar');
    await writeOciArchive(archivePath, { layers: [[]] });
    let run = 0;
    await fc.assert(
      fc.asyncProperty(colonName, reference, fc.constantFrom('oci-archive:', 'docker-archive:', ''), async (name, ref, prefix) => {
        const dir = join(work, `split-${run++}`);
        await mkdir(dir);
        const file = join(dir, `${name}.tar`);
        await writeFile(file, await readFile(archivePath));
        const spec = await parseSource(`${prefix}${file}:${ref}`);
        assert.equal(spec.target, file);
        assert.equal(spec.tag, ref);
      }),
      { numRuns: 60 },
    );
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 60 }), async (text) => {
        try {
          await parseSource(join(work, 'missing', text));
        } catch (error) {
          assert.equal((error as Error).name, 'SourceError', String(error));
        }
      }),
    );
  });
});
