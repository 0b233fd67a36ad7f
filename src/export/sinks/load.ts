/** `--load`: the image handed to docker (its API socket) or containerd (ctr) (export/load.ts). */
import { UsageError } from '../../errors.js';
import type { OutputSpec } from '../../pipeline/types.js';
import { recordCompletedOutput } from '../../temporaries.js';
import type { Artifact, Sink, SinkContext } from '../sink.js';

type LoadOutput = Extract<OutputSpec, { type: 'load' }>;

export class LoadSink implements Sink {
  readonly description: string;

  constructor(readonly output: LoadOutput) {
    this.description = output.engine;
  }

  async check(names: readonly string[]): Promise<void> {
    if (this.output.engine === 'containerd' && names.length === 0) throw new UsageError('--load=containerd needs an image name', 'add -t NAME[:TAG]');
    await (await import('../load.js')).checkLoadTarget(this.output);
  }

  async write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
    const { loadImage } = await import('../load.js');
    const { engine } = this.output;
    context.emit({ kind: 'begin', id: `load ${engine}`, message: `loading into ${engine}` });
    const loaded = await loadImage(artifact.image, this.output, context.mtime, names).finally(() => context.emit({ kind: 'end', id: `load ${engine}` }));
    const where = loaded.namespace !== undefined ? `${loaded.engine} (namespace ${loaded.namespace})` : loaded.engine;
    for (const name of loaded.names) {
      context.written.push({ type: 'load', dest: `${loaded.engine}:${name}` });
      recordCompletedOutput(`loaded into ${where} as ${name}`);
      context.emit({ kind: 'step', message: `loaded into ${where} as ${name}` });
    }
  }
}
