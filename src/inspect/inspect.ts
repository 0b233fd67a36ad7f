/**
 * Judges an image for urunc: where its urunc values are, whether they agree,
 * whether urunc accepts them, whether the files they name exist, and, for
 * each engine (docker, containerd, the CRI, podman) and urunc release line,
 * what urunc finds and whether it boots (engines.ts). The result is the
 * stable object `lapin inspect --json` prints (docs/inspect.md).
 */
import { FILE_TYPE_HEADER_BYTES, KERNEL_HEADER_BYTES, sniffFileType, sniffKernel, type FileType } from '../image/kernel-arch.js';
import { adviseSolo5, readSolo5NotesFromHeader, type Solo5Notes } from '../image/solo5.js';
import { NEWEST_URUNC_RELEASE, readsCmdline, releaseName, SPEC_ONLY_KEYS, type UruncRelease } from '../plan/releases.js';
import { checkUruncValues, FILE_KEYS, GUESTS, MONITOR_GUESTS, MONITORS, parseGoBool, pathProblem, PATH_KEYS } from '../plan/rules.js';
import { URUNC_PREFIX } from '../plan/urunc-keys.js';
import { guestCommandLine, rootfsType } from '../run/monitor.js';
import { openSource, type OpenSourceOptions } from '../source/open.js';
import { flattenRootfs, normalizeImagePath, resolveFile, type Capture, type FlatRootfs } from '../source/rootfs.js';
import type { ImageSource, SourceImageConfig } from '../source/types.js';
import { ENGINES, goBase64, hasRequired, missingRequired, resolveEngine, type EngineInputs, type EngineValueSource, type ResolvedEngine, type UruncEngineReport } from './engines.js';

export type { EngineName, EngineValueSource, EngineVerdict, UruncEngineReport } from './engines.js';
export type { UruncRelease } from '../plan/releases.js';

/** 2: `consumers` gave way to `urunc` (engines x release lines); `effective.source` names an engine source. */
export const INSPECT_SCHEMA_VERSION = 2;

export type ValueOrigin = 'annotations' | 'labels' | 'uruncJson';

export interface ValueSet {
  /** Whether this place holds any com.urunc.unikernel.* value. */
  found: boolean;
  /** Short key → decoded value, empty values included. */
  values: Record<string, string>;
}

export interface UruncJsonSet extends ValueSet {
  /** Where it was found after symlinks ("/urunc.json"), when it exists. */
  path?: string;
  /** Why urunc cannot use it (not JSON, a value not base64, ...). Empty when usable. */
  problems: string[];
  /** Values as stored, before base64 decoding. */
  raw: Record<string, string>;
}

export interface Difference {
  key: string;
  annotations?: string;
  labels?: string;
  uruncJson?: string;
}

export interface PathCheck {
  key: string;
  value: string;
  /** Why urunc refuses the value; absent when it is fine. */
  problem?: string;
}

export interface FileCheck {
  key: 'binary' | 'initrd' | 'block';
  path: string;
  exists: boolean;
  /** The regular file the path leads to, after symlinks. */
  resolvedPath?: string;
  size?: number;
  /** sniffFileType's name: elf, bzimage, cpio-newc, ext, ... */
  type?: FileType;
  /** One line: "ELF 64-bit LSB executable, x86-64". */
  detail?: string;
  /** For binary: the kernel's architecture (amd64, arm64, ...). */
  architecture?: string;
  /** For binary: its Solo5 manifest and ABI notes, when it has any (src/image/solo5.ts). */
  solo5?: Solo5Notes;
  problem?: string;
}

export interface Message {
  message: string;
  hint?: string;
}

