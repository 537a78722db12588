// TLS options of a workload identity: the inbound listener's server context and the upstream
// clients' connect options, with the peer's SPIFFE id checked against what the cluster expects.
import { checkServerIdentity, type ConnectionOptions, type PeerCertificate, type SecureContextOptions } from 'node:tls';
import { uriSans } from './certs.ts';
import type { WorkloadCertificate } from './types.ts';

/** Server side: present our chain, require a client certificate that chains to the bundle. */
export function serverContextOptions(cert: WorkloadCertificate): SecureContextOptions {
  return { key: cert.keyPem, cert: cert.certChainPem, ca: cert.trustBundlePem };
}

export const SAN_MISMATCH = 'ERR_WASMESH_SAN_MISMATCH';
/** An upstream connection that needs mTLS while this proxy has no valid workload certificate: not attempted. */
export const NO_CERTIFICATE = 'ERR_WASMESH_NO_WORKLOAD_CERTIFICATE';

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

/**
 * Client side TLS options of an upstream connection: ISTIO_MUTUAL (the workload certificate; the
 * peer's SPIFFE id is checked) or SIMPLE/MUTUAL TLS origination (the server's name is checked).
 */
export interface UpstreamTlsOptions {
  /** PEM key and chain presented to the server (ISTIO_MUTUAL, MUTUAL). */
  key?: string;
  cert?: string;
  /** PEM roots the server must chain to; undefined: the system's roots. */
  ca?: string[];
  /** SNI (never an IP address). */
  servername?: string;
  /** spiffe: a URI SAN must be one of subjectAltNames (any spiffe:// id when empty); names: the server name check; none: nothing verified. */
  verify: 'spiffe' | 'names' | 'none';
  subjectAltNames: readonly string[];
  /** Changes with every new identity (or changed files): clients of an older generation are drained. */
  generation: number | string;
}

/** The server name check of SIMPLE/MUTUAL: one of `names` (DNS, wildcards as Node allows, or an exact URI SAN), else Node's check of the host. */
export function serverNameCheck(names: readonly string[]): (host: string, peer: PeerCertificate) => Error | undefined {
  return (host, peer) => {
    if (names.length === 0) return checkServerIdentity(host, peer);
    const uris = uriSans(peer.subjectaltname);
    if (names.some((n) => uris.includes(n) || checkServerIdentity(n, peer) === undefined)) return undefined;
    return Object.assign(new Error(`server certificate (${peer.subjectaltname ?? 'no SAN'}) matches none of ${names.join(', ')}`), { code: SAN_MISMATCH });
  };
}

/** Node TLS connect options (tls.connect, undici connect, http2.connect, https.Agent) for `tls`. */
export function connectOptions(tls: UpstreamTlsOptions): ConnectionOptions {
  return {
    ...(tls.key !== undefined ? { key: tls.key } : {}),
    ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
    rejectUnauthorized: tls.verify !== 'none',
    checkServerIdentity: tls.verify === 'spiffe' ? spiffeIdentityCheck(tls.subjectAltNames) : tls.verify === 'names' ? serverNameCheck(tls.subjectAltNames) : () => undefined,
  };
}

/** Whether an upstream error is a TLS handshake / peer verification failure (Envoy: UF). */
export function isTlsConnectFailure(err: { code?: string } | undefined): boolean {
  const code = err?.code ?? '';
  return (
    code === SAN_MISMATCH ||
    code === NO_CERTIFICATE ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' ||
    code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' ||
    code === 'SELF_SIGNED_CERT_IN_CHAIN' ||
    code === 'DEPTH_ZERO_SELF_SIGNED_CERT'
  );
}
