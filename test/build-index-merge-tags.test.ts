// `lapin build --push --strategy merge` with several -t merges with each
// name's own index, as `kraft pkg --strategy merge` does at its one name: a
// release pushed as -t NAME:2.0 -t NAME:latest one platform at a time keeps
// serving latest's other platforms meanwhile, instead of replacing latest
// with the first tag's index. Against docker-registry; skopeo reads the
// result. --metadata-file has the first name's index.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runProgram, type ProgramResult } from './helpers/fixtures.js';
import { writePerPlatformContext } from './helpers/hand-index.js';
import { registrySkipReason, skopeoInspect, startRegistry, type TestRegistry } from './registry/harness.js';

const ROOT = resolve('.');
const CLI = ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/cli/main.ts')];
let work: string;
let context: string;
const lapin = (args: string[]): Promise<ProgramResult> => runProgram(process.execPath, [...CLI, ...args], { cwd: work });

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lapin merge tags '));
  context = join(work, 'context');
  await writePerPlatformContext(context);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('--push --strategy merge with several -t', { skip: registrySkipReason() }, () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startRegistry('anonymous');
  });
  after(async () => {
    await registry?.stop();
  });

  /** The index at NAME: its digest and, per entry, the architecture and the manifest digest. */
  async function indexAt(name: string): Promise<{ digest: string; entries: Array<[string, string]> }> {
    const [host, ...rest] = name.split('/');
    const [repo, tag] = rest.join('/').split(':') as [string, string];
    const response = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(response.status, 200, name);
    const bytes = Buffer.from(await response.arrayBuffer());
    const document = JSON.parse(bytes.toString()) as { manifests: Array<{ digest: string; platform: { architecture: string } }> };
    return { digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, entries: document.manifests.map((m) => [m.platform.architecture, m.digest]) };
  }
  const release = async (version: string, platforms: string, tags: string[], strategy: string[] = ['--strategy', 'merge'], extra: string[] = []): Promise<ProgramResult> => {
    const result = await lapin(['build', '--platform', platforms, '--label', `version=${version}`, ...tags.flatMap((t) => ['-t', t]), '--push', ...strategy, '--insecure-registry', registry.host, ...extra, context]);
    assert.equal(result.status, 0, result.stderr);
    return result;
  };

  test("each name keeps its own index's other platforms; the first name's index is the metadata's", async () => {
    const latest = `${registry.host}/kraft/tags:latest`;
    const v2 = `${registry.host}/kraft/tags:2.0`;
    await release('1.0', 'linux/amd64,linux/arm64', [latest], []);
    const old = await indexAt(latest);
    assert.deepEqual(old.entries.map(([arch]) => arch), ['amd64', 'arm64']);

    // 2.0 for arm64 first: 2.0 has arm64 only; latest has the new arm64 and keeps 1.0's amd64.
    const meta = join(work, 'meta.json');
    const arm = await release('2.0', 'linux/arm64', [v2, latest], undefined, ['--metadata-file', meta]);
    const v2After = await indexAt(v2);
    const latestAfter = await indexAt(latest);
    assert.equal(v2After.entries.length, 1);
    assert.equal(v2After.entries[0]?.[0], 'arm64');
    const newArm = v2After.entries[0]?.[1] as string;
    assert.notEqual(newArm, old.entries[1]?.[1]);
    assert.deepEqual(latestAfter.entries, [old.entries[0], ['arm64', newArm]]);
    assert.match(arm.stderr, new RegExp(`index ${v2After.digest} at ${v2.replace(/[.]/g, '\\.')}: linux/arm64 \\[`));
    assert.match(arm.stderr, new RegExp(`index ${latestAfter.digest} at ${latest.replace(/[.]/g, '\\.')}: linux/amd64, linux/arm64 \\[`));
    // The summary names each tag with the index it holds, not the first name's for both.
    assert.match(arm.stderr, new RegExp(`built index ${v2After.digest} \\(linux/arm64\\) -> ${v2.replace(/[.]/g, '\\.')}, ${latest.replace(/[.]/g, '\\.')} \\(index ${latestAfter.digest}\\)$`, 'm'));
    const written = JSON.parse(await readFile(meta, 'utf8')) as Record<string, unknown>;
    assert.equal(written['containerimage.digest'], v2After.digest);
    // A real consumer sees both platforms at latest: amd64 is still 1.0's, arm64 is 2.0's.
    const label = async (name: string, arch: string): Promise<string | undefined> => ((await skopeoInspect(name, '--config', ['--override-arch', arch, '--override-os', 'linux'])) as { config: { Labels: Record<string, string> } }).config.Labels.version;
    assert.equal(await label(latest, 'amd64'), '1.0');
    assert.equal(await label(latest, 'arm64'), '2.0');

    // Then 2.0 for amd64: both names hold 2.0 for both platforms, each in its own order.
    await release('2.0', 'linux/amd64', [v2, latest]);
    const v2Done = await indexAt(v2);
    const latestDone = await indexAt(latest);
    assert.deepEqual(v2Done.entries.map(([arch]) => arch), ['arm64', 'amd64']);
    assert.deepEqual(latestDone.entries.map(([arch]) => arch), ['amd64', 'arm64']);
    assert.deepEqual(new Set(latestDone.entries.map(([, d]) => d)), new Set(v2Done.entries.map(([, d]) => d)));
    assert.equal(await label(latest, 'amd64'), '2.0');

    // abort checks every name before pushing anything: latest has another arm64 image.
    const fresh = `${registry.host}/kraft/tags:3.0`;
    const refused = await lapin(['build', '--platform', 'linux/arm64', '--label', 'version=3.0', '-t', fresh, '-t', latest, '--push', '--strategy', 'abort', '--insecure-registry', registry.host, context]);
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /already has an image for linux\/arm64 \(--strategy abort\)/);
    const missing = await fetch(`http://${registry.host}/v2/kraft/tags/manifests/3.0`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(missing.status, 404);
    assert.equal((await indexAt(latest)).digest, latestDone.digest);

    // overwrite (and no strategy) still pushes one index to every name, as buildx.
    await release('4.0', 'linux/amd64', [v2, latest], ['--strategy', 'overwrite']);
    const a = await indexAt(v2);
    assert.equal(a.entries.length, 1);
    assert.deepEqual(await indexAt(latest), a);
  });
});
