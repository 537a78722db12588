// OTLP in protobuf, over gRPC and over HTTP, from running sidecars: a client sidecar (outbound) and a
// server sidecar (inbound) in front of an app, configured from Telemetry + MeshConfig as Istio's
// MeshConfig spells the providers (`opentelemetry` without http: gRPC; with http: {}: OTLP/HTTP, protobuf;
// `envoyOtelAls`: OTLP logs over gRPC). The receivers are a real grpc-js server and an HTTP server on
// loopback, decoding with the proto definitions in schemas/proto/opentelemetry/ and with the official
// OpenTelemetry definitions (the generated code of @opentelemetry/otlp-transformer), not the proxy's encoder.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { anyValueOf, attributesOf, type SpanMessage } from '../../schemas/proto/opentelemetry/otlp.ts';
import { hexOf, officialAnyValueOf, officialAttributesOf, type OfficialSpan, type OfficialTraceRequest } from '../../schemas/proto/opentelemetry/official.ts';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { startGrpcCollector, startHttpCollector, type GrpcCollector, type HttpCollector } from './support/otlp-collector.ts';
import { freePort, request, startHttp1, type TestServer } from './support/servers.ts';

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let app: TestServer;
let grpcCollector: GrpcCollector;
let httpCollector: HttpCollector;
let client: Proxy;
let server: Proxy;
let dir: string;
let deadPort: number;

const clientWorkload = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const serverWorkload = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };
const HOST = 'reviews.default.svc.cluster.local:9080';

function mesh(reviewsPort: number, reviewsTracing = '[{ name: otel-grpc }, { name: otel-http }]', disableSpans = false): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${reviewsPort} } }]
---
apiVersion: wasmesh.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  meshId: test-mesh
  extensionProviders:
  - name: otel-grpc
    opentelemetry: { service: 127.0.0.1, port: ${grpcCollector.port}, grpc: { timeout: 2s, initialMetadata: [{ name: x-tenant, value: team-a }] } }
  - name: otel-http
    opentelemetry: { service: 127.0.0.1, port: ${httpCollector.port}, http: {} }
  - name: dead-grpc
    opentelemetry: { service: 127.0.0.1, port: ${deadPort}, grpc: { timeout: 500ms } }
  - name: als
    envoyOtelAls:
      service: 127.0.0.1
      port: ${grpcCollector.port}
      logFormat: { labels: { code: '%RESPONSE_CODE%', path: '%REQ(:PATH)%', cluster: '%UPSTREAM_CLUSTER%', agent: '%REQ(USER-AGENT)%' } }
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing: [{ providers: [{ name: otel-grpc }], randomSamplingPercentage: 100 }]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: reviews, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: reviews }]
  tracing: [{ providers: ${reviewsTracing}${disableSpans ? ', disableSpanReporting: true' : ''} }]
  accessLogging:
  - providers: [{ name: als }]
    filter: { expression: "response.code >= 400 || request.headers['x-debug'] == '1'" }
