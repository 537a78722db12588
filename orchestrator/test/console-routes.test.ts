// The console's endpoints through app.inject: the page and its files are public and carry a strict
// Content-Security-Policy; its API needs a token; a viewer reads everything the console shows and
// cannot act (rollout, abort, rollback, apply, dry run); an admin's dry run validates and writes
// nothing; proxies carry the certificate expiry and filter chain; the graph is the proxies' traffic.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { TrafficStats } from '../src/console/traffic-stats.ts';
import { CONSOLE_CSP } from '../src/console/routes.ts';

interface Ctx {
  app: FastifyInstance;
  store: MemoryStore;
  admin: string;
  viewer: string;
  editor: string;
  proxy: string;
  now: number;
  traffic: TrafficStats;
}

const s = suite<Ctx>('console endpoints', {} as Ctx);

const REVIEWS = 'reviews.default.svc.cluster.local';
const serviceEntryYaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [${REVIEWS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1 }]
`;

const rawProxy = {
  node: 'productpage.default~h~1',
  workload: { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' },
  connectedAt: '2026-01-01T00:00:00.000Z',
  sent: { version: 'a'.repeat(64), nonce: 'n', at: '2026-01-01T00:00:01.000Z' },
  acked: 'a'.repeat(64),
  latest: 'a'.repeat(64),
  filters: { inbound: [{ plugin: 'istio-system/telemetry', phase: 'STATS' }], outbound: [{ plugin: 'default/demo-header', phase: 'UNSPECIFIED_PHASE', sha256: 'b'.repeat(64), canary: { weight: 10, sha256: 'c'.repeat(64) } }] },
};

s.before.each(async (ctx) => {
  ctx.store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  ctx.admin = tokens.create('admin');
  ctx.viewer = tokens.create('viewer');
  ctx.editor = tokens.create('editor', { namespace: 'team-a' });
  ctx.proxy = tokens.create('proxy', { namespace: 'default', serviceAccount: 'productpage' });
  ctx.now = 1_000_000;
  ctx.traffic = new TrafficStats({ now: () => ctx.now });
  ctx.app = buildApp({ store: ctx.store, tokens, rolloutLog: () => {}, traffic: ctx.traffic, proxyStatus: () => [rawProxy] });
  await ctx.app.ready();
});

s.after.each(async (ctx) => {
  await ctx.app.close();
  await ctx.store.close();
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

s('the page and its modules load without a token, with a CSP that allows this origin’s scripts only', async ({ app }) => {
  const page = await app.inject({ method: 'GET', url: '/console/' });
  assert.is(page.statusCode, 200);
  assert.match(page.headers['content-type'] as string, /^text\/html/);
  assert.is(page.headers['content-security-policy'], CONSOLE_CSP);
  assert.match(CONSOLE_CSP, /script-src 'self';/);
  assert.not.match(CONSOLE_CSP, /unsafe-inline|unsafe-eval/);
  assert.is(page.headers['x-content-type-options'], 'nosniff');
  assert.match(page.body, /<script type="module" src="\/console\/app.js">/);
  assert.not.match(page.body, /<script>[^<]/, 'no inline script');
  for (const file of ['app.js', 'api.js', 'dom.js', 'graph.js', 'style.css']) {
    const res = await app.inject({ method: 'GET', url: `/console/${file}` });
    assert.is(res.statusCode, 200, file);
  }
  assert.is((await app.inject({ method: 'GET', url: '/console' })).statusCode, 302);
  // Anything not in the folder's list is not served, whatever the path.
  for (const url of ['/console/package.json', '/console/..%2F..%2Fpackage.json', '/console/%2e%2e']) {
    assert.ok([401, 404].includes((await app.inject({ method: 'GET', url })).statusCode), url);
  }
  // The page never asks for a token in a URL.
  const js = (await app.inject({ method: 'GET', url: '/console/api.js' })).body;
  assert.match(js, /sessionStorage/);
  assert.match(js, /authorization: `Bearer/);
  assert.match(js, /credentials: 'omit'/);
});

s('the console API needs a token: 401 without, 403 for a proxy token', async ({ app, proxy }) => {
  for (const url of ['/console/api/whoami', '/console/api/graph', '/console/api/proxies', '/console/api/yaml/serviceentries']) {
    assert.is((await app.inject({ method: 'GET', url })).statusCode, 401, url);
    assert.is((await app.inject({ method: 'GET', url, headers: auth(proxy) })).statusCode, 403, url);
  }
});

