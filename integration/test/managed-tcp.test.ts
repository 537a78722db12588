// TCP in managed mode, in one process: an orchestrator with a CA, two proxies whose config comes over
// the discovery stream and whose certificates come from the orchestrator. A TCP service behind the
// server proxy's inbound TCP listener, STRICT mTLS from the store; the client's outbound TCP listener
// reaches it with the SPIFFE identities of the proxy tokens, and a VirtualService tcp rule applied
// through the store re-routes new connections.
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { CertificateAuthority } from '../../orchestrator/src/certs/ca.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import { startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { OrchestratorIdentity } from '../../proxy-host/src/identity/orchestrator-identity.ts';
import { Proxy, type ProxyOptions } from '../../proxy-host/src/proxy.ts';

const NS = 'default';
const DB = `db.${NS}.svc.cluster.local`;
const logs: string[] = [];

interface Managed {
  proxy: Proxy;
  client: XdsClient;
}

let dir = '';
let store: MemoryStore;
let tokens: TokenStore;
let server: XdsServer;
let db: Managed;
let client: Managed;
const apps: net.Server[] = [];
let dbPort = 0;
let primary = 0;
let replica = 0;

function workload(name: string): WorkloadIdentity {
  return { name, namespace: NS, labels: { app: name }, serviceAccount: name };
}

async function app(reply: string): Promise<number> {
  const s = net.createServer((c) => c.on('data', (d: Buffer) => c.end(`${reply}:${d}`)));
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  apps.push(s);
  return (s.address() as net.AddressInfo).port;
}

async function managedProxy(w: WorkloadIdentity, options: Partial<ProxyOptions>): Promise<Managed> {
  const token = tokens.create('proxy', { namespace: w.namespace, serviceAccount: w.serviceAccount });
  const address = `127.0.0.1:${server.port}`;
  const identity = new OrchestratorIdentity({ address, token, namespace: w.namespace, serviceAccount: w.serviceAccount, backoff: { initialMs: 100, maxMs: 1000 }, log: (l, m) => void logs.push(`${w.name} identity ${l} ${m}`) });
  assert.ok(await identity.waitForCertificate(5000), `${w.name} got no certificate`);
  let proxy: Proxy | undefined;
  const xds = new XdsClient({
    address,
    token,
    workload: w,
    dataDir: join(dir, w.name),
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      if (proxy) return proxy.applyConfig(config);
      proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity, ...options }, config);
    },
    log: (l, m) => void logs.push(`${w.name} xds ${l} ${m}`),
  });
  xds.start();
  await xds.firstConfig();
  return { proxy: proxy!, client: xds };
}

/** One connection to the client proxy's outbound listener for the db port: what came back ('' when closed). */
function call(message: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: client.proxy.tcpOutboundPorts().get(5432)! }, () => s.write(message));
    let got = '';
    s.setTimeout(3000, () => s.destroy());
    s.on('data', (d: Buffer) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-15).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-managed-tcp-'));
  primary = await app('primary');
  replica = await app('replica');
  store = new MemoryStore();
  tokens = TokenStore.inMemory();
  const ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  server = await startXdsServer({ store, tokens, ca, host: '127.0.0.1', port: 0, debounceMs: 20, maxDelayMs: 200, log: (l, m) => void logs.push(`orchestrator ${l} ${m}`) });
  await store.put({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: NS }, spec: { mtls: { mode: 'STRICT' } } });
  db = await managedProxy(workload('db'), { tcpInbound: [{ port: 0, appPort: primary }] });
  dbPort = db.proxy.tcpInboundPorts()[0]!;
  await store.putAll([
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'db', namespace: NS },
      spec: { hosts: [DB], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 5432, name: 'tcp-db', protocol: 'TCP' }], workloadSelector: { labels: { app: 'db' } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'db-1', namespace: NS },
      spec: { address: '127.0.0.1', ports: { 'tcp-db': dbPort }, labels: { app: 'db', role: 'primary', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'db' },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'db-replica', namespace: NS },
      // A plain endpoint (no sidecar): auto mTLS sends it plaintext.
      spec: { address: '127.0.0.1', ports: { 'tcp-db': replica }, labels: { app: 'db', role: 'replica' }, serviceAccount: 'db' },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'db', namespace: NS },
      spec: { host: 'db', subsets: [{ name: 'primary', labels: { role: 'primary' } }, { name: 'replica', labels: { role: 'replica' } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'db', namespace: NS },
      spec: { hosts: ['db'], tcp: [{ route: [{ destination: { host: 'db', subset: 'primary' } }] }] },
    },
  ]);
  client = await managedProxy(workload('client'), { tcpOutbound: [{ port: 5432, listenPort: 0 }] });
});

test.after(async () => {
  for (const m of [client, db]) {
    if (!m) continue;
    await m.client.stop();
    await m.proxy.stop(100);
  }
  await server?.close();
  for (const a of apps) a.close();
  await rm(dir, { recursive: true, force: true });
});

test('a managed client reaches a managed TCP service over mTLS with the identities the orchestrator issued', async () => {
  await waitFor('the tcp route to the primary', async () => (await call('hi')) === 'primary:hi');
  const text = client.proxy.renderPrometheus();
  const line = text.split('\n').find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('response_flags="-"') && l.includes(`destination_service="${DB}"`));
  assert.ok(line, text);
  assert.match(line!, /source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/client"/);
  assert.match(line!, /destination_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/db"/);
  const server = db.proxy.renderPrometheus();
  assert.match(server, /istio_tcp_connections_opened_total\{[^}]*connection_security_policy="mutual_tls"[^}]*source_workload="client"/);
  // STRICT from the store: plaintext to the db sidecar gets nothing.
  const plain = await new Promise<string>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: dbPort }, () => s.write('hello in plaintext'));
    let got = '';
    s.on('data', (d: Buffer) => (got += d));
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
  assert.is(plain, '');
});

test('a tcp rule changed in the store re-routes new connections', async () => {
  await store.put({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name: 'db', namespace: NS },
    spec: { hosts: ['db'], tcp: [{ route: [{ destination: { host: 'db', subset: 'replica' } }] }] },
  });
  await waitFor('the tcp route to the replica', async () => (await call('again')) === 'replica:again');
});

test.run();
