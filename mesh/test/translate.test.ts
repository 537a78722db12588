import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import type { ProxyConfig, RouteConfig, WorkloadIdentity } from '../src/proxy-config.ts';
import { fromObjects, readDocumentFiles, type ConfigDocument } from '../src/documents.ts';
import { formatErrors, validateDocuments } from '../src/validate.ts';
import { translateProxyConfig } from '../src/translate/proxy-config.ts';
import { canonicalJson, contentVersion } from '../src/translate/version.ts';
import { parseDuration } from '../src/translate/durations.ts';

/** Istio's retry policy for routes that set none (see translate/routes.ts defaultRetryPolicy). */
const DEFAULT_RETRY = { attempts: 2, perTryTimeoutMs: 0, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], retriableStatusCodes: [503] };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../../schemas/examples/', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Fixtures

const productpage: WorkloadIdentity = {
  name: 'productpage-v1',
  namespace: 'default',
  labels: { app: 'productpage', version: 'v1' },
  serviceAccount: 'bookinfo-productpage',
};

const serviceEntry = (name: string, spec: object, namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace },
  spec,
});

const k8sService = (name: string, endpoints: object[], extra: object = {}, namespace = 'default') =>
  serviceEntry(
    name,
    {
      hosts: [`${name}.${namespace}.svc.cluster.local`],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
      endpoints,
      ...extra,
    },
    namespace,
  );

const workloadEntry = (name: string, address: string, labels: Record<string, string>, extra: object = {}) => ({
  apiVersion: 'networking.istio.io/v1beta1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace: 'default' },
  spec: { address, labels, ...extra },
});

const destinationRule = (name: string, spec: object, metadata: object = {}) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name, namespace: 'default', ...metadata },
  spec,
});

const virtualService = (name: string, spec: object, namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace },
  spec,
});

const wasmPlugin = (name: string, spec: object, namespace = 'default') => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name, namespace },
  spec: { url: `file://filters/${name}.wasm`, ...spec },
});

/** The reviews service: v1 and v2 endpoints inline, v3 as a WorkloadEntry. */
function reviewsMesh(...more: object[]): object[] {
  return [
    k8sService('reviews', [
      { address: '10.0.0.1', labels: { app: 'reviews', version: 'v1' } },
      { address: '10.0.0.2', labels: { app: 'reviews', version: 'v2' }, ports: { http: 19080 }, weight: 3 },
    ], { workloadSelector: { labels: { app: 'reviews' } } }),
    workloadEntry('reviews-v3', '10.0.0.3', { app: 'reviews', version: 'v3' }),
    workloadEntry('ratings-v1', '10.0.0.9', { app: 'ratings', version: 'v1' }),
    destinationRule('reviews', {
      host: 'reviews',
      subsets: ['v1', 'v2', 'v3'].map((v) => ({ name: v, labels: { version: v } })),
    }),
    ...more,
  ];
}

/** Validates (the translator's precondition), then translates. */
function translate(objects: readonly object[], workload: WorkloadIdentity = productpage, file = 'mesh.yaml'): ProxyConfig {
  const docs = fromObjects(objects, file);
  const result = validateDocuments(docs);
  assert.ok(result.ok, formatErrors(result.errors));
  // WasmPlugin tests look at the user's plugins alone; the built-in filters have their own tests.
  return translateProxyConfig(docs, workload, { telemetry: false });
}

function routesOf(config: ProxyConfig, host: string): readonly RouteConfig[] {
  const vh = config.virtualHosts.find((v) => v.name === host);
  assert.ok(vh, `no virtual host ${host}: ${config.virtualHosts.map((v) => v.name).join(', ')}`);
  return vh.routes;
}

const REVIEWS = 'reviews.default.svc.cluster.local';

// ---------------------------------------------------------------------------------------------
// Clusters

test('clusters: one per host and port, plus one per subset, with endpoints filtered by labels', () => {
  const config = translate(reviewsMesh());
  assert.equal(Object.keys(config.clusters), [
    `outbound|9080|v1|${REVIEWS}`,
    `outbound|9080|v2|${REVIEWS}`,
    `outbound|9080|v3|${REVIEWS}`,
    `outbound|9080||${REVIEWS}`,
  ]);
  const all = config.clusters[`outbound|9080||${REVIEWS}`]!;
  assert.equal(all, {
    name: `outbound|9080||${REVIEWS}`,
    host: REVIEWS,
    port: 9080,
    protocol: 'http1',
    endpoints: [
      { address: '10.0.0.1', port: 9080, labels: { app: 'reviews', version: 'v1' }, weight: 1 },
      { address: '10.0.0.2', port: 19080, labels: { app: 'reviews', version: 'v2' }, weight: 3 },
      { address: '10.0.0.3', port: 9080, labels: { app: 'reviews', version: 'v3' }, weight: 1 },
    ],
    loadBalancer: { simple: 'LEAST_REQUEST' },
    connectionPool: {},
    // Istio auto mTLS: a .svc.cluster.local host is a mesh service (endpoints without service accounts:
    // any SPIFFE id); these endpoints have no sidecar label, so they get plaintext.
    tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [], auto: true },
  });
  const v2 = config.clusters[`outbound|9080|v2|${REVIEWS}`]!;
  assert.is(v2.subset, 'v2');
  assert.equal(v2.endpoints.map((e) => e.address), ['10.0.0.2']);
  assert.equal(config.clusters[`outbound|9080|v3|${REVIEWS}`]!.endpoints.map((e) => e.address), ['10.0.0.3']);
});

