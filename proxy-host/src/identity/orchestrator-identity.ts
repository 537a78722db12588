// Managed mode's workload identity: the proxy makes its own ECDSA P-256 key (it never leaves this
// proxy), sends a CSR naming its SPIFFE id over the orchestrator's CreateCertificate rpc with the
// proxy token, and keeps WatchTrustBundle open for root rotations. The certificate is renewed at
// half of its remaining life (and on demand); failures are retried with jittered exponential backoff,
// capped at a few seconds while there is no certificate or it nears expiry (certificateRetryDelay),
// and counted; the time left until expiry is a gauge, so an operator is alerted before expiry.
// With keepDir, key, chain and bundle are kept on disk (kept-identity.ts) and a valid kept identity
// is used at start, so a restart while the orchestrator is away keeps mTLS.

import * as grpc from '@grpc/grpc-js';
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';
import { discoveryDefinition, type CertificateResponse, type DiscoveryClient, type TrustBundleMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { createCsr, generateWorkloadKey, splitPem, trustDomainOf, workloadCertificate } from './certs.ts';
import { loadKeptIdentity, saveKeptIdentity } from './kept-identity.ts';
import { spiffeId, type IdentityProvider, type WorkloadCertificate } from './types.ts';

export type OrchestratorIdentityLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface OrchestratorIdentityOptions {
  /** The orchestrator's discovery service, host:port. */
  address: string;
  /** Bearer token (role proxy, bound to this namespace and service account). */
  token?: string;
  namespace: string;
  serviceAccount: string;
  /** Trust domain of the SPIFFE id asked for until the orchestrator tells its own (default cluster.local). */
  trustDomain?: string;
  /** Requested lifetime in seconds (default: the orchestrator's default). */
  ttlSeconds?: number;
  /**
   * Retry backoff of failed requests and of the trust bundle stream: first delay and cap (default 1 s
   * and 30 s); certificate requests are capped at urgentMaxMs (default 3 s) while there is no
   * certificate or less than ten times the cap is left (see certificateRetryDelay).
   */
  backoff?: { initialMs?: number; maxMs?: number; urgentMaxMs?: number };
  /** Folder to keep key, chain and bundle in (0600) and to start from after a restart. */
  keepDir?: string;
  /** A root newly added to the bundle re-issues the certificate after this delay, so peers hold the root first (default 2000 ms). */
  rootRenewDelayMs?: number;
  log?: OrchestratorIdentityLog;
}

export interface OrchestratorIdentityStatus {
  spiffeId?: string;
  notAfter?: string;
  renewals: number;
  failures: number;
  /** The last failure (gRPC code name and details). */
  lastError?: string;
  /** The orchestrator said it runs without a certificate authority. */
  noCa: boolean;
  trustBundleConnected: boolean;
}

const NO_CA = /without a certificate authority/i;

export class OrchestratorIdentity implements IdentityProvider {
  readonly #opts: OrchestratorIdentityOptions;
  readonly #log: OrchestratorIdentityLog;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #urgentMaxMs: number;
  readonly #client: DiscoveryClient;
  readonly #listeners = new Set<(cert: WorkloadCertificate) => void>();
  readonly #waiters = new Set<() => void>();
  #cert: WorkloadCertificate | undefined;
  /** The newest bundle heard (WatchTrustBundle or a CreateCertificate answer). */
  #bundle: string[] | undefined;
  #trustDomain: string;
  #closed = false;
  #inFlight: Promise<boolean> | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  /** Failed requests since the last success. */
  #consecutiveFailures = 0;
  #saving: Promise<void> = Promise.resolve();
  #watch: grpc.ClientReadableStream<TrustBundleMessage> | undefined;
  #watchTimer: NodeJS.Timeout | undefined;
  #watchDelayMs: number;
  #rootTimer: NodeJS.Timeout | undefined;
  #renewals = 0;
  #failures = 0;
  #unreportedFailures = 0;
  #lastError: { code?: number; text: string } | undefined;
  #registry: MetricsRegistry | undefined;
  #expiry: Metric | undefined;
  #failureCounter: Metric | undefined;

  /** Starts at once: the first certificate request and the trust bundle watch. */
  constructor(opts: OrchestratorIdentityOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
    this.#initialMs = opts.backoff?.initialMs ?? 1000;
    this.#maxMs = opts.backoff?.maxMs ?? 30_000;
    this.#urgentMaxMs = Math.min(opts.backoff?.urgentMaxMs ?? 3000, this.#maxMs);
    this.#watchDelayMs = this.#initialMs;
    this.#trustDomain = opts.trustDomain ?? 'cluster.local';
    const { Client } = discoveryDefinition();
    this.#client = new Client(opts.address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.initial_reconnect_backoff_ms': Math.min(this.#initialMs, 1000),
      // The channel's own reconnect backoff must not outlast our certificate retries.
      'grpc.max_reconnect_backoff_ms': this.#urgentMaxMs,
    });
    const kept = opts.keepDir ? this.#loadKept(opts.keepDir) : undefined;
    this.#watchBundle();
    if (kept) this.#schedule(this.#renewDelay(kept));
    else void this.renew();
  }

  /** A valid identity kept in `dir` becomes the current one (renewed on the usual schedule). */
  #loadKept(dir: string): WorkloadCertificate | undefined {
    const kept = loadKeptIdentity(dir, { namespace: this.#opts.namespace, serviceAccount: this.#opts.serviceAccount, ...(this.#opts.trustDomain ? { trustDomain: this.#opts.trustDomain } : {}) });
    if ('none' in kept) return undefined;
    if ('rejected' in kept) {
      this.#log('warn', `kept workload identity in ${dir} not used: ${kept.rejected}; asking the orchestrator for a new one`);
      return undefined;
    }
    const cert = kept.cert;
    this.#cert = cert;
    this.#bundle = cert.trustBundlePem;
    this.#trustDomain = trustDomainOf(cert.spiffeId) ?? this.#trustDomain;
    this.#log('info', `using the workload certificate ${cert.spiffeId} kept in ${dir}, valid until ${cert.notAfter.toISOString()}`);
    return cert;
  }

  /** The SPIFFE id this proxy asks for. */
  get spiffeId(): string {
    return spiffeId(this.#trustDomain, this.#opts.namespace, this.#opts.serviceAccount);
  }

  current(): WorkloadCertificate | undefined {
    return this.#cert;
  }

  onChange(listener: (cert: WorkloadCertificate) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  status(): OrchestratorIdentityStatus {
    return {
      ...(this.#cert ? { spiffeId: this.#cert.spiffeId, notAfter: this.#cert.notAfter.toISOString() } : {}),
      renewals: this.#renewals,
      failures: this.#failures,
      ...(this.#lastError ? { lastError: this.#lastError.text } : {}),
      noCa: this.#noCa(),
      trustBundleConnected: this.#watch !== undefined,
    };
  }

  /**
   * Resolves with the first certificate, or undefined after timeoutMs, or at once (undefined) when the
   * orchestrator answers that it has no certificate authority.
   */
  waitForCertificate(timeoutMs: number): Promise<WorkloadCertificate | undefined> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        if (!this.#cert && !this.#noCa() && !this.#closed) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(this.#cert);
      };
      timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve(this.#cert);
      }, timeoutMs);
      timer.unref();
      this.#waiters.add(check);
      check();
    });
  }

  /**
   * Asks for a new certificate now (a new key, a new CSR). Resolves true when one was obtained; on
   * failure a retry is scheduled with backoff and it resolves false. Concurrent calls share one request.
   */
  renew(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    this.#inFlight ??= this.#request().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  /** Writes this identity's metrics into a registry (the proxy's); called at start and before each scrape. */
  collectMetrics(registry: MetricsRegistry): void {
    if (this.#registry !== registry) {
      this.#registry = registry;
      this.#expiry = registry.gauge('wasmesh_proxy_cert_expiry_seconds', 'Seconds until the workload certificate expires (notAfter)');
      this.#failureCounter = registry.counter('wasmesh_proxy_cert_renewal_failures_total', 'Failed workload certificate requests and renewals');
      this.#unreportedFailures = this.#failures;
    }
    if (this.#unreportedFailures > 0) {
      this.#failureCounter!.increment(this.#unreportedFailures);
      this.#unreportedFailures = 0;
    }
    if (this.#cert) this.#expiry!.record(Math.max(0, Math.round((this.#cert.notAfter.getTime() - Date.now()) / 1000)));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [this.#renewTimer, this.#watchTimer, this.#rootTimer]) if (t) clearTimeout(t);
    this.#watch?.cancel();
    this.#watch = undefined;
    await this.#inFlight?.catch(() => false);
    await this.#saving;
    this.#client.close();
    this.#listeners.clear();
    for (const w of [...this.#waiters]) w();
  }

  // ---- certificate requests ------------------------------------------------------------------

  #noCa(): boolean {
    return this.#lastError?.code === grpc.status.UNAVAILABLE && NO_CA.test(this.#lastError.text);
  }

  async #request(): Promise<boolean> {
    if (this.#renewTimer) clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    const id = this.spiffeId;
    try {
      const key = await generateWorkloadKey();
      const csr = await createCsr(key, id);
      const res = await this.#createCertificate(csr);
      if (this.#closed) return false;
      if (res.trust_bundle.length > 0) this.#bundle = res.trust_bundle.flatMap(splitPem);
      const cert = workloadCertificate(key.keyPem, res.cert_chain.join(''), this.#bundle ?? []);
      if (cert.spiffeId !== id) throw new Error(`the orchestrator issued ${cert.spiffeId}, this proxy asked for ${id}`);
      this.#cert = cert;
      this.#renewals++;
      this.#consecutiveFailures = 0;
      this.#lastError = undefined;
      this.#log('info', `workload certificate ${cert.spiffeId} obtained, valid until ${cert.notAfter.toISOString()}`);
      this.#schedule(this.#renewDelay(cert));
      this.#keep(cert);
      this.#emit(cert);
      return true;
    } catch (err) {
      if (this.#closed) return false;
      const code = (err as Partial<grpc.ServiceError>).code;
      const details = (err as Partial<grpc.ServiceError>).details || (err as Error).message;
      this.#lastError = { ...(typeof code === 'number' ? { code } : {}), text: typeof code === 'number' ? `${grpc.status[code] ?? code}: ${details}` : details };
      this.#failures++;
      if (this.#failureCounter) this.#failureCounter.increment(1);
      else this.#unreportedFailures++;
      this.#consecutiveFailures++;
      const remaining = this.#cert ? this.#cert.notAfter.getTime() - Date.now() : undefined;
      const delay = certificateRetryDelay(this.#consecutiveFailures, remaining, { initialMs: this.#initialMs, maxMs: this.#maxMs, urgentMaxMs: this.#urgentMaxMs });
      const left = this.#cert ? `current certificate valid until ${this.#cert.notAfter.toISOString()}` : 'no certificate yet';
      this.#log(this.#noCa() ? 'warn' : 'error', `workload certificate request for ${id} failed (${this.#lastError.text}); ${left}; retrying in ${delay} ms`);
      this.#schedule(delay);
      for (const w of [...this.#waiters]) w();
      return false;
    }
  }

  #createCertificate(csr: string): Promise<CertificateResponse> {
    const md = new grpc.Metadata();
    if (this.#opts.token) md.set('authorization', `Bearer ${this.#opts.token}`);
    return new Promise((resolve, reject) => {
      this.#client.CreateCertificate({ csr, ttl_seconds: this.#opts.ttlSeconds ?? 0 }, md, { deadline: Date.now() + 10_000 }, (err, res) =>
        err ? reject(err) : res ? resolve(res) : reject(new Error('empty CreateCertificate answer')),
      );
    });
  }

  /** Half of the life left from now (notBefore is backdated for clock skew, so it is not the start). */
  #renewDelay(cert: WorkloadCertificate): number {
    const now = Date.now();
    const start = Math.max(cert.notBefore.getTime(), now);
    return Math.max(100, Math.round((cert.notAfter.getTime() - start) / 2));
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    if (this.#renewTimer) clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => {
      this.#renewTimer = undefined;
      void this.renew();
    }, delayMs);
    this.#renewTimer.unref();
  }

  /** Writes the identity to keepDir (in order; a failure is logged, the proxy goes on without it). */
  #keep(cert: WorkloadCertificate): void {
    const dir = this.#opts.keepDir;
    if (!dir) return;
    this.#saving = this.#saving
      .then(() => saveKeptIdentity(dir, cert))
      .catch((err: unknown) => this.#log('error', `cannot keep the workload identity in ${dir}: ${(err as Error).message}`));
  }

  #emit(cert: WorkloadCertificate): void {
    if (this.#registry) this.collectMetrics(this.#registry);
    for (const l of [...this.#listeners]) {
      try {
        l(cert);
      } catch (err) {
        this.#log('error', `identity listener failed: ${(err as Error).message}`);
      }
    }
    for (const w of [...this.#waiters]) w();
  }

  // ---- trust bundle ----------------------------------------------------------------------------

  #watchBundle(): void {
    if (this.#closed) return;
    const md = new grpc.Metadata();
    if (this.#opts.token) md.set('authorization', `Bearer ${this.#opts.token}`);
    const call = this.#client.WatchTrustBundle({}, md);
    this.#watch = call;
    let ended = false;
    const end = (why: string) => {
      if (ended) return;
      ended = true;
      if (this.#watch === call) this.#watch = undefined;
      call.cancel();
      if (this.#closed) return;
      const delay = Math.round(this.#watchDelayMs * (0.8 + Math.random() * 0.4));
      this.#watchDelayMs = Math.min(this.#watchDelayMs * 2, this.#maxMs);
      this.#log('warn', `trust bundle watch ended (${why}); reconnecting in ${delay} ms`);
      this.#watchTimer = setTimeout(() => {
        this.#watchTimer = undefined;
        this.#watchBundle();
      }, delay);
      this.#watchTimer.unref();
    };
    call.on('data', (msg: TrustBundleMessage) => {
      this.#watchDelayMs = this.#initialMs;
      this.#onBundle(msg);
    });
    call.on('error', (err: grpc.ServiceError) => end(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    call.on('end', () => end('closed by the orchestrator'));
  }

  #onBundle(msg: TrustBundleMessage): void {
    if (this.#closed) return;
    if (msg.trust_domain && msg.trust_domain !== this.#trustDomain) {
      this.#log('info', `the orchestrator's trust domain is ${msg.trust_domain}`);
      this.#trustDomain = msg.trust_domain;
    }
    const roots = msg.roots.flatMap(splitPem);
    if (roots.length === 0) return;
    const before = this.#bundle ?? [];
    if (same(before, roots)) return;
    this.#bundle = roots;
    const added = roots.some((r) => !before.includes(r));
    const cert = this.#cert;
    if (!cert) return;
    this.#cert = { ...cert, trustBundlePem: roots };
    this.#log('info', `trust bundle changed: ${roots.length} root(s)`);
    this.#keep(this.#cert);
    this.#emit(this.#cert);
    if (added && before.length > 0) {
      // A new root signs from now on: re-issue once peers had a moment to trust it.
      if (this.#rootTimer) clearTimeout(this.#rootTimer);
      this.#rootTimer = setTimeout(() => {
        this.#rootTimer = undefined;
        void this.renew();
      }, this.#opts.rootRenewDelayMs ?? 2000);
      this.#rootTimer.unref();
    }
  }
}

export interface RetrySchedule {
  /** The first retry's delay (before jitter). */
  initialMs: number;
  /** Cap while the certificate is comfortably valid. */
  maxMs: number;
  /** Cap while there is no certificate or less than ten times this cap is left on it. */
  urgentMaxMs: number;
}

/**
 * Delay before the next certificate request after `failures` consecutive failures (1, 2, ...), with
 * `remainingMs` of validity left on the current certificate (undefined: none). Doubles from
 * initialMs; capped at a tenth of the time left, but never below urgentMaxMs nor above maxMs, so a
 * proxy without a certificate or near expiry retries every few seconds while one with hours left
 * backs off further. Jittered down to half (all proxies failing together do not retry together).
 */
export function certificateRetryDelay(failures: number, remainingMs: number | undefined, schedule: RetrySchedule, random: () => number = Math.random): number {
  const exponential = schedule.initialMs * 2 ** Math.min(Math.max(failures - 1, 0), 30);
  const cap = remainingMs === undefined ? schedule.urgentMaxMs : Math.max(schedule.urgentMaxMs, Math.min(schedule.maxMs, remainingMs / 10));
  return Math.max(1, Math.round(Math.min(exponential, cap) * (0.5 + random() * 0.5)));
}

function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
