// The mesh's certificate authority (Citadel): signs workload certificates whose only identity is the
// URI SAN spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, and keeps the trust bundle.
//
// Two modes:
//  - Self-managed (default): the first start makes a self-signed root (ECDSA P-256, 10 years) in
//    the CA dir; later starts load it. Files, one pair per root generation:
//      root-0001-cert.pem   (0644)
//      root-0001-key.pem    (0600, PKCS#8)
//    The newest complete pair signs; every root cert in the dir is in the trust bundle. rotateRoot
//    writes the next generation (key first, then cert, each atomically), so a crash leaves either
//    the old state or the new one; retireOldRoots deletes the older generations.
//  - Plugged in (Istio `cacerts`): the operator's root or intermediate signs (ca-cert.pem +
//    ca-key.pem); cert-chain.pem's intermediates go into every issued chain; the roots are
//    root-cert.pem (or the self-signed certs of the chain). The operator rotates by replacing files.
//
// The identity never comes from the CSR: the caller (the gRPC handler) passes the namespace and
// service account of the proxy's token; a CSR whose SAN (or a spiffe:// CN) names another identity
// is refused. All certificate encoding is @peculiar/x509 over Node's WebCrypto.

// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill
// loaded before it.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { pem, serialNumber, writeAtomic } from './pem-files.ts';

const webCrypto = webcrypto as unknown as Crypto;
x509.cryptoProvider.set(webCrypto);

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600_000;
export const MAX_WORKLOAD_TTL_MS = 90 * 24 * 3600_000;
/** Issued certificates start this long before now, for clocks that lag. */
export const CLOCK_SKEW_MS = 60_000;
const ROOT_LIFETIME_MS = 10 * 365 * 24 * 3600_000;
const MAX_CSR_CHARS = 64 * 1024;

/** Why a signing request was refused: the gRPC handler maps these to INVALID_ARGUMENT / PERMISSION_DENIED. */
export class CertificateRequestError extends Error {
  constructor(
    readonly reason: 'invalid-argument' | 'permission-denied',
    message: string,
  ) {
    super(message);
    this.name = 'CertificateRequestError';
  }
}

export interface WorkloadIdentityRef {
  namespace: string;
  serviceAccount: string;
}

export interface PluggedInCa {
  /** The signing CA certificate (root or intermediate), PEM (Istio ca-cert.pem). */
  certFile: string;
  /** Its private key, PEM: PKCS#8, SEC1 EC or PKCS#1 RSA, unencrypted (ca-key.pem). */
  keyFile: string;
  /** Certificates from the signing CA up to (optionally including) the root (cert-chain.pem). */
  chainFile?: string;
  /** The root(s) peers trust (root-cert.pem). Default: the self-signed certs among cert + chain. */
  rootFile?: string;
}

export interface CertificateAuthorityOptions {
  /** Where a self-managed root lives (<data-dir>/ca); created 0700. */
  dir: string;
  /** Default cluster.local. */
  trustDomain?: string;
  pluggedIn?: PluggedInCa;
  /** Lifetime when the request names none (default 24 h). */
  defaultTtlMs?: number;
  /** Longest lifetime a request may ask for (default and at most 90 days). */
  maxTtlMs?: number;
}

export interface SignedCertificate {
  /** PEM certificates, leaf first, then intermediates (never the root). */
  certChainPem: string[];
  /** PEM roots. */
  trustBundlePem: string[];
}

interface Signer {
  cert: x509.X509Certificate;
  key: CryptoKey;
  algorithm: Algorithm | EcdsaParams;
  /** Certificates after the leaf in an issued chain (the signer itself when it is an intermediate). */
  intermediates: x509.X509Certificate[];
  /** Path of the signing key file. */
  keyFile: string;
}

interface RootGeneration {
  gen: number;
  cert: x509.X509Certificate;
  certFile: string;
  keyFile: string;
}

const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9._]{0,253}[a-z0-9])?$/;
/** Kubernetes names: namespaces are DNS labels, service accounts DNS subdomains. */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const ROOT_CERT_FILE = /^root-(\d{4,})-cert\.pem$/;

