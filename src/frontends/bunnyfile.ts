/**
 * The bunnyfile frontend: bunny's YAML build file (https://github.com/nubificus/bunny,
 * hops/) compiled into a BuildPlan. lapin follows bunny's rules and output
 * layout, and is stricter where bunny silently ignores input (unknown keys,
 * wrong value types, a second YAML document).
 */
import {
  LineCounter,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseAllDocuments,
  visit,
  type Document,
  type Node as YamlNode,
  type Scalar,
} from 'yaml';
import { LapinError, type SourcePosition } from '../errors.js';
import { didYouMean } from '../plan/similar.js';
import { MAX_NESTING, checkDefinitionSize, positionOf, tooDeep } from './limits.js';
import { yamlTooDeep } from './yaml-depth.js';
import { platformArgs, type PlatformInputs } from './platform-args.js';
import { substitutePlatformValues } from './platform-vars.js';
import { URUNC_KEYS } from '../plan/urunc-keys.js';
import { parseByteSize } from '../rootfs/size.js';
import {
  ARCHITECTURE_ALIASES,
  emptyConfig,
  type Architecture,
  type BasePlan,
  type BuildPlan,
  type ConfigPlan,
  type CopyOp,
  type FsOp,
  type Located,
  type PlanWarning,
  type RootfsFileCheck,
  type UruncInput,
} from '../plan/types.js';

/** Where bunny puts a kernel or rootfs it copies into the image. */
export const BUNNY_KERNEL_PATH = '/.boot/kernel';
export const BUNNY_ROOTFS_PATH = '/.boot/rootfs';

/** The newest bunnyfile version bunny (and lapin) understands. */
const SUPPORTED_VERSION = [0, 1];

const TOP_KEYS = ['version', 'platforms', 'kernel', 'rootfs', 'cmd', 'entrypoint', 'envs', 'cmdline'];
const PLATFORM_KEYS = ['framework', 'monitor', 'version', 'architecture'];
const KERNEL_KEYS = ['from', 'path'];
const ROOTFS_KEYS = ['from', 'path', 'type', 'include', 'size'];
const INCLUDE_KEYS = ['from', 'source', 'destination'];

export type RootfsType = 'initrd' | 'block' | 'raw';
const ROOTFS_TYPES: readonly RootfsType[] = ['initrd', 'block', 'raw'];

/** Rootfs types each framework accepts (bunny hops/unikraft.go, hops/generic.go). */
export function supportedRootfsTypes(framework: string): readonly RootfsType[] {
  return framework === 'unikraft' ? ['initrd', 'raw'] : ROOTFS_TYPES;
}

/** The type used when `rootfs.type` is absent: unikraft initrd, everything else raw. */
export function defaultRootfsType(framework: string): RootfsType {
  return framework === 'unikraft' ? 'initrd' : 'raw';
}


/** Docker-style image reference: [domain[:port]/]path[:tag][@digest]. */
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const IMAGE_REFERENCE = new RegExp(
  `^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*` +
    '(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$',
);

/** A value from the file with where it was written. */
interface Field<T> {
  value: T;
  at: SourcePosition;
}

/** One `key: value` of a mapping; `value` is null when the key has no value. */
interface Entry {
  keyAt: SourcePosition;
  value: YamlNode | null;
  /** Where the value starts, or the key when there is no value. */
  valueAt: SourcePosition;
}

type Source = { kind: 'local' } | { kind: 'scratch' } | { kind: 'image'; reference: string };

interface Include {
  from: Source;
  source: string;
  destination: string;
  at: SourcePosition;
}

