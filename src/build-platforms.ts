/**
 * `lapin build --platform linux/amd64,linux/arm64`: kept for its callers;
 * the platform loop and the index are build()'s own now (build.ts with
 * `platforms`: per platform compile, pull, assemble and write into one
 * store, then the index to the sinks).
 */
import { build, writeMetadataFile, type BuildOptions, type IndexBuildResult } from './build.js';
import { checkPlatformList } from './pipeline/platform.js';

export type PlatformsBuildResult = IndexBuildResult;

/** "linux/amd64,linux/arm64" → ["linux/amd64", "linux/arm64"]; one platform gives one. */
export function splitPlatforms(text: string): string[] {
  const list = text.split(',').map((p) => p.trim());
  checkPlatformList(list, text);
  return list;
}

export async function buildPlatforms(options: BuildOptions & { platforms: readonly string[] }): Promise<PlatformsBuildResult> {
  return build(options);
}

/** --metadata-file for an index: buildx's keys, with the index's digest and descriptor. */
export async function writePlatformsMetadataFile(file: string, result: PlatformsBuildResult): Promise<void> {
  await writeMetadataFile(file, result);
}
