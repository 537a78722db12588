// A gateway proxy end to end, with the real translator: Gateway HTTP, HTTPS (real TLS, SNI, minimum
// version) and httpsRedirect ports on loopback, routing by Host into a STRICT mTLS sidecar, so every
// 200 proves the gateway spoke mTLS into the mesh; bad certificates reject a config whole.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import https from 'node:https';
import tls from 'node:tls';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateways.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { freePort, request, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const gatewayId: WorkloadIdentity = { name: 'istio-ingressgateway', namespace: 'istio-system', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'istio-ingressgateway' };
const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const HOST = 'productpage.default.svc.cluster.local';

let ca: TestCa;
let dir: string;
let app: TestServer;
let sidecar: Proxy;
let gateway: Proxy;
const ports = { http: 0, https: 0, redirect: 0 };

function mesh(certFile = join(dir, 'cert.pem')): object[] {
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
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'bookinfo-gateway', namespace: 'default' },
      spec: {
        selector: { istio: 'ingressgateway' },
        servers: [
          { port: { number: ports.http, name: 'http', protocol: 'HTTP' }, hosts: ['*'] },
          { port: { number: ports.https, name: 'https', protocol: 'HTTPS' }, hosts: ['bookinfo.example.com'], tls: { mode: 'SIMPLE', serverCertificate: certFile, privateKey: join(dir, 'key.pem') } },
          { port: { number: ports.redirect, name: 'http-redirect', protocol: 'HTTP' }, hosts: ['bookinfo.example.com'], tls: { httpsRedirect: true } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'bookinfo', namespace: 'default' },
      spec: { hosts: ['*'], gateways: ['bookinfo-gateway'], http: [{ match: [{ uri: { prefix: '/productpage' } }], route: [{ destination: { host: 'productpage', port: { number: 9080 } } }] }] },
    },
  ];
}

function configFor(workload: WorkloadIdentity, objects: object[], telemetry = false) {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry });
}

function httpsGet(port: number, servername: string | undefined, options: https.RequestOptions = {}): Promise<{ status: number; body: string; protocol: string | null }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path: '/productpage', ca: ca.rootPem, ...(servername ? { servername, headers: { host: servername } } : {}), agent: false, ...options },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, protocol: (res.socket as tls.TLSSocket).getProtocol?.() ?? null }));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test.before(async () => {
  ca = await createTestCa();
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-gateway-test-'));
  const server = await ca.issueServer(['bookinfo.example.com']);
  await writeFile(join(dir, 'cert.pem'), server.certPem);
  await writeFile(join(dir, 'key.pem'), server.keyPem, { mode: 0o600 });
  await writeFile(join(dir, 'bad.pem'), 'not a certificate\n');
  app = await startHttp1('productpage-app');
  sidecar = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'productpage')) },
    translateProxyConfig([], productpage, { telemetry: false }),
  );
  ports.http = await freePort();
  ports.https = await freePort();
  ports.redirect = await freePort();
  await sidecar.applyConfig(configFor(productpage, mesh()));
  gateway = await Proxy.start(
    { role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('istio-system', 'istio-ingressgateway')) },
    configFor(gatewayId, mesh(), true),
  );
});

test.after(async () => {
  await gateway?.stop(100);
  await sidecar?.stop(100);
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the gateway role opens the Gateway ports on loopback and no sidecar listeners', () => {
  assert.equal([...gateway.gatewayPorts().keys()].sort(), [ports.http, ports.https, ports.redirect].sort());
  assert.is(gateway.outboundPort, 0);
  assert.is(gateway.inboundPort, 0);
});

test('a browser-shaped request (Host: 127.0.0.1:<port>) reaches productpage through the STRICT sidecar (mTLS)', async () => {
  const res = await request(ports.http, { path: '/productpage' });
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'productpage-app');
  // The sidecar refuses plaintext, so the 200 above came over mTLS.
  const refused = await request(sidecar.inboundPort, { path: '/productpage', headers: { host: HOST } }).catch((err: Error) => err);
  assert.instance(refused, Error);
});

test('paths no route matches get 404', async () => {
  const res = await request(ports.http, { path: '/nothing-here' });
  assert.is(res.status, 404);
});

test('HTTPS: TLS terminated with the Gateway certificate (verified against its CA), SNI routed; other hosts 404', async () => {
  const res = await httpsGet(ports.https, 'bookinfo.example.com');
  assert.is(res.status, 200, res.body);
  assert.is(JSON.parse(res.body).upstream, 'productpage-app');
  const other = await httpsGet(ports.https, undefined, { headers: { host: 'other.example.com' }, rejectUnauthorized: false });
  assert.is(other.status, 404, 'a host the HTTPS server does not expose is not routed');
});

test('HTTPS refuses TLS 1.1 (minimum TLS 1.2 by default)', async () => {
  const err = await httpsGet(ports.https, 'bookinfo.example.com', { maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }).catch((e: Error) => e);
  assert.instance(err, Error);
});

test('httpsRedirect answers 301 to the HTTPS port of the same host', async () => {
  const res = await request(ports.redirect, { path: '/productpage?x=1', headers: { host: `bookinfo.example.com:${ports.redirect}` } });
  assert.is(res.status, 301);
  assert.is(res.headers.location, `https://bookinfo.example.com:${ports.https}/productpage?x=1`);
});

test('telemetry on the gateway reports as the client side: reporter="source"', async () => {
  let text = '';
  for (let i = 0; i < 50 && !/istio_requests_total\{[^}]*reporter="source"/.test(text); i++) {
    await request(ports.http, { path: '/productpage' });
    text = gateway.renderPrometheus();
    if (!/reporter="source"/.test(text)) await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(text, /istio_requests_total\{[^}]*reporter="source"/);
  assert.not.match(text, /istio_requests_total\{[^}]*reporter="destination"/);
});

test('a config whose certificate cannot be loaded is rejected whole; the running one keeps serving', async () => {
  const before = gateway.config.version;
  const err = await gateway.applyConfig(configFor(gatewayId, mesh(join(dir, 'bad.pem')), true)).catch((e: Error) => e);
  assert.instance(err, Error);
  assert.match((err as Error).message, /bad\.pem/);
  assert.is(gateway.config.version, before);
  assert.is((await httpsGet(ports.https, 'bookinfo.example.com')).status, 200);
});

test.run();
