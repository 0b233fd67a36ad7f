/**
 * The registry transport of inspect and run (`docker://REF` or a bare
 * reference): the image is pulled with the build's pull code, which checks
 * every manifest and blob against its digest and keeps them in lapin's
 * cache, and is then read from there like any other source.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { LapinError } from '../errors.js';
import type { RegistryOptions } from '../registry/client.js';
import type { PulledImage } from '../registry/pull.js';
import { hostArchitecture } from '../pipeline/platform.js';
import { SourceError } from './open.js';
import type { ImageSource, SourceDescriptor, SourceImageConfig, SourceManifest } from './types.js';

export interface RegistrySourceOptions {
  /** Insecure hosts, credentials, retries, --debug, as for a build. */
  registry?: RegistryOptions;
  /** Default: lapin's cache directory ($LAPIN_CACHE_DIR, $XDG_CACHE_HOME/lapin, ~/.cache/lapin). */
  cacheDir?: string;
}


class RegistrySource implements ImageSource {
  readonly transport = 'docker' as const;
  constructor(
    readonly name: string,
    private readonly image: PulledImage,
  ) {}

  async manifest(): Promise<{ manifest: SourceManifest; digest: string }> {
    const { image } = this;
    const descriptor = (d: SourceDescriptor): SourceDescriptor => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.annotations ? { annotations: d.annotations } : {}) });
    return {
      manifest: {
        schemaVersion: 2,
        config: descriptor(image.configDescriptor),
        layers: image.layers.map(descriptor),
        ...(Object.keys(image.manifestAnnotations).length > 0 ? { annotations: image.manifestAnnotations } : {}),
      },
      digest: image.manifestDigest,
    };
  }

  async config(): Promise<{ config: SourceImageConfig; digest: string }> {
    return { config: this.image.config, digest: this.image.configDescriptor.digest };
  }

  async blob(descriptor: SourceDescriptor): Promise<Readable> {
    // Every layer was checked against its digest when it entered the cache.
    const layer = this.image.layers.find((l) => l.digest === descriptor.digest);
    if (!layer) throw new SourceError(`${this.name}: the image has no layer ${descriptor.digest}`);
    return createReadStream(layer.file);
  }

  async close(): Promise<void> {}
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
    return new RegistrySource(name, image);
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
