// Gateway TLS modes and TLSSecret in the config model: what validation names (field paths, never key
// material), and what translation sends where: a credential only to gateway proxies of the secret's
// namespace, never to sidecars; client roots from `<name>-cacert`; a server whose credential is
// missing left out whole.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromObjects } from '../src/documents.ts';
import type { WorkloadIdentity } from '../src/proxy-config.ts';
import { redactProxyConfig } from '../src/redact.ts';
import { redactTlsSecret } from '../src/tls-secret.ts';
import { GATEWAY_ROLE_LABEL } from '../src/translate/gateways.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';

/** A self-signed EC certificate and its key, made by openssl. */
function selfSigned(cn: string): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-tls-secret-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'c.pem'), 'utf8'), key: readFileSync(join(dir, 'k.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const a = selfSigned('a.example.com');
const b = selfSigned('b.example.com');

const secret = (name: string, namespace: string, spec: object) => ({ apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name, namespace }, spec });
const gateway = (servers: object[], name = 'gw') => ({ apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name, namespace: 'default' }, spec: { selector: { istio: 'ingressgateway' }, servers } });
const https = (port: number, hosts: string[], tls: object) => ({ port: { number: port, name: `https-${port}`, protocol: 'HTTPS' }, hosts, tls });
const service = { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'web', namespace: 'default' }, spec: { hosts: ['web.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1' }] } };
const vs = { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'web', namespace: 'default' }, spec: { hosts: ['*'], gateways: ['gw'], http: [{ route: [{ destination: { host: 'web' } }] }] } };

function errorsOf(objects: object[]): { path: string; message: string }[] {
  return validateDocuments(fromObjects(objects, 'mesh.yaml')).errors.map((e) => ({ path: e.path, message: e.message }));
}

const gatewayIn = (namespace: string): WorkloadIdentity => ({ name: 'ingress', namespace, labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'ingress' });

test('each mode names what it needs and refuses, by field path', () => {
  const errors = errorsOf([
    secret('a-cert', 'istio-system', a),
    gateway([
      https(1001, ['a.example.com'], { mode: 'MUTUAL', serverCertificate: '/c.pem', privateKey: '/k.pem' }),
      https(1002, ['a.example.com'], { mode: 'SIMPLE', serverCertificate: '/c.pem', privateKey: '/k.pem', subjectAltNames: ['x'] }),
      https(1003, ['a.example.com'], { mode: 'SIMPLE', credentialName: 'a-cert', serverCertificate: '/c.pem' }),
      https(1004, ['a.example.com'], { mode: 'MUTUAL', credentialName: 'a-cert' }),
      https(1005, ['a.example.com'], { mode: 'ISTIO_MUTUAL', serverCertificate: '/c.pem' }),
      https(1007, ['a.example.com'], { mode: 'SIMPLE', credentialName: 'nope' }),
    ]),
    // A schema error (its own Gateway: a document with schema errors gets no further checks).
    gateway([https(1006, ['a.example.com'], { mode: 'MUTUAL', credentialName: 'a-cert', verifyCertificateHash: ['not-a-hash'] })], 'gw2'),
  ]);
  const at = (path: string) => errors.filter((e) => e.path === path).map((e) => e.message).join(' | ');
  assert.match(at('/spec/servers/0/tls/caCertificates'), /required for tls mode MUTUAL/);
  assert.match(at('/spec/servers/1/tls/subjectAltNames'), /needs mode MUTUAL/);
  assert.match(at('/spec/servers/2/tls/serverCertificate'), /cannot be combined with credentialName/);
  assert.match(at('/spec/servers/3/tls/credentialName'), /no client roots.*a-cert-cacert/);
  assert.match(at('/spec/servers/4/tls/serverCertificate'), /does not apply to ISTIO_MUTUAL/);
  assert.ok(errors.some((e) => e.path === '/spec/servers/0/tls/verifyCertificateHash/0'), JSON.stringify(errors));
  assert.match(at('/spec/servers/5/tls/credentialName'), /unknown credential "nope".*TLSSecrets: istio-system\/a-cert/);
});