export interface InspectReport {
  schemaVersion: number;
  source: { name: string; transport: string };
  image: {
    manifestDigest?: string;
    configDigest: string;
    architecture?: string;
    os?: string;
    layers: number;
    entrypoint: string[];
    cmd: string[];
    env: string[];
  };
  values: { annotations: ValueSet; labels: ValueSet; uruncJson: UruncJsonSet };
  agreement: { agree: boolean; differences: Difference[] };
  /** The values urunc (`urunc.release`) uses on the first engine path that boots it (containerd, cri, podman, docker), and their source. */
  effective: { source: EngineValueSource; values: Record<string, string> };
  pair: { guest?: string; monitor?: string; accepted: boolean; monitorsForGuest: string[] };
  paths: PathCheck[];
  files: FileCheck[];
  storage: 'initrd' | 'block' | 'container rootfs' | 'none';
  commandLine: {
    /** urunc < 0.7: the cmdline value. */
    cmdline?: string;
    /** urunc >= 0.7: Entrypoint + Cmd. */
    processArgs: string[];
    /** What urunc >= 0.7 hands the guest (without a network), or why it cannot. */
    guest?: string;
    guestProblem?: string;
    consistent: boolean;
  };
  /** Each engine path on each urunc release line; the verdict is for `urunc.release`. */
  urunc: UruncEngineReport;
  errors: Message[];
  warnings: Message[];
  /** Some engine path boots it on `urunc.release`; exit code 0 exactly when true. */
  runnable: boolean;
}

export interface InspectOptions {
  /** The urunc release line the verdict is for (default: the newest, 0.8). */
  release?: UruncRelease;
  /** What the image is called, for the commands the report suggests (default IMAGE). */
  imageName?: string;
}

const URUNC_JSON = '/urunc.json';
const URUNC_JSON_MAX_BYTES = 1024 * 1024;
const HEADER_BYTES = Math.max(KERNEL_HEADER_BYTES, FILE_TYPE_HEADER_BYTES);
/** The fields urunc's UnikernelConfig reads from urunc.json (encoding/json ignores the rest). */
const URUNC_JSON_KEYS = new Set(['unikernelType', 'unikernelVersion', 'cmdline', 'binary', 'hypervisor', 'initrd', 'block', 'blkMntPoint', 'mountRootfs', 'useDMBlock', 'solo5NetDev', 'solo5BlkDev']);

function uruncValues(map: Record<string, string> | null | undefined): ValueSet {
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(map ?? {})) {
    if (key.startsWith(URUNC_PREFIX) && typeof value === 'string') values[key.slice(URUNC_PREFIX.length)] = value;
  }
  return { found: Object.keys(values).length > 0, values };
}

function looksPlain(raw: string, key: string): boolean {
  if (key === 'unikernelType') return GUESTS.includes(raw);
  if (key === 'hypervisor') return MONITORS.includes(raw);
  if ((PATH_KEYS as readonly string[]).includes(key)) return raw.startsWith('/');
  return false;
}

function readUruncJson(rootfs: FlatRootfs): UruncJsonSet {
  const empty: UruncJsonSet = { found: false, values: {}, problems: [], raw: {} };
  const resolved = resolveFile(rootfs, URUNC_JSON);
  if (!resolved.entry) {
    if (resolved.problem && resolved.problem !== 'missing') return { ...empty, found: true, problems: [`/urunc.json is ${resolved.problem}`] };
    return empty;
  }
  const result: UruncJsonSet = { found: true, values: {}, problems: [], raw: {}, path: resolved.entry.path };
  const data = resolved.entry.data;
  if (!data) {
    result.problems.push('/urunc.json was not read');
    return result;
  }
  if (resolved.entry.size > URUNC_JSON_MAX_BYTES) {
    result.problems.push(`/urunc.json is ${resolved.entry.size} bytes; lapin reads at most ${URUNC_JSON_MAX_BYTES}`);
    return result;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch (error) {
    result.problems.push(`/urunc.json is not valid JSON: ${(error as Error).message}`);
    return result;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    result.problems.push('/urunc.json is not a JSON object');
    return result;
  }
  for (const [fullKey, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (!fullKey.startsWith(URUNC_PREFIX)) continue;
    const key = fullKey.slice(URUNC_PREFIX.length);
    if (typeof value !== 'string') {
      if (URUNC_JSON_KEYS.has(key)) result.problems.push(`/urunc.json: ${fullKey} is not a string, so urunc cannot parse the file`);
      continue;
    }
    result.raw[key] = value;
    const decoded = goBase64(value);
    if (decoded === undefined) {
      if (URUNC_JSON_KEYS.has(key)) {
        result.problems.push(`/urunc.json: ${fullKey} ${JSON.stringify(value)} is not base64, so urunc refuses the file (every value must be base64-encoded)`);
      }
      result.values[key] = value;
      continue;
    }
    if (looksPlain(value, key)) {
      result.problems.push(`/urunc.json: ${fullKey} ${JSON.stringify(value)} is plain text; urunc base64-decodes it to ${JSON.stringify(decoded)}`);
    }
    result.values[key] = decoded;
  }
  return result;
}

function nonEmpty(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ''));
}

