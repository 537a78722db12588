// Bounded fuzzing of the orchestrator's REST API (app.inject on the real app: SQLite store, token
// store, CA): valid and mutated documents, malformed JSON and YAML, oversized and deeply nested
// bodies, every route with random methods, paths, query strings, tokens and bodies. Every answer
// must be 2xx for valid input and 4xx with a reason otherwise — never 5xx, never a crash — and a
// refused request must leave the store exactly as it was (a multi-document apply is all or nothing).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { stringify } from 'yaml';
import { buildApp } from '../../../orchestrator/src/app.ts';
import { TokenStore } from '../../../orchestrator/src/auth/tokens.ts';
import { CertificateAuthority } from '../../../orchestrator/src/certs/ca.ts';
import { SqliteStore } from '../../../orchestrator/src/store/sqlite-store.ts';
import { INPUT_LIMITS } from '../../../mesh/src/input-limits.ts';
import { versionModule } from '../../../wasm/test/support/version-module.ts';
import { clip, fuzz, type Random } from './support/fuzz.ts';
import { billionLaughs, examples, managedExamples, mutateText, mutateValue, nested, ODD_STRINGS, randomString, randomValue } from './support/mutate.ts';

interface Ctx {
  dir: string;
  app: FastifyInstance;
  store: SqliteStore;
  tokens: { admin: string; viewer: string; proxy: string };
  log: string[];
  wasm: Uint8Array;
}

const test = suite<Ctx>('REST API fuzz', {} as Ctx);

test.before(async (ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-rest-fuzz-'));
  ctx.store = new SqliteStore({ dataDir: ctx.dir });
  const tokens = TokenStore.inMemory();
  ctx.tokens = { admin: tokens.create('admin'), viewer: tokens.create('viewer'), proxy: tokens.create('proxy', { namespace: 'bookinfo', serviceAccount: 'reviews' }) };
  ctx.log = [];
  const ca = await CertificateAuthority.open({ dir: join(ctx.dir, 'ca') });
  ctx.app = buildApp({ store: ctx.store, tokens, ca, logStream: { write: (line: string) => ctx.log.push(line) } });
  await ctx.app.ready();
  ctx.wasm = await versionModule('fuzz');
});

test.after(async (ctx) => {
  await ctx.app.close();
  await ctx.store.close();
  rmSync(ctx.dir, { recursive: true, force: true });
});

