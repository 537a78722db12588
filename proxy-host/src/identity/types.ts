// Workload identity as the proxy's TLS layer sees it: a key and certificate chain for this workload's
// SPIFFE id, and the trust bundle (possibly several roots, so a root can be rotated). Providers fetch
// and renew it; listeners and upstream clients read the current one and swap contexts when it changes.
import type { MetricsRegistry } from '../../../wasm/src/index.ts';

export interface WorkloadCertificate {
  /** PEM private key (never leaves the proxy). */
  keyPem: string;
  /** PEM certificate chain, leaf first. */
  certChainPem: string;
  /** PEM roots the peer's chain must verify against (several during a root rotation). */
  trustBundlePem: string[];
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> */
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
}

export interface IdentityProvider {
  /** The current identity (undefined until the first one was obtained). */
  current(): WorkloadCertificate | undefined;
  /** Called with every new identity (renewal, root rotation). Returns an unsubscribe function. */
  onChange(listener: (cert: WorkloadCertificate) => void): () => void;
  close(): Promise<void>;
  /** Optional: writes the provider's metrics into the proxy's registry (at start and before each scrape). */
  collectMetrics?(registry: MetricsRegistry): void;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
