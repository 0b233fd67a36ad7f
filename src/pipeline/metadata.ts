/** --metadata-file: buildx's keys for what was built. */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { LapinError } from '../errors.js';
import { describeWritten, reasonOf } from '../export/sink.js';
import { writeFileAtomically } from '../temporaries.js';
import type { BuildResult, IndexBuildResult } from './types.js';

/**
 * Before the build: a metadata file whose directory is missing would fail
 * only after the image was written, so it is refused first (as an output is).
 */
export async function checkMetadataFile(file: string): Promise<void> {
  const dest = path.resolve(file);
  const parent = await stat(path.dirname(dest)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new LapinError(`cannot write the metadata file ${file}: ${path.dirname(dest)} ${parent ? 'is not a directory' : 'does not exist'}`, { hint: 'create it first' });
  if ((await stat(dest).catch(() => undefined))?.isDirectory()) throw new LapinError(`cannot write the metadata file ${file}: it is a directory`, { hint: 'name a file, e.g. --metadata-file meta.json' });
}

/**
 * Writes buildx-style build metadata (through a flushed temporary and a
 * rename). For an index, buildx writes the index's digest and descriptor
 * and no config digest.
 */
export async function writeMetadataFile(file: string, result: BuildResult | IndexBuildResult): Promise<void> {
  const document =
    'index' in result
      ? {
          'containerimage.digest': result.digest,
          'containerimage.descriptor': result.index,
          'image.name': result.names.join(','),
        }
      : {
          'containerimage.digest': result.digest,
          'containerimage.config.digest': result.configDigest,
          'containerimage.descriptor': { ...result.manifest, platform: result.platform },
          'image.name': result.names.join(','),
        };
  try {
    await writeFileAtomically(path.resolve(file), `${JSON.stringify(document, null, 2)}\n`);
  } catch (error) {
    const done = result.outputs.map((o) => describeWritten(o)).join(', ');
    throw new LapinError(`cannot write the metadata file ${file} (${reasonOf(error)}); the image${'index' in result ? ' index' : ''} itself is complete${done ? `: ${done}` : ''}`, {
      hint: 'fix the metadata path or free space, and build again to write it',
    });
  }
}
