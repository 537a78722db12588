// Bearer tokens for the orchestrator's REST API and gRPC distribution.
//
// A token is 32 random bytes, base64url; it is shown once (returned by create) and only its sha256
// is kept, in <dataDir>/tokens.json (mode 0600, replaced atomically). Each token carries a role:
//   admin   read and write everything
//   viewer  read resources, modules and watches
//   editor  read and write the resources of one namespace (and upload modules); bound to it
//   proxy   fetch modules and stream config; bound to a namespace and service account
// The first start writes an admin token to <dataDir>/admin-token (mode 0600) so a human can use it.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT_NAMESPACE } from '../../../mesh/src/documents.ts';

export const ROLES = ['admin', 'viewer', 'editor', 'proxy'] as const;
export type Role = (typeof ROLES)[number];

export const TOKENS_FILE = 'tokens.json';
export const ADMIN_TOKEN_FILE = 'admin-token';

/** What a token is bound to: a proxy's namespace and service account, an editor's namespace. */
export interface TokenBinding {
  namespace: string;
  serviceAccount?: string;
}

/** Who a verified token speaks for. */
export interface TokenIdentity {
  role: Role;
  namespace?: string;
  serviceAccount?: string;
  /** A short, non-secret id of the token (first 12 hex digits of its hash): for logs and "uploaded by". */
  id: string;
}

interface TokenEntry {
  hash: string;
  role: Role;
  namespace?: string;
  serviceAccount?: string;
  createdAt: string;
}

