// The certificate authority on its own, with openssl as the outside verifier: issued chains verify,
// the only identity is the URI SAN, key usages, lifetimes, the 0600 root key, identity checks on the
// CSR, a plugged-in intermediate (Istio cacerts), and root rotation.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CertificateAuthority, CertificateRequestError, parseLifetime } from '../src/certs/ca.ts';
import { pluggedInCa } from '../../scripts/cli/orchestrator.ts';

const run = promisify(execFile);
const roots: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-ca-'));
  roots.push(dir);
  return dir;
}
test.after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

async function openssl(args: string[], cwd?: string): Promise<string> {
  const { stdout } = await run('openssl', args, { cwd });
  return stdout;
}

/** A fresh P-256 key and CSR, made by openssl; `san` as openssl's subjectAltName syntax. */
async function makeCsr(dir: string, opts: { san?: string; subject?: string; rsa?: boolean } = {}): Promise<string> {
  const name = `csr-${Math.random().toString(16).slice(2)}`;
  const keyArgs = opts.rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  await openssl(['req', '-new', ...keyArgs, '-nodes', '-keyout', join(dir, `${name}.key`), '-subj', opts.subject ?? '/', ...(opts.san ? ['-addext', `subjectAltName=${opts.san}`] : []), '-out', join(dir, `${name}.csr`)]);
  return readFileSync(join(dir, `${name}.csr`), 'utf8');
}

function write(dir: string, name: string, pems: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, pems.join(''));
  return path;
}

/** `openssl verify`: true when the leaf verifies against the roots (with intermediates untrusted). */
async function verifies(dir: string, leafPem: string, rootPems: string[], intermediates: string[] = [], extra: string[] = []): Promise<boolean> {
  const leaf = write(dir, `leaf-${Math.random().toString(16).slice(2)}.pem`, [leafPem]);
  const ca = write(dir, `roots-${Math.random().toString(16).slice(2)}.pem`, rootPems);
  const untrusted = intermediates.length ? ['-untrusted', write(dir, `chain-${Math.random().toString(16).slice(2)}.pem`, intermediates)] : [];
  try {
    const out = await openssl(['verify', ...extra, '-CAfile', ca, ...untrusted, leaf]);
    return /: OK\s*$/.test(out);
  } catch {
    return false;
  }
}

async function certText(dir: string, pem: string): Promise<string> {
  return openssl(['x509', '-noout', '-text', '-in', write(dir, `text-${Math.random().toString(16).slice(2)}.pem`, [pem])]);
}

/** The lines of one extension in `openssl x509 -text` output. */
function extension(text: string, name: string): string {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => l.trim().startsWith(`${name}:`) || l.trim().startsWith(`${name}: critical`));
  assert.ok(i >= 0, `extension ${name} present`);
  return lines[i + 1]!.trim();
}

async function dates(dir: string, pem: string): Promise<{ notBefore: number; notAfter: number }> {
  const out = await openssl(['x509', '-noout', '-startdate', '-enddate', '-in', write(dir, `d-${Math.random().toString(16).slice(2)}.pem`, [pem])]);
  const get = (k: string) => Date.parse(new RegExp(`${k}=(.*)`).exec(out)![1]!);
  return { notBefore: get('notBefore'), notAfter: get('notAfter') };
}

async function refused(p: Promise<unknown>, reason: 'invalid-argument' | 'permission-denied'): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, CertificateRequestError);
    assert.is((err as CertificateRequestError).reason, reason, (err as Error).message);
    return (err as Error).message;
  }
  assert.unreachable(`expected ${reason}`);
  return '';
}

