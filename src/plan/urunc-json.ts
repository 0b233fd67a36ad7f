import { SPEC_ONLY_KEYS } from './releases.js';
import { fullUruncKey } from './urunc-keys.js';

/** Where urunc looks for its values when the runtime spec has no annotations (docker). */
export const URUNC_JSON_PATH = 'urunc.json';

/**
 * The /urunc.json urunc falls back to: full key names, every value base64
 * (standard alphabet). Plain text would be mis-decoded whenever it happens
 * to be valid base64 (e.g. "qemu"), so every value is encoded. vAccel and
 * RPCAddress are left out: urunc reads them from the spec only.
 */
export function uruncJson(values: Readonly<Record<string, string>>): Buffer {
  const encoded: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) {
    if (SPEC_ONLY_KEYS.includes(key)) continue;
    encoded[fullUruncKey(key)] = Buffer.from(value, 'utf8').toString('base64');
  }
  return Buffer.from(`${JSON.stringify(encoded, null, 2)}\n`);
}
