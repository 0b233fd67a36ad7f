/**
 * Per platform, step 3: the plan → the image's final file tree. The plan's
 * stages and operations run into in-memory trees (rootfs images are made on
 * the way), /urunc.json is written, the files urunc's values name are
 * checked, and the platform is decided, the kernel's header checked against
 * it.
 */
import path from 'node:path';
import { LapinError, UsageError, formatPosition, type SourcePosition } from '../errors.js';
import { applyCopy, type CopyEnvironment } from '../image/copy.js';
import type { ContextIgnore } from '../image/dockerignore.js';
import { ImageFilesystem, treePath } from '../image/filesystem.js';
import type { Platform } from '../image/image.js';
import { KERNEL_HEADER_BYTES, readKernelInfo, sniffKernel } from '../image/kernel-arch.js';
import { sourceFilePath } from '../image/layer-member.js';
import { applySolo5Notes, bufferReader, readSolo5Notes, readSolo5NotesFromFile } from '../image/solo5.js';
import type { FsNode } from '../image/tree.js';
import { finalizeMetadata } from '../plan/finalize.js';
import { copySourceImages } from '../plan/images.js';
import type { Finding } from '../plan/rules.js';
import { FILE_KEYS } from '../plan/rules.js';
import type { Architecture, BlockOp, BuildPlan, FsOp, InitrdOp, Syntax } from '../plan/types.js';
import { URUNC_JSON_PATH, uruncJson } from '../plan/urunc-json.js';
import { URUNC_KEYS } from '../plan/urunc-keys.js';
import type { PulledImage } from '../registry/pull.js';
import { BlockImageCache, blockCacheDir } from '../rootfs/block-cache.js';
import { resolveRootfsFile } from '../rootfs/detect.js';
import type { KeptImages } from '../rootfs/ext.js';
import { writeRootfsImage } from '../rootfs/image.js';
import { count, formatBytes } from '../human.js';
import type { Bases, RegistryModules } from './bases.js';
import { displayPath, type BuildSettings } from './options.js';
import { BUILD_PLATFORMS_HINT, buildArchitecture } from './platform.js';
import type { BuildEvent } from './types.js';

export type ImageMetadata = ReturnType<typeof finalizeMetadata>;

export interface SettledMetadata {
  metadata: ImageMetadata;
  /** urunc's rules' findings so far; assembly adds those about files. */
  findings: Finding[];
}

/** urunc values, annotations, labels and config, final; a local rootfs file's kind is read first, as it decides values. */
export async function settleMetadata(plan: BuildPlan, settings: BuildSettings): Promise<SettledMetadata> {
  const { options, emit } = settings;
  const rootfsDecision = await resolveRootfsFile(plan, settings.contextDir);
  if (rootfsDecision) {
    emit({ kind: 'step', message: rootfsDecision.message });
    if (rootfsDecision.warning) emit({ kind: 'warning', message: rootfsDecision.warning });
  }
  const metadata = finalizeMetadata(plan, {
    ...(options.annotations ? { annotations: options.annotations } : {}),
    ...(options.labels ? { labels: options.labels } : {}),
  }, options.uruncVersion);
  return { metadata, findings: [...metadata.findings] };
}

export interface AssembleInput {
  bases: Bases;
  settled: SettledMetadata;
  settings: BuildSettings;
  ignore?: ContextIgnore;
  mtime: number;
  /** This build's temporary directory: rootfs images and base layers' data go under it. */
  staging: string;
  /** The --platform asked for, if any. */
  platform: string | undefined;
  /** A platform of an index: a kernel built for another architecture is an error, not a warning. */
  strictKernel?: StrictKernel;
}

/** What the index build's kernel error names: the file, where it names the kernel, how its syntax gives each platform its own. */
export interface StrictKernel {
  file: string;
  syntax: Syntax;
  at?: SourcePosition;
}

const OWN_KERNEL: Record<Syntax, string> = {
  containerfile: 'ARG TARGETARCH, then COPY kernel-${TARGETARCH}',
  bunnyfile: 'kernel.path: kernel-${TARGETARCH}',
  nix: '{ TARGETARCH, ... }: { files = { "./kernel-${TARGETARCH}" = ...; }; }',
};

