// Golden signals per outbound edge (stats/edge-stats.ts), what the console's graph is drawn from:
// counting and bounds on their own, then through two real sidecars with a test CA: the answering
// version comes from the endpoint's labels, mTLS is what the connection did (auto mTLS to the sidecar,
// plaintext to an app without one), 4xx and 5xx are told apart, and the certificate's expiry is
// reported.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../../mesh/src/documents.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import { Proxy } from '../src/proxy.ts';
import { EdgeStats, LATENCY_BOUNDS_MS, MAX_EDGES, OTHER_SERVICE, bucketOf, namespaceOfHost } from '../src/stats/edge-stats.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import { createTestCa } from './support/test-ca.ts';

const productpage: WorkloadIdentity = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const reviews: WorkloadIdentity = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };
const REVIEWS = 'reviews.default.svc.cluster.local';
const DETAILS = 'details.default.svc.cluster.local';

test('counts per edge: requests, 5xx and no answer as errors, 4xx apart, latency buckets', () => {
  const stats = new EdgeStats(() => productpage);
  const call = { service: REVIEWS, labels: { app: 'reviews', version: 'v1' }, subset: undefined, mtls: true };
  stats.record({ ...call, status: 200, durationMs: 0.5 });
  stats.record({ ...call, status: 503, durationMs: 7 });
  stats.record({ ...call, status: 0, durationMs: 40_000 });
  stats.record({ ...call, status: 403, durationMs: 3 });
  stats.record({ ...call, labels: { app: 'reviews', version: 'v2' }, status: 200, durationMs: 3 });
  const report = stats.report('2030-01-01T00:00:00.000Z');
  assert.equal([report.source_namespace, report.source_app, report.source_version], ['default', 'productpage', 'v1']);
  assert.equal(report.latency_bounds_ms, [...LATENCY_BOUNDS_MS]);
  assert.is(report.cert_not_after, '2030-01-01T00:00:00.000Z');
  assert.is(report.edges.length, 2);
  const v1 = report.edges.find((e) => e.destination_version === 'v1')!;
  assert.equal([v1.destination_service, v1.destination_namespace, v1.destination_app, v1.mtls], [REVIEWS, 'default', 'reviews', true]);
  assert.equal([v1.requests, v1.errors, v1.client_errors], [4, 2, 1]);
  const buckets = v1.latency_buckets.map(Number);
  assert.is(buckets.length, LATENCY_BOUNDS_MS.length + 1);
  assert.is(buckets[0], 1, '0.5 ms: first bucket');
  assert.is(buckets[bucketOf(7)], 1);
  assert.is(buckets[bucketOf(3)], 1);
  assert.is(buckets.at(-1), 1, '40 s: past the last bound');
  assert.is(buckets.reduce((a, b) => a + b, 0), 4);
});

test('the version falls back to the subset; no route is "unknown"; hosts outside .svc have no namespace', () => {
  const stats = new EdgeStats(() => ({ ...productpage, labels: {} }));
  stats.record({ service: 'api.example.com', labels: {}, subset: 'v9', mtls: false, status: 200, durationMs: 1 });
  stats.record({ service: undefined, labels: undefined, subset: undefined, mtls: false, status: 404, durationMs: 1 });
  const r = stats.report(undefined);
  assert.is(r.source_app, 'productpage-v1', 'no app label: the workload name');
  assert.is(r.cert_not_after, '');
  assert.equal(r.edges.map((e) => [e.destination_service, e.destination_namespace, e.destination_version, e.client_errors]), [
    ['api.example.com', '', 'v9', 0],
    ['unknown', '', '', 1],
  ]);
  assert.is(namespaceOfHost('ratings.shop.svc.cluster.local'), 'shop');
  assert.is(namespaceOfHost('ratings'), '');
});

