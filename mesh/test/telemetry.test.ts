// Telemetry + MeshConfig: validation with field paths, Istio's precedence, the translated
// ProxyConfig.telemetry, and the access-log format and filter compilers the proxy runs.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromObjects } from '../src/documents.ts';
import { validateDocuments, formatErrors } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { compileFilter, compileValue } from '../src/telemetry/cel.ts';
import { compileLogFormat, ISTIO_DEFAULT_TEXT_FORMAT } from '../src/telemetry/log-format.ts';
import type { RequestLogFacts } from '../src/telemetry/facts.ts';
import type { WorkloadIdentity } from '../src/proxy-config.ts';

const reviews = { name: 'reviews-v2', namespace: 'default', labels: { app: 'reviews', version: 'v2' }, serviceAccount: 'reviews' };
const ratings = { name: 'ratings', namespace: 'default', labels: { app: 'ratings' }, serviceAccount: 'ratings' };
const shop = { name: 'cart', namespace: 'shop', labels: { app: 'cart' }, serviceAccount: 'cart' };

const mesh = (spec: object = {}) => ({
  apiVersion: 'wasmesh.io/v1alpha1',
  kind: 'MeshConfig',
  metadata: { name: 'mesh', namespace: 'istio-system' },
  spec: {
    extensionProviders: [
      { name: 'otel', opentelemetry: { service: '127.0.0.1', port: 4318, http: {} } },
      { name: 'zipkin', zipkin: { service: '127.0.0.1', port: 9411 } },
      { name: 'log', envoyFileAccessLog: { path: '/tmp/a.log' } },
      { name: 'json', envoyFileAccessLog: { path: '/tmp/b.log', logFormat: { labels: { code: '%RESPONSE_CODE%' } } } },
      { name: 'prom', prometheus: {} },
    ],
    ...spec,
  },
});
const tel = (name: string, namespace: string, spec: object) => ({ apiVersion: 'telemetry.istio.io/v1', kind: 'Telemetry', metadata: { name, namespace }, spec });

function errorsOf(values: object[]): string[] {
  return validateDocuments(fromObjects(values)).errors.map((e) => `${e.path}: ${e.message}`);
}

function translate(values: object[], workload: WorkloadIdentity = reviews) {
  const docs = fromObjects(values);
  const v = validateDocuments(docs);
  assert.ok(v.ok, formatErrors(v.errors));
  return translateProxyConfig(docs, workload, {});
}

test('root < namespace < workload: fields override, customTags merge, providers fall back to defaultProviders', () => {
  const docs = [
    mesh({ meshId: 'east', defaultProviders: { accessLogging: ['log'] } }),
    tel('mesh-default', 'istio-system', { tracing: [{ providers: [{ name: 'otel' }], randomSamplingPercentage: 1, customTags: { a: { literal: { value: 'root' } }, b: { literal: { value: 'root' } } } }] }),
    tel('ns', 'default', { tracing: [{ randomSamplingPercentage: 50, customTags: { b: { header: { name: 'x-b' } } } }] }),
    tel('wl', 'default', { selector: { matchLabels: { app: 'reviews' } }, tracing: [{ providers: [{ name: 'zipkin' }] }], accessLogging: [{ filter: { expression: 'response.code >= 500' } }] }),
    tel('other-ns', 'shop', { tracing: [{ disableSpanReporting: true }] }),
  ];
  const t = translate(docs).telemetry!;
  assert.ok(t, 'telemetry resolved');
  const tr = t.inbound.tracing!;
  assert.is(tr.samplingPercentage, 50);
  assert.equal(tr.providers.map((p) => `${p.kind}:${p.host}:${p.port}${p.path}`), ['zipkin:127.0.0.1:9411/api/v2/spans']);
  assert.equal(tr.customTags, { a: { literal: { value: 'root' } }, b: { header: { name: 'x-b' } } });
  assert.is(tr.meshId, 'east');
  assert.equal(t.inbound.accessLogs, [{ provider: 'log', path: '/tmp/a.log', format: {}, filter: 'response.code >= 500' }]);
  // ratings: no workload Telemetry, the namespace's settings with the root's provider.
  const r = translate(docs, ratings).telemetry!;
  assert.equal(r.outbound.tracing!.providers.map((p) => p.name), ['otel']);
  assert.is(r.outbound.tracing!.providers[0]!.path, '/v1/traces');
  assert.equal(r.outbound.accessLogs.map((l) => l.filter), [undefined]);
  // shop: span reporting disabled there.
  assert.is(translate(docs, shop).telemetry!.inbound.tracing, undefined);
});

