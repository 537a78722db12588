// The TLS a gateway HTTPS port terminates, per Gateway server (GatewayTlsConfig): its secure context,
// the client certificate checks of the mutual modes, and certificate files re-read when they change.
//
// - SIMPLE: the server's certificate and key (files, or the TLSSecret's PEM sent by the orchestrator).
// - MUTUAL: as SIMPLE, and a client certificate that chains to caCertificates (the secret's cacert)
//   and, when listed, carries one of subjectAltNames and whose SPKI or DER hash is listed.
// - OPTIONAL_MUTUAL: as MUTUAL when the client sends a certificate; a client without one is let in.
// - ISTIO_MUTUAL: the gateway's workload certificate, a client certificate from the mesh's roots.
//
// The chain is verified by OpenSSL against the context picked by SNI (each context carries its own
// roots). The port asks for client certificates when one of its servers does; when every server
// requires one the handshake itself refuses a client without a valid one (an alert, as Envoy), else
// verifyClient below closes the connection right after the handshake. SAN, SPKI and hash checks
// always run there, before any request is read.
//
// Reload: files are fingerprinted by content. A change seen by a directory watch (or by a poll, for
// filesystems and symlink swaps a watch misses) is read again; a complete, consistent new set
// replaces the context for new handshakes, while a half-written one (a new certificate with the old
// key) keeps the old context and is tried again on the next change or poll.