test(`bounded: past ${MAX_EDGES} edges, calls are counted in one "${OTHER_SERVICE}" edge`, () => {
  const stats = new EdgeStats(() => productpage);
  for (let i = 0; i < MAX_EDGES + 50; i++) stats.record({ service: `s${i}.default.svc.cluster.local`, labels: {}, subset: undefined, mtls: false, status: 200, durationMs: 1 });
  assert.is(stats.size, MAX_EDGES + 1);
  const other = stats.report(undefined).edges.find((e) => e.destination_service === OTHER_SERVICE)!;
  assert.is(Number(other.requests), 50);
  // A known edge keeps counting on its own.
  stats.record({ service: 's0.default.svc.cluster.local', labels: {}, subset: undefined, mtls: false, status: 200, durationMs: 1 });
  assert.is(Number(stats.report(undefined).edges.find((e) => e.destination_service === 's0.default.svc.cluster.local')!.requests), 2);
});

let reviewsApp: TestServer;
let detailsApp: TestServer;
let client: Proxy | undefined;
let server: Proxy | undefined;

test.after(async () => {
  await client?.stop(100);
  await server?.stop(100);
  await Promise.all([reviewsApp, detailsApp].map((a) => a?.close()));
});

test('two sidecars: mTLS to the sidecar with its version, plaintext to the app without one, the certificate reported', async () => {
  reviewsApp = await startHttp1('reviews-app');
  detailsApp = await startHttp1('details-app');
  const ca = await createTestCa();
  const serverCert = await ca.issue('default', 'reviews');
  const clientCert = await ca.issue('default', 'productpage');
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: reviewsApp.port, accessLog: 'off', identity: new MemoryIdentity(serverCert) }, translateProxyConfig([], reviews, { telemetry: false }));
  client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: new MemoryIdentity(clientCert) }, translateProxyConfig([], productpage, { telemetry: false }));
  const service = (host: string, spec: object): object => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name: host.split('.')[0], namespace: 'default' },
    spec: { hosts: [host], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], ...spec },
  });
  const objects = [
    { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } },
    service(REVIEWS, { workloadSelector: { labels: { app: 'reviews' } } }),
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'reviews-v2', namespace: 'default' },
      spec: { address: '127.0.0.1', ports: { http: server.inboundPort }, labels: { app: 'reviews', version: 'v2', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'reviews' },
    },
    service(DETAILS, { endpoints: [{ address: '127.0.0.1', ports: { http: detailsApp.port }, labels: { app: 'details' } }] }),
  ];
  const docs = fromObjects(objects, 'mesh.yaml');
  const checked = validateDocuments(docs);
  assert.ok(checked.ok, formatErrors(checked.errors));
  await server.applyConfig(translateProxyConfig(docs, reviews, { telemetry: false }));
  await client.applyConfig(translateProxyConfig(docs, productpage, { telemetry: false }));

  for (let i = 0; i < 3; i++) assert.is((await request(client.outboundPort, { path: '/', headers: { host: REVIEWS } })).status, 200);
  assert.is((await request(client.outboundPort, { path: '/', headers: { host: DETAILS } })).status, 200);
  assert.is((await request(client.outboundPort, { path: '/', headers: { host: 'nowhere.default.svc.cluster.local' } })).status, 404);

  // The proxy counts a call when its response is done, which may be just after the client read it.
  const total = () => client!.trafficReport().edges.reduce((n, e) => n + Number(e.requests), 0);
  for (let i = 0; i < 100 && total() < 5; i++) await new Promise((r) => setTimeout(r, 20));
  const report = client.trafficReport();
  assert.equal([report.source_namespace, report.source_app, report.source_version], ['default', 'productpage', 'v1']);
  assert.is(report.cert_not_after, clientCert.notAfter.toISOString());
  const byService = new Map(report.edges.map((e) => [e.destination_service, e]));
  const r = byService.get(REVIEWS)!;
  assert.ok(r, JSON.stringify(report.edges));
  assert.equal([r.destination_app, r.destination_version, r.mtls, Number(r.requests), Number(r.errors)], ['reviews', 'v2', true, 3, 0]);
  const d = byService.get(DETAILS)!;
  assert.equal([d.destination_app, d.mtls, Number(d.requests)], ['details', false, 1], 'no sidecar label: plaintext');
  const unknown = byService.get('unknown')!;
  assert.equal([Number(unknown.requests), Number(unknown.client_errors)], [1, 1]);
  // The server side counts nothing: only the calls a workload makes are edges.
  assert.is(server.trafficReport().edges.length, 0);
});

test.run();
