// A managed proxy keeps its workload identity on disk so that a restart while the orchestrator is
// away still has mTLS: <dir>/key.pem, cert-chain.pem and root-cert.pem (the --cert-dir layout), all
// mode 0600 in a 0700 folder, each written to a temporary file and renamed into place. What is read
// back is used only if it still holds: the key matches the leaf, the chain verifies up to a root of
// the kept bundle, the certificate is valid now, and its SPIFFE id is the workload's.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { splitPem, workloadCertificate } from './certs.ts';
import { STATIC_FILES } from './static-identity.ts';
import type { WorkloadCertificate } from './types.ts';

export const KEPT_FILES = STATIC_FILES;

export interface KeptIdentityExpectation {
  namespace: string;
  serviceAccount: string;
  /** Required trust domain; undefined: the kept certificate's own is accepted (the orchestrator told it before). */
  trustDomain?: string;
}

export type KeptIdentity = { cert: WorkloadCertificate } | { rejected: string } | { none: true };

/** Reads and checks the identity kept in `dir`. Never throws: a missing or unusable one says why. */
export function loadKeptIdentity(dir: string, expect: KeptIdentityExpectation, now = Date.now()): KeptIdentity {
  const paths = [KEPT_FILES.key, KEPT_FILES.chain, KEPT_FILES.root].map((f) => join(dir, f));
  if (!paths.every((p) => existsSync(p))) return { none: true };
  let cert: WorkloadCertificate;
  try {
    const [key, chain, root] = paths.map((p) => readFileSync(p, 'utf8'));
    cert = workloadCertificate(key!, chain!, root!);
  } catch (err) {
    return { rejected: (err as Error).message };
  }
  const problem = chainProblem(cert) ?? timeProblem(cert, now) ?? idProblem(cert.spiffeId, expect);
  return problem ? { rejected: problem } : { cert };
}

/** Writes the identity to `dir` (created 0700); every file 0600. */
export async function saveKeptIdentity(dir: string, cert: WorkloadCertificate): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const files: [string, string][] = [
    [KEPT_FILES.key, cert.keyPem],
    [KEPT_FILES.chain, cert.certChainPem],
    [KEPT_FILES.root, cert.trustBundlePem.join('')],
  ];
  for (const [name, text] of files) {
    const target = join(dir, name);
    const tmp = `${target}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, target);
  }
}

/** The folder a managed proxy keeps its identity in, inside its data dir. */
export function keptIdentityDir(dataDir: string): string {
  return join(dataDir, 'identity');
}

function chainProblem(cert: WorkloadCertificate): string | undefined {
  const chain = splitPem(cert.certChainPem).map((p) => new X509Certificate(p));
  const roots = cert.trustBundlePem.map((p) => new X509Certificate(p));
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!signedBy(chain[i]!, chain[i + 1]!)) return `certificate ${i} of the chain is not signed by certificate ${i + 1}`;
  }
  const last = chain[chain.length - 1]!;
  if (roots.some((r) => r.fingerprint256 === last.fingerprint256 || signedBy(last, r))) return undefined;
  return 'the certificate chain does not lead to a root of the kept trust bundle';
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

function timeProblem(cert: WorkloadCertificate, now: number): string | undefined {
  if (now >= cert.notAfter.getTime()) return `the certificate expired at ${cert.notAfter.toISOString()}`;
  if (now < cert.notBefore.getTime()) return `the certificate is valid only from ${cert.notBefore.toISOString()}`;
  return undefined;
}

function idProblem(id: string, expect: KeptIdentityExpectation): string | undefined {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id);
  const want = `spiffe://${expect.trustDomain ?? m?.[1] ?? 'cluster.local'}/ns/${expect.namespace}/sa/${expect.serviceAccount}`;
  if (!m || m[2] !== expect.namespace || m[3] !== expect.serviceAccount || (expect.trustDomain !== undefined && m[1] !== expect.trustDomain)) {
    return `the certificate is for ${id}, this proxy is ${want}`;
  }
  return undefined;
}
