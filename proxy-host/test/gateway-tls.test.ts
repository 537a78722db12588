// Gateway TLS termination past SIMPLE, end to end with the real translator, real TLS and openssl:
// MUTUAL from files (client roots, subjectAltNames, verifyCertificateHash), a credentialName
// (TLSSecret) with Istio's `<name>-cacert` convention on a port shared with a SIMPLE server (SNI,
// and 421 for a mutual host asked on another server's connection), ISTIO_MUTUAL with the gateway's
// workload certificate, certificate files rotated on disk (the next handshakes see the new serial,
// no config change), a credential changed at run time, and config_dump never showing a key.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import tls from 'node:tls';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateways.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { freePort, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const gatewayId: WorkloadIdentity = { name: 'istio-ingressgateway', namespace: 'istio-system', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-ingressgateway' };
const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const HOST = 'productpage.default.svc.cluster.local';
const ALLOWED_CLIENT = 'spiffe://cluster.local/ns/partners/sa/allowed';

let mesh: TestCa; // the mesh's CA (workload certificates)
let serverCa: TestCa; // signs the gateway's server certificates
let clientCa: TestCa; // signs the clients of the MUTUAL servers
let dir: string;
let app: TestServer;
let sidecar: Proxy;
let gateway: Proxy;
const ports = { mutual: 0, shared: 0, istio: 0 };
let secret = { cert: '', key: '' };
let clientRootPem = '';
const clients: Record<string, { certPem: string; keyPem: string; file: { cert: string; key: string } }> = {};

function documents(opts: { verifyHash?: string } = {}): object[] {
  return [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'productpage', namespace: 'default' },
      spec: { hosts: [HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: 'productpage' } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'productpage-sidecar', namespace: 'default' },
      spec: { address: '127.0.0.1', ports: { http: sidecar.inboundPort }, labels: { app: 'productpage', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'productpage' },
    },
    // In the gateway's namespace, as Istio reads a gateway's secrets.
    { apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name: 'shop-cert', namespace: 'istio-system' }, spec: { cert: secret.cert, key: secret.key } },
    { apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name: 'partners-cert', namespace: 'istio-system' }, spec: { cert: secret.cert, key: secret.key } },
    { apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name: 'partners-cert-cacert', namespace: 'istio-system' }, spec: { cacert: clientRootPem } },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'edge', namespace: 'default' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          {
            port: { number: ports.mutual, name: 'https-mutual', protocol: 'HTTPS' },
            hosts: ['api.example.com'],
            tls: {
              mode: 'MUTUAL',
              serverCertificate: join(dir, 'server.pem'),
              privateKey: join(dir, 'server.key'),
              caCertificates: join(dir, 'clients-ca.pem'),
              subjectAltNames: [ALLOWED_CLIENT],
              ...(opts.verifyHash ? { verifyCertificateHash: [opts.verifyHash] } : {}),
            },
          },
          { port: { number: ports.shared, name: 'https-shop', protocol: 'HTTPS' }, hosts: ['shop.example.com'], tls: { mode: 'SIMPLE', credentialName: 'shop-cert' } },
          { port: { number: ports.shared, name: 'https-partners', protocol: 'HTTPS' }, hosts: ['partners.example.com'], tls: { mode: 'MUTUAL', credentialName: 'partners-cert' } },
          { port: { number: ports.istio, name: 'https-mesh', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'ISTIO_MUTUAL' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'edge', namespace: 'default' },
      spec: { hosts: ['*'], gateways: ['edge'], http: [{ route: [{ destination: { host: 'productpage', port: { number: 9080 } } }] }] },
    },
  ];
}

function configFor(workload: WorkloadIdentity, objects: object[]) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

interface Outcome {
  status?: number;
  body?: string;
  serial?: string;
  error?: string;
}

/** One HTTP/1.1 GET over a fresh TLS connection: the served certificate's serial and the answer, or the error. */
function get(port: number, servername: string, opts: { client?: string; host?: string; ca?: string; spiffe?: string } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const client = opts.client ? clients[opts.client]! : undefined;
    let serial: string | undefined;
    let data = '';
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: opts.ca ?? serverCa.rootPem, ...(client ? { cert: client.certPem, key: client.keyPem } : {}), ...(opts.spiffe ? { checkServerIdentity: (_h: string, peer: tls.PeerCertificate) => (peer.subjectaltname === `URI:${opts.spiffe}` ? undefined : new Error(`not ${opts.spiffe}: ${peer.subjectaltname}`)) } : {}), ALPNProtocols: ['http/1.1'] }, () => {
      serial = socket.getPeerCertificate().serialNumber;
      socket.write(`GET /productpage HTTP/1.1\r\nhost: ${opts.host ?? servername}\r\nconnection: close\r\n\r\n`);
    });
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), 5000);
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ...(serial ? { serial } : {}), error: err.code ?? err.message });
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.1 (\d+)/.exec(data);
      resolve(m ? { status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4), ...(serial ? { serial } : {}) } : { ...(serial ? { serial } : {}), error: 'closed without an answer' });
    });
  });
}

