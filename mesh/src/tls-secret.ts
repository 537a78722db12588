// TLSSecret: wasmesh's stand-in for the Kubernetes secret an Istio gateway reads for
// `credentialName` (cert, key and optionally cacert, Istio's generic secret keys). What is checked
// when one is written, how a Gateway's credentialName finds one, and the redacted form every read
// through the orchestrator's API returns (fingerprints and the certificate's public facts, never PEM).
//
// Lookup follows Istio: a gateway proxy reads the secret from its own namespace (the namespace its
// token is bound to in managed mode), so a secret only ever reaches gateways of its namespace.
// For MUTUAL, the client roots are the secret's cacert, else the cacert of `<name>-cacert`.

import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { isRecord, namespaceOf, type ConfigDocument, type TLSSecret } from './documents.ts';

export const TLS_SECRET_KIND = 'TLSSecret';
/** Istio's convention: the client roots of secret `x` may live in secret `x-cacert`. */
export const CACERT_SUFFIX = '-cacert';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM bundle, in order; throws naming the block that does not parse. */
export function parseCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate (-----BEGIN CERTIFICATE-----) found');
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (err) {
      throw new Error(`certificate ${i + 1} of ${blocks.length} does not parse: ${(err as Error).message}`);
    }
  });
}

/** Problems of a TLSSecret's spec, each with a JSON pointer; messages never quote key material. */
export function tlsSecretProblems(spec: unknown): { path: string; message: string }[] {
  if (!isRecord(spec)) return [];
  const out: { path: string; message: string }[] = [];
  const { cert, key, cacert } = spec as { cert?: unknown; key?: unknown; cacert?: unknown };
  if (cert === undefined && key === undefined && cacert === undefined) {
    out.push({ path: '/spec', message: 'a TLSSecret holds cert and key (and optionally cacert), or cacert alone (a `<name>-cacert` secret)' });
    return out;
  }
  if (cert !== undefined && key === undefined) out.push({ path: '/spec/key', message: 'key (the PEM private key of cert) is required with cert' });
  if (key !== undefined && cert === undefined) out.push({ path: '/spec/cert', message: 'cert (the PEM certificate chain of key) is required with key' });
  let leaf: X509Certificate | undefined;
  if (typeof cert === 'string') {
    try {
      leaf = parseCertificates(cert)[0];
    } catch (err) {
      out.push({ path: '/spec/cert', message: (err as Error).message });
    }
  }
  let privateKey: KeyObject | undefined;
  if (typeof key === 'string') {
    try {
      privateKey = createPrivateKey(key);
    } catch {
      // Node's message may quote the input: say what is wrong without it.
      out.push({ path: '/spec/key', message: 'key is not a PEM private key (PKCS#8, PKCS#1 or SEC1; unencrypted)' });
    }
  }
  if (leaf && privateKey && !leaf.checkPrivateKey(privateKey)) {
    out.push({ path: '/spec/key', message: `key does not match the certificate (${leaf.subject.replace(/\n/g, ', ')}): its public key is another's` });
  }
  if (typeof cacert === 'string') {
    try {
      parseCertificates(cacert);
    } catch (err) {
      out.push({ path: '/spec/cacert', message: (err as Error).message });
    }
  }
  return out;
}

export function sha256Fingerprint(text: string): string {
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

/** What an API read returns for a TLSSecret: metadata, an empty spec, fingerprints and public facts. */
export function redactTlsSecret<R extends { spec?: unknown }>(resource: R): Omit<R, 'spec'> & { spec: Record<string, never>; status: Record<string, unknown> } {
  const spec = (isRecord(resource.spec) ? resource.spec : {}) as { cert?: unknown; key?: unknown; cacert?: unknown };
  const fingerprints: Record<string, string> = {};
  for (const field of ['cert', 'key', 'cacert'] as const) {
    const v = spec[field];
    if (typeof v === 'string') fingerprints[field] = sha256Fingerprint(v);
  }
  const status: Record<string, unknown> = { redacted: 'a TLSSecret is never returned in plaintext: these are the sha256 of each field', fingerprints };
  if (typeof spec.cert === 'string') {
    try {
      const leaf = parseCertificates(spec.cert)[0]!;
      status.certificate = {
        subject: leaf.subject.replace(/\n/g, ', '),
        issuer: leaf.issuer.replace(/\n/g, ', '),
        serialNumber: leaf.serialNumber,
        notAfter: new Date(leaf.validTo).toISOString(),
        ...(leaf.subjectAltName ? { subjectAltNames: leaf.subjectAltName } : {}),
        sha256: leaf.fingerprint256,
      };
    } catch {
      // Stored before a check tightened: fingerprints only.
    }
  }
  const { spec: _omitted, ...rest } = resource;
  return { ...rest, spec: {}, status };
}

/** The PEM a gateway server uses from a TLSSecret, resolved for one gateway workload namespace. */
export interface ResolvedCredential {
  /** "namespace/name" of the secret. */
  name: string;
  cert: string;
  key: string;
  /** Client roots: the secret's cacert, else `<name>-cacert`'s. */
  cacert?: string;
  /** Changes whenever any of the PEM changes (the proxy rebuilds its context then). */
  sha256: string;
}

export type CredentialLookup = (name: string) => ResolvedCredential | undefined;

/** TLSSecrets of a document set by "namespace/name". */
export function tlsSecrets(documents: readonly ConfigDocument[]): Map<string, TLSSecret> {
  const out = new Map<string, TLSSecret>();
  for (const doc of documents) {
    const v = doc.value as TLSSecret;
    if (!isRecord(v) || v.kind !== TLS_SECRET_KIND || !isRecord(v.metadata) || typeof v.metadata.name !== 'string' || !isRecord(v.spec)) continue;
    out.set(`${namespaceOf(v)}/${v.metadata.name}`, v);
  }
  return out;
}

/** credentialName lookup for a gateway proxy in `namespace` (Istio: the gateway's own namespace). */
export function credentialLookup(secrets: ReadonlyMap<string, TLSSecret>, namespace: string): CredentialLookup {
  return (name) => {
    const s = secrets.get(`${namespace}/${name}`);
    if (!s || typeof s.spec.cert !== 'string' || typeof s.spec.key !== 'string') return undefined;
    const cacert = s.spec.cacert ?? secrets.get(`${namespace}/${name}${CACERT_SUFFIX}`)?.spec.cacert;
    return {
      name: `${namespace}/${name}`,
      cert: s.spec.cert,
      key: s.spec.key,
      ...(cacert !== undefined ? { cacert } : {}),
      sha256: sha256Fingerprint(`${s.spec.cert}\0${s.spec.key}\0${cacert ?? ''}`),
    };
  };
}
