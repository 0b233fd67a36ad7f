/**
 * Platforms: the one table of what lapin builds for, docker's --platform
 * syntax, and the host's platform. Everything that names a platform reads
 * it from here (source/image-index.ts, source/open.ts, registry/base.ts
 * re-export or import it). No I/O.
 */
import { UsageError } from '../errors.js';
import type { Architecture } from '../plan/types.js';

/** The platforms lapin builds (as normalized: linux/arm64/v8 is linux/arm64), by the architecture they build. */
export const BUILD_PLATFORMS: Readonly<Record<string, Architecture>> = { 'linux/amd64': 'amd64', 'linux/arm64': 'arm64' };

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

/** The operating systems and architectures Go knows (containerd's platforms/database.go): a lone word is one or the other. */
const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'windows', 'zos']);
const KNOWN_ARCHITECTURES = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);

/** containerd's normalization of an architecture and its variant: x86_64 is amd64 (v1 is no variant), aarch64 is arm64 (v8 is none), arm is arm/v7. */
export function normalizeArchitecture(architecture: string, variant: string): [string, string] {
  const arch = architecture.toLowerCase();
  const v = variant.toLowerCase();
  switch (arch) {
    case 'i386':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', v === 'v1' ? '' : v];
    case 'aarch64':
    case 'arm64':
      if (v === '8' || v === 'v8' || v === 'v8.0') return ['arm64', ''];
      if (v === '9' || v === '9.0' || v === 'v9.0') return ['arm64', 'v9'];
      return ['arm64', v];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (v === '' || v === '7') return ['arm', 'v7'];
      if (v === '5' || v === '6' || v === '8') return ['arm', `v${v}`];
      return ['arm', v];
    default:
      return [arch, v];
  }
}

/** A platform as containerd's platforms.Normalize leaves it: lower case, macos is darwin, the architecture and variant as above. */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase();
  const [architecture, variant] = normalizeArchitecture(platform.architecture, platform.variant ?? '');
  return { os: os === 'macos' ? 'darwin' : os, architecture, ...(variant ? { variant } : {}) };
}

/** The platform of this machine, as buildx's `local` and a lone OS name take it. */
function hostPlatform(os = 'linux'): Platform {
  return normalizePlatform({ os, architecture: hostArchitecture() });
}

/**
 * A --platform value as docker buildx reads it (containerd's platforms.Parse,
 * then Normalize): `OS/ARCH[/VARIANT]`, a lone architecture (`arm64`,
 * `aarch64`, `x86_64`: OS linux), a lone OS (`linux`: this machine's
 * architecture) or `local` (this machine); any case. Undefined when it is
 * none of these. Platforms read from images go through normalizePlatform.
 */
export function parsePlatform(text: string): Platform | undefined {
  const trimmed = text.trim();
  if (trimmed.toLowerCase() === 'local') return hostPlatform();
  const parts = trimmed.split('/');
  // containerd takes an OS version in parentheses after the OS (Windows'); lapin builds and boots Linux, so no.
  if (parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p)) || /\./.test(parts[0] as string)) return undefined;
  if (parts.length === 1) {
    const word = (parts[0] as string).toLowerCase();
    if (KNOWN_OS.has(word === 'macos' ? 'darwin' : word)) return hostPlatform(word);
    const alone = normalizePlatform({ os: 'linux', architecture: word });
    return KNOWN_ARCHITECTURES.has(alone.architecture) ? alone : undefined;
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return normalizePlatform({ os, architecture, ...(variant !== undefined ? { variant } : {}) });
}

/** Whether two platforms are one once normalized: arm64 and arm64/v8, amd64 and amd64/v1, arm and arm/v7, aarch64 and arm64. */
export function samePlatform(a: Platform, b: Platform): boolean {
  return formatPlatform(normalizePlatform(a)) === formatPlatform(normalizePlatform(b));
}

/**
 * The entry for WANTED: its own platform, else (amd64/vN only) the highest amd64 level below
 * it, as containerd's matcher picks: an amd64/v3 machine runs v2 and v1 images.
 */
export function pickPlatform<T extends { platform: Platform }>(entries: readonly T[], wanted: Platform): T | undefined {
  const exact = entries.find((e) => samePlatform(e.platform, wanted));
  const want = normalizePlatform(wanted);
  if (exact || want.architecture !== 'amd64') return exact;
  const level = (p: Platform): number => Number(/^v([1-4])$/.exec(normalizePlatform(p).variant ?? 'v1')?.[1] ?? NaN);
  const below = entries.filter((e) => normalizePlatform(e.platform).os === want.os && normalizePlatform(e.platform).architecture === 'amd64' && level(e.platform) < level(want));
  return below.sort((x, y) => level(y.platform) - level(x.platform))[0];
}

/** The architecture a --platform value builds (in any form buildx takes: `aarch64`, `LINUX/X86_64`), or undefined when lapin does not build it. */
export function buildArchitecture(platform: string): Architecture | undefined {
  const parsed = parsePlatform(platform);
  return parsed === undefined ? undefined : BUILD_PLATFORMS[formatPlatform(parsed)];
}

/** What to say when a platform is not in the table. */
export const BUILD_PLATFORMS_HINT = `lapin builds ${Object.keys(BUILD_PLATFORMS).join(' and ')}, in any form buildx takes: amd64, x86_64, arm64, aarch64, linux/arm64/v8, local`;

/**
 * The platform a --platform value builds, as buildx normalizes it
 * ("aarch64" → "linux/arm64"); a platform lapin does not build is refused
 * before the file is compiled, since ${TARGETARCH} would put its text into
 * paths and image references.
 */
export function checkBuildPlatform(platform: string): string {
  const parsed = parsePlatform(platform);
  const normalized = parsed === undefined ? undefined : formatPlatform(parsed);
  if (normalized === undefined || BUILD_PLATFORMS[normalized] === undefined) throw new UsageError(`unsupported platform ${/^[\w./-]+$/.test(platform) ? platform : JSON.stringify(platform)}`, BUILD_PLATFORMS_HINT);
  return normalized;
}

/** A list of --platform values for an index, normalized: each one lapin builds, none twice (linux/arm64/v8 and aarch64 are linux/arm64). */
export function checkPlatformList(list: readonly string[], given: string = list.join(',')): string[] {
  if (list.length === 0) throw new UsageError('an index build needs at least one platform', 'e.g. --platform linux/amd64,linux/arm64');
  const seen = new Map<string, string>();
  for (const item of list) {
    if (item.trim() === '') throw new UsageError(`--platform ${JSON.stringify(given)}: ${JSON.stringify(item)} is not OS/ARCH`, 'e.g. --platform linux/amd64,linux/arm64');
    const platform = checkBuildPlatform(item);
    const earlier = seen.get(platform);
    if (earlier !== undefined) throw new UsageError(earlier === item ? `--platform names ${platform} twice` : `--platform names ${platform} twice (${earlier} and ${item})`);
    seen.set(platform, item);
  }
  return [...seen.keys()];
}

/** --platform "linux/amd64,aarch64" → ["linux/amd64", "linux/arm64"], checked and normalized; one platform gives one. */
export function splitPlatforms(text: string): string[] {
  return checkPlatformList(text.split(',').map((p) => p.trim()), text);
}
