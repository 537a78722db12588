// The telemetry filter's Istio metrics through the harness: label values on each side, the Prometheus
// text, one series per label set with cached ids, and the metrics/accessLog switches.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FilterHarness, MetricSnapshot } from '../../../wasm/src/index.ts';
import { ensureBuilt, ISTIO_LABELS, loadSide, parseProm, parsePromHistogramSamples, peerHeader, PEER_HEADER, PRODUCTPAGE, REVIEWS, samples } from './support/telemetry.ts';

const open: FilterHarness[] = [];
async function side(...args: Parameters<typeof loadSide>): Promise<FilterHarness> {
  const h = await loadSide(...args);
  open.push(h);
  return h;
}

test.before(async () => {
  await ensureBuilt();
});

test.after.each(async () => {
  await Promise.all(open.splice(0).map((h) => h.close()));
});

const GET = { ':method': 'GET', ':path': '/reviews/1', ':scheme': 'http', ':authority': 'reviews:9080', 'user-agent': 'test/1', 'x-request-id': 'req-1' };

function istio(h: FilterHarness, name: string): MetricSnapshot[] {
  return h.metricsSnapshot().filter((m) => m.name === name);
}

test('outbound (reporter="source"): local workload as source, the answering workload (from the response header) as destination', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  const result = await h.run({
    request: { headers: GET },
    response: { headers: { ':status': '200', 'content-type': 'application/json', [PEER_HEADER]: peerHeader(REVIEWS) }, body: '{"stars":5}' },
  });
  assert.is(result.response?.headers[PEER_HEADER], undefined, 'the exchange header is removed before the client sees it');
  const [requests] = istio(h, 'istio_requests_total');
  assert.ok(requests, 'istio_requests_total defined');
  assert.equal(requests.type, 'counter');
  assert.is(requests.value, 1);
  assert.equal(requests.labels, {
    reporter: 'source',
    source_workload: 'productpage',
    source_workload_namespace: 'default',
    source_principal: 'unknown',
    source_app: 'productpage',
    source_version: 'v1',
    destination_workload: 'reviews',
    destination_workload_namespace: 'default',
    destination_principal: 'unknown',
    destination_app: 'reviews',
    destination_version: 'v2',
    destination_service: 'reviews.default.svc.cluster.local',
    destination_service_name: 'reviews',
    destination_service_namespace: 'default',
    request_protocol: 'http',
    response_code: '200',
    response_flags: '-',
    connection_security_policy: 'unknown',
  });
  for (const name of ['istio_request_duration_milliseconds', 'istio_request_bytes', 'istio_response_bytes']) {
    const [hist] = istio(h, name);
    assert.ok(hist, `${name} defined`);
    assert.is(hist.type, 'histogram');
    assert.is(hist.count, 1);
    assert.equal(hist.labels, requests.labels, `${name} has the same labels`);
  }
  const [responseBytes] = istio(h, 'istio_response_bytes');
  assert.ok(responseBytes.sum! >= '{"stars":5}'.length, 'response bytes include the body');
});

test('inbound (reporter="destination"): the caller (from the request header) as source, the local workload as destination', async () => {
  const h = await side('inbound', REVIEWS);
  const result = await h.run({
    request: { headers: { ...GET, [PEER_HEADER]: peerHeader(PRODUCTPAGE) } },
    response: { headers: { ':status': '503' } },
  });
  assert.is(result.request?.headers[PEER_HEADER], undefined, 'the exchange header is removed before the app sees it');
  assert.is(result.response?.headers[PEER_HEADER], peerHeader(REVIEWS), 'the response tells the caller who answered');
  const [requests] = istio(h, 'istio_requests_total');
  assert.equal(requests.labels, {
    reporter: 'destination',
    source_workload: 'productpage',
    source_workload_namespace: 'default',
    source_principal: 'unknown',
    source_app: 'productpage',
    source_version: 'v1',
    destination_workload: 'reviews',
    destination_workload_namespace: 'default',
    destination_principal: 'unknown',
    destination_app: 'reviews',
    destination_version: 'v2',
    destination_service: 'reviews.default.svc.cluster.local',
    destination_service_name: 'reviews',
    destination_service_namespace: 'default',
    request_protocol: 'http',
    response_code: '503',
    response_flags: '-',
    connection_security_policy: 'none',
  });
});

