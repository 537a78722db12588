// Managed mode end to end, in one process: the orchestrator's discovery service over a memory store,
// a real Proxy driven by XdsClient, and real upstreams. Config changes in the store change routing
// without a restart; a filter that does not start is NACKed while the old config keeps serving; the
// proxy survives the orchestrator going away and picks up changes when it comes back.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import type { ResourceInput } from '../../orchestrator/src/store/types.ts';
import { startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';

const HOST = 'ratings.default.svc.cluster.local';
const workload: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const TOKEN = 'proxy-token-default';

let v1: TestServer;
let v2: TestServer;
let store: MemoryStore;
let server: XdsServer;
let serverPort = 0;
let client: XdsClient;
let proxy: Proxy | undefined;
let dataDir = '';
let starts = 0;
const logs: string[] = [];

const serviceEntry = (): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'ratings', namespace: 'default' },
  spec: {
    hosts: [HOST],
    location: 'MESH_INTERNAL',
    resolution: 'STATIC',
    ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
    endpoints: [
      { address: '127.0.0.1', ports: { http: v1.port }, labels: { version: 'v1' } },
      { address: '127.0.0.1', ports: { http: v2.port }, labels: { version: 'v2' } },
    ],
  },
});
const destinationRule: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name: 'ratings', namespace: 'default' },
  spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
};
const routeTo = (subset: string): ResourceInput => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name: 'ratings', namespace: 'default' },
  spec: { hosts: [HOST], http: [{ route: [{ destination: { host: HOST, subset } }] }] },
});
const plugin = (name: string, sha: string): ResourceInput => ({
  apiVersion: 'extensions.istio.io/v1alpha1',
  kind: 'WasmPlugin',
  metadata: { name, namespace: 'default' },
  spec: { url: `digest:sha256:${sha}`, match: [{ mode: 'CLIENT' }] },
});

/** A filter adding `x-managed: <tag>` to requests; with configure false, it refuses its configuration. */
function headerModule(tag: string, configure: boolean): Promise<Uint8Array> {
  return wat2wasm(
    guestModule({
      imports: `(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`,
      body: `
  (data (i32.const 1024) "x-managed")
  (data (i32.const 1040) "${tag}")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const ${configure ? 1 : 0}))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 1024) (i32.const 9) (i32.const 1040) (i32.const ${tag.length})))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))`,
    }),
  );
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-15).join('\n')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const ask = () => request(proxy!.outboundPort, { path: '/ratings/1', headers: { host: HOST } });
const upstreamOf = async (): Promise<string> => {
  const r = await ask();
  return r.status === 200 ? (JSON.parse(r.body) as { upstream: string }).upstream : `status ${r.status}`;
};

async function startServer(port: number): Promise<XdsServer> {
  return startXdsServer({
    store,
    host: '127.0.0.1',
    port,
    tokens: { verify: (t) => (t === TOKEN ? { role: 'proxy', namespace: 'default' } : undefined) },
    log: (level, message) => void logs.push(`orchestrator ${level} ${message}`),
  });
}

test.before(async () => {
  v1 = await startHttp1('ratings-v1');
  v2 = await startHttp1('ratings-v2');
  dataDir = await mkdtemp(join(tmpdir(), 'wasmesh-managed-'));
  store = new MemoryStore();
  await store.putAll([serviceEntry(), destinationRule, routeTo('v1')]);
  server = await startServer(0);
  serverPort = server.port;
  client = new XdsClient({
    address: `127.0.0.1:${serverPort}`,
    token: TOKEN,
    workload,
    dataDir,
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      if (proxy) return proxy.applyConfig(config);
      proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
      starts++;
    },
    log: (level, message) => void logs.push(`proxy ${level} ${message}`),
  });
  client.start();
  await client.firstConfig();
});

test.after(async () => {
  await client.stop();
  await proxy?.stop(0);
  await server.close();
  await Promise.all([v1.close(), v2.close()]);
  await rm(dataDir, { recursive: true, force: true });
});