async function rejects(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

const A = { namespace: 'team-a', serviceAccount: 'web' };
const ID_A = 'spiffe://cluster.local/ns/team-a/sa/web';

// ---------------------------------------------------------------------------------------------

test('first start makes a P-256 root with a 0600 key; an issued leaf verifies and carries only the SPIFFE URI SAN', async () => {
  const dir = tmp();
  const caDir = join(dir, 'ca');
  const ca = await CertificateAuthority.open({ dir: caDir });
  assert.is(ca.trustDomain, 'cluster.local');
  assert.is(statSync(ca.keyFile).mode & 0o777, 0o600);
  assert.is(statSync(caDir).mode & 0o777, 0o700);
  assert.ok(ca.keyFile.startsWith(caDir));

  const bundle = ca.trustBundle();
  assert.is(bundle.length, 1);
  const rootText = await certText(dir, bundle[0]!);
  assert.match(rootText, /ASN1 OID: prime256v1/);
  assert.match(rootText, /CA:TRUE/);
  const root = await dates(dir, bundle[0]!);
  assert.ok(root.notAfter - Date.now() > 9.9 * 365 * 86_400_000, 'root valid about 10 years');

  const t0 = Date.now();
  const signed = await ca.signCsr(await makeCsr(dir, { subject: '/O=ignored/CN=whatever' }), A);
  assert.is(signed.certChainPem.length, 1, 'a self-signed root puts no intermediate in the chain');
  assert.equal(signed.trustBundlePem, bundle);
  assert.ok(await verifies(dir, signed.certChainPem[0]!, bundle));
  assert.ok(await verifies(dir, signed.certChainPem[0]!, bundle, [], ['-purpose', 'sslserver']));
  assert.ok(await verifies(dir, signed.certChainPem[0]!, bundle, [], ['-purpose', 'sslclient']));

  const text = await certText(dir, signed.certChainPem[0]!);
  assert.is(extension(text, 'X509v3 Subject Alternative Name'), `URI:${ID_A}`, 'exactly one SAN: the SPIFFE id');
  assert.match(text, /X509v3 Subject Alternative Name: critical/);
  assert.not.match(text, /DNS:/);
  assert.not.match(text, /ignored|whatever/, 'the CSR subject is not copied');
  assert.is(extension(text, 'X509v3 Key Usage'), 'Digital Signature, Key Encipherment');
  assert.match(text, /X509v3 Key Usage: critical/);
  assert.is(extension(text, 'X509v3 Extended Key Usage'), 'TLS Web Server Authentication, TLS Web Client Authentication');
  assert.is(extension(text, 'X509v3 Basic Constraints'), 'CA:FALSE');

  const d = await dates(dir, signed.certChainPem[0]!);
  assert.ok(t0 - d.notBefore >= 59_000 && t0 - d.notBefore <= 62_000, `notBefore a minute in the past (${t0 - d.notBefore} ms)`);
  assert.ok(Math.abs(d.notAfter - t0 - 24 * 3600_000) < 3000, 'default lifetime 24 h');
});

test('a later start loads the same root; the key file is re-tightened to 0600', async () => {
  const dir = tmp();
  const first = await CertificateAuthority.open({ dir: join(dir, 'ca'), trustDomain: 'example.org' });
  const second = await CertificateAuthority.open({ dir: join(dir, 'ca'), trustDomain: 'example.org' });
  assert.equal(second.trustBundle(), first.trustBundle());
  assert.is(readdirSync(join(dir, 'ca')).filter((f) => f.endsWith('.pem')).length, 2);
  const signed = await second.signCsr(await makeCsr(dir), A);
  assert.ok(await verifies(dir, signed.certChainPem[0]!, first.trustBundle()), 'signed by the root made at first start');
  assert.is(extension(await certText(dir, signed.certChainPem[0]!), 'X509v3 Subject Alternative Name'), 'URI:spiffe://example.org/ns/team-a/sa/web');
});

test('ttl is honoured; out-of-range ttls are refused', async () => {
  const dir = tmp();
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  const t0 = Date.now();
  const signed = await ca.signCsr(await makeCsr(dir), A, 3600_000);
  const d = await dates(dir, signed.certChainPem[0]!);
  assert.ok(Math.abs(d.notAfter - t0 - 3600_000) < 3000);
  const csr = await makeCsr(dir);
  await refused(ca.signCsr(csr, A, 91 * 86_400_000), 'invalid-argument');
  await refused(ca.signCsr(csr, A, -5), 'invalid-argument');
  const long = await ca.signCsr(csr, A, 90 * 86_400_000);
  assert.ok(Math.abs((await dates(dir, long.certChainPem[0]!)).notAfter - t0 - 90 * 86_400_000) < 5000, '90 days is allowed');

  const short = await CertificateAuthority.open({ dir: join(dir, 'ca'), defaultTtlMs: 600_000, maxTtlMs: 3600_000 });
  const s = await short.signCsr(csr, A);
  assert.ok(Math.abs((await dates(dir, s.certChainPem[0]!)).notAfter - Date.now() - 600_000) < 3000, 'configured default');
  await refused(short.signCsr(csr, A, 7200_000), 'invalid-argument');
  assert.is(parseLifetime('90d', 'x'), 90 * 86_400_000);
  assert.is(parseLifetime('24h', 'x'), 86_400_000);
  assert.throws(() => parseLifetime('1.5h', '--workload-cert-ttl'), /--workload-cert-ttl/);
});

test('a CSR naming another identity is refused; its own id or DNS names are fine (DNS not issued)', async () => {
  const dir = tmp();
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  const msg = await refused(ca.signCsr(await makeCsr(dir, { san: 'URI:spiffe://cluster.local/ns/team-b/sa/web' }), A), 'permission-denied');
  assert.match(msg, /team-b/);
  await refused(ca.signCsr(await makeCsr(dir, { san: `URI:${ID_A},URI:spiffe://cluster.local/ns/kube-system/sa/admin` }), A), 'permission-denied');
  await refused(ca.signCsr(await makeCsr(dir, { san: 'URI:spiffe://evil.org/ns/team-a/sa/web' }), A), 'permission-denied');
  await refused(ca.signCsr(await makeCsr(dir, { subject: '/CN=spiffe:\\/\\/cluster.local\\/ns\\/team-b\\/sa\\/x' }), A), 'permission-denied');

  const own = await ca.signCsr(await makeCsr(dir, { san: `URI:${ID_A},DNS:web.team-a.svc` }), A);
  const text = await certText(dir, own.certChainPem[0]!);
  assert.is(extension(text, 'X509v3 Subject Alternative Name'), `URI:${ID_A}`);
  assert.not.match(text, /DNS:/);

  const rsa = await ca.signCsr(await makeCsr(dir, { rsa: true }), A);
  assert.ok(await verifies(dir, rsa.certChainPem[0]!, ca.trustBundle()), 'an RSA 2048 workload key is accepted');
});

test('malformed, tampered or weak CSRs and bad identities are refused', async () => {
  const dir = tmp();
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  await refused(ca.signCsr('', A), 'invalid-argument');
  await refused(ca.signCsr('not a csr', A), 'invalid-argument');
  await refused(ca.signCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', A), 'invalid-argument');
  // Flip a byte inside the signature (the end of the DER): the signature no longer verifies.
  const good = await makeCsr(dir);
  const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 5] ^= 0x01;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  await refused(ca.signCsr(tampered, A), 'invalid-argument');
  await openssl(['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', join(dir, 'weak.key'), '-subj', '/', '-out', join(dir, 'weak.csr')]);
  await refused(ca.signCsr(readFileSync(join(dir, 'weak.csr'), 'utf8'), A), 'invalid-argument');
  await refused(ca.signCsr(good, { namespace: 'a/sa/b', serviceAccount: 'x' }), 'permission-denied');
  await refused(ca.signCsr(good, { namespace: '', serviceAccount: 'x' }), 'permission-denied');
});

/** An openssl root and an intermediate under it, laid out as Istio's cacerts. */
async function makeCacerts(dir: string, opts: { rsaIntermediate?: boolean; withRootFile?: boolean } = {}): Promise<string> {
  const cacerts = join(dir, 'cacerts');
  const o = (f: string) => join(dir, f);
  await run('mkdir', ['-p', cacerts]);
  writeFileSync(o('ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-nodes', '-keyout', o('root.key'), '-out', o('root.pem'), '-days', '3650', '-subj', '/O=Operator/CN=Operator Root', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const keyArgs = opts.rsaIntermediate ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  await openssl(['req', '-new', ...keyArgs, '-nodes', '-keyout', o('int.key'), '-out', o('int.csr'), '-subj', '/O=Operator/CN=Mesh Intermediate']);
  await openssl(['x509', '-req', '-in', o('int.csr'), '-CA', o('root.pem'), '-CAkey', o('root.key'), '-CAcreateserial', '-out', o('int.pem'), '-days', '730', '-extfile', o('ca.ext')]);
  copyFileSync(o('int.pem'), join(cacerts, 'ca-cert.pem'));
  copyFileSync(o('int.key'), join(cacerts, 'ca-key.pem'));
  writeFileSync(join(cacerts, 'cert-chain.pem'), readFileSync(o('int.pem'), 'utf8') + readFileSync(o('root.pem'), 'utf8'));
  if (opts.withRootFile !== false) copyFileSync(o('root.pem'), join(cacerts, 'root-cert.pem'));
  return cacerts;
}

test('a plugged-in intermediate signs; the issued chain carries it and verifies to the operator root', async () => {
  const dir = tmp();
  const cacerts = await makeCacerts(dir);
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: pluggedInCa(cacerts) });
  assert.ok(ca.pluggedIn);
  assert.equal(readdirSync(dir).includes('ca'), false, 'no self-managed root is made');
  const rootPem = readFileSync(join(dir, 'root.pem'), 'utf8');
  const signed = await ca.signCsr(await makeCsr(dir), A);
  assert.is(signed.certChainPem.length, 2, 'leaf then the intermediate; not the root');
  assert.is(signed.trustBundlePem.length, 1);
  assert.ok(await verifies(dir, signed.trustBundlePem[0]!, [rootPem]), 'the bundle is the operator root');
  assert.ok(await verifies(dir, signed.certChainPem[0]!, [rootPem], signed.certChainPem.slice(1)), 'openssl verify -CAfile root -untrusted chain');
  assert.not.ok(await verifies(dir, signed.certChainPem[0]!, [rootPem]), 'the leaf is signed by the intermediate, not the root');
  const text = await certText(dir, signed.certChainPem[0]!);
  assert.match(text, /Issuer: O ?= ?Operator, CN ?= ?Mesh Intermediate/);
  assert.is(extension(text, 'X509v3 Subject Alternative Name'), `URI:${ID_A}`);
  let rotateError: unknown;
  await ca.rotateRoot().catch((e: unknown) => (rotateError = e));
  assert.match(String(rotateError), /plugged in/);
});

test('a plugged-in RSA intermediate without root-cert.pem: the root comes from cert-chain.pem', async () => {
  const dir = tmp();
  const cacerts = await makeCacerts(dir, { rsaIntermediate: true, withRootFile: false });
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: pluggedInCa(cacerts) });
  const rootPem = readFileSync(join(dir, 'root.pem'), 'utf8');
  const signed = await ca.signCsr(await makeCsr(dir), A);
  assert.ok(await verifies(dir, signed.certChainPem[0]!, [rootPem], signed.certChainPem.slice(1)));
  assert.match(await certText(dir, signed.certChainPem[0]!), /Signature Algorithm: sha256WithRSAEncryption/);
});

