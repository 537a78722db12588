// The REST API through app.inject (and a real listener for the watch stream).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, readdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { stringify } from 'yaml';
import { buildApp } from '../src/app.ts';
import { TokenStore } from '../src/auth/tokens.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { Resource } from '../src/store/types.ts';
import { MAX_MODULE_BYTES } from '../../wasm/src/limits.ts';
import { filterWat, goodModule, wat2wasm } from './support/wasm.ts';

interface Ctx {
  app: FastifyInstance;
  store: MemoryStore;
  admin: string;
  viewer: string;
  proxy: string;
}

function setup(name: string) {
  const s = suite<Ctx>(name, {} as Ctx);
  s.before.each(async (ctx) => {
    ctx.store = new MemoryStore();
    const tokens = TokenStore.inMemory();
    ctx.admin = tokens.create('admin');
    ctx.viewer = tokens.create('viewer');
    ctx.proxy = tokens.create('proxy', { namespace: 'default', serviceAccount: 'reviews' });
    ctx.app = buildApp({ store: ctx.store, tokens });
    await ctx.app.ready();
  });
  s.after.each(async (ctx) => {
    await ctx.app.close();
    await ctx.store.close();
  });
  return s;
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

// ---------------------------------------------------------------------------------------------
// Fixtures: one valid resource per kind (the ServiceEntry first: the others refer to it).

const serviceEntry = (name = 'reviews', namespace = 'default') => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name, namespace },
  spec: {
    hosts: [`${name}.${namespace}.svc.cluster.local`],
    ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
    resolution: 'STATIC',
    endpoints: [{ address: '10.0.0.1', labels: { version: 'v1' } }],
  },
});
const destinationRule = (subsets = ['v1']) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: { host: 'reviews', subsets: subsets.map((s) => ({ name: s, labels: { version: s } })) },
});
const virtualService = (route: object[] = [{ destination: { host: 'reviews', subset: 'v1' } }]) => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: { hosts: ['reviews'], http: [{ route }] },
});
const workloadEntry = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name: 'reviews-v1', namespace: 'default' },
  spec: { address: '10.0.0.31', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'reviews' },
};
const wasmPlugin = (url = 'module://add-header@1.0.0') => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name: 'add-header', namespace: 'default' },
  spec: { url, phase: 'STATS', pluginConfig: { header: 'x-hello' } },
});
const peerAuthentication = {
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'default', namespace: 'default' },
  spec: { mtls: { mode: 'STRICT' } },
};
const authorizationPolicy = {
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'reviews-viewer', namespace: 'default' },
  spec: { selector: { matchLabels: { app: 'reviews' } }, action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
};

const PER_KIND: [string, Record<string, unknown> & { metadata: { name: string } }, (doc: Record<string, unknown>) => Record<string, unknown>][] = [
  ['serviceentries', serviceEntry(), (d) => ({ ...d, spec: { ...(d.spec as object), ports: [{ number: 9081, name: 'http', protocol: 'HTTP' }] } })],
  ['workloadentries', workloadEntry, (d) => ({ ...d, spec: { ...(d.spec as object), address: '10.0.0.99' } })],
  ['destinationrules', destinationRule(), (d) => ({ ...d, spec: { ...(d.spec as object), subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] } })],
  ['virtualservices', virtualService(), (d) => ({ ...d, spec: { ...(d.spec as object), http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' } }], timeout: '2s' }] } })],
  ['wasmplugins', wasmPlugin(), (d) => ({ ...d, spec: { ...(d.spec as object), priority: 10 } })],
  ['peerauthentications', peerAuthentication, (d) => ({ ...d, spec: { mtls: { mode: 'PERMISSIVE' } } })],
  ['authorizationpolicies', authorizationPolicy, (d) => ({ ...d, spec: { ...(d.spec as object), action: 'DENY' } })],
];

/** Uploads a module as add-header@1.0.0 (what wasmPlugin() names by default); returns its sha256. */
async function uploadModule(app: FastifyInstance, admin: string): Promise<string> {
  const up = await app.inject({ method: 'POST', url: '/modules?name=add-header&version=1.0.0', headers: { ...auth(admin), 'content-type': 'application/wasm' }, payload: Buffer.from(await goodModule()) });
  assert.is(up.statusCode, 201, up.body);
  return up.json<{ sha256: string }>().sha256;
}

async function seed(app: FastifyInstance, admin: string, docs: object[]): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: docs });
  assert.is(res.statusCode, 200, res.body);
}