/** Reads one YAML document with positions and turns shape errors into LapinErrors. */
class Reader {
  /** TARGETARCH and the others, once the target platform is known. */
  platformValues: ReadonlyMap<string, string> = new Map();
  readonly warnings: PlanWarning[] = [];

  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
    private readonly text: string,
  ) {}

  at(offset: number): SourcePosition {
    const clamped = Math.max(0, Math.min(offset, this.text.length));
    const { line, col } = this.lines.linePos(clamped);
    return { file: this.file, line, column: col };
  }

  nodeAt(node: YamlNode | null | undefined, fallback: SourcePosition): SourcePosition {
    const start = node?.range?.[0];
    return start === undefined ? fallback : this.at(start);
  }

  fail(message: string, at: SourcePosition, hint?: string): never {
    throw new LapinError(message, hint === undefined ? { at } : { at, hint });
  }

  /** Follows `*alias` to its anchored node. */
  resolve(node: unknown, at: SourcePosition): YamlNode | null {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      const target = node.resolve(this.doc);
      if (target === undefined) this.fail(`unknown alias *${node.source}`, at);
      return target;
    }
    return node as YamlNode;
  }

  /** An empty value (`key:`, `key: ~`, `key: null`) counts as absent, as in bunny. */
  isEmpty(node: YamlNode | null): boolean {
    return node === null || (isScalar(node) && node.value === null);
  }

  /** A mapping's entries by key; unknown and non-scalar keys are errors. */
  mapping(node: YamlNode, at: SourcePosition, what: string, known: readonly string[]): Map<string, Entry> {
    if (!isMap(node)) this.fail(`${what} must be a mapping of keys to values`, at, `expected keys: ${known.join(', ')}`);
    const entries = new Map<string, Entry>();
    for (const pair of node.items) {
      const keyNode = this.resolve(pair.key, at);
      const keyAt = this.nodeAt(keyNode, at);
      if (keyNode === null || !isScalar(keyNode) || keyNode.value === null) {
        this.fail(`${what} has a key that is not a plain name`, keyAt, `expected keys: ${known.join(', ')}`);
      }
      const key = this.scalarText(keyNode);
      if (!known.includes(key)) {
        this.fail(`unknown key "${key}" in ${what}`, keyAt, `${didYouMean(key, known) ?? ''} known keys: ${known.join(', ')}`.trimStart());
      }
      const value = this.resolve(pair.value, keyAt);
      entries.set(key, { keyAt, value, valueAt: this.nodeAt(value, keyAt) });
    }
    return entries;
  }

  /** A scalar as the string bunny's YAML decoder would give (numbers and booleans as written). */
  scalarText(node: Scalar): string {
    if (typeof node.value === 'string') return node.value;
    return node.source ?? String(node.value);
  }

  /** A string field; undefined when absent or empty. */
  string(entry: Entry | undefined, name: string): Field<string> | undefined {
    if (entry === undefined || this.isEmpty(entry.value)) return undefined;
    const node = entry.value;
    if (node === null || !isScalar(node)) this.fail(`${name} must be a string`, entry.valueAt);
    const value = this.scalarText(node);
    return value === '' ? undefined : { value, at: entry.valueAt };
  }

  /**
   * A path or image reference, with `${TARGETARCH}` and its siblings replaced
   * (platform-vars.ts). `node` is where the value is written, to point a
   * warning at the `${...}` left as written.
   */
  expand(field: Field<string>, node: YamlNode | null): Field<string> {
    const { value, leftAsWritten } = substitutePlatformValues(field.value, this.platformValues);
    const range = node?.range;
    const raw = range === undefined || range === null ? '' : this.text.slice(range[0], range[1]);
    let cursor = 0;
    for (const item of leftAsWritten) {
      const found = raw.indexOf(item.text, cursor);
      cursor = found < 0 ? cursor : found + 1;
      const at = found < 0 || range === undefined || range === null ? field.at : this.at(range[0] + found);
      this.warnings.push({
        message: `${item.text} is left as written: a bunnyfile replaces only \${TARGETPLATFORM}, \${TARGETOS}, \${TARGETARCH} and \${TARGETVARIANT}${item.meant === undefined ? '' : ` (did you mean \${${item.meant}}?)`}`,
        at,
      });
    }
    return value === field.value ? field : { value, at: field.at };
  }

  /** A string field that names a path or an image, expanded as `expand` does. */
  pathString(entry: Entry | undefined, name: string): Field<string> | undefined {
    const field = this.string(entry, name);
    if (field === undefined) return undefined;
    const expanded = this.expand(field, entry?.value ?? null);
    if (expanded.value.includes('\0')) this.fail(`${name} contains a NUL byte, which no path can hold`, expanded.at, 'remove the \\0 escape');
    return expanded;
  }

  /** A list of strings; undefined when absent. */
  stringList(entry: Entry | undefined, name: string): Field<string[]> | undefined {
    if (entry === undefined || this.isEmpty(entry.value)) return undefined;
    const node = entry.value;
    if (node === null || !isSeq(node)) {
      this.fail(`${name} must be a list of strings`, entry.valueAt, `write it as a YAML list, e.g. ${name}: ["a", "b"]`);
    }
    const values = node.items.map((item) => {
      const resolved = this.resolve(item, entry.valueAt);
      const itemAt = this.nodeAt(resolved, entry.valueAt);
      if (resolved === null || !isScalar(resolved) || resolved.value === null) {
        this.fail(`each item of ${name} must be a string`, itemAt);
      }
      return this.scalarText(resolved);
    });
    return { value: values, at: entry.valueAt };
  }

  /** A required sub-mapping, or the error naming what is missing. */
  section(entries: Map<string, Entry>, key: string, known: readonly string[]): Map<string, Entry> | undefined {
    const entry = entries.get(key);
    if (entry === undefined || this.isEmpty(entry.value)) return undefined;
    return this.mapping(entry.value as YamlNode, entry.valueAt, `"${key}"`, known);
  }

  required(field: Field<string> | undefined, name: string, at: SourcePosition, hint: string): Field<string> {
    if (field === undefined) this.fail(`missing required field ${name}`, at, hint);
    return field;
  }
}