`;
}

async function load(workload: typeof clientWorkload, text: string) {
  writeFileSync(join(dir, `${workload.name}.yaml`), text);
  const loaded = await loadConfigFile(join(dir, `${workload.name}.yaml`), workload);
  if (!loaded.ok) throw new Error(loaded.error);
  return loaded.config;
}

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-telemetry-otlp-'));
  grpcCollector = await startGrpcCollector();
  httpCollector = await startHttpCollector();
  deadPort = await freePort();
  app = await startHttp1('reviews-app', (req, res) => {
    res.writeHead(req.url?.startsWith('/missing') ? 404 : req.url?.startsWith('/fail') ? 503 : 200, { 'content-type': 'text/plain' }).end(`hello ${req.url}`);
  });
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, await load(serverWorkload, mesh(1)));
  client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: 1, accessLog: 'off' }, await load(clientWorkload, mesh(server.inboundPort)));
});

test.after(async () => {
  await client?.stop(100);
  await server?.stop(100);
  await app?.close();
  await grpcCollector?.close();
  await httpCollector?.close();
  rmSync(dir, { recursive: true, force: true });
});

const hex = (b: Buffer | undefined): string => (b ? b.toString('hex') : '');
const grpcSpans = (): SpanMessage[] => grpcCollector.traces.flatMap((t) => t.request.resource_spans.flatMap((r) => r.scope_spans.flatMap((s) => s.spans)));
const httpSpans = (): SpanMessage[] => httpCollector.requests.flatMap((t) => t.request.resource_spans.flatMap((r) => r.scope_spans.flatMap((s) => s.spans)));
const attr = (s: SpanMessage, k: string) => attributesOf(s.attributes)[k];
/** The spans of one trace, decoded with the official definitions, each with its batch's resource. */
const officialSpans = (requests: readonly OfficialTraceRequest[], traceId: string) =>
  requests.flatMap((r) =>
    r.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.filter((s) => hexOf(s.traceId) === traceId).map((span) => ({ span, resource: officialAttributesOf(rs.resource?.attributes ?? []), scope: ss.scope?.name })))),
  );
const stats = async (p: Proxy) => (await fetch(`http://127.0.0.1:${p.adminPort}/stats/prometheus`)).text();
const counter = (text: string, series: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
};