// ---------------------------------------------------------------------------------------------

const crud = setup('api: CRUD per kind');

for (const [plural, doc, change] of PER_KIND) {
  crud(`${plural}: create, get, list, replace, delete`, async ({ app, admin }) => {
    // Routes and subsets refer to the ServiceEntry and DestinationRule: put those first.
    if (plural === 'virtualservices') await seed(app, admin, [serviceEntry(), destinationRule()]);
    if (plural === 'destinationrules') await seed(app, admin, [serviceEntry()]);
    if (plural === 'wasmplugins') await uploadModule(app, admin);
    const name = doc.metadata.name;
    const created = await app.inject({ method: 'POST', url: `/apis/${plural}`, headers: auth(admin), payload: doc });
    assert.is(created.statusCode, 201, created.body);
    const r = created.json<Resource>();
    assert.is(r.metadata.generation, 1);
    assert.ok(r.metadata.resourceVersion);

    const dup = await app.inject({ method: 'POST', url: `/apis/${plural}`, headers: auth(admin), payload: doc });
    assert.is(dup.statusCode, 409);

    const got = await app.inject({ method: 'GET', url: `/apis/${plural}/default/${name}`, headers: auth(admin) });
    assert.is(got.statusCode, 200);
    assert.equal(got.json(), r);
    // The Kind works in URLs too.
    const byKind = await app.inject({ method: 'GET', url: `/apis/${r.kind}/default/${name}`, headers: auth(admin) });
    assert.equal(byKind.json(), r);

    const list = await app.inject({ method: 'GET', url: `/apis/${plural}?namespace=default`, headers: auth(admin) });
    assert.is(list.statusCode, 200);
    assert.equal(list.json<{ items: Resource[] }>().items, [r]);
    const other = await app.inject({ method: 'GET', url: `/apis/${plural}?namespace=prod`, headers: auth(admin) });
    assert.equal(other.json<{ items: Resource[] }>().items, []);

    // Replace what GET returned (creationTimestamp included), with its resourceVersion.
    const replaced = await app.inject({ method: 'PUT', url: `/apis/${plural}/default/${name}`, headers: auth(admin), payload: change(r as never) });
    assert.is(replaced.statusCode, 200, replaced.body);
    const r2 = replaced.json<Resource>();
    assert.is(r2.metadata.generation, 2);
    assert.is(r2.metadata.creationTimestamp, r.metadata.creationTimestamp);

    const stale = await app.inject({ method: 'PUT', url: `/apis/${plural}/default/${name}`, headers: auth(admin), payload: change(r as never) });
    assert.is(stale.statusCode, 409, 'a stale resourceVersion is a conflict');
    assert.is(stale.json<{ code: string }>().code, 'WASMESH_ORCH_CONFLICT');

    if (plural !== 'serviceentries' && plural !== 'destinationrules') {
      const staleDelete = await app.inject({ method: 'DELETE', url: `/apis/${plural}/default/${name}?resourceVersion=${r.metadata.resourceVersion}`, headers: auth(admin) });
      assert.is(staleDelete.statusCode, 409);
      const deleted = await app.inject({ method: 'DELETE', url: `/apis/${plural}/default/${name}?resourceVersion=${r2.metadata.resourceVersion}`, headers: auth(admin) });
      assert.is(deleted.statusCode, 200, deleted.body);
      const gone = await app.inject({ method: 'GET', url: `/apis/${plural}/default/${name}`, headers: auth(admin) });
      assert.is(gone.statusCode, 404);
      const again = await app.inject({ method: 'DELETE', url: `/apis/${plural}/default/${name}`, headers: auth(admin) });
      assert.is(again.statusCode, 404);
    }
  });
}

crud('PUT creates (201) and takes name and namespace from the URL', async ({ app, admin, store }) => {
  const { metadata: _m, ...rest } = peerAuthentication;
  const res = await app.inject({ method: 'PUT', url: '/apis/peerauthentications/prod/default', headers: auth(admin), payload: { ...rest, metadata: {} } });
  assert.is(res.statusCode, 201, res.body);
  assert.ok(await store.get('PeerAuthentication', 'prod', 'default'));
  const mismatch = await app.inject({ method: 'PUT', url: '/apis/peerauthentications/prod/other', headers: auth(admin), payload: peerAuthentication });
  assert.is(mismatch.statusCode, 400);
  assert.equal(mismatch.json<{ errors: { path: string }[] }>().errors[0]!.path, '/metadata/name');
  const wrongKind = await app.inject({ method: 'POST', url: '/apis/virtualservices', headers: auth(admin), payload: peerAuthentication });
  assert.is(wrongKind.statusCode, 400);
  assert.is(wrongKind.json<{ errors: { path: string }[] }>().errors[0]!.path, '/kind');
});