test('plugged-in CA files that do not fit are refused at open', async () => {
  const dir = tmp();
  const cacerts = await makeCacerts(dir);
  // A key that is not the certificate's.
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(dir, 'other.key')]);
  const wrongKey = { ...pluggedInCa(cacerts), keyFile: join(dir, 'other.key') };
  await rejects(() => CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: wrongKey }), /does not belong/);
  // A root that did not sign the intermediate.
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'r2.key'), '-out', join(dir, 'r2.pem'), '-days', '10', '-subj', '/CN=Other Root', '-addext', 'basicConstraints=critical,CA:TRUE']);
  const wrongRoot = { certFile: join(cacerts, 'ca-cert.pem'), keyFile: join(cacerts, 'ca-key.pem'), rootFile: join(dir, 'r2.pem') };
  await rejects(() => CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: wrongRoot }), /does not chain/);
  // An intermediate with no root at all.
  await rejects(() => CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: { certFile: join(cacerts, 'ca-cert.pem'), keyFile: join(cacerts, 'ca-key.pem') } }), /root/);
  // A leaf certificate is not a CA.
  const ca = await CertificateAuthority.open({ dir: join(dir, 'own') });
  const leaf = await ca.signCsr(await makeCsr(dir), A);
  write(dir, 'leaf-as-ca.pem', leaf.certChainPem);
  await rejects(() => CertificateAuthority.open({ dir: join(dir, 'ca'), pluggedIn: { certFile: join(dir, 'leaf-as-ca.pem'), keyFile: join(dir, 'other.key') } }), /not a CA/);
  assert.throws(() => pluggedInCa(join(dir, 'missing')), /ca-cert\.pem is missing/);
});

