import { LapinError, type SourcePosition } from '../errors.js';
import { closestName } from './similar.js';
import type { BuildPlan, FsOp } from './types.js';

/** A registry image a plan reads, where the file names it, and in what role. */
export interface ImageUse {
  reference: string;
  at?: SourcePosition;
  /** A base (FROM, kernel.from, rootfs.from as a base), a rootfs built from it, or files copied out of it. */
  via: 'base' | 'rootfs' | 'copy';
}

function copySources(ops: readonly FsOp[]): Array<{ name: string; at?: SourcePosition }> {
  return ops.flatMap((op) => {
    if (op.kind !== 'copy') return copySources(op.entries);
    if (op.fromStage === undefined) return [];
    const at = op.fromAt ?? op.at;
    return [{ name: op.fromStage, ...(at ? { at } : {}) }];
  });
}

function stageNames(plan: BuildPlan): Set<string> {
  return new Set(plan.stages.flatMap((s, i) => [String(i), ...(s.name ? [s.name] : [])]));
}

function copySourceUses(plan: BuildPlan): Array<{ name: string; at?: SourcePosition }> {
  const stages = stageNames(plan);
  return [...plan.stages.flatMap((s) => copySources(s.ops)), ...copySources(plan.ops)].filter((source) => !stages.has(source.name));
}

/** Images `COPY --from=` reads: sources that name no stage. */
export function copySourceImages(plan: BuildPlan): Set<string> {
  return new Set(copySourceUses(plan).map((source) => source.name));
}

/**
 * Every registry image a plan reads: its bases (FROM, kernel.from,
 * rootfs.from), the images an initrd or block rootfs is made from, and
 * `COPY --from=<image>` sources, which the frontend lets through only when
 * no stage has that name. The first place each is named comes with it.
 */
export function imagesOf(plan: BuildPlan): ImageUse[] {
  const found = new Map<string, ImageUse>();
  const add = (reference: string, via: ImageUse['via'], at?: SourcePosition): void => {
    if (!found.has(reference)) found.set(reference, { reference, via, ...(at ? { at } : {}) });
  };
  for (const base of [...plan.stages.map((s) => s.base), plan.base]) {
    if (base.kind === 'image') add(base.reference, 'base', base.at);
  }
  for (const op of [...plan.stages.flatMap((s) => s.ops), ...plan.ops]) {
    if (op.kind !== 'copy' && op.baseImage !== undefined) add(op.baseImage.value, 'rootfs', op.baseImage.at);
  }
  for (const source of copySourceUses(plan)) add(source.name, 'copy', source.at);
  if (plan.configFrom !== undefined) add(plan.configFrom.value, 'rootfs', plan.configFrom.at);
  return [...found.values()];
}

/** A word with no registry, path, tag or digest: what a misspelt keyword or stage name looks like. */
const BARE_WORD = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** What the user more likely meant than an image, when the reference looks like a slip. */
export function lookAlikeHint(plan: BuildPlan, use: ImageUse): string | undefined {
  if (!BARE_WORD.test(use.reference)) return undefined;
  if (plan.syntax === 'containerfile' && use.via === 'copy') {
    const names = plan.stages.flatMap((stage) => (stage.name === undefined ? [] : [stage.name]));
    const close = closestName(use.reference, names);
    const next =
      close !== undefined
        ? `did you mean ${close}?`
        : names.length > 0
          ? `the stages are ${names.join(', ')}`
          : `name a stage with FROM <image> AS ${use.reference}`;
    return `no stage named ${use.reference}, so it was read as an image; ${next}`;
  }
  const keywords = plan.syntax === 'bunnyfile' ? ['local', 'scratch'] : plan.syntax === 'containerfile' ? ['scratch'] : [];
  const close = closestName(use.reference, keywords);
  return close === undefined ? undefined : `did you mean ${close}?`;
}

/**
 * A failed pull as the user needs it: where the file names the image, the
 * reference as written, and the likely slip ("did you mean local?") before
 * the registry's own hint. Anything but a LapinError passes through.
 */
export function pullFailure(plan: BuildPlan, use: ImageUse, error: unknown): unknown {
  if (!(error instanceof LapinError)) return error;
  const hint = [lookAlikeHint(plan, use), error.hint].filter((text) => text !== undefined).join('; ');
  const at = error.at ?? use.at;
  return new LapinError(`cannot pull ${use.reference}: ${error.message}`, {
    ...(at ? { at } : {}),
    ...(hint === '' ? {} : { hint }),
    exitCode: error.exitCode,
    cause: error,
  });
}