crud('YAML bodies are accepted', async ({ app, admin }) => {
  const res = await app.inject({ method: 'POST', url: '/apis/serviceentries', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: stringify(serviceEntry()) });
  assert.is(res.statusCode, 201, res.body);
});

crud('unknown kinds and routes are 404', async ({ app, admin }) => {
  const kind = await app.inject({ method: 'GET', url: '/apis/envoyfilters', headers: auth(admin) });
  assert.is(kind.statusCode, 404);
  assert.match(kind.json<{ errors: { message: string }[] }>().errors[0]!.message, /unknown kind "envoyfilters"/);
  const route = await app.inject({ method: 'GET', url: '/nope', headers: auth(admin) });
  assert.is(route.statusCode, 404);
  const kinds = await app.inject({ method: 'GET', url: '/apis', headers: auth(admin) });
  assert.is(kinds.json<{ kinds: unknown[] }>().kinds.length, 13); // the seven Istio kinds, RequestAuthentication, RateLimitPolicy, Gateway, TLSSecret, Telemetry and MeshConfig
});

crud.run();

// ---------------------------------------------------------------------------------------------

const validation = setup('api: validation');

type Errors = { code: string; errors: { document: string; path: string; message: string }[] };

validation('an error names the document, the field path and the reason', async ({ app, admin }) => {
  await seed(app, admin, [serviceEntry(), destinationRule()]);
  const res = await app.inject({ method: 'POST', url: '/apis/virtualservices', headers: auth(admin), payload: virtualService([{ destination: { host: 'reviews', subset: 'v9' } }]) });
  assert.is(res.statusCode, 400);
  const body = res.json<Errors>();
  assert.is(body.code, 'WASMESH_ORCH_INVALID');
  assert.is(body.errors.length, 1);
  assert.match(body.errors[0]!.document, /^VirtualService default\/reviews/);
  assert.is(body.errors[0]!.path, '/spec/http/0/route/0/destination/subset');
  assert.match(body.errors[0]!.message, /subset "v9" is not defined/);
});

validation('cross-document checks see the stored state: unknown host', async ({ app, admin }) => {
  const res = await app.inject({ method: 'POST', url: '/apis/virtualservices', headers: auth(admin), payload: virtualService([{ destination: { host: 'ratings' } }]) });
  assert.is(res.statusCode, 400);
  assert.match(res.json<Errors>().errors[0]!.message, /unknown host "ratings"/);
});

validation('an unsupported field is rejected, not ignored', async ({ app, admin, store }) => {
  const doc = { ...serviceEntry(), spec: { ...serviceEntry().spec, sidecarMagic: true } };
  const res = await app.inject({ method: 'POST', url: '/apis/serviceentries', headers: auth(admin), payload: doc });
  assert.is(res.statusCode, 400);
  const e = res.json<Errors>().errors[0]!;
  assert.is(e.path, '/spec/sidecarMagic');
  assert.match(e.message, /unsupported field "sidecarMagic"/);
  assert.equal(await store.list(), []);
});

validation('weights must add up to 100', async ({ app, admin }) => {
  await seed(app, admin, [serviceEntry(), destinationRule(['v1', 'v2'])]);
  const res = await app.inject({
    method: 'POST',
    url: '/apis/virtualservices',
    headers: auth(admin),
    payload: virtualService([
      { destination: { host: 'reviews', subset: 'v1' }, weight: 50 },
      { destination: { host: 'reviews', subset: 'v2' }, weight: 40 },
    ]),
  });
  assert.is(res.statusCode, 400);
  assert.match(res.json<Errors>().errors[0]!.message, /weights add up to 90/);
});