export interface AssembledImage {
  rootfs: ImageFilesystem;
  /** The final base's nodes: they stay out of the new layers. */
  baseNodes: ReadonlySet<FsNode>;
  platform: Platform;
}

export async function assemble(input: AssembleInput): Promise<AssembledImage> {
  const { bases, settled, settings, mtime, staging } = input;
  const { options, emit } = settings;
  const { plan } = bases;
  const { metadata, findings } = settled;
  const baseNodes = new Set<FsNode>();
  const keptImages = keptBlockImages(settings);
  const definitionDir = definitionDirectory(settings);
  const rootfs = await assembleFilesystem(plan, { contextDir: settings.contextDir, ...(definitionDir ? { definitionDir } : {}), ...(input.ignore ? { ignore: input.ignore } : {}), mtime, staging, ...(options.rootfsSize !== undefined ? { rootfsSize: options.rootfsSize } : {}), emit, pulled: bases.pulled, ...(bases.registry ? { registry: bases.registry } : {}), baseNodes, ...(keptImages ? { keptImages } : {}) });
  if (rootfs.get(URUNC_JSON_PATH)) emit({ kind: 'warning', message: '/urunc.json from the input is replaced by the one lapin writes' });
  // A Solo5 kernel's manifest names its devices; urunc's names must match (before urunc.json is written).
  const kernelNode = metadata.urunc.binary === undefined ? undefined : rootfs.resolve(metadata.urunc.binary);
  if (kernelNode?.type === 'file') {
    const notes = kernelNode.source.kind === 'bytes' ? readSolo5Notes(bufferReader(Buffer.from(kernelNode.source.data))) : readSolo5NotesFromFile(await sourceFilePath(kernelNode.source));
    const solo5 = applySolo5Notes(notes, metadata, URUNC_KEYS, options.uruncVersion);
    for (const message of solo5.steps) emit({ kind: 'step', message });
    for (const message of solo5.warnings) emit({ kind: 'warning', message });
  }
  const urunc = uruncJson(metadata.urunc);
  rootfs.put({ type: 'file', path: URUNC_JSON_PATH, mode: 0o644, uid: 0, gid: 0, mtime, size: urunc.length, source: { kind: 'bytes', data: urunc } });

  for (const key of FILE_KEYS) {
    const value = metadata.urunc[key];
    if (value === undefined) continue;
    const node = rootfs.resolve(value);
    if (node?.type !== 'file') {
      const at = metadata.uruncAt[key];
      findings.push({
        severity: 'error',
        message: `com.urunc.unikernel.${key} names ${value}, which ${node ? 'is not a regular file' : 'is not in the image'}`,
        ...(at ? { at } : {}),
        hint: 'copy the file there, or point the value at where it is',
      });
    }
  }

  const platform = await decidePlatform(plan, input.platform, rootfs, metadata.urunc.binary, emit, input.strictKernel, findings, metadata.uruncAt['binary']);
  reportFindings(findings, settings.uruncChecks, emit);
  return { rootfs, baseNodes, platform };
}

/** With the cache on: block images kept from earlier builds, put back when this build ends (rootfs/block-cache.ts). */
function keptBlockImages(settings: BuildSettings): KeptImages | undefined {
  if (settings.cacheDir === undefined) return undefined;
  const cache = new BlockImageCache(blockCacheDir(settings.cacheDir), { onWarning: (message) => settings.emit({ kind: 'warning', message }) });
  return cache.enabled ? { cache, defer: (task) => settings.cleanups.push(task) } : undefined;
}

/** -f's directory when it is not the context: a path the file names may be there instead (docker build's slip). */
function definitionDirectory(settings: BuildSettings): { path: string; shown: string } | undefined {
  const file = settings.options.file;
  if (file === undefined || file === '-') return undefined;
  const dir = path.dirname(path.resolve(settings.cwd, file));
  return dir === settings.contextDir ? undefined : { path: dir, shown: displayPath(dir, settings.cwd) };
}

