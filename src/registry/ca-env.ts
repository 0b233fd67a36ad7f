// bin/lapin moves NODE_EXTRA_CA_CERTS to LAPIN_NODE_EXTRA_CA_CERTS before
// starting node: with it set, Node 20 parses every bundled root certificate
// at start-up (~36 ms). lapin loads those CAs itself when it talks TLS to a
// registry (tls.ts). This module is imported at CLI start, so it imports
// nothing.

/** Where bin/lapin moves NODE_EXTRA_CA_CERTS so Node does not load it at start-up. */
export const MOVED_EXTRA_CA_ENV = 'LAPIN_NODE_EXTRA_CA_CERTS';

/** The value restoreNodeExtraCaCerts put back: Node never loaded it. */
let restoredExtraCaFile: string | undefined;

/**
 * Puts the user's NODE_EXTRA_CA_CERTS back into the environment, so child
 * processes (credential helpers, ctr, docker) inherit it. Call once at CLI
 * start. It does not make this process trust the CAs (Node reads the
 * variable only at start-up); the registry client adds them when it connects.
 */
export function restoreNodeExtraCaCerts(): void {
  const moved = process.env[MOVED_EXTRA_CA_ENV];
  if (moved === undefined || moved === '' || process.env.NODE_EXTRA_CA_CERTS !== undefined) return;
  process.env.NODE_EXTRA_CA_CERTS = moved;
  restoredExtraCaFile = moved;
}

/** The CA file Node did not load at start-up and lapin must add: the moved NODE_EXTRA_CA_CERTS. */
export function movedExtraCaFile(): string | undefined {
  const moved = process.env[MOVED_EXTRA_CA_ENV];
  return moved === undefined || moved === '' ? undefined : moved;
}

/**
 * A NODE_EXTRA_CA_CERTS that Node did load at start-up (set without the
 * launcher, or beside it). An explicit CA list replaces Node's store, extra
 * CAs included, so this one has to be listed again.
 */
export function startupExtraCaFile(): string | undefined {
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (file === undefined || file === '' || file === restoredExtraCaFile) return undefined;
  return file;
}
