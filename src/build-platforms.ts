/**
 * `lapin build --platform linux/amd64,linux/arm64`: the platform loop above
 * the single-platform build, as BuildKit's sits above its converter. Each
 * platform is built on its own (build(), unchanged) into a temporary OCI
 * layout; the index over them is then written to the outputs by
 * imagetools/create.ts. build.ts is not restructured for it (issue 13).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build, type BuildOptions, type BuildResult, type OutputSpec } from './build.js';
import { LapinError, UsageError } from './errors.js';
import { createIndex, type CreatedIndex } from './imagetools/create.js';
import { formatPlatform, parsePlatform } from './source/image-index.js';

export interface PlatformsBuildResult {
  /** The index's digest. */
  digest: string;
  /** Its descriptor, as buildx writes it in --metadata-file. */
  index: { mediaType: string; digest: string; size: number };
  platforms: string[];
  /** Each platform's build, in the order asked for. */
  builds: BuildResult[];
  outputs: Array<{ type: string; dest: string }>;
  names: string[];
}

/** "linux/amd64,linux/arm64" → ["linux/amd64", "linux/arm64"]; one platform gives one. */
export function splitPlatforms(text: string): string[] {
  const list = text.split(',').map((p) => p.trim());
  const seen = new Set<string>();
  for (const item of list) {
    const platform = parsePlatform(item);
    if (!platform || item === '') throw new UsageError(`--platform ${JSON.stringify(text)}: ${JSON.stringify(item)} is not OS/ARCH`, 'e.g. --platform linux/amd64,linux/arm64');
    const key = formatPlatform(platform);
    if (seen.has(key)) throw new UsageError(`--platform names ${key} twice`);
    seen.add(key);
  }
  return list;
}

/** Outputs an index can go to: archives, layouts and registries. */
function checkOutputs(outputs: readonly OutputSpec[]): void {
  if (outputs.length === 0) throw new UsageError('a build for several platforms needs an output', 'add --output type=oci,dest=PATH or --push');
  for (const output of outputs) {
    if (output.type === 'oci' && output.dest !== '-') continue;
    if (output.type === 'registry') continue;
    const what = output.type === 'load' ? `--load (${output.engine})` : `--output type=${output.type}${output.dest === '-' ? ',dest=-' : ''}`;
    throw new UsageError(`${what} takes one platform; a build for several writes an image index`, 'use --output type=oci,dest=PATH[,tar=false] or --push, or build one platform');
  }
}

const OWN_KERNEL: Record<BuildResult['syntax'], string> = {
  containerfile: 'ARG TARGETARCH, then COPY kernel-${TARGETARCH}',
  bunnyfile: 'kernel.path: kernel-${TARGETARCH}',
  nix: '{ TARGETARCH, ... }: { files = { "./kernel-${TARGETARCH}" = ...; }; }',
};

/**
 * A single build only warns when the kernel is for another architecture
 * (the file may know better); in an index that image would be served to
 * hosts it cannot boot on, so here it is an error.
 */
async function checkKernel(layout: string, platform: string, built: BuildResult): Promise<void> {
  const [{ openImageIndex }, { inspectSource }] = await Promise.all([import('./source/image-index.js'), import('./inspect/inspect.js')]);
  const index = await openImageIndex(`oci:${layout}`);
  const entry = index.entries[0];
  if (!entry) return;
  const source = await entry.open();
  try {
    const binary = (await inspectSource(source)).files.find((f) => f.key === 'binary');
    if (binary?.architecture && binary.architecture !== entry.platform.architecture) {
      throw new LapinError(`${built.kernelAt ? '' : `${built.file}: `}--platform ${platform}: the kernel ${binary.path} is built for ${binary.architecture}, not ${entry.platform.architecture}`, {
        ...(built.kernelAt ? { at: built.kernelAt } : {}),
        hint: `give each platform its own kernel, e.g. ${OWN_KERNEL[built.syntax]}`,
      });
    }
  } finally {
    await source.close();
  }
}

export async function buildPlatforms(options: BuildOptions & { platforms: readonly string[] }): Promise<PlatformsBuildResult> {
  const { platforms, ...single } = options;
  const outputs = options.outputs ?? [];
  checkOutputs(outputs);
  const cwd = options.cwd ?? process.cwd();
  const work = await mkdtemp(path.join(tmpdir(), 'lapin-platforms-'));
  try {
    const builds: BuildResult[] = [];
    const layouts: string[] = [];
    for (const [i, platform] of platforms.entries()) {
      options.onEvent?.({ kind: 'step', message: `building ${platform}` });
      const layout = path.join(work, String(i));
      const built = await build({ ...single, cwd, platform, outputs: [{ type: 'oci', dest: layout, tar: false }] });
      builds.push(built);
      await checkKernel(layout, platform, built);
      layouts.push(`oci:${layout}`);
    }
    const names = builds[0]?.names ?? options.tags ?? [];
    const written: Array<{ type: string; dest: string }> = [];
    let created: CreatedIndex | undefined;
    for (const output of outputs) {
      const onEvent = options.onEvent ? (event: { kind: 'step'; message: string } | { kind: 'progress'; id: string; message: string; done: number; total: number }) => options.onEvent?.(event) : undefined;
      if (output.type === 'registry') {
        const pushTo = output.names ?? names;
        if (pushTo.length === 0) throw new UsageError('--push needs a -t NAME');
        created = await createIndex({ tags: pushTo, sources: layouts, ...(options.registry ? { registry: options.registry } : {}), ...(onEvent ? { onEvent } : {}) });
        for (const name of pushTo) written.push({ type: 'registry', dest: name });
      } else if (output.type === 'oci') {
        const dest = path.resolve(cwd, output.dest);
        created = await createIndex({ tags: names, sources: layouts, output: { type: 'oci', dest, tar: output.tar !== false }, ...(onEvent ? { onEvent } : {}) });
        written.push({ type: 'oci', dest });
      }
    }
    if (!created) throw new UsageError('a build for several platforms needs an output');
    return { digest: created.digest, index: { mediaType: created.mediaType, digest: created.digest, size: created.bytes.length }, platforms: created.platforms, builds, outputs: written, names };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** --metadata-file for an index: buildx's keys, with the index's digest and descriptor. */
export async function writePlatformsMetadataFile(file: string, result: PlatformsBuildResult): Promise<void> {
  const document = {
    'containerimage.digest': result.digest,
    'containerimage.descriptor': result.index,
    'image.name': result.names.join(','),
  };
  await writeFile(file, `${JSON.stringify(document, null, 2)}\n`);
}