const { texts } = examples();
const EXAMPLES = managedExamples();
const KINDS = ['virtualservices', 'VirtualService', 'destinationrules', 'serviceentries', 'workloadentries', 'wasmplugins', 'peerauthentications', 'authorizationpolicies', 'nosuchkinds', ''];
const CONTENT_TYPES = ['application/json', 'application/yaml', 'text/yaml', 'application/wasm', 'application/octet-stream', 'text/plain', 'application/json; charset=utf-8', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', '*/*', 'garbage'];
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'] as const;

async function snapshot(ctx: Ctx): Promise<string> {
  return JSON.stringify({ resources: await ctx.store.list(), revision: await ctx.store.revision(), modules: await ctx.store.listModules() });
}

function yamlOf(docs: readonly unknown[]): string {
  return docs.map((d) => stringify(d, { aliasDuplicateObjects: false })).join('---\n');
}

/** Percent-encoding that takes lone surrogates too (as U+FFFD), so the generator never throws. */
function enc(text: string): string {
  return encodeURIComponent(text.replace(/[\ud800-\udfff]/g, '\ufffd'));
}

function segment(r: Random): string {
  const choice = r.int(6);
  if (choice === 0) return enc(r.pick(ODD_STRINGS)) || 'x';
  if (choice === 1) return enc(randomString(r, 1 + r.int(30))) || 'x';
  if (choice === 2) return r.pick(['bookinfo', 'default', 'reviews', 'ratings', 'productpage', 'add-header']);
  if (choice === 3) return r.pick(['%', '%zz', '%c0%ae', '..', '.', '%2e%2e', '%00', 'a'.repeat(2000)]);
  if (choice === 4) return 'a'.repeat(64).replace(/a/g, () => '0123456789abcdef'[r.int(16)]!);
  return String(r.int(100));
}

function randomPath(r: Random): string {
  const templates = [
    () => '/apis',
    () => `/apis/${r.pick(KINDS)}`,
    () => `/apis/${r.pick(KINDS)}/${segment(r)}/${segment(r)}`,
    () => `/apis/${r.pick(KINDS)}/${segment(r)}/${segment(r)}/${segment(r)}`,
    () => '/apply',
    () => '/modules',
    () => `/modules/${segment(r)}`,
    () => '/proxy-status',
    () => `/filters/${segment(r)}/${segment(r)}`,
    () => `/filters/${segment(r)}/${segment(r)}/${r.pick(['rollback', 'rollout', 'x'])}`,
    () => `/ca/${r.pick(['trust-bundle', 'rotate', 'retire', 'x'])}`,
    () => '/healthz',
    () => '/openapi.json',
    () => `/${segment(r)}`,
    () => `//${segment(r)}//${segment(r)}`,
  ];
  return r.pick(templates)();
}

function randomQuery(r: Random): string {
  if (r.chance(0.5)) return '';
  const keys = ['namespace', 'name', 'version', 'resourceVersion', 'watch', 'x', '__proto__', 'name[]', 'a.b', ''];
  const pairs = Array.from({ length: 1 + r.int(4) }, () => {
    const key = r.pick(keys);
    // watch=true streams forever (a real listener is the way to test that); anything else is fair.
    const value = key === 'watch' ? r.pick(['false', 'maybe', '', '2']) : enc(r.chance(0.5) ? r.pick(ODD_STRINGS) : randomString(r, r.int(20)));
    return `${key}=${value}`;
  });
  return `?${pairs.join(r.chance(0.1) ? ';' : '&')}`;
}

function randomAuth(r: Random, ctx: Ctx): Record<string, string> {
  switch (r.int(6)) {
    case 0:
      return {};
    case 1:
      return { authorization: `Bearer ${r.pick([randomString(r, 10).replace(/[^\x21-\x7e]/g, 'x'), 'x'.repeat(5000), ctx.tokens.admin.slice(0, -1)])}` };
    case 2:
      return { authorization: r.pick(['Basic YTpi', 'Bearer', 'bearer  ', `Bearer ${ctx.tokens.admin} extra`]) };
    case 3:
      return { authorization: `Bearer ${ctx.tokens.viewer}` };
    case 4:
      return { authorization: `Bearer ${ctx.tokens.proxy}` };
    default:
      return { authorization: `Bearer ${ctx.tokens.admin}` };
  }
}

interface Case {
  request: InjectOptions;
  /** What the answer must be: ok (2xx), refused (4xx), or either. */
  expect: 'ok' | 'refused' | 'any';
}

const OVERSIZED = 'x'.repeat(INPUT_LIMITS.maxTextBytes + 1);

function makeCase(r: Random, ctx: Ctx): Case {
  const admin = { authorization: `Bearer ${ctx.tokens.admin}` };
  const roll = r.next();
  if (roll < 0.1) {
    // The examples as they are: valid, so applied (created, configured or unchanged).
    const asYaml = r.chance(0.5);
    return { expect: 'ok', request: { method: 'POST', url: '/apply', headers: { ...admin, 'content-type': asYaml ? 'application/yaml' : 'application/json' }, payload: asYaml ? yamlOf(EXAMPLES) : JSON.stringify(r.chance(0.5) ? EXAMPLES : { apiVersion: 'v1', kind: 'List', items: EXAMPLES }) } };
  }
  if (roll < 0.4) {
    // The examples with one document mutated: applied if still valid, else refused as a whole.
    const docs = [...EXAMPLES];
    const at = r.int(docs.length);
    docs[at] = mutateValue(r, docs[at]) as Record<string, unknown>;
    const asYaml = r.chance(0.4);
    return { expect: 'any', request: { method: 'POST', url: '/apply', headers: { ...admin, 'content-type': asYaml ? 'application/yaml' : 'application/json' }, payload: asYaml ? yamlOf(docs) : JSON.stringify(docs) } };
  }
  if (roll < 0.5) {
    // Valid documents and one that can never be applied, anywhere in the batch: nothing applies.
    const bad = r.pick<() => string | Record<string, unknown>>([
      () => billionLaughs(`bomb${r.int(1000)}`),
      () => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'deep', namespace: 'default' }, spec: nested(100) }),
      () => ({ apiVersion: 'x/v1', kind: 'NoSuchKind', metadata: { name: 'x' }, spec: {} }),
      () => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'big', namespace: 'default' }, spec: { hosts: ['x'.repeat(1_100_000)] } }),
      () => ({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'no-host', namespace: 'bookinfo' }, spec: {} }),
    ])();
    const docs: unknown[] = [...EXAMPLES];
    docs.splice(r.int(docs.length + 1), 0, typeof bad === 'string' ? { __yaml: bad } : bad);
    const payload = docs.map((d) => ((d as { __yaml?: string }).__yaml ? (d as { __yaml: string }).__yaml : stringify(d, { aliasDuplicateObjects: false }))).join('---\n');
    return { expect: 'refused', request: { method: 'POST', url: '/apply', headers: { ...admin, 'content-type': 'application/yaml' }, payload } };
  }
  if (roll < 0.65) {
    // Malformed text, with any content type, to the routes that take bodies.
    const text = r.chance(0.5) ? mutateText(r, r.pick(texts)) : mutateText(r, JSON.stringify(r.chance(0.5) ? EXAMPLES : r.pick(EXAMPLES)));
    const url = r.pick(['/apply', `/apis/${r.pick(KINDS)}`, `/apis/${r.pick(KINDS)}/bookinfo/reviews`]);
    const method = url === '/apply' || !url.endsWith('reviews') ? 'POST' : 'PUT';
    return { expect: 'any', request: { method, url, headers: { ...admin, 'content-type': r.pick(CONTENT_TYPES) }, payload: text } };
  }
  if (roll < 0.68) {
    // Past the body limit.
    return { expect: 'refused', request: { method: 'POST', url: '/apply', headers: { ...admin, 'content-type': r.pick(['application/json', 'application/yaml']) }, payload: OVERSIZED } };
  }
  if (roll < 0.72) {
    // Deeply nested JSON or YAML.
    const depth = r.pick([70, 1000, 100_000]);
    const yaml = r.chance(0.5);
    const payload = yaml ? `${'- '.repeat(depth)}x` : `${'{"a":['.repeat(depth / 2)}1${']}'.repeat(depth / 2)}`;
    return { expect: 'refused', request: { method: r.pick(['POST', 'PUT']), url: r.pick(['/apply', '/apis/virtualservices/default/x', '/filters/default/x/rollout']), headers: { ...admin, 'content-type': yaml ? 'application/yaml' : 'application/json' }, payload } };
  }
  if (roll < 0.77) {
    // Module uploads: real module bytes, mangled, or noise.
    const bytes = r.chance(0.3) ? ctx.wasm : r.chance(0.5) ? mangle(r, ctx.wasm) : Buffer.from(randomString(r, r.int(200)));
    const query = r.chance(0.8) ? `?name=${enc(r.pick(['fuzz', 'a b', '', ...ODD_STRINGS]))}&version=${enc(r.pick(['1.0.0', '1', 'v1', '', ...ODD_STRINGS]))}` : randomQuery(r);
    return { expect: 'any', request: { method: 'POST', url: `/modules${query}`, headers: { ...admin, 'content-type': r.pick(['application/wasm', 'application/octet-stream', 'application/json']) }, payload: Buffer.from(bytes) } };
  }
  // Any route: random method, path, query, token, headers and body.
  const method = r.pick(METHODS);
  const headers: Record<string, string> = { ...randomAuth(r, ctx) };
  if (r.chance(0.3)) headers['x-request-id'] = r.pick(['ok-1', 'a'.repeat(200), 'with space', '\u00e9']).replace(/[^\x20-\x7e]/g, '?');
  if (r.chance(0.2)) headers.accept = r.pick(['application/yaml', 'text/event-stream', '*/*', 'garbage']);
  let payload: string | undefined;
  if (method !== 'GET' && method !== 'HEAD' && r.chance(0.7)) {
    headers['content-type'] = r.pick(CONTENT_TYPES);
    payload = r.chance(0.5) ? JSON.stringify(randomValue(r)) : randomString(r, r.int(300));
  }
  return { expect: 'any', request: { method, url: randomPath(r) + randomQuery(r), headers, ...(payload === undefined ? {} : { payload }) } };
}