/** Parses `v0.1`-style versions the way hashicorp/go-version does (numbers, optional v, pre-release, metadata). */
function parseVersion(text: string): { segments: number[]; prerelease: boolean } | undefined {
  const match = /^v?(\d+(?:\.\d+)*)(?:-([0-9A-Za-z~-]+(?:\.[0-9A-Za-z~-]+)*)|([A-Za-z~-][0-9A-Za-z~-]*(?:\.[0-9A-Za-z~-]+)*))?(?:\+[0-9A-Za-z~-]+(?:\.[0-9A-Za-z~-]+)*)?$/.exec(text);
  if (!match?.[1]) return undefined;
  return { segments: match[1].split('.').map(Number), prerelease: match[2] !== undefined || match[3] !== undefined };
}

/** Whether `version` is not newer than what lapin supports (a pre-release sorts before its release). */
function versionSupported(version: { segments: number[]; prerelease: boolean }): boolean {
  const length = Math.max(version.segments.length, SUPPORTED_VERSION.length);
  for (let i = 0; i < length; i++) {
    const mine = version.segments[i] ?? 0;
    const supported = SUPPORTED_VERSION[i] ?? 0;
    if (mine !== supported) return mine < supported;
  }
  return true;
}

function absolute(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

function located<T>(value: T, at?: SourcePosition): Located<T> {
  return at === undefined ? { value } : { value, at };
}

function parseSource(reader: Reader, field: Field<string>, name: string): Source {
  if (field.value === 'local') return { kind: 'local' };
  if (field.value === 'scratch') return { kind: 'scratch' };
  if (!IMAGE_REFERENCE.test(field.value)) {
    reader.fail(`${name} "${field.value}" is neither "local" nor a valid image reference`, field.at, 'use local for a file in the build context, or an image like registry.example/name:tag');
  }
  return { kind: 'image', reference: field.value };
}

function parseInclude(reader: Reader, node: unknown, fallback: SourcePosition): Include {
  const resolved = reader.resolve(node, fallback);
  const at = reader.nodeAt(resolved, fallback);
  if (resolved !== null && isScalar(resolved) && resolved.value !== null) {
    // "src:dst": a local file; dst defaults to src (bunny splits at the first ':').
    const text = reader.expand({ value: reader.scalarText(resolved), at }, resolved).value;
    const colon = text.indexOf(':');
    const source = colon === -1 ? text : text.slice(0, colon);
    const destination = colon === -1 ? '' : text.slice(colon + 1);
    if (text.includes('\0')) reader.fail('include entry contains a NUL byte, which no path can hold', at, 'remove the \\0 escape');
    if (source === '') reader.fail(`include entry "${text}" has an empty source`, at, 'write it as "source:destination" or "source"');
    return { from: { kind: 'local' }, source, destination: absolute(destination === '' ? source : destination), at };
  }
  if (resolved !== null && isMap(resolved)) {
    const entries = reader.mapping(resolved, at, 'an include entry', INCLUDE_KEYS);
    const fromField = reader.pathString(entries.get('from'), 'include from');
    const source = reader.pathString(entries.get('source'), 'include source');
    const destination = reader.pathString(entries.get('destination'), 'include destination');
    if (source === undefined) reader.fail('include entry has an empty source', entries.get('source')?.valueAt ?? at, 'set source: to a file in the build context or the image');
    if (destination === undefined) reader.fail('include entry has an empty destination', entries.get('destination')?.valueAt ?? at, 'set destination: to the path inside the rootfs');
    const from = fromField === undefined ? ({ kind: 'local' } as const) : parseSource(reader, fromField, 'include from');
    if (from.kind === 'scratch') reader.fail('include from scratch has nothing to copy', fromField?.at ?? at, 'use local or an image reference');
    return { from, source: source.value, destination: absolute(destination.value), at };
  }
  return reader.fail('an include entry must be a "source:destination" string or a mapping with from, source and destination', at);
}

/** An include as a copy: from the build context, or (`from: <image>`) out of the pulled image's files. */
function includeCopy(include: Include): CopyOp {
  const fromImage = include.from.kind === 'image' ? { fromStage: include.from.reference } : {};
  return { kind: 'copy', sources: [include.source], destination: include.destination, ...fromImage, at: include.at };
}

function tooDeepYaml(at: SourcePosition): LapinError {
  return new LapinError('the bunnyfile nests lists or mappings too deeply to read', {
    at,
    hint: `a bunnyfile needs a few levels; keep it under ${MAX_NESTING}`,
  });
}

/** Compiles a bunnyfile into a BuildPlan; every problem is a LapinError with a position. */
/**
 * Where the first key a mapping repeats starts, as the yaml library's uniqueKeys finds them: scalar keys
 * are equal when their values are (===, so two NaN keys are not); other keys (aliases, collections) never are.
 */
function firstRepeatedKey(doc: Document): number | undefined {
  let first: number | undefined;
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = pair.key;
        if (!isScalar(key) || Number.isNaN(key.value)) continue;
        if (seen.has(key.value)) {
          const at = key.range?.[0] ?? 0;
          if (first === undefined || at < first) first = at;
        }
        seen.add(key.value);
      }
    },
  });
  return first;
}

