// "Recompute only what a change touches": on a store change the snapshot cache re-translates only
// the workloads the changed resources can affect (snapshot/scope.ts), and those still get the new
// config. Counted with the cache's stats.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { SnapshotCache } from '../src/snapshot/cache.ts';
import { changeScope, indexResources } from '../src/snapshot/scope.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { ResourceInput } from '../src/store/types.ts';

const HOST = 'reviews.default.svc.cluster.local';
const wl = (name: string, namespace: string, labels: Record<string, string> = { app: name }): WorkloadIdentity => ({ name, namespace, labels, serviceAccount: name });
const a = wl('a', 'default');
const b = wl('b', 'default');
const c = wl('c', 'other');
const ALL = [a, b, c];

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
    workloadSelector: undefined,
  },
};
const selectingEntry: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'details', namespace: 'default' },
  spec: {
    hosts: ['details.default.svc.cluster.local'],
    location: 'MESH_INTERNAL',
    resolution: 'STATIC',
    ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
    workloadSelector: { labels: { app: 'details' } },
    exportTo: ['.'],
  },
};
const destinationRule: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'reviews', namespace: 'default' },
  spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
};
const virtualService = (v1: number, namespace = 'default', exportTo?: string[]): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'reviews', namespace },
  spec: {
    hosts: [HOST],
    ...(exportTo ? { exportTo } : {}),
    http: [{ route: [{ destination: { host: HOST, subset: 'v1' }, weight: v1 }, { destination: { host: HOST, subset: 'v2' }, weight: 100 - v1 }] }],
  },
});
const plugin = (name: string, namespace: string, sha: string, selector?: Record<string, string>): ResourceInput => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name, namespace },
  spec: { url: `sha256:${sha}`, ...(selector ? { selector: { matchLabels: selector } } : {}) },
});
const workloadEntry = (name: string, labels: Record<string, string>, address = '10.1.0.1'): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace: 'default' },
  spec: { address, ports: { http: 9080 }, labels },
});

let store: MemoryStore;
let cache: SnapshotCache;
let sha = '';
const versions = new Map<string, string>();

function snapshotVersions(): Record<string, string | undefined> {
  return Object.fromEntries(ALL.map((w) => [w.name, cache.get(w)?.version]));
}

/** Runs a store change and waits for its flush; returns which workloads got a new version and the recompute counts. */
async function change(write: () => Promise<unknown>): Promise<{ recomputes: number; skipped: number; updated: string[] }> {
  const before = cache.stats();
  const old = snapshotVersions();
  await write();
  await new Promise((r) => setTimeout(r, 1));
  await cache.settled();
  const after = cache.stats();
  assert.ok(after.flushes > before.flushes, 'the change was flushed');
  const now = snapshotVersions();
  return {
    recomputes: after.recomputes - before.recomputes,
    skipped: after.skipped - before.skipped,
    updated: ALL.filter((w) => now[w.name] !== old[w.name]).map((w) => w.name),
  };
}

test.before(async () => {
  store = new MemoryStore();
  await store.putAll([serviceEntry, selectingEntry, destinationRule, virtualService(90)]);
  sha = (await store.putModule('headers', '1.0.0', new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]), 'test')).sha256;
  cache = new SnapshotCache({ store, debounceMs: 5, maxDelayMs: 50, telemetry: false });
  await cache.start();
  for (const w of ALL) cache.watch(w, (s) => versions.set(w.name, s.version));
  await cache.settled();
  for (const w of ALL) assert.ok(cache.get(w), `${w.name} has a snapshot`);
});

test.after(async () => {
  cache.stop();
  await store.close();
});

test('a WasmPlugin in another namespace recomputes only the workload it selects', async () => {
  const r = await change(() => store.put(plugin('c-only', 'other', sha, { app: 'c' })));
  assert.equal(r, { recomputes: 1, skipped: 2, updated: ['c'] });
});

test('a WasmPlugin whose selector matches no workload recomputes none', async () => {
  const r = await change(() => store.put(plugin('nobody', 'default', sha, { app: 'nobody' })));
  assert.equal(r, { recomputes: 0, skipped: 3, updated: [] });
});

test('moving a selector recomputes the workload it left and the one it reached', async () => {
  const r = await change(() => store.put(plugin('c-only', 'other', sha, { app: 'someone-else' })));
  assert.equal(r, { recomputes: 1, skipped: 2, updated: ['c'] }, 'c lost the plugin');
  const s = await change(() => store.put(plugin('nobody', 'default', sha, { app: 'b' })));
  assert.equal(s, { recomputes: 1, skipped: 2, updated: ['b'] }, 'b gained it');
});