interface AssembleContext {
  contextDir: string;
  /** Block images kept from earlier builds, when the cache is on. */
  keptImages?: KeptImages;
  definitionDir?: { path: string; shown: string };
  ignore?: ContextIgnore;
  mtime: number;
  staging: string;
  /** --rootfs-size: overrides the size of block images built from files. */
  rootfsSize?: number;
  emit?: (event: BuildEvent) => void;
  /** Pulled registry images by reference, and the final base's nodes (kept out of new layers). */
  pulled?: ReadonlyMap<string, PulledImage>;
  /** Loaded when the plan reads registry images. */
  registry?: RegistryModules;
  baseNodes?: Set<FsNode>;
}

function requireRegistry(context: AssembleContext): RegistryModules {
  if (!context.registry) throw new LapinError('internal: registry code was not loaded for a pulled image');
  return context.registry;
}

/** Runs the plan's stages and final operations into an in-memory tree. */
async function assembleFilesystem(plan: BuildPlan, context: AssembleContext): Promise<ImageFilesystem> {
  const stages = new Map<string, ImageFilesystem>();
  const env: CopyEnvironment = { contextDir: context.contextDir, ...(context.definitionDir ? { definitionDir: context.definitionDir } : {}), stages, mtime: context.mtime, ...(context.ignore ? { ignore: context.ignore } : {}) };
  const baseData = path.join(context.staging, 'base');
  const copiedImages = copySourceImages(plan);
  for (const [reference, image] of context.pulled ?? []) {
    // COPY --from=IMAGE reads the image's files like a stage's.
    if (!copiedImages.has(reference)) continue;
    const fs = new ImageFilesystem({ mtime: context.mtime });
    await requireRegistry(context).base.seedFilesystem(fs, image, baseData);
    stages.set(reference, fs);
  }
  for (const [index, stage] of plan.stages.entries()) {
    const fs = new ImageFilesystem({ mtime: context.mtime });
    const stageBase = stage.base.kind === 'image' ? context.pulled?.get(stage.base.reference) : undefined;
    if (stageBase) await requireRegistry(context).base.seedFilesystem(fs, stageBase, baseData);
    await applyOps(fs, stage.ops, env, context);
    stages.set(String(index), fs);
    if (stage.name) stages.set(stage.name, fs);
  }
  const rootfs = new ImageFilesystem({ mtime: context.mtime });
  const finalBase = plan.base.kind === 'image' ? context.pulled?.get(plan.base.reference) : undefined;
  if (finalBase) for (const node of await requireRegistry(context).base.seedFilesystem(rootfs, finalBase, baseData)) context.baseNodes?.add(node);
  await applyOps(rootfs, plan.ops, env, context);
  return rootfs;
}

async function applyOps(target: ImageFilesystem, ops: FsOp[], env: CopyEnvironment, context: AssembleContext): Promise<void> {
  for (const op of ops) {
    if (op.kind === 'copy') await applyCopy(target, op, env);
    else if (op.kind === 'block') await applyBlock(target, op, env, context);
    else await applyInitrd(target, op, env, context);
  }
}

/** A rootfs file's tree: the op's registry image flattened (whiteouts applied) when it names one, then its entries on top. */
async function rootfsTree(op: InitrdOp | BlockOp, env: CopyEnvironment, context: AssembleContext): Promise<ImageFilesystem> {
  const tree = new ImageFilesystem({ mtime: context.mtime });
  let fromImage: Set<FsNode> | undefined;
  if (op.baseImage !== undefined) {
    const image = context.pulled?.get(op.baseImage.value);
    if (!image) throw new LapinError(`internal: ${op.baseImage.value} was not pulled`);
    fromImage = await requireRegistry(context).base.seedFilesystem(tree, image, path.join(context.staging, 'base'));
  }
  for (const entry of op.entries) await applyCopy(tree, entry, env);
  if (fromImage) requireRegistry(context).extract.relinkHardlinks(tree, fromImage);
  return tree;
}

