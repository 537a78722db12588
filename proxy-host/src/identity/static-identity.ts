// A fixed identity from files (Istio's mounted istio-certs): key.pem, cert-chain.pem, root-cert.pem in
// one folder. The folder is watched (plus a slow poll, as watch events are lost on some file systems);
// a complete, valid new set replaces the current identity, a broken one is logged and ignored.
import fs from 'node:fs';
import path from 'node:path';
import { logError, logInfo } from '../log.ts';
import { workloadCertificate } from './certs.ts';
import type { IdentityProvider, WorkloadCertificate } from './types.ts';

export const STATIC_FILES = { key: 'key.pem', chain: 'cert-chain.pem', root: 'root-cert.pem' } as const;

export interface StaticIdentityOptions {
  /** Poll period besides fs.watch (default 5 s). */
  pollMs?: number;
  /** Wait after a change event before reading, so all three files are written (default 100 ms). */
  settleMs?: number;
}

export class StaticIdentity implements IdentityProvider {
  readonly dir: string;
  #cert: WorkloadCertificate;
  #fingerprint: string;
  readonly #listeners = new Set<(cert: WorkloadCertificate) => void>();
  #watcher: fs.FSWatcher | undefined;
  #poll: NodeJS.Timeout | undefined;
  #settle: NodeJS.Timeout | undefined;
  readonly #settleMs: number;

  /** Reads the files now (throws if they are missing or invalid) and starts watching them. */
  constructor(dir: string, options: StaticIdentityOptions = {}) {
    this.dir = dir;
    this.#settleMs = options.settleMs ?? 100;
    const { cert, fingerprint } = this.#read();
    this.#cert = cert;
    this.#fingerprint = fingerprint;
    try {
      this.#watcher = fs.watch(dir, () => this.#schedule());
      this.#watcher.on('error', () => {});
      this.#watcher.unref();
    } catch {
      // no watch support: the poll alone
    }
    this.#poll = setInterval(() => this.reload(), options.pollMs ?? 5000);
    this.#poll.unref();
  }

  current(): WorkloadCertificate {
    return this.#cert;
  }

  onChange(listener: (cert: WorkloadCertificate) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Re-reads the files; returns true if the identity changed. */
  reload(): boolean {
    let next;
    try {
      next = this.#read();
    } catch (err) {
      logError('identity', `${this.dir}: keeping the current identity: ${(err as Error).message}`);
      return false;
    }
    if (next.fingerprint === this.#fingerprint) return false;
    this.#cert = next.cert;
    this.#fingerprint = next.fingerprint;
    logInfo('identity', `${this.dir}: new identity ${next.cert.spiffeId}, valid until ${next.cert.notAfter.toISOString()}`);
    for (const l of this.#listeners) l(next.cert);
    return true;
  }

  #schedule(): void {
    if (this.#settle) clearTimeout(this.#settle);
    this.#settle = setTimeout(() => this.reload(), this.#settleMs);
    this.#settle.unref();
  }

  #read(): { cert: WorkloadCertificate; fingerprint: string } {
    const key = fs.readFileSync(path.join(this.dir, STATIC_FILES.key), 'utf8');
    const chain = fs.readFileSync(path.join(this.dir, STATIC_FILES.chain), 'utf8');
    const root = fs.readFileSync(path.join(this.dir, STATIC_FILES.root), 'utf8');
    return { cert: workloadCertificate(key, chain, root), fingerprint: `${key}\0${chain}\0${root}` };
  }

  async close(): Promise<void> {
    this.#watcher?.close();
    if (this.#poll) clearInterval(this.#poll);
    if (this.#settle) clearTimeout(this.#settle);
    this.#listeners.clear();
  }
}

/** A fixed in-memory identity that can be replaced by hand (tests, embedding). */
export class MemoryIdentity implements IdentityProvider {
  #cert: WorkloadCertificate | undefined;
  readonly #listeners = new Set<(cert: WorkloadCertificate) => void>();

  constructor(cert?: WorkloadCertificate) {
    this.#cert = cert;
  }

  current(): WorkloadCertificate | undefined {
    return this.#cert;
  }

  set(cert: WorkloadCertificate): void {
    this.#cert = cert;
    for (const l of this.#listeners) l(cert);
  }

  onChange(listener: (cert: WorkloadCertificate) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}