test('match.mode picks the side; ALL_METRICS disabled turns the telemetry filter\'s metrics off for that reporter', () => {
  const t = translate([
    mesh(),
    tel('wl', 'default', {
      selector: { matchLabels: { app: 'reviews' } },
      tracing: [{ match: { mode: 'SERVER' }, providers: [{ name: 'otel' }] }],
      accessLogging: [{ match: { mode: 'CLIENT' }, providers: [{ name: 'json' }] }],
      metrics: [{ overrides: [{ match: { metric: 'ALL_METRICS', mode: 'CLIENT' }, disabled: true }] }],
    }),
  ]);
  assert.ok(t.telemetry!.inbound.tracing);
  assert.is(t.telemetry!.outbound.tracing, undefined);
  assert.equal(t.telemetry!.inbound.accessLogs, []);
  assert.equal(t.telemetry!.outbound.accessLogs.map((l) => l.provider), ['json']);
  const cfg = (side: 'inboundFilters' | 'outboundFilters') => t[side].find((b) => b.name === 'wasmesh-telemetry')!.pluginConfig;
  assert.equal(cfg('inboundFilters'), { metrics: true, accessLog: false });
  assert.equal(cfg('outboundFilters'), { metrics: false, accessLog: false });
});

test('providers as Istio spells them: opentelemetry without http is OTLP/gRPC, http: {} is OTLP/HTTP protobuf; envoyOtelAls; single-metric overrides in order', () => {
  const t = translate([
    mesh({
      extensionProviders: [
        { name: 'grpc', opentelemetry: { service: 'c', port: 4317, grpc: { timeout: '2s', initialMetadata: [{ name: 'x-tenant', value: 'a' }] } } },
        { name: 'bare', opentelemetry: { service: 'c', port: 4317 } },
        { name: 'http', opentelemetry: { service: 'c', port: 4318, http: {} } },
        { name: 'json', opentelemetry: { service: 'c', port: 4318, http: { encoding: 'json' } } },
        { name: 'als', envoyOtelAls: { service: 'col', port: 4317, logFormat: { labels: { code: '%RESPONSE_CODE%' } } } },
      ],
    }),
    tel('root', 'istio-system', {
      tracing: [{ providers: [{ name: 'grpc' }, { name: 'bare' }, { name: 'http' }, { name: 'json' }] }],
      accessLogging: [{ providers: [{ name: 'als' }] }],
      metrics: [{ overrides: [{ match: { metric: 'REQUEST_DURATION' }, disabled: true }, { tagOverrides: { request_protocol: { operation: 'REMOVE' } } }] }],
    }),
    tel('wl', 'default', {
      selector: { matchLabels: { app: 'reviews' } },
      metrics: [{ overrides: [{ match: { customMetric: 'requests_total', mode: 'SERVER' }, tagOverrides: { host: { value: 'request.host' } } }] }],
    }),
  ]).telemetry!;
  const p = t.outbound.tracing!.providers;
  assert.equal(p.map((x) => [x.name, x.protocol, x.timeoutMs]), [['grpc', 'otlp-grpc', 2000], ['bare', 'otlp-grpc', 5000], ['http', 'otlp-http-protobuf', 5000], ['json', 'otlp-http-json', 5000]]);
  assert.equal(p[0]!.headers, [['x-tenant', 'a']]);
  assert.is(p[2]!.path, '/v1/traces');
  assert.equal(t.inbound.accessLogs, [{ provider: 'als', path: '', otel: { host: 'col', port: 4317, logName: 'otel_envoy_accesslog', timeoutMs: 5000 }, format: { labels: { code: '%RESPONSE_CODE%' } } }]);
  const all = ['REQUEST_COUNT', 'REQUEST_DURATION', 'REQUEST_SIZE', 'RESPONSE_SIZE'];
  assert.equal(t.outbound.metricOverrides, [{ metrics: ['REQUEST_DURATION'], disabled: true }, { metrics: all, tags: [['request_protocol', { remove: true }]] }]);
  assert.equal(t.inbound.metricOverrides, [
    { metrics: ['REQUEST_DURATION'], disabled: true },
    { metrics: all, tags: [['request_protocol', { remove: true }]] },
    { metrics: ['REQUEST_COUNT'], tags: [['host', { value: 'request.host' }]] },
  ]);
});

