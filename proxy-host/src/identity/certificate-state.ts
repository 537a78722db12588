// Whether the proxy has a workload certificate it may use right now. A provider's certificate counts
// from notBefore to notAfter only: timers flip the state at those instants, so an expired certificate
// (renewal failing, orchestrator away) stops mTLS at once instead of being offered to peers that will
// refuse it. The proxy turns the state into its listeners' and upstreams' identity, its readiness
// and its log.
import type { IdentityProvider, WorkloadCertificate } from './types.ts';

export interface CertificateState {
  /** The proxy runs with an identity provider. */
  configured: boolean;
  /** The certificate while it is valid. */
  cert?: WorkloadCertificate;
  /** Why there is none: "none yet", "expired at ...", "this proxy has no workload identity"... */
  missing: string;
  /** Metric label of the missing certificate. */
  reason: 'no_certificate' | 'certificate_expired';
}

/** Timers longer than this are chained (setTimeout's limit is about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class CertificateTracker {
  readonly #provider: IdentityProvider | undefined;
  readonly #onChange: (state: CertificateState) => void;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #state: CertificateState;

  /** Calls `onChange` with every new state (a new certificate, or one becoming valid or expired); not for the first. */
  constructor(provider: IdentityProvider | undefined, onChange: (state: CertificateState) => void, now: () => number = Date.now) {
    this.#provider = provider;
    this.#onChange = onChange;
    this.#now = now;
    this.#state = this.#evaluate();
    this.#unsubscribe = provider?.onChange(() => this.refresh());
  }

  get state(): CertificateState {
    return this.#state;
  }

  /** Re-reads the provider's certificate and the clock; calls onChange if the state changed. */
  refresh(): void {
    const before = this.#state;
    this.#state = this.#evaluate();
    if (this.#state.cert !== before.cert || this.#state.missing !== before.missing) this.#onChange(this.#state);
  }

  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  #evaluate(): CertificateState {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#provider) return { configured: false, missing: 'this proxy has no workload identity', reason: 'no_certificate' };
    const cert = this.#provider.current();
    if (!cert) return { configured: true, missing: 'none yet', reason: 'no_certificate' };
    const now = this.#now();
    const from = cert.notBefore.getTime();
    const until = cert.notAfter.getTime();
    if (now >= until) return { configured: true, missing: `the certificate expired at ${cert.notAfter.toISOString()}`, reason: 'certificate_expired' };
    // Wake up when the certificate becomes valid, or expires.
    const next = now < from ? from : until;
    this.#timer = setTimeout(() => this.refresh(), Math.min(MAX_TIMER_MS, next - now + 1));
    this.#timer.unref();
    if (now < from) return { configured: true, missing: `the certificate is valid only from ${cert.notBefore.toISOString()}`, reason: 'no_certificate' };
    return { configured: true, cert, missing: '', reason: 'no_certificate' };
  }
}
