// The certificate source and client checks of a Gateway server's terminated TLS, for its listener's
// GatewayTlsConfig (gateways.ts). credentialName is resolved here, for the gateway workload's
// namespace (mesh/src/tls-secret.ts): a server whose credential is missing gets no TLS, and
// buildGatewayListeners leaves it out.

import type { GatewayServer } from '../documents.ts';
import type { GatewayTlsConfig } from '../proxy-config.ts';
import type { CredentialLookup } from '../tls-secret.ts';

type ServerTls = NonNullable<GatewayServer['tls']>;
type Source = Omit<GatewayTlsConfig, 'hosts' | 'minVersion' | 'maxVersion' | 'cipherSuites'>;

/** Istio's verifyCertificateHash accepts `AB:CD:...` and plain hex: compared as lowercase hex. */
export function normalizeCertificateHash(hash: string): string {
  return hash.replace(/:/g, '').toLowerCase();
}

export function terminatedTlsSource(tls: ServerTls, credentials: CredentialLookup): Source | undefined {
  const mode = tls.mode;
  if (mode === 'ISTIO_MUTUAL') {
    return { mode, ...(tls.subjectAltNames?.length ? { subjectAltNames: [...tls.subjectAltNames] } : {}) };
  }
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL' && mode !== 'OPTIONAL_MUTUAL') return undefined;
  const mutual = mode !== 'SIMPLE';
  const checks: Partial<Source> = mutual
    ? {
        ...(tls.subjectAltNames?.length ? { subjectAltNames: [...tls.subjectAltNames] } : {}),
        ...(tls.verifyCertificateSpki?.length ? { verifyCertificateSpki: [...tls.verifyCertificateSpki] } : {}),
        ...(tls.verifyCertificateHash?.length ? { verifyCertificateHash: tls.verifyCertificateHash.map(normalizeCertificateHash) } : {}),
      }
    : {};
  const modeField = mutual ? { mode } : {};
  if (tls.credentialName !== undefined) {
    const credential = credentials(tls.credentialName);
    if (!credential || (mutual && credential.cacert === undefined)) return undefined;
    const { name, cert, key, cacert, sha256 } = credential;
    return { ...modeField, credential: { name, cert, key, ...(mutual && cacert !== undefined ? { cacert } : {}), sha256 }, ...checks };
  }
  if (!tls.serverCertificate || !tls.privateKey || (mutual && !tls.caCertificates)) return undefined;
  return {
    ...modeField,
    certificate: tls.serverCertificate,
    privateKey: tls.privateKey,
    ...(mutual ? { caCertificates: tls.caCertificates } : {}),
    ...checks,
  };
}