test('spans over OTLP/gRPC and OTLP/HTTP protobuf: a CLIENT span and its SERVER child, decoded with the OpenTelemetry protos', async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const res = await request(client.outboundPort, { path: '/reviews/1?x=1', headers: { host: HOST, traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
  assert.is(res.status, 200);
  const spans = await until('a CLIENT and a SERVER span at the gRPC collector', () => {
    const s = grpcSpans().filter((x) => hex(x.trace_id) === traceId);
    return s.some((x) => x.kind === 'SPAN_KIND_CLIENT') && s.some((x) => x.kind === 'SPAN_KIND_SERVER') ? s : undefined;
  });
  const clientSpan = spans.find((s) => s.kind === 'SPAN_KIND_CLIENT')!;
  const serverSpan = spans.find((s) => s.kind === 'SPAN_KIND_SERVER')!;
  assert.is(hex(clientSpan.parent_span_id), '00f067aa0ba902b7', "the client span is a child of the app's span");
  assert.is(hex(serverSpan.parent_span_id), hex(clientSpan.span_id), 'the server span is a child of the client span');
  assert.is(clientSpan.span_id.length, 8);
  assert.is(app.received.at(-1)!.headers.traceparent, `00-${traceId}-${hex(serverSpan.span_id)}-01`);
  assert.is(serverSpan.name, `${HOST}/*`);
  assert.is(attr(serverSpan, 'istio.canonical_service'), 'reviews');
  assert.is(attr(serverSpan, 'istio.mesh_id'), 'test-mesh');
  assert.is(attr(serverSpan, 'http.status_code'), '200');
  assert.is(attr(clientSpan, 'http.url'), `http://${HOST}/reviews/1?x=1`);
  assert.match(String(attr(clientSpan, 'upstream_cluster')), /^outbound\|9080\|\|reviews\.default\.svc\.cluster\.local$/);
  assert.is(serverSpan.status?.code ?? 'STATUS_CODE_UNSET', 'STATUS_CODE_UNSET');
  // Nanosecond times: within the last minute, end after start.
  const start = BigInt(serverSpan.start_time_unix_nano);
  const end = BigInt(serverSpan.end_time_unix_nano);
  assert.ok(end >= start && start > BigInt(Date.now() - 60_000) * 1_000_000n, `times ${start} .. ${end}`);
  // The resource and the gRPC metadata.
  const batch = grpcCollector.traces.find((t) => t.request.resource_spans[0]!.scope_spans[0]!.spans.includes(serverSpan))!;
  assert.is(attributesOf(batch.request.resource_spans[0]!.resource!.attributes)['service.name'], 'reviews.default');
  assert.is(batch.request.resource_spans[0]!.scope_spans[0]!.scope!.name, 'wasmesh-proxy');
  assert.is(batch.metadata['x-tenant'], 'team-a');
  // OTLP/HTTP with protobuf: the same server span, POSTed to /v1/traces.
  const viaHttp = await until('the server span at the OTLP/HTTP receiver', () => httpSpans().find((s) => hex(s.trace_id) === traceId));
  assert.is(hex(viaHttp.span_id), hex(serverSpan.span_id));
  assert.is(viaHttp.kind, 'SPAN_KIND_SERVER');
  assert.is(httpCollector.requests[0]!.path, '/v1/traces');
  assert.is(httpCollector.requests[0]!.contentType, 'application/x-protobuf');
});

test('the same exports decoded with the official OpenTelemetry definitions: OTLP/gRPC and OTLP/HTTP protobuf', async () => {
  // The trace of the first test: the client sidecar reports to otel-grpc, the server sidecar to both.
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const viaGrpc = officialSpans(grpcCollector.traces.map((t) => t.official), traceId);
  const clientSpan = viaGrpc.find((s) => s.span.kind === 'SPAN_KIND_CLIENT');
  const serverSpan = viaGrpc.find((s) => s.span.kind === 'SPAN_KIND_SERVER');
  assert.ok(clientSpan && serverSpan, `a CLIENT and a SERVER span, got ${viaGrpc.map((s) => s.span.kind).join(', ')}`);
  const check = (got: { span: OfficialSpan; resource: Record<string, unknown>; scope: string | undefined }, side: 'client' | 'server') => {
    const { span, resource, scope } = got;
    const a = officialAttributesOf(span.attributes);
    assert.is(span.name, `${HOST}/*`);
    assert.is(span.spanId.length, 8);
    assert.is(span.flags & 0xff, 1, 'W3C trace flags: sampled');
    assert.is(a['istio.canonical_service'], side === 'client' ? 'productpage' : 'reviews');
    assert.is(a['istio.canonical_revision'], side === 'client' ? 'v1' : 'v2');
    assert.is(a['istio.mesh_id'], 'test-mesh');
    assert.is(a['istio.namespace'], 'default');
    assert.is(a['http.method'], 'GET');
    assert.is(a['http.status_code'], '200');
    assert.is(a['http.url'], `http://${HOST}/reviews/1?x=1`);
    assert.is(span.status?.code ?? 'STATUS_CODE_UNSET', 'STATUS_CODE_UNSET');
    assert.ok(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano) && BigInt(span.startTimeUnixNano) > BigInt(Date.now() - 60_000) * 1_000_000n);
    assert.is(resource['service.name'], side === 'client' ? 'productpage.default' : 'reviews.default');
    assert.is(scope, 'wasmesh-proxy');
  };
  check(clientSpan, 'client');
  check(serverSpan, 'server');
  assert.is(hexOf(clientSpan.span.parentSpanId), '00f067aa0ba902b7', "the client span is a child of the app's span");
  assert.is(hexOf(serverSpan.span.parentSpanId), hexOf(clientSpan.span.spanId), 'the server span is a child of the client span');
  assert.match(String(officialAttributesOf(clientSpan.span.attributes).upstream_cluster), /^outbound\|9080\|\|reviews\.default\.svc\.cluster\.local$/);
  assert.match(String(officialAttributesOf(serverSpan.span.attributes).upstream_cluster), /^inbound\|/);
  // Our copy read the same bytes the same way.
  const ours = grpcSpans().find((s) => hex(s.span_id) === hexOf(serverSpan.span.spanId))!;
  assert.equal(attributesOf(ours.attributes), officialAttributesOf(serverSpan.span.attributes));
  assert.is(ours.start_time_unix_nano, serverSpan.span.startTimeUnixNano);
  // OTLP/HTTP: the server span, the same as over gRPC.
  const viaHttp = officialSpans(httpCollector.requests.map((r) => r.official), traceId);
  assert.is(viaHttp.length, 1, 'only the server sidecar reports over OTLP/HTTP');
  check(viaHttp[0]!, 'server');
  assert.equal(viaHttp[0]!.span, serverSpan.span);
});

test('a 5xx span has status ERROR; every request of a batch arrives', async () => {
  const before = grpcSpans().length;
  for (let i = 0; i < 20; i++) await request(client.outboundPort, { path: `/fail/${i}`, headers: { host: HOST } });
  const spans = await until('40 spans of /fail/*', () => {
    const s = grpcSpans().slice(before).filter((x) => String(attr(x, 'http.url')).includes('/fail/'));
    return s.length >= 40 ? s : undefined;
  });
  assert.ok(spans.every((s) => s.status?.code === 'STATUS_CODE_ERROR'));
  assert.ok(spans.every((s) => attr(s, 'http.status_code') === '503'));
});

test('envoyOtelAls: access-log records as OTLP logs over gRPC, labels as typed attributes, Istio line as body, filtered', async () => {
  const traceId = 'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb';
  await request(client.outboundPort, { path: '/missing/1', headers: { host: HOST, 'user-agent': 'otel-test', traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
  await request(client.outboundPort, { path: '/ok/2', headers: { host: HOST } });
  await request(client.outboundPort, { path: '/ok/3', headers: { host: HOST, 'x-debug': '1' } });
  const records = await until('records for /missing/1 and /ok/3', () => {
    const r = grpcCollector.logs.flatMap((l) => l.request.resource_logs.flatMap((x) => x.scope_logs.flatMap((s) => s.log_records)));
    const paths = r.map((x) => attributesOf(x.attributes).path);
    return paths.includes('/missing/1') && paths.includes('/ok/3') ? r : undefined;
  });
  const missing = records.find((r) => attributesOf(r.attributes).path === '/missing/1')!;
  const a = attributesOf(missing.attributes);
  assert.is(a.code, 404, 'a label that is one operator keeps its type (int_value)');
  assert.is(a.agent, 'otel-test');
  assert.match(String(a.cluster), /^inbound\|/);
  const body = String(anyValueOf(missing.body));
  assert.match(body, /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "GET \/missing\/1 HTTP\/1\.1" 404 - via_upstream /, "Istio's default line as the body");
  assert.not.ok(body.endsWith('\n'));
  assert.is(missing.trace_id.toString('hex'), traceId, "the record names the request's trace");
  assert.is(missing.span_id.length, 8);
  assert.ok(BigInt(missing.time_unix_nano) > 0n && BigInt(missing.observed_time_unix_nano) >= BigInt(missing.time_unix_nano));
  assert.not.ok(records.some((r) => attributesOf(r.attributes).path === '/ok/2'), 'a 200 without x-debug is filtered out');
  const res = grpcCollector.logs[0]!.request.resource_logs[0]!.resource!;
  const ra = attributesOf(res.attributes);
  assert.is(ra.log_name, 'otel_envoy_accesslog');
  assert.is(ra.node_name, 'sidecar~reviews-v2.default');
  assert.is(ra.cluster_name, 'reviews.default');
  // The same records decoded with the official OpenTelemetry definitions (ExportLogsServiceRequest).
  const official = grpcCollector.logs.flatMap((l) => l.official.resourceLogs.flatMap((x) => x.scopeLogs.flatMap((sl) => sl.logRecords.map((r) => ({ r, resource: officialAttributesOf(x.resource?.attributes ?? []) })))));
  const o = official.find((x) => officialAttributesOf(x.r.attributes).path === '/missing/1')!;
  assert.ok(o, 'the record of /missing/1 read by the official definitions');
  assert.equal(officialAttributesOf(o.r.attributes), a, 'the same typed attributes');
  assert.is(o.r.attributes.find((kv) => kv.key === 'code')!.value!.value, 'intValue');
  assert.is(officialAnyValueOf(o.r.body), body);
  assert.is(hexOf(o.r.traceId), traceId);
  assert.is(hexOf(o.r.spanId), missing.span_id.toString('hex'));
  assert.is(o.r.timeUnixNano, missing.time_unix_nano);
  assert.is(o.r.observedTimeUnixNano, missing.observed_time_unix_nano);
  assert.equal(o.resource, { log_name: 'otel_envoy_accesslog', node_name: 'sidecar~reviews-v2.default', cluster_name: 'reviews.default' });
  assert.not.ok(official.some((x) => officialAttributesOf(x.r.attributes).path === '/ok/2'));
  const s = await stats(server);
  assert.ok(counter(s, 'wasmesh_proxy_access_log_records_exported_total{provider="als"}') >= 2, s.split('\n').filter((l) => l.includes('access_log')).join('\n'));
});

test('spans a collector rejects (partial_success) are counted as dropped', async () => {
  const s0 = await stats(client);
  const dropped0 = counter(s0, 'wasmesh_proxy_tracing_spans_dropped_total{provider="otel-grpc"}');
  grpcCollector.traceAnswer = { partial_success: { rejected_spans: 1, error_message: 'over quota' } };
  try {
    await request(client.outboundPort, { path: '/reviews/rejected', headers: { host: HOST } });
    await until('a rejected span counted', async () => (counter(await stats(client), 'wasmesh_proxy_tracing_spans_dropped_total{provider="otel-grpc"}') > dropped0 ? true : undefined));
  } finally {
    grpcCollector.traceAnswer = {};
  }
});

test('a dead gRPC collector: exports fail and spans are dropped and counted, requests unaffected; a config change applies without restart', async () => {
  await server.applyConfig(await load(serverWorkload, mesh(1, '[{ name: dead-grpc }]')));
  for (let i = 0; i < 5; i++) {
    const r = await request(client.outboundPort, { path: `/after/${i}`, headers: { host: HOST } });
    assert.is(r.status, 200);
  }
  const text = await until('export failures of dead-grpc', async () => {
    const t = await stats(server);
    return counter(t, 'wasmesh_proxy_tracing_spans_dropped_total{provider="dead-grpc"}') >= 5 ? t : undefined;
  });
  assert.ok(counter(text, 'wasmesh_proxy_tracing_export_failures_total{provider="dead-grpc"}') >= 1);
  assert.is(counter(text, 'wasmesh_proxy_tracing_spans_exported_total{provider="dead-grpc"}'), 0);
  // The client still reports to the live collector; the server no longer does.
  const after = await until('the client spans of /after/*', () => {
    const a = grpcSpans().filter((s) => String(attr(s, 'http.url')).includes('/after/'));
    return a.length >= 5 ? a : undefined;
  });
  assert.ok(after.every((s) => s.kind === 'SPAN_KIND_CLIENT'));
});

test('without spans on the side, an OTLP log record still names the trace the request carries', async () => {
  await server.applyConfig(await load(serverWorkload, mesh(1, '[{ name: otel-grpc }]', true)));
  const traceId = 'cccccccccccccccc1111111111111111';
  await request(client.outboundPort, { path: '/missing/untraced', headers: { host: HOST, traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
  const record = await until('the record of /missing/untraced', () =>
    grpcCollector.logs.flatMap((l) => l.request.resource_logs.flatMap((x) => x.scope_logs.flatMap((s) => s.log_records))).find((r) => attributesOf(r.attributes).path === '/missing/untraced'));
  assert.is(record.trace_id.toString('hex'), traceId);
  assert.is(record.span_id.length, 0, 'no span of this side to name');
  assert.not.ok(grpcSpans().some((s) => hex(s.trace_id) === traceId && s.kind === 'SPAN_KIND_SERVER'), 'the server reported no span');
});

test.run();