/** `openssl s_client` against a port: its output (the handshake, the certificate, the verify result). */
function sClient(port: number, servername: string, client?: string): Promise<string> {
  const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-CAfile', join(dir, 'server-ca.pem'), '-verify_return_error', '-ign_eof'];
  if (client) args.push('-cert', clients[client]!.file.cert, '-key', clients[client]!.file.key);
  return new Promise((resolve) => {
    const child = execFile('openssl', args, { timeout: 10_000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
    child.stdin?.end('GET /productpage HTTP/1.1\r\nhost: ' + servername + '\r\nconnection: close\r\n\r\n');
  });
}

async function writeClient(name: string, cert: { certPem: string; keyPem: string }): Promise<void> {
  const file = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  await writeFile(file.cert, cert.certPem);
  await writeFile(file.key, cert.keyPem, { mode: 0o600 });
  clients[name] = { ...cert, file };
}

test.before(async () => {
  mesh = await createTestCa('mesh root');
  serverCa = await createTestCa('server root');
  clientCa = await createTestCa('partner client root');
  const stranger = await createTestCa('stranger root');
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-gateway-tls-test-'));
  const server = await serverCa.issueServer(['api.example.com']);
  await writeFile(join(dir, 'server.pem'), server.certPem);
  await writeFile(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'server-ca.pem'), serverCa.rootPem);
  await writeFile(join(dir, 'clients-ca.pem'), clientCa.rootPem);
  clientRootPem = clientCa.rootPem;
  const shop = await serverCa.issueServer(['shop.example.com', 'partners.example.com']);
  secret = { cert: shop.certPem, key: shop.keyPem };
  const toPem = (c: { keyPem: string; certChainPem: string }) => ({ keyPem: c.keyPem, certPem: c.certChainPem });
  await writeClient('allowed', toPem(await clientCa.issue('partners', 'allowed')));
  await writeClient('other', toPem(await clientCa.issue('partners', 'other')));
  await writeClient('stranger', toPem(await stranger.issue('partners', 'allowed')));
  await writeClient('meshClient', toPem(await mesh.issue('default', 'curl')));
  app = await startHttp1('productpage-app');
  sidecar = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off', identity: new MemoryIdentity(await mesh.issue('default', 'productpage')) },
    translateProxyConfig([], productpage, { telemetry: false }),
  );
  ports.mutual = await freePort();
  ports.shared = await freePort();
  ports.istio = await freePort();
  await sidecar.applyConfig(configFor(productpage, documents()));
  gateway = await Proxy.start(
    { role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await mesh.issue('istio-system', 'istio-ingressgateway')) },
    configFor(gatewayId, documents()),
  );
});

