// A throwaway certificate authority for mTLS tests, made with @peculiar/x509 over WebCrypto: a root,
// and SPIFFE workload certificates (URI SAN only, serverAuth + clientAuth, as Istio issues them).
import { webcrypto } from 'node:crypto';
import { workloadCertificate } from '../../src/identity/certs.ts';
import type { WorkloadCertificate } from '../../src/identity/types.ts';
import { x509 } from '../../src/identity/x509.ts';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
let serial = 1;

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as CryptoKeyPair;
}

async function keyPem(keys: CryptoKeyPair): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as unknown as webcrypto.CryptoKey);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

export interface TestCa {
  rootPem: string;
  /** A workload certificate for `spiffe://cluster.local/ns/<ns>/sa/<sa>`, trusting `bundle` (default: this root). */
  issue(ns: string, sa: string, options?: { notBefore?: Date; notAfter?: Date; bundle?: string[] }): Promise<WorkloadCertificate>;
  /** A server certificate for DNS names (TLS origination tests): key and chain PEM. */
  issueServer(names: string[]): Promise<{ keyPem: string; certPem: string }>;
}

export async function createTestCa(name = 'wasmesh test root'): Promise<TestCa> {
  const caKeys = await keyPair();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: (serial++).toString(16).padStart(2, '0'),
    name: `CN=${name}, O=wasmesh`,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + 30 * DAY),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const rootPem = root.toString('pem') + '\n';
  return {
    rootPem,
    async issue(ns, sa, options = {}) {
      const keys = await keyPair();
      const id = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (serial++).toString(16).padStart(2, '0'),
        subject: 'O=wasmesh',
        issuer: root.subject,
        notBefore: options.notBefore ?? new Date(Date.now() - 60_000),
        notAfter: options.notAfter ?? new Date(Date.now() + DAY),
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true),
          await x509.AuthorityKeyIdentifierExtension.create(root),
        ],
      });
      return workloadCertificate(await keyPem(keys), leaf.toString('pem') + '\n', options.bundle ?? [rootPem]);
    },
    async issueServer(names) {
      const keys = await keyPair();
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: (serial++).toString(16).padStart(2, '0'),
        subject: `CN=${names[0]}`,
        issuer: root.subject,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + DAY),
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
          await x509.AuthorityKeyIdentifierExtension.create(root),
        ],
      });
      return { keyPem: await keyPem(keys), certPem: leaf.toString('pem') + '\n' };
    },
  };
}
