// Automatic mTLS end to end, with the real translator: two sidecars with identities from a test CA
// (productpage calls reviews), and apps without a sidecar. The client sends mTLS only to endpoints
// labeled as sidecars and only when the destination's PeerAuthentication does not DISABLE it; a
// DestinationRule's tls wins. Before issue 14, mesh-wide DISABLE broke every call between sidecars
// (the client kept sending mTLS) and endpoints without a sidecar got mTLS too.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa } from './support/test-ca.ts';

const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const reviews: WorkloadIdentity = { name: 'reviews', namespace: 'default', labels: { app: 'reviews' }, serviceAccount: 'reviews' };
const REVIEWS = 'reviews.default.svc.cluster.local';
const DETAILS = 'details.default.svc.cluster.local';

let reviewsApp: TestServer;
let legacyApp: TestServer;
let detailsApp: TestServer;
let client: Proxy;
let server: Proxy;

const peerAuthentication = (mode: string): object => ({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode } } });
const destinationRule = (host: string, mode: string): object => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: host.split('.')[0], namespace: 'default' },
  spec: { host, trafficPolicy: { tls: { mode } } },
});

/** reviews: the server sidecar (labeled) and, with `legacy`, a second endpoint without a sidecar; details: no sidecar. */
function mesh(extra: object[], legacy = false): object[] {
  const service = (host: string, spec: object): object => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: host.split('.')[0], namespace: 'default' },
    spec: { hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], ...spec },
  });
  const entry = (name: string, port: number, labels: Record<string, string>): object => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name, namespace: 'default' },
    spec: { address: '127.0.0.1', ports: { http: port }, labels, serviceAccount: 'reviews' },
  });
  return [
    service(REVIEWS, { workloadSelector: { labels: { app: 'reviews' } } }),
    entry('reviews-sidecar', server.inboundPort, { app: 'reviews', 'security.istio.io/tlsMode': 'istio' }),
    ...(legacy ? [entry('reviews-legacy', legacyApp.port, { app: 'reviews' })] : []),
    service(DETAILS, { endpoints: [{ address: '127.0.0.1', ports: { http: detailsApp.port } }] }),
    ...extra,
  ];
}

/** Translates the documents for both sidecars and applies them. */
async function apply(objects: object[]): Promise<void> {
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  await server.applyConfig(translateProxyConfig(docs, reviews, { telemetry: false }));
  await client.applyConfig(translateProxyConfig(docs, productpage, { telemetry: false }));
}

const call = (host: string) => request(client.outboundPort, { path: '/', headers: { host } });
const upstreamOf = async (host: string): Promise<string> => {
  const res = await call(host);
  assert.is(res.status, 200, `${host}: ${res.status} ${res.body}`);
  return JSON.parse(res.body).upstream as string;
};

test.before(async () => {
  reviewsApp = await startHttp1('reviews-app');
  legacyApp = await startHttp1('reviews-legacy');
  detailsApp = await startHttp1('details-app');
  const ca = await createTestCa();
  const empty = translateProxyConfig([], reviews, { telemetry: false });
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: reviewsApp.port, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'reviews')) }, empty);
  client = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'productpage')) },
    translateProxyConfig([], productpage, { telemetry: false }),
  );
});

test.after(async () => {
  await client?.stop(100);
  await server?.stop(100);
  await Promise.all([reviewsApp, legacyApp, detailsApp].map((a) => a?.close()));
});

test('mesh-wide DISABLE: the sidecars talk plaintext and get 200', async () => {
  await apply(mesh([peerAuthentication('DISABLE')]));
  assert.is(server.inboundMtlsMode(), 'DISABLE');
  // The DISABLE server does not speak TLS: a 200 means the client sent plaintext.
  assert.is(await upstreamOf(REVIEWS), 'reviews-app');
});

test('mesh-wide STRICT: mTLS to the sidecar; plaintext to the endpoint without a sidecar', async () => {
  await apply(mesh([peerAuthentication('STRICT')]));
  assert.is(server.inboundMtlsMode(), 'STRICT');
  // The STRICT server refuses plaintext: a 200 means mTLS.
  assert.is(await upstreamOf(REVIEWS), 'reviews-app');
  const refused = await request(server.inboundPort, { path: '/', headers: { host: REVIEWS } }).catch((err: Error) => err);
  assert.instance(refused, Error, 'plaintext to the sidecar is refused, so the 200 above was mTLS');
  // details has no sidecar label: a plain app that would fail a TLS handshake answers 200.
  assert.is(await upstreamOf(DETAILS), 'details-app');
});

test('one cluster with a sidecar endpoint and one without: mTLS to one, plaintext to the other, per endpoint', async () => {
  await apply(mesh([peerAuthentication('STRICT')], true));
  const seen = new Set<string>();
  for (let i = 0; i < 20 && seen.size < 2; i++) seen.add(await upstreamOf(REVIEWS));
  assert.equal([...seen].sort(), ['reviews-app', 'reviews-legacy']);
});

test('a DestinationRule tls ISTIO_MUTUAL to the labeled endpoint works; to an endpoint without a sidecar it is honoured too (and fails)', async () => {
  await apply(mesh([peerAuthentication('STRICT'), destinationRule(REVIEWS, 'ISTIO_MUTUAL'), destinationRule(DETAILS, 'ISTIO_MUTUAL')]));
  assert.is(await upstreamOf(REVIEWS), 'reviews-app');
  const details = await call(DETAILS);
  assert.is(details.status, 503, 'the plain app cannot do the mTLS the rule asks for');
});

test('a DestinationRule tls DISABLE wins over auto mTLS (and STRICT refuses it)', async () => {
  await apply(mesh([peerAuthentication('PERMISSIVE'), destinationRule(REVIEWS, 'DISABLE')]));
  assert.is(await upstreamOf(REVIEWS), 'reviews-app');
  // The plaintext keep-alive connection made under PERMISSIVE carries no request once STRICT applies.
  await apply(mesh([peerAuthentication('STRICT'), destinationRule(REVIEWS, 'DISABLE')]));
  assert.is((await call(REVIEWS)).status, 503, 'plaintext to a STRICT sidecar');
  assert.is((await call(REVIEWS)).status, 503, 'on a new connection too');
  const text = (await request(server.adminPort, { path: '/stats/prometheus' })).body;
  assert.match(text, /^wasmesh_proxy_mtls_refused_connections_total\{reason="plaintext"\} [1-9]/m);
});

test.run();