test('a VirtualService exported only to its own namespace recomputes only that namespace', async () => {
  const vs: ResourceInput = {
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'ratings', namespace: 'other' },
    spec: { hosts: ['ratings.example.com'], exportTo: ['.'], http: [{ route: [{ destination: { host: 'ratings.example.com' } }] }] },
  };
  const r = await change(() => store.put(vs));
  assert.equal(r, { recomputes: 1, skipped: 2, updated: ['c'] });
});

test('a DestinationRule with a workloadSelector recomputes only the selected workload', async () => {
  const rule: ResourceInput = { ...destinationRule, metadata: { name: 'reviews-a', namespace: 'default' }, spec: { ...destinationRule.spec, workloadSelector: { matchLabels: { app: 'a' } } } };
  const r = await change(() => store.put(rule));
  assert.equal(r.recomputes, 1);
  assert.equal(r.skipped, 2);
});

test('a WorkloadEntry no ServiceEntry selects recomputes none; one a namespace-local ServiceEntry selects recomputes that namespace', async () => {
  const r = await change(() => store.put(workloadEntry('stray', { app: 'stray' })));
  assert.equal(r, { recomputes: 0, skipped: 3, updated: [] });
  const s = await change(() => store.put(workloadEntry('details-1', { app: 'details' })));
  assert.equal(s.recomputes, 2, 'a and b (details is exported to default only)');
  assert.equal(s.updated, ['a', 'b']);
});

test('only the auto-registration connection annotation changing recomputes none', async () => {
  const we = workloadEntry('details-1', { app: 'details' });
  const r = await change(() => store.put({ ...we, metadata: { ...we.metadata, annotations: { 'wasmesh.io/connection': 'x/2' } } }));
  assert.equal(r, { recomputes: 0, skipped: 3, updated: [] });
});

test('a change every workload sees recomputes and updates all of them', async () => {
  const r = await change(() => store.put(virtualService(10)));
  assert.equal(r, { recomputes: 3, skipped: 0, updated: ['a', 'b', 'c'] });
});

test('invalidate() (after a module upload) recomputes everything', async () => {
  const before = cache.stats().recomputes;
  cache.invalidate();
  await cache.settled();
  assert.is(cache.stats().recomputes - before, 3);
  // A module upload emits no watch event: the server calls invalidate(); the flush sees a new module set.
  await store.putModule('other', '1.0.0', new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 0]), 'test');
  const r = await change(async () => cache.invalidate());
  assert.is(r.recomputes, 3);
});

test('changeScope: unknown kinds and unreadable documents affect everyone', () => {
  const before = indexResources([]);
  const weird = indexResources([{ kind: 'Gateway', metadata: { name: 'g', namespace: 'x' }, spec: {} }]);
  assert.ok(changeScope(before, weird).affects(a));
  const broken = indexResources([{ kind: 'WasmPlugin', metadata: { name: 'p', namespace: 'x' }, spec: { selector: 'oops' } }]);
  assert.ok(changeScope(before, broken).affects(c));
  assert.is(changeScope(weird, weird).changes, 0);
});

test('changeScope: a policy with targetRefs affects the gateway proxies of its namespace only, never sidecars', () => {
  const gatewayHere = { name: 'gw', namespace: 'default', labels: { istio: 'ingressgateway', 'wasmesh.io/proxy-role': 'gateway' }, serviceAccount: 'gw' };
  const gatewayElsewhere = { ...gatewayHere, name: 'gw2', namespace: 'other' };
  const sidecar = { name: 's', namespace: 'default', labels: { istio: 'ingressgateway' }, serviceAccount: 's' };
  const before = indexResources([]);
  for (const kind of ['AuthorizationPolicy', 'RequestAuthentication', 'RateLimitPolicy', 'WasmPlugin']) {
    const after = indexResources([{ kind, metadata: { name: 'p', namespace: 'default' }, spec: { targetRefs: [{ group: 'networking.istio.io', kind: 'Gateway', name: 'web' }] } }]);
    const scope = changeScope(before, after);
    assert.ok(scope.affects(gatewayHere), kind);
    assert.not.ok(scope.affects(gatewayElsewhere), kind);
    assert.not.ok(scope.affects(sidecar), kind);
  }
});

test.run();
