import { UsageError } from '../errors.js';

/** A parsed image name in docker's normalized form. */
export interface ImageReference {
  /** Registry host, e.g. docker.io or localhost:5000. */
  domain: string;
  /** Repository path, e.g. library/alpine. */
  path: string;
  tag: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/;

/** Parses NAME[:TAG] the way docker does, defaulting the registry and tag. */
export function parseReference(text: string): ImageReference {
  const invalid = (why: string): UsageError =>
    new UsageError(`invalid image name ${JSON.stringify(text)}: ${why}`, 'use NAME[:TAG] with a lowercase name, e.g. urunc/hello:1.0');
  if (text.includes('@')) throw invalid('digests cannot be used as tags');
  let rest = text;
  let tag = 'latest';
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw invalid(`bad tag ${JSON.stringify(tag)}`);
  }
  if (rest === '') throw invalid('empty name');
  const parts = rest.split('/');
  let domain = 'docker.io';
  const first = parts[0] as string;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || /[A-Z]/.test(first))) {
    if (!DOMAIN.test(first)) throw invalid(`bad registry ${JSON.stringify(first)}`);
    domain = first;
    parts.shift();
  }
  for (const part of parts) {
    if (!COMPONENT.test(part)) throw invalid(`bad path component ${JSON.stringify(part)}`);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && parts.length === 1) parts.unshift('library');
  const reference = { domain, path: parts.join('/'), tag };
  if (formatReference(reference).length > 255 + tag.length + 1) throw invalid('name longer than 255 characters');
  return reference;
}

export function formatReference(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}:${ref.tag}`;
}

/** The short form docker shows: no docker.io/ and no library/. */
export function familiarName(ref: ImageReference): string {
  if (ref.domain !== 'docker.io') return formatReference(ref);
  const repo = ref.path.startsWith('library/') ? ref.path.slice('library/'.length) : ref.path;
  return `${repo}:${ref.tag}`;
}
