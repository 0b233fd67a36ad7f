/** `type=oci,tar=false`: an OCI image layout directory (export/layout-dir.ts). */
import path from 'node:path';
import type { OutputSpec } from '../../pipeline/types.js';
import { writeLayoutDirectory } from '../layout-dir.js';
import { checkFileOutput, fileOutputTemporaryDir, writeFileOutput, writeIndexFile, type Artifact, type Sink, type SinkContext } from '../sink.js';

type LayoutOutput = Extract<OutputSpec, { type: 'oci' | 'docker' }>;

export class LayoutSink implements Sink {
  readonly description = 'OCI layout directory';

  constructor(
    readonly output: LayoutOutput,
    private readonly cwd: string,
  ) {}

  async check(): Promise<void> {
    await checkFileOutput(this.output, this.cwd, false, true);
  }

  temporaryDir(): string | undefined {
    return fileOutputTemporaryDir(this.output.dest, this.cwd);
  }

  async write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
    const dest = path.resolve(context.cwd, this.output.dest);
    await writeFileOutput(this, dest, context, async () => {
      if (artifact.kind === 'index') {
        const written = await writeIndexFile(artifact, names, dest, false, context);
        context.index ??= written;
        return { said: true };
      }
      await writeLayoutDirectory(artifact.image, dest, names);
      return {};
    });
  }
}
