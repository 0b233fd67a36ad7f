/**
 * The registry transport of inspect and run (`docker://REF` or a bare
 * reference): the image is pulled with the build's pull code, which checks
 * every manifest and blob against its digest and keeps them in lapin's
 * cache, and is then read from there like any other source.
 */
import { LapinError } from '../errors.js';
import type { RegistryOptions } from '../registry/client.js';
import { namedImage } from '../image/model.js';
import { pulledImage } from '../registry/pulled-image.js';
import { hostArchitecture } from '../pipeline/platform.js';
import { SourceError } from './open.js';
import type { ImageSource } from './types.js';

export interface RegistrySourceOptions {
  /** Insecure hosts, credentials, retries, --debug, as for a build. */
  registry?: RegistryOptions;
  /** Default: lapin's cache directory ($LAPIN_CACHE_DIR, $XDG_CACHE_HOME/lapin, ~/.cache/lapin). */
  cacheDir?: string;
}


/**
 * Pulls REFERENCE for this machine's architecture (an index resolves to
 * os linux, or qemu for unikraft.org images) and opens it. A tag is asked
 * for again every time, so the verdict is on what the registry serves
 * now; blobs already in the cache are not fetched again.
 */
export async function openRegistrySource(name: string, reference: string, options: RegistrySourceOptions = {}): Promise<ImageSource> {
  const { pullImage, parsePullReference } = await import('../registry/pull.js');
  const architecture = hostArchitecture();
  try {
    const image = await pullImage(reference, {
      ...options.registry,
      policy: reference.includes('@') ? 'missing' : 'always',
      architecture,
      ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    });
    return namedImage(pulledImage(image), name, 'docker');
  } catch (error) {
    // Whatever stopped the pull (no such tag, no connection, a refused login, a bad digest), the image was not read: exit 2.
    if (error instanceof SourceError) throw error;
    const message = (error as Error).message;
    // Messages that name the image already ("HOST/NAME:TAG was not found...") need no prefix.
    let display: string | undefined;
    try {
      display = parsePullReference(reference).display;
    } catch {
      display = undefined;
    }
    const named = message.includes(reference) || (display !== undefined && message.includes(display));
    throw new SourceError(named ? message : `${name}: ${message}`, error instanceof LapinError ? error.hint : undefined);
  }
}
