/** A `WWW-Authenticate` challenge: its scheme and parameters (realm, service, scope...). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): one or more challenges,
 * each a scheme followed by comma-separated key=value or key="quoted" pairs.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  let i = 0;
  const skipSpaces = (): void => {
    while (i < header.length && /[\s,]/.test(header[i] as string)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < header.length && /[^\s,=]/.test(header[i] as string)) i++;
    return header.slice(start, i);
  };
  while (i < header.length) {
    skipSpaces();
    const scheme = token();
    if (scheme === '') break;
    // A Map, so a parameter named "__proto__" stays a parameter.
    const params = new Map<string, string>();
    while (i < header.length) {
      skipSpaces();
      const save = i;
      const key = token();
      while (i < header.length && header[i] === ' ') i++;
      if (key === '' || header[i] !== '=') {
        // Not a parameter: the next challenge's scheme starts here.
        i = save;
        break;
      }
      i++;
      while (i < header.length && header[i] === ' ') i++;
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < header.length && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < header.length) i++;
          value += header[i] as string;
          i++;
        }
        i++;
      } else {
        const start = i;
        while (i < header.length && header[i] !== ',') i++;
        value = header.slice(start, i).trim();
      }
      params.set(key.toLowerCase(), value);
    }
    challenges.push({ scheme: scheme.toLowerCase(), params: Object.fromEntries(params) });
  }
  return challenges;
}

/** "repository:NAME:ACTIONS" scopes, merged so each repository appears once with the union of its actions. */
export function mergeScopes(scopes: readonly string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  const order: string[] = [];
  for (const scope of scopes) {
    for (const single of scope.split(' ')) {
      if (single === '') continue;
      const colon = single.lastIndexOf(':');
      const resource = colon < 0 ? single : single.slice(0, colon);
      const actions = colon < 0 ? [] : single.slice(colon + 1).split(',').filter((a) => a !== '');
      let set = byResource.get(resource);
      if (!set) {
        set = new Set();
        byResource.set(resource, set);
        order.push(resource);
      }
      for (const action of actions) set.add(action);
    }
  }
  const rank = (a: string): number => ['pull', 'push', 'delete', '*'].indexOf(a);
  return order
    .sort()
    .map((resource) => {
      const actions = [...(byResource.get(resource) as Set<string>)].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      return actions.length > 0 ? `${resource}:${actions.join(',')}` : resource;
    });
}

export function repositoryScope(repository: string, actions: 'pull' | 'pull,push'): string {
  return `repository:${repository}:${actions}`;
}

/** A bearer token and when to stop using it. */
interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Tokens by the merged scope set they were granted for; a token for more scopes serves fewer. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  private static key(scopes: readonly string[]): string {
    return mergeScopes(scopes).join(' ');
  }

  get(scopes: readonly string[]): string | undefined {
    const wanted = mergeScopes(scopes);
    const exact = this.tokens.get(wanted.join(' '));
    if (exact && exact.expiresAt > this.now()) return exact.token;
    for (const [key, cached] of this.tokens) {
      if (cached.expiresAt <= this.now()) continue;
      const granted = new Set(mergeScopes(key.split(' ')).flatMap(expandScope));
      if (wanted.flatMap(expandScope).every((s) => granted.has(s))) return cached.token;
    }
    return undefined;
  }

  /** `expiresIn` in seconds, as the token endpoint reports it; 60 when it does not (the spec's default). */
  put(scopes: readonly string[], token: string, expiresIn: number | undefined, issuedAt?: number): void {
    const lifetime = Math.max(0, (expiresIn ?? 60) - 10) * 1000;
    const start = issuedAt !== undefined && Number.isFinite(issuedAt) ? Math.min(issuedAt, this.now()) : this.now();
    this.tokens.set(TokenCache.key(scopes), { token, expiresAt: start + lifetime });
  }

  forget(scopes: readonly string[]): void {
    this.tokens.delete(TokenCache.key(scopes));
  }
}

function expandScope(scope: string): string[] {
  const colon = scope.lastIndexOf(':');
  if (colon < 0) return [scope];
  const resource = scope.slice(0, colon);
  return scope
    .slice(colon + 1)
    .split(',')
    .map((action) => `${resource}:${action}`);
}