validation('a delete that would break another resource is refused, naming it', async ({ app, admin, store }) => {
  await seed(app, admin, [serviceEntry(), destinationRule(), virtualService()]);
  const res = await app.inject({ method: 'DELETE', url: '/apis/destinationrules/default/reviews', headers: auth(admin) });
  assert.is(res.statusCode, 400);
  assert.match(res.json<Errors>().errors[0]!.document, /^VirtualService default\/reviews/);
  assert.ok(await store.get('DestinationRule', 'default', 'reviews'));
});

validation('a WasmPlugin digest must name an uploaded module', async ({ app, admin }) => {
  const bytes = await goodModule();
  const digest = '0'.repeat(64);
  const missing = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers: auth(admin), payload: wasmPlugin(`digest:sha256:${digest}`) });
  assert.is(missing.statusCode, 400);
  const e = missing.json<Errors>().errors[0]!;
  assert.is(e.path, '/spec/url');
  assert.match(e.message, /has not been uploaded/);
  const up = await app.inject({ method: 'POST', url: '/modules?name=add-header&version=1.0.0', headers: { ...auth(admin), 'content-type': 'application/wasm' }, payload: Buffer.from(bytes) });
  assert.is(up.statusCode, 201, up.body);
  const sha = up.json<{ sha256: string }>().sha256;
  const ok = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers: auth(admin), payload: wasmPlugin(`digest:sha256:${sha}`) });
  assert.is(ok.statusCode, 201, ok.body);
});

validation('errors in a YAML body name the line of the field, and a misspelt field gets a suggestion', async ({ app, admin }) => {
  const yaml = ['apiVersion: networking.istio.io/v1', 'kind: ServiceEntry', 'metadata: { name: reviews }', 'spec:', '  hosts: [reviews.example.com]', '  prots: [{ number: 80, name: http }]', ''].join('\n');
  const res = await app.inject({ method: 'POST', url: '/apply', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: yaml });
  assert.is(res.statusCode, 400, res.body);
  const e = res.json<Errors>().errors.find((x) => x.path === '/spec/prots') as { message: string; line?: number };
  assert.is(e.message, 'unsupported field "prots" (did you mean "ports"?)');
  assert.is(e.line, 6);
});

validation('a WasmPlugin managed proxies cannot load is refused at write time, naming spec.url and saying to upload', async ({ app, admin, store }) => {
  for (const [method, url] of [['POST', '/apis/wasmplugins'], ['POST', '/apply']] as const) {
    const res = await app.inject({ method, url, headers: auth(admin), payload: wasmPlugin('file:///opt/filters/add-header.wasm') });
    assert.is(res.statusCode, 400, `${url}: ${res.body}`);
    const [e, ...more] = res.json<Errors>().errors;
    assert.is(more.length, 0, res.body);
    assert.match(e!.document, /^WasmPlugin default\/add-header/);
    assert.is(e!.path, '/spec/url');
    assert.match(e!.message, /file:\/\/ modules cannot be served to managed proxies .*upload the module instead \(`wasmesh filter deploy <module\.wasm> --name NAME --version VERSION`\) and use url module:\/\/NAME@VERSION/);
  }
  // A canary too: the url a rollout would send proxies to.
  const sha = await uploadModule(app, admin);
  const canary = { ...wasmPlugin(), spec: { ...wasmPlugin().spec, canary: { url: 'file:///tmp/next.wasm', weight: 10 } } };
  const res = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers: auth(admin), payload: canary });
  assert.is(res.statusCode, 400, res.body);
  assert.is(res.json<Errors>().errors[0]!.path, '/spec/canary/url');
  assert.is(await store.get('WasmPlugin', 'default', 'add-header'), undefined, 'nothing was written');
  const ok = await app.inject({ method: 'POST', url: '/apis/wasmplugins', headers: auth(admin), payload: wasmPlugin(`digest:sha256:${sha}`) });
  assert.is(ok.statusCode, 201, ok.body);
});