s('whoami says who may act', async ({ app, admin, viewer, editor }) => {
  const v = (await app.inject({ method: 'GET', url: '/console/api/whoami', headers: auth(viewer) })).json();
  assert.equal([v.role, v.mayAct], ['viewer', false]);
  const a = (await app.inject({ method: 'GET', url: '/console/api/whoami', headers: auth(admin) })).json();
  assert.equal([a.role, a.mayAct], ['admin', true]);
  assert.ok(a.kinds.some((k: { kind: string }) => k.kind === 'WasmPlugin'));
  const e = (await app.inject({ method: 'GET', url: '/console/api/whoami', headers: auth(editor) })).json();
  assert.equal([e.role, e.namespace, e.mayAct], ['editor', 'team-a', true]);
});

s('a viewer reads every page’s data', async ({ app, admin, viewer, traffic }) => {
  await app.inject({ method: 'POST', url: '/apply', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: serviceEntryYaml });
  const yaml = await app.inject({ method: 'GET', url: '/console/api/yaml/serviceentries', headers: auth(viewer) });
  assert.is(yaml.statusCode, 200);
  const item = yaml.json().items[0];
  assert.is(item.name, 'reviews');
  assert.match(item.yaml, /^kind: ServiceEntry$/m);
  assert.match(item.yaml, new RegExp(`- ${REVIEWS.replace(/\./g, '\\.')}`));
  assert.is((await app.inject({ method: 'GET', url: '/console/api/yaml/nosuchkind', headers: auth(viewer) })).statusCode, 404);

  traffic.record(rawProxy.node, { source_namespace: 'default', source_app: 'productpage', source_version: 'v1', latency_bounds_ms: [10, 100], cert_not_after: '2030-01-01T00:00:00.000Z', edges: [{ destination_service: REVIEWS, destination_namespace: 'default', destination_app: 'reviews', destination_version: 'v1', mtls: true, requests: 0, errors: 0, client_errors: 0, latency_buckets: [0, 0, 0] }] });
  const proxies = await app.inject({ method: 'GET', url: '/console/api/proxies', headers: auth(viewer) });
  assert.is(proxies.statusCode, 200);
  const p = proxies.json().items[0];
  assert.equal([p.workload, p.status, p.certNotAfter], ['productpage', 'SYNCED', '2030-01-01T00:00:00.000Z']);
  assert.equal(p.filters.outbound[0].canary, { weight: 10, sha256: 'c'.repeat(64) });
  assert.is((await app.inject({ method: 'GET', url: '/console/api/proxies?namespace=other', headers: auth(viewer) })).json().items.length, 0);
  const graph = await app.inject({ method: 'GET', url: '/console/api/graph?window=60', headers: auth(viewer) });
  assert.is(graph.statusCode, 200);
  assert.is(graph.json().windowSeconds, 60);
  assert.is((await app.inject({ method: 'GET', url: '/console/api/graph?window=1', headers: auth(viewer) })).statusCode, 400, 'window below 5 s');
  assert.is((await app.inject({ method: 'GET', url: '/filters/default/nothing', headers: auth(viewer) })).statusCode, 404, 'reads filters (none here)');
});