test('inbound over mTLS: mutual_tls and the principals from the certificates', async () => {
  const h = await side('inbound', REVIEWS, {
    streamInfo: { mtls: true, peerPrincipal: 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage', localPrincipal: 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews' },
  });
  await h.run({ request: { headers: { ...GET, [PEER_HEADER]: peerHeader(PRODUCTPAGE) } }, response: { headers: { ':status': '200' } } });
  const [requests] = istio(h, 'istio_requests_total');
  assert.is(requests.labels.connection_security_policy, 'mutual_tls');
  assert.is(requests.labels.source_principal, 'spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
  assert.is(requests.labels.destination_principal, 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews');
});

test('inbound without a peer header: source unknown; an address authority falls back to the local service', async () => {
  const h = await side('inbound', REVIEWS);
  await h.run({ request: { headers: { ...GET, ':authority': '10.1.2.3:9080' } }, response: { headers: { ':status': '200' } } });
  const [requests] = istio(h, 'istio_requests_total');
  assert.is(requests.labels.source_workload, 'unknown');
  assert.is(requests.labels.source_app, 'unknown');
  assert.is(requests.labels.destination_service, 'reviews.default.svc.cluster.local');
});

test('destination_service: FQDN, .svc, other namespaces, external hosts and addresses', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  const cases: Array<[string, string, string, string]> = [
    ['ratings.prod.svc.cluster.local:9080', 'ratings.prod.svc.cluster.local', 'ratings', 'prod'],
    ['details.default.svc', 'details.default.svc.cluster.local', 'details', 'default'],
    ['api.example.com', 'api.example.com', 'api.example.com', 'unknown'],
    ['10.0.0.7:8080', '10.0.0.7', '10.0.0.7', 'unknown'],
  ];
  for (const [authority] of cases) {
    await h.run({ request: { headers: { ...GET, ':authority': authority } }, response: { headers: { ':status': '200' } } });
  }
  for (const [authority, service, name, ns] of cases) {
    const [m] = istio(h, 'istio_requests_total').filter((s) => s.labels.destination_service === service);
    assert.ok(m, `a series for ${authority}`);
    assert.is(m.labels.destination_service_name, name, authority);
    assert.is(m.labels.destination_service_namespace, ns, authority);
  }
});

test('gRPC requests: request_protocol="grpc" and grpc_response_status from the trailers', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  await h.run({
    request: { headers: { ...GET, ':method': 'POST', 'content-type': 'application/grpc' }, body: 'x' },
    response: { headers: { ':status': '200', 'content-type': 'application/grpc' }, body: 'y', trailers: { 'grpc-status': '5' } },
  });
  const [requests] = istio(h, 'istio_requests_total');
  assert.is(requests.labels.request_protocol, 'grpc');
  assert.is(requests.labels.grpc_response_status, '5');
});

