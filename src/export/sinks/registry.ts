/**
 * `--push` / `type=registry`: an image's blobs, then its manifest, under
 * each name (registry/push.ts); an index's manifests, then the index
 * (imagetools/create.ts), merged with the index already there as
 * --strategy says.
 */
import { LapinError, UsageError } from '../../errors.js';
import { formatReference, parseReference } from '../../image/reference.js';
import { formatPlatform, samePlatform } from '../../pipeline/platform.js';
import type { OutputSpec } from '../../pipeline/types.js';
import type { RegistryOptions } from '../../registry/client.js';
import { recordCompletedOutput } from '../../temporaries.js';
import type { Artifact, IndexArtifact, Sink, SinkContext } from '../sink.js';

type RegistryOutput = Extract<OutputSpec, { type: 'registry' }>;

export class RegistrySink implements Sink {
  readonly description = 'registry';

  constructor(readonly output: RegistryOutput) {}

  /** The names pushed to: the output's own, else every -t name. */
  namesFor(names: readonly string[]): readonly string[] {
    return this.output.names ?? names;
  }

  async check(names: readonly string[]): Promise<void> {
    if (this.namesFor(names).length === 0) throw new UsageError('pushing needs an image name', 'add -t REGISTRY/NAME:TAG');
  }

  async write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
    const pushTo = this.namesFor(names);
    if (artifact.kind === 'index') return this.writeIndex(artifact, pushTo, context);
    // Loaded only to push: the registry client is a good part of lapin's start-up otherwise.
    const { pushToRegistry } = await import('../registry.js');
    const pushed = await pushToRegistry(artifact.image, pushTo, { ...context.registry, onEvent: context.emit });
    for (const item of pushed) {
      context.written.push({ type: 'registry', dest: item.name });
      recordCompletedOutput(`pushed ${item.name}`);
      context.emit({ kind: 'step', message: `pushed ${item.name}@${item.digest}` });
    }
  }

  /**
   * Every platform's manifest, then the index, under each name. merge keeps
   * the platforms already at each name, in that name's own index (as `kraft
   * pkg --strategy merge` does at its one name): two tags holding different
   * indexes each keep theirs. abort first refuses a platform already at any
   * name, then keeps the others as merge does; overwrite (and no strategy)
   * pushes one index to every name, as buildx does.
   */
  private async writeIndex(artifact: IndexArtifact, pushTo: readonly string[], context: SinkContext): Promise<void> {
    const [{ createIndex }, { indexSource }] = await Promise.all([import('../../imagetools/create.js'), import('../../pipeline/index.js')]);
    const strategy = artifact.strategy;
    if (strategy === 'abort') await refuseExistingPlatforms(artifact, pushTo, context.registry);
    const merging = strategy === 'merge' || strategy === 'abort';
    // Merging: one index per name, over what that name holds; else one index for them all.
    const groups = merging ? pushTo.map((name) => [name]) : [pushTo];
    let first: SinkContext['index'];
    for (const tags of groups) {
      const created = await createIndex({
        tags,
        sources: [indexSource(artifact.index, 'the build')],
        strategy: merging ? 'merge' : (strategy ?? 'abort'),
        ...(context.registry ? { registry: context.registry } : {}),
        onEvent: context.emit,
      });
      if (merging) context.emit({ kind: 'step', message: `index ${created.digest}${pushTo.length > 1 ? ` at ${tags[0] as string}` : ''}: ${created.platforms.join(', ')}` });
      // The first name's index is the build's (--metadata-file's containerimage.digest).
      first ??= { mediaType: created.mediaType, digest: created.digest, size: created.bytes.length };
      for (const item of created.pushed) {
        context.written.push({ type: 'registry', dest: item.name, ...(merging ? { digest: created.digest } : {}) });
        recordCompletedOutput(`pushed ${item.name}`);
      }
    }
    context.index = first;
  }
}

/** --strategy abort: exit 2, before anything is pushed, when a name already has an image for a platform built. */
async function refuseExistingPlatforms(artifact: IndexArtifact, pushTo: readonly string[], registry: RegistryOptions | undefined): Promise<void> {
  const [{ openImageIndex }, { SourceError }] = await Promise.all([import('../../source/image-index.js'), import('../../source/open.js')]);
  for (const name of pushTo) {
    const reference = formatReference(parseReference(name));
    let existing;
    try {
      existing = await openImageIndex(`docker://${reference}`, { ...(registry ? { registry } : {}) });
    } catch (error) {
      // Nothing there yet: nothing to refuse.
      if (error instanceof SourceError && /was not found in/.test(error.message)) continue;
      throw error;
    }
    try {
      for (const entry of artifact.index.entries) {
        const there = existing.entries.find((e) => samePlatform(e.platform, entry.platform));
        if (there && there.descriptor.digest !== entry.descriptor.digest) {
          throw new UsageError(`${reference} already has an image for ${formatPlatform(entry.platform)} (--strategy abort)`, '--strategy merge replaces that platform and keeps the others; --strategy overwrite replaces the whole index');
        }
      }
    } finally {
      await existing.close();
    }
  }
  if (artifact.index.entries.length === 0) throw new LapinError('internal: an index with no image');
}