test('root rotation: both roots in the bundle, old and new certs verify; after retiring only the new root remains', async () => {
  const dir = tmp();
  const caDir = join(dir, 'ca');
  const ca = await CertificateAuthority.open({ dir: caDir });
  const [oldRoot] = ca.trustBundle();
  const changes: string[][] = [];
  const unsubscribe = ca.onTrustBundleChange((b) => changes.push(b));
  const before = await ca.signCsr(await makeCsr(dir), A);

  await ca.rotateRoot();
  const both = ca.trustBundle();
  assert.is(both.length, 2);
  assert.ok(both.includes(oldRoot!));
  const newRoot = both.find((r) => r !== oldRoot)!;
  assert.equal(changes, [both]);
  assert.is(statSync(ca.keyFile).mode & 0o777, 0o600);
  assert.match(ca.keyFile, /root-0002-key\.pem$/);

  const after = await ca.signCsr(await makeCsr(dir), A);
  assert.equal(after.trustBundlePem, both);
  assert.ok(await verifies(dir, before.certChainPem[0]!, both), 'a cert signed before rotation verifies against the bundle');
  assert.ok(await verifies(dir, after.certChainPem[0]!, both), 'a cert signed after rotation verifies against the bundle');
  assert.ok(await verifies(dir, after.certChainPem[0]!, [newRoot]), 'new certs are signed by the new root');
  assert.not.ok(await verifies(dir, after.certChainPem[0]!, [oldRoot!]));

  // A restart in the middle of a rotation keeps both roots and signs with the new one.
  const reopened = await CertificateAuthority.open({ dir: caDir });
  assert.equal(reopened.trustBundle(), both);

  await ca.retireOldRoots();
  assert.equal(ca.trustBundle(), [newRoot]);
  assert.equal(changes, [both, [newRoot]]);
  assert.ok(await verifies(dir, after.certChainPem[0]!, ca.trustBundle()));
  assert.not.ok(await verifies(dir, before.certChainPem[0]!, ca.trustBundle()), 'the retired root no longer verifies');
  assert.equal(readdirSync(caDir).sort(), ['root-0002-cert.pem', 'root-0002-key.pem']);
  assert.equal((await CertificateAuthority.open({ dir: caDir })).trustBundle(), [newRoot]);

  await ca.retireOldRoots(); // nothing to retire: no change event
  assert.is(changes.length, 2);
  unsubscribe();
  await ca.rotateRoot();
  assert.is(changes.length, 2, 'unsubscribed');
});

test('an interrupted rotation (a key without its cert) is ignored and its generation not reused', async () => {
  const dir = tmp();
  const caDir = join(dir, 'ca');
  const ca = await CertificateAuthority.open({ dir: caDir });
  writeFileSync(join(caDir, 'root-0002-key.pem'), 'half-written', { mode: 0o600 });
  const reopened = await CertificateAuthority.open({ dir: caDir });
  assert.equal(reopened.trustBundle(), ca.trustBundle());
  await reopened.rotateRoot();
  assert.match(reopened.keyFile, /root-0003-key\.pem$/);
  // Concurrent rotations are serialized: each adds one generation.
  await Promise.all([reopened.rotateRoot(), reopened.rotateRoot()]);
  assert.is(reopened.trustBundle().length, 4);
});

test.run();