test('the first config from the orchestrator starts the proxy and routes by the store', async () => {
  assert.ok(proxy);
  assert.is(await upstreamOf(), 'ratings-v1');
  await waitFor('the ACK', () => server.proxies()[0]?.acked === proxy!.config.version);
  // The built-in telemetry filter came by digest into the content-addressed cache.
  const telemetry = proxy!.config.outboundFilters.find((b) => b.name === 'wasmesh-telemetry');
  assert.ok(telemetry?.path?.startsWith(join(dataDir, 'modules', 'sha256')));
  assert.ok(existsSync(telemetry!.path!));
});

test('a change in the store changes routing without a restart', async () => {
  const port = proxy!.outboundPort;
  await store.put(routeTo('v2'));
  await waitFor('routing to v2', async () => (await upstreamOf()) === 'ratings-v2', 3000);
  assert.is(proxy!.outboundPort, port);
  assert.is(starts, 1);
  await waitFor('the ACK', () => server.proxies()[0]?.acked === proxy!.config.version);
});

test('an uploaded WasmPlugin module is fetched by digest and runs', async () => {
  const record = await store.putModule('tagger', '1.0.0', await headerModule('good', true), 'test');
  await store.put(plugin('tagger', record.sha256));
  server.invalidate(); // a module upload is not a resource change
  await waitFor('the filter', async () => (await ask()).status === 200 && v2.received.at(-1)?.headers['x-managed'] === 'good');
  assert.ok(existsSync(join(dataDir, 'modules', 'sha256', `${record.sha256}.wasm`)));
});

test('a config whose module fails to start is NACKed and the old config keeps serving', async () => {
  const before = proxy!.config.version;
  const record = await store.putModule('broken', '1.0.0', await headerModule('bad', false), 'test');
  await store.put(plugin('broken', record.sha256));
  server.invalidate();
  await waitFor('the NACK', () => server.proxies()[0]?.nacked !== undefined);
  const status = server.proxies()[0]!;
  assert.match(status.nacked!.message, 'broken');
  assert.is(status.acked, before, 'the proxy reports it still runs the old version');
  assert.is(proxy!.config.version, before);
  assert.is(client.status().applied, before);
  assert.ok(logs.some((l) => l.startsWith('orchestrator warn') && l.includes('NACKed')));
  const r = await ask();
  assert.is(r.status, 200);
  assert.is(v2.received.at(-1)?.headers['x-managed'], 'good', 'old filter chain still in place');

  // Fixing the config (dropping the broken plugin) is a new version, and it applies.
  await store.delete('WasmPlugin', 'default', 'broken');
  await store.put(routeTo('v1'));
  await waitFor('routing to v1', async () => (await upstreamOf()) === 'ratings-v1', 3000);
  await waitFor('the ACK', () => server.proxies()[0]?.acked === proxy!.config.version && server.proxies()[0]?.nacked === undefined);
});

test('the proxy keeps serving while the orchestrator is down, and reconnects when it is back', async () => {
  const version = proxy!.config.version;
  await server.close();
  await waitFor('the client to notice', () => !client.status().connected);
  for (let i = 0; i < 3; i++) assert.is(await upstreamOf(), 'ratings-v1');
  await new Promise((r) => setTimeout(r, 400)); // a few failed reconnects
  assert.is(proxy!.config.version, version);
  assert.is(await upstreamOf(), 'ratings-v1');

  await store.put(routeTo('v2')); // changed while the orchestrator was away
  server = await startServer(serverPort);
  await waitFor('routing to v2 after the reconnect', async () => (await upstreamOf()) === 'ratings-v2', 5000);
  assert.ok(client.status().connected);
  assert.ok(client.status().reconnects >= 1);
  assert.is(starts, 1, 'never restarted');
});

test('the last good config is cached on disk for a restart without the orchestrator', async () => {
  await waitFor('the cache file', async () => (await XdsClient.loadCachedConfig(dataDir))?.version === proxy!.config.version);
  const cached = (await XdsClient.loadCachedConfig(dataDir))!;
  for (const b of [...cached.inboundFilters, ...cached.outboundFilters]) assert.ok(b.path && existsSync(b.path));
});

test.run();
