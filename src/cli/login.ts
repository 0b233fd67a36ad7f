import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import type { RegistryOptions } from '../registry/client.js';

interface LoginOptions {
  username?: string;
  password?: string;
  passwordStdin?: boolean;
  insecureRegistry?: string[];
}

/** docker's spelling of a server: "docker.io" for the Hub, else host[:port] without scheme or path. */
export function normalizeServer(server: string | undefined): string {
  if (server === undefined || server === '') return 'docker.io';
  const host = server.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  if (['index.docker.io', 'registry-1.docker.io', 'docker.io'].includes(host)) return 'docker.io';
  if (host === '' || /\s/.test(host)) throw new UsageError(`${JSON.stringify(server)} is not a registry host`, 'use HOST[:PORT], e.g. ghcr.io');
  return host;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Checks credentials against the registry (GET /v2/ through its auth flow) before saving them. */
export async function verifyLogin(server: string, username: string, password: string, options: RegistryOptions = {}): Promise<void> {
  const [{ RegistryClient }, { apiHost }] = await Promise.all([import('../registry/client.js'), import('../registry/push.js')]);
  const client = new RegistryClient(apiHost(server), { ...options, credentials: async () => ({ username, password, origin: 'the given user and password' }) });
  const response = await client.request({ method: 'GET', target: '/v2/', scopes: [], accept: [200], what: `logging in to ${server}` });
  await response.body?.cancel().catch(() => undefined);
}

/** `lapin login` and `lapin logout`, reading and writing docker's config.json. */
export function registerLoginCommands(root: Command, collect: (value: string, previous: string[] | undefined) => string[]): void {
  root
    .command('login')
    .description("log in to a registry; saves the credentials in docker's config.json (or its credential helper)")
    .argument('[server]', 'registry host[:port]', 'docker.io')
    .option('-u, --username <user>', 'user name')
    .option('-p, --password <password>', 'password or token (prefer --password-stdin: arguments show in ps)')
    .option('--password-stdin', 'read the password or token from stdin')
    .option('--insecure-registry <host>', 'HOST[:PORT] may use HTTPS without certificate checks, or plain HTTP; repeatable', collect)
    .action(async (serverArgument: string, opts: LoginOptions) => {
      const server = normalizeServer(serverArgument);
      if (!opts.username) throw new UsageError('lapin login needs --username', 'lapin login -u USER --password-stdin HOST');
      if (opts.password !== undefined && opts.passwordStdin) throw new UsageError('--password and --password-stdin are exclusive');
      const password = opts.passwordStdin ? await readStdin() : opts.password;
      if (password === undefined || password === '') throw new UsageError('lapin login needs a password', 'pass it on stdin with --password-stdin');
      if (opts.password !== undefined) process.stderr.write('lapin: warning: a password on the command line can be seen by other users; use --password-stdin\n');
      await verifyLogin(server, opts.username, password, { insecureRegistries: opts.insecureRegistry ?? [] });
      const { storeCredential } = await import('../registry/credentials.js');
      const where = await storeCredential(server, opts.username, password);
      process.stdout.write(`Login Succeeded (credentials for ${server} saved in ${where})\n`);
    });
  root
    .command('logout')
    .description('forget the credentials saved for a registry')
    .argument('[server]', 'registry host[:port]', 'docker.io')
    .action(async (serverArgument: string) => {
      const server = normalizeServer(serverArgument);
      const { eraseCredential } = await import('../registry/credentials.js');
      const erased = await eraseCredential(server);
      process.stdout.write(erased ? `Removed login credentials for ${server}\n` : `Not logged in to ${server}\n`);
    });
}
