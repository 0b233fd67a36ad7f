/**
 * The args.nix frontend: bunix's attribute set (name, tag, files,
 * annotations) read as plain data and compiled into a BuildPlan.
 */
import { LapinError, type SourcePosition } from '../errors.js';
import { ARCHITECTURE_ALIASES, emptyConfig, type BuildPlan, type CopyOp, type Located } from '../plan/types.js';
import { didYouMean } from '../plan/similar.js';
import { URUNC_KEYS, URUNC_PREFIX, isUruncKey, shortUruncKey } from '../plan/urunc-keys.js';
import { checkDefinitionSize, tooDeep } from './limits.js';
import { checkUruncKey } from './urunc-names.js';
import { describeNixKind, parseNixData, type NixSet, type NixValue } from './nix-parser.js';
import { TARGET_ARGS, platformArgs, type PlatformInputs } from './platform-args.js';

const TOP_LEVEL_KEYS = ['name', 'tag', 'files', 'annotations', 'cmd', 'entrypoint', 'env', 'envs', 'labels', 'architecture'] as const;

/** urunc keys whose value is a boolean, so a Nix `true`/`false` is accepted. */
const BOOLEAN_URUNC_KEYS = new Set(['useDMBlock', 'mountRootfs']);


/**
 * Compile the text of an args.nix file into a BuildPlan. A file that is a
 * function, `{ TARGETARCH, ... }: { ... }`, is called with the platform's
 * TARGETPLATFORM, TARGETOS, TARGETARCH and TARGETVARIANT (platform-args.ts).
 */
export function parseArgsNix(text: string, file: string, platforms: PlatformInputs = {}, buildArgs: Readonly<Record<string, string>> = {}): BuildPlan {
  checkDefinitionSize(text, file);
  try {
    const plan = compileArgsNix(text, file, targetInputs(platforms, buildArgs));
    // Without --platform the target is the file's own `architecture`, as in a bunnyfile.
    if (platforms.platform === undefined && plan.architecture !== undefined && plan.architecture.value !== targetInputs(platforms, buildArgs).TARGETARCH) {
      return compileArgsNix(text, file, targetInputs({ ...platforms, platform: `linux/${plan.architecture.value}` }, buildArgs));
    }
    return plan;
  } catch (error) {
    throw tooDeep(error, file);
  }
}

function targetInputs(platforms: PlatformInputs, buildArgs: Readonly<Record<string, string>>): Record<string, string> {
  const values = platformArgs(platforms, buildArgs);
  return Object.fromEntries(TARGET_ARGS.map((name) => [name, values.get(name) ?? '']));
}

