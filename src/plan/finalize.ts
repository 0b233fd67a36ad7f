import type { SourcePosition } from '../errors.js';
import { NEWEST_URUNC_RELEASE, type UruncRelease } from './releases.js';
import { checkUruncValues, parseGoBool, type Finding } from './rules.js';
import type { BuildPlan } from './types.js';
import { URUNC_KEYS, fullUruncKey, shortUruncKey } from './urunc-keys.js';

/** Values given on the command line; they override the file's. */
export interface PlanOverrides {
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

/** The image config lapin writes, in OCI/docker field terms. */
export interface FinalConfig {
  env: string[];
  entrypoint?: string[];
  cmd?: string[];
  workingDir?: string;
  user?: string;
  exposedPorts: string[];
  volumes: string[];
  stopSignal?: string;
  labels: Record<string, string>;
}

/** What an image will say about itself once the plan's defaults and rules are applied. */
export interface ImageMetadata {
  /** Final urunc values by short key, in lapin's write order. */
  urunc: Record<string, string>;
  uruncAt: Record<string, SourcePosition | undefined>;
  config: FinalConfig;
  /** Manifest annotations: the urunc values plus extras. */
  annotations: Record<string, string>;
  findings: Finding[];
}

/**
 * Applies command-line overrides and urunc's consistency rules to a plan:
 * mirrors useDMBlock/mountRootfs, keeps `cmdline` and the process args in
 * agreement, drops empty values, and checks the result against `release`.
 */
export function finalizeMetadata(plan: BuildPlan, overrides: PlanOverrides = {}, release: UruncRelease = NEWEST_URUNC_RELEASE): ImageMetadata {
  const findings: Finding[] = [];
  const given: Record<string, string> = {};
  const uruncAt: Record<string, SourcePosition | undefined> = {};
  for (const [key, located] of Object.entries(plan.urunc)) {
    if (!located) continue;
    given[key] = located.value;
    uruncAt[key] = located.at;
  }

  const labels: Record<string, string> = { ...plan.config.labels };
  const extraAnnotations: Record<string, string> = { ...plan.annotations };
  for (const [source, target] of [
    [overrides.labels ?? {}, labels],
    [overrides.annotations ?? {}, extraAnnotations],
  ] as const) {
    for (const [key, value] of Object.entries(source)) {
      const short = shortUruncKey(key);
      if (short) {
        given[short] = value;
        uruncAt[short] = undefined;
      } else {
        target[key] = value;
      }
    }
  }

  mirrorRootfsFlags(given, uruncAt, findings);

  const entrypoint = plan.config.entrypoint?.value;
  const cmd = plan.config.cmd?.value;
  const processArgs = [...(entrypoint ?? []), ...(cmd ?? [])];
  let finalCmd = cmd;
  if (processArgs.length > 1 && processArgs[0] === '' && given.unikernelType === 'linux') {
    const at = plan.config.entrypoint?.at ?? plan.config.cmd?.at;
    findings.push({
      severity: 'warning',
      message: `the process args ${JSON.stringify(processArgs)} start with an empty one: urunc then writes no init= and drops the rest, so the kernel runs its default init without them`,
      ...(at ? { at } : {}),
      hint: 'name the init first, e.g. ["/init", ...]',
    });
  }
  if (processArgs.length > 0) {
    const joined = processArgs.join(' ');
    if (given.cmdline === undefined) {
      given.cmdline = joined;
    } else if (given.cmdline !== joined) {
      const at = uruncAt.cmdline ?? plan.config.cmd?.at ?? plan.config.entrypoint?.at;
      findings.push({
        severity: 'error',
        message: `cmdline ${JSON.stringify(given.cmdline)} disagrees with the process args ${JSON.stringify(processArgs)}; urunc >= 0.7 boots with the process args`,
        ...(at ? { at } : {}),
        hint: 'give the command line once: as cmd/CMD, or as cmdline',
      });
    }
  } else {
    given.cmdline ??= '';
    const words = given.cmdline.split(/\s+/).filter((word) => word !== '');
    // docker run refuses an image with no Cmd and no Entrypoint; [""] joins to the same empty
    // command line urunc >= 0.7 would build, so old and new urunc still agree.
    finalCmd = words.length > 0 ? words : [''];
  }

  const urunc: Record<string, string> = {};
  const known = URUNC_KEYS as readonly string[];
  const order = [...known, ...Object.keys(given).filter((k) => !known.includes(k)).sort()];
  for (const key of order) {
    const value = given[key];
    // An empty value means "not set" to urunc; cmdline stays so old and new urunc agree.
    if (value === undefined || (value === '' && key !== 'cmdline')) continue;
    urunc[key] = value;
  }

  findings.push(...checkUruncValues(urunc, uruncAt, release));

  for (const [key, value] of Object.entries(urunc)) labels[fullUruncKey(key)] = value;
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(urunc)) annotations[fullUruncKey(key)] = value;
  Object.assign(annotations, extraAnnotations);

  const config: FinalConfig = {
    env: [...plan.config.env],
    exposedPorts: [...plan.config.exposedPorts],
    volumes: [...plan.config.volumes],
    labels: sortRecord(labels),
    ...(entrypoint ? { entrypoint: [...entrypoint] } : {}),
    ...(finalCmd ? { cmd: [...finalCmd] } : {}),
    ...(plan.config.workingDir ? { workingDir: plan.config.workingDir } : {}),
    ...(plan.config.user ? { user: plan.config.user } : {}),
    ...(plan.config.stopSignal ? { stopSignal: plan.config.stopSignal } : {}),
  };
  return { urunc, uruncAt, config, annotations: sortRecord(annotations), findings };
}

/**
 * `useDMBlock` is the older name of `mountRootfs` (urunc switched in mid
 * 2025); write both with one value so old and new urunc read the same.
 */
function mirrorRootfsFlags(
  given: Record<string, string>,
  uruncAt: Record<string, SourcePosition | undefined>,
  findings: Finding[],
): void {
  const mount = given.mountRootfs || undefined;
  const dm = given.useDMBlock || undefined;
  if (mount !== undefined && dm !== undefined) {
    const a = parseGoBool(mount);
    const b = parseGoBool(dm);
    if (a !== undefined && b !== undefined && a !== b) {
      const at = uruncAt.useDMBlock ?? uruncAt.mountRootfs;
      findings.push({
        severity: 'error',
        message: `useDMBlock=${dm} contradicts mountRootfs=${mount}; they name the same setting`,
        ...(at ? { at } : {}),
        hint: 'set only mountRootfs',
      });
    }
    return;
  }
  // A value that is no boolean is reported once, under the key the user wrote, not again under its mirror.
  if (parseGoBool(mount ?? dm ?? '') === undefined) return;
  if (mount !== undefined) {
    given.useDMBlock = mount;
    uruncAt.useDMBlock = uruncAt.mountRootfs;
  } else if (dm !== undefined) {
    given.mountRootfs = dm;
    uruncAt.mountRootfs = uruncAt.useDMBlock;
  }
}

function sortRecord(record: Record<string, string>): Record<string, string> {
  const sorted: Record<string, string> = {};
  for (const key of Object.keys(record).sort()) sorted[key] = record[key] as string;
  return sorted;
}