function checkFile(rootfs: FlatRootfs, key: FileCheck['key'], value: string): FileCheck {
  const path = normalizeImagePath(value);
  const resolved = resolveFile(rootfs, path);
  if (!resolved.entry) return { key, path: value, exists: false, problem: `${value} is ${resolved.problem ?? 'missing'} in the image rootfs` };
  const entry = resolved.entry;
  const check: FileCheck = { key, path: value, exists: true, resolvedPath: entry.path, size: entry.size };
  const header = entry.data ?? Buffer.alloc(0);
  check.type = sniffFileType(header);
  if (key === 'binary') {
    const kernel = sniffKernel(header);
    check.detail = kernel.detail;
    if (kernel.architecture) check.architecture = kernel.architecture;
    const solo5 = readSolo5NotesFromHeader(header, entry.size);
    if (solo5 && (solo5.devices || solo5.abi || solo5.problems.length > 0)) check.solo5 = solo5;
  } else {
    check.detail = FILE_TYPE_DETAILS[check.type] ?? check.type;
  }
  if (entry.size === 0) check.problem = `${value} is empty`;
  return check;
}

const FILE_TYPE_DETAILS: Partial<Record<FileType, string>> = {
  'cpio-newc': 'cpio archive (newc)',
  'cpio-odc': 'cpio archive (odc)',
  ext: 'ext2/3/4 file system',
  squashfs: 'squashfs file system',
  iso9660: 'ISO 9660 image',
  erofs: 'EROFS file system',
  gzip: 'gzip-compressed data',
  zstd: 'zstd-compressed data',
  xz: 'xz-compressed data',
  tar: 'tar archive',
  elf: 'ELF file',
  bzimage: 'x86 bzImage',
  'arm64-image': 'arm64 Linux Image',
  unknown: 'unknown contents',
};

interface PathVerdict {
  errors: Message[];
  warnings: Message[];
}

