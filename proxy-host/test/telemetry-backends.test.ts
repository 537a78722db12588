// Telemetry backends on running proxies: a client sidecar (outbound) and a server sidecar (inbound) in
// front of an app, configured from Telemetry + MeshConfig documents. Real HTTP receivers on loopback
// decode what the proxies export (OTLP/HTTP with the JSON encoding, read by the official OpenTelemetry
// definitions too, and Zipkin v2 JSON, each Zipkin span checked against Zipkin's v2 model as zipkin-js writes it; protobuf and gRPC: telemetry-otlp.test.ts); the access log is a real file.
// A changed Telemetry applies without restart; a dead backend drops and counts, requests unaffected.
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { hexOf, officialAttributesOf, officialReadTraceJson } from '../../schemas/proto/opentelemetry/official.ts';
import { zipkinSpans, type FinishedSpan } from '../src/telemetry/span-exporter.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import { throughZipkinModel, zipkinV2Problems, type PostedSpan } from './support/zipkin-model.ts';

interface Receiver {
  port: number;
  bodies: unknown[];
  server: Server;
}

async function startReceiver(): Promise<Receiver> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push({ path: req.url, contentType: req.headers['content-type'], auth: req.headers['x-auth'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, bodies, server };
}

async function until<T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let app: TestServer;
let otel: Receiver;
let zipkin: Receiver;
let client: Proxy;
let server: Proxy;
let dir: string;
let deadPort: number;

const clientWorkload = { name: 'productpage-v1', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const serverWorkload = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };

function mesh(opts: { reviewsPort: number; reviewsTelemetry: string }): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${opts.reviewsPort} } }]
---
apiVersion: wasmesh.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  meshId: test-mesh
  extensionProviders:
  - name: otel
    opentelemetry: { service: 127.0.0.1, port: ${otel.port}, http: { path: /v1/traces, encoding: json, headers: [{ name: x-auth, value: secret }] } }
  - name: zipkin
    zipkin: { service: 127.0.0.1, port: ${zipkin.port} }
  - name: dead
    zipkin: { service: 127.0.0.1, port: ${deadPort} }
  - name: json-log
    envoyFileAccessLog:
      path: ${join(dir, 'access.json')}
      logFormat: { labels: { code: '%RESPONSE_CODE%', method: '%REQ(:METHOD)%', path: '%REQ(:PATH)%', upstream: '%UPSTREAM_HOST%', cluster: '%UPSTREAM_CLUSTER%', flags: '%RESPONSE_FLAGS%', peer: '%DOWNSTREAM_REMOTE_ADDRESS%', trace: '%TRACE_ID%', bytes: '%BYTES_SENT%' } }
  - name: text-log
    envoyFileAccessLog: { path: ${join(dir, 'access.log')} }
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  tracing:
  - providers: [{ name: otel }]
    randomSamplingPercentage: 100
    customTags:
      team: { literal: { value: bookinfo } }
      user: { header: { name: end-user, defaultValue: anonymous } }
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: productpage, namespace: default }
spec:
  selector: { matchLabels: { app: productpage } }
  accessLogging:
  - providers: [{ name: text-log }]
---
${opts.reviewsTelemetry}`;
}

const REVIEWS_V1 = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: reviews, namespace: default }
spec:
  targetRefs: [{ kind: Service, name: reviews }]
  tracing:
  - providers: [{ name: otel }, { name: zipkin }]
  accessLogging:
  - providers: [{ name: json-log }]
    filter: { expression: "response.code >= 400 || request.headers['x-debug'] == '1'" }
`;

async function load(workload: typeof clientWorkload, text: string) {
  writeFileSync(join(dir, `${workload.name}.yaml`), text);
  const loaded = await loadConfigFile(join(dir, `${workload.name}.yaml`), workload);
  if (!loaded.ok) throw new Error(loaded.error);
  return loaded.config;
}

test.before(async () => {
  try {
    await setup();
  } catch (err) {
    console.error('setup failed:', err);
    throw err;
  }
});

async function setup(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-telemetry-backends-'));
  otel = await startReceiver();
  zipkin = await startReceiver();
  const dead = await startReceiver();
  deadPort = dead.port;
  await new Promise<void>((r) => dead.server.close(() => r())); // nothing listens there any more
  app = await startHttp1('reviews-app', (req, res) => {
    res.writeHead(req.url?.startsWith('/missing') ? 404 : 200, { 'content-type': 'text/plain' }).end(`hello ${req.url}`);
  });
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, await load(serverWorkload, mesh({ reviewsPort: 1, reviewsTelemetry: REVIEWS_V1 })));
  client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: 1, accessLog: 'off' }, await load(clientWorkload, mesh({ reviewsPort: server.inboundPort, reviewsTelemetry: REVIEWS_V1 })));
}

