/**
 * The JSON of someone else's image, checked against the shapes inspect and
 * run rely on before anything reads a field: a `null` index, a label that is
 * a number or a layer that is not an object is a damaged source (exit 2),
 * not a TypeError deep inside the report.
 */
import { SourceError } from './errors.js';
import type { SourceDescriptor, SourceImageConfig, SourceManifest } from './types.js';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isStringMap = (value: unknown): value is Record<string, string> => isObject(value) && Object.values(value).every((v) => typeof v === 'string');
const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');

function refuse(what: string, problem: string): never {
  throw new SourceError(`${what} is not a valid image file: ${problem}`, 'the source is damaged or is not an image');
}

export function checkDescriptor(value: unknown, what: string, field: string): SourceDescriptor {
  if (!isObject(value)) refuse(what, `${field} is not a descriptor`);
  if (typeof value.digest !== 'string') refuse(what, `${field} has no digest`);
  if (value.mediaType !== undefined && typeof value.mediaType !== 'string') refuse(what, `${field}.mediaType is not a string`);
  if (value.size !== undefined && !(typeof value.size === 'number' && Number.isSafeInteger(value.size) && value.size >= 0)) refuse(what, `${field}.size is not a size`);
  if (value.annotations !== undefined && !isStringMap(value.annotations)) refuse(what, `${field}.annotations is not a map of strings`);
  if (value.platform !== undefined && !(isObject(value.platform) && ['os', 'architecture', 'variant'].every((k) => (value.platform as Record<string, unknown>)[k] === undefined || typeof (value.platform as Record<string, unknown>)[k] === 'string'))) {
    refuse(what, `${field}.platform is not a platform`);
  }
  return value as unknown as SourceDescriptor;
}

/** An image index's manifests (index.json, or a nested index). */
export function checkIndex(value: unknown, what: string): SourceDescriptor[] {
  if (!isObject(value)) refuse(what, 'not a JSON object');
  if (value.manifests === undefined || value.manifests === null) return [];
  if (!Array.isArray(value.manifests)) refuse(what, 'manifests is not a list');
  return value.manifests.map((m, i) => checkDescriptor(m, what, `manifests[${i}]`));
}

/**
 * Layers an image may have for lapin to read it. Real images have tens (each is a
 * lower directory of one overlay mount); 20,000 entries naming one small blob, a 3 MB
 * manifest, kept inspect busy for 26 s of CPU, and a registry would be asked for each.
 */
export const MAX_IMAGE_LAYERS = 1000;

/** Refuses an image of more than MAX_IMAGE_LAYERS layers. */
export function checkLayerCount(count: number, what: string): void {
  if (count > MAX_IMAGE_LAYERS) throw new SourceError(`${what} lists ${count} layers; lapin reads images of at most ${MAX_IMAGE_LAYERS}`, 'a hostile or broken image: real images have tens of layers');
}

export function checkManifestShape(value: unknown, what: string): SourceManifest {
  if (!isObject(value)) refuse(what, 'not a JSON object');
  checkDescriptor(value.config, what, 'config');
  if (!Array.isArray(value.layers)) refuse(what, 'layers is not a list');
  checkLayerCount(value.layers.length, what);
  value.layers.forEach((layer, i) => checkDescriptor(layer, what, `layers[${i}]`));
  if (value.annotations !== undefined && !isStringMap(value.annotations)) refuse(what, 'annotations is not a map of strings');
  return value as unknown as SourceManifest;
}

export function checkConfigShape(value: unknown, what: string): SourceImageConfig {
  if (!isObject(value)) refuse(what, 'not a JSON object');
  for (const key of ['architecture', 'os'] as const) if (value[key] !== undefined && typeof value[key] !== 'string') refuse(what, `${key} is not a string`);
  const config = value.config;
  if (config !== undefined && config !== null) {
    if (!isObject(config)) refuse(what, 'config is not an object');
    for (const key of ['Entrypoint', 'Cmd', 'Env'] as const) {
      if (config[key] !== undefined && config[key] !== null && !isStringList(config[key])) refuse(what, `config.${key} is not a list of strings`);
    }
    if (config.Labels !== undefined && config.Labels !== null && !isStringMap(config.Labels)) refuse(what, 'config.Labels is not a map of strings');
    // A FROM build copies these into its image: a number there made a config docker cannot load.
    for (const key of ['WorkingDir', 'User', 'StopSignal'] as const) {
      if (config[key] !== undefined && typeof config[key] !== 'string') refuse(what, `config.${key} is not a string`);
    }
    for (const key of ['ExposedPorts', 'Volumes'] as const) {
      if (config[key] !== undefined && config[key] !== null && !isObject(config[key])) refuse(what, `config.${key} is not an object`);
    }
  }
  const rootfs = value.rootfs;
  if (rootfs !== undefined && rootfs !== null) {
    if (!isObject(rootfs)) refuse(what, 'rootfs is not an object');
    if (rootfs.diff_ids !== undefined && rootfs.diff_ids !== null && !isStringList(rootfs.diff_ids)) refuse(what, 'rootfs.diff_ids is not a list of strings');
  }
  return value as SourceImageConfig;
}