/** What `release` does with these values on one path: refusals are errors, doubtful points warnings. */
function judgeValues(
  values: Record<string, string>,
  rootfs: FlatRootfs,
  config: SourceImageConfig,
  processArgs: string[],
  release: UruncRelease,
  source: Exclude<EngineValueSource, 'none'>,
): PathVerdict & { files: FileCheck[] } {
  const errors: Message[] = [];
  const warnings: Message[] = [];
  const set = nonEmpty(values);
  if (source === 'uruncJson') {
    // urunc never reads these from /urunc.json.
    for (const key of SPEC_ONLY_KEYS) {
      if (set[key] === undefined) continue;
      warnings.push({ message: `/urunc.json carries ${key}, which urunc reads from the OCI spec's annotations only`, hint: 'put it in the manifest annotations and labels' });
      delete set[key];
    }
  }
  for (const finding of checkUruncValues(set, {}, release)) {
    const message = finding.hint ? { message: finding.message, hint: finding.hint } : { message: finding.message };
    (finding.severity === 'error' ? errors : warnings).push(message);
  }
  const files: FileCheck[] = [];
  for (const key of FILE_KEYS) {
    const value = set[key];
    if (value === undefined || pathProblem(key, value) !== undefined) continue;
    const check = checkFile(rootfs, key, value);
    files.push(check);
    if (!check.exists) errors.push({ message: `com.urunc.unikernel.${key}: ${check.problem}`, hint: 'point it at a file the image contains' });
    else if (check.problem) errors.push({ message: `com.urunc.unikernel.${key}: ${check.problem}` });
  }
  const guest = set.unikernelType;
  const binary = files.find((f) => f.key === 'binary');
  if (binary?.exists && binary.type !== undefined && !['elf', 'bzimage', 'arm64-image'].includes(binary.type)) {
    warnings.push({ message: `the binary ${binary.path} does not look like a kernel: ${binary.detail}` });
  }
  const imageArchitecture = config.architecture;
  if (binary?.architecture && imageArchitecture && binary.architecture !== imageArchitecture) {
    // urunc starts the monitor of the host the image was pulled for (its config's architecture): that monitor cannot boot this kernel.
    errors.push({ message: `the image is for ${imageArchitecture}, but its kernel ${binary.path} is built for ${binary.architecture}`, hint: `give the ${imageArchitecture} image a kernel built for ${imageArchitecture}, or set its platform to linux/${binary.architecture}` });
  }
  if (binary?.solo5) for (const message of adviseSolo5(binary.solo5, set, release).warnings) warnings.push({ message });
  const initrd = files.find((f) => f.key === 'initrd');
  if (initrd?.exists && initrd.type !== undefined && !['cpio-newc', 'gzip', 'zstd', 'xz'].includes(initrd.type) && guest === 'linux') {
    warnings.push({ message: `the initrd ${initrd.path} is ${initrd.detail}; Linux expects a (compressed) newc cpio archive` });
  }
  const block = files.find((f) => f.key === 'block');
  if (block?.exists && (guest === 'linux' || guest === 'rumprun') && block.type !== 'ext') {
    warnings.push({ message: `the block image ${block.path} is ${block.detail}; ${guest} mounts ext2/3/4` });
  }
  if (guest === 'linux' && !readsCmdline(release) && processArgs.length > 1 && processArgs[0] === '') {
    warnings.push({
      message: `the process args ${JSON.stringify(processArgs)} start with an empty one: ${releaseName(release)} then writes no init= and drops the rest, so the kernel runs its default init without them`,
      hint: 'name the init first, e.g. ["/init", ...]',
    });
  }
  const cmdline = set.cmdline ?? '';
  if (guest === 'linux' && (readsCmdline(release) ? cmdline === '' && processArgs.length === 0 : processArgs.length === 0)) {
    if (readsCmdline(release)) {
      errors.push({ message: `${releaseName(release)} takes the Linux init from cmdline, and the image has none`, hint: 'set cmdline (and Cmd) to the init and its arguments, e.g. /init' });
    } else {
      const message = `the image has no Entrypoint or Cmd: ${releaseName(release)} takes the Linux init from them and refuses ("no init was specified")`;
      if (cmdline !== '') errors.push({ message: `${message}; only urunc < 0.7 uses the cmdline value`, hint: 'set Cmd to the init and its arguments, e.g. ["/init"]' });
      else errors.push({ message, hint: 'set Cmd to the init and its arguments, e.g. ["/init"]' });
    }
  }
  return { errors, warnings, files };
}

function dedupe(messages: Message[]): Message[] {
  const seen = new Set<string>();
  return messages.filter((m) => (seen.has(m.message) ? false : (seen.add(m.message), true)));
}

