import path from 'node:path';
import type { ImageFilesystem } from '../image/filesystem.js';
import type { Layer } from '../image/model.js';
import type { FsNode } from '../image/tree.js';
import { imagesOf, pullFailure } from '../plan/images.js';
import type { BuildPlan } from '../plan/types.js';
import { shortUruncKey } from '../plan/urunc-keys.js';
import { buildArchitecture, hostBuildArchitecture } from '../pipeline/platform.js';
import { indexLayers, namedFiles } from './layer-index.js';
import { pullImage, type PullOptions, type PulledImage } from './pull.js';

/** The architecture base images are pulled for: --platform, else the file's, else this machine's. */
export function pullArchitecture(plan: BuildPlan, platform: string | undefined): string {
  const flag = platform === undefined ? undefined : buildArchitecture(platform);
  if (flag) return flag;
  if (plan.architecture) return plan.architecture.value;
  return hostBuildArchitecture();
}

/** Pulls (or finds in the cache) every image the plan reads, by the reference it is written as. */
export async function pullPlanImages(
  plan: BuildPlan,
  options: Omit<PullOptions, 'architecture' | 'monitor'> & { platform?: string },
  /** Images pulled already, which are not pulled again (and not returned). */
  have?: ReadonlyMap<string, PulledImage>,
): Promise<Map<string, PulledImage>> {
  const architecture = pullArchitecture(plan, options.platform);
  const monitor = plan.urunc.hypervisor?.value;
  const pulled = new Map<string, PulledImage>();
  for (const use of imagesOf(plan)) {
    const { reference, at } = use;
    if (have?.has(reference)) continue;
    try {
      pulled.set(reference, await pullImage(reference, { ...options, architecture, ...(monitor ? { monitor } : {}), ...(at ? { at } : {}) }));
    } catch (error) {
      throw pullFailure(plan, use, error);
    }
  }
  return pulled;
}

/**
 * The plan with the base image's config underneath, as bunny keeps it: Cmd
 * and Entrypoint only when the input gives none, envs appended, labels and
 * urunc values inherited unless the input sets them.
 */
export function inheritBaseConfig(plan: BuildPlan, base: PulledImage | undefined): BuildPlan {
  if (!base) return plan;
  const from = base.config.config ?? {};
  const config = { ...plan.config };
  config.env = [...(from.Env ?? []), ...plan.config.env];
  const givesProcess = plan.config.cmd !== undefined || plan.config.entrypoint !== undefined;
  let cmdlineFollowsArgs = false;
  if (!givesProcess) {
    if (from.Cmd && from.Cmd.length > 0) config.cmd = { value: from.Cmd };
    if (from.Entrypoint && from.Entrypoint.length > 0) config.entrypoint = { value: from.Entrypoint };
  } else if (plan.config.entrypoint === undefined && from.Entrypoint && from.Entrypoint.length > 0) {
    config.entrypoint = { value: from.Entrypoint };
    // A bunnyfile's cmdline is its cmd joined; under the base's Entrypoint (redis:alpine's
    // docker-entrypoint.sh) urunc >= 0.7 boots Entrypoint + Cmd, so cmdline follows those args.
    cmdlineFollowsArgs = plan.syntax === 'bunnyfile' && plan.urunc.cmdline?.value === (plan.config.cmd?.value ?? []).join(' ');
  }
  if (config.workingDir === undefined && from.WorkingDir) config.workingDir = from.WorkingDir;
  if (config.user === undefined && from.User) config.user = from.User;
  if (config.stopSignal === undefined && from.StopSignal) config.stopSignal = from.StopSignal;
  config.exposedPorts = [...new Set([...Object.keys(from.ExposedPorts ?? {}), ...plan.config.exposedPorts])];
  config.volumes = [...new Set([...Object.keys(from.Volumes ?? {}), ...plan.config.volumes])];
  const labels: Record<string, string> = {};
  const urunc = { ...plan.urunc };
  const inherited: Record<string, string> = {};
  for (const [key, value] of [...Object.entries(from.Labels ?? {}), ...Object.entries(base.manifestAnnotations)]) {
    const short = shortUruncKey(key);
    if (short) inherited[short] = value;
    else if (Object.prototype.hasOwnProperty.call(from.Labels ?? {}, key)) labels[key] = value;
  }
  // Values the input wrote carry a position; the frontends' defaults (bunny's qemu, linux...) do not, and give way to the base's.
  const written = (key: string): boolean => urunc[key]?.at !== undefined;
  const mirror: Record<string, string> = { mountRootfs: 'useDMBlock', useDMBlock: 'mountRootfs' };
  for (const [key, value] of Object.entries(inherited)) {
    // New process args make the base's cmdline stale; finalize derives it again.
    if (key === 'cmdline' && givesProcess) continue;
    if (written(key)) continue;
    const other = mirror[key];
    if (other !== undefined) {
      // mountRootfs and useDMBlock name one setting: the input's choice of either wins.
      if (written(other)) continue;
      delete urunc[other];
    }
    urunc[key] = { value };
  }
  config.labels = { ...labels, ...plan.config.labels };
  if (cmdlineFollowsArgs) delete urunc.cmdline;
  return { ...plan, config, urunc };
}

/** The layers of a base image as descriptors the new manifest lists first. */
export function baseLayers(base: PulledImage): Array<Layer & { file: string }> {
  return base.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size, diffId: l.diffId, file: l.file }));
}

/**
 * Puts a base image's files (its layers indexed) into a filesystem and returns those
 * nodes, so the image writer can leave them out of the new layers (they
 * are already in the base's layers underneath).
 */
export async function seedFilesystem(target: ImageFilesystem, base: PulledImage, dataDir: string): Promise<Set<FsNode>> {
  // Indexed, not extracted: the layers go into the new image as they are, and a step that reads a file reads it from its layer.
  const scratch = path.join(dataDir, base.manifestDigest.slice(7, 23));
  const nodes = await indexLayers(base.layers, {
    image: base.reference.display,
    capture: namedFiles(base.config.config?.Labels ?? undefined, base.manifestAnnotations),
    scratch,
    captureDir: path.join(scratch, 'kept'),
  });
  for (const node of nodes) target.put(node);
  return new Set(nodes);
}