validation('what the filters cannot evaluate is refused at write time with the field: a fault behind a regex match, an unknown when key', async ({ app, admin, store }) => {
  await seed(app, admin, [serviceEntry(), destinationRule()]);
  const faulty = virtualService([{ destination: { host: 'reviews', subset: 'v1' } }]) as { spec: { http: object[] } };
  faulty.spec.http = [
    { match: [{ uri: { regex: '/v[0-9]+' } }], route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    { fault: { abort: { httpStatus: 503, percentage: { value: 10 } } }, route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
  ];
  const vs = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: faulty });
  assert.is(vs.statusCode, 400, vs.body);
  assert.equal(
    vs.json<Errors>().errors.map((e) => [e.path, e.message.replace(/ \(.*$/, '')]),
    [['/spec/http/0/match/0/uri/regex', 'regex matches are not supported by the fault filter']],
  );
  const policy = { ...authorizationPolicy, spec: { ...authorizationPolicy.spec, rules: [{ when: [{ key: 'request.body', values: ['x'] }] }] } };
  const ap = await app.inject({ method: 'POST', url: '/apis/authorizationpolicies', headers: auth(admin), payload: policy });
  assert.is(ap.statusCode, 400, ap.body);
  const [e] = ap.json<Errors>().errors;
  assert.is(e!.path, '/spec/rules/0/when/0/key');
  assert.match(e!.message, 'unsupported key "request.body"');
  assert.equal(await store.list('AuthorizationPolicy'), []);
  assert.equal(await store.list('VirtualService'), []);
});

validation.run();

// ---------------------------------------------------------------------------------------------

const apply = setup('api: apply');

apply('multi-document YAML, created then configured then unchanged', async ({ app, admin, store }) => {
  const yaml = [serviceEntry(), destinationRule(), virtualService()].map((d) => stringify(d)).join('---\n');
  const headers = { ...auth(admin), 'content-type': 'application/yaml' };
  const first = await app.inject({ method: 'POST', url: '/apply', headers, payload: yaml });
  assert.is(first.statusCode, 200, first.body);
  assert.equal(first.json<{ items: { action: string }[] }>().items.map((i) => i.action), ['created', 'created', 'created']);
  assert.is((await store.list()).length, 3);
  const changed = [serviceEntry(), destinationRule(['v1', 'v2']), virtualService()].map((d) => stringify(d)).join('---\n');
  const second = await app.inject({ method: 'POST', url: '/apply', headers, payload: changed });
  assert.equal(second.json<{ items: { action: string }[] }>().items.map((i) => i.action), ['unchanged', 'configured', 'unchanged']);
});

apply('JSON array and List', async ({ app, admin, store }) => {
  const arr = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: [serviceEntry('a'), serviceEntry('b')] });
  assert.is(arr.statusCode, 200, arr.body);
  const list = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: { apiVersion: 'v1', kind: 'List', items: [serviceEntry('c')] } });
  assert.is(list.statusCode, 200, list.body);
  assert.is((await store.list('ServiceEntry')).length, 3);
  // What a list returns can be applied back.
  const got = await app.inject({ method: 'GET', url: '/apis/serviceentries', headers: auth(admin) });
  const back = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: got.json() });
  assert.is(back.statusCode, 200, back.body);
  assert.ok(back.json<{ items: { action: string }[] }>().items.every((i) => i.action === 'unchanged'));
});

