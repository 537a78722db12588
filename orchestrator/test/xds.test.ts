// The discovery service through a real grpc-js client: first snapshot, ACK, pushes on store changes,
// NACK handling, tokens, module fetch by digest; plus the snapshot cache's debounce and consistency
// check on their own.
import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import {
  PROXY_CONFIG_TYPE_URL,
  discoveryDefinition,
  type DiscoveryClient,
  type DiscoveryRequestInput,
  type DiscoveryResponse,
} from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { Debouncer } from '../src/snapshot/debounce.ts';
import { buildSnapshot, checkConsistency, managedDocuments } from '../src/snapshot/snapshot.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { ResourceInput } from '../src/store/types.ts';
import { BuiltinModules } from '../src/snapshot/builtin-modules.ts';
import { startXdsServer, type XdsServer } from '../src/xds/server.ts';

// ---------------------------------------------------------------------------------------------
// Fixtures

const HOST = 'reviews.default.svc.cluster.local';
const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };

const serviceEntry: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: {
    hosts: [HOST],
    location: 'MESH_INTERNAL',
    resolution: 'STATIC',
    ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
    endpoints: [
      { address: '127.0.0.1', ports: { http: 9001 }, labels: { version: 'v1' } },
      { address: '127.0.0.1', ports: { http: 9002 }, labels: { version: 'v2' } },
    ],
  },
};
const destinationRule: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
};
const virtualService = (v1: number): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: {
    hosts: [HOST],
    http: [{ route: [{ destination: { host: HOST, subset: 'v1' }, weight: v1 }, { destination: { host: HOST, subset: 'v2' }, weight: 100 - v1 }] }],
  },
});
const wasmPlugin = (sha: string): ResourceInput => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name: 'headers', namespace: 'default' },
  spec: { url: `sha256:${sha.toUpperCase()}`, match: [{ mode: 'CLIENT' }] },
});

const TOKENS: Record<string, { role: string; namespace?: string }> = {
  'proxy-default': { role: 'proxy', namespace: 'default' },
  'proxy-other': { role: 'proxy', namespace: 'other' },
  viewer: { role: 'viewer' },
};

let store: MemoryStore;
let server: XdsServer;
let client: DiscoveryClient;
const logs: string[] = [];

function metadata(token: string | null): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token !== null) md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A discovery stream whose responses queue up; next() waits for one. */
class TestStream {
  readonly call: grpc.ClientDuplexStream<DiscoveryRequestInput, DiscoveryResponse>;
  readonly responses: DiscoveryResponse[] = [];
  status: grpc.StatusObject | undefined;
  #waiters: (() => void)[] = [];

