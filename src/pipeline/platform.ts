/**
 * Platforms: the one table of what lapin builds for, docker's --platform
 * syntax, and the host's platform. Everything that names a platform reads
 * it from here (source/image-index.ts, source/open.ts, registry/base.ts
 * re-export or import it). No I/O.
 */
import { UsageError } from '../errors.js';
import type { Architecture } from '../plan/types.js';

/** The platforms `lapin build --platform` takes, by the architecture they build. */
export const BUILD_PLATFORMS: Readonly<Record<string, Architecture>> = { 'linux/amd64': 'amd64', 'linux/arm64': 'arm64', 'linux/arm64/v8': 'arm64' };

/** Node's process.arch → the OCI architecture name. */
export const HOST_ARCHITECTURE: Readonly<Record<string, string>> = { x64: 'amd64', arm64: 'arm64' };

/** The host's OCI architecture (amd64, arm64; Node's name for others). */
export function hostArchitecture(): string {
  return HOST_ARCHITECTURE[process.arch] ?? process.arch;
}

/** The host's architecture among those lapin builds; amd64 elsewhere. */
export function hostBuildArchitecture(): Architecture {
  return process.arch === 'arm64' ? 'arm64' : 'amd64';
}

/** An OCI platform as an index descriptor or an image config states it. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** "linux/arm64/v8". */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, ...(platform.variant ? [platform.variant] : [])].join('/');
}

/** "linux/arm64", "linux/arm64/v8", "arm64" (os linux): the --platform syntax of docker; case does not matter (containerd lowercases it too). */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.trim().toLowerCase().split('/');
  if (parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) return undefined;
  if (parts.length === 1) return { os: 'linux', architecture: normalizeArchitecture(parts[0] as string) };
  if (parts.length > 3) return undefined;
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return { os, architecture: normalizeArchitecture(architecture), ...(variant ? { variant } : {}) };
}

function normalizeArchitecture(architecture: string): string {
  const aliases: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64' };
  return aliases[architecture] ?? architecture;
}

/** An entry's variant as containerd normalizes it: arm64 is v8, arm v7 and amd64 v1 unless they say otherwise. */
function variantOf(p: Platform): string | undefined {
  const implied: Record<string, string> = { arm64: 'v8', arm: 'v7', amd64: 'v1' };
  return p.variant ?? implied[p.architecture];
}

/** Whether an entry's platform is the one asked for; arm64 without a variant is arm64/v8 (arm: v7, amd64: v1). */
export function samePlatform(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && variantOf(a) === variantOf(b);
}

/**
 * The entry for WANTED: its own platform, else (amd64/vN only) the highest amd64 level below
 * it, as containerd's matcher picks: an amd64/v3 machine runs v2 and v1 images.
 */
export function pickPlatform<T extends { platform: Platform }>(entries: readonly T[], wanted: Platform): T | undefined {
  const exact = entries.find((e) => samePlatform(e.platform, wanted));
  if (exact || wanted.architecture !== 'amd64') return exact;
  const level = (p: Platform): number => Number(/^v([1-4])$/.exec(variantOf(p) ?? '')?.[1] ?? NaN);
  const below = entries.filter((e) => e.platform.os === wanted.os && e.platform.architecture === 'amd64' && level(e.platform) < level(wanted));
  return below.sort((x, y) => level(y.platform) - level(x.platform))[0];
}

/** The architecture a --platform value builds, or undefined when lapin does not build it. */
export function buildArchitecture(platform: string): Architecture | undefined {
  return BUILD_PLATFORMS[platform];
}

/** What to say when a platform is not in the table. */
export const BUILD_PLATFORMS_HINT = `use ${Object.keys(BUILD_PLATFORMS).slice(0, 2).join(' or ')}`;

/**
 * The architecture a --platform value builds; a platform lapin does not build
 * is refused before the file is compiled, since ${TARGETARCH} would put its
 * text into paths and image references.
 */
export function checkBuildPlatform(platform: string): Architecture {
  const architecture = buildArchitecture(platform);
  if (!architecture) throw new UsageError(`unsupported platform ${platform}`, BUILD_PLATFORMS_HINT);
  return architecture;
}

/** A list of --platform values for an index: each one lapin builds, none twice (linux/arm64/v8 is linux/arm64). */
export function checkPlatformList(list: readonly string[], given: string = list.join(',')): void {
  if (list.length === 0) throw new UsageError('an index build needs at least one platform', 'e.g. --platform linux/amd64,linux/arm64');
  const seen = new Map<Architecture, string>();
  for (const item of list) {
    const platform = parsePlatform(item);
    if (!platform || item === '') throw new UsageError(`--platform ${JSON.stringify(given)}: ${JSON.stringify(item)} is not OS/ARCH`, 'e.g. --platform linux/amd64,linux/arm64');
    const architecture = checkBuildPlatform(item);
    const earlier = seen.get(architecture);
    if (earlier !== undefined) throw new UsageError(earlier === item ? `--platform names ${formatPlatform(platform)} twice` : `--platform names linux/${architecture} twice (${earlier} and ${item})`);
    seen.set(architecture, item);
  }
}

/** --platform "linux/amd64,linux/arm64" → ["linux/amd64", "linux/arm64"], checked; one platform gives one. */
export function splitPlatforms(text: string): string[] {
  const list = text.split(',').map((p) => p.trim());
  checkPlatformList(list, text);
  return list;
}
