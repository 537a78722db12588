// Reading and checking workload certificates (Node's X509Certificate), making keys and CSRs
// (@peculiar/x509 over WebCrypto). No ASN.1 by hand.
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import type { WorkloadCertificate } from './types.ts';

/**
 * The CSR library, loaded on first use: it and its dependencies cost a sidecar about 7 MB, and a proxy
 * that reuses a kept certificate needs it only when it renews.
 */
async function csrLibrary(): Promise<typeof import('./x509.ts')['x509']> {
  return (await import('./x509.ts')).x509;
}

/** The PEM blocks of a text (a chain or a bundle), each with its BEGIN/END lines. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN [A-Z0-9 ]+-----[\s\S]+?-----END [A-Z0-9 ]+-----/g)?.map((b) => `${b}\n`) ?? [];
}

/** The URI SANs of a certificate, as Node formats subjectAltName ("URI:spiffe://..., DNS:..."). */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const out: string[] = [];
  for (const part of subjectAltName.split(/,\s*/)) {
    if (part.startsWith('URI:')) out.push(part.slice(4).replace(/^"|"$/g, ''));
  }
  return out;
}

/** The SPIFFE id of a certificate: its spiffe:// URI SAN (undefined if none). */
export function spiffeIdOf(subjectAltName: string | undefined): string | undefined {
  return uriSans(subjectAltName).find((u) => u.startsWith('spiffe://'));
}

/** The trust domain of a SPIFFE id ("cluster.local" of spiffe://cluster.local/ns/a/sa/b). */
export function trustDomainOf(id: string): string | undefined {
  const m = /^spiffe:\/\/([^/]+)\//.exec(id);
  return m?.[1];
}

/**
 * Checks a key, chain and bundle and describes them as a WorkloadCertificate: the key must match the
 * leaf, the leaf must carry a SPIFFE id, and the bundle must hold at least one certificate.
 */
export function workloadCertificate(keyPem: string, certChainPem: string, trustBundlePem: string[] | string): WorkloadCertificate {
  const chain = splitPem(certChainPem);
  if (chain.length === 0) throw new Error('certificate chain holds no PEM certificate');
  const bundle = (Array.isArray(trustBundlePem) ? trustBundlePem : [trustBundlePem]).flatMap(splitPem);
  if (bundle.length === 0) throw new Error('trust bundle holds no PEM certificate');
  const leaf = new X509Certificate(chain[0]!);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('private key does not match the leaf certificate');
  const id = spiffeIdOf(leaf.subjectAltName);
  if (!id) throw new Error('leaf certificate has no spiffe:// URI SAN');
  return {
    keyPem,
    certChainPem: chain.join(''),
    trustBundlePem: bundle,
    spiffeId: id,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}

export interface WorkloadKey {
  keys: CryptoKeyPair;
  /** PKCS#8 PEM. */
  keyPem: string;
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** A fresh ECDSA P-256 key pair (extractable: the PEM goes to the proxy's TLS contexts). */
export async function generateWorkloadKey(): Promise<WorkloadKey> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
  return { keys, keyPem: pkcs8Pem(Buffer.from(pkcs8)) };
}

/** A PKCS#10 request whose only identity is the SPIFFE id as URI SAN (PEM). */
export async function createCsr(key: WorkloadKey, id: string): Promise<string> {
  const x509 = await csrLibrary();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: key.keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }])],
  });
  return csr.toString('pem');
}

/** PKCS#8 DER as PEM, 64 base64 characters a line. */
function pkcs8Pem(der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----`;
}