import { X509Certificate, createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import tls from 'node:tls';
import type { GatewayTlsConfig } from '../../../mesh/src/proxy-config.ts';
import type { WorkloadCertificate } from '../identity/types.ts';
import { logInfo, logWarn } from '../log.ts';

export class GatewayTlsError extends Error {
  readonly code = 'WASMESH_PROXY_GATEWAY_CONFIG';
}

interface Material {
  context: tls.SecureContext;
  options: tls.SecureContextOptions;
  /** sha256 of what the context was built from (file contents, or the credential's digest). */
  fingerprint: string;
}

/** One Gateway server's TLS on a port. */
export class GatewayTlsEntry {
  readonly config: GatewayTlsConfig;
  readonly #listener: string;
  #material: Material | undefined;
  /** Fingerprint of file contents that failed to load (warned once). */
  #failed: string | undefined;

  constructor(config: GatewayTlsConfig, listener: string, material: Material | undefined) {
    this.config = config;
    this.#listener = listener;
    this.#material = material;
  }

  get hosts(): readonly string[] {
    return this.config.hosts;
  }

  /** Undefined only for ISTIO_MUTUAL while the gateway has no workload certificate (handshakes fail). */
  get context(): tls.SecureContext | undefined {
    return this.#material?.context;
  }

  get options(): tls.SecureContextOptions | undefined {
    return this.#material?.options;
  }

  get fingerprint(): string | undefined {
    return this.#material?.fingerprint;
  }

  /** Asks the client for a certificate. */
  get requestsCert(): boolean {
    return this.config.mode !== undefined;
  }

  /** Refuses a client without a valid certificate. */
  get requiresCert(): boolean {
    return this.config.mode === 'MUTUAL' || this.config.mode === 'ISTIO_MUTUAL';
  }

  /** Files this entry reads (re-read when they change). */
  files(): string[] {
    return [this.config.certificate, this.config.privateKey, this.config.caCertificates].filter((f): f is string => f !== undefined);
  }

  /** ISTIO_MUTUAL: the gateway's current workload certificate (undefined: none, handshakes fail). */
  setIdentity(cert: WorkloadCertificate | undefined): void {
    if (this.config.mode !== 'ISTIO_MUTUAL') return;
    if (!cert) {
      this.#material = undefined;
      return;
    }
    const fingerprint = digest([cert.keyPem, cert.certChainPem, ...cert.trustBundlePem]);
    if (this.#material?.fingerprint === fingerprint) return;
    this.#material = build({ key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem }, this.config, fingerprint, this.#listener, 'the workload certificate');
  }

  /** Re-reads the files; true when a new, valid set replaced the context. Never throws. */
  async reload(): Promise<boolean> {
    if (this.files().length === 0) return false;
    let read: { options: tls.SecureContextOptions; fingerprint: string };
    try {
      read = await readFiles(this.config, this.#listener);
    } catch (err) {
      this.#warnOnce(`unreadable:${(err as Error).message}`, (err as Error).message);
      return false;
    }
    if (read.fingerprint === this.#material?.fingerprint) return false;
    try {
      this.#material = build(read.options, this.config, read.fingerprint, this.#listener, this.config.certificate!);
    } catch (err) {
      this.#warnOnce(read.fingerprint, `${(err as Error).message}; keeping the previous certificate until the files are consistent`);
      return false;
    }
    this.#failed = undefined;
    logInfo('gateway', `${this.#listener}: reloaded ${this.config.certificate} (${serialOf(read.options.cert)})`);
    return true;
  }

  #warnOnce(key: string, message: string): void {
    if (this.#failed === key) return;
    this.#failed = key;
    logWarn('gateway', message);
  }

  /**
   * Why a connection established through this entry must be closed (client certificate checks of
   * the mutual modes); undefined when it may go on.
   */
  verifyClient(socket: tls.TLSSocket): string | undefined {
    if (!this.requestsCert) return undefined;
    const peer = socket.getPeerCertificate(false);
    const present = peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0;
    if (!present) return this.requiresCert ? 'no client certificate' : undefined;
    if (!socket.authorized) return `client certificate not trusted: ${String(socket.authorizationError ?? 'unverified')}`;
    const sans = this.config.subjectAltNames;
    if (sans && sans.length > 0) {
      const names = subjectAltNames(peer.subjectaltname);
      if (!names.some((n) => sans.includes(n))) return `client certificate names ${names.join(', ') || '(no SAN)'}: none of subjectAltNames`;
    }
    const spki = this.config.verifyCertificateSpki ?? [];
    const hashes = this.config.verifyCertificateHash ?? [];
    if (spki.length > 0 || hashes.length > 0) {
      const raw = peer.raw;
      const hash = createHash('sha256').update(raw).digest('hex');
      const key = createHash('sha256').update(new X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
      if (!hashes.includes(hash) && !spki.includes(key)) return `client certificate (sha256 ${hash}, spki ${key}) is not in verifyCertificateHash or verifyCertificateSpki`;
    }
    return undefined;
  }
}

/** Values of a peer's subjectaltname ("DNS:a, URI:spiffe://x, IP Address:1.2.3.4, email:e"). */
export function subjectAltNames(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName.split(/,\s*/).flatMap((part) => {
    const colon = part.indexOf(':');
    return colon < 0 ? [] : [part.slice(colon + 1).replace(/^"|"$/g, '')];
  });
}

function digest(parts: readonly (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

function serialOf(cert: tls.SecureContextOptions['cert']): string {
  try {
    return `serial ${new X509Certificate(cert as Buffer).serialNumber}`;
  } catch {
    return 'unparsed';
  }
}

async function readFiles(t: GatewayTlsConfig, listener: string): Promise<{ options: tls.SecureContextOptions; fingerprint: string }> {
  const read = async (field: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new GatewayTlsError(`${listener}: cannot read ${field} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const cert = await read('serverCertificate', t.certificate!);
  const key = await read('privateKey', t.privateKey!);
  const ca = t.caCertificates !== undefined ? await read('caCertificates', t.caCertificates) : undefined;
  return { options: { cert, key, ...(ca ? { ca } : {}) }, fingerprint: digest([cert, key, ca ?? '']) };
}

function build(base: tls.SecureContextOptions, t: GatewayTlsConfig, fingerprint: string, listener: string, what: string): Material {
  const options: tls.SecureContextOptions = { ...base, minVersion: t.minVersion, maxVersion: t.maxVersion, ...(t.cipherSuites ? { ciphers: t.cipherSuites.join(':') } : {}) };
  try {
    return { context: tls.createSecureContext(options), options, fingerprint };
  } catch (err) {
    const where = t.credential ? `credential ${t.credential.name}` : t.certificate ? `certificate ${t.certificate} with key ${t.privateKey}${t.caCertificates ? ` and caCertificates ${t.caCertificates}` : ''}` : what;
    throw new GatewayTlsError(`${listener}: ${where}: ${(err as Error).message}`);
  }
}

/** Builds a server's TLS for a config; throws GatewayTlsError naming the file or credential. */
export async function prepareTlsEntry(t: GatewayTlsConfig, listener: string): Promise<GatewayTlsEntry> {
  if (t.mode === 'ISTIO_MUTUAL') return new GatewayTlsEntry(t, listener, undefined);
  if (t.credential) {
    const c = t.credential;
    return new GatewayTlsEntry(t, listener, build({ cert: c.cert, key: c.key, ...(c.cacert ? { ca: c.cacert } : {}) }, t, c.sha256, listener, c.name));
  }
  const read = await readFiles(t, listener);
  return new GatewayTlsEntry(t, listener, build(read.options, t, read.fingerprint, listener, t.certificate!));
}

/** The entry for an SNI name: an exact host, then the longest `*.suffix`, then `*`, then the first. */
export function entryForServername<E extends { hosts: readonly string[] }>(entries: readonly E[], servername: string | undefined | false | null): E | undefined {
  const name = (servername || '').toLowerCase();
  let best: { entry: E; score: number } | undefined;
  for (const e of entries) {
    for (const h of e.hosts) {
      const score = h === name ? Number.MAX_SAFE_INTEGER : h.startsWith('*.') && name.endsWith(h.slice(1)) ? h.length : h === '*' ? 1 : 0;
      if (score > 0 && (!best || score > best.score)) best = { entry: e, score };
    }
  }
  return best?.entry ?? entries[0];
}

/**
 * Client certificate policy of a port (the TLS server's options, fixed while the port is open):
 * `off` no server asks; `require` every server requires one (refused in the handshake); `request`
 * some ask (checked after the handshake, per server).
 */
export function clientCertPolicy(entries: readonly GatewayTlsEntry[]): 'off' | 'request' | 'require' {
  if (!entries.some((e) => e.requestsCert)) return 'off';
  return entries.every((e) => e.requiresCert) ? 'require' : 'request';
}

/**
 * Watches the certificate files of the entries in use: a directory watch per directory (debounced),
 * and a poll every `pollMs` for what a watch misses. `onReload` runs after an entry took new files.
 */
export class CertificateFileWatcher {
  readonly #pollMs: number;
  readonly #onReload: (entry: GatewayTlsEntry) => void;
  #entries: GatewayTlsEntry[] = [];
  readonly #watchers = new Map<string, FSWatcher>();
  #timer: NodeJS.Timeout | undefined;
  #pending: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #closed = false;

  constructor(pollMs: number, onReload: (entry: GatewayTlsEntry) => void) {
    this.#pollMs = pollMs;
    this.#onReload = onReload;
  }

  /** Replaces the set of entries watched (the applied config's). */
  set(entries: readonly GatewayTlsEntry[]): void {
    if (this.#closed) return;
    this.#entries = entries.filter((e) => e.files().length > 0);
    const dirs = new Set(this.#entries.flatMap((e) => e.files().map((f) => dirname(f))));
    for (const [dir, w] of this.#watchers) {
      if (!dirs.has(dir)) {
        w.close();
        this.#watchers.delete(dir);
      }
    }
    for (const dir of dirs) {
      if (this.#watchers.has(dir)) continue;
      try {
        // Any event in the directory may be a rename onto one of the files, or a symlink swap
        // (Kubernetes' ..data): a debounced re-read compares contents anyway.
        const w = watch(dir, { persistent: false }, () => this.#schedule(50));
        w.on('error', () => {
          w.close();
          this.#watchers.delete(dir);
        });
        this.#watchers.set(dir, w);
      } catch {
        // A directory that cannot be watched is polled.
      }
    }
    if (this.#entries.length > 0 && !this.#timer && this.#pollMs > 0) {
      this.#timer = setInterval(() => this.#schedule(0), this.#pollMs);
      this.#timer.unref();
    } else if (this.#entries.length === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #schedule(delayMs: number): void {
    if (this.#closed || this.#pending) return;
    this.#pending = setTimeout(() => {
      this.#pending = undefined;
      void this.check();
    }, delayMs);
    this.#pending.unref();
  }

  /** Re-reads every watched entry now (serialized). */
  check(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        for (const e of this.#entries) if (await e.reload()) this.#onReload(e);
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  close(): void {
    this.#closed = true;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    if (this.#timer) clearInterval(this.#timer);
    if (this.#pending) clearTimeout(this.#pending);
  }
}
