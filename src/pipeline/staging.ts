/**
 * The build's temporary directory (pulled data, rootfs images, the blob
 * store when blobs are not streamed), made after the outputs are checked;
 * temporaries of killed builds are swept first.
 */
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { trackTemporary, untrackTemporary } from '../export/atomic.js';
import type { Sink } from '../export/sink.js';
import { LayerCache } from '../image/layer-cache.js';
import { makeDirectories } from '../mkdirp.js';
import { blockCacheDir } from '../rootfs/block-cache.js';
import { sweepStaleTemporaries, temporaryName } from '../temporaries.js';
import type { BuildSettings } from './options.js';

export interface Staging {
  dir: string;
  remove(): Promise<void>;
}

export async function openStaging(sinks: readonly Sink[], settings: BuildSettings): Promise<Staging> {
  // Temporaries left by builds killed with SIGKILL (or a power loss): their owners are gone.
  await sweepStaleTemporaries(temporaryDirs(sinks, settings));
  const dir = path.join(os.tmpdir(), temporaryName('lapin-'));
  trackTemporary(dir);
  const remove = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    untrackTemporary(dir);
  };
  try {
    await makeDirectories(dir);
  } catch (error) {
    await remove();
    throw error;
  }
  return { dir, remove };
}

/** Where this build's temporaries (and those of killed builds before it) live. */
function temporaryDirs(sinks: readonly Sink[], settings: BuildSettings): string[] {
  const dirs = [os.tmpdir()];
  if (settings.cacheDir !== undefined) {
    const cache = new LayerCache(settings.cacheDir);
    dirs.push(path.join(cache.blobs.dir, 'sha256'), ...cache.recordDirs(), blockCacheDir(settings.cacheDir));
  }
  for (const sink of sinks) {
    const dir = sink.temporaryDir?.();
    if (dir !== undefined) dirs.push(dir);
  }
  return dirs;
}