test('no Telemetry and no MeshConfig: the config has no telemetry section (and its version does not change)', () => {
  const t = translate([]);
  assert.is(t.telemetry, undefined);
});

test('validation names the field: unknown and mis-kinded providers, bad formats and expressions, unsupported overrides', () => {
  const errors = errorsOf([
    mesh({ defaultProviders: { tracing: ['log'] } }),
    {
      ...mesh(),
      metadata: { name: 'second', namespace: 'default' },
      spec: { extensionProviders: [{ name: 'both', opentelemetry: { service: 'c', port: 4317, http: {}, grpc: {} } }, { name: 'bad', envoyFileAccessLog: { logFormat: { text: '%NOPE%' } } }, { name: 'als', envoyOtelAls: { service: 'c', port: 4317, logFormat: { labels: { x: '%NOPE%' } } } }] },
    },
    tel('t', 'default', {
      tracing: [{ providers: [{ name: 'missing' }] }],
      accessLogging: [{ providers: [{ name: 'otel' }], filter: { expression: 'response.code >=' } }],
      metrics: [
        {
          overrides: [
            { match: { metric: 'REQUEST_COUNT' }, tagOverrides: { x: { value: 'y' }, 'bad-name': { operation: 'REMOVE' }, reporter: { operation: 'REMOVE' }, z: {}, w: { operation: 'REMOVE', value: 'request.host' } } },
            { match: { customMetric: 'my_metric' }, disabled: true },
          ],
        },
      ],
    }),
    tel('schema', 'default', { tracing: [{ randomSamplingPercentage: 101 }] }),
  ]);
  const has = (re: RegExp) => assert.ok(errors.some((e) => re.test(e)), `${re} in\n${errors.join('\n')}`);
  has(/^\/spec\/defaultProviders\/tracing\/0: provider "log" is envoyFileAccessLog, which tracing cannot use/);
  has(/^: a mesh has one MeshConfig/);
  has(/^\/metadata\/namespace: a MeshConfig belongs in the root namespace/);
  has(/^\/spec\/extensionProviders\/0\/opentelemetry: use http \(OTLP\/HTTP\) or grpc/);
  has(/^\/spec\/extensionProviders\/2\/envoyOtelAls\/logFormat\/labels\/x: unknown command %NOPE%/);
  has(/^\/spec\/extensionProviders\/1\/envoyFileAccessLog\/logFormat\/text: unknown command %NOPE%/);
  has(/^\/spec\/tracing\/0\/providers\/0\/name: unknown provider "missing"/);
  has(/^\/spec\/tracing\/0\/randomSamplingPercentage: /);
  has(/^\/spec\/accessLogging\/0\/providers\/0\/name: provider "otel" is opentelemetry, which accessLogging cannot use/);
  has(/^\/spec\/accessLogging\/0\/filter\/expression: unexpected "<end>" at offset 16/);
  has(/^\/spec\/metrics\/0\/overrides\/0\/tagOverrides\/x\/value: unknown attribute y/);
  has(/^\/spec\/metrics\/0\/overrides\/0\/tagOverrides\/bad-name: "bad-name" is not a Prometheus label name/);
  has(/^\/spec\/metrics\/0\/overrides\/0\/tagOverrides\/reporter: the reporter label/);
  has(/^\/spec\/metrics\/0\/overrides\/0\/tagOverrides\/z\/value: UPSERT needs a value/);
  has(/^\/spec\/metrics\/0\/overrides\/0\/tagOverrides\/w\/value: REMOVE takes no value/);
  has(/^\/spec\/metrics\/0\/overrides\/1\/match\/customMetric: wasmesh has no custom metrics/);
});

