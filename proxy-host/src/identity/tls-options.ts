// TLS options of a workload identity: the inbound listener's server context and the upstream
// clients' connect options, with the peer's SPIFFE id checked against what the cluster expects.
import type { PeerCertificate, SecureContextOptions } from 'node:tls';
import { uriSans } from './certs.ts';
import type { WorkloadCertificate } from './types.ts';

/** Server side: present our chain, require a client certificate that chains to the bundle. */
export function serverContextOptions(cert: WorkloadCertificate): SecureContextOptions {
  return { key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem };
}

export const SAN_MISMATCH = 'ERR_WASMESH_SAN_MISMATCH';

/**
 * checkServerIdentity for a mesh peer: instead of a DNS name check, the peer's URI SANs must include
 * one of `expected` (any SPIFFE id when `expected` is empty; the chain is verified against the bundle
 * either way).
 */
export function spiffeIdentityCheck(expected: readonly string[]): (host: string, peer: PeerCertificate) => Error | undefined {
  return (_host, peer) => {
    const sans = uriSans(peer.subjectaltname);
    if (expected.length === 0 ? sans.some((s) => s.startsWith('spiffe://')) : sans.some((s) => expected.includes(s))) return undefined;
    const got = sans.length ? sans.join(', ') : '(no URI SAN)';
    const want = expected.length ? expected.join(', ') : 'any spiffe:// id';
    return Object.assign(new Error(`peer SPIFFE id ${got} does not match the expected ${want}`), { code: SAN_MISMATCH });
  };
}

/** Client side TLS options for an ISTIO_MUTUAL upstream. */
export interface UpstreamTlsOptions {
  key: string;
  cert: string;
  ca: string[];
  subjectAltNames: readonly string[];
  /** Changes with every new identity: clients of an older generation are drained. */
  generation: number;
}

/** Whether an upstream error is a TLS handshake / peer verification failure (Envoy: UF). */
export function isTlsConnectFailure(err: { code?: string } | undefined): boolean {
  const code = err?.code ?? '';
  return (
    code === SAN_MISMATCH ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT'
  );
}