test('clusters: protocols from the port (declared or by name), TCP and HTTPS ports get tcp clusters, targetPort and h2 upgrade apply', () => {
  const config = translate([
    serviceEntry('multi', {
      hosts: ['multi.example.com'],
      resolution: 'DNS',
      ports: [
        { number: 80, name: 'web', protocol: 'HTTP', targetPort: 8080 },
        { number: 81, name: 'h2', protocol: 'HTTP2' },
        { number: 82, name: 'rpc', protocol: 'GRPC' },
        { number: 83, name: 'grpc-api' },
        { number: 84, name: 'http2-x' },
        { number: 85, name: 'db', protocol: 'TCP' },
        { number: 443, name: 'https', protocol: 'HTTPS' },
        { number: 86, name: 'legacy' },
      ],
    }),
    destinationRule('multi', {
      host: 'multi.example.com',
      trafficPolicy: { portLevelSettings: [{ port: { number: 86 }, connectionPool: { http: { h2UpgradePolicy: 'UPGRADE' } } }] },
    }),
  ]);
  const protocols = Object.fromEntries(Object.values(config.clusters).map((c) => [c.port, c.protocol]));
  assert.equal(protocols, { 80: 'http1', 81: 'http2', 82: 'grpc', 83: 'grpc', 84: 'http2', 85: 'tcp', 86: 'http2', 443: 'tcp' });
  // DNS without endpoints: the host itself, on the target port.
  assert.equal(config.clusters['outbound|80||multi.example.com']!.endpoints, [{ address: 'multi.example.com', port: 8080, labels: {}, weight: 1 }]);
});

test('load balancing: LEAST_REQUEST by default; rule, subset and port-level policies override in Istio order', () => {
  const config = translate([
    serviceEntry('lb', {
      hosts: ['lb.example.com'],
      resolution: 'DNS',
      ports: [
        { number: 80, name: 'http' },
        { number: 8080, name: 'http-alt' },
      ],
    }),
    destinationRule('lb', {
      host: 'lb.example.com',
      trafficPolicy: {
        loadBalancer: { simple: 'ROUND_ROBIN' },
        connectionPool: { tcp: { maxConnections: 10 } },
        portLevelSettings: [{ port: { number: 8080 }, loadBalancer: { simple: 'RANDOM' } }],
      },
      subsets: [
        { name: 'sticky', trafficPolicy: { loadBalancer: { consistentHash: { httpCookie: { name: 'u', path: '/', ttl: '1.5s' }, minimumRingSize: 2048 } } } },
        { name: 'old', trafficPolicy: { loadBalancer: { simple: 'LEAST_CONN' } } },
        { name: 'plain' },
      ],
    }),
  ]);
  const lb = (name: string) => config.clusters[name]!.loadBalancer;
  assert.equal(lb('outbound|80||lb.example.com'), { simple: 'ROUND_ROBIN' });
  // Port-level settings replace the whole policy for that port (no inheritance of connectionPool).
  assert.equal(lb('outbound|8080||lb.example.com'), { simple: 'RANDOM' });
  assert.equal(config.clusters['outbound|8080||lb.example.com']!.connectionPool, {});
  assert.equal(config.clusters['outbound|80||lb.example.com']!.connectionPool, { maxConnections: 10 });
  assert.equal(lb('outbound|80|sticky|lb.example.com'), {
    consistentHash: { httpCookie: { name: 'u', path: '/', ttlSeconds: 1.5 }, minimumRingSize: 2048 },
  });
  // The subset keeps the rule's connection pool (field-by-field override).
  assert.equal(config.clusters['outbound|80|sticky|lb.example.com']!.connectionPool, { maxConnections: 10 });
  assert.equal(lb('outbound|80|old|lb.example.com'), { simple: 'LEAST_REQUEST' });
  assert.equal(lb('outbound|80|plain|lb.example.com'), { simple: 'ROUND_ROBIN' });
  assert.equal(lb('outbound|8080|plain|lb.example.com'), { simple: 'RANDOM' });

  const defaults = translate([serviceEntry('d', { hosts: ['d.example.com'], resolution: 'DNS', ports: [{ number: 80, name: 'http' }] })]);
  assert.equal(defaults.clusters['outbound|80||d.example.com']!.loadBalancer, { simple: 'LEAST_REQUEST' });
});

test('resolution NONE is passthrough whatever the rule says', () => {
  const config = translate([
    serviceEntry('ext', { hosts: ['*.example.com'], resolution: 'NONE', ports: [{ number: 80, name: 'http' }] }),
    destinationRule('ext', { host: '*.example.com', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }),
  ]);
  const c = config.clusters['outbound|80||*.example.com']!;
  assert.equal(c.loadBalancer, { simple: 'PASSTHROUGH' });
  assert.equal(c.endpoints, []);
});