s('the graph endpoint serves the proxies’ traffic, aggregated', async (ctx) => {
  const sample = (v1: number, v2: number) => ({
    source_namespace: 'default',
    source_app: 'productpage',
    source_version: 'v1',
    latency_bounds_ms: [10, 100],
    cert_not_after: '',
    edges: [
      { destination_service: REVIEWS, destination_namespace: 'default', destination_app: 'reviews', destination_version: 'v1', mtls: true, requests: v1, errors: 0, client_errors: 0, latency_buckets: [v1, 0, 0] },
      { destination_service: REVIEWS, destination_namespace: 'default', destination_app: 'reviews', destination_version: 'v2', mtls: true, requests: v2, errors: 0, client_errors: 0, latency_buckets: [0, v2, 0] },
    ],
  });
  // Two replicas of productpage: one workload node, their calls summed.
  ctx.traffic.record('pp-1', sample(0, 0));
  ctx.traffic.record('pp-2', sample(0, 0));
  ctx.now += 10_000;
  ctx.traffic.record('pp-1', sample(90, 10));
  ctx.traffic.record('pp-2', sample(180, 20));
  const g = (await ctx.app.inject({ method: 'GET', url: '/console/api/graph', headers: auth(ctx.viewer) })).json();
  assert.is(g.reporters, 2);
  const caller = g.edges.find((e: { from: string }) => e.from === 'default/productpage/v1');
  assert.is(caller.requests, 300);
  assert.is(caller.rps, 30);
  const shares = g.edges.filter((e: { share?: number }) => e.share !== undefined).map((e: { to: string; share: number }) => [e.to, e.share]);
  assert.equal(shares, [['default/reviews/v1', 0.9], ['default/reviews/v2', 0.1]]);
  // Longer windows come from the buckets: the same calls, over the 10 s since the first report.
  for (const window of [600, 3600, 21600]) {
    const long = await ctx.app.inject({ method: 'GET', url: `/console/api/graph?window=${window}`, headers: auth(ctx.viewer) });
    assert.is(long.statusCode, 200, long.body);
    const c = long.json().edges.find((e: { from: string }) => e.from === 'default/productpage/v1');
    assert.equal([long.json().windowSeconds, long.json().resolutionSeconds, c.requests, c.rps], [window, window === 600 ? 10 : 60, 300, 30]);
  }
  assert.is((await ctx.app.inject({ method: 'GET', url: '/console/api/graph?window=21601', headers: auth(ctx.viewer) })).statusCode, 400, 'past 6 h');
  const proxies = (await ctx.app.inject({ method: 'GET', url: '/console/api/proxies?window=3600', headers: auth(ctx.viewer) })).json();
  assert.is(proxies.windowSeconds, 3600);
});

s('a viewer cannot act: rollout, abort, rollback, apply and dry run are 403 and change nothing', async ({ app, viewer, store }) => {
  const attempts: Array<{ method: 'POST' | 'DELETE'; url: string; payload?: unknown; headers?: Record<string, string> }> = [
    { method: 'POST', url: '/filters/default/demo-header/rollout', payload: { to: '1.1.0' } },
    { method: 'DELETE', url: '/filters/default/demo-header/rollout' },
    { method: 'POST', url: '/filters/default/demo-header/rollback', payload: {} },
    { method: 'POST', url: '/apply', payload: serviceEntryYaml, headers: { 'content-type': 'application/yaml' } },
    { method: 'POST', url: '/apply?dryRun=true', payload: serviceEntryYaml, headers: { 'content-type': 'application/yaml' } },
  ];
  for (const a of attempts) {
    const res = await app.inject({ method: a.method, url: a.url, headers: { ...auth(viewer), ...(a.headers ?? {}) }, ...(a.payload !== undefined ? { payload: a.payload as string } : {}) });
    assert.is(res.statusCode, 403, `${a.method} ${a.url}`);
    assert.is(res.json().code, 'WASMESH_ORCH_FORBIDDEN');
  }
  assert.is((await store.list()).length, 0);
});

s('dry run: validates against the stored state, says what would change, writes nothing', async ({ app, admin, store }) => {
  const yaml = { ...auth(admin), 'content-type': 'application/yaml' };
  const ok = await app.inject({ method: 'POST', url: '/apply?dryRun=true', headers: yaml, payload: serviceEntryYaml });
  assert.is(ok.statusCode, 200, ok.body);
  assert.equal(ok.json(), { dryRun: true, items: [{ kind: 'ServiceEntry', namespace: 'default', name: 'reviews', action: 'created' }] });
  assert.is((await store.list()).length, 0, 'nothing written');
  const bad = await app.inject({ method: 'POST', url: '/apply?dryRun=true', headers: yaml, payload: serviceEntryYaml.replace('resolution: STATIC', 'resolution: SOMETIMES') });
  assert.is(bad.statusCode, 400);
  const errors = bad.json().errors as Array<{ document: string; path: string; message: string; line?: number; column?: number }>;
  // The line and column of the field in the request's text: what the editor marks.
  const resolution = errors.find((e) => e.path === '/spec/resolution');
  assert.equal([resolution?.line, resolution?.column], [7, 3], JSON.stringify(errors));
  await app.inject({ method: 'POST', url: '/apply', headers: yaml, payload: serviceEntryYaml });
  const again = await app.inject({ method: 'POST', url: '/apply?dryRun=true', headers: yaml, payload: serviceEntryYaml });
  assert.is(again.json().items[0].action, 'configured');
});

s.run();
