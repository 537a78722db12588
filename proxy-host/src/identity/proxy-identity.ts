// The proxy's side of its workload identity: follows the usable certificate (certificate-state.ts),
// hands it to the inbound listener and the upstream clients, and says what that means for inbound
// PeerAuthentication. STRICT without a usable certificate refuses every connection: the proxy is not
// ready (the reason is in /ready), it says so in its log once per change (not per connection), and it
// counts the refused connections by reason.
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';
import type { MtlsMode } from '../../../mesh/src/proxy-config.ts';
import type { RefusedReason } from '../listener/listener.ts';
import { logInfo, logWarn } from '../log.ts';
import { CertificateTracker, type CertificateState } from './certificate-state.ts';
import type { IdentityProvider } from './types.ts';

export const REFUSED_CONNECTIONS = 'wasmesh_proxy_mtls_refused_connections_total';

export interface ProxyIdentityOptions {
  provider: IdentityProvider | undefined;
  metrics: MetricsRegistry;
  /** The inbound listener's PeerAuthentication mode now. */
  inboundMode: () => MtlsMode;
  /** Installs a new state in the listener and the upstream clients. */
  apply: (state: CertificateState) => void;
}

export class ProxyIdentity {
  readonly #opts: ProxyIdentityOptions;
  readonly #tracker: CertificateTracker;
  readonly #refused = new Map<string, Metric>();
  #problem: string | undefined;
  #note = '';

  /** Applies the current state at once. */
  constructor(opts: ProxyIdentityOptions) {
    this.#opts = opts;
    this.#tracker = new CertificateTracker(opts.provider, (state) => this.#apply(state));
    this.#apply(this.#tracker.state);
  }

  get state(): CertificateState {
    return this.#tracker.state;
  }

  /** Why the proxy is not ready because of its identity (empty when nothing is wrong). */
  problems(): string[] {
    return this.#problem ? [this.#problem] : [];
  }

  /** A connection the inbound listener closed: counted, by reason. */
  refused(reason: RefusedReason): void {
    const label = reason === 'no_certificate' ? this.#tracker.state.reason : reason;
    let m = this.#refused.get(label);
    if (!m) {
      m = this.#opts.metrics.counter(REFUSED_CONNECTIONS, 'Inbound connections closed by peer authentication: no usable workload certificate, or a failed mTLS handshake', { reason: label });
      this.#refused.set(label, m);
    }
    m.increment(1);
  }

  /** Re-evaluates what the inbound mode means with the current certificate (after a config change). */
  check(): void {
    const state = this.#tracker.state;
    const mode = this.#opts.inboundMode();
    const problem = mode === 'STRICT' && !state.cert ? `inbound STRICT mTLS without a workload certificate (${state.missing}): connections are refused` : undefined;
    const note = mode === 'PERMISSIVE' && !state.cert && state.configured ? `inbound PERMISSIVE without a workload certificate (${state.missing}): plaintext only, TLS connections are refused` : '';
    if (problem !== this.#problem) {
      if (problem) logWarn('proxy', `not ready: ${problem}`);
      else if (this.#problem) logInfo('proxy', `inbound mTLS: ${state.cert ? `certificate ${state.cert.spiffeId} in use` : `mode ${mode}`}; ready again`);
      this.#problem = problem;
    }
    if (note !== this.#note) {
      if (note) logWarn('proxy', note);
      this.#note = note;
    }
  }

  close(): void {
    this.#tracker.close();
  }

  #apply(state: CertificateState): void {
    this.#opts.apply(state);
    const cert = state.cert;
    if (cert) logInfo('proxy', `identity ${cert.spiffeId}, valid until ${cert.notAfter.toISOString()}, ${cert.trustBundlePem.length} root(s)`);
    else if (state.configured) logWarn('proxy', `no usable workload certificate: ${state.missing}; mTLS destinations fail (503) and STRICT refuses connections until one arrives`);
    this.check();
  }
}