test('connection pool: Istio fields map to ours, durations in ms, zero means unset', () => {
  const config = translate(
    reviewsMesh(
      destinationRule('reviews-pool', {
        host: REVIEWS,
        trafficPolicy: {
          connectionPool: {
            tcp: { maxConnections: 0, connectTimeout: '250ms', idleTimeout: '2m' },
            http: { http1MaxPendingRequests: 7, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: '30s' },
          },
          outlierDetection: { consecutive5xxErrors: 3, interval: '5s', baseEjectionTime: '1m', maxEjectionPercent: 20 },
          tls: { mode: 'ISTIO_MUTUAL', sni: 'reviews' },
        },
      }),
    ).filter((o) => (o as { metadata: { name: string } }).metadata.name !== 'reviews' || (o as { kind: string }).kind !== 'DestinationRule'),
  );
  assert.equal(config.clusters[`outbound|9080||${REVIEWS}`]!.connectionPool, {
    connectTimeoutMs: 250,
    maxRequestsPerConnection: 1,
    idleTimeoutMs: 30_000,
    http1MaxPendingRequests: 7,
    http2MaxRequests: 100,
    // TCP proxying's own idle timeout (tcp.idleTimeout).
    tcpIdleTimeoutMs: 120_000,
  });
});

test('a fully qualified destination without ServiceEntry gets a DNS cluster of its own', () => {
  const config = translate([
    virtualService('api', { hosts: ['api.example.com'], http: [{ route: [{ destination: { host: 'api.example.com', port: { number: 8443 } } }] }] }),
  ]);
  assert.equal(config.clusters['outbound|8443||api.example.com']!.endpoints, [{ address: 'api.example.com', port: 8443, labels: {}, weight: 1 }]);
  assert.equal(config.virtualHosts.map((v) => [v.name, v.domains]), [['api.example.com', ['api.example.com']]]);
});

// ---------------------------------------------------------------------------------------------
// Routes

test('a weighted split becomes weighted destinations on subset clusters', () => {
  const config = translate(
    reviewsMesh(
      virtualService('reviews', {
        hosts: ['reviews'],
        http: [
          {
            name: 'canary',
            route: [
              { destination: { host: 'reviews', subset: 'v1' }, weight: 90 },
              {
                destination: { host: 'reviews', subset: 'v2' },
                weight: 10,
                headers: { request: { set: { 'x-canary': '1' } }, response: { add: { 'x-served-by': 'v2' }, remove: ['server'] } },
              },
            ],
          },
        ],
      }),
    ),
  );
  assert.equal(routesOf(config, REVIEWS), [
    {
      name: 'reviews.default/canary',
      match: [],
      action: {
        kind: 'forward',
        destinations: [
          { cluster: `outbound|9080|v1|${REVIEWS}`, weight: 90 },
          {
            cluster: `outbound|9080|v2|${REVIEWS}`,
            weight: 10,
            requestHeaders: { set: { 'x-canary': '1' } },
            responseHeaders: { add: { 'x-served-by': 'v2' }, remove: ['server'] },
          },
        ],
        timeoutMs: 0,
        retry: DEFAULT_RETRY,
      },
    },
  ]);
});

test('matches: uri, method, authority, headers (lowercased, presence), withoutHeaders, query, port', () => {
  const config = translate(
    reviewsMesh(
      virtualService('reviews', {
        hosts: ['reviews'],
        http: [
          {
            match: [
              {
                name: 'api',
                uri: { prefix: '/api/' },
                method: { exact: 'GET' },
                authority: { regex: 'reviews(\\..*)?' },
                headers: { 'End-User': { exact: 'jason' }, 'x-debug': {} },
                withoutHeaders: { 'x-skip': {}, 'x-env': { prefix: 'test' } },
                queryParams: { v: { regex: '[0-9]+' }, preview: {} },
                port: 9080,
              },
              { uri: { exact: '/' } },
            ],
            route: [{ destination: { host: 'reviews', subset: 'v3' } }],
          },
        ],
      }),
    ),
  );
  assert.equal(routesOf(config, REVIEWS)[0]!.match, [
    {
      name: 'api',
      uri: { prefix: '/api/' },
      method: { exact: 'GET' },
      authority: { regex: 'reviews(\\..*)?' },
      headers: { 'end-user': { exact: 'jason' }, 'x-debug': { present: true } },
      withoutHeaders: { 'x-skip': { present: true }, 'x-env': { prefix: 'test' } },
      queryParams: { v: { regex: '[0-9]+' }, preview: { present: true } },
      port: 9080,
    },
    { uri: { exact: '/' } },
  ]);
});

