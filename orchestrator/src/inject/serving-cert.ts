// The injection webhook's TLS serving certificate when none is given: a small CA of its own (ECDSA
// P-256, 10 years) and a leaf for the webhook's DNS names (and IP addresses), 1 year. The kube-apiserver
// trusts the CA through the MutatingWebhookConfiguration's caBundle, so the CA is kept in a directory
// and reused: restarts and new names issue a new leaf under the same CA, and the caBundle stays valid.
//
// Files in the directory:
//   ca-cert.pem   the caBundle (0644)        ca-key.pem   (0600, PKCS#8)
//   tls.crt       the serving chain (0644)   tls.key      (0600, PKCS#8)
//
// Encoding with @peculiar/x509 over WebCrypto, as the mesh CA (certs/ca.ts) does; that CA only
// issues SPIFFE identities from CSRs, so the serving certificate is made here.

import { CLOCK_SKEW_MS } from '../certs/ca.ts'; // also installs the x509 crypto provider
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { pem, serialNumber, writeAtomic } from '../certs/pem-files.ts';

const webCrypto = webcrypto as unknown as Crypto;
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_LIFETIME_MS = 10 * 365 * DAY_MS;
const LEAF_LIFETIME_MS = 365 * DAY_MS;
/** A kept leaf is replaced when it has less than this left. */
const RENEW_BEFORE_MS = 30 * DAY_MS;

export interface ServingCertificate {
  /** PEM leaf certificate. */
  certPem: string;
  /** PEM PKCS#8 key of the leaf. */
  keyPem: string;
  /** PEM CA certificate: the caBundle. */
  caPem: string;
}

export interface ServingCertificateFiles extends ServingCertificate {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  /** What happened: a new CA and leaf, a new leaf under the kept CA, or both kept. */
  action: 'created' | 'reissued' | 'reused';
}

/** The webhook's certificate in `dir` for `names` (DNS names or IP addresses), made or renewed when needed. */
export async function loadOrCreateServingCertificate(dir: string, names: readonly string[]): Promise<ServingCertificateFiles> {
  if (names.length === 0) throw new Error('the serving certificate needs at least one DNS name');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files = { caFile: join(dir, 'ca-cert.pem'), caKeyFile: join(dir, 'ca-key.pem'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
  let ca: { cert: x509.X509Certificate; key: CryptoKey; pem: string } | undefined;
  let action: ServingCertificateFiles['action'] = 'reissued';
  if (existsSync(files.caFile) && existsSync(files.caKeyFile)) {
    const pem = readFileSync(files.caFile, 'utf8');
    ca = { cert: new x509.X509Certificate(pem), key: await importKey(readFileSync(files.caKeyFile, 'utf8'), files.caKeyFile), pem };
    if (ca.cert.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) ca = undefined;
  }
  if (!ca) {
    const made = await createCa();
    writeAtomic(files.caKeyFile, made.keyPem, 0o600);
    writeAtomic(files.caFile, made.certPem, 0o644);
    ca = { cert: new x509.X509Certificate(made.certPem), key: await importKey(made.keyPem, files.caKeyFile), pem: made.certPem };
    action = 'created';
  } else if (existsSync(files.certFile) && existsSync(files.keyFile)) {
    const certPem = readFileSync(files.certFile, 'utf8');
    if (await leafUsable(certPem, ca.cert, names)) {
      return { dir, ...files, certPem, keyPem: readFileSync(files.keyFile, 'utf8'), caPem: ca.pem, action: 'reused' };
    }
  }
  const leaf = await issueLeaf(ca.cert, ca.key, names);
  writeAtomic(files.keyFile, leaf.keyPem, 0o600);
  writeAtomic(files.certFile, leaf.certPem, 0o644);
  return { dir, caFile: files.caFile, certFile: files.certFile, keyFile: files.keyFile, certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: ca.pem, action };
}

/** A CA and a leaf for `names`, in memory only. */
export async function createServingCertificate(names: readonly string[]): Promise<ServingCertificate> {
  const made = await createCa();
  const cert = new x509.X509Certificate(made.certPem);
  const leaf = await issueLeaf(cert, await importKey(made.keyPem, 'CA key'), names);
  return { certPem: leaf.certPem, keyPem: leaf.keyPem, caPem: made.certPem };
}

async function createCa(): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webCrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: `O=wasmesh, CN=wasmesh injection webhook CA ${randomBytes(4).toString('hex')}`,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + CA_LIFETIME_MS),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto),
      ],
    },
    webCrypto,
  );
  return { certPem: pem(cert), keyPem: await exportKey(keys.privateKey) };
}

async function issueLeaf(ca: x509.X509Certificate, caKey: CryptoKey, names: readonly string[]): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webCrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const notAfter = Math.min(now + LEAF_LIFETIME_MS, ca.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: `CN=${names[0]!.replace(/[,+=<>#;"\\]/g, '')}`,
      issuer: ca.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names.map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }))),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false, webCrypto),
      ],
    },
    webCrypto,
  );
  return { certPem: pem(cert), keyPem: await exportKey(keys.privateKey) };
}

/** The kept leaf is signed by `ca`, names every one of `names`, and has more than 30 days left. */
async function leafUsable(certPem: string, ca: x509.X509Certificate, names: readonly string[]): Promise<boolean> {
  let leaf: x509.X509Certificate;
  try {
    leaf = new x509.X509Certificate(certPem);
  } catch {
    return false;
  }
  if (leaf.notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) return false;
  if (!(await leaf.verify({ publicKey: ca.publicKey, signatureOnly: true }, webCrypto).catch(() => false))) return false;
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  const have = new Set((san?.names.items ?? []).map((n) => n.value.toLowerCase()));
  return names.every((n) => have.has(n.toLowerCase()));
}

async function importKey(keyPem: string, file: string): Promise<CryptoKey> {
  try {
    const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
    return await webCrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
  } catch (err) {
    throw new Error(`${file}: not an ECDSA P-256 private key: ${(err as Error).message}`, { cause: err });
  }
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webCrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
}



