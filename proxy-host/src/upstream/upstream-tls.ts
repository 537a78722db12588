// What one upstream connection to one endpoint speaks: the cluster's TLS settings (ClusterTlsConfig)
// resolved against the endpoint (auto mTLS goes only to endpoints whose tlsMode is 'istio') and the
// proxy's workload identity. mTLS never turns into plaintext by itself: a cluster that needs the
// workload certificate while the proxy has none (not yet, or expired) gets a refusal with the reason,
// which the caller answers as a connection failure (503 UF). Only auto mTLS on a proxy that runs
// without any identity (standalone without --cert-dir, --no-mtls) sends plaintext: mTLS is off there.
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ClusterTlsConfig, EndpointConfig } from '../../../mesh/src/proxy-config.ts';
import { splitPem } from '../identity/certs.ts';
import type { UpstreamTlsOptions } from '../identity/tls-options.ts';
import type { WorkloadCertificate } from '../identity/types.ts';

export type EndpointTls =
  | { kind: 'plaintext' }
  /** `slot` identifies the client (endpoint clients are cached per slot); `options.generation` its version. */
  | { kind: 'tls'; slot: string; options: UpstreamTlsOptions }
  | { kind: 'refused'; reason: string };

export interface IdentityState {
  /** The proxy runs with an identity provider (mTLS is configured). */
  configured: boolean;
  /** The current certificate while it is valid; undefined when there is none or it expired. */
  cert: WorkloadCertificate | undefined;
  /** Why there is no valid certificate ("none yet", "expired at ..."). */
  missing: string;
  /** Bumped with every new certificate or bundle. */
  generation: number;
}

const PLAINTEXT: EndpointTls = { kind: 'plaintext' };

/** The TLS of a connection to `endpoint` of a cluster with `tls` (host: the cluster's, for SNI). */
export function endpointTls(tls: ClusterTlsConfig | undefined, host: string, endpoint: EndpointConfig, identity: IdentityState, files: TlsFiles): EndpointTls {
  if (!tls || tls.mode === 'DISABLE') return PLAINTEXT;
  if (tls.mode === 'ISTIO_MUTUAL') {
    if (tls.auto && (endpoint.tlsMode !== 'istio' || !identity.configured)) return PLAINTEXT;
    const cert = identity.cert;
    if (!cert) {
      const why = identity.configured ? identity.missing : 'this proxy has no workload identity';
      return { kind: 'refused', reason: `mTLS (ISTIO_MUTUAL) needs the workload certificate: ${why}` };
    }
    return {
      kind: 'tls',
      slot: `mtls|${tls.subjectAltNames.join(',')}|${tls.sni ?? ''}`,
      options: {
        key: cert.keyPem,
        cert: cert.certChainPem,
        ca: cert.trustBundlePem,
        ...(tls.sni && !isIP(tls.sni) ? { servername: tls.sni } : {}),
        verify: 'spiffe',
        subjectAltNames: tls.subjectAltNames,
        generation: identity.generation,
      },
    };
  }
  // SIMPLE / MUTUAL: files on this host, re-read when they change.
  try {
    const ca = tls.caCertificates !== undefined ? splitPem(files.read(tls.caCertificates)) : undefined;
    if (ca && ca.length === 0) throw new Error(`caCertificates ${tls.caCertificates} holds no PEM certificate`);
    const mutual = tls.mode === 'MUTUAL' ? { cert: files.read(tls.clientCertificate!), key: files.read(tls.privateKey!) } : {};
    const servername = tls.sni ?? host;
    return {
      kind: 'tls',
      slot: `${tls.mode.toLowerCase()}|${host}|${tls.subjectAltNames.join(',')}|${servername}`,
      options: {
        ...mutual,
        ...(ca ? { ca } : {}),
        ...(isIP(servername) ? {} : { servername }),
        verify: tls.insecureSkipVerify ? 'none' : 'names',
        subjectAltNames: tls.subjectAltNames,
        generation: files.version([tls.caCertificates, tls.clientCertificate, tls.privateKey]),
      },
    };
  } catch (err) {
    return { kind: 'refused', reason: `TLS (${tls.mode}): ${(err as Error).message}` };
  }
}

/** How often a file's modification time is looked at again. */
const RECHECK_MS = 2000;

/** PEM files of SIMPLE/MUTUAL clusters, read once and again when their modification time changes. */
export class TlsFiles {
  readonly #files = new Map<string, { text: string; mtimeMs: number; checkedAt: number; version: number }>();
  #versions = 0;

  /** The file's text; throws an error naming the file when it cannot be read. */
  read(path: string): string {
    const now = Date.now();
    const known = this.#files.get(path);
    if (known && now - known.checkedAt < RECHECK_MS) return known.text;
    let mtimeMs: number;
    let text: string;
    try {
      mtimeMs = statSync(path).mtimeMs;
      text = known && known.mtimeMs === mtimeMs ? known.text : readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const version = known && known.text === text ? known.version : ++this.#versions;
    this.#files.set(path, { text, mtimeMs, checkedAt: now, version });
    return text;
  }

  /** A key that changes when any of the (read) files changed. */
  version(paths: readonly (string | undefined)[]): string {
    return paths.map((p) => (p === undefined ? '-' : String(this.#files.get(p)?.version ?? 0))).join('.');
  }
}