test('a TLSSecret is checked: PEM that parses, a key that matches the certificate; messages never quote the key', () => {
  const errors = errorsOf([
    secret('mismatch', 'default', { cert: a.cert, key: b.key }),
    secret('garbage', 'default', { cert: 'hello', key: 'world' }),
    secret('half', 'default', { cert: a.cert }),
    secret('roots', 'default', { cacert: 'not pem' }),
  ]);
  const paths = errors.map((e) => `${e.path}: ${e.message}`).join('\n');
  assert.match(paths, /\/spec\/key: key does not match the certificate/);
  assert.match(paths, /\/spec\/cert: no PEM certificate/);
  assert.match(paths, /\/spec\/key: key is not a PEM private key/);
  assert.match(paths, /\/spec\/key: key \(the PEM private key of cert\) is required/);
  assert.match(paths, /\/spec\/cacert: no PEM certificate/);
  assert.not.match(paths, /PRIVATE KEY|world/);
  assert.equal(errorsOf([secret('ok', 'default', { ...a, cacert: b.cert })]), []);
});

test('the redacted form has fingerprints and the certificate facts, no PEM', () => {
  const r = redactTlsSecret(secret('ok', 'default', a) as { spec: unknown; metadata: object });
  const text = JSON.stringify(r);
  assert.not.match(text, /BEGIN/);
  assert.equal(r.spec, {});
  assert.match(String((r.status.fingerprints as Record<string, string>).key), /^sha256:[0-9a-f]{64}$/);
  assert.match(String((r.status.certificate as Record<string, string>).subject), /CN=a\.example\.com/);
});

test('a credential reaches gateway proxies of its namespace only, never sidecars; <name>-cacert gives MUTUAL its roots', () => {
  const objects = [
    service,
    vs,
    secret('a-cert', 'istio-system', a),
    secret('b-cert', 'istio-system', b),
    secret('b-cert-cacert', 'istio-system', { cacert: a.cert }),
    gateway([https(8443, ['a.example.com'], { mode: 'SIMPLE', credentialName: 'a-cert' }), https(8443, ['b.example.com'], { mode: 'MUTUAL', credentialName: 'b-cert', subjectAltNames: ['client'] })]),
  ];
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  const config = translateProxyConfig(docs, gatewayIn('istio-system'), { telemetry: false });
  const tls = config.gateway!.listeners[0]!.tls!;
  assert.equal(tls.map((t) => [t.hosts, t.mode ?? 'SIMPLE', t.credential?.name]), [
    [['a.example.com'], 'SIMPLE', 'istio-system/a-cert'],
    [['b.example.com'], 'MUTUAL', 'istio-system/b-cert'],
  ]);
  assert.is(tls[1]!.credential!.cacert, a.cert);
  assert.equal(tls[1]!.subjectAltNames, ['client']);
  assert.is(tls[0]!.credential!.cacert, undefined, 'SIMPLE needs no roots');

  // A gateway proxy of another namespace does not get istio-system's secrets: no HTTPS listener.
  const elsewhere = translateProxyConfig(docs, gatewayIn('default'), { telemetry: false });
  assert.equal(elsewhere.gateway!.listeners, []);
  assert.not.ok(JSON.stringify(elsewhere).includes('PRIVATE KEY'));
  // A sidecar never does.
  const sidecar = translateProxyConfig(docs, { name: 'web', namespace: 'istio-system', labels: { app: 'web' }, serviceAccount: 'web' }, { telemetry: false });
  assert.not.ok(JSON.stringify(sidecar).includes('PRIVATE KEY'));
  // config_dump's form has fingerprints only.
  const dump = JSON.stringify(redactProxyConfig(config));
  assert.not.ok(dump.includes('PRIVATE KEY'));
  assert.match(dump, /\[redacted\] sha256:/);
});

test('a server whose credential is missing in the gateway namespace is left out whole (its hosts are not served under another certificate)', () => {
  const objects = [
    service,
    vs,
    secret('a-cert', 'istio-system', a),
    secret('b-cert', 'other', b),
    gateway([https(8443, ['a.example.com'], { mode: 'SIMPLE', credentialName: 'a-cert' }), https(8443, ['b.example.com'], { mode: 'SIMPLE', credentialName: 'b-cert' })]),
  ];
  const docs = fromObjects(objects, 'mesh.yaml');
  assert.ok(validateDocuments(docs).ok);
  const listener = translateProxyConfig(docs, gatewayIn('istio-system'), { telemetry: false }).gateway!.listeners[0]!;
  assert.equal(listener.tls!.map((t) => t.hosts), [['a.example.com']]);
  assert.equal(listener.virtualHosts.map((v) => v.domains), [['a.example.com']]);
});

test.run();