export function workloadSpiffeId(trustDomain: string, identity: WorkloadIdentityRef): string {
  return `spiffe://${trustDomain}/ns/${identity.namespace}/sa/${identity.serviceAccount}`;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly dir: string;
  readonly pluggedIn: boolean;
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  #signer: Signer;
  #roots: x509.X509Certificate[];
  /** Self-managed only: every root generation on disk, oldest first. */
  #generations: RootGeneration[];
  readonly #listeners = new Set<(bundle: string[]) => void>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(opts: { dir: string; trustDomain: string; pluggedIn: boolean; defaultTtlMs: number; maxTtlMs: number; signer: Signer; roots: x509.X509Certificate[]; generations: RootGeneration[] }) {
    this.dir = opts.dir;
    this.trustDomain = opts.trustDomain;
    this.pluggedIn = opts.pluggedIn;
    this.defaultTtlMs = opts.defaultTtlMs;
    this.maxTtlMs = opts.maxTtlMs;
    this.#signer = opts.signer;
    this.#roots = opts.roots;
    this.#generations = opts.generations;
  }

  static async open(opts: CertificateAuthorityOptions): Promise<CertificateAuthority> {
    const trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    if (!TRUST_DOMAIN.test(trustDomain)) throw new Error(`invalid trust domain ${JSON.stringify(trustDomain)}: lowercase letters, digits, '.', '-', '_'`);
    const maxTtlMs = opts.maxTtlMs ?? MAX_WORKLOAD_TTL_MS;
    if (!Number.isInteger(maxTtlMs) || maxTtlMs < 1000 || maxTtlMs > MAX_WORKLOAD_TTL_MS) throw new Error(`the maximum workload certificate lifetime must be between 1 s and 90 days`);
    const defaultTtlMs = opts.defaultTtlMs ?? Math.min(DEFAULT_WORKLOAD_TTL_MS, maxTtlMs);
    if (!Number.isInteger(defaultTtlMs) || defaultTtlMs < 1000 || defaultTtlMs > maxTtlMs) throw new Error(`the default workload certificate lifetime must be between 1 s and the maximum (${maxTtlMs} ms)`);
    const common = { dir: opts.dir, trustDomain, defaultTtlMs, maxTtlMs };
    if (opts.pluggedIn) {
      const { signer, roots } = await loadPluggedIn(opts.pluggedIn);
      return new CertificateAuthority({ ...common, pluggedIn: true, signer, roots, generations: [] });
    }
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    let generations = readGenerations(opts.dir);
    if (generations.length === 0) {
      await writeRootGeneration(opts.dir, 1, trustDomain);
      generations = readGenerations(opts.dir);
    }
    const signer = await loadSelfManagedSigner(generations[generations.length - 1]!);
    return new CertificateAuthority({ ...common, pluggedIn: false, signer, roots: generations.map((g) => g.cert), generations });
  }

  /** The PEM roots peers must chain to (several while a root rotation is in progress). */
  trustBundle(): string[] {
    return this.#roots.map(pem);
  }

  /** The key file of the current signing CA (self-managed: 0600 in the CA dir). */
  get keyFile(): string {
    return this.#signer.keyFile;
  }

  /** Called with the new bundle after rotateRoot / retireOldRoots. Returns an unsubscribe function. */
  onTrustBundleChange(listener: (bundle: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Signs a workload certificate for `identity` (taken from the caller's token, not the CSR).
   * Throws CertificateRequestError for a bad CSR or lifetime (invalid-argument) or a CSR naming
   * another identity (permission-denied).
   */
  async signCsr(csrPem: string, identity: WorkloadIdentityRef, ttlMs?: number): Promise<SignedCertificate> {
    if (!NAME.test(identity.namespace) || !NAME.test(identity.serviceAccount)) {
      throw new CertificateRequestError('permission-denied', `cannot issue an identity for namespace ${JSON.stringify(identity.namespace)} / service account ${JSON.stringify(identity.serviceAccount)}: not valid names`);
    }
    const id = workloadSpiffeId(this.trustDomain, identity);
    const ttl = ttlMs === undefined || ttlMs === 0 ? this.defaultTtlMs : ttlMs;
    if (!Number.isInteger(ttl) || ttl < 1000 || ttl > this.maxTtlMs) {
      throw new CertificateRequestError('invalid-argument', `certificate lifetime must be between 1 s and ${Math.floor(this.maxTtlMs / 1000)} s (asked ${ttlMs} ms)`);
    }
    const csr = await parseCsr(csrPem);
    checkRequestedIdentity(csr, id);

    // One consistent signer for the whole call, even if a rotation happens meanwhile.
    const signer = this.#signer;
    const roots = this.#roots;
    const now = Date.now();
    const notBefore = new Date(Math.floor((now - CLOCK_SKEW_MS) / 1000) * 1000);
    // Never outlive the CA that signs (or any intermediate above it).
    let notAfterMs = now + ttl;
    for (const c of [signer.cert, ...signer.intermediates]) notAfterMs = Math.min(notAfterMs, c.notAfter.getTime());
    if (notAfterMs <= now) throw new Error(`the signing CA certificate (${signer.cert.subject}) has expired`);
    const notAfter = new Date(Math.floor(notAfterMs / 1000) * 1000);

    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serialNumber(),
        // Empty subject: the identity is the (critical) URI SAN alone, as Istio issues.
        subject: '',
        issuer: signer.cert.subjectName,
        notBefore,
        notAfter,
        publicKey: csr.publicKey,
        signingKey: signer.key,
        signingAlgorithm: signer.algorithm,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true),
          await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, webCrypto),
          await authorityKeyId(signer.cert),
        ],
      },
      webCrypto,
    );
    return { certChainPem: [pem(leaf), ...signer.intermediates.map(pem)], trustBundlePem: roots.map(pem) };
  }

  /**
   * Adds a new root (self-managed CAs only): it signs from now on, and the bundle holds it and
   * every older root until retireOldRoots, so certificates issued before still verify.
   */
  rotateRoot(): Promise<void> {
    return this.#serialized(async () => {
      if (this.pluggedIn) throw new Error('this CA is plugged in (cacerts): rotate it by replacing its files and restarting');
      const gen = Math.max(0, ...this.#generations.map((g) => g.gen), ...strayKeyGenerations(this.dir)) + 1;
      await writeRootGeneration(this.dir, gen, this.trustDomain);
      const generations = readGenerations(this.dir);
      const newest = generations[generations.length - 1]!;
      if (newest.gen !== gen) throw new Error(`${this.dir}: root generation ${gen} was written but is not the newest`);
      this.#signer = await loadSelfManagedSigner(newest);
      this.#generations = generations;
      this.#roots = generations.map((g) => g.cert);
      this.#emit();
    });
  }

  /** Removes every root but the current one from the bundle and the CA dir (self-managed CAs only). */
  retireOldRoots(): Promise<void> {
    return this.#serialized(async () => {
      if (this.pluggedIn) throw new Error('this CA is plugged in (cacerts): its roots are the operator\'s root-cert.pem');
      const current = this.#generations[this.#generations.length - 1]!;
      const old = this.#generations.filter((g) => g !== current);
      if (old.length === 0) return;
      for (const g of old) {
        // Cert first: a crash in between leaves a stray key, which is ignored.
        unlinkSync(g.certFile);
        if (existsSync(g.keyFile)) unlinkSync(g.keyFile);
      }
      this.#generations = [current];
      this.#roots = [current.cert];
      this.#emit();
    });
  }

  #serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #emit(): void {
    const bundle = this.trustBundle();
    for (const l of [...this.#listeners]) {
      try {
        l(bundle);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// CSR checks

async function parseCsr(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  if (typeof csrPem !== 'string' || csrPem.length === 0) throw new CertificateRequestError('invalid-argument', 'csr is empty: send a PEM PKCS#10 certificate request');
  if (csrPem.length > MAX_CSR_CHARS) throw new CertificateRequestError('invalid-argument', `csr is larger than ${MAX_CSR_CHARS} characters`);
  if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(csrPem)) throw new CertificateRequestError('invalid-argument', 'csr must be PEM ("-----BEGIN CERTIFICATE REQUEST-----")');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new CertificateRequestError('invalid-argument', `csr cannot be parsed: ${(err as Error).message}`);
  }
  checkPublicKey(csr.publicKey);
  let valid: boolean;
  try {
    valid = await csr.verify(webCrypto);
  } catch (err) {
    throw new CertificateRequestError('invalid-argument', `csr signature cannot be checked: ${(err as Error).message}`);
  }
  if (!valid) throw new CertificateRequestError('invalid-argument', 'csr signature does not verify with its public key');
  return csr;
}

/** ECDSA P-256 / P-384 or RSA of at least 2048 bits. */
function checkPublicKey(key: x509.PublicKey): void {
  let obj: KeyObject;
  try {
    obj = createPublicKey({ key: Buffer.from(key.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw new CertificateRequestError('invalid-argument', `csr public key cannot be read: ${(err as Error).message}`);
  }
  const details = obj.asymmetricKeyDetails ?? {};
  if (obj.asymmetricKeyType === 'ec' && (details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1')) return;
  if (obj.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return;
  throw new CertificateRequestError('invalid-argument', `csr public key must be ECDSA P-256/P-384 or RSA >= 2048 bits (got ${obj.asymmetricKeyType}${details.namedCurve ? ` ${details.namedCurve}` : ''}${details.modulusLength ? ` ${details.modulusLength}` : ''})`);
}

/** Refuses a CSR whose URI SANs, or spiffe:// CN, name anything but `id`. Other SANs are ignored (not issued). */
function checkRequestedIdentity(csr: x509.Pkcs10CertificateRequest, id: string): void {
  const asked: string[] = [];
  for (const ext of csr.extensions) {
    if (ext.type !== x509.SubjectAlternativeNameExtension.NAME && ext.type !== '2.5.29.17') continue;
    let san: x509.SubjectAlternativeNameExtension;
    try {
      san = new x509.SubjectAlternativeNameExtension(ext.rawData);
    } catch (err) {
      throw new CertificateRequestError('invalid-argument', `csr subjectAltName cannot be parsed: ${(err as Error).message}`);
    }
    for (const name of san.names.items) if (name.type === 'url') asked.push(name.value);
  }
  for (const attr of csr.subjectName.getField('2.5.4.3')) if (/^spiffe:/i.test(attr)) asked.push(attr);
  const other = asked.find((v) => v !== id);
  if (other !== undefined) throw new CertificateRequestError('permission-denied', `csr asks for identity ${other}, but this token may only obtain ${id}`);
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates



async function authorityKeyId(issuer: x509.X509Certificate): Promise<x509.AuthorityKeyIdentifierExtension> {
  const ski = issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false);
  return x509.AuthorityKeyIdentifierExtension.create(issuer.publicKey, false, webCrypto);
}

/** Imports a PEM private key (PKCS#8, SEC1 or PKCS#1) for signing, with its signature algorithm. */
async function importSigningKey(keyPem: string, file: string): Promise<{ key: CryptoKey; algorithm: Algorithm | EcdsaParams; keyObject: KeyObject }> {
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`${file}: not a readable unencrypted private key: ${(err as Error).message}`, { cause: err });
  }
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  const details = keyObject.asymmetricKeyDetails ?? {};
  if (keyObject.asymmetricKeyType === 'ec') {
    const curves: Record<string, [string, string]> = { prime256v1: ['P-256', 'SHA-256'], secp384r1: ['P-384', 'SHA-384'], secp521r1: ['P-521', 'SHA-512'] };
    const c = curves[details.namedCurve ?? ''];
    if (!c) throw new Error(`${file}: unsupported EC curve ${details.namedCurve}`);
    const key = await webCrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: c[0] }, false, ['sign']);
    return { key, algorithm: { name: 'ECDSA', hash: c[1] } as EcdsaParams, keyObject };
  }
  if (keyObject.asymmetricKeyType === 'rsa') {
    const key = await webCrypto.subtle.importKey('pkcs8', pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
    return { key, algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as Algorithm, keyObject };
  }
  throw new Error(`${file}: unsupported key type ${keyObject.asymmetricKeyType} (use ECDSA or RSA)`);
}

function checkKeyMatches(keyObject: KeyObject, cert: x509.X509Certificate, what: string): void {
  const fromKey = createPublicKey(keyObject).export({ format: 'der', type: 'spki' });
  const fromCert = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' }).export({ format: 'der', type: 'spki' });
  if (!fromKey.equals(fromCert)) throw new Error(`${what}: the private key does not belong to the certificate`);
}

function checkIsCa(cert: x509.X509Certificate, what: string): void {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new Error(`${what}: the certificate is not a CA (basicConstraints CA:TRUE missing)`);
  const now = Date.now();
  if (cert.notAfter.getTime() <= now) throw new Error(`${what}: the CA certificate expired at ${cert.notAfter.toISOString()}`);
}

function readCerts(file: string): x509.X509Certificate[] {
  const text = readFileSync(file, 'utf8');
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${file}: no PEM certificate in it`);
  return blocks.map((b, i) => {
    try {
      return new x509.X509Certificate(b);
    } catch (err) {
      throw new Error(`${file}: certificate ${i + 1} cannot be parsed: ${(err as Error).message}`, { cause: err });
    }
  });
}

function sameCert(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  return Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
}

async function loadPluggedIn(p: PluggedInCa): Promise<{ signer: Signer; roots: x509.X509Certificate[] }> {
  const cert = readCerts(p.certFile)[0]!;
  checkIsCa(cert, p.certFile);
  const { key, algorithm, keyObject } = await importSigningKey(readFileSync(p.keyFile, 'utf8'), p.keyFile);
  checkKeyMatches(keyObject, cert, `${p.certFile} / ${p.keyFile}`);
  const chain = p.chainFile ? readCerts(p.chainFile) : [];
  const candidates = [cert, ...chain.filter((c) => !sameCert(c, cert))];
  const selfSigned = await Promise.all(candidates.map((c) => c.isSelfSigned(webCrypto)));
  const intermediates = candidates.filter((_, i) => !selfSigned[i]);
  const roots = p.rootFile ? readCerts(p.rootFile) : candidates.filter((_, i) => selfSigned[i]);
  if (roots.length === 0) throw new Error(`${p.certFile}: an intermediate CA needs its root: give root-cert.pem (or put the root at the end of cert-chain.pem)`);
  // The signer must chain, through the intermediates, to one of the roots.
  const built = await new x509.X509ChainBuilder({ certificates: [...intermediates, ...roots] }).build(cert, webCrypto);
  const top = built[built.length - 1]!;
  if (!roots.some((r) => sameCert(r, top))) {
    throw new Error(`${p.certFile}: does not chain to the root(s)${p.rootFile ? ` in ${p.rootFile}` : ''} through cert-chain.pem`);
  }
  return { signer: { cert, key, algorithm, intermediates, keyFile: p.keyFile }, roots };
}

function generationFiles(dir: string, gen: number): { certFile: string; keyFile: string } {
  const g = String(gen).padStart(4, '0');
  return { certFile: join(dir, `root-${g}-cert.pem`), keyFile: join(dir, `root-${g}-key.pem`) };
}

/** Complete root generations in the CA dir, oldest first. A cert without its key is an error. */
function readGenerations(dir: string): RootGeneration[] {
  const out: RootGeneration[] = [];
  for (const name of readdirSync(dir)) {
    const m = ROOT_CERT_FILE.exec(name);
    if (!m) continue;
    const gen = Number(m[1]);
    const files = generationFiles(dir, gen);
    if (!existsSync(files.keyFile)) throw new Error(`${files.certFile}: its key ${files.keyFile} is missing`);
    out.push({ gen, cert: readCerts(files.certFile)[0]!, ...files });
  }
  return out.sort((a, b) => a.gen - b.gen);
}

/** Generations whose key exists without a cert (a rotation interrupted): their number is not reused. */
function strayKeyGenerations(dir: string): number[] {
  return readdirSync(dir).flatMap((n) => {
    const m = /^root-(\d{4,})-key\.pem$/.exec(n);
    return m ? [Number(m[1])] : [];
  });
}

async function loadSelfManagedSigner(g: RootGeneration): Promise<Signer> {
  checkIsCa(g.cert, g.certFile);
  const { key, algorithm, keyObject } = await importSigningKey(readFileSync(g.keyFile, 'utf8'), g.keyFile);
  checkKeyMatches(keyObject, g.cert, `${g.certFile} / ${g.keyFile}`);
  chmodSync(g.keyFile, 0o600);
  return { cert: g.cert, key, algorithm, intermediates: [], keyFile: g.keyFile };
}

/** Makes a self-signed ECDSA P-256 root valid 10 years and writes it as generation `gen`. */
async function writeRootGeneration(dir: string, gen: number, trustDomain: string): Promise<void> {
  const keys = (await webCrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: `O=${trustDomain}, CN=wasmesh root CA ${gen} ${randomBytes(4).toString('hex')}`,
      notBefore: new Date(Math.floor((now - CLOCK_SKEW_MS) / 1000) * 1000),
      notAfter: new Date(Math.floor((now + ROOT_LIFETIME_MS) / 1000) * 1000),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webCrypto),
      ],
    },
    webCrypto,
  );
  const pkcs8 = Buffer.from(await webCrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  const files = generationFiles(dir, gen);
  writeAtomic(files.keyFile, keyPem, 0o600);
  writeAtomic(files.certFile, pem(cert), 0o644);
}


/** A certificate lifetime as the CLI takes it: "24h", "90d", "30m", "3600s". Throws on anything else. */
export function parseLifetime(text: string, flag: string): number {
  const m = /^(\d{1,9})(d|h|m|s)$/.exec(text);
  if (!m) throw new Error(`${flag} must be a whole number with a unit d, h, m or s, like 24h or 90d (got ${JSON.stringify(text)})`);
  const unit = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 }[m[2] as 'd' | 'h' | 'm' | 's'];
  return Number(m[1]) * unit;
}
