// The telemetry filter in two running proxies: client -> productpage proxy (outbound listener) ->
// reviews proxy (inbound listener) -> the reviews app. Both proxies run the filter on both sides;
// each proxy's /stats/prometheus must show its side of the calls, with the peer learned through the
// metadata exchange.
import { createHash } from 'node:crypto';
import http from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import type { Proxy } from '../../../proxy-host/src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../../proxy-host/test/support/config.ts';
import { startProxy } from '../../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { ensureBuilt, parseProm, parsePromHistogramSamples, PEER_HEADER, samples, WASM } from './support/telemetry.ts';

const REVIEWS_HOST = 'reviews.default.svc.cluster.local';
const REVIEWS_CLUSTER = `outbound|9080||${REVIEWS_HOST}`;

/** proxyConfig with this proxy's own workload (the helper always says "test"); the version is rehashed. */
function workloadConfig(workload: WorkloadIdentity, parts: Parameters<typeof proxyConfig>[0]): ProxyConfig {
  const { version: _ignored, ...body } = { ...proxyConfig(parts), workload };
  return { version: createHash('sha256').update(JSON.stringify(body)).digest('hex'), ...body };
}

function telemetryBinding() {
  // The proxy does not offer wasmesh_access_log yet; with accessLog on, records would be logged at info.
  return filterBinding('telemetry', WASM, { rootId: 'telemetry', pluginConfig: { accessLog: false }, logLevel: 'warn' });
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats/prometheus', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

let app: TestServer;
let reviews: Proxy;
let productpage: Proxy;

test.before(async () => {
  await ensureBuilt();
  app = await startHttp1('reviews-app');
  reviews = await startProxy(
    workloadConfig(
      { name: 'reviews', namespace: 'default', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'bookinfo-reviews' },
      { inboundFilters: [telemetryBinding()], outboundFilters: [telemetryBinding()] },
    ),
    app.port,
  );
  productpage = await startProxy(
    workloadConfig(
      { name: 'productpage', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'bookinfo-productpage' },
      {
        virtualHosts: [{ name: 'reviews', domains: ['reviews', REVIEWS_HOST], routes: [forward('reviews-route', REVIEWS_CLUSTER)] }],
        clusters: [cluster(REVIEWS_CLUSTER, [{ port: reviews.inboundPort }], { host: REVIEWS_HOST, port: 9080 })],
        inboundFilters: [telemetryBinding()],
        outboundFilters: [telemetryBinding()],
      },
    ),
  );
});

test.after(async () => {
  await Promise.all([productpage?.stop(0), reviews?.stop(0)]);
  await app?.close();
});

const CALLS = 4;

test('productpage -> reviews: both proxies report the call, each naming the other', async () => {
  for (let i = 0; i < CALLS; i++) {
    const res = await request(productpage.outboundPort, { path: `/reviews/${i}`, headers: { host: 'reviews:9080' } });
    assert.is(res.status, 200, res.body);
    assert.is(res.headers[PEER_HEADER], undefined, 'the client never sees the exchange header');
  }
  assert.is(app.received.length, CALLS);
  for (const r of app.received) {
    assert.is(r.headers[PEER_HEADER], undefined, 'the app never sees the exchange header');
    assert.match(String(r.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.ok(r.headers['x-request-id']);
  }

  const server = await scrape(reviews.adminPort);
  const serverFamilies = parseProm(server);
  const destination = samples(serverFamilies, 'istio_requests_total', {
    reporter: 'destination',
    source_workload: 'productpage',
    source_workload_namespace: 'default',
    source_app: 'productpage',
    source_version: 'v1',
    destination_workload: 'reviews',
    destination_workload_namespace: 'default',
    destination_app: 'reviews',
    destination_version: 'v1',
    destination_service: REVIEWS_HOST,
    destination_service_name: 'reviews',
    destination_service_namespace: 'default',
    request_protocol: 'http',
    response_code: '200',
    response_flags: '-',
    connection_security_policy: 'none',
  });
  assert.is(destination.length, 1, server);
  assert.is(destination[0].value, String(CALLS));
  assert.is(samples(serverFamilies, 'istio_requests_total', { reporter: 'source' }).length, 0, 'reviews made no outbound call');
  const serverDuration = samples(parsePromHistogramSamples(server), 'istio_request_duration_milliseconds_count', { reporter: 'destination', source_workload: 'productpage' });
  assert.is(serverDuration[0]?.value, String(CALLS));

  const client = await scrape(productpage.adminPort);
  const source = samples(parseProm(client), 'istio_requests_total', {
    reporter: 'source',
    source_workload: 'productpage',
    source_app: 'productpage',
    destination_workload: 'reviews',
    destination_app: 'reviews',
    destination_version: 'v1',
    destination_service: REVIEWS_HOST,
    response_code: '200',
    connection_security_policy: 'unknown',
  });
  assert.is(source.length, 1, client);
  assert.is(source[0].value, String(CALLS));
  const clientBytes = samples(parsePromHistogramSamples(client), 'istio_response_bytes_count', { reporter: 'source', destination_workload: 'reviews' });
  assert.is(clientBytes[0]?.value, String(CALLS));
});

test.run();
