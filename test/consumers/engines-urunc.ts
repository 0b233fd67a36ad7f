// urunc's own lookup of its values, release line by release line, applied to
// what an engine really handed the runtime (a recording) and, for urunc
// 0.8's shim, to the image in containerd's store. Written for the engine
// tests from urunc's source (pkg/unikontainers/config.go of v0.5.0 and main
// as of mid 2025: GetUnikernelConfig, decode) and, for 0.7 and 0.8, from
// ../shared/reference/urunc-images.md §1; it is kept apart from lapin's own
// model (src/inspect) so the tests compare two independent readings.
import type { Recording, StoredImage } from './engines-harness.js';
import { shortKeys, uruncAnnotations } from './engines-harness.js';

export type UruncRelease = 'pre-0.7' | '0.7' | '0.8';
export type EngineName = 'docker' | 'containerd' | 'cri' | 'podman';
export type ValueSource = 'spec-annotations' | 'image-metadata' | 'uruncJson' | 'none';

export const RELEASES: readonly UruncRelease[] = ['pre-0.7', '0.7', '0.8'];

export interface UruncOutcome {
  source: ValueSource;
  /** urunc boots a unikernel (false: it fails, or hands the container to runc). */
  runs: boolean;
  /** The values it took, by short key. */
  values: Record<string, string>;
  why: string;
}

export interface LookupInputs {
  recording: Recording;
  /**
   * The image as containerd's store has it, for engines whose containers
   * containerd runs (what urunc 0.8's shim looks up); undefined when the
   * store has no image for the container (docker) or for podman.
   */
  stored?: StoredImage;
}

// UnikernelConfig's fields in urunc < 0.7; any of the first eight non-empty
// makes it take the spec (useDMBlock does not count).
const PRE_07_FIELDS = ['unikernelType', 'unikernelVersion', 'cmdline', 'binary', 'hypervisor', 'initrd', 'block', 'blkMntPoint', 'useDMBlock'];
const PRE_07_PRESENCE = PRE_07_FIELDS.slice(0, 8);
const REQUIRED = ['unikernelType', 'hypervisor', 'binary'];

const MONITOR_GUESTS: Record<string, readonly string[]> = {
  hvt: ['rumprun', 'mirage'],
  spt: ['rumprun', 'mirage'],
  qemu: ['unikraft', 'mirage', 'mewz', 'linux', 'hermit'],
  firecracker: ['unikraft', 'linux'],
  'cloud-hypervisor': ['linux'],
  'hyperlight-unikraft': ['unikraft'],
};

/** Go's base64.StdEncoding.DecodeString: padded standard alphabet, CR/LF skipped; undefined on error. */
export function goStdBase64(text: string): string | undefined {
  const cleaned = text.replace(/[\r\n]/g, '');
  if (cleaned.length % 4 !== 0 || !/^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(cleaned)) return undefined;
  return Buffer.from(cleaned, 'base64').toString('latin1');
}

function hasRequired(values: Readonly<Record<string, string>>): boolean {
  return REQUIRED.every((key) => (values[key] ?? '') !== '');
}

/** Whether urunc boots the values it took: required keys, a known pair, the files in the rootfs. */
function check(values: Record<string, string>, recording: Recording): string | undefined {
  const missing = REQUIRED.filter((key) => (values[key] ?? '') === '');
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  const guests = MONITOR_GUESTS[values.hypervisor ?? ''];
  if (!guests) return `unknown hypervisor ${JSON.stringify(values.hypervisor)}`;
  if (!guests.includes(values.unikernelType ?? '')) return `${values.hypervisor} cannot run ${JSON.stringify(values.unikernelType)}`;
  const files = new Set(recording.rootfs.filter((entry) => entry.type === 'f').map((entry) => entry.path));
  for (const key of ['binary', 'initrd', 'block']) {
    const path = values[key];
    if (path && !files.has(path)) return `${key} ${path} is not a file in the rootfs`;
  }
  return undefined;
}

function outcome(source: ValueSource, values: Record<string, string>, recording: Recording, fallbackWhy?: string): UruncOutcome {
  if (fallbackWhy !== undefined) return { source, runs: false, values, why: fallbackWhy };
  const problem = check(values, recording);
  return { source, runs: problem === undefined, values, why: problem ?? 'boots' };
}

/** /urunc.json: a flat JSON object of full keys to base64 values. */
function fromUruncJson(recording: Recording, keys: readonly string[] | undefined): { values?: Record<string, string>; problem?: string } {
  if (recording.uruncJson === undefined) return { problem: 'no /urunc.json: not a unikernel, handed to runc' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(recording.uruncJson);
  } catch {
    return { problem: '/urunc.json is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { problem: '/urunc.json is not an object' };
  const raw = shortKeys(Object.fromEntries(Object.entries(parsed).filter((entry): entry is [string, string] => typeof entry[1] === 'string')));
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (keys && !keys.includes(key)) continue;
    const plain = goStdBase64(value);
    if (plain === undefined) return { problem: `/urunc.json ${key} is not base64` };
    if (plain !== '') values[key] = plain;
  }
  return { values };
}

/** What urunc of `release` does with the container `engine` recorded. */
export function uruncLookup(release: UruncRelease, engine: EngineName, inputs: LookupInputs): UruncOutcome {
  const { recording } = inputs;
  const spec = uruncAnnotations(recording.spec);

  if (release === 'pre-0.7') {
    // GetUnikernelConfig: the spec when any field is set, every field strictly
    // base64-decoded; any error means "not a unikernel", and runc runs it.
    if (PRE_07_PRESENCE.some((key) => (spec[key] ?? '') !== '')) {
      const values: Record<string, string> = {};
      for (const key of PRE_07_FIELDS) {
        const plain = goStdBase64(spec[key] ?? '');
        if (plain === undefined) return outcome('spec-annotations', {}, recording, `spec ${key} is not base64: handed to runc`);
        if (plain !== '') values[key] = plain;
      }
      return outcome('spec-annotations', values, recording);
    }
    const json = fromUruncJson(recording, PRE_07_FIELDS);
    if (!json.values) return outcome('none', {}, recording, json.problem);
    return outcome('uruncJson', json.values, recording);
  }

  // 0.7 and later read the spec as plain text once the three required keys are there.
  if (hasRequired(spec)) return outcome('spec-annotations', spec, recording);

  // 0.8's shim fills the keys the spec lacks from the image in containerd's
  // store: manifest annotations first, then config labels.
  if (release === '0.8' && (engine === 'containerd' || engine === 'cri' || engine === 'docker') && inputs.stored) {
    const filled: Record<string, string> = { ...shortKeys(inputs.stored.labels), ...shortKeys(inputs.stored.manifestAnnotations), ...spec };
    for (const key of Object.keys(filled)) if (filled[key] === '') delete filled[key];
    if (hasRequired(filled)) return outcome('image-metadata', filled, recording);
  }

  const json = fromUruncJson(recording, undefined);
  if (!json.values) return outcome('none', {}, recording, json.problem);
  if (!hasRequired(json.values)) return outcome('none', {}, recording, `/urunc.json lacks ${REQUIRED.filter((key) => !json.values?.[key]).join(', ')}`);
  return outcome('uruncJson', json.values, recording);
}
