// Checks of a Gateway server's terminated TLS (tls.mode SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
// ISTIO_MUTUAL) past its schema: which fields each mode needs and refuses, and that a credentialName
// names a TLSSecret (with client roots for the mutual modes). Called by checkGateway
// (validate-gateway.ts) for HTTPS servers; every problem names its field by JSON pointer.
//
// A credentialName is read from the gateway proxy's own namespace (mesh/src/tls-secret.ts), which
// validation does not know: it requires a TLSSecret of that name in some namespace, and names them.

import type { GatewayServer, TLSSecret } from './documents.ts';
import { CACERT_SUFFIX } from './tls-secret.ts';

type Report = (path: string, message: string) => void;
type ServerTls = NonNullable<GatewayServer['tls']>;

export const TERMINATED_MODES: ReadonlySet<string> = new Set(['SIMPLE', 'MUTUAL', 'OPTIONAL_MUTUAL', 'ISTIO_MUTUAL']);

export function checkTerminatedTls(tls: ServerTls, at: string, secrets: ReadonlyMap<string, TLSSecret>, report: Report): void {
  const mode = tls.mode;
  if (mode === undefined) {
    report(`${at}/tls/mode`, 'mode is required on an HTTPS server: SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL');
    return;
  }
  if (!TERMINATED_MODES.has(mode)) {
    report(`${at}/tls/mode`, `tls mode ${mode} is not served by wasmesh gateways yet: use SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL`);
    return;
  }
  const mutual = mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL';
  if (mode === 'ISTIO_MUTUAL') {
    // Istio: the gateway's workload certificate, and nothing else but the names to accept.
    for (const field of ['serverCertificate', 'privateKey', 'caCertificates', 'credentialName', 'verifyCertificateSpki', 'verifyCertificateHash'] as const) {
      if (tls[field] !== undefined) report(`${at}/tls/${field}`, `${field} does not apply to ISTIO_MUTUAL: the gateway presents its workload certificate and verifies clients against the mesh's roots (subjectAltNames may name the SPIFFE ids to accept)`);
    }
    return;
  }
  if (!mutual) {
    for (const field of ['caCertificates', 'subjectAltNames', 'verifyCertificateSpki', 'verifyCertificateHash'] as const) {
      if (tls[field] !== undefined) report(`${at}/tls/${field}`, `${field} verifies client certificates: it needs mode MUTUAL or OPTIONAL_MUTUAL (mode is SIMPLE)`);
    }
  }
  if (tls.credentialName !== undefined) {
    for (const field of ['serverCertificate', 'privateKey', 'caCertificates'] as const) {
      if (tls[field] !== undefined) report(`${at}/tls/${field}`, `${field} cannot be combined with credentialName: the TLSSecret ${JSON.stringify(tls.credentialName)} holds the certificate, key and client roots`);
    }
    checkCredential(tls.credentialName, mutual, `${at}/tls/credentialName`, secrets, report);
    return;
  }
  if (tls.serverCertificate === undefined) report(`${at}/tls/serverCertificate`, `serverCertificate (a PEM file) or credentialName (a TLSSecret) is required for tls mode ${mode}`);
  if (tls.privateKey === undefined) report(`${at}/tls/privateKey`, `privateKey (a PEM file) is required with serverCertificate for tls mode ${mode}`);
  if (mutual && tls.caCertificates === undefined) report(`${at}/tls/caCertificates`, `caCertificates (a PEM file of the roots client certificates must chain to) is required for tls mode ${mode}`);
}

function checkCredential(name: string, mutual: boolean, path: string, secrets: ReadonlyMap<string, TLSSecret>, report: Report): void {
  const named = [...secrets.entries()].filter(([, s]) => s.metadata.name === name);
  const withCert = named.filter(([, s]) => typeof s.spec.cert === 'string' && typeof s.spec.key === 'string');
  if (withCert.length === 0) {
    const all = [...secrets.keys()].sort();
    const why = named.length > 0 ? `TLSSecret ${named.map(([k]) => k).join(', ')} holds no cert and key` : `no TLSSecret is named ${JSON.stringify(name)}`;
    report(path, `unknown credential ${JSON.stringify(name)}: ${why}${all.length > 0 ? ` (TLSSecrets: ${all.join(', ')})` : ''}; create it (kind TLSSecret, in the gateway proxy's namespace) with cert and key`);
    return;
  }
  if (!mutual) return;
  const hasRoots = withCert.some(([key, s]) => s.spec.cacert !== undefined || typeof secrets.get(`${key}${CACERT_SUFFIX}`)?.spec.cacert === 'string');
  if (!hasRoots) {
    report(path, `credential ${JSON.stringify(name)} has no client roots for mutual TLS: add cacert to TLSSecret ${withCert.map(([k]) => k).join(', ')}, or create TLSSecret ${name}${CACERT_SUFFIX} with cacert`);
  }
}
