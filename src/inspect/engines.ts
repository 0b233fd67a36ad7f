/**
 * What each engine hands urunc, and what each urunc release line does with
 * it (../shared/reference/urunc-images.md §1, measured with a recording
 * runtime): docker, ctr/nerdctl and the Kubernetes CRI put no image
 * annotations in the OCI spec; podman copies the manifest annotations as
 * text; urunc 0.8's containerd shim fills the spec from the image's manifest
 * annotations, then its config labels, for images in containerd's store.
 */
import { decodesSpecAnnotations, releaseName, shimReadsImageMetadata, URUNC_RELEASES, type UruncRelease } from '../plan/releases.js';

export type EngineName = 'docker' | 'containerd' | 'cri' | 'podman';

export const ENGINES: readonly EngineName[] = ['docker', 'containerd', 'cri', 'podman'];

/**
 * Where urunc takes its values on one engine path:
 * - `spec-annotations`: values the engine itself put in the OCI spec (podman's copy of the manifest annotations);
 * - `image-metadata`: urunc 0.8's shim lookup in containerd's image store (manifest annotations, then config labels);
 * - `uruncJson`: /urunc.json in the rootfs;
 * - `none`: nowhere it can use.
 */
export type EngineValueSource = 'spec-annotations' | 'image-metadata' | 'uruncJson' | 'none';

export interface EngineVerdict {
  engine: EngineName;
  release: UruncRelease;
  source: EngineValueSource;
  /** urunc boots the image on this path (given `command` when there is one). */
  runs: boolean;
  /** Why it does not run; empty when it runs. */
  reasons: string[];
  /** docker, nerdctl and podman, when the image has neither Cmd nor Entrypoint: the argv to type (IMAGE = the image's name). */
  command?: string[];
}

/** `report.urunc` of `lapin inspect --json`. */
export interface UruncEngineReport {
  /** The release the verdict and exit code are for (`--urunc-version`). */
  release: UruncRelease;
  /** Every engine for every release line, engines in ENGINES order within each release, oldest release first. */
  engines: EngineVerdict[];
}

/** The three keys urunc needs before it takes a set of values. */
export const REQUIRED_KEYS = ['unikernelType', 'hypervisor', 'binary'] as const;

/** The fields of urunc < 0.7's UnikernelConfig, the ones it base64-decodes from the spec. */
const PRE_07_SPEC_KEYS = ['unikernelType', 'unikernelVersion', 'cmdline', 'binary', 'hypervisor', 'initrd', 'block', 'blkMntPoint', 'useDMBlock'] as const;
/** urunc < 0.7 takes the spec's values when any of these is non-empty (useDMBlock does not count). */
const PRE_07_PRESENCE_KEYS = PRE_07_SPEC_KEYS.filter((k) => k !== 'useDMBlock');

export function hasRequired(values: Readonly<Record<string, string>>): boolean {
  return REQUIRED_KEYS.every((key) => (values[key] ?? '') !== '');
}

export function missingRequired(values: Readonly<Record<string, string>>): string[] {
  return REQUIRED_KEYS.filter((key) => (values[key] ?? '') === '');
}

/** Go's base64.StdEncoding.DecodeString: padded, standard alphabet; CR and LF are skipped. */
export function goBase64(text: string): string | undefined {
  const cleaned = text.replace(/[\r\n]/g, '');
  if (cleaned.length % 4 !== 0 || !/^[A-Za-z0-9+/]*(={0,2})$/.test(cleaned)) return undefined;
  if (/=[^=]/.test(cleaned)) return undefined;
  return Buffer.from(cleaned, 'base64').toString('utf8');
}

export interface EngineInputs {
  /** Short key → value of the manifest's com.urunc.unikernel.* annotations. */
  annotations: Readonly<Record<string, string>>;
  /** Short key → value of the config's com.urunc.unikernel.* labels. */
  labels: Readonly<Record<string, string>>;
  /** /urunc.json, decoded; `problems` are why urunc cannot use it. */
  uruncJson: { found: boolean; values: Readonly<Record<string, string>>; problems: readonly string[] };
  /** Entrypoint + Cmd of the image config. */
  processArgs: readonly string[];
  /** What to put for IMAGE in a `command`. */
  imageName: string;
  /**
   * urunc's refusals of a value set on one release (rules, files in the
   * rootfs, the command line); empty when it boots.
   */
  refusals(values: Readonly<Record<string, string>>, release: UruncRelease, source: Exclude<EngineValueSource, 'none'>): string[];
}

/** The argv a user types on `engine` for an image with neither Cmd nor Entrypoint (urunc's docs: `IMAGE unikernel`). */
export function commandFor(engine: EngineName, imageName: string): string[] | undefined {
  if (engine === 'docker') return ['docker', 'run', '--runtime', 'io.containerd.urunc.v2', imageName, 'unikernel'];
  if (engine === 'containerd') return ['nerdctl', 'run', '--runtime', 'io.containerd.urunc.v2', imageName, 'unikernel'];
  // podman refuses it too ("no command or entrypoint provided"); urunc is its runtime by name (containers.conf) or path.
  if (engine === 'podman') return ['podman', 'run', '--runtime', 'urunc', imageName, 'unikernel'];
  return undefined;
}

