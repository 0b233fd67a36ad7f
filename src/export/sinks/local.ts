/** `type=local`: the image's final rootfs as plain files (export/local-dir.ts). */
import path from 'node:path';
import type { OutputSpec } from '../../pipeline/types.js';
import { writeLocalDirectory } from '../local-dir.js';
import { LapinError } from '../../errors.js';
import { checkFileOutput, fileOutputTemporaryDir, onePlatformOnly, writeFileOutput, type Artifact, type ArtifactShape, type Sink, type SinkContext } from '../sink.js';

type LocalOutput = Extract<OutputSpec, { type: 'local' }>;

export class LocalSink implements Sink {
  readonly description = 'rootfs directory';

  constructor(
    readonly output: LocalOutput,
    private readonly cwd: string,
  ) {}

  async check(_names: readonly string[], shape: ArtifactShape): Promise<void> {
    // A rootfs directory is one platform's files.
    if (shape.kind === 'index') throw onePlatformOnly('--output type=local');
    await checkFileOutput(this.output, this.cwd, false, true);
  }

  temporaryDir(): string | undefined {
    return fileOutputTemporaryDir(this.output.dest, this.cwd);
  }

  async write(artifact: Artifact, _names: readonly string[], context: SinkContext): Promise<void> {
    if (artifact.kind === 'index') throw new LapinError('internal: type=local was given an index');
    const { rootfs } = artifact;
    if (!rootfs) throw new LapinError('internal: type=local writes a build\'s file tree, and was given an image without one');
    const dest = path.resolve(context.cwd, this.output.dest);
    await writeFileOutput(this, dest, context, () => writeLocalDirectory(rootfs(), dest));
  }
}
