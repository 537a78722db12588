// A real Prometheus (Debian's, scripts/prometheus.sh) scrapes two running sidecars' /stats/prometheus,
// and the query of Istio's own Grafana dashboards returns what the traffic was; `promtool check
// metrics` accepts a live proxy's output (Istio's istio_* names are Istio's spelling and are left as
// they are: promtool's one complaint about them is the only one allowed).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { findPrometheus, promtoolCheckMetrics, reportPrometheusSkip, TestPrometheus } from './support/prometheus.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const found = findPrometheus();
if (found.reason) reportPrometheusSkip('proxy-host/test/prometheus.test.ts', found.reason);

let app: TestServer;
let client: Proxy;
let server: Proxy;
let prom: TestPrometheus;
let dir: string;

const clientWorkload = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const serverWorkload = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };
const HOST = 'reviews.default.svc.cluster.local:9080';

// Tracing and OTLP logs to a port nothing listens on: their counters show in the output promtool checks.
function mesh(reviewsPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${reviewsPort} } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: { outlierDetection: { consecutive5xxErrors: 100, interval: 10s, baseEjectionTime: 30s } }
---
apiVersion: wasmesh.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  extensionProviders:
  - { name: otel, opentelemetry: { service: 127.0.0.1, port: 1, grpc: { timeout: 200ms } } }
  - { name: als, envoyOtelAls: { service: 127.0.0.1, port: 1 } }
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ providers: [{ name: otel }], randomSamplingPercentage: 100 }]
  accessLogging: [{ providers: [{ name: als }] }]
`;
}

async function load(workload: typeof clientWorkload, text: string) {
  writeFileSync(join(dir, `${workload.name}.yaml`), text);
  const loaded = await loadConfigFile(join(dir, `${workload.name}.yaml`), workload);
  if (!loaded.ok) throw new Error(loaded.error);
  return loaded.config;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}\n${prom?.log ?? ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.before(async () => {
  if (found.reason) return;
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-prometheus-test-'));
  app = await startHttp1('reviews-app', (req, res) => {
    res.writeHead(req.url?.startsWith('/missing') ? 404 : 200, { 'content-type': 'text/plain' }).end('ok');
  });
  const watchdog = { stallMs: 2000, exitMs: 0, recoveryMs: 1000 };
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off', watchdog }, await load(serverWorkload, mesh(1)));
  client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: 1, accessLog: 'off', watchdog }, await load(clientWorkload, mesh(server.inboundPort)));
  prom = await TestPrometheus.start(found.prometheus!, [`127.0.0.1:${server.adminPort}`, `127.0.0.1:${client.adminPort}`]);
});

test.after(async () => {
  await prom?.stop();
  await client?.stop(100);
  await server?.stop(100);
  await app?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const get = (path: string) => request(client.outboundPort, { path, headers: { host: HOST } });

test('Prometheus scrapes the sidecars; Istio dashboard queries return what the traffic was', async () => {
  if (found.reason) return;
  // One request of each code creates the series; once scraped, the counted traffic follows.
  assert.is((await get('/ok/0')).status, 200);
  assert.is((await get('/missing/0')).status, 404);
  const byCode = 'sum(istio_requests_total{reporter="destination"}) by (destination_workload, response_code)';
  await until('both series scraped', async () => ((await prom.query(byCode)).length === 2 ? true : undefined));
  await new Promise((r) => setTimeout(r, 1500)); // a second sample of the starting values
  for (let i = 1; i <= 10; i++) assert.is((await get(`/ok/${i}`)).status, 200);
  for (let i = 1; i <= 5; i++) assert.is((await get(`/missing/${i}`)).status, 404);
  const totals = await until('11 and 6 requests', async () => {
    const r = await prom.query(byCode);
    const m = Object.fromEntries(r.map((x) => [`${x.metric.destination_workload}/${x.metric.response_code}`, x.value[1]]));
    return m['reviews-v2/200'] === '11' && m['reviews-v2/404'] === '6' ? m : undefined;
  });
  assert.equal(totals, { 'reviews-v2/200': '11', 'reviews-v2/404': '6' });
  // The query of Istio's dashboards (the workload dashboard's incoming requests by code).
  const rate = await prom.query('sum(rate(istio_requests_total{reporter="destination"}[1m])) by (destination_workload, response_code)');
  const r200 = Number(rate.find((x) => x.metric.response_code === '200')!.value[1]);
  const r404 = Number(rate.find((x) => x.metric.response_code === '404')!.value[1]);
  assert.ok(r200 > 0 && r404 > 0, `rates ${r200} ${r404}`);
  // Both rates are Prometheus's extrapolation over the samples each series has, so only their order is exact.
  assert.ok(r200 > r404, `more 200s than 404s per second: ${r200} > ${r404}`);
  // The source side, from the client sidecar (another target, scraped on its own schedule), agrees.
  const sourceQuery = 'sum(istio_requests_total{reporter="source", destination_service_name="reviews"}) by (source_workload)';
  let source: Awaited<ReturnType<typeof prom.query>> = [];
  await until('the client sidecar scraped with 17 requests', async () => {
    source = await prom.query(sourceQuery);
    return source.length === 1 && source[0]!.value[1] === '17' ? true : undefined;
  }).catch(() => undefined);
  assert.equal(source.map((x) => [x.metric.source_workload, x.value[1]]), [['productpage-v1', '17']]);
  // The proxy's own histogram in seconds: a p99 below a second for loopback requests.
  const p99 = await prom.query('histogram_quantile(0.99, sum(rate(wasmesh_proxy_request_duration_seconds_bucket{direction="inbound"}[1m])) by (le))');
  assert.ok(Number(p99[0]!.value[1]) < 1, `p99 ${p99[0]?.value[1]}`);
  const targets = await prom.targets();
  assert.is(targets.length, 2);
  assert.ok(targets.every((t) => t.health === 'up'), JSON.stringify(targets));
});

test("promtool check metrics accepts a live proxy's output (but Istio's own istio_request_duration_milliseconds)", async () => {
  if (found.reason) return;
  for (const p of [server, client]) {
    const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/stats/prometheus`)).text();
    for (const family of ['wasmesh_proxy_request_duration_seconds', 'wasmesh_proxy_tracing_spans_dropped_total', 'wasmesh_proxy_access_log_records_dropped_total', 'wasmesh_proxy_event_loop_delay_seconds', 'istio_requests_total']) {
      assert.ok(text.includes(`# TYPE ${family} `), `${family} in the output`);
    }
    const problems = promtoolCheckMetrics(found.promtool!, text);
    assert.equal(problems.filter((l) => !l.startsWith('istio_request_duration_milliseconds ')), [], problems.join('\n'));
  }
});

test.run();
