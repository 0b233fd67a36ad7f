// TLS settings of registry connections that Node's defaults do not cover:
// the CAs bin/lapin moved from NODE_EXTRA_CA_CERTS to
// LAPIN_NODE_EXTRA_CA_CERTS (see ca-env.ts), trusted only once lapin talks
// TLS to a registry, and --insecure-registry hosts, reached over HTTPS
// without certificate checks as docker's insecure-registries are.
//
// Both need an undici Agent, and undici costs start-up time too, so it is
// imported only when a registry client needs one of them; builds that push
// nowhere, and loopback registries without custom settings, never load it.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type * as Undici from 'undici';
import { LapinError } from '../errors.js';
import { movedExtraCaFile, startupExtraCaFile } from './ca-env.js';

/** What a registry request hands to fetch; the same for the global fetch and undici's. */
export interface RegistryFetchInit {
  method: string;
  headers?: Record<string, string>;
  body?: Uint8Array | string | ReadableStream<Uint8Array>;
  /** Needed by fetch for a stream body. */
  duplex?: 'half';
  redirect?: 'follow' | 'manual' | 'error';
  signal?: AbortSignal;
}

export type RegistryFetch = (url: string, init: RegistryFetchInit) => Promise<Response>;

export interface TlsOptions {
  /** The registry this client talks to (host[:port]). */
  host: string;
  /** --insecure-registry hosts (host[:port]): HTTPS without certificate checks, then plain HTTP. */
  insecureRegistries: readonly string[];
  debug?: (message: string) => void;
  /** Warnings about the extra CA file; "lapin: warning: ..." on stderr by default, as Node warns. */
  warn?: (message: string) => void;
}

/** "host:port" as a TLS connection sees it: lower-case name, IPv6 in brackets, 443 when no port is given. */
export function tlsHostKey(host: string): string | undefined {
  try {
    const url = new URL(`https://${host}`);
    if (url.pathname !== '/' || url.username !== '' || url.search !== '') return undefined;
    return `${url.hostname}:${url.port === '' ? '443' : url.port}`;
  } catch {
    return undefined;
  }
}

/** Certificates by file, read once per process; a file that fails warns once. */
const extraCaFiles = new Map<string, string[]>();

function defaultWarn(message: string): void {
  process.stderr.write(`lapin: warning: ${message}\n`);
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----/g;

/**
 * The certificates of a PEM file, as NODE_EXTRA_CA_CERTS reads it: an
 * unreadable file is a warning and no certificates; a block that is not a
 * certificate is left out with a warning. Each file warns once per process.
 */
export function readExtraCaFile(file: string, warn: (message: string) => void = defaultWarn): string[] {
  const known = extraCaFiles.get(file);
  if (known) return known;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    extraCaFiles.set(file, []);
    warn(`ignoring extra certs from ${file} (NODE_EXTRA_CA_CERTS): cannot read it${code ? ` (${code})` : ''}`);
    return [];
  }
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  // OpenSSL would skip a bad block without a word; parsing each one lets lapin say so.
  const certificates = blocks.filter((pem) => {
    try {
      new X509Certificate(pem);
      return true;
    } catch {
      return false;
    }
  });
  extraCaFiles.set(file, certificates);
  if (blocks.length === 0) warn(`ignoring extra certs from ${file} (NODE_EXTRA_CA_CERTS): it holds no PEM certificate`);
  else if (certificates.length < blocks.length) warn(`${blocks.length - certificates.length} of the ${blocks.length} certificates in ${file} (NODE_EXTRA_CA_CERTS) could not be read and are ignored`);
  return certificates;
}

interface TransportSettings {
  /** PEM certificates to trust beside Node's bundled roots; empty keeps Node's store as it is. */
  extraCertificates: readonly string[];
  /** tlsHostKey of each host whose certificate is not checked. */
  unverifiedHosts: ReadonlySet<string>;
}

let undiciModule: Promise<typeof Undici> | undefined;