test.after(async () => {
  await client?.stop(100);
  await server?.stop(100);
  await app?.close();
  await Promise.all([otel, zipkin].map((r) => new Promise<void>((res) => (r ? r.server.close(() => res()) : res()))));
  rmSync(dir, { recursive: true, force: true });
});

type OtlpSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes: { key: string; value: { stringValue: string } }[] };
const otlpSpans = (): OtlpSpan[] =>
  otel.bodies.flatMap((b) => (b as { body: { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] } }).body.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
const attr = (s: OtlpSpan, k: string) => s.attributes.find((a) => a.key === k)?.value.stringValue;

test('one request through two sidecars: a CLIENT span and its SERVER child in one trace, with Istio tags; the app sees the server span as parent', async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const res = await request(client.outboundPort, { path: '/reviews/1?x=1', headers: { host: 'reviews.default.svc.cluster.local:9080', traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'end-user': 'jason' } });
  assert.is(res.status, 200);
  const spans = await until('two spans at the OTLP receiver', () => {
    const s = otlpSpans().filter((x) => x.traceId === traceId);
    return s.length >= 2 ? s : undefined;
  });
  const clientSpan = spans.find((s) => s.kind === 3)!;
  const serverSpan = spans.find((s) => s.kind === 2)!;
  assert.ok(clientSpan && serverSpan, 'a CLIENT (3) and a SERVER (2) span');
  assert.is(clientSpan.parentSpanId, '00f067aa0ba902b7', 'the client span is a child of the app\'s span');
  assert.is(serverSpan.parentSpanId, clientSpan.spanId, 'the server span is a child of the client span');
  assert.is(app.received.at(-1)!.headers.traceparent, `00-${traceId}-${serverSpan.spanId}-01`);
  assert.is(attr(clientSpan, 'istio.canonical_service'), 'productpage');
  assert.is(attr(serverSpan, 'istio.canonical_service'), 'reviews');
  assert.is(attr(serverSpan, 'istio.canonical_revision'), 'v2');
  assert.is(attr(serverSpan, 'istio.mesh_id'), 'test-mesh');
  assert.is(attr(serverSpan, 'http.method'), 'GET');
  assert.is(attr(serverSpan, 'http.status_code'), '200');
  assert.is(attr(clientSpan, 'http.url'), 'http://reviews.default.svc.cluster.local:9080/reviews/1?x=1');
  assert.match(attr(clientSpan, 'upstream_cluster')!, /^outbound\|9080\|\|reviews\.default\.svc\.cluster\.local$/);
  assert.is(attr(clientSpan, 'team'), 'bookinfo');
  assert.is(attr(clientSpan, 'user'), 'jason');
  assert.is(attr(serverSpan, 'guid:x-request-id'), attr(clientSpan, 'guid:x-request-id'));
  assert.is((otel.bodies.at(-1) as { auth: string }).auth, 'secret');
  assert.is((otel.bodies.at(-1) as { path: string }).path, '/v1/traces');
  // Zipkin v2 JSON: the reviews workload also reports to zipkin.
  const z = await until('the server span at the Zipkin receiver', () =>
    zipkin.bodies.flatMap((b) => (b as { body: Array<Record<string, unknown>> }).body).find((s) => s.traceId === traceId));
  assert.is(z.id, serverSpan.spanId);
  assert.is(z.parentId, clientSpan.spanId);
  assert.is(z.kind, 'SERVER');
  assert.is((z.tags as Record<string, string>)['http.status_code'], '200');
  assert.is((zipkin.bodies[0] as { path: string }).path, '/api/v2/spans');
});

test('OTLP/HTTP JSON: every body is an ExportTraceServiceRequest the official definitions read whole', async () => {
  const bodies = otel.bodies.map((b) => (b as { body: unknown }).body);
  assert.ok(bodies.length >= 1, 'the first test exported spans');
  const read = bodies.map((b) => officialReadTraceJson(b));
  assert.equal(read.flatMap((r) => r.problems), []);
  const spans = read.flatMap((r) => r.request!.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((span) => ({ span, service: officialAttributesOf(rs.resource?.attributes ?? [])['service.name'] })))));
  const mine = spans.filter((x) => hexOf(x.span.traceId) === '4bf92f3577b34da6a3ce929d0e0e4736');
  const server = mine.find((x) => x.span.kind === 'SPAN_KIND_SERVER')!;
  const client = mine.find((x) => x.span.kind === 'SPAN_KIND_CLIENT')!;
  assert.ok(server && client, 'a SERVER and a CLIENT span');
  assert.is(hexOf(server.span.parentSpanId), hexOf(client.span.spanId));
  assert.is(server.service, 'reviews.default');
  assert.is(client.service, 'productpage.default');
  assert.is(officialAttributesOf(server.span.attributes)['http.status_code'], '200');
  assert.ok(BigInt(server.span.endTimeUnixNano) >= BigInt(server.span.startTimeUnixNano));
  // And the reading is not lenient: a field of the wrong type or one OTLP does not have is reported.
  const bad = JSON.parse(JSON.stringify(bodies[0])) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
  bad.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.name = 7;
  bad.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.durationNanos = '5';
  assert.equal(officialReadTraceJson(bad).problems, ['/resourceSpans/0/scopeSpans/0/spans/0/name: 7 reads back as "7"', '/resourceSpans/0/scopeSpans/0/spans/0/durationNanos: not a field of the official definitions (or not a value of its type)']);
});