test('ignoreUriCase turns exact and prefix into case-insensitive anchored regexes; regex is unchanged', () => {
  const config = translate(
    reviewsMesh(
      virtualService('reviews', {
        hosts: ['reviews'],
        http: [
          {
            match: [
              { uri: { exact: '/Reviews/1.0' }, ignoreUriCase: true },
              { uri: { prefix: '/API/' }, ignoreUriCase: true },
              { uri: { regex: '/[a-z]+' }, ignoreUriCase: true },
            ],
            route: [{ destination: { host: 'reviews' } }],
          },
        ],
      }),
    ),
  );
  const [exact, prefix, regex] = routesOf(config, REVIEWS)[0]!.match.map((m) => m.uri as { regex: string });
  assert.is(exact!.regex, '^/[rR][eE][vV][iI][eE][wW][sS]/1\\.0$');
  const re = new RegExp(exact!.regex);
  assert.ok(re.test('/REVIEWS/1.0') && re.test('/reviews/1.0'));
  assert.not.ok(re.test('/reviews/1x0') || re.test('/reviews/1.0/x'));
  assert.ok(new RegExp(prefix!.regex).test('/api/v1/things'));
  assert.not.ok(new RegExp(prefix!.regex).test('/v1/api/'));
  assert.equal(regex, { regex: '/[a-z]+' });
});

test('sourceLabels: matches for other workloads are dropped, and a rule left without matches too', () => {
  const vs = virtualService('reviews', {
    hosts: ['reviews'],
    http: [
      { name: 'from-v2', match: [{ sourceLabels: { app: 'productpage', version: 'v2' } }], route: [{ destination: { host: 'reviews', subset: 'v2' } }] },
      {
        name: 'mixed',
        match: [{ sourceLabels: { app: 'ratings' }, uri: { prefix: '/a' } }, { sourceLabels: { app: 'productpage' }, uri: { prefix: '/b' } }],
        route: [{ destination: { host: 'reviews', subset: 'v3' } }],
      },
      { name: 'rest', route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    ],
  });
  const routes = routesOf(translate(reviewsMesh(vs)), REVIEWS);
  assert.equal(routes.map((r) => r.name), ['reviews.default/mixed', 'reviews.default/rest']);
  assert.equal(routes[0]!.match, [{ uri: { prefix: '/b' } }]);
  const v2 = { ...productpage, labels: { app: 'productpage', version: 'v2' } };
  assert.equal(routesOf(translate(reviewsMesh(vs), v2), REVIEWS).map((r) => r.name), [
    'reviews.default/from-v2',
    'reviews.default/mixed',
    'reviews.default/rest',
  ]);
});

test('rewrites, redirects, direct responses, header operations and timeouts', () => {
  const config = translate(
    reviewsMesh(
      virtualService('reviews', {
        hosts: ['reviews'],
        http: [
          { name: 'moved', match: [{ uri: { prefix: '/old' } }], redirect: { uri: '/new', authority: 'reviews.example.com', scheme: 'https', port: 8443, redirectCode: 302 } },
          { match: [{ uri: { prefix: '/gone' } }], redirect: { uri: '/' } },
          { name: 'health', match: [{ uri: { exact: '/healthz' } }], directResponse: { status: 204 } },
          { name: 'teapot', match: [{ uri: { exact: '/tea' } }], directResponse: { status: 418, body: { string: "I'm a teapot" } } },
          {
            name: 'api',
            match: [{ uri: { prefix: '/api/v1/' } }],
            rewrite: { uri: '/', authority: 'reviews-internal' },
            timeout: '1.5s',
            headers: { request: { set: { 'x-api': 'v1' }, add: { via: 'wasmesh' }, remove: ['cookie'] }, response: { remove: ['x-internal'] } },
            route: [{ destination: { host: 'reviews', port: { number: 9080 } } }],
          },
        ],
      }),
    ),
  );
  const routes = routesOf(config, REVIEWS);
  assert.equal(routes.map((r) => r.name), ['reviews.default/moved', 'reviews.default/1', 'reviews.default/health', 'reviews.default/teapot', 'reviews.default/api']);
  assert.equal(routes[0]!.action, { kind: 'redirect', uri: '/new', authority: 'reviews.example.com', scheme: 'https', port: 8443, status: 302 });
  assert.equal(routes[1]!.action, { kind: 'redirect', uri: '/', status: 301 });
  assert.equal(routes[2]!.action, { kind: 'direct', status: 204 });
  assert.equal(routes[3]!.action, { kind: 'direct', status: 418, body: "I'm a teapot" });
  assert.equal(routes[4], {
    name: 'reviews.default/api',
    match: [{ uri: { prefix: '/api/v1/' } }],
    action: {
      kind: 'forward',
      destinations: [{ cluster: `outbound|9080||${REVIEWS}`, weight: 100 }],
      rewriteUri: '/',
      rewriteAuthority: 'reviews-internal',
      timeoutMs: 1500,
      retry: DEFAULT_RETRY,
    },
    requestHeaders: { set: { 'x-api': 'v1' }, add: { via: 'wasmesh' }, remove: ['cookie'] },
    responseHeaders: { remove: ['x-internal'] },
  });
});

test('retries and mirror are translated; other features do not break translation', () => {
  const config = translate(
    reviewsMesh(
      virtualService('reviews', {
        hosts: ['reviews'],
        http: [
          {
            route: [{ destination: { host: 'reviews', subset: 'v1' } }],
            retries: { attempts: 3, perTryTimeout: '2s', retryOn: '5xx', retryRemoteLocalities: true },
            fault: { delay: { fixedDelay: '7s', percentage: { value: 10 } }, abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 1 } } },
            mirror: { host: 'reviews', subset: 'v2' },
            mirrorPercentage: { value: 5 },
          },
        ],
      }),
      { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default' }, spec: { mtls: { mode: 'STRICT' } } },
      { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-all' }, spec: {} },
    ),
  );
  assert.equal(routesOf(config, REVIEWS)[0]!.action, {
    kind: 'forward',
    destinations: [{ cluster: `outbound|9080|v1|${REVIEWS}`, weight: 100 }],
    timeoutMs: 0,
    retry: { attempts: 3, perTryTimeoutMs: 2000, retryOn: ['5xx'], retriableStatusCodes: [503] },
    mirror: { cluster: `outbound|9080|v2|${REVIEWS}`, percentage: 5 },
  });
});

// ---------------------------------------------------------------------------------------------
// Virtual hosts

test('virtual hosts: one per service host with its short names; default route without a VirtualService', () => {
  const config = translate([...reviewsMesh(), k8sService('ratings', [{ address: '10.0.0.9' }], {}, 'prod')]);
  assert.equal(
    config.virtualHosts.map((v) => [v.name, v.domains]),
    [
      ['ratings.prod.svc.cluster.local', ['ratings.prod.svc.cluster.local', 'ratings.prod.svc', 'ratings.prod']],
      [REVIEWS, [REVIEWS, 'reviews.default.svc', 'reviews.default', 'reviews']],
    ],
  );
  assert.equal(routesOf(config, REVIEWS), [
    { name: `${REVIEWS}/default`, match: [], action: { kind: 'forward', destinations: [{ cluster: `outbound|9080||${REVIEWS}`, weight: 100 }], timeoutMs: 0, retry: DEFAULT_RETRY } },
  ]);
});

test('virtual hosts: several HTTP ports get one default route per port; TCP-only services none (their ports are L4 routes)', () => {
  const config = translate([
    serviceEntry('two', { hosts: ['two.example.com'], resolution: 'DNS', ports: [{ number: 80, name: 'http' }, { number: 8080, name: 'http-admin' }, { number: 5432, name: 'tcp-db' }] }),
    serviceEntry('db', { hosts: ['db.example.com'], resolution: 'DNS', ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }] }),
  ]);
  assert.equal(config.virtualHosts.map((v) => v.name), ['two.example.com']);
  assert.equal(
    routesOf(config, 'two.example.com').map((r) => [r.name, r.match]),
    [
      ['two.example.com/default:80', [{ port: 80 }]],
      ['two.example.com/default:8080', [{ port: 8080 }]],
    ],
  );
  assert.equal(Object.keys(config.clusters).sort(), ['outbound|80||two.example.com', 'outbound|8080||two.example.com', 'outbound|5432||db.example.com', 'outbound|5432||two.example.com'].sort());
  // Port 5432 of both services: one L4 port, db's default route first (registry order), then two's.
  assert.equal(config.tcp!.outbound.map((p) => [p.port, p.tcpRoutes.map((r) => r.name)]), [[5432, ['db.example.com/default', 'two.example.com/default']]]);
});