function compileArgsNix(text: string, file: string, inputs: Readonly<Record<string, string>>): BuildPlan {
  const root = parseNixData(text, file, inputs);
  if (root.kind !== 'set') {
    throw new LapinError(`args.nix must be an attribute set, found ${describeNixKind(root)}`, {
      at: root.at,
      hint: 'write { name = "..."; tag = "..."; files = { ... }; annotations = { ... }; }',
    });
  }

  const plan: BuildPlan = {
    syntax: 'nix',
    file,
    base: { kind: 'scratch' },
    stages: [],
    ops: [],
    config: emptyConfig(),
    urunc: {},
    annotations: {},
  };
  const uruncGivenAt = new Map<string, SourcePosition>();

  for (const attribute of root.attrs.values()) {
    const { name, value } = attribute;
    switch (name) {
      case 'name':
        plan.name = { value: expectString(value, "'name'"), at: value.at };
        break;
      case 'tag':
        plan.tag = { value: expectString(value, "'tag'"), at: value.at };
        break;
      case 'files':
        plan.ops.push(...readFiles(expectSet(value, "'files'", '{ "./network.hvt" = "/unikernel/network.hvt"; }')));
        break;
      case 'annotations':
        for (const entry of flattenSet(expectSet(value, "'annotations'", '{ unikernelType = "mirage"; hypervisor = "hvt"; }'))) {
          const key = checkUruncKey(shortUruncKey(entry.name) ?? entry.name, entry.name, entry.at);
          setUrunc(plan, uruncGivenAt, key, entry, 'annotation');
        }
        break;
      case 'labels':
        for (const entry of flattenSet(expectSet(value, "'labels'", '{ "org.opencontainers.image.source" = "..."; }'))) {
          if (entry.name.startsWith(URUNC_PREFIX)) {
            // A urunc value given as a label means the same as the annotation.
            const key = checkUruncKey(shortUruncKey(entry.name) ?? entry.name, entry.name, entry.at);
            setUrunc(plan, uruncGivenAt, key, entry, 'label');
          } else {
            plan.config.labels[entry.name] = expectString(entry.value, `label '${entry.name}'`);
          }
        }
        break;
      case 'cmd':
        plan.config.cmd = readStringList(value, "'cmd'");
        break;
      case 'entrypoint':
        plan.config.entrypoint = readStringList(value, "'entrypoint'");
        break;
      case 'env':
      case 'envs':
        plan.config.env.push(...readEnv(value, `'${name}'`));
        break;
      case 'architecture': {
        const given = expectString(value, "'architecture'");
        const architecture = ARCHITECTURE_ALIASES[given];
        if (architecture === undefined) {
          throw new LapinError(`unknown architecture '${given}'`, {
            at: value.at,
            hint: `use one of ${Object.keys(ARCHITECTURE_ALIASES).join(', ')}`,
          });
        }
        plan.architecture = { value: architecture, at: value.at };
        break;
      }
      default:
        // Early bunix args.nix files put the urunc keys at the top level.
        if (isUruncKey(name)) {
          setUrunc(plan, uruncGivenAt, name, { name, at: attribute.at, value }, 'attribute');
          break;
        }
        throw new LapinError(`unknown args.nix attribute '${name}'`, {
          at: attribute.at,
          hint:
            didYouMean(name, [...TOP_LEVEL_KEYS, ...URUNC_KEYS]) ??
            `known attributes: ${TOP_LEVEL_KEYS.join(', ')} (and the urunc keys, preferably inside annotations)`,
        });
    }
  }
  return plan;
}

function expectString(value: NixValue, what: string): string {
  if (value.kind === 'string') return value.value;
  throw new LapinError(`${what} must be a string, found ${describeNixKind(value)}`, {
    at: value.at,
    hint: 'write it in double quotes, e.g. "value"',
  });
}

function expectSet(value: NixValue, what: string, example: string): NixSet {
  if (value.kind === 'set') return value;
  throw new LapinError(`${what} must be an attribute set, found ${describeNixKind(value)}`, { at: value.at, hint: `e.g. ${example}` });
}

function readStringList(value: NixValue, what: string): Located<string[]> {
  if (value.kind !== 'list') {
    throw new LapinError(`${what} must be a list of strings, found ${describeNixKind(value)}`, {
      at: value.at,
      hint: 'write a list such as [ "arg1" "arg2" ]',
    });
  }
  return { value: value.items.map((item) => expectString(item, `each item of ${what}`)), at: value.at };
}

/** `[ "K=V" ... ]`, or `{ K = "V"; }` which reads naturally in Nix. */
function readEnv(value: NixValue, what: string): string[] {
  if (value.kind === 'set') {
    return [...value.attrs.values()].map((entry) => {
      checkEnvName(entry.name, entry.at);
      return `${entry.name}=${expectString(entry.value, `environment variable '${entry.name}'`)}`;
    });
  }
  if (value.kind !== 'list') {
    throw new LapinError(`${what} must be a list of "NAME=value" strings, found ${describeNixKind(value)}`, {
      at: value.at,
      hint: 'write [ "NAME=value" ] or { NAME = "value"; }',
    });
  }
  return value.items.map((item) => {
    const variable = expectString(item, `each item of ${what}`);
    const equals = variable.indexOf('=');
    if (equals === -1) {
      throw new LapinError(`environment entry '${variable}' has no '='`, { at: item.at, hint: 'write "NAME=value"' });
    }
    checkEnvName(variable.slice(0, equals), item.at);
    return variable;
  });
}