export function parseBunnyfile(text: string, file: string, platforms: PlatformInputs = {}, buildArgs: Readonly<Record<string, string>> = {}): BuildPlan {
  checkDefinitionSize(text, file);
  try {
    return compileBunnyfile(text, file, platforms, buildArgs);
  } catch (error) {
    throw tooDeep(error, file);
  }
}

function compileBunnyfile(text: string, file: string, platforms: PlatformInputs, buildArgs: Readonly<Record<string, string>>): BuildPlan {
  const lines = new LineCounter();
  const deep = yamlTooDeep(text);
  if (deep !== undefined) throw tooDeepYaml(positionOf(text, deep, file));
  // The yaml library's own uniqueKeys check searches a mapping's keys for every key (16,000 keys took 5 s, a 1 MiB
  // file minutes); the same check with a set per mapping is firstRepeatedKey.
  const docs = parseAllDocuments(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const position = (offset: number): SourcePosition => {
    const { line, col } = lines.linePos(Math.max(0, Math.min(offset, text.length)));
    return { file, line, column: col };
  };
  const start: SourcePosition = { file, line: 1, column: 1 };
  if (!Array.isArray(docs) || docs.length === 0) {
    throw new LapinError('the bunnyfile is empty', { at: start, hint: 'a bunnyfile needs at least version, platforms and kernel' });
  }
  for (const doc of docs) {
    const repeated = firstRepeatedKey(doc);
    let error: { message: string; pos: [number, number] } | undefined = doc.errors[0];
    if (repeated !== undefined && (error === undefined || repeated <= error.pos[0])) error = { message: 'Map keys must be unique', pos: [repeated, repeated] };
    if (error !== undefined) {
      const message = error.message.split('\n')[0] ?? error.message;
      // The yaml library reports its own stack overflow as a syntax error.
      if (/call stack/i.test(message)) throw tooDeepYaml(position(error.pos[0]));
      throw new LapinError(`YAML syntax error: ${message}`, { at: position(error.pos[0]) });
    }
  }
  const second = docs[1];
  if (second !== undefined) {
    throw new LapinError('a bunnyfile holds one YAML document, found more', {
      at: position(second.range[0]),
      hint: 'remove the "---" separator and the documents after it',
    });
  }
  const doc = docs[0] as Document;
  const reader: Reader = new Reader(file, doc, lines, text);
  const contents = reader.resolve(doc.contents, start);
  if (contents === null || reader.isEmpty(contents)) {
    throw new LapinError('the bunnyfile is empty', { at: start, hint: 'a bunnyfile needs at least version, platforms and kernel' });
  }
  const topAt = reader.nodeAt(contents, start);
  const top = reader.mapping(contents, topAt, 'the bunnyfile', TOP_KEYS);

  // version: required, at most v0.1 (bunny hops/validate.go CheckBunnyfileVersion).
  const version = reader.required(reader.string(top.get('version'), 'version'), 'version', topAt, 'add "version: v0.1" at the top');
  const parsedVersion = parseVersion(version.value);
  if (parsedVersion === undefined) reader.fail(`cannot parse version "${version.value}"`, version.at, 'use version: v0.1');
  if (!versionSupported(parsedVersion)) reader.fail(`unsupported bunnyfile version ${version.value}`, version.at, 'use v0.1 or earlier');

  // platforms
  const platformsAt = top.get('platforms')?.valueAt ?? topAt;
  const platformSection = reader.section(top, 'platforms', PLATFORM_KEYS) ?? new Map<string, Entry>();
  const framework = reader.required(reader.string(platformSection.get('framework'), 'platforms.framework'), 'platforms.framework', platformsAt, 'set platforms.framework, e.g. unikraft, rumprun, mirage, mewz, linux or hermit');
  const monitor = reader.required(reader.string(platformSection.get('monitor'), 'platforms.monitor'), 'platforms.monitor', platformsAt, 'set platforms.monitor, e.g. qemu, firecracker, hvt, spt or cloud-hypervisor');
  const frameworkVersion = reader.string(platformSection.get('version'), 'platforms.version');
  const architectureField = reader.string(platformSection.get('architecture'), 'platforms.architecture');
  let architecture: Located<Architecture> | undefined;
  if (architectureField !== undefined) {
    const arch = ARCHITECTURE_ALIASES[architectureField.value];
    if (arch === undefined) reader.fail(`unknown architecture "${architectureField.value}"`, architectureField.at, `use one of ${Object.keys(ARCHITECTURE_ALIASES).join(', ')}`);
    architecture = { value: arch, at: architectureField.at };
  }
  // ${TARGETARCH} is --platform's, else platforms.architecture's (bunny's "target architecture"), else the build machine's.
  const targetPlatform = platforms.platform ?? (architecture === undefined ? undefined : `linux/${architecture.value}`);
  reader.platformValues = platformArgs({ ...platforms, ...(targetPlatform === undefined ? {} : { platform: targetPlatform }) }, buildArgs);

  // kernel
  const kernelAt = top.get('kernel')?.valueAt ?? topAt;
  const kernelSection = reader.section(top, 'kernel', KERNEL_KEYS) ?? new Map<string, Entry>();
  const kernelFromField = reader.required(reader.pathString(kernelSection.get('from'), 'kernel.from'), 'kernel.from', kernelAt, 'set kernel.from to local or an image reference');
  const kernelPath = reader.required(reader.pathString(kernelSection.get('path'), 'kernel.path'), 'kernel.path', kernelAt, 'set kernel.path to the kernel file');
  const kernelFrom = parseSource(reader, kernelFromField, 'kernel.from');
  if (kernelFrom.kind === 'scratch') reader.fail('kernel.from cannot be scratch', kernelFromField.at, 'use local for a file in the build context, or an image reference');

  // rootfs (bunny hops/validate.go ValidateRootfs, hops/package.go handleRootfs)
  const rootfsEntry = top.get('rootfs');
  const rootfsAt = rootfsEntry?.valueAt;
  const rootfs = reader.section(top, 'rootfs', ROOTFS_KEYS) ?? new Map<string, Entry>();
  const rootfsFromField = reader.pathString(rootfs.get('from'), 'rootfs.from');
  const rootfsFrom: Source = rootfsFromField === undefined ? { kind: 'scratch' } : parseSource(reader, rootfsFromField, 'rootfs.from');
  const rootfsFromAt = rootfsFromField?.at ?? rootfsAt ?? topAt;
  const rootfsPath = reader.pathString(rootfs.get('path'), 'rootfs.path');
  const typeField = reader.string(rootfs.get('type'), 'rootfs.type');
  // lapin-only: the size of a block image built from include ("64M", "1G" or bytes).
  const sizeField = reader.string(rootfs.get('size'), 'rootfs.size');
  let blockSize: Located<number> | undefined;
  if (sizeField !== undefined) {
    const bytes = parseByteSize(sizeField.value);
    if (bytes === undefined) reader.fail(`rootfs.size "${sizeField.value}" is not a size`, sizeField.at, 'write a byte count or a number with K, M or G, e.g. 64M');
    blockSize = { value: bytes, at: sizeField.at };
  }
  const includeEntry = rootfs.get('include');
  let includes: Include[] = [];
  if (includeEntry !== undefined && !reader.isEmpty(includeEntry.value)) {
    const node = includeEntry.value;
    if (node === null || !isSeq(node)) reader.fail('rootfs.include must be a list', includeEntry.valueAt, 'list entries as "source:destination" strings or {from, source, destination} mappings');
    includes = node.items.map((item) => parseInclude(reader, item, includeEntry.valueAt));
  }
  const includeAt = includeEntry?.keyAt ?? rootfsAt ?? topAt;

  let explicitType: RootfsType | undefined;
  if (typeField !== undefined) {
    if (!(ROOTFS_TYPES as readonly string[]).includes(typeField.value)) {
      reader.fail(`unknown rootfs type "${typeField.value}"`, typeField.at, `use one of ${ROOTFS_TYPES.join(', ')}`);
    }
    explicitType = typeField.value as RootfsType;
  }
  if (rootfsFrom.kind === 'scratch' && rootfsPath !== undefined) {
    reader.fail('rootfs.path cannot be set when rootfs.from is scratch', rootfsPath.at, 'set rootfs.from to local or an image, or use include to build the rootfs');
  }
  if (rootfsPath !== undefined && explicitType === 'raw') {
    reader.fail('rootfs.path cannot be combined with a raw rootfs', rootfsPath.at, 'a raw rootfs is a whole image; drop path, or choose type initrd or block');
  }
  if (rootfsFrom.kind === 'local' && explicitType === 'raw') {
    reader.fail('a raw rootfs cannot come from local', rootfsFromAt, 'use scratch with include, or an image reference');
  }
  if (includes.length > 0 && rootfsFrom.kind === 'local') {
    reader.fail('rootfs.include cannot be combined with rootfs.from: local', includeAt, 'bunny refuses this too: drop from and path to build the rootfs from the included files, or drop include to use the local file as it is');
  }
  // lapin (beyond bunny): an image with an explicit initrd or block type and no path is turned
  // into that rootfs file, its layers flattened and the includes added on top. With a path, the
  // path names a rootfs file inside the image (bunny's reading), which includes cannot change.
  const convertImage = rootfsFrom.kind === 'image' && (explicitType === 'initrd' || explicitType === 'block') && rootfsPath === undefined;
  if (includes.length > 0 && rootfsFrom.kind === 'image' && explicitType !== 'raw' && !convertImage) {
    if (rootfsPath !== undefined) {
      reader.fail(`rootfs.include cannot add files to ${rootfsPath.value}, a rootfs file inside the image`, includeAt, 'drop path to build the rootfs from the image\'s files plus the includes, or set type: raw');
    }
    reader.fail('adding files to an image\'s rootfs needs an explicit rootfs.type', includeAt, 'type: raw adds them to the image\'s layers; type: initrd or block builds a rootfs file from the image\'s files plus the includes');
  }
  if (explicitType !== undefined && typeField !== undefined && !supportedRootfsTypes(framework.value).includes(explicitType)) {
    reader.fail(`${framework.value} does not support a ${explicitType} rootfs`, typeField.at, `use one of ${supportedRootfsTypes(framework.value).join(', ')}`);
  }
  // lapin: a local file without a type is read at build time (cpio -> initrd, ext -> block)
  // instead of falling back to raw, which takes no file (bunny's surprise).
  const detectLocal = rootfsFrom.kind === 'local' && explicitType === undefined && defaultRootfsType(framework.value) === 'raw';
  const rootfsType = explicitType ?? defaultRootfsType(framework.value);
  const typeAt = typeField?.at ?? rootfsAt;
  if (rootfsPath !== undefined && rootfsType === 'raw' && !detectLocal) {
    // bunny checks only an explicit raw and would copy the file yet hand the guest the container rootfs.
    reader.fail(`rootfs.path needs a rootfs type: ${framework.value} defaults to raw, which takes no path`, rootfsPath.at, 'set rootfs.type to initrd or block');
  }

  const ops: FsOp[] = [];
  let base: BasePlan = { kind: 'scratch' };
  const urunc: UruncInput = {
    unikernelType: located(framework.value, framework.at),
    hypervisor: located(monitor.value, monitor.at),
  };

  // The kernel: a local file is copied to /.boot/kernel; one in an image stays where it is and that
  // image is the base, unless the rootfs also comes from an image (or is built raw from includes):
  // then, as bunny's SetBaseAndGetPaths, the kernel is copied out of its image to /.boot/kernel.
  const rootfsIsBase = rootfsFrom.kind === 'image' || (rootfsFrom.kind === 'scratch' && includes.length > 0 && rootfsType === 'raw');
  let binary: Located<string>;
  if (kernelFrom.kind === 'local') {
    ops.push({ kind: 'copy', sources: [kernelPath.value], destination: BUNNY_KERNEL_PATH, at: kernelPath.at });
    binary = { value: BUNNY_KERNEL_PATH, at: kernelPath.at };
  } else if (rootfsIsBase) {
    ops.push({ kind: 'copy', sources: [kernelPath.value], destination: BUNNY_KERNEL_PATH, fromStage: kernelFromField.value, at: kernelPath.at });
    binary = { value: BUNNY_KERNEL_PATH, at: kernelPath.at };
  } else {
    base = { kind: 'image', reference: kernelFromField.value, at: kernelFromField.at };
    binary = { value: kernelPath.value, at: kernelPath.at };
  }

  let mountRootfs = 'false';
  const rootfsKeyAt = typeAt ?? rootfsPath?.at ?? includeEntry?.keyAt ?? rootfsAt;
  const setRootfsFile = (path: string, at: SourcePosition | undefined): void => {
    if (rootfsType === 'initrd') {
      urunc.initrd = located(path, at);
    } else if (rootfsType === 'block') {
      urunc.block = located(path, at);
      urunc.blkMntPoint = located(framework.value === 'rumprun' ? '/data' : '/', at);
    }
  };

  let rootfsFile: RootfsFileCheck | undefined;
  let configFrom: Located<string> | undefined;
  if (sizeField !== undefined && !(rootfsType === 'block' && ((rootfsFrom.kind === 'scratch' && includes.length > 0) || convertImage))) {
    reader.fail('rootfs.size applies only to a block rootfs built from include or an image', sizeField.at, 'drop size, or set type: block with include or with from: <image> and no path');
  }
  if (rootfsFrom.kind === 'local') {
    if (rootfsPath === undefined) reader.fail('rootfs.path is required when rootfs.from is local', rootfsFromAt, 'set rootfs.path to the initrd or block image file');
    ops.push({ kind: 'copy', sources: [rootfsPath.value], destination: BUNNY_ROOTFS_PATH, at: rootfsPath.at });
    if (!detectLocal) setRootfsFile(BUNNY_ROOTFS_PATH, rootfsPath.at);
    // The build reads the file: it detects the kind when no type is given, and refuses a type the content contradicts.
    const declaredType = detectLocal ? undefined : (rootfsType as 'initrd' | 'block');
    const declaredAt = typeField?.at ?? rootfsPath.at;
    rootfsFile = {
      path: BUNNY_ROOTFS_PATH,
      allowed: supportedRootfsTypes(framework.value).filter((t): t is 'initrd' | 'block' => t !== 'raw'),
      blockMountPoint: framework.value === 'rumprun' ? '/data' : '/',
      framework: framework.value,
      at: rootfsPath.at,
      ...(declaredType === undefined ? {} : { declared: located(declaredType, declaredAt) }),
    };
  } else if (convertImage) {
    // The image is read, not built on: the new image holds the kernel and the rootfs file made from it,
    // and the image's config (the app's Cmd, Env, WorkingDir...) is kept.
    const baseImage = located(rootfsFrom.reference, rootfsFromAt);
    configFrom = baseImage;
    const entries = includes.map(includeCopy);
    if (rootfsType === 'initrd') {
      ops.push({ kind: 'initrd', destination: BUNNY_ROOTFS_PATH, baseImage, entries, at: rootfsFromAt });
    } else {
      ops.push({
        kind: 'block',
        destination: BUNNY_ROOTFS_PATH,
        baseImage,
        entries,
        filesystem: framework.value === 'linux' ? 'ext4' : 'ext2',
        ...(blockSize === undefined ? {} : { size: blockSize }),
        at: rootfsFromAt,
      });
    }
    setRootfsFile(BUNNY_ROOTFS_PATH, typeAt ?? rootfsFromAt);
  } else if (rootfsFrom.kind === 'image') {
    // bunny makes the rootfs image the base (its layers and config kept); an image kernel was copied above.
    base = { kind: 'image', reference: rootfsFrom.reference, at: rootfsFromAt };
    if (rootfsType === 'raw') {
      ops.push(...includes.map(includeCopy));
      mountRootfs = 'true';
    } else {
      if (rootfsPath === undefined) {
        reader.fail(`rootfs.path is required for a ${rootfsType} rootfs from an image`, rootfsFromAt, `set rootfs.path to the ${rootfsType} file inside ${rootfsFrom.reference}, or set type: ${rootfsType} to build it from the image's files`);
      }
      setRootfsFile(rootfsPath.value, rootfsPath.at);
    }
  } else if (includes.length > 0) {
    // Built from scratch out of the included files.
    if (rootfsType === 'initrd') {
      ops.push({ kind: 'initrd', destination: BUNNY_ROOTFS_PATH, entries: includes.map(includeCopy), at: includeAt });
      setRootfsFile(BUNNY_ROOTFS_PATH, includeAt);
    } else if (rootfsType === 'block') {
      // Linux mounts ext4; rumprun's NetBSD driver and the others get plain ext2.
      ops.push({
        kind: 'block',
        destination: BUNNY_ROOTFS_PATH,
        entries: includes.map(includeCopy),
        filesystem: framework.value === 'linux' ? 'ext4' : 'ext2',
        ...(blockSize === undefined ? {} : { size: blockSize }),
        at: includeAt,
      });
      setRootfsFile(BUNNY_ROOTFS_PATH, includeAt);
    } else {
      ops.push(...includes.map(includeCopy));
      mountRootfs = 'true';
    }
  } else if (explicitType === 'initrd' || explicitType === 'block') {
    // bunny writes an empty initrd/block value here; say so instead of building a rootfs-less image.
    reader.fail(`a ${explicitType} rootfs needs content`, typeField?.at ?? includeAt, 'add include entries, or set from: local with path');
  } else if (rootfsType === 'raw' && rootfsEntry !== undefined) {
    // A rootfs section that names no content asks for the container rootfs itself.
    mountRootfs = 'true';
  }
  // Without a rootfs section bunny's parser would still default to raw (mountRootfs=true), which
  // hands a kernel-only rootfs to the guest; lapin follows bunny's intent (its own tests) instead.


  urunc.binary = binary;
  urunc.mountRootfs = located(mountRootfs, mountRootfs === 'true' ? rootfsKeyAt : undefined);
  if (frameworkVersion !== undefined) urunc.unikernelVersion = located(frameworkVersion.value, frameworkVersion.at);

  // cmd; legacy cmdline is split on spaces when cmd is empty (bunny hops/parse_file.go).
  const config: ConfigPlan = emptyConfig();
  const cmd = reader.stringList(top.get('cmd'), 'cmd');
  const entrypoint = reader.stringList(top.get('entrypoint'), 'entrypoint');
  const envs = reader.stringList(top.get('envs'), 'envs');
  const cmdlineEntry = top.get('cmdline');
  const cmdline = reader.string(cmdlineEntry, 'cmdline');
  let effectiveCmd = cmd !== undefined && cmd.value.length > 0 ? cmd : undefined;
  if (effectiveCmd !== undefined && cmdline !== undefined && cmdline.value !== effectiveCmd.value.join(' ')) {
    // bunny drops cmdline silently here; the Containerfile and args.nix refuse the same contradiction.
    reader.fail(`cmdline ${JSON.stringify(cmdline.value)} contradicts cmd ${JSON.stringify(effectiveCmd.value)}`, cmdline.at, 'give the command line once: as cmd, or as cmdline');
  }
  if (effectiveCmd === undefined && cmdline !== undefined) effectiveCmd = { value: cmdline.value.split(' '), at: cmdline.at };
  if (effectiveCmd !== undefined) config.cmd = { value: effectiveCmd.value, at: effectiveCmd.at };
  if (entrypoint !== undefined && entrypoint.value.length > 0) config.entrypoint = { value: entrypoint.value, at: entrypoint.at };
  urunc.cmdline = located((effectiveCmd?.value ?? []).join(' '), effectiveCmd?.at ?? cmdlineEntry?.valueAt);

  if (envs !== undefined) {
    const envEntry = top.get('envs');
    const node = envEntry?.value;
    envs.value.forEach((env, index) => {
      if (!/^[^=\s]+=/.test(env)) {
        const item = node !== null && node !== undefined && isSeq(node) ? (node.items[index] as YamlNode | undefined) : undefined;
        reader.fail(`environment entry "${env}" is not KEY=VALUE`, reader.nodeAt(item ?? null, envs.at), 'write each entry as NAME=value');
      }
    });
    config.env = envs.value;
  }

  // In the order lapin writes them, so plans read the same way every time.
  const orderedUrunc: UruncInput = {};
  for (const key of URUNC_KEYS) {
    const value = urunc[key];
    if (value !== undefined) orderedUrunc[key] = value;
  }

  const plan: BuildPlan = {
    syntax: 'bunnyfile',
    file,
    base,
    stages: [],
    ops,
    config,
    urunc: orderedUrunc,
    annotations: {},
  };
  if (architecture !== undefined) plan.architecture = architecture;
  if (rootfsFile !== undefined) plan.rootfsFile = rootfsFile;
  if (configFrom !== undefined) plan.configFrom = configFrom;
  if (reader.warnings.length > 0) plan.warnings = reader.warnings;
  return plan;
}
