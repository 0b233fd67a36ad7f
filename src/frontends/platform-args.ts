/**
 * BuildKit's automatic platform args (TARGETPLATFORM, TARGETOS, TARGETARCH,
 * TARGETVARIANT and the BUILD* four), computed as moby/buildkit's
 * dockerfile2llb does: the platforms are normalized as containerd's
 * `platforms.Parse` normalizes them (`linux/aarch64` and `linux/arm64/v8`
 * are `linux/arm64`), and a `--build-arg` of the same name overrides one
 * value alone. The platforms are inputs: a frontend never asks the machine.
 */
import { normalizeArchitecture } from '../pipeline/platform.js';

export const TARGET_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'] as const;
export const BUILD_ARGS = ['BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT'] as const;
export type TargetArg = (typeof TARGET_ARGS)[number];
export const PLATFORM_ARG_NAMES: ReadonlySet<string> = new Set([...TARGET_ARGS, ...BUILD_ARGS]);

/** lapin's platform when neither the target nor the build platform is given. */
export const DEFAULT_PLATFORM = 'linux/amd64';

export interface PlatformInputs {
  /** `--platform`: the platform of the image. Defaults to `buildPlatform`, as in BuildKit. */
  platform?: string;
  /** The platform of the machine building (BuildKit's worker). Defaults to `platform`, then linux/amd64. */
  buildPlatform?: string;
}

export interface NormalizedPlatform {
  os: string;
  architecture: string;
  variant: string;
}

/** `OS/ARCH[/VARIANT]` (or a bare `ARCH`, on linux) normalized; undefined when it is not that shape. */
export function normalizePlatform(text: string): NormalizedPlatform | undefined {
  const parts = text.toLowerCase().split('/');
  if (parts.length > 3 || parts.some((part) => !/^[a-z0-9._-]+$/.test(part))) return undefined;
  const [os, arch, variant] = parts.length === 1 ? ['linux', parts[0] ?? '', ''] : [parts[0] ?? '', parts[1] ?? '', parts[2] ?? ''];
  const [architecture, normalizedVariant] = normalizeArchitecture(arch, variant);
  return { os: os === 'macos' ? 'darwin' : os, architecture, variant: normalizedVariant };
}

/** containerd's `platforms.Format`: the parts joined by "/", an empty variant left out. */
export function formatNormalized(platform: NormalizedPlatform): string {
  return [platform.os, platform.architecture, platform.variant].filter((part) => part !== '').join('/');
}

/** A platform that does not parse is split as written: the build refuses it later, with the platforms it takes. */
function parseInput(text: string): NormalizedPlatform {
  const platform = normalizePlatform(text);
  if (platform !== undefined) return platform;
  const parts = text.split('/');
  const [os, architecture, variant] = parts.length === 1 ? ['linux', parts[0], ''] : parts;
  return { os: os ?? '', architecture: architecture ?? '', variant: variant ?? '' };
}

/** The target platform and the build platform, each defaulting to the other as BuildKit's buildPlatformOpt does. */
export function resolvePlatforms(inputs: PlatformInputs): { target: NormalizedPlatform; build: NormalizedPlatform } {
  const build = parseInput(inputs.buildPlatform ?? inputs.platform ?? DEFAULT_PLATFORM);
  const target = inputs.platform === undefined ? build : parseInput(inputs.platform);
  return { target, build };
}

/**
 * The eight values, as BuildKit's defaultArgs sets them: each from its
 * platform, then replaced by a `--build-arg` of that name if one is given.
 */
export function platformArgs(inputs: PlatformInputs, overrides: Readonly<Record<string, string>> = {}): Map<string, string> {
  const { target, build } = resolvePlatforms(inputs);
  const values = new Map<string, string>();
  for (const [prefix, platform] of [['BUILD', build], ['TARGET', target]] as const) {
    values.set(`${prefix}PLATFORM`, formatNormalized(platform));
    values.set(`${prefix}OS`, platform.os);
    values.set(`${prefix}ARCH`, platform.architecture);
    values.set(`${prefix}VARIANT`, platform.variant);
  }
  for (const name of PLATFORM_ARG_NAMES) {
    if (Object.hasOwn(overrides, name)) values.set(name, overrides[name] as string);
  }
  return values;
}