/** Builds a newc initrd from the op's image and entries and places it in the image. */
async function applyInitrd(target: ImageFilesystem, op: InitrdOp, env: CopyEnvironment, context: AssembleContext): Promise<void> {
  const initrd = await rootfsTree(op, env, context);
  const id = `initrd ${op.destination}`;
  context.emit?.({ kind: 'begin', id, message: `writing initrd rootfs ${op.destination} (cpio, ${count(initrd.size, 'entry', 'entries')})` });
  const { file, size } = await writeRootfsImage(initrd, { kind: 'initrd' }, context);
  context.emit?.({ kind: 'end', id });
  context.emit?.({ kind: 'step', message: `initrd rootfs ${op.destination}: ${count(initrd.size, 'entry', 'entries')}, ${formatBytes(size)}${op.baseImage ? `, from ${op.baseImage.value}` : ''}` });
  target.put(
    { type: 'file', path: treePath(op.destination), mode: 0o644, uid: 0, gid: 0, mtime: context.mtime, size, source: { kind: 'path', path: file } },
    op.at,
  );
}

/** Builds an ext image from the op's image and entries (e2fsprogs) and places it in the image. */
async function applyBlock(target: ImageFilesystem, op: BlockOp, env: CopyEnvironment, context: AssembleContext): Promise<void> {
  const tree = await rootfsTree(op, env, context);
  const size = context.rootfsSize ?? op.size?.value;
  let written;
  const id = `block ${op.destination}`;
  context.emit?.({ kind: 'begin', id, message: `writing block rootfs ${op.destination} (mke2fs, ${op.filesystem}, ${count(tree.size, 'entry', 'entries')})` });
  try {
    written = await writeRootfsImage(tree, { kind: 'block', filesystem: op.filesystem, ...(size !== undefined ? { size } : {}) }, context);
  } catch (error) {
    // Size problems point at rootfs.size when the file gave it.
    const at = context.rootfsSize === undefined ? (op.size?.at ?? op.at) : undefined;
    if (error instanceof LapinError && error.at === undefined && at !== undefined) {
      throw new LapinError(error.message, { at, exitCode: error.exitCode, ...(error.hint ? { hint: error.hint } : {}) });
    }
    throw error;
  } finally {
    context.emit?.({ kind: 'end', id });
  }
  const patched = written.patched ? (written.patched.files === 0 ? ", the last build's image, unchanged" : `, the last build's image with ${count(written.patched.files, 'file', 'files')} rewritten`) : '';
  context.emit?.({ kind: 'step', message: `block rootfs ${op.destination}: ${op.filesystem}, ${count(tree.size, 'entry', 'entries')}, ${formatBytes(written.size)}${op.baseImage ? `, from ${op.baseImage.value}` : ''}${patched}` });
  target.put(
    { type: 'file', path: treePath(op.destination), mode: 0o644, uid: 0, gid: 0, mtime: context.mtime, size: written.size, source: { kind: 'path', path: written.file } },
    op.at,
  );
}

/**
 * The image's platform: --platform, else the file's architecture, else the kernel's, else amd64.
 * A kernel built for another architecture than the platform boots nowhere (urunc picks the
 * image by the host's platform; inspect and run refuse it): in an index it stops the build;
 * in a single build it is an error finding, so `--urunc-checks=warn` lowers it to a warning.
 */
