// Which image of an index the docker manifest.json names: the host's
// platform, matched as samePlatform matches (arm64 is arm64/v8), else the
// same os and architecture with another variant; none when there is none.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dockerLoadEntry, indexDockerManifestJson } from '../../src/export/index-archive.js';

const entry = (architecture: string, variant?: string) => ({ platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) } });

test('the host platform, its variant first', () => {
  const entries = [entry('amd64', 'v3'), entry('arm64', 'v8'), entry('amd64')];
  assert.equal(dockerLoadEntry(entries, { os: 'linux', architecture: 'amd64' }), entries[2]);
  assert.equal(dockerLoadEntry(entries, { os: 'linux', architecture: 'arm64' }), entries[1]);
  assert.equal(dockerLoadEntry([entry('amd64', 'v3')], { os: 'linux', architecture: 'amd64' })?.platform.variant, 'v3');
  assert.equal(dockerLoadEntry([entry('arm64'), entry('riscv64')], { os: 'linux', architecture: 's390x' }), undefined);
  assert.equal(dockerLoadEntry([{ platform: { os: 'windows', architecture: 'amd64' } }], { os: 'linux', architecture: 'amd64' }), undefined);
});

test('manifest.json: one entry under every name, null RepoTags without one, nothing without an image', () => {
  const manifest = { config: { mediaType: 'c', digest: `sha256:${'a'.repeat(64)}`, size: 1 }, layers: [{ mediaType: 'l', digest: `sha256:${'b'.repeat(64)}`, size: 2 }] };
  assert.deepEqual(JSON.parse(indexDockerManifestJson({ manifest }, ['docker.io/x/y:1', 'docker.io/x/y:2'])?.toString() ?? ''), [
    { Config: `blobs/sha256/${'a'.repeat(64)}`, RepoTags: ['docker.io/x/y:1', 'docker.io/x/y:2'], Layers: [`blobs/sha256/${'b'.repeat(64)}`] },
  ]);
  assert.equal((JSON.parse(indexDockerManifestJson({ manifest }, [])?.toString() ?? '') as Array<{ RepoTags: unknown }>)[0]?.RepoTags, null);
  assert.equal(indexDockerManifestJson(undefined, ['docker.io/x/y:1']), undefined);
});