apply('one bad document: nothing is written, and the error names it', async ({ app, admin, store }) => {
  const bad = { ...virtualService([{ destination: { host: 'reviews', subset: 'v1' } }]), spec: { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' } }], timeout: 'soon' }] } };
  const yaml = [serviceEntry(), destinationRule(), bad, peerAuthentication].map((d) => stringify(d)).join('---\n');
  const res = await app.inject({ method: 'POST', url: '/apply', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: yaml });
  assert.is(res.statusCode, 400);
  const errors = res.json<Errors>().errors;
  assert.is(errors.length, 1);
  assert.is(errors[0]!.document, 'VirtualService default/reviews (apply#3)');
  assert.is(errors[0]!.path, '/spec/http/0/timeout');
  assert.match(errors[0]!.message, /invalid duration "soon"/);
  assert.equal(await store.list(), [], 'nothing written');
});

apply('a stale resourceVersion in one document: 409 and nothing written', async ({ app, admin, store }) => {
  await seed(app, admin, [serviceEntry('a')]);
  const stale = { ...serviceEntry('a'), metadata: { name: 'a', namespace: 'default', resourceVersion: '999' } };
  const res = await app.inject({ method: 'POST', url: '/apply', headers: auth(admin), payload: [serviceEntry('b'), stale] });
  assert.is(res.statusCode, 409);
  assert.is(await store.get('ServiceEntry', 'default', 'b'), undefined);
});

apply('bad YAML and empty bodies are 400', async ({ app, admin }) => {
  const res = await app.inject({ method: 'POST', url: '/apply', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: 'kind: [unclosed' });
  assert.is(res.statusCode, 400);
  assert.match(res.json<Errors>().errors[0]!.message, /invalid YAML/);
  const empty = await app.inject({ method: 'POST', url: '/apply', headers: { ...auth(admin), 'content-type': 'application/yaml' }, payload: '' });
  assert.is(empty.statusCode, 400);
});

apply('the schema examples apply as one set, but for the file:// WasmPlugin, which managed proxies could never load', async ({ app, admin }) => {
  const dir = new URL('../../schemas/examples/', import.meta.url);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml')).sort();
  const texts = await Promise.all(files.map(async (f) => ({ f, text: await readFile(new URL(f, dir), 'utf8') })));
  const yaml = { ...auth(admin), 'content-type': 'application/yaml' };
  const all = await app.inject({ method: 'POST', url: '/apply', headers: yaml, payload: texts.map((t) => t.text).join('\n---\n') });
  assert.is(all.statusCode, 400, all.body);
  const errors = all.json<Errors>().errors;
  assert.is(errors.length, 1, all.body);
  assert.match(errors[0]!.document, /^WasmPlugin bookinfo\/add-header \(apply#\d+\)$/);
  assert.is(errors[0]!.path, '/spec/url');
  assert.match(errors[0]!.message, /upload the module instead \(`wasmesh filter deploy/);
  const rest = texts.filter((t) => t.f !== 'wasm-plugin.yaml').map((t) => t.text).join('\n---\n');
  const res = await app.inject({ method: 'POST', url: '/apply', headers: yaml, payload: rest });
  assert.is(res.statusCode, 200, res.body);
});

apply.run();

// ---------------------------------------------------------------------------------------------

const security = setup('api: auth');

security('health needs no token; everything else does (401)', async ({ app }) => {
  assert.is((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  const none = await app.inject({ method: 'GET', url: '/apis/virtualservices' });
  assert.is(none.statusCode, 401);
  assert.match(String(none.headers['www-authenticate']), /^Bearer/);
  assert.is(none.json<Errors>().code, 'WASMESH_ORCH_UNAUTHENTICATED');
  assert.is((await app.inject({ method: 'GET', url: '/apis/virtualservices', headers: auth('bogus') })).statusCode, 401);
  assert.is((await app.inject({ method: 'GET', url: '/apis/virtualservices', headers: { authorization: 'Basic abc' } })).statusCode, 401);
  assert.is((await app.inject({ method: 'GET', url: '/openapi.json' })).statusCode, 401);
  assert.is((await app.inject({ method: 'GET', url: '/modules' })).statusCode, 401);
  assert.is((await app.inject({ method: 'POST', url: '/apply', payload: [serviceEntry()] })).statusCode, 401);
});

security('viewer reads, cannot write (403)', async ({ app, admin, viewer }) => {
  await seed(app, admin, [serviceEntry()]);
  assert.is((await app.inject({ method: 'GET', url: '/apis/serviceentries', headers: auth(viewer) })).statusCode, 200);
  assert.is((await app.inject({ method: 'GET', url: '/apis/serviceentries/default/reviews', headers: auth(viewer) })).statusCode, 200);
  assert.is((await app.inject({ method: 'GET', url: '/modules', headers: auth(viewer) })).statusCode, 200);
  const writes = [
    { method: 'POST' as const, url: '/apis/serviceentries', payload: serviceEntry('x') },
    { method: 'PUT' as const, url: '/apis/serviceentries/default/reviews', payload: serviceEntry() },
    { method: 'DELETE' as const, url: '/apis/serviceentries/default/reviews' },
    { method: 'POST' as const, url: '/apply', payload: [serviceEntry('y')] },
    { method: 'POST' as const, url: '/modules?name=m&version=1', payload: Buffer.from([0]), headers: { 'content-type': 'application/wasm' } },
  ];
  for (const w of writes) {
    const res = await app.inject({ ...w, headers: { ...auth(viewer), ...(w.headers ?? {}) } });
    assert.is(res.statusCode, 403, `${w.method} ${w.url}`);
    assert.match(res.json<Errors>().errors[0]!.message, /viewer token cannot/);
  }
});

security('proxy fetches modules and streams, nothing else (403)', async ({ app, admin, proxy }) => {
  const bytes = await goodModule();
  const up = await app.inject({ method: 'POST', url: '/modules?name=m&version=1', headers: { ...auth(admin), 'content-type': 'application/wasm' }, payload: Buffer.from(bytes) });
  const sha = up.json<{ sha256: string }>().sha256;
  assert.is((await app.inject({ method: 'GET', url: `/modules/${sha}`, headers: auth(proxy) })).statusCode, 200);
  assert.is((await app.inject({ method: 'GET', url: '/modules', headers: auth(proxy) })).statusCode, 403);
  assert.is((await app.inject({ method: 'GET', url: '/apis/serviceentries', headers: auth(proxy) })).statusCode, 403);
  assert.is((await app.inject({ method: 'GET', url: '/apis/serviceentries/default/x', headers: auth(proxy) })).statusCode, 403);
  assert.is((await app.inject({ method: 'POST', url: '/apply', headers: auth(proxy), payload: [serviceEntry()] })).statusCode, 403);
  assert.is((await app.inject({ method: 'GET', url: '/openapi.json', headers: auth(proxy) })).statusCode, 403);
});

security.run();

// ---------------------------------------------------------------------------------------------

const modules = setup('api: modules');

const upload = (app: FastifyInstance, token: string, bytes: Uint8Array, name = 'add-header', version = '1.0.0') =>
  app.inject({ method: 'POST', url: `/modules?name=${name}&version=${version}`, headers: { ...auth(token), 'content-type': 'application/wasm' }, payload: Buffer.from(bytes) });

modules('upload, list with who and when, fetch the bytes', async ({ app, admin, viewer }) => {
  const bytes = await goodModule();
  const res = await upload(app, admin, bytes);
  assert.is(res.statusCode, 201, res.body);
  const rec = res.json<{ name: string; version: string; sha256: string; size: number; uploadedBy: string; uploadedAt: string }>();
  assert.is(rec.name, 'add-header');
  assert.is(rec.size, bytes.length);
  assert.match(rec.uploadedBy, /^admin:[0-9a-f]{12}$/);
  assert.ok(!Number.isNaN(Date.parse(rec.uploadedAt)));
  const again = await upload(app, admin, bytes);
  assert.is(again.statusCode, 200, 'the same bytes again is fine');
  const other = await upload(app, admin, await goodModule(2048));
  assert.is(other.statusCode, 409, 'a version is immutable');
  await upload(app, admin, await goodModule(2048), 'add-header', '1.1.0');
  const list = await app.inject({ method: 'GET', url: '/modules?name=add-header', headers: auth(viewer) });
  assert.equal(list.json<{ items: { version: string }[] }>().items.map((m) => m.version), ['1.0.0', '1.1.0']);
  const fetched = await app.inject({ method: 'GET', url: `/modules/${rec.sha256}`, headers: auth(viewer) });
  assert.is(fetched.statusCode, 200);
  assert.is(fetched.headers['content-type'], 'application/wasm');
  assert.equal(new Uint8Array(fetched.rawPayload), bytes);
  const missing = await app.inject({ method: 'GET', url: `/modules/${'a'.repeat(64)}`, headers: auth(viewer) });
  assert.is(missing.statusCode, 404);
  const badDigest = await app.inject({ method: 'GET', url: '/modules/xyz', headers: auth(viewer) });
  assert.is(badDigest.statusCode, 400);
});

modules('rejections say why: not wasm, missing import, no ABI marker, too large, bad name', async ({ app, admin, store }) => {
  const reason = async (bytes: Uint8Array, name?: string) => {
    const res = await upload(app, admin, bytes, name);
    assert.is(res.statusCode, 400, res.body);
    return res.json<Errors>().errors[0]!;
  };
  const notWasm = await reason(new TextEncoder().encode('hello'));
  assert.is(notWasm.document, 'module add-header@1.0.0');
  assert.match(notWasm.message, /WASMESH_WASM_NOT_WASM.*not a WebAssembly module/);
  const missingImport = await reason(await wat2wasm(filterWat({ imports: '(import "env" "launch_missiles" (func))' })));
  assert.match(missingImport.message, /env\.launch_missiles/);
  const noMarker = await reason(await wat2wasm(filterWat({ abiMarker: false })));
  assert.match(noMarker.message, /ABI version marker/);
  const big = new Uint8Array(MAX_MODULE_BYTES + 1);
  big.set([0, 97, 115, 109, 1, 0, 0, 0]);
  const tooLarge = await reason(big);
  assert.match(tooLarge.message, /over the \d+-byte limit/);
  const badName = await reason(await goodModule(), 'Bad_Name');
  assert.match(badName.message, /invalid module name/);
  const noType = await app.inject({ method: 'POST', url: '/modules?name=a&version=1', headers: { ...auth(admin), 'content-type': 'application/json' }, payload: '{}' });
  assert.is(noType.statusCode, 415);
  const noQuery = await app.inject({ method: 'POST', url: '/modules', headers: { ...auth(admin), 'content-type': 'application/wasm' }, payload: Buffer.from([0]) });
  assert.is(noQuery.statusCode, 400);
  assert.equal(await store.listModules(), []);
});

modules.run();

// ---------------------------------------------------------------------------------------------

const docs = setup('api: OpenAPI');

docs('served at /openapi.json with the routes', async ({ app, viewer }) => {
  const res = await app.inject({ method: 'GET', url: '/openapi.json', headers: auth(viewer) });
  assert.is(res.statusCode, 200);
  const spec = res.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
  assert.match(spec.openapi, /^3\./);
  for (const path of ['/apis/{kind}', '/apis/{kind}/{namespace}/{name}', '/apply', '/modules', '/modules/{sha256}', '/healthz']) {
    assert.ok(spec.paths[path], `${path} documented`);
  }
  assert.ok(spec.paths['/apis/{kind}/{namespace}/{name}']!.put);
  assert.ok(spec.paths['/apis/{kind}/{namespace}/{name}']!.delete);
});

docs.run();

// ---------------------------------------------------------------------------------------------

const watch = suite('api: watch (server-sent events over a real listener)');

interface SseEvent {
  event: string;
  data: Resource;
}

function openStream(url: string, token: string): Promise<{ events: SseEvent[]; status: number; contentType: string; close(): void }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: auth(token) }, (res) => {
      const events: SseEvent[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let at: number;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
          if (fields.event) events.push({ event: fields.event, data: JSON.parse(fields.data!) as Resource });
        }
      });
      res.on('error', () => undefined);
      resolve({ events, status: res.statusCode!, contentType: String(res.headers['content-type']), close: () => req.destroy() });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

watch('starts with the current state, then delivers changes in order', async () => {
  const store = new MemoryStore();
  const tokens = TokenStore.inMemory();
  const admin = tokens.create('admin');
  const proxy = tokens.create('proxy', { namespace: 'default', serviceAccount: 'reviews' });
  const app = buildApp({ store, tokens });
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    await seed(app, admin, [serviceEntry('a'), serviceEntry('b', 'prod')]);
    const all = await openStream(`http://127.0.0.1:${port}/apis/serviceentries?watch=true`, proxy);
    const prod = await openStream(`http://127.0.0.1:${port}/apis/serviceentries?watch=true&namespace=prod`, proxy);
    assert.is(all.status, 200);
    assert.match(all.contentType, /^text\/event-stream/);
    await until(() => all.events.length === 2 && prod.events.length === 1, 'the initial state');
    assert.equal(all.events.map((e) => `${e.event} ${e.data.metadata.name}`), ['ADDED a', 'ADDED b']);

    await seed(app, admin, [serviceEntry('c')]);
    const changed = { ...serviceEntry('a'), spec: { ...serviceEntry('a').spec, ports: [{ number: 81, name: 'http', protocol: 'HTTP' }] } };
    await app.inject({ method: 'PUT', url: '/apis/serviceentries/default/a', headers: auth(admin), payload: changed });
    await app.inject({ method: 'DELETE', url: '/apis/serviceentries/prod/b', headers: auth(admin) });
    await app.inject({ method: 'POST', url: '/apis/peerauthentications', headers: auth(admin), payload: peerAuthentication });
    await until(() => all.events.length === 5 && prod.events.length === 2, 'the changes');
    assert.equal(all.events.slice(2).map((e) => `${e.event} ${e.data.metadata.name}`), ['ADDED c', 'MODIFIED a', 'DELETED b']);
    assert.is(all.events[3]!.data.metadata.generation, 2);
    assert.equal(prod.events.map((e) => e.event), ['ADDED', 'DELETED']);

    const viewerless = await openStream(`http://127.0.0.1:${port}/apis/serviceentries?watch=true`, 'bogus');
    assert.is(viewerless.status, 401);
    viewerless.close();
    all.close();
    // The server notices the client went away and stops watching; closing the app ends the rest.
  } finally {
    await app.close();
  }
});

watch.run();