test('Prometheus text: the four families with every Istio label, counts and a histogram count', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  const response = { headers: { ':status': '200', [PEER_HEADER]: peerHeader(REVIEWS) }, body: 'ok' };
  for (let i = 0; i < 3; i++) await h.run({ request: { headers: GET }, response });
  await h.run({ request: { headers: GET }, response: { ...response, headers: { ...response.headers, ':status': '404' } } });

  const text = h.metrics.renderPrometheus();
  const families = parseProm(text);
  const types = Object.fromEntries(families.filter((f) => f.name.startsWith('istio_')).map((f) => [f.name, f.type]));
  assert.equal(types, {
    istio_request_bytes: 'HISTOGRAM',
    istio_request_duration_milliseconds: 'HISTOGRAM',
    istio_requests_total: 'COUNTER',
    istio_response_bytes: 'HISTOGRAM',
  });
  const want = { reporter: 'source', source_workload: 'productpage', destination_workload: 'reviews', destination_service: 'reviews.default.svc.cluster.local' };
  const ok = samples(families, 'istio_requests_total', { ...want, response_code: '200' });
  assert.is(ok.length, 1);
  assert.is(ok[0].value, '3');
  assert.equal(Object.keys(ok[0].labels!).sort(), ISTIO_LABELS);
  const notFound = samples(families, 'istio_requests_total', { ...want, response_code: '404' });
  assert.is(notFound.length, 1);
  assert.is(notFound[0].value, '1');
  const series = parsePromHistogramSamples(text);
  const durationCount = samples(series, 'istio_request_duration_milliseconds_count', { ...want, response_code: '200' });
  assert.is(durationCount.length, 1);
  assert.is(durationCount[0].value, '3');
  assert.equal(Object.keys(durationCount[0].labels!).sort(), ISTIO_LABELS);
  const inf = samples(series, 'istio_request_duration_milliseconds_bucket', { ...want, response_code: '200', le: '+Inf' });
  assert.is(inf[0]?.value, '3');
  assert.is(samples(series, 'istio_request_bytes_count', { ...want, response_code: '404' })[0]?.value, '1');
  assert.is(samples(series, 'istio_response_bytes_count', { ...want, response_code: '404' })[0]?.value, '1');
});

test('a repeated label set costs a lookup: four defines per distinct set, none after', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  const registry = h.metrics;
  const define = registry.define.bind(registry);
  let defines = 0;
  registry.define = (type, name) => {
    defines++;
    return define(type, name);
  };
  for (let i = 0; i < 5; i++) await h.run({ request: { headers: GET }, response: { headers: { ':status': '200' } } });
  assert.is(defines, 4, 'first request defines the four series');
  await h.run({ request: { headers: GET }, response: { headers: { ':status': '500' } } });
  assert.is(defines, 8, 'a new response code is a new label set');
  for (let i = 0; i < 5; i++) await h.run({ request: { headers: GET }, response: { headers: { ':status': i % 2 ? '200' : '500' } } });
  assert.is(defines, 8);
  assert.is(istio(h, 'istio_requests_total').reduce((n, m) => n + m.value!, 0), 11);
});

test('label values from a peer are escaped, not injected', async () => {
  const h = await side('inbound', REVIEWS);
  const evil = Buffer.from('name=a"b\\c%0Ad;namespace=x",reporter="source;app=ok').toString('base64');
  await h.run({ request: { headers: { ...GET, [PEER_HEADER]: evil } }, response: { headers: { ':status': '200' } } });
  const [requests] = istio(h, 'istio_requests_total');
  assert.is(requests.labels.source_workload, 'a"b\\c\nd');
  assert.is(requests.labels.source_workload_namespace, 'x",reporter="source');
  assert.is(requests.labels.reporter, 'destination');
  const families = parseProm(h.metrics.renderPrometheus());
  assert.is(samples(families, 'istio_requests_total', { reporter: 'destination', source_app: 'ok' }).length, 1);
});

test('metrics: false records nothing; the exchange and trace context still run', async () => {
  const h = await side('outbound', PRODUCTPAGE, { configuration: { metrics: false, accessLog: false } });
  const result = await h.run({ request: { headers: GET }, response: { headers: { ':status': '200' } } });
  assert.equal(h.metricsSnapshot(), []);
  assert.is(result.request?.headers[PEER_HEADER], peerHeader(PRODUCTPAGE));
  assert.ok(result.request?.headers.traceparent);
});

test('a stream reset before any response reports response_code 0', async () => {
  const h = await side('outbound', PRODUCTPAGE);
  await h.run({ request: { headers: GET } });
  const [requests] = istio(h, 'istio_requests_total');
  assert.is(requests.labels.response_code, '0');
  assert.is(requests.labels.destination_workload, 'unknown');
});

test.run();
