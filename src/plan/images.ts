import type { SourcePosition } from '../errors.js';
import type { BuildPlan, FsOp } from './types.js';

function copySources(ops: readonly FsOp[]): string[] {
  return ops.flatMap((op) => (op.kind === 'copy' ? (op.fromStage !== undefined ? [op.fromStage] : []) : copySources(op.entries)));
}

function stageNames(plan: BuildPlan): Set<string> {
  return new Set(plan.stages.flatMap((s, i) => [String(i), ...(s.name ? [s.name] : [])]));
}

/** Images `COPY --from=` reads: sources that name no stage. */
export function copySourceImages(plan: BuildPlan): Set<string> {
  const stages = stageNames(plan);
  return new Set([...plan.stages.flatMap((s) => copySources(s.ops)), ...copySources(plan.ops)].filter((source) => !stages.has(source)));
}

/**
 * Every registry image a plan reads: its bases (FROM, kernel.from,
 * rootfs.from), the images an initrd or block rootfs is made from, and
 * `COPY --from=<image>` sources, which the frontend lets through only when
 * no stage has that name.
 */
export function imagesOf(plan: BuildPlan): Array<{ reference: string; at?: SourcePosition }> {
  const found = new Map<string, { reference: string; at?: SourcePosition }>();
  const add = (reference: string, at?: SourcePosition): void => {
    if (!found.has(reference)) found.set(reference, { reference, ...(at ? { at } : {}) });
  };
  for (const base of [...plan.stages.map((s) => s.base), plan.base]) {
    if (base.kind === 'image') add(base.reference, base.at);
  }
  for (const op of [...plan.stages.flatMap((s) => s.ops), ...plan.ops]) {
    if (op.kind !== 'copy' && op.baseImage !== undefined) add(op.baseImage.value, op.baseImage.at);
  }
  for (const source of copySourceImages(plan)) add(source);
  return [...found.values()];
}