test("Zipkin v2: every span posted is what Zipkin's model (zipkin-js model.Span, JSON_V2) writes for it", async () => {
  const posted = zipkin.bodies.flatMap((b) => (b as { body: PostedSpan[] }).body);
  assert.ok(posted.length >= 1, 'the first test posted spans');
  for (const span of posted) {
    assert.equal(zipkinV2Problems(span), [], JSON.stringify(span));
    assert.equal(span, throughZipkinModel(span), 'the posted JSON and the model agree');
  }
  // The span of the first test, field by field.
  const s = posted.find((x) => x.traceId === '4bf92f3577b34da6a3ce929d0e0e4736')!;
  assert.is(s.kind, 'SERVER');
  assert.is(s.name, 'reviews.default.svc.cluster.local:9080/*');
  assert.equal(s.localEndpoint, { serviceName: 'reviews.default' });
  assert.is(s.remoteEndpoint, undefined, 'no remote endpoint is reported (README: not done)');
  assert.ok(s.timestamp! > (Date.now() - 60_000) * 1000 && s.timestamp! <= Date.now() * 1000, `timestamp ${s.timestamp} in epoch microseconds`);
  assert.ok(s.duration! >= 1 && s.duration! < 10_000_000, `duration ${s.duration} µs`);
  assert.is(s.tags!['istio.canonical_service'], 'reviews');
  assert.is(s.tags!['http.status_code'], '200');
  assert.is(s.tags!.team, 'bookinfo');
});

test('Zipkin v2: the exporter writes what the model writes at the edges (capitals, sub-microsecond times, errors, long tags)', () => {
  const base: FinishedSpan = { traceId: '463ac35c9f6413ad', spanId: 'a2fb4a1d1a96d312', parentSpanId: '', name: 'Reviews.Default:9080/*', kind: 'CLIENT', startMs: 1_700_000_000_123.4567, durationMs: 0.0004, tags: { long: 'x'.repeat(40), n: '7' }, error: true, localEndpoint: { serviceName: 'Reviews.default' } };
  const [a, b] = zipkinSpans([base, { ...base, spanId: 'b2fb4a1d1a96d312', parentSpanId: 'a2fb4a1d1a96d312', kind: 'SERVER', durationMs: 12.3456, error: false }], 16) as PostedSpan[];
  for (const s of [a!, b!]) {
    assert.equal(zipkinV2Problems(s), [], JSON.stringify(s));
    assert.equal(s, throughZipkinModel(s));
  }
  assert.is(a!.name, 'reviews.default:9080/*');
  assert.is(a!.localEndpoint!.serviceName, 'reviews.default');
  assert.is(a!.timestamp, 1_700_000_000_123_457);
  assert.is(a!.duration, 1, 'less than a microsecond rounds up to 1');
  assert.is(a!.parentId, undefined, 'a root span has no parentId');
  assert.equal(a!.tags, { long: 'x'.repeat(16), n: '7', error: 'true' });
  assert.is(b!.parentId, 'a2fb4a1d1a96d312');
  assert.is(b!.duration, 12_346);
  assert.is(b!.tags!.error, undefined);
});

