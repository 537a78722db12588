// Endpoint auto-registration: a proxy that subscribes with node.endpoint gets a WorkloadEntry in the
// store while its stream lives (ServiceEntries selecting its labels route to it), removed after a
// grace period once the stream ends, unless it reconnects (to any replica) in time. The proxy's
// side (XdsClient's register option) is in integration/test/xds-registration.test.ts.
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
  type EndpointMessage,
} from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { fromObjects } from '../../mesh/src/documents.ts';
import { validateDocuments } from '../../mesh/src/validate.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { Resource, ResourceInput } from '../src/store/types.ts';
import { AUTO_REGISTERED_ANNOTATION, autoEntryName, startXdsServer, type XdsServer } from '../src/xds/server.ts';

const GRACE_MS = 400;
const HOST = 'ratings.default.svc.cluster.local';
const CLUSTER = `outbound|9080||${HOST}`;
const productpage: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage' }, serviceAccount: 'productpage' };
const ratings: WorkloadIdentity = { name: 'ratings', namespace: 'default', labels: { app: 'ratings', version: 'v1' }, serviceAccount: 'ratings' };

const ratingsEntry: ResourceInput = {
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: 'ratings', namespace: 'default' },
  spec: {
    hosts: [HOST],
    location: 'MESH_INTERNAL',
    resolution: 'STATIC',
    ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }],
    workloadSelector: { labels: { app: 'ratings' } },
  },
};

let store: MemoryStore;
let server: XdsServer;
let client: DiscoveryClient;
const logs: string[] = [];

class TestStream {
  readonly call: grpc.ClientDuplexStream<DiscoveryRequestInput, DiscoveryResponse>;
  readonly responses: DiscoveryResponse[] = [];
  status: grpc.StatusObject | undefined;

  constructor(c: DiscoveryClient = client) {
    this.call = c.StreamResources(new grpc.Metadata());
    this.call.on('data', (r: DiscoveryResponse) => {
      this.responses.push(r);
      this.call.write({ type_url: PROXY_CONFIG_TYPE_URL, version_info: r.version_info, response_nonce: r.nonce });
    });
    this.call.on('error', () => {});
    this.call.on('status', (s: grpc.StatusObject) => (this.status = s));
  }

  subscribe(workload: WorkloadIdentity, endpoint?: EndpointMessage): this {
    this.call.write({
      node: { id: `${workload.name}-test`, workload: workload.name, namespace: workload.namespace, labels: { ...workload.labels }, service_account: workload.serviceAccount, endpoint: endpoint ?? null },
      type_url: PROXY_CONFIG_TYPE_URL,
      version_info: '',
    });
    return this;
  }

  /** The config of the latest response. */
  latest(): ProxyConfig | undefined {
    const r = this.responses.at(-1);
    return r && (JSON.parse(Buffer.from(r.resources[0]!.body).toString('utf8')) as ProxyConfig);
  }

  close(): void {
    this.call.cancel();
  }

  /** What a proxy that shuts down does: a last request that says it is leaving, then the end of its side. */
  goodbye(): void {
    this.call.write({ type_url: PROXY_CONFIG_TYPE_URL, leaving: true });
    this.call.end();
  }
}

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const endpointOf = (address: string, port: number): EndpointMessage => ({ address, ports: { http: port } });
const entryName = (address: string, port: number) => autoEntryName(ratings, { address, ports: { http: port } });
const getEntry = (name: string): Promise<Resource | undefined> => store.get('WorkloadEntry', 'default', name);
const endpointsSeen = (s: TestStream): string[] => (s.latest()?.clusters[CLUSTER]?.endpoints ?? []).map((e) => `${e.address}:${e.port}`).sort();