/** What urunc finds and does on every engine path, for every release line. */
export function engineVerdicts(inputs: EngineInputs): EngineVerdict[] {
  const verdicts: EngineVerdict[] = [];
  for (const release of URUNC_RELEASES) {
    for (const engine of ENGINES) verdicts.push(resolveEngine(inputs, engine, release).verdict);
  }
  return verdicts;
}

export function engineVerdict(inputs: EngineInputs, engine: EngineName, release: UruncRelease): EngineVerdict {
  return resolveEngine(inputs, engine, release).verdict;
}

/** An engine path's verdict and the values urunc takes on it (empty when `source` is none). */
export interface ResolvedEngine {
  verdict: EngineVerdict;
  values: Record<string, string>;
}

export function resolveEngine(inputs: EngineInputs, engine: EngineName, release: UruncRelease): ResolvedEngine {
  const command = inputs.processArgs.length === 0 ? commandFor(engine, inputs.imageName) : undefined;
  const done = (source: EngineValueSource, values: Record<string, string>, reasons: string[]): ResolvedEngine => ({
    verdict: { engine, release, source, runs: reasons.length === 0, reasons, ...(command ? { command } : {}) },
    values,
  });
  const judged = (source: Exclude<EngineValueSource, 'none'>, values: Record<string, string>): ResolvedEngine =>
    done(source, values, inputs.refusals(values, release, source));

  // 1. What the engine put in the spec: podman copies the manifest annotations as text.
  const spec: Readonly<Record<string, string>> = engine === 'podman' ? inputs.annotations : {};
  if (decodesSpecAnnotations(release)) {
    if (PRE_07_PRESENCE_KEYS.some((key) => (spec[key] ?? '') !== '')) {
      const decoded: Record<string, string> = {};
      for (const key of PRE_07_SPEC_KEYS) {
        const value = spec[key] ?? '';
        const plain = goBase64(value);
        if (plain === undefined) {
          return done('spec-annotations', {}, [
            `${releaseName(release)} base64-decodes the spec annotations podman copies from the manifest; com.urunc.unikernel.${key} ${JSON.stringify(value)} is not base64, so urunc runs the container with runc`,
          ]);
        }
        if (plain !== '') decoded[key] = plain;
      }
      return judged('spec-annotations', decoded);
    }
  } else if (hasRequired(spec)) {
    return judged('spec-annotations', { ...spec });
  }

  // 2. urunc 0.8's shim: manifest annotations, then config labels, for images in containerd's store.
  if (shimReadsImageMetadata(release) && (engine === 'containerd' || engine === 'cri')) {
    const merged: Record<string, string> = {};
    for (const [key, value] of Object.entries(inputs.labels)) if (value !== '') merged[key] = value;
    for (const [key, value] of Object.entries(inputs.annotations)) if (value !== '') merged[key] = value;
    if (hasRequired(merged)) return judged('image-metadata', merged);
  }

  // 3. /urunc.json.
  const json = inputs.uruncJson;
  if (!json.found) return done('none', {}, [noValuesReason(engine, release, inputs)]);
  if (json.problems.length > 0) return done('none', {}, [...json.problems]);
  if (!hasRequired(json.values)) return done('none', {}, [`/urunc.json lacks ${missingRequired(json.values).join(', ')}`]);
  return judged('uruncJson', { ...json.values });
}

/** Why a path finds nothing at all, naming what the image has that this path does not read. */
function noValuesReason(engine: EngineName, release: UruncRelease, inputs: EngineInputs): string {
  const hasAnnotations = Object.keys(inputs.annotations).length > 0;
  const hasLabels = Object.keys(inputs.labels).length > 0;
  const parts = ['the image has no /urunc.json'];
  if (engine === 'podman' && hasAnnotations) parts.push(`podman copies the manifest annotations, which lack ${missingRequired(inputs.annotations).join(', ')}`);
  if ((engine === 'containerd' || engine === 'cri') && (hasAnnotations || hasLabels)) {
    parts.push(shimReadsImageMetadata(release)
      ? 'the manifest annotations and config labels together lack ' + missingRequired({ ...inputs.labels, ...inputs.annotations }).join(', ')
      : `${releaseName(release)} has no shim lookup of the image's annotations or labels (urunc 0.8 has)`);
  }
  if (engine === 'docker' && (hasAnnotations || hasLabels)) parts.push('docker passes neither the image annotations nor its labels to the runtime');
  if (engine === 'podman' && hasLabels && !hasAnnotations) parts.push('podman does not copy config labels into the spec');
  return parts.join('; ');
}
