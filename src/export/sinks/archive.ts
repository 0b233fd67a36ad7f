/** `type=oci|docker` (tar): one archive that is both an OCI layout and a docker save archive (export/archive.ts). */
import path from 'node:path';
import type { Writable } from 'node:stream';
import { imageParts } from '../../image/model.js';
import type { OutputSpec } from '../../pipeline/types.js';
import { ArchiveFile, writeArchive, writeArchiveFile } from '../archive.js';
import { checkFileOutput, fileOutputTemporaryDir, onePlatformOnly, writeFileOutput, writeIndexFile, type Artifact, type ArtifactShape, type Sink, type SinkContext, type StreamTarget } from '../sink.js';

type ArchiveOutput = Extract<OutputSpec, { type: 'oci' | 'docker' }>;

export class ArchiveSink implements Sink {
  readonly description: string;
  private stream: ArchiveFile | undefined;

  constructor(
    readonly output: ArchiveOutput,
    private readonly cwd: string,
    private readonly haveStdout: boolean,
  ) {
    this.description = `${output.type} archive`;
  }

  async check(_names: readonly string[], shape: ArtifactShape): Promise<void> {
    // An index goes out through imagetools create's writer: an OCI archive file.
    if (shape.kind === 'index' && (this.output.type !== 'oci' || this.output.dest === '-')) throw onePlatformOnly(`--output type=${this.output.type}${this.output.dest === '-' ? ',dest=-' : ''}`);
    await checkFileOutput(this.output, this.cwd, this.haveStdout, false);
  }

  temporaryDir(): string | undefined {
    return fileOutputTemporaryDir(this.output.dest, this.cwd);
  }

  /** Layers go into the archive as they are made, with no staging copy (docs/performance.md). */
  async openStream(mtime: number, recordDir: string | undefined): Promise<StreamTarget | undefined> {
    if (this.output.dest === '-') return undefined;
    this.stream = await ArchiveFile.create(path.resolve(this.cwd, this.output.dest), mtime, recordDir);
    return this.stream;
  }

  async write(artifact: Artifact, names: readonly string[], context: SinkContext): Promise<void> {
    const dest = this.output.dest === '-' ? '-' : path.resolve(context.cwd, this.output.dest);
    await writeFileOutput(this, dest, context, async () => {
      if (artifact.kind === 'index') {
        const written = await writeIndexFile(artifact, names, dest, true, context, context.recordDir);
        context.index ??= written;
        return { said: true };
      }
      if (dest === '-') {
        await writeArchive(artifact.image, context.stdout as Writable, context.mtime, names);
      } else if (this.stream) {
        return { unchanged: !(await this.stream.finish(await imageParts(artifact.image, 'the image'), names)) };
      } else {
        await writeArchiveFile(artifact.image, dest, context.mtime, names);
      }
      return { unchanged: false };
    });
  }

  async close(): Promise<void> {
    await this.stream?.abort();
  }
}
