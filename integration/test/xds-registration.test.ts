// Endpoint auto-registration from the proxy's side: an XdsClient started with `register` gets its
// WorkloadEntry from a real xDS server. The server's side of registration (grace period, reconnects,
// refusals) is tested in orchestrator/test/xds-registration.test.ts.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import type { Resource, ResourceInput } from '../../orchestrator/src/store/types.ts';
import { autoEntryName, startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';

/** Long: a proxy that stops says goodbye, and its entry must go long before this. */
const GRACE_MS = 30_000;
const HOST = 'ratings.default.svc.cluster.local';
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
const logs: string[] = [];

async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const getEntry = (name: string): Promise<Resource | undefined> => store.get('WorkloadEntry', 'default', name);

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
});

test.after(async () => {
  await server.close();
  await store.close();
});

test('XdsClient registers with its register option', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'wasmesh-xds-reg-'));
  const xds = new XdsClient({
    address: `127.0.0.1:${server.port}`,
    workload: ratings,
    dataDir,
    register: { address: '127.0.0.1', ports: { http: 15006 } },
    apply: async () => {},
  });
  try {
    xds.start();
    await xds.firstConfig();
    const name = autoEntryName(ratings, { address: '127.0.0.1', ports: { http: 15006 } });
    const entry = await until('the entry', () => getEntry(name));
    assert.equal(entry.spec.ports, { http: 15006 });
    // Shutting down (SIGTERM: the proxy stops its client before it drains): the endpoint leaves every
    // config at once, not after the reconnect grace period.
    const stoppedAt = Date.now();
    await xds.stop();
    await until('the entry is gone', async () => (await getEntry(name)) === undefined, 3000);
    assert.ok(Date.now() - stoppedAt < 3000, 'gone within seconds of the stop, not after the 30 s grace');
    assert.ok(logs.some((l) => l.includes(`unregistered WorkloadEntry default/${name}: its proxy is shutting down`)));
  } finally {
    await xds.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test.run();