test.after(async () => {
  await gateway?.stop(100);
  await sidecar?.stop(100);
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('MUTUAL (files): a client certificate from caCertificates with an allowed SAN reaches productpage', async () => {
  const res = await get(ports.mutual, 'api.example.com', { client: 'allowed' });
  assert.is(res.status, 200, JSON.stringify(res));
  assert.match(res.body!, /"upstream":"productpage-app"/);
});

test('MUTUAL: no client certificate, another CA, or a SAN not listed are refused before any request', async () => {
  for (const client of [undefined, 'stranger', 'other']) {
    const res = await get(ports.mutual, 'api.example.com', client ? { client } : {});
    assert.is(res.status, undefined, `${client ?? 'no certificate'}: ${JSON.stringify(res)}`);
    assert.ok(res.error, `${client ?? 'no certificate'} is refused`);
  }
});

test('MUTUAL checked with openssl s_client: verified server certificate, refused without a client certificate', async () => {
  const ok = await sClient(ports.mutual, 'api.example.com', 'allowed');
  assert.match(ok, /Verify return code: 0 \(ok\)/);
  assert.match(ok, /HTTP\/1\.1 200/);
  const refused = await sClient(ports.mutual, 'api.example.com');
  assert.not.match(refused, /HTTP\/1\.1 200/);
  assert.match(refused, /alert|certificate required|errno|error/i);
});

test('MUTUAL: verifyCertificateHash lets in only the listed certificate (with the SAN check too)', async () => {
  const der = new X509Certificate(clients.allowed!.certPem).raw;
  const hash = createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
  await gateway.applyConfig(configFor(gatewayId, documents({ verifyHash: hash })));
  assert.is((await get(ports.mutual, 'api.example.com', { client: 'allowed' })).status, 200);
  const other = 'a'.repeat(64);
  await gateway.applyConfig(configFor(gatewayId, documents({ verifyHash: other })));
  assert.ok((await get(ports.mutual, 'api.example.com', { client: 'allowed' })).error, 'a certificate whose hash is not listed is refused');
  await gateway.applyConfig(configFor(gatewayId, documents()));
});

test('credentialName: SIMPLE and MUTUAL servers share a port by SNI; the mutual one takes its roots from <name>-cacert', async () => {
  const shop = await get(ports.shared, 'shop.example.com');
  assert.is(shop.status, 200, JSON.stringify(shop));
  assert.is(shop.serial, new X509Certificate(secret.cert).serialNumber);
  assert.is((await get(ports.shared, 'partners.example.com', { client: 'allowed' })).status, 200);
  assert.ok((await get(ports.shared, 'partners.example.com')).error, 'no client certificate: refused');
  assert.ok((await get(ports.shared, 'partners.example.com', { client: 'stranger' })).error, 'another CA: refused');
  const sc = await sClient(ports.shared, 'shop.example.com');
  assert.match(sc, /Verify return code: 0 \(ok\)/);
  assert.match(sc, /HTTP\/1\.1 200/);
});

test('a mutual host asked on a SIMPLE server connection gets 421, not the route', async () => {
  const res = await get(ports.shared, 'shop.example.com', { host: 'partners.example.com' });
  assert.is(res.status, 421, JSON.stringify(res));
});

test('ISTIO_MUTUAL: the gateway presents its workload certificate; a mesh client certificate is required', async () => {
  const spiffe = 'spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway';
  const res = await get(ports.istio, 'anything.example.com', { client: 'meshClient', ca: mesh.rootPem, spiffe });
  assert.is(res.status, 200, JSON.stringify(res));
  assert.ok((await get(ports.istio, 'anything.example.com', { client: 'allowed', ca: mesh.rootPem, spiffe })).error, 'a client of another CA is refused');
  assert.ok((await get(ports.istio, 'anything.example.com', { ca: mesh.rootPem, spiffe })).error, 'no client certificate is refused');
});

test('certificate files rotated on disk: new handshakes get the new certificate without a config change', async () => {
  const before = await get(ports.mutual, 'api.example.com', { client: 'allowed' });
  const version = gateway.config.version;
  const next = await serverCa.issueServer(['api.example.com']);
  const nextSerial = new X509Certificate(next.certPem).serialNumber;
  assert.is.not(before.serial, nextSerial);
  // A half-done rotation (the new certificate, the old key) keeps the old certificate in use.
  await writeFile(join(dir, 'server.pem.tmp'), next.certPem);
  await rename(join(dir, 'server.pem.tmp'), join(dir, 'server.pem'));
  await new Promise((r) => setTimeout(r, 300));
  const half = await get(ports.mutual, 'api.example.com', { client: 'allowed' });
  assert.is(half.serial, before.serial, 'an inconsistent pair is not used');
  assert.is(half.status, 200);
  await writeFile(join(dir, 'server.key.tmp'), next.keyPem, { mode: 0o600 });
  await rename(join(dir, 'server.key.tmp'), join(dir, 'server.key'));
  let seen: Outcome = {};
  for (let i = 0; i < 50 && seen.serial !== nextSerial; i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = await get(ports.mutual, 'api.example.com', { client: 'allowed' });
  }
  assert.is(seen.serial, nextSerial);
  assert.is(seen.status, 200);
  assert.is(gateway.config.version, version, 'no config change was needed');
  assert.match(await sClient(ports.mutual, 'api.example.com', 'allowed'), new RegExp(`Verify return code: 0`));
});

test('a changed TLSSecret reaches the running gateway as a new config: the next handshake sees it', async () => {
  const next = await serverCa.issueServer(['shop.example.com', 'partners.example.com']);
  secret = { cert: next.certPem, key: next.keyPem };
  await gateway.applyConfig(configFor(gatewayId, documents()));
  const res = await get(ports.shared, 'shop.example.com');
  assert.is(res.serial, new X509Certificate(next.certPem).serialNumber);
  assert.is(res.status, 200);
});

test('config_dump shows the credential by fingerprint, never its key', () => {
  const dump = JSON.stringify(gateway.configDump());
  assert.not.ok(dump.includes('PRIVATE KEY'), 'no private key in config_dump');
  assert.match(dump, /\[redacted\] sha256:[0-9a-f]{64}/);
  // The applied config itself still has it (the listener needs it).
  assert.ok(JSON.stringify(gateway.config).includes('PRIVATE KEY'));
});

test.run();
