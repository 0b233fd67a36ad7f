/** `--push` / `type=registry`: the image's blobs, then its manifest, under each name (registry/push.ts). */
import { UsageError } from '../../errors.js';
import type { OutputSpec } from '../../pipeline/types.js';
import { recordCompletedOutput } from '../../temporaries.js';
import type { Artifact, Sink, SinkContext } from '../sink.js';

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
    // Loaded only to push: the registry client is a good part of lapin's start-up otherwise.
    const { pushToRegistry } = await import('../registry.js');
    const pushed = await pushToRegistry(artifact.image, this.namesFor(names), { ...context.registry, onEvent: context.emit });
    for (const item of pushed) {
      context.written.push({ type: 'registry', dest: item.name });
      recordCompletedOutput(`pushed ${item.name}`);
      context.emit({ kind: 'step', message: `pushed ${item.name}@${item.digest}` });
    }
  }
}