function mangle(r: Random, bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let n = 1 + r.int(8); n > 0; n--) out[r.int(out.length)] = r.int(256);
  return r.chance(0.3) ? out.slice(0, r.int(out.length)) : out;
}

test('random, mutated, malformed, oversized and deep requests: 2xx or 4xx with a reason, never 5xx, nothing half-applied', async (ctx) => {
  const run = await fuzz('REST API', { seed: 0x14_0a, cases: 400, budgetMs: 20_000, minCases: 100 }, async (r, _i, note) => {
    const c = makeCase(r, ctx);
    const payload = c.request.payload;
    note(`${c.request.method} ${c.request.url} ${JSON.stringify(c.request.headers)} ${typeof payload === 'string' ? JSON.stringify(payload) : payload ? `<${(payload as Buffer).length} bytes>` : ''}`);
    const before = await snapshot(ctx);
    const logged = ctx.log.length;
    const res = await ctx.app.inject(c.request);
    const where = `${res.statusCode} ${clip(res.body)}${ctx.log.length > logged ? `\n  log: ${clip(ctx.log.slice(logged).join(''), 2000)}` : ''}`;
    assert.ok(res.statusCode < 500, `a server error: ${where}`);
    assert.ok(res.statusCode >= 200, `an odd status: ${where}`);
    assert.ok(typeof res.headers['x-request-id'] === 'string' && res.headers['x-request-id'] !== '', `no x-request-id: ${where}`);
    if (c.expect === 'ok') assert.ok(res.statusCode < 300, `valid input refused: ${where}`);
    if (c.expect === 'refused') assert.ok(res.statusCode >= 400, `invalid input accepted: ${where}`);
    if (res.statusCode >= 400) {
      if (c.request.method !== 'HEAD') {
        const body = res.json() as { errors?: Array<{ message?: unknown }> };
        assert.ok(Array.isArray(body.errors) && body.errors.length > 0 && body.errors.every((e) => typeof e.message === 'string' && e.message !== ''), `a refusal without a reason: ${where}`);
      }
      assert.is(await snapshot(ctx), before, `a refused request changed the store: ${where}`);
    }
  });
  assert.ok(run.ran >= 100, `only ${run.ran} cases ran`);
  // Still healthy, and valid input still applies.
  assert.is((await ctx.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  const apply = await ctx.app.inject({ method: 'POST', url: '/apply', headers: { authorization: `Bearer ${ctx.tokens.admin}`, 'content-type': 'application/json' }, payload: JSON.stringify(EXAMPLES) });
  assert.is(apply.statusCode, 200, apply.body);
  assert.equal(ctx.log.filter((l) => /"level":50/.test(l)), [], 'nothing was logged as an error');
});

test.run();
