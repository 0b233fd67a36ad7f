import { LapinError, type SourcePosition } from '../errors.js';
import { closestName } from '../plan/similar.js';
import { URUNC_KEYS, URUNC_PREFIX, isUruncKey } from '../plan/urunc-keys.js';

/**
 * A urunc key as written (short, or `com.urunc.unikernel.<key>` in `written`)
 * that urunc does not know is refused, naming the key meant when one is
 * close: urunc ignores unknown keys, so a typo would build an image that
 * runs with another value (bunny's default hypervisor, say) than intended.
 */
export function checkUruncKey(short: string, written: string, at: SourcePosition): string {
  if (isUruncKey(short)) return short;
  const full = written.startsWith(URUNC_PREFIX);
  const close = closestName(short, URUNC_KEYS);
  const name = (key: string): string => (full ? URUNC_PREFIX + key : key);
  throw new LapinError(`unknown urunc key ${written}`, {
    at,
    hint:
      close !== undefined
        ? `did you mean ${name(close)}?`
        : `urunc reads ${URUNC_KEYS.map(name).join(', ')}; a key newer than lapin can be given with --label or --annotation`,
  });
}