/** undici, imported on first use only. */
export function loadUndici(): Promise<typeof Undici> {
  // Node's own import gives undici's exports by name too; the CLI bundle's chunk (used without the
  // start-up snapshot) has only the default export, which is module.exports in both.
  undiciModule ??= import('undici').then((loaded) => (loaded as unknown as { default?: typeof Undici }).default ?? loaded).catch((error: unknown) => {
    undiciModule = undefined;
    throw new LapinError(`cannot load undici, which lapin needs for extra CAs and --insecure-registry: ${(error as Error).message}`, { hint: 'reinstall lapin (npm ci)' });
  });
  return undiciModule;
}

/** One fetch per distinct setting, so connections and TLS sessions are shared between registry clients. */
const transports = new Map<string, Promise<RegistryFetch>>();

function makeTransport(settings: TransportSettings): Promise<RegistryFetch> {
  const key = JSON.stringify([settings.extraCertificates, [...settings.unverifiedHosts].sort()]);
  let transport = transports.get(key);
  if (!transport) {
    transport = buildTransport(settings);
    transports.set(key, transport);
    transport.catch(() => transports.delete(key));
  }
  return transport;
}

async function buildTransport(settings: TransportSettings): Promise<RegistryFetch> {
  const undici = await loadUndici();
  // One secure context for every connection: building it parses ~150 roots.
  const verifiedOptions: Undici.buildConnector.BuildOptions =
    settings.extraCertificates.length > 0 ? { secureContext: tls.createSecureContext({ ca: [...tls.rootCertificates, ...settings.extraCertificates] }) } : {};
  const verified = undici.buildConnector(verifiedOptions);
  const unverified = undici.buildConnector({ ...verifiedOptions, rejectUnauthorized: false });
  // Decided per connection, so a redirect or upload Location on another host is verified as usual.
  const connect: Undici.buildConnector.connector = (options, callback) => {
    const skipVerification = options.protocol === 'https:' && settings.unverifiedHosts.has(`${options.hostname}:${options.port === '' ? '443' : options.port}`);
    (skipVerification ? unverified : verified)(options, callback);
  };
  const dispatcher = new undici.Agent({ connect });
  // undici's own fetch with its own Agent: no mixing of undici versions with Node's bundled one.
  return (url, init) => undici.fetch(url, { ...init, dispatcher });
}

const globalFetch: RegistryFetch = (url, init) => fetch(url, init);

/**
 * The fetch a registry client uses: the global one when Node's defaults are
 * right, else undici's with an Agent that trusts the moved
 * NODE_EXTRA_CA_CERTS and skips certificate checks for --insecure-registry
 * hosts.
 */
export function registryFetch(options: TlsOptions): Promise<RegistryFetch> {
  // Every listed host goes unverified (a token service may be listed beside its registry); no other host does.
  const unverifiedHosts = new Set(options.insecureRegistries.map(tlsHostKey).filter((key): key is string => key !== undefined));
  const own = tlsHostKey(options.host);
  const ownUnverified = own !== undefined && unverifiedHosts.has(own);
  const moved = movedExtraCaFile();
  const files = moved === undefined ? [] : [moved];
  // A copy: readExtraCaFile's arrays are its per-process cache.
  const extraCertificates = moved === undefined ? [] : [...readExtraCaFile(moved, options.warn)];
  // An explicit CA list replaces Node's store, so a NODE_EXTRA_CA_CERTS Node loaded goes in it again.
  const startup = startupExtraCaFile();
  if (extraCertificates.length > 0 && startup !== undefined && startup !== moved) {
    files.push(startup);
    extraCertificates.push(...readExtraCaFile(startup, options.warn));
  }
  // A registry that is neither listed nor needs extra CAs keeps Node's fetch, and undici stays unloaded.
  if (extraCertificates.length === 0 && !ownUnverified) return Promise.resolve(globalFetch);
  if (extraCertificates.length > 0) options.debug?.(`TLS: trusting ${extraCertificates.length} extra CA certificate(s) from ${files.join(', ')} besides Node's roots`);
  if (ownUnverified) options.debug?.(`TLS: certificates of ${options.host} are not checked (--insecure-registry)`);
  return makeTransport({ extraCertificates, unverifiedHosts });
}