test('sampling: an incoming "not sampled" decision is kept and propagated; B3 context is continued', async () => {
  const before = otlpSpans().length;
  const traceId = 'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb';
  await request(client.outboundPort, { path: '/reviews/2', headers: { host: 'reviews.default.svc.cluster.local:9080', traceparent: `00-${traceId}-00f067aa0ba902b7-00` } });
  assert.match(app.received.at(-1)!.headers.traceparent as string, new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
  const b3Trace = '463ac35c9f6413ad48485a3953bb6124';
  await request(client.outboundPort, { path: '/reviews/3', headers: { host: 'reviews.default.svc.cluster.local:9080', 'x-b3-traceid': b3Trace, 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' } });
  const h = app.received.at(-1)!.headers;
  assert.is(h['x-b3-traceid'], b3Trace);
  const spans = await until('the B3 trace\'s spans', () => {
    const s = otlpSpans().filter((x) => x.traceId === b3Trace);
    return s.length >= 2 ? s : undefined;
  });
  const serverSpan = spans.find((s) => s.kind === 2)!;
  assert.is(h['x-b3-spanid'], serverSpan.spanId);
  assert.is(spans.find((s) => s.kind === 3)!.parentSpanId, 'a2fb4a1d1a96d312');
  assert.not.ok(otlpSpans().some((s) => s.traceId === traceId), 'the unsampled trace reported nothing');
  assert.ok(otlpSpans().length >= before + 2);
});

test('access logs: Istio\'s text line on the client, JSON with the filter expression on the server', async () => {
  await request(client.outboundPort, { path: '/missing/1', headers: { host: 'reviews.default.svc.cluster.local:9080' } });
  await request(client.outboundPort, { path: '/ok/2', headers: { host: 'reviews.default.svc.cluster.local:9080' } });
  await request(client.outboundPort, { path: '/ok/3', headers: { host: 'reviews.default.svc.cluster.local:9080', 'x-debug': '1' } });
  const lines = await until('three JSON lines for /missing/1 and /ok/3', () => {
    if (!existsSync(join(dir, 'access.json'))) return undefined;
    const l = readFileSync(join(dir, 'access.json'), 'utf8').trim().split('\n').map((x) => JSON.parse(x) as Record<string, unknown>);
    return l.some((x) => x.path === '/ok/3') ? l : undefined;
  });
  const missing = lines.find((l) => l.path === '/missing/1')!;
  assert.is(missing.code, 404);
  assert.is(missing.method, 'GET');
  assert.is(missing.upstream, `127.0.0.1:${app.port}`);
  assert.is(missing.flags, '-');
  assert.match(missing.trace as string, /^[0-9a-f]{32}$/);
  assert.type(missing.bytes, 'number');
  assert.not.ok(lines.some((l) => l.path === '/ok/2'), 'a 200 without x-debug is filtered out');
  const text = await until('the client\'s text line', () => {
    const t = existsSync(join(dir, 'access.log')) ? readFileSync(join(dir, 'access.log'), 'utf8') : '';
    return t.includes('/ok/3') ? t : undefined;
  });
  const line = text.split('\n').find((l) => l.includes('"GET /missing/1 HTTP/1.1"'))!;
  assert.match(line, /^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET \/missing\/1 HTTP\/1\.1" 404 - via_upstream - "-" 0 \d+ \d+ - "[^"]*" "-" "[0-9a-f-]+" "reviews\.default\.svc\.cluster\.local:9080" "127\.0\.0\.1:\d+" outbound\|9080\|\|reviews\.default\.svc\.cluster\.local - 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - /);
});

test('a changed Telemetry applies without restart; a dead backend drops and counts, requests unaffected', async () => {
  const changed = REVIEWS_V1.replace('[{ name: otel }, { name: zipkin }]', '[{ name: dead }]').replace("response.code >= 400 || request.headers['x-debug'] == '1'", 'response.code == 200');
  await server.applyConfig(await load(serverWorkload, mesh({ reviewsPort: 1, reviewsTelemetry: changed })));
  for (let i = 0; i < 5; i++) {
    const r = await request(client.outboundPort, { path: `/after/${i}`, headers: { host: 'reviews.default.svc.cluster.local:9080' } });
    assert.is(r.status, 200);
  }
  await until('the new filter in the JSON log', () => (readFileSync(join(dir, 'access.json'), 'utf8').includes('/after/4') ? true : undefined));
  const stats = async () => (await fetch(`http://127.0.0.1:${server.adminPort}/stats/prometheus`)).text();
  const count = await (async () => {
    const end = Date.now() + 5000;
    for (;;) {
      const m = /wasmesh_proxy_tracing_spans_dropped_total\{provider="dead"\} (\d+)/.exec(await stats());
      if (m && Number(m[1]) >= 5) return Number(m[1]);
      if (Date.now() > end) throw new Error(`no drops counted:\n${(await stats()).split('\n').filter((l) => l.includes('tracing')).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  assert.ok(count >= 5);
  const after = await until('the client spans of /after/*', () => {
    const a = otlpSpans().filter((s) => attr(s, 'http.url')?.includes('/after/'));
    return a.length >= 5 ? a : undefined;
  });
  assert.ok(after.length >= 5, 'the client still reports to otel');
  assert.ok(after.every((s) => s.kind === 3), 'the server no longer reports to otel');
});

test.run();