test.before(async () => {
  store = new MemoryStore();
  await store.put(ratingsEntry);
  server = await startXdsServer({
    store,
    host: '127.0.0.1',
    port: 0,
    debounceMs: 20,
    maxDelayMs: 200,
    registrationGraceMs: GRACE_MS,
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

test('a connected proxy gets a valid WorkloadEntry, and another workload routes to it', async () => {
  const pp = new TestStream().subscribe(productpage);
  await until('productpage config', () => pp.latest());
  assert.equal(endpointsSeen(pp), [], 'no ratings endpoint before any proxy registers');

  const r = new TestStream().subscribe(ratings, endpointOf('10.0.0.7', 9081));
  const name = entryName('10.0.0.7', 9081);
  const entry = await until('the WorkloadEntry', () => getEntry(name));
  assert.ok(/^auto-ratings-[0-9a-f]{10}$/.test(name), name);
  assert.is(entry.metadata.annotations?.[AUTO_REGISTERED_ANNOTATION], 'true');
  // Istio's sidecar label: clients' auto mTLS sends this endpoint mTLS.
  assert.equal(entry.spec, { address: '10.0.0.7', ports: { http: 9081 }, labels: { 'security.istio.io/tlsMode': 'istio', app: 'ratings', version: 'v1' }, serviceAccount: 'ratings' });
  // Valid per the WorkloadEntry schema (the store-maintained metadata aside).
  const { resourceVersion: _rv, generation: _g, creationTimestamp: _c, ...metadata } = entry.metadata;
  const checked = validateDocuments(fromObjects([{ ...entry, metadata }, ratingsEntry]), { mode: 'managed' });
  assert.ok(checked.ok, JSON.stringify(checked.errors));

  await until('productpage pushed the endpoint', () => endpointsSeen(pp).includes('10.0.0.7:9081'));
  assert.equal(endpointsSeen(pp), ['10.0.0.7:9081']);
  assert.ok(server.proxies().some((p) => p.registered === `default/${name}`), 'proxy-status shows the registration');
  r.close();
  pp.close();
  await until('the entry is gone', async () => (await getEntry(name)) === undefined, GRACE_MS + 2000);
});

test('after a disconnect the entry stays for the grace period, then goes (and the endpoint with it)', async () => {
  const pp = new TestStream().subscribe(productpage);
  const r = new TestStream().subscribe(ratings, endpointOf('10.0.0.8', 9081));
  const name = entryName('10.0.0.8', 9081);
  await until('the endpoint', () => endpointsSeen(pp).includes('10.0.0.8:9081'));
  const closedAt = Date.now();
  r.close();
  await new Promise((res) => setTimeout(res, GRACE_MS / 2));
  assert.ok(await getEntry(name), 'still there during the grace period');
  await until('the entry is gone', async () => (await getEntry(name)) === undefined, GRACE_MS + 2000);
  assert.ok(Date.now() - closedAt >= GRACE_MS - 20, 'not before the grace period');
  await until('productpage lost the endpoint', () => !endpointsSeen(pp).includes('10.0.0.8:9081'));
  pp.close();
});

test('a proxy that says goodbye (shutting down, draining) is unregistered at once, without the grace period', async () => {
  const pp = new TestStream().subscribe(productpage);
  const r = new TestStream().subscribe(ratings, endpointOf('10.0.0.12', 9081));
  const name = entryName('10.0.0.12', 9081);
  await until('the endpoint', () => endpointsSeen(pp).includes('10.0.0.12:9081'));
  const leftAt = Date.now();
  r.goodbye();
  await until('the entry is gone', async () => (await getEntry(name)) === undefined, GRACE_MS + 2000);
  await until('productpage lost the endpoint', () => !endpointsSeen(pp).includes('10.0.0.12:9081'));
  assert.ok(Date.now() - leftAt < GRACE_MS / 2, `gone within ${Date.now() - leftAt} ms, well before the ${GRACE_MS} ms grace`);
  assert.ok(logs.some((l) => l.includes(`unregistered WorkloadEntry default/${name}: its proxy is shutting down`)), 'the log says why');
  await until('the server closed its side too', () => r.status);
  assert.is(r.status!.code, grpc.status.OK);
  pp.close();
});

test('a reconnect within the grace period keeps the entry', async () => {
  const name = entryName('10.0.0.9', 9081);
  const first = new TestStream().subscribe(ratings, endpointOf('10.0.0.9', 9081));
  const before = await until('the entry', () => getEntry(name));
  first.close();
  await new Promise((res) => setTimeout(res, GRACE_MS / 2));
  const second = new TestStream().subscribe(ratings, endpointOf('10.0.0.9', 9081));
  await until('the re-registration', async () => (await getEntry(name))?.metadata.resourceVersion !== before.metadata.resourceVersion || undefined);
  await new Promise((res) => setTimeout(res, GRACE_MS + 200));
  assert.ok(await getEntry(name), 'kept after the first stream\'s grace period');
  second.close();
  await until('gone once the second stream ends', async () => (await getEntry(name)) === undefined, GRACE_MS + 2000);
});

test('a reconnect to another replica (same store) keeps the entry: the first replica checks before deleting', async () => {
  const other = await startXdsServer({ store, host: '127.0.0.1', port: 0, debounceMs: 20, registrationGraceMs: GRACE_MS, log: () => {} });
  const { Client } = discoveryDefinition();
  const otherClient = new Client(`127.0.0.1:${other.port}`, grpc.credentials.createInsecure());
  try {
    const name = entryName('10.0.0.10', 9081);
    const first = new TestStream().subscribe(ratings, endpointOf('10.0.0.10', 9081));
    await until('the entry', () => getEntry(name));
    first.close();
    await new Promise((res) => setTimeout(res, 50));
    const second = new TestStream(otherClient).subscribe(ratings, endpointOf('10.0.0.10', 9081));
    await new Promise((res) => setTimeout(res, GRACE_MS + 300));
    assert.ok(await getEntry(name), 'the first replica did not delete an entry another replica holds');
    assert.ok(logs.some((l) => l.includes(`${name} kept: its proxy reconnected`)), logs.join('\n'));
    second.close();
    await until('gone once the proxy leaves for good', async () => (await getEntry(name)) === undefined, GRACE_MS + 2000);
  } finally {
    otherClient.close();
    await other.close();
  }
});

test('an endpoint without address or ports is refused with INVALID_ARGUMENT', async () => {
  const s = new TestStream().subscribe(ratings, { address: '', ports: { http: 1 } });
  await until('the refusal', () => s.status);
  assert.is(s.status!.code, grpc.status.INVALID_ARGUMENT);
  assert.match(s.status!.details, 'address');
  const t = new TestStream().subscribe(ratings, { address: '10.0.0.1', ports: {} });
  await until('the refusal', () => t.status);
  assert.is(t.status!.code, grpc.status.INVALID_ARGUMENT);
});

test.run();