async function decidePlatform(
  plan: BuildPlan,
  requested: string | undefined,
  rootfs: ImageFilesystem,
  binary: string | undefined,
  emit: (event: BuildEvent) => void,
  strict: StrictKernel | undefined,
  findings: Finding[],
  binaryAt: SourcePosition | undefined,
): Promise<Platform> {
  let flagArchitecture: Architecture | undefined;
  if (requested !== undefined) {
    flagArchitecture = buildArchitecture(requested);
    if (!flagArchitecture) throw new UsageError(`unsupported platform ${requested}`, BUILD_PLATFORMS_HINT);
  }
  const declared = plan.architecture;
  if (flagArchitecture && declared && declared.value !== flagArchitecture) {
    throw new LapinError(`--platform ${requested} contradicts architecture ${declared.value} in the file`, {
      ...(declared.at ? { at: declared.at } : {}),
      hint: 'drop one of them',
    });
  }
  const chosen = flagArchitecture ?? declared?.value;
  let detected: string | undefined;
  const kernel = binary === undefined ? undefined : rootfs.resolve(binary);
  if (kernel?.type === 'file') {
    const info = kernel.source.kind === 'bytes' ? sniffKernel(kernel.source.data.subarray(0, KERNEL_HEADER_BYTES)) : await readKernelInfo(await sourceFilePath(kernel.source));
    detected = info.architecture;
    if (detected !== undefined) emit({ kind: 'step', message: `kernel ${binary}: ${info.detail}` });
    // What lapin inspect warns of, said when it can still be fixed: a cpio, a gzip'd vmlinuz, a text file.
    if (info.format === 'unknown') {
      findings.push({ severity: 'warning', message: `the kernel ${binary} does not look like a kernel: ${info.detail}`, ...(binaryAt ? { at: binaryAt } : {}), hint: 'lapin reads ELF, x86 bzImage and arm64 Image headers; check that the file is the kernel itself' });
    }
  }
  // In an index the image is served to hosts of its platform, which cannot boot another's kernel.
  if (chosen !== undefined && strict && detected !== undefined && detected !== chosen) {
    throw new LapinError(`${strict.at ? '' : `${strict.file}: `}--platform ${requested ?? `linux/${chosen}`}: the kernel ${binary} is built for ${detected}, not ${chosen}`, {
      ...(strict.at ? { at: strict.at } : {}),
      hint: `give each platform its own kernel, e.g. ${OWN_KERNEL[strict.syntax]}`,
    });
  }
  const architecture: Architecture = chosen ?? (detected === 'amd64' || detected === 'arm64' ? detected : 'amd64');
  if (detected !== undefined && detected !== architecture) {
    const other = detected === 'amd64' || detected === 'arm64' ? `, or build it for linux/${detected}` : '';
    const at = requested === undefined ? (declared?.at ?? binaryAt) : binaryAt;
    findings.push({
      severity: 'error',
      message:
        requested !== undefined
          ? `--platform ${requested}: the kernel ${binary} is built for ${detected}, not ${architecture}`
          : declared !== undefined
            ? `the file declares architecture ${architecture}, but the kernel ${binary} is built for ${detected}`
            : `the kernel ${binary} is built for ${detected}; lapin builds linux/amd64 and linux/arm64 images`,
      ...(at ? { at } : {}),
      hint: `give the image a kernel built for ${architecture}${other}`,
    });
  }
  return { os: 'linux', architecture };
}

function reportFindings(findings: Finding[], mode: 'error' | 'warn', emit: (event: BuildEvent) => void): void {
  const describe = (f: Finding): string => `${f.at ? `${formatPosition(f.at)}: ` : ''}${f.message}${f.hint ? ` (${f.hint})` : ''}`;
  const errors = findings.filter((f) => f.severity === 'error');
  for (const f of findings) {
    if (f.severity === 'warning' || mode === 'warn') emit({ kind: 'warning', message: describe(f) });
  }
  if (errors.length > 0 && mode === 'error') {
    const [first, ...rest] = errors;
    const f = first as Finding;
    const anyway = '--urunc-checks=warn builds it anyway';
    if (rest.length === 0) throw new LapinError(f.message, { ...(f.at ? { at: f.at } : {}), hint: `${f.hint ? `${f.hint}; ` : ''}${anyway}` });
    // One line (the CLI escapes newlines): each error with its own hint, then what builds it anyway, for them all.
    const more = `; ${rest.length === 1 ? 'also' : `${rest.length} more errors`}: ${rest.map(describe).join('; ')}`;
    throw new LapinError(`${f.message}${f.hint ? ` (${f.hint})` : ''}${more}`, { ...(f.at ? { at: f.at } : {}), hint: anyway });
  }
}