function checkEnvName(name: string, at: SourcePosition): void {
  if (name === '') throw new LapinError('environment variable with an empty name', { at, hint: 'write "NAME=value"' });
}

function readFiles(files: NixSet): CopyOp[] {
  const ops: CopyOp[] = [];
  for (const { name, at, value } of files.attrs.values()) {
    const source = contextPath(name, at);
    let destination: string;
    if (value.kind === 'string') destination = value.value;
    else if (value.kind === 'path') destination = value.text;
    else {
      const dotted = value.kind === 'set' ? flattenSet(value)[0] : undefined;
      const hint =
        dotted !== undefined
          ? `an unquoted dotted name makes nested sets in Nix; quote it: "./${name}.${dotted.name}" = "/in/image";`
          : 'write "./local/file" = "/path/in/image";';
      throw new LapinError(`the image path for '${name}' must be a string, found ${describeNixKind(value)}`, { at: value.at, hint });
    }
    if (!destination.startsWith('/')) {
      throw new LapinError(`the image path for '${name}' must be absolute, got '${destination}'`, {
        at: value.at,
        hint: `write "/${destination}"`,
      });
    }
    ops.push({ kind: 'copy', sources: [source], destination, at });
  }
  return ops;
}

/** A `files` key as a context-relative path; lapin never reads outside the context. */
function contextPath(key: string, at: SourcePosition): string {
  const outside = 'files are read from the build context; use a path relative to it, such as "./network.hvt"';
  if (key === '') throw new LapinError('empty file name in files', { at, hint: outside });
  if (key.startsWith('/') || key.startsWith('~')) {
    throw new LapinError(`file '${key}' is not relative to the build context`, { at, hint: outside });
  }
  if (key.split('/').includes('..')) {
    throw new LapinError(`file '${key}' reaches outside the build context with '..'`, { at, hint: outside });
  }
  let source = key;
  while (source.startsWith('./')) source = source.slice(2);
  return source === '' ? '.' : source;
}

interface FlatEntry {
  /** Dotted name: nested sets from `a.b.c = ...` are joined back together. */
  name: string;
  at: SourcePosition;
  value: NixValue;
}

/**
 * The leaves of a set with dotted names, so that an unquoted
 * `com.urunc.unikernel.binary = ...;` means the same as the quoted name.
 */
function flattenSet(set: NixSet, prefix = ''): FlatEntry[] {
  const entries: FlatEntry[] = [];
  for (const attribute of set.attrs.values()) {
    const name = prefix + attribute.name;
    if (attribute.value.kind === 'set' && attribute.value.attrs.size > 0) {
      entries.push(...flattenSet(attribute.value, `${name}.`));
    } else {
      entries.push({ name, at: attribute.at, value: attribute.value });
    }
  }
  return entries;
}

function setUrunc(plan: BuildPlan, givenAt: Map<string, SourcePosition>, key: string, entry: FlatEntry, source: string): void {
  const previous = givenAt.get(key);
  if (previous !== undefined) {
    throw new LapinError(`urunc value '${key}' given twice (first at ${previous.file}:${previous.line}:${previous.column})`, {
      at: entry.at,
      hint: 'keep one of them',
    });
  }
  givenAt.set(key, entry.at);
  plan.urunc[key] = { value: uruncValue(key, entry, source), at: entry.value.at };
}

function uruncValue(key: string, entry: FlatEntry, source: string): string {
  const { value } = entry;
  if (value.kind === 'string') return value.value;
  if (value.kind === 'bool' && BOOLEAN_URUNC_KEYS.has(key)) return value.value ? 'true' : 'false';
  const hint = BOOLEAN_URUNC_KEYS.has(key) ? 'write "true" or "false" (or the Nix booleans true / false)' : 'write it in double quotes';
  throw new LapinError(`${source} '${entry.name}' must be a string, found ${describeNixKind(value)}`, { at: value.at, hint });
}