interface TokenFile {
  version: 1;
  tokens: TokenEntry[];
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class TokenStore {
  /** The JSON file holding the hashes; undefined for an in-memory store (tests). */
  readonly file: string | undefined;
  readonly #entries = new Map<string, TokenEntry>();
  /** mtime and size of the file when last read, to pick up tokens another process (the CLI) added. */
  #stamp = '';
  #checkedAt = 0;

  private constructor(file: string | undefined) {
    this.file = file;
  }

  /** Opens (or creates) the token file in dataDir. Throws on a corrupt file rather than starting without tokens. */
  static open(dataDir: string): TokenStore {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const store = new TokenStore(join(dataDir, TOKENS_FILE));
    store.#load();
    return store;
  }

  #load(): void {
    const file = this.file!;
    if (!existsSync(file)) return;
    const stamp = fileStamp(file);
    let parsed: TokenFile;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8')) as TokenFile;
    } catch (err) {
      throw new Error(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    if (parsed.version !== 1 || !Array.isArray(parsed.tokens)) throw new Error(`${file}: unknown format`);
    this.#entries.clear();
    for (const entry of parsed.tokens) {
      // An editor entry without its namespace would be bound to nothing: left out, not widened.
      if (entry.role === 'editor' && typeof entry.namespace !== 'string') continue;
      if (typeof entry.hash === 'string' && isRole(entry.role)) this.#entries.set(entry.hash, entry);
    }
    this.#stamp = stamp;
  }

  /**
   * Re-reads the file when another process changed it (`wasmesh token create` while the
   * orchestrator runs): at most once a second, and on every unknown token. A file that has become
   * unreadable keeps the tokens already loaded.
   */
  #refresh(force: boolean): void {
    if (!this.file) return;
    const now = Date.now();
    if (!force && now - this.#checkedAt < 1000) return;
    this.#checkedAt = now;
    try {
      if (fileStamp(this.file) !== this.#stamp) this.#load();
    } catch {
      // keep what we have
    }
  }

  /** A store that keeps nothing on disk. */
  static inMemory(): TokenStore {
    return new TokenStore(undefined);
  }

  /**
   * Creates a token and returns it: the only time it exists in clear. A proxy token needs a
   * binding (namespace and service account), an editor token a namespace; other roles take none.
   */
  create(role: Role, binding?: TokenBinding): string {
    if (!isRole(role)) throw new Error(`unknown role ${JSON.stringify(role)}: use ${ROLES.join(', ')}`);
    checkBinding(role, binding);
    // Pick up tokens another process wrote, so saving does not drop them.
    this.#refresh(true);
    const token = randomBytes(32).toString('base64url');
    const entry: TokenEntry = {
      hash: hashToken(token),
      role,
      ...(binding ? { namespace: binding.namespace } : {}),
      ...(binding?.serviceAccount !== undefined ? { serviceAccount: binding.serviceAccount } : {}),
      createdAt: new Date().toISOString(),
    };
    this.#entries.set(entry.hash, entry);
    try {
      this.#save();
    } catch (err) {
      this.#entries.delete(entry.hash);
      throw err;
    }
    return token;
  }

  /** The identity of a token, or undefined for an unknown one. */
  verify(token: string | undefined): TokenIdentity | undefined {
    if (typeof token !== 'string' || token.length === 0 || token.length > 256) return undefined;
    const hash = hashToken(token);
    this.#refresh(false);
    if (!this.#entries.has(hash)) this.#refresh(true);
    const entry = this.#entries.get(hash);
    // The map lookup is on a hash of the token, so its timing says nothing about the token; compare
    // once more in constant time anyway, so the check does not rest on Map internals.
    if (!entry || !timingSafeEqual(Buffer.from(entry.hash, 'hex'), Buffer.from(hash, 'hex'))) return undefined;
    return {
      role: entry.role,
      ...(entry.namespace !== undefined ? { namespace: entry.namespace } : {}),
      ...(entry.serviceAccount !== undefined ? { serviceAccount: entry.serviceAccount } : {}),
      id: entry.hash.slice(0, 12),
    };
  }

  /** Removes a token by its id (the first 12 hex digits of its hash); returns whether one was removed. */
  revoke(id: string): boolean {
    this.#refresh(true);
    for (const [hash] of this.#entries) {
      if (hash.startsWith(id) && id.length >= 12) {
        this.#entries.delete(hash);
        this.#save();
        return true;
      }
    }
    return false;
  }

  /** Number of tokens per role (never the tokens). */
  count(role?: Role): number {
    let n = 0;
    for (const e of this.#entries.values()) if (role === undefined || e.role === role) n++;
    return n;
  }

  /**
   * On first start, creates an admin token and writes it to <dataDir>/admin-token (mode 0600).
   * Later starts keep it while it still verifies; a file that no longer verifies is replaced.
   */
  ensureAdminToken(dataDir: string): { path: string; created: boolean } {
    const path = join(dataDir, ADMIN_TOKEN_FILE);
    if (existsSync(path)) {
      const token = readFileSync(path, 'utf8').trim();
      if (this.verify(token)?.role === 'admin') {
        chmodSync(path, 0o600);
        return { path, created: false };
      }
    }
    const token = this.create('admin');
    writePrivate(path, `${token}\n`);
    return { path, created: true };
  }

  #save(): void {
    if (!this.file) return;
    const data: TokenFile = { version: 1, tokens: [...this.#entries.values()] };
    writePrivate(this.file, `${JSON.stringify(data, null, 2)}\n`);
    this.#stamp = fileStamp(this.file);
  }
}

/** Throws, saying why, when a role cannot have this binding (proxy: namespace and service account; editor: a namespace, not the root one; others: none). */
export function checkBinding(role: Role, binding: TokenBinding | undefined): void {
  if (role === 'proxy') {
    if (!binding?.serviceAccount) throw new Error('a proxy token is bound to a namespace and a service account: give both');
    if (!NAME.test(binding.namespace)) throw new Error(`invalid namespace ${JSON.stringify(binding.namespace)}`);
    if (!NAME.test(binding.serviceAccount)) throw new Error(`invalid service account ${JSON.stringify(binding.serviceAccount)}`);
  } else if (role === 'editor') {
    if (!binding) throw new Error('an editor token is bound to one namespace: give it');
    if (binding.serviceAccount !== undefined) throw new Error('an editor token is bound to a namespace only, not to a service account');
    if (!NAME.test(binding.namespace)) throw new Error(`invalid namespace ${JSON.stringify(binding.namespace)}`);
    // The root namespace's policies and plugins apply to every workload: editing it is an admin's job.
    if (binding.namespace === ROOT_NAMESPACE) throw new Error(`${ROOT_NAMESPACE} is the root namespace (what is there applies mesh-wide): use an admin token for it`);
  } else if (binding) {
    throw new Error(`a ${role} token is not bound to a namespace or service account (only proxy and editor tokens are)`);
  }
}

function fileStamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return '';
  }
}

/** Writes a file readable only by its owner, atomically (temp file + rename). */
function writePrivate(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600); // in case of a umask wider than the mode
  renameSync(tmp, path);
}