/** The name `command` suggestions use: the reference for registry and daemon sources, else IMAGE. */
function defaultImageName(source: ImageSource): string {
  if (source.transport === 'docker') return source.name.replace(/^docker:\/\//, '');
  if (source.transport === 'docker-daemon') return source.name.replace(/^docker-daemon:/, '');
  return 'IMAGE';
}

/** Reads what inspect needs from the source: manifest, config, and a few files of the flattened rootfs. */
export async function inspectSource(source: ImageSource, options: InspectOptions = {}): Promise<InspectReport> {
  const { manifest, digest: manifestDigest } = await source.manifest();
  const { config, digest: configDigest } = await source.config();
  const annotations = uruncValues(manifest.annotations);
  const labels = uruncValues(config.config?.Labels);

  // Capture the headers of every file a value may name; /urunc.json whole.
  const wanted = new Set<string>();
  for (const set of [annotations, labels]) {
    for (const key of FILE_KEYS) {
      const value = set.values[key];
      if (value) wanted.add(normalizeImagePath(value));
    }
  }
  const capture = (paths: Set<string>) => (path: string): Capture | undefined => {
    if (path === URUNC_JSON) return { kind: 'content', maxBytes: URUNC_JSON_MAX_BYTES };
    return paths.has(path) ? { kind: 'header', bytes: HEADER_BYTES } : undefined;
  };
  let rootfs = await flattenRootfs(source, { capture: capture(wanted) });
  let uruncJson = readUruncJson(rootfs);

  // A second pass for files only urunc.json or a symlink names (rare).
  const missing = new Set<string>();
  const candidates = new Set(wanted);
  for (const key of FILE_KEYS) if (uruncJson.values[key]) candidates.add(normalizeImagePath(uruncJson.values[key] as string));
  for (const path of [...candidates, URUNC_JSON]) {
    const resolved = resolveFile(rootfs, path);
    if (resolved.entry && resolved.entry.data === undefined) missing.add(resolved.entry.path);
  }
  if (missing.size > 0) {
    rootfs = await flattenRootfs(source, { capture: capture(new Set([...candidates, ...missing])) });
    uruncJson = readUruncJson(rootfs);
  }
  return judge({
    source,
    manifestDigest,
    configDigest,
    config,
    layers: manifest.layers.length,
    annotations,
    labels,
    uruncJson,
    rootfs,
    release: options.release ?? NEWEST_URUNC_RELEASE,
    imageName: options.imageName ?? defaultImageName(source),
  });
}

interface Gathered {
  source: ImageSource;
  manifestDigest: string | undefined;
  configDigest: string;
  config: SourceImageConfig;
  layers: number;
  annotations: ValueSet;
  labels: ValueSet;
  uruncJson: UruncJsonSet;
  rootfs: FlatRootfs;
  release: UruncRelease;
  imageName: string;
}

/** The order `effective` prefers engine paths in: the ones that read the most places first. */
const EFFECTIVE_ORDER = ['containerd', 'cri', 'podman', 'docker'] as const;

function judge(g: Gathered): InspectReport {
  const { annotations, labels, uruncJson, config, rootfs, release } = g;
  const entrypoint = config.config?.Entrypoint ?? [];
  const cmd = config.config?.Cmd ?? [];
  const env = config.config?.Env ?? [];
  const processArgs = [...entrypoint, ...cmd];
  const errors: Message[] = [];
  const warnings: Message[] = [];

  // Agreement between the three places.
  const keys = [...new Set([...Object.keys(annotations.values), ...Object.keys(labels.values), ...Object.keys(uruncJson.values)])].sort();
  const differences: Difference[] = [];
  for (const key of keys) {
    if (SPEC_ONLY_KEYS.includes(key) && uruncJson.values[key] === undefined && !annotations.found && !labels.found) continue;
    const seen: Difference = { key };
    if (annotations.found) seen.annotations = annotations.values[key] ?? '';
    if (labels.found) seen.labels = labels.values[key] ?? '';
    // lapin leaves vAccel and RPCAddress out of /urunc.json: urunc reads them from the spec only.
    if (uruncJson.found && uruncJson.problems.length === 0 && !(SPEC_ONLY_KEYS.includes(key) && uruncJson.values[key] === undefined)) seen.uruncJson = uruncJson.values[key] ?? '';
    const distinct = new Set([seen.annotations, seen.labels, seen.uruncJson].filter((v) => v !== undefined));
    if (distinct.size > 1) differences.push(seen);
  }

  // Every engine on every release line.
  const judgedCache = new Map<string, PathVerdict & { files: FileCheck[] }>();
  const judgeOnce = (values: Record<string, string>, on: UruncRelease, source: Exclude<EngineValueSource, 'none'>): PathVerdict & { files: FileCheck[] } => {
    const key = JSON.stringify([on, source, values]);
    let verdict = judgedCache.get(key);
    if (!verdict) {
      verdict = judgeValues(values, rootfs, config, processArgs, on, source);
      judgedCache.set(key, verdict);
    }
    return verdict;
  };
  const inputs: EngineInputs = {
    annotations: annotations.values,
    labels: labels.values,
    uruncJson,
    processArgs,
    imageName: g.imageName,
    refusals: (values, on, source) => judgeOnce(values, on, source).errors.map((e) => e.message),
  };
  const resolved: ResolvedEngine[] = [];
  for (const on of ['pre-0.7', '0.7', '0.8'] as const) for (const engine of ENGINES) resolved.push(resolveEngine(inputs, engine, on));
  const current = resolved.filter((r) => r.verdict.release === release);
  const runnable = current.some((r) => r.verdict.runs);

  const byEngine = (engine: string): ResolvedEngine | undefined => current.find((r) => r.verdict.engine === engine);
  const chosen = EFFECTIVE_ORDER.map(byEngine).find((r) => r?.verdict.runs) ?? EFFECTIVE_ORDER.map(byEngine).find((r) => r && r.verdict.source !== 'none');
  const effectiveSource: EngineValueSource = chosen?.verdict.source ?? 'none';
  const effectiveValues = chosen?.values ?? {};
  const chosenVerdict = chosen && chosen.verdict.source !== 'none' ? judgeOnce(chosen.values, release, chosen.verdict.source) : undefined;

  const anyValues = annotations.found || labels.found || uruncJson.found;
  if (!anyValues) {
    errors.push({
      message: 'not a unikernel image: no com.urunc.unikernel.* values in the manifest annotations, the config labels or /urunc.json',
      hint: 'urunc treats it as an ordinary container; package a unikernel with lapin build',
    });
  } else if (!runnable) {
    // One error per distinct reason, naming the engines it stops.
    const stopped = new Map<string, string[]>();
    for (const r of current) {
      const reason = r.verdict.reasons.join('; ');
      if (reason !== '') stopped.set(reason, [...(stopped.get(reason) ?? []), r.verdict.engine]);
    }
    for (const [reason, engines] of stopped) errors.push({ message: `${engines.join(', ')}: ${reason}` });
    if (labels.found && hasRequired(labels.values) && !hasRequired(annotations.values) && !uruncJson.found && release !== '0.8') {
      errors.push({ message: `the urunc values are only in the config labels, which ${releaseName(release)} does not read`, hint: 'urunc 0.8 reads them through its containerd shim; or rebuild with lapin build, which writes annotations, labels and /urunc.json' });
    }
    if (annotations.found && !hasRequired(annotations.values)) errors.push({ message: `the manifest annotations lack ${missingRequired(annotations.values).join(', ')}` });
  } else {
    for (const r of current) {
      if (!r.verdict.runs) warnings.push({ message: `on ${releaseName(release)}, ${r.verdict.engine} does not run it: ${r.verdict.reasons.join('; ')}` });
    }
  }
  // Doubtful points of every value set the chosen release takes.
  for (const r of current) if (r.verdict.source !== 'none') warnings.push(...judgeOnce(r.values, release, r.verdict.source).warnings);
  for (const difference of differences) {
    const parts = (['annotations', 'labels', 'uruncJson'] as const).filter((o) => difference[o] !== undefined).map((o) => `${o} ${JSON.stringify(difference[o])}`);
    warnings.push({ message: `the sources disagree on ${difference.key}: ${parts.join(', ')}`, hint: 'different engines would boot different things; write the same value everywhere' });
  }

  // The command line.
  const effective = nonEmpty(effectiveValues);
  const cmdline = effectiveValues.cmdline ?? uruncJson.values.cmdline ?? annotations.values.cmdline ?? labels.values.cmdline;
  const consistent = cmdline === undefined || processArgs.length === 0 || cmdline === processArgs.join(' ');
  if (!consistent) {
    warnings.push({ message: `old and new urunc pass different arguments: cmdline ${JSON.stringify(cmdline)} (urunc < 0.7), process args ${JSON.stringify(processArgs.join(' '))} (urunc >= 0.7)` });
  }
  let guestLine: string | undefined;
  let guestProblem: string | undefined;
  if (effective.unikernelType && GUESTS.includes(effective.unikernelType)) {
    try {
      guestLine = guestCommandLine({
        guest: effective.unikernelType,
        monitor: effective.hypervisor ?? 'qemu',
        kernel: effective.binary ?? '',
        initrd: effective.initrd,
        block: effective.block,
        blkMntPoint: effective.blkMntPoint,
        mountRootfs: parseGoBool(effective.mountRootfs ?? effective.useDMBlock ?? '') === true,
        unikernelVersion: effective.unikernelVersion,
        processArgs,
        env,
        accel: 'kvm',
        architecture: config.architecture === 'arm64' ? 'arm64' : 'amd64',
      }).text;
    } catch (error) {
      guestProblem = (error as Error).message;
    }
  }

  const guest = effective.unikernelType;
  const monitor = effective.hypervisor;
  const pathChecks: PathCheck[] = PATH_KEYS.filter((key) => effective[key] !== undefined).map((key) => {
    const problem = pathProblem(key, effective[key] as string);
    return { key, value: effective[key] as string, ...(problem ? { problem } : {}) };
  });
  const storageType = rootfsType({
    initrd: effective.initrd,
    block: effective.block,
    blkMntPoint: effective.blkMntPoint,
    mountRootfs: parseGoBool(effective.mountRootfs ?? effective.useDMBlock ?? '') === true,
  });
  return {
    schemaVersion: INSPECT_SCHEMA_VERSION,
    source: { name: g.source.name, transport: g.source.transport },
    image: {
      ...(g.manifestDigest ? { manifestDigest: g.manifestDigest } : {}),
      configDigest: g.configDigest,
      ...(config.architecture ? { architecture: config.architecture } : {}),
      ...(config.os ? { os: config.os } : {}),
      layers: g.layers,
      entrypoint,
      cmd,
      env,
    },
    values: { annotations, labels, uruncJson },
    agreement: { agree: differences.length === 0, differences },
    effective: { source: effectiveSource, values: effectiveValues },
    pair: {
      ...(guest ? { guest } : {}),
      ...(monitor ? { monitor } : {}),
      accepted: guest !== undefined && monitor !== undefined && (MONITOR_GUESTS[monitor] ?? []).includes(guest),
      monitorsForGuest: guest ? MONITORS.filter((m) => MONITOR_GUESTS[m]?.includes(guest)) : [],
    },
    paths: pathChecks,
    files: chosenVerdict?.files ?? [],
    storage: storageType === 'initrd' ? 'initrd' : storageType === 'block' ? 'block' : storageType === '9pfs' ? 'container rootfs' : 'none',
    commandLine: {
      ...(cmdline !== undefined ? { cmdline } : {}),
      processArgs,
      ...(guestLine !== undefined ? { guest: guestLine } : {}),
      ...(guestProblem !== undefined ? { guestProblem } : {}),
      consistent,
    },
    urunc: { release, engines: resolved.map((r) => r.verdict) },
    errors: dedupe(errors),
    warnings: dedupe(warnings),
    runnable,
  };
}

/** Opens SOURCE (skopeo's transport syntax) and inspects it. */
export async function inspect(sourceText: string, options: OpenSourceOptions & InspectOptions = {}): Promise<InspectReport> {
  const { release, imageName, ...open } = options;
  const source = await openSource(sourceText, open);
  try {
    return await inspectSource(source, { ...(release ? { release } : {}), ...(imageName ? { imageName } : {}) });
  } finally {
    await source.close();
  }
}