const facts = (over: Partial<RequestLogFacts> & { req?: Record<string, string>; resp?: Record<string, string> } = {}): RequestLogFacts => ({
  startMs: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
  durationMs: 12,
  responseCode: 503,
  responseFlags: 'UH',
  responseCodeDetails: 'no_healthy_upstream',
  bytesReceived: 3,
  bytesSent: 19,
  protocol: 'HTTP/1.1',
  upstreamHost: '',
  upstreamCluster: 'outbound|9080||reviews.default.svc.cluster.local',
  upstreamLocalAddress: '',
  downstreamRemoteAddress: '10.0.0.1:40000',
  downstreamLocalAddress: '10.0.0.2:9080',
  routeName: 'reviews.default/0',
  requestedServerName: '',
  attemptCount: 1,
  traceId: '',
  mtls: true,
  requestHeader: (n) => ({ ':method': 'GET', ':path': '/reviews/1?x=1', ':authority': 'reviews:9080', 'user-agent': 'curl', 'x-request-id': 'rid', ...over.req })[n],
  responseHeader: (n) => ({ ...over.resp })[n],
  ...over,
});

test('Envoy format: Istio\'s default text line, JSON labels keep numbers and print absent values as null', () => {
  const text = compileLogFormat(undefined);
  assert.ok('line' in text);
  assert.is(
    text.line(facts()),
    '[2026-01-02T03:04:05.006Z] "GET /reviews/1?x=1 HTTP/1.1" 503 UH no_healthy_upstream - "-" 3 19 12 - "-" "curl" "rid" "reviews:9080" "-" outbound|9080||reviews.default.svc.cluster.local - 10.0.0.2:9080 10.0.0.1:40000 - reviews.default/0\n',
  );
  assert.ok(ISTIO_DEFAULT_TEXT_FORMAT.endsWith('\n'));
  const json = compileLogFormat({ labels: { code: '%RESPONSE_CODE%', up: '%UPSTREAM_HOST%', ua: '%REQ(USER-AGENT):2%', at: '%START_TIME(%Y/%m/%d %T)%', m: '%REQ(:METHOD)% %RESP(X-Y?X-Z)%' } });
  assert.ok('line' in json);
  assert.equal(JSON.parse(json.line(facts({ resp: { 'x-z': 'zz' } }))), { code: 503, up: null, ua: 'cu', at: '2026/01/02 03:04:05', m: 'GET zz' });
  assert.equal(compileLogFormat({ text: '%REQ()%' }), { path: '/text', message: '%REQ(...)% needs a header name, as %REQ(USER-AGENT)% or %REQ(X?Y)%' });
});

test('CEL subset: comparisons, headers, mtls, &&, ||, !, in, string functions; a missing header is an error || absorbs', () => {
  const m = (e: string, f = facts()) => {
    const c = compileFilter(e);
    if ('message' in c) throw new Error(c.message);
    return c.matches(f);
  };
  assert.ok(m('response.code >= 400'));
  assert.not.ok(m('response.code >= 400', facts({ responseCode: 200 })));
  assert.ok(m("request.headers['user-agent'] == 'curl' && connection.mtls"));
  assert.not.ok(m("request.headers['x-debug'] == '1'"));
  assert.ok(m("request.headers['x-debug'] == '1' || response.code == 503"));
  assert.ok(m("request.url_path.startsWith('/reviews') && !(request.method in ['POST', 'PUT'])"));
  assert.not.ok(m("response.code == '503'"), 'no coercion between int and string');
  assert.equal(compileFilter('response.nope > 1'), { at: 0, message: (compileFilter('response.nope > 1') as { message: string }).message });
  assert.match((compileFilter('response.nope > 1') as { message: string }).message, /^unknown attribute response.nope/);
  assert.match((compileFilter("request.path.matches('x')") as { message: string }).message, /unknown function matches\(\)/);
});

test('CEL values (tagOverrides): strings, printed numbers, string(), has(), c ? a : b; an error is undefined', () => {
  const v = (e: string, f = facts()) => {
    const c = compileValue(e);
    if ('message' in c) throw new Error(c.message);
    return c.value(f);
  };
  assert.is(v('request.host'), 'reviews:9080');
  assert.is(v("'v1'"), 'v1');
  assert.is(v('response.code'), '503');
  assert.is(v('string(response.code)'), '503');
  assert.is(v("request.headers['x-user']"), undefined);
  assert.is(v("has(request.headers['x-user']) ? request.headers['x-user'] : 'anonymous'"), 'anonymous');
  assert.is(v("has(request.headers['x-user']) ? request.headers['x-user'] : 'anonymous'", facts({ req: { 'x-user': 'jason' } })), 'jason');
  assert.is(v("response.code >= 500 ? 'error' : 'ok'"), 'error');
  assert.match((compileValue('response.code ?') as { message: string }).message, /unexpected "<end>"/);
});

test.run();