test('virtual hosts: a VirtualService host without ServiceEntry gets its own; gateway-only VirtualServices are ignored', () => {
  const config = translate(
    reviewsMesh(
      virtualService('bookinfo', {
        hosts: ['bookinfo.example.com'],
        http: [{ match: [{ uri: { prefix: '/reviews' } }], route: [{ destination: { host: 'reviews', subset: 'v1' } }] }],
      }),
      virtualService('edge', { hosts: ['reviews'], gateways: ['bookinfo-gateway'], http: [{ directResponse: { status: 503 } }] }),
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'Gateway',
        metadata: { name: 'bookinfo-gateway', namespace: 'default' },
        spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 8080, name: 'http', protocol: 'HTTP' }, hosts: ['*'] }] },
      },
    ),
  );
  assert.equal(config.virtualHosts.map((v) => v.name), ['bookinfo.example.com', REVIEWS]);
  assert.equal(routesOf(config, 'bookinfo.example.com')[0]!.action, {
    kind: 'forward',
    destinations: [{ cluster: `outbound|9080|v1|${REVIEWS}`, weight: 100 }],
    timeoutMs: 0,
    retry: DEFAULT_RETRY,
  });
  assert.is(routesOf(config, REVIEWS)[0]!.name, `${REVIEWS}/default`);
});

