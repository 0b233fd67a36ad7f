/** `--load`: the image handed to docker (its API socket) or containerd (ctr) (export/load.ts). */
import { UsageError } from '../../errors.js';
import type { OutputSpec } from '../../pipeline/types.js';
import { recordCompletedOutput } from '../../temporaries.js';
import type { ImageModel } from '../../image/model.js';
import { formatPlatform, hostArchitecture } from '../../pipeline/platform.js';
import type { Artifact, ArtifactShape, Sink, SinkContext } from '../sink.js';

type LoadOutput = Extract<OutputSpec, { type: 'load' }>;

export class LoadSink implements Sink {
  readonly description: string;

  constructor(readonly output: LoadOutput) {
    this.description = output.engine;
  }

  async check(names: readonly string[], shape: ArtifactShape): Promise<void> {
    // An engine runs this machine's platform: of an index, that image is loaded.
    if (shape.kind === 'index' && !shape.platforms.some((p) => p.split('/')[1] === hostArchitecture())) {
      throw new UsageError(`--load (${this.output.engine}) loads this machine's platform (linux/${hostArchitecture()}), which the build does not make (${shape.platforms.join(', ')})`, `add linux/${hostArchitecture()} to --platform, or push the index instead`);
    }
    if (this.output.engine === 'containerd' && names.length === 0) throw new UsageError('--load=containerd needs an image name', 'add -t NAME[:TAG]');
    await (await import('../load.js')).checkLoadTarget(this.output);
  }

  async write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
    const { loadImage } = await import('../load.js');
    const { engine } = this.output;
    let image: ImageModel;
    if (artifact.kind === 'index') {
      const host = artifact.index.entries.find((e) => e.platform.architecture === hostArchitecture());
      if (!host) throw new UsageError(`--load (${engine}): the index has no image for linux/${hostArchitecture()}, this machine's platform`);
      image = await host.open();
      context.emit({ kind: 'step', message: `--load (${engine}): loading ${formatPlatform(host.platform)}, this machine's platform, of the ${artifact.index.entries.length} built` });
    } else {
      image = artifact.image;
    }
    context.emit({ kind: 'begin', id: `load ${engine}`, message: `loading into ${engine}` });
    const loaded = await loadImage(image, this.output, context.mtime, names).finally(() => context.emit({ kind: 'end', id: `load ${engine}` }));
    const where = loaded.namespace !== undefined ? `${loaded.engine} (namespace ${loaded.namespace})` : loaded.engine;
    for (const name of loaded.names) {
      context.written.push({ type: 'load', dest: `${loaded.engine}:${name}` });
      recordCompletedOutput(`loaded into ${where} as ${name}`);
      context.emit({ kind: 'step', message: `loaded into ${where} as ${name}` });
    }
  }
}
