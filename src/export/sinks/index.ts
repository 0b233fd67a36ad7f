/**
 * The sink for each output type (the interface is ../sink.ts). The file
 * sinks load with the build: a dynamic import cannot run while the start-up
 * snapshot is made (src/cli/snapshot.ts), and the warm-up build writes an
 * archive. The registry and engine sinks load only when asked for: the
 * registry client is a good part of start-up otherwise.
 */
import type { OutputSpec } from '../../pipeline/types.js';
import type { Sink } from '../sink.js';
import { ArchiveSink } from './archive.js';
import { LayoutSink } from './layout.js';
import { LocalSink } from './local.js';

export async function openSink(output: OutputSpec, context: { cwd: string; haveStdout: boolean }): Promise<Sink> {
  switch (output.type) {
    case 'registry':
      return new (await import('./registry.js')).RegistrySink(output);
    case 'load':
      return new (await import('./load.js')).LoadSink(output);
    case 'local':
      return new LocalSink(output, context.cwd);
    default:
      return output.tar === false ? new LayoutSink(output, context.cwd) : new ArchiveSink(output, context.cwd, context.haveStdout);
  }
}
