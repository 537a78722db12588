// Policies attached to a Gateway with targetRefs, through a real gateway proxy on loopback: a
// RequestAuthentication and an AuthorizationPolicy naming the Gateway enforce JWT at the gateway (keys
// fetched from a JWKS endpoint through the gateway's callouts) and not at the sidecar behind it; a
// RateLimitPolicy naming the Gateway limits there and not at the sidecar. Documents validated and
// translated by mesh/ for both proxies, as standalone proxies do.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import net from 'node:net';
import { fromObjects } from '../../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../../mesh/src/translate/proxy-config.ts';
import { GATEWAY_ROLE_LABEL } from '../../../mesh/src/translate/gateways.ts';
import { formatErrors, validateDocuments } from '../../../mesh/src/validate.ts';
import { Proxy } from '../../../proxy-host/src/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { policyWasm } from '../../policy/test/support.ts';
import { ISSUER, JwksServer, authnWasm, jwks, mint, signingKey, type SigningKey } from './support.ts';

const gatewayId: WorkloadIdentity = { name: 'web-gateway', namespace: 'default', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'web-gateway' };
const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const HOST = 'productpage.default.svc.cluster.local';
const target = [{ group: 'networking.istio.io', kind: 'Gateway', name: 'web' }];

let app: TestServer;
let keys: JwksServer;
let key: SigningKey;
let sidecar: Proxy;
let gateway: Proxy;
let gatewayPort = 0;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function mesh(): object[] {
  return [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'productpage', namespace: 'default' },
      spec: { hosts: [HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: 'productpage' } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'productpage-1', namespace: 'default' },
      spec: { address: '127.0.0.1', ports: { http: sidecar.inboundPort }, labels: { app: 'productpage' }, serviceAccount: 'productpage' },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'Gateway',
      metadata: { name: 'web', namespace: 'default' },
      spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: gatewayPort, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'web', namespace: 'default' },
      spec: { hosts: ['*'], gateways: ['web'], http: [{ route: [{ destination: { host: 'productpage', port: { number: 9080 } } }] }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'edge-jwt', namespace: 'default' },
      spec: { targetRefs: target, jwtRules: [{ issuer: ISSUER, jwksUri: `http://127.0.0.1:${keys.port}/jwks.json` }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'edge-require-jwt', namespace: 'default' },
      spec: { targetRefs: target, action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: [`${ISSUER}/*`] } }] }] },
    },
    {
      apiVersion: 'policy.wasmesh.io/v1alpha1',
      kind: 'RateLimitPolicy',
      metadata: { name: 'edge-quota', namespace: 'default' },
      spec: { targetRefs: target, local: [{ name: 'per-user', descriptor: { header: 'x-quota-user' }, maxTokens: 3, tokensPerFill: 1, fillInterval: '1h' }] },
    },
  ];
}

function configFor(workload: WorkloadIdentity) {
  const docs = fromObjects(mesh(), 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  return translateProxyConfig(docs, workload, { telemetry: false });
}

const viaGateway = (path: string, headers: Record<string, string> = {}) => request(gatewayPort, { path, headers: { host: 'bookinfo.example.com', ...headers } });
const atSidecar = (path: string, headers: Record<string, string> = {}) => request(sidecar.inboundPort, { path, headers: { host: HOST, ...headers } });

test.before(async () => {
  await Promise.all([authnWasm(), policyWasm()]);
  key = await signingKey('ES256');
  keys = await new JwksServer().start();
  keys.body = jwks(key);
  app = await startHttp1('productpage-app');
  sidecar = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, translateProxyConfig([], productpage, { telemetry: false }));
  gatewayPort = await freePort();
  await sidecar.applyConfig(configFor(productpage));
  gateway = await Proxy.start({ role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, configFor(gatewayId));
});

test.after(async () => {
  await gateway?.stop(100);
  await sidecar?.stop(100);
  await app?.close();
  await keys?.stop().catch(() => {});
});

test('the translator puts the policies in the gateway chain and none in the sidecar', () => {
  assert.equal(gateway.config.outboundFilters.map((b) => b.name), ['wasmesh-authn', 'wasmesh-policy']);
  assert.equal([...sidecar.config.inboundFilters, ...sidecar.config.outboundFilters].map((b) => b.name), []);
});

test('at the gateway: no token 403, a forged token 401 with www-authenticate, a valid token 200', async () => {
  const none = await viaGateway('/productpage');
  assert.is(none.status, 403, none.body);
  assert.is(none.body, 'RBAC: access denied');

  const forger = await signingKey('ES256', key.kid);
  const forged = await viaGateway('/productpage', { authorization: `Bearer ${await mint(forger)}` });
  assert.is(forged.status, 401);
  assert.is(forged.body, 'Jwt verification fails');
  assert.match(String(forged.headers['www-authenticate']), /^Bearer realm="http:\/\/bookinfo\.example\.com\/productpage", error="invalid_token"$/);

  const ok = await viaGateway('/productpage', { authorization: `Bearer ${await mint(key)}` });
  assert.is(ok.status, 200, ok.body);
  assert.is(JSON.parse(ok.body).upstream, 'productpage-app');
  assert.ok(keys.fetches >= 1, 'the gateway fetched the key set through its callout');
});

test('at the sidecar: neither policy applies (no token 200, a forged token 200)', async () => {
  assert.is((await atSidecar('/productpage')).status, 200);
  const forger = await signingKey('ES256', key.kid);
  assert.is((await atSidecar('/productpage', { authorization: `Bearer ${await mint(forger)}` })).status, 200);
});

test('the RateLimitPolicy naming the Gateway limits at the gateway (429 after 3), not at the sidecar', async () => {
  const token = await mint(key);
  const user = { 'x-quota-user': `u-${process.pid}`, authorization: `Bearer ${token}` };
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await viaGateway('/productpage', user)).status);
  assert.equal(statuses, [200, 200, 200, 429]);
  const limited = await viaGateway('/productpage', user);
  assert.is(limited.status, 429);
  assert.ok(limited.headers['retry-after'], 'retry-after on the 429');
  for (let i = 0; i < 5; i++) assert.is((await atSidecar('/productpage', user)).status, 200, 'the sidecar has no bucket');
  // Another user has a bucket of its own at the gateway.
  assert.is((await viaGateway('/productpage', { ...user, 'x-quota-user': `v-${process.pid}` })).status, 200);
});

test.run();