  constructor(token: string | null = 'proxy-default') {
    this.call = client.StreamResources(metadata(token));
    this.call.on('data', (r: DiscoveryResponse) => {
      this.responses.push(r);
      this.#wake();
    });
    this.call.on('error', () => {});
    this.call.on('status', (s: grpc.StatusObject) => {
      this.status = s;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  subscribe(workload: WorkloadIdentity = productpage, versionInfo = ''): void {
    this.call.write({
      node: { id: `${workload.name}-test`, workload: workload.name, namespace: workload.namespace, labels: { ...workload.labels }, service_account: workload.serviceAccount },
      type_url: PROXY_CONFIG_TYPE_URL,
      version_info: versionInfo,
    });
  }

  ack(res: DiscoveryResponse): void {
    this.call.write({ type_url: PROXY_CONFIG_TYPE_URL, version_info: res.version_info, response_nonce: res.nonce });
  }

  nack(res: DiscoveryResponse, previous: string, message: string): void {
    this.call.write({ type_url: PROXY_CONFIG_TYPE_URL, version_info: previous, response_nonce: res.nonce, error_detail: { code: 3, message } });
  }

  async next(timeoutMs = 2000): Promise<DiscoveryResponse> {
    const deadline = Date.now() + timeoutMs;
    while (this.responses.length === 0) {
      if (this.status) throw new Error(`stream ended: ${grpc.status[this.status.code]} ${this.status.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no response in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.responses.shift()!;
  }

  async ended(timeoutMs = 2000): Promise<grpc.StatusObject> {
    const deadline = Date.now() + timeoutMs;
    while (!this.status) {
      if (Date.now() > deadline) throw new Error('stream did not end');
      await new Promise((r) => setTimeout(r, 10));
    }
    return this.status;
  }

  close(): void {
    this.call.cancel();
  }
}

const configOf = (res: DiscoveryResponse): ProxyConfig => JSON.parse(Buffer.from(res.resources[0]!.body).toString('utf8')) as ProxyConfig;
const weights = (config: ProxyConfig): number[] => {
  const action = config.virtualHosts[0]!.routes[0]!.action;
  return action.kind === 'forward' ? action.destinations.map((d) => d.weight) : [];
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  store = new MemoryStore();
  await store.putAll([serviceEntry, destinationRule, virtualService(90)]);
  server = await startXdsServer({
    store,
    host: '127.0.0.1',
    port: 0,
    tokens: { verify: (t) => TOKENS[t] },
    log: (level, message) => void logs.push(`${level} ${message}`),
  });
  const { Client } = discoveryDefinition();
  client = new Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});

test.after(async () => {
  client.close();
  await server.close();
  await store.close();
});

// ---------------------------------------------------------------------------------------------
// The stream

test('the first response carries the workload snapshot, versioned by content hash', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const res = await s.next();
    assert.is(res.type_url, PROXY_CONFIG_TYPE_URL);
    assert.is(res.resources.length, 1);
    assert.is(res.resources[0]!.name, 'default/productpage');
    const modules = { stored: new Set((await store.listModules()).map((m) => m.sha256)), builtins: new BuiltinModules() };
    const built = buildSnapshot(managedDocuments(await store.list()), productpage, modules);
    assert.ok(built.ok);
    const expected = built.ok ? built.snapshot.config : undefined!;
    assert.is(res.version_info, expected.version);
    assert.is(res.resources[0]!.version, expected.version);
    assert.ok(res.nonce.length > 0);
    const config = configOf(res);
    assert.is(config.version, expected.version);
    assert.equal(weights(config), [90, 10]);
    // The built-in telemetry filter ships by digest, like an uploaded module.
    const telemetry = config.outboundFilters.find((b) => b.name === 'wasmesh-telemetry')!;
    assert.match(telemetry.url, /^digest:sha256:[0-9a-f]{64}$/);
    assert.is(telemetry.path, undefined);
    const fetched = await fetchModule(telemetry.sha256!);
    assert.is(fetched.status.code, grpc.status.OK);
    assert.is(createHash('sha256').update(Buffer.concat(fetched.chunks)).digest('hex'), telemetry.sha256);
  } finally {
    s.close();
  }
});

test('after an ACK nothing is resent; a store change arrives as a new version within a second', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const first = await s.next();
    s.ack(first);
    await sleep(400);
    assert.is(s.responses.length, 0, 'no resend after ACK');

    const t0 = Date.now();
    await store.put(virtualService(50));
    const second = await s.next(1500);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 1000, `pushed in ${elapsed} ms`);
    assert.is.not(second.version_info, first.version_info);
    assert.is.not(second.nonce, first.nonce);
    assert.equal(weights(configOf(second)), [50, 50]);
    s.ack(second);
    await sleep(300);
    assert.is(s.responses.length, 0);
    const status = server.proxies().find((p) => p.node === 'productpage-test');
    assert.is(status?.acked, second.version_info);
  } finally {
    s.close();
  }
});

test('a burst of changes is debounced into one push', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    s.ack(await s.next());
    for (const w of [11, 12, 13, 14, 15, 16]) {
      await store.put(virtualService(w));
      await sleep(20);
    }
    const res = await s.next(1500);
    assert.equal(weights(configOf(res)), [16, 84]);
    s.ack(res);
    await sleep(300);
    assert.is(s.responses.length, 0, 'one push for the burst');
  } finally {
    s.close();
  }
});

test('a NACK keeps state, the NACKed version is not resent, and the next change is sent', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const good = await s.next();
    s.ack(good);
    await store.put(virtualService(70));
    const bad = await s.next(1500);
    s.nack(bad, good.version_info, 'filter headers failed to start');
    await sleep(400);
    assert.is(s.responses.length, 0, 'NACKed version not resent');
    const status = server.proxies().find((p) => p.node === 'productpage-test')!;
    assert.is(status.acked, good.version_info, 'the proxy still runs the last good version');
    assert.is(status.nacked?.version, bad.version_info);
    assert.is(status.nacked?.message, 'filter headers failed to start');
    assert.ok(logs.some((l) => l.startsWith('warn') && l.includes('NACKed') && l.includes('filter headers failed to start')), 'NACK logged with its detail');

    await store.put(virtualService(60));
    const next = await s.next(1500);
    assert.is.not(next.version_info, bad.version_info);
    assert.equal(weights(configOf(next)), [60, 40]);
    s.ack(next);
    await sleep(100);
    assert.is(server.proxies().find((p) => p.node === 'productpage-test')!.nacked, undefined);
  } finally {
    s.close();
  }
});

test('a proxy that reconnects with the current version is not sent it again; a stale one is', async () => {
  const a = new TestStream();
  a.subscribe();
  const current = await a.next();
  a.close();
  const b = new TestStream();
  try {
    b.subscribe(productpage, current.version_info);
    await sleep(300);
    assert.is(b.responses.length, 0);
  } finally {
    b.close();
  }
  const c = new TestStream();
  try {
    c.subscribe(productpage, 'an-old-version');
    assert.is((await c.next()).version_info, current.version_info);
  } finally {
    c.close();
  }
});

test('a stale nonce is ignored', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const first = await s.next();
    s.call.write({ type_url: PROXY_CONFIG_TYPE_URL, version_info: first.version_info, response_nonce: 'not-the-nonce' });
    await store.put(virtualService(33));
    await sleep(400);
    assert.is(s.responses.length, 0, 'still waiting for the ACK of the first response');
    s.ack(first);
    assert.equal(weights(configOf(await s.next())), [33, 67]);
  } finally {
    s.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Tokens

test('a missing or unknown token is UNAUTHENTICATED, a viewer token PERMISSION_DENIED', async () => {
  for (const [token, code] of [
    [null, grpc.status.UNAUTHENTICATED],
    ['nope', grpc.status.UNAUTHENTICATED],
    ['viewer', grpc.status.PERMISSION_DENIED],
  ] as const) {
    const s = new TestStream(token);
    s.subscribe();
    const status = await s.ended();
    assert.is(status.code, code, `token ${token}`);
    assert.is(s.responses.length, 0);
  }
});

test('a proxy token bound to one namespace cannot subscribe as a workload in another', async () => {
  const s = new TestStream('proxy-other');
  s.subscribe(productpage);
  const status = await s.ended();
  assert.is(status.code, grpc.status.PERMISSION_DENIED);
  assert.match(status.details, 'namespace other');
  const ok = new TestStream('proxy-other');
  try {
    ok.subscribe({ ...productpage, namespace: 'other' });
    const res = await ok.next();
    assert.is(res.resources[0]!.name, 'other/productpage');
  } finally {
    ok.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Modules

function fetchModule(sha: string, token = 'proxy-default'): Promise<{ chunks: Buffer[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const call = client.FetchModule({ sha256: sha }, metadata(token));
    call.on('data', (c: { data: Buffer }) => chunks.push(Buffer.from(c.data)));
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => resolve({ chunks, status }));
  });
}

test('FetchModule streams the module bytes in chunks matching their sha256', async () => {
  const bytes = randomBytes(200 * 1024);
  const record = await store.putModule('big', '1.0.0', bytes, 'test');
  const { chunks, status } = await fetchModule(record.sha256);
  assert.is(status.code, grpc.status.OK);
  assert.ok(chunks.length > 1, `${chunks.length} chunks`);
  const all = Buffer.concat(chunks);
  assert.is(all.length, bytes.length);
  assert.is(createHash('sha256').update(all).digest('hex'), record.sha256);

  assert.is((await fetchModule('0'.repeat(64))).status.code, grpc.status.NOT_FOUND);
  assert.is((await fetchModule('xyz')).status.code, grpc.status.INVALID_ARGUMENT);
  assert.is((await fetchModule(record.sha256, 'nope')).status.code, grpc.status.UNAUTHENTICATED);
});

test('a WasmPlugin whose module is not uploaded denies its streams (FAIL_CLOSE) until it is; the rest of the config still arrives', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const before = await s.next();
    s.ack(before);
    const bytes = randomBytes(1024);
    const sha = createHash('sha256').update(bytes).digest('hex');
    // Written straight to the store (the API refuses it): as by an older orchestrator, or before a module was lost.
    await store.putAll([wasmPlugin(sha), virtualService(70)]);
    const held = await s.next(1500);
    s.ack(held);
    const config = configOf(held);
    assert.equal(weights(config), [70, 30], 'the route change reached the proxy');
    const standIn = config.outboundFilters.find((b) => b.name === 'headers')!;
    assert.is(standIn.rootId, 'policy', 'the policy filter stands in for the plugin');
    assert.equal(standIn.pluginConfig, { policies: [{ name: 'wasm-default-deny', namespace: 'default', action: 'DENY', rules: [{}] }] });
    assert.is(standIn.failStrategy, 'FAIL_CLOSE');
    assert.ok(held.resources.length === 1 && standIn.url === `digest:sha256:${standIn.sha256}`, 'served by digest');
    const node = server.snapshots().find((n) => n.workload.name === 'productpage' && n.workload.namespace === 'default')!;
    assert.is(node.version, held.version_info);
    assert.equal(node.errors, []);
    assert.equal(node.problems.map((p) => [p.resource, p.path]), [['WasmPlugin default/headers', '/spec/url']]);
    assert.match(node.problems[0]!.message, `module sha256:${sha} is not in the store`);
    assert.match(node.problems[0]!.message, 'every request it would filter is denied (403) until it can be loaded (failStrategy FAIL_CLOSE)');
    const status = server.proxies().find((p) => p.workload.name === 'productpage')!;
    assert.equal(status.problems, node.problems, 'proxy-status lists it');
    assert.is(status.buildErrors, undefined);

    await store.putModule('headers', '1.0.0', bytes, 'test');
    server.invalidate();
    const res = await s.next(1500);
    const binding = configOf(res).outboundFilters.find((b) => b.name === 'headers')!;
    assert.is(binding.url, `digest:sha256:${sha}`, 'digest url made canonical');
    assert.is(binding.sha256, sha);
    assert.is(binding.path, undefined);
    s.ack(res);
    await server.settled();
    assert.equal(server.snapshots().find((n) => n.workload.name === 'productpage')!.problems, [], 'nothing left out any more');
    await store.delete('WasmPlugin', 'default', 'headers');
    await store.put(virtualService(90));
    s.ack(await s.next(1500));
  } finally {
    s.close();
  }
});

test('a FAIL_OPEN WasmPlugin that cannot be served is left out, and proxy-status says why', async () => {
  const s = new TestStream();
  try {
    s.subscribe();
    const before = await s.next();
    s.ack(before);
    await store.put({ ...wasmPlugin('a'.repeat(64)), spec: { url: 'file:///opt/x.wasm', failStrategy: 'FAIL_OPEN', match: [{ mode: 'CLIENT' }] } });
    await sleep(300);
    await server.settled();
    // Left out, the plugin changes nothing the proxy runs: nothing to push.
    assert.is(s.responses.length, 0);
    assert.not.ok(server.snapshots().some((n) => n.errors.length > 0));
    const [problem] = server.proxies().find((p) => p.workload.name === 'productpage')!.problems!;
    assert.is(problem!.resource, 'WasmPlugin default/headers');
    assert.match(problem!.message, '"file:///opt/x.wasm" is a file, and managed proxies load modules from the orchestrator only');
    assert.match(problem!.message, 'left out (failStrategy FAIL_OPEN: its streams pass without it)');
    // Deleting it changes nothing the proxy runs: no push, and nothing is left out any more.
    await store.delete('WasmPlugin', 'default', 'headers');
    await sleep(300);
    await server.settled();
    assert.is(server.proxies().find((p) => p.workload.name === 'productpage')!.problems, undefined);
  } finally {
    s.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Snapshot parts on their own

test('consistency check: a route to a missing cluster is reported; a file:// module is stood in for', async () => {
  const documents = managedDocuments([serviceEntry, destinationRule, virtualService(50)]);
  const modules = { stored: new Set<string>(), builtins: new BuiltinModules() };
  const result = buildSnapshot(documents, productpage, modules);
  assert.ok(result.ok);
  const config = result.ok ? result.snapshot.config : undefined!;
  const broken: ProxyConfig = { ...config, clusters: {} };
  const shipped = new Set([...config.inboundFilters, ...config.outboundFilters].map((b) => b.sha256!));
  const errors = checkConsistency(broken, shipped);
  assert.is(errors.length, 2);
  assert.equal(checkConsistency(config, shipped), []);
  assert.is(checkConsistency(config, new Set()).length, 1, 'the telemetry module must be available');
  assert.match(errors[0]!, /route .*: cluster outbound\|9080\|v1\|reviews.default.svc.cluster.local does not exist/);
  // A file:// module (stored before the API refused them) is stood in for, not a reason to hold the config.
  const withFile = buildSnapshot(
    managedDocuments([{ ...wasmPlugin('a'.repeat(64)), spec: { url: 'file:///tmp/x.wasm', match: [{ mode: 'CLIENT' }] } }]),
    productpage,
    modules,
    { telemetry: false },
  );
  assert.ok(withFile.ok);
  assert.equal(withFile.problems.map((p) => p.path), ['/spec/url']);
  // Without the policy module there is nothing safe to stand in with: then it cannot be built.
  const noFilters = buildSnapshot(
    managedDocuments([{ ...wasmPlugin('a'.repeat(64)), spec: { url: 'file:///tmp/x.wasm', match: [{ mode: 'CLIENT' }] } }]),
    productpage,
    { stored: new Set<string>(), builtins: new BuiltinModules('/nonexistent/filters') },
    { telemetry: false },
  );
  assert.not.ok(noFilters.ok);
  if (!noFilters.ok) assert.match(noFilters.errors[0]!, /^WasmPlugin default\/headers: its module cannot be served and the filter that would deny its streams instead is missing: cannot read \/nonexistent\/filters\/policy\/build\/policy\.wasm/);
});

test('a NETWORK WasmPlugin ships in networkFilters by digest, never in an HTTP chain; an unservable one follows its failStrategy', () => {
  const sha = 'b'.repeat(64);
  const network = (spec: Record<string, unknown>): ResourceInput => ({ ...wasmPlugin(sha), spec: { url: `sha256:${sha}`, type: 'NETWORK', match: [{ mode: 'CLIENT' }], ...spec } });
  const stored = { stored: new Set([sha]), builtins: new BuiltinModules() };
  const built = buildSnapshot(managedDocuments([network({})]), productpage, stored, { telemetry: false });
  assert.ok(built.ok);
  const config = built.ok ? built.snapshot.config : undefined!;
  assert.equal(config.networkFilters?.outbound.map((b) => [b.name, b.url]), [['headers', `digest:sha256:${sha}`]]);
  assert.equal(config.networkFilters?.inbound, []);
  assert.not.ok([...config.inboundFilters, ...config.outboundFilters].some((b) => b.name === 'headers'));
  // Not in the store: FAIL_OPEN leaves it out (a problem says so); FAIL_CLOSE has no stand-in, so no config.
  const empty = { stored: new Set<string>(), builtins: new BuiltinModules() };
  const open = buildSnapshot(managedDocuments([network({ failStrategy: 'FAIL_OPEN' })]), productpage, empty, { telemetry: false });
  assert.ok(open.ok);
  assert.is(open.ok ? open.snapshot.config.networkFilters?.outbound.length : -1, 0);
  assert.equal(open.problems.map((p) => p.path), ['/spec/url']);
  const closed = buildSnapshot(managedDocuments([network({})]), productpage, empty, { telemetry: false });
  assert.not.ok(closed.ok);
  if (!closed.ok) assert.match(closed.errors[0]!, /^WasmPlugin default\/headers \(type NETWORK\): module sha256:b+ is not in the store.*no stand-in/);
});

test('debounce: a quiet period ends a burst, and a steady stream of triggers still runs within the maximum', async () => {
  const runs: number[] = [];
  const t0 = Date.now();
  const d = new Debouncer(async () => void runs.push(Date.now() - t0), { quietMs: 100, maxMs: 1000 });
  for (let i = 0; i < 5; i++) {
    d.trigger();
    await sleep(20);
  }
  await sleep(200);
  assert.is(runs.length, 1);
  assert.ok(runs[0]! >= 100 && runs[0]! < 400, `ran at ${runs[0]} ms`);

  runs.length = 0;
  const t1 = Date.now();
  while (Date.now() - t1 < 1500) {
    d.trigger();
    await sleep(50);
  }
  d.stop();
  assert.ok(runs.length >= 1, 'ran during a burst that never went quiet');
  assert.ok(runs[0]! - (t1 - t0) <= 1150, `first run ${runs[0]! - (t1 - t0)} ms into the burst`);
});

test.run();