test('visibility: exportTo hides ServiceEntries, VirtualServices and DestinationRules; DR workloadSelector', () => {
  const objects = [
    k8sService('secret', [{ address: '10.1.0.1' }], { exportTo: ['.'] }, 'team'),
    k8sService('shared', [{ address: '10.1.0.2', labels: { v: '1' } }], { exportTo: ['default'] }, 'team'),
    virtualService('shared', { hosts: ['shared.team.svc.cluster.local'], exportTo: ['team'], http: [{ directResponse: { status: 500 } }] }, 'team'),
    destinationRule('shared-rr', { host: 'shared.team.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } }, workloadSelector: { matchLabels: { app: 'productpage' } } }),
    destinationRule('shared-rand', { host: 'shared.team.svc.cluster.local', exportTo: ['.'], trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }, { namespace: 'team' }),
  ];
  const config = translate(objects);
  assert.equal(config.virtualHosts.map((v) => v.name), ['shared.team.svc.cluster.local']);
  assert.is(routesOf(config, 'shared.team.svc.cluster.local')[0]!.name, 'shared.team.svc.cluster.local/default');
  assert.equal(config.clusters['outbound|9080||shared.team.svc.cluster.local']!.loadBalancer, { simple: 'ROUND_ROBIN' });
  const other = translate(objects, { ...productpage, name: 'details', labels: { app: 'details' } });
  assert.equal(other.clusters['outbound|9080||shared.team.svc.cluster.local']!.loadBalancer, { simple: 'LEAST_REQUEST' });
  // exportTo is a strict list: "shared" is not visible in its own namespace, so there its
  // VirtualService (exported to team) stands alone, with a virtual host of its own.
  const inTeam = translate(objects, { ...productpage, namespace: 'team' });
  assert.equal(inTeam.virtualHosts.map((v) => v.name), ['secret.team.svc.cluster.local', 'shared.team.svc.cluster.local']);
  assert.equal(routesOf(inTeam, 'shared.team.svc.cluster.local')[0]!.action, { kind: 'direct', status: 500 });
  assert.not.ok(inTeam.clusters['outbound|9080||shared.team.svc.cluster.local']);
});

// ---------------------------------------------------------------------------------------------
// Filters

test('filters: selection by namespace, selector and root namespace', () => {
  const objects = [
    wasmPlugin('mine', { selector: { matchLabels: { app: 'productpage' } } }),
    wasmPlugin('namespace-wide', {}),
    wasmPlugin('other-app', { selector: { matchLabels: { app: 'reviews' } } }),
    wasmPlugin('other-namespace', {}, 'prod'),
    wasmPlugin('mesh-wide', {}, 'istio-system'),
    wasmPlugin('mesh-selected', { selector: { matchLabels: { version: 'v1' } } }, 'istio-system'),
  ];
  const names = translate(objects).inboundFilters.map((f) => `${f.namespace}/${f.name}`);
  assert.equal(names, ['istio-system/mesh-selected', 'istio-system/mesh-wide', 'default/mine', 'default/namespace-wide']);
});

test('filters: inbound and outbound by match mode', () => {
  const config = translate([
    wasmPlugin('none', {}),
    wasmPlugin('server', { match: [{ mode: 'SERVER' }] }),
    wasmPlugin('unset', { match: [{ ports: [{ number: 9080 }] }] }),
    wasmPlugin('client', { match: [{ mode: 'CLIENT' }] }),
    wasmPlugin('both', { match: [{ mode: 'CLIENT_AND_SERVER' }] }),
    wasmPlugin('client-and-undefined', { match: [{ mode: 'CLIENT' }, { mode: 'UNDEFINED' }] }),
  ]);
  assert.equal(config.inboundFilters.map((f) => f.name), ['both', 'client-and-undefined', 'none', 'server', 'unset']);
  assert.equal(config.outboundFilters.map((f) => f.name), ['both', 'client', 'client-and-undefined']);
});

test('filters: ordered by phase (UNSPECIFIED last), priority descending, then name', () => {
  const config = translate([
    wasmPlugin('z-router-side', {}),
    wasmPlugin('stats', { phase: 'STATS' }),
    wasmPlugin('authz-low', { phase: 'AUTHZ', priority: -5 }),
    wasmPlugin('authz-high', { phase: 'AUTHZ', priority: 100 }),
    wasmPlugin('authn', { phase: 'AUTHN' }),
    wasmPlugin('a-router-side', { phase: 'UNSPECIFIED_PHASE' }),
    wasmPlugin('b-authz', { phase: 'AUTHZ', priority: 100 }),
  ]);
  assert.equal(config.inboundFilters.map((f) => f.name), ['authn', 'authz-high', 'b-authz', 'authz-low', 'stats', 'a-router-side', 'z-router-side']);
});

test('filters: binding fields, module paths, env, CPU budgets, the VM pool and copied pluginConfig; absent budgets and pool stay absent', () => {
  const pluginConfig = { request: { 'x-a': 'b' }, list: [1, 2] };
  const objects = [
    wasmPlugin('full', {
      url: 'file://../build/full.wasm',
      sha256: 'AB'.repeat(32),
      pluginName: 'root',
      phase: 'AUTHN',
      priority: 3,
      failStrategy: 'FAIL_OPEN',
      cpuBudget: 5_000_000,
      startupCpuBudget: 30_000_000_000,
      vms: 4,
      pluginConfig,
      imagePullPolicy: 'Always',
      type: 'HTTP',
      vmConfig: { env: [{ name: 'A', value: '1' }, { name: 'EMPTY' }, { name: 'HOME_DIR', valueFrom: 'HOST' }, { name: 'MISSING', valueFrom: 'HOST' }] },
    }),
    wasmPlugin('absolute', { url: 'file:///opt/filters/abs.wasm' }),
  ];
  const docs = fromObjects(objects, 'config/mesh.yaml');
  const config = translateProxyConfig(docs, productpage, { baseDir: '/srv/wasmesh', hostEnv: { HOME_DIR: '/home/x' } });
  const [abs, full] = config.inboundFilters.slice().sort((a, b) => (a.name < b.name ? -1 : 1));
  assert.equal(full, {
    name: 'full',
    namespace: 'default',
    phase: 'AUTHN',
    priority: 3,
    url: 'file://../build/full.wasm',
    path: '/srv/wasmesh/build/full.wasm',
    sha256: 'ab'.repeat(32),
    rootId: 'root',
    vmId: 'default.full',
    pluginConfig: { request: { 'x-a': 'b' }, list: [1, 2] },
    failStrategy: 'FAIL_OPEN',
    env: { A: '1', EMPTY: '', HOME_DIR: '/home/x' },
    cpuBudget: 5_000_000,
    startupCpuBudget: 30_000_000_000,
    vms: 4,
  });
  assert.is.not(full!.pluginConfig, pluginConfig);
  assert.not.ok(Object.isFrozen(pluginConfig), 'the caller\'s object is not frozen');
  assert.equal(abs, {
    name: 'absolute',
    namespace: 'default',
    phase: 'UNSPECIFIED_PHASE',
    priority: 0,
    url: 'file:///opt/filters/abs.wasm',
    path: '/opt/filters/abs.wasm',
    rootId: '',
    vmId: 'default.absolute',
    failStrategy: 'FAIL_CLOSE',
    env: {},
  });
});

test('filters: a canary module resolves like the url; weight 0 means no canary; a bad canary url is named', () => {
  const docs = fromObjects(
    [
      wasmPlugin('canaried', { url: 'file://v1.wasm', canary: { url: 'file://v2.wasm', sha256: 'CD'.repeat(32), weight: 12.5 } }),
      wasmPlugin('idle', { url: 'file://v1.wasm', canary: { url: 'file://v2.wasm', weight: 0 } }),
    ],
    'config/mesh.yaml',
  );
  assert.ok(validateDocuments(docs, { mode: 'standalone' }).ok);
  const config = translateProxyConfig(docs, productpage, { baseDir: '/srv', telemetry: false });
  const byName = Object.fromEntries(config.inboundFilters.map((b) => [b.name, b]));
  assert.equal(byName.canaried!.canary, { url: 'file://v2.wasm', path: '/srv/config/v2.wasm', sha256: 'cd'.repeat(32), weight: 12.5 });
  assert.is(byName.idle!.canary, undefined);
  const bad = validateDocuments(fromObjects([wasmPlugin('bad', { canary: { url: 'oci://registry/x:1', weight: 5 } })]), { mode: 'standalone' });
  assert.not.ok(bad.ok);
  assert.is(bad.errors[0]!.path, '/spec/canary/url');
  const heavy = validateDocuments(fromObjects([wasmPlugin('heavy', { canary: { url: 'file://x.wasm', weight: 120 } })]), { mode: 'standalone' });
  assert.not.ok(heavy.ok);
  assert.match(heavy.errors[0]!.path, /^\/spec\/canary\/weight/);
});

test('filters: the example plugin resolves relative to its file', async () => {
  const { documents } = await readDocumentFiles([EXAMPLES]);
  const workload = { name: 'productpage-v1', namespace: 'bookinfo', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'bookinfo-productpage' };
  const config = translateProxyConfig(documents, workload, { telemetry: false });
  const plugins = config.inboundFilters.filter((b) => !b.name.startsWith('wasmesh-'));
  assert.is(plugins.length, 1);
  assert.is(plugins[0]!.path, fileURLToPath(new URL('filters/examples/add-header/build/add-header.wasm', `file://${ROOT}`)));
  assert.equal(config.outboundFilters.filter((b) => !b.name.startsWith('wasmesh-')), []);
  // The example 90/10 split.
  const canary = routesOf(config, 'reviews.bookinfo.svc.cluster.local').find((r) => r.name === 'reviews.bookinfo/canary')!;
  assert.equal(
    canary.action.kind === 'forward' && canary.action.destinations.map((d) => [d.cluster, d.weight]),
    [
      ['outbound|9080|v1|reviews.bookinfo.svc.cluster.local', 90],
      ['outbound|9080|v2|reviews.bookinfo.svc.cluster.local', 10],
    ],
  );
  // Every route points at a cluster that exists.
  for (const vh of config.virtualHosts) {
    for (const r of vh.routes) {
      if (r.action.kind !== 'forward') continue;
      for (const d of r.action.destinations) assert.ok(config.clusters[d.cluster], `${r.name} -> ${d.cluster}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Version, purity

function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reverseKeys(v)]));
  }
  return value;
}

test('version: sha256 of the canonical JSON of the rest, stable across key order', () => {
  const objects = reviewsMesh(
    virtualService('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 70 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 30 }] }] }),
    wasmPlugin('f', { pluginConfig: { b: 1, a: { d: 2, c: 3 } } }),
  );
  const a = translate(objects);
  const b = translate(objects.map(reverseKeys) as object[], { ...productpage, labels: reverseKeys(productpage.labels) as Record<string, string> });
  assert.is(a.version, b.version);
  assert.match(a.version, /^[0-9a-f]{64}$/);
  const { version, ...rest } = a;
  assert.is(version, contentVersion(rest));
  assert.is(canonicalJson(rest), canonicalJson(JSON.parse(JSON.stringify(b)) as object).replace(/"version":"[0-9a-f]+",/, ''));
  // Document order does not matter either.
  assert.is(translate([...objects].reverse()).version, a.version);
});

test('version: changes when the content changes', () => {
  const base = reviewsMesh(virtualService('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' } }] }] }));
  const v1 = translate(base).version;
  const changedRoute = reviewsMesh(virtualService('reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v2' } }] }] }));
  const changedPlugin = [...base, wasmPlugin('f', { pluginConfig: { x: 1 } })];
  const changedPluginConfig = [...base, wasmPlugin('f', { pluginConfig: { x: 2 } })];
  const versions = [v1, translate(changedRoute).version, translate(changedPlugin).version, translate(changedPluginConfig).version];
  assert.is(new Set(versions).size, 4);
  assert.is.not(translate(base, { ...productpage, serviceAccount: 'other' }).version, v1);
});

test('translation is pure: inputs untouched, output frozen, same output twice', () => {
  const objects = reviewsMesh(
    virtualService('reviews', { hosts: ['reviews'], http: [{ match: [{ headers: { 'X-User': { exact: 'a' } } }], route: [{ destination: { host: 'reviews', subset: 'v1' } }] }] }),
    wasmPlugin('f', { pluginConfig: { nested: { list: [1] } } }),
  );
  const before = structuredClone(objects);
  const docs: ConfigDocument[] = fromObjects(objects);
  const a = translateProxyConfig(docs, productpage);
  const b = translateProxyConfig(docs, productpage);
  assert.equal(objects, before);
  assert.equal(a, b);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a.clusters) && Object.isFrozen(a.virtualHosts[0]!.routes[0]!.match[0]));
  assert.ok(Object.isFrozen(a.inboundFilters[0]!.pluginConfig));
  assert.not.ok(Object.isFrozen((objects.at(-1) as { spec: { pluginConfig: object } }).spec.pluginConfig));
});

test('durations convert exactly to milliseconds', () => {
  assert.is(parseDuration('1.5s'), 1500);
  assert.is(parseDuration('100ms'), 100);
  assert.is(parseDuration('2m'), 120_000);
  assert.is(parseDuration('1h'), 3_600_000);
  assert.is(parseDuration('0.1s'), 100);
  assert.is(parseDuration('0.25m'), 15_000);
  assert.is(parseDuration('0s'), 0);
  assert.throws(() => parseDuration('1.0001s'), /millisecond precision/);
  assert.throws(() => parseDuration('1.5ms'), /millisecond precision/);
  assert.throws(() => parseDuration('25d'), /invalid duration/);
});

test('built-in filters: telemetry first on both sides, policy from AuthorizationPolicy, fault from VirtualService', async () => {
  const { documents } = await readDocumentFiles([EXAMPLES]);
  const workload = { name: 'productpage-v1', namespace: 'bookinfo', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'bookinfo-productpage' };
  const config = translateProxyConfig(documents, workload);
  assert.is(config.inboundFilters[0]!.name, 'wasmesh-telemetry');
  assert.is(config.outboundFilters[0]!.name, 'wasmesh-telemetry');
  assert.ok(config.inboundFilters[0]!.path!.endsWith('filters/telemetry/build/telemetry.wasm'));
  const withFault = fromObjects([
    ...documents.map((d) => d.value as object),
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'ratings-fault', namespace: 'bookinfo' },
      spec: { hosts: ['ratings-fault.bookinfo.svc.cluster.local'], http: [{ fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: [{ destination: { host: 'ratings.bookinfo.svc.cluster.local' } }] }] },
    },
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-delete', namespace: 'bookinfo' },
      spec: { selector: { matchLabels: { app: 'productpage' } }, action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] },
    },
  ]);
  const full = translateProxyConfig(withFault, workload);
  const policy = full.inboundFilters.find((b) => b.name === 'wasmesh-policy');
  assert.ok(policy, 'policy filter on the inbound side');
  assert.is(policy!.failStrategy, 'FAIL_CLOSE');
  assert.ok(JSON.stringify(policy!.pluginConfig).includes('deny-delete'));
  const fault = full.outboundFilters.at(-1)!;
  assert.is(fault.name, 'wasmesh-fault', 'fault runs last, just before the router');
  assert.equal(translateProxyConfig(withFault, workload, { telemetry: false }).inboundFilters.some((b) => b.name === 'wasmesh-telemetry'), false);
});

test.run();
