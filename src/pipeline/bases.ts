/**
 * Per platform, step 2: the registry images the plan reads (FROM,
 * kernel.from, rootfs.from, COPY --from=IMAGE, a Linux guest's kernel and
 * init), pulled for the platform or found in the cache, and the plan with
 * what it inherits from its base's config.
 */
import { LapinError } from '../errors.js';
import { withBunnyDefaults } from '../frontends/containerfile.js';
import { imagesOf } from '../plan/images.js';
import { addLinuxGuestParts } from '../plan/linux-guest.js';
import type { BuildPlan } from '../plan/types.js';
import type { PulledImage } from '../registry/pull.js';
import type { CompiledPlan } from './compile.js';
import { pullOptionsOf, type BuildSettings } from './options.js';

export type RegistryModules = { base: typeof import('../registry/base.js'); extract: typeof import('../registry/extract.js') };

/** The registry code loads only when a plan reads registry images: it is a good part of start-up otherwise. */
export async function loadRegistry(): Promise<RegistryModules> {
  const [base, extract] = await Promise.all([import('../registry/base.js'), import('../registry/extract.js')]);
  return { base, extract };
}

export interface Bases {
  /** The plan with its base's config inherited and a Linux guest's parts added. */
  plan: BuildPlan;
  /** Pulled images by the reference the plan writes. */
  pulled: ReadonlyMap<string, PulledImage>;
  /** The final stage's base image, whose layers go first. */
  finalBase?: PulledImage;
  registry?: RegistryModules;
}

export async function pullBases(compiled: CompiledPlan, settings: BuildSettings, platform: string | undefined): Promise<Bases> {
  const { options, emit } = settings;
  const { plan: planned, builtBase } = compiled;
  let registry = imagesOf(planned).length > 0 ? await loadRegistry() : undefined;
  const pullOptions = pullOptionsOf(settings, platform);
  const pulled = new Map<string, PulledImage>(builtBase ? [[builtBase.reference, builtBase.image]] : []);
  if (registry) for (const [reference, image] of await registry.base.pullPlanImages(planned, pullOptions, pulled)) pulled.set(reference, image);
  const finalBase = planned.base.kind === 'image' ? pulled.get(planned.base.reference) : undefined;
  const configBase = finalBase ?? (planned.configFrom ? pulled.get(planned.configFrom.value) : undefined);
  let inherited = registry ? registry.base.inheritBaseConfig(planned, configBase) : planned;
  // A builder's image carries the file's LABELs: bunny's defaults fill in what they leave out.
  if (builtBase) inherited = { ...inherited, urunc: withBunnyDefaults(inherited.urunc) };
  // A rootfs image's own urunc values do not describe the image made out of it.
  const guest = addLinuxGuestParts(configBase === finalBase ? inherited : { ...inherited, urunc: planned.urunc }, options);
  const plan = guest.plan;
  if (guest.parts.length > 0) {
    for (const part of guest.parts) emit({ kind: 'step', message: `Linux guest: ${part.role} ${part.path} from ${part.image} (${part.chosenBy})` });
    registry ??= await loadRegistry();
    const more = await registry.base.pullPlanImages(plan, pullOptions, pulled).catch((error: unknown) => {
      throw error instanceof LapinError && error.at === undefined
        ? new LapinError(error.message, { hint: `${error.hint ? `${error.hint}; ` : ''}other images: --kernel-image, --init-image, or LABEL lapin.kernel-image, lapin.init-image, bunny.urunit=false` })
        : error;
    });
    for (const [reference, image] of more) pulled.set(reference, image);
  }
  return { plan, pulled, ...(finalBase ? { finalBase } : {}), ...(registry ? { registry } : {}) };
}
