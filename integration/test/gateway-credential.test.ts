// A managed gateway serving HTTPS with a credentialName, end to end: the orchestrator's REST API
// (TLSSecret written with the admin token, redacted for the viewer), its discovery service, and
// gateway proxies driven by XdsClient as `wasmesh gateway --orchestrator` wires them. Checked with
// openssl s_client and a Node TLS client: the served certificate is the secret's; a TLSSecret
// replaced through the API reaches the running gateway (the next handshake has the new serial);
// a gateway of another namespace and a sidecar never receive the key; the persisted config is 0600.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../orchestrator/src/app.ts';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import { startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { GATEWAY_ROLE, GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateway-labels.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { createTestCa, type TestCa } from '../../proxy-host/test/support/test-ca.ts';

const logs: string[] = [];
let dir = '';
let app: TestServer;
let store: MemoryStore;
let tokens: TokenStore;
let api: FastifyInstance;
let admin = '';
let viewer = '';
let xds: XdsServer;
let ca: TestCa;
let gatewayPort = 0;
const running: { client: XdsClient; proxy?: Proxy; config?: ProxyConfig }[] = [];

const gatewayWorkload = (namespace: string): WorkloadIdentity => ({ name: 'ingress', namespace, labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: GATEWAY_ROLE }, serviceAccount: 'ingress' });

/** A managed proxy (no identity: the route here is plaintext to the app). */
async function managed(w: WorkloadIdentity, role: 'gateway' | 'sidecar'): Promise<(typeof running)[number]> {
  const token = tokens.create('proxy', { namespace: w.namespace, serviceAccount: w.serviceAccount });
  const entry: (typeof running)[number] = { client: undefined as unknown as XdsClient };
  entry.client = new XdsClient({
    address: `127.0.0.1:${xds.port}`,
    token,
    workload: w,
    dataDir: join(dir, `${w.namespace}-${w.name}`),
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      entry.config = config;
      if (entry.proxy) return entry.proxy.applyConfig(config);
      entry.proxy = await Proxy.start({ role, outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
    },
    log: (level, message) => void logs.push(`${w.namespace}/${w.name} ${level} ${message}`),
  });
  entry.client.start();
  await entry.client.firstConfig();
  running.push(entry);
  return entry;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const secret = (pair: { certPem: string; keyPem: string }) => ({ apiVersion: 'security.wasmesh.io/v1alpha1', kind: 'TLSSecret', metadata: { name: 'shop-cert', namespace: 'istio-system' }, spec: { cert: pair.certPem, key: pair.keyPem } });

/** GET /productpage over TLS with SNI shop.example.com: the served certificate's serial and the status. */
function nodeGet(): Promise<{ serial: string; status: number }> {
  return new Promise((resolve, reject) => {
    let data = '';
    let serial = '';
    const socket = tls.connect({ host: '127.0.0.1', port: gatewayPort, servername: 'shop.example.com', ca: ca.rootPem, ALPNProtocols: ['http/1.1'] }, () => {
      serial = socket.getPeerCertificate().serialNumber;
      socket.write('GET /productpage HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n\r\n');
    });
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('data', (d: Buffer) => (data += d.toString()));
    socket.on('error', reject);
    socket.on('close', () => resolve({ serial, status: Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0) }));
  });
}

function sClient(): Promise<string> {
  return new Promise((resolve) => {
    const args = ['s_client', '-connect', `127.0.0.1:${gatewayPort}`, '-servername', 'shop.example.com', '-CAfile', join(dir, 'ca.pem'), '-verify_return_error', '-ign_eof'];
    const child = execFile('openssl', args, { timeout: 10_000 }, (_err, stdout, stderr) => resolve(stdout + stderr));
    child.stdin?.end('GET /productpage HTTP/1.1\r\nhost: shop.example.com\r\nconnection: close\r\n\r\n');
  });
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-gateway-credential-'));
  ca = await createTestCa('shop root');
  await writeFile(join(dir, 'ca.pem'), ca.rootPem);
  app = await startHttp1('productpage-app');
  store = new MemoryStore();
  tokens = TokenStore.inMemory();
  admin = tokens.create('admin');
  viewer = tokens.create('viewer');
  api = buildApp({ store, tokens, rolloutLog: () => {} });
  await api.ready();
  xds = await startXdsServer({ store, tokens, host: '127.0.0.1', port: 0, debounceMs: 20, maxDelayMs: 200, log: (level, message) => void logs.push(`orchestrator ${level} ${message}`) });
  const net = await import('node:net');
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  gatewayPort = (probe.address() as import('node:net').AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const applied = await api.inject({
    method: 'POST',
    url: '/apply',
    headers: auth(admin),
    payload: [
      secret(await ca.issueServer(['shop.example.com'])),
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'productpage', namespace: 'default' },
        spec: { hosts: ['productpage.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1', ports: { http: app.port } }] },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'Gateway',
        metadata: { name: 'shop', namespace: 'default' },
        spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: gatewayPort, name: 'https', protocol: 'HTTPS' }, hosts: ['shop.example.com'], tls: { mode: 'SIMPLE', credentialName: 'shop-cert' } }] },
      },
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'shop', namespace: 'default' },
        spec: { hosts: ['shop.example.com'], gateways: ['shop'], http: [{ route: [{ destination: { host: 'productpage', port: { number: 9080 } } }] }] },
      },
    ],
  });
  assert.is(applied.statusCode, 200, applied.body);
});

test.after(async () => {
  for (const r of running) {
    await r.client.stop();
    await r.proxy?.stop(100);
  }
  await xds?.close();
  await api?.close();
  await app?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a managed gateway of istio-system serves the TLSSecret: openssl s_client verifies it and gets 200', async () => {
  const gw = await managed(gatewayWorkload('istio-system'), 'gateway');
  // The first config is in; the gateway's listeners bind a moment later.
  await waitFor('the gateway to listen on the Gateway port', () => gw.proxy?.gatewayPorts().has(gatewayPort) ?? false, 10_000);
  const out = await sClient();
  assert.match(out, /Verify return code: 0 \(ok\)/);
  assert.match(out, /subject=CN\s*=\s*shop\.example\.com/);
  assert.match(out, /HTTP\/1\.1 200/);
  const stored = (await store.get('TLSSecret', 'istio-system', 'shop-cert'))!;
  const res = await nodeGet();
  assert.is(res.status, 200);
  assert.is(res.serial, new X509Certificate(stored.spec.cert as string).serialNumber);
});

test('the viewer reads the secret without its key', async () => {
  const res = await api.inject({ method: 'GET', url: '/apis/tlssecrets/istio-system/shop-cert', headers: auth(viewer) });
  assert.is(res.statusCode, 200);
  assert.not.match(res.body, /PRIVATE KEY|BEGIN CERTIFICATE/);
});

test('a TLSSecret replaced through the API reaches the running gateway: the next handshake has the new serial', async () => {
  const next = await ca.issueServer(['shop.example.com']);
  const serial = new X509Certificate(next.certPem).serialNumber;
  const put = await api.inject({ method: 'PUT', url: '/apis/tlssecrets/istio-system/shop-cert', headers: auth(admin), payload: secret(next) });
  assert.is(put.statusCode, 200, put.body);
  let seen = '';
  await waitFor('the new certificate', async () => (seen = (await nodeGet()).serial) === serial);
  assert.is(seen, serial);
});

test('a gateway of another namespace and a sidecar never receive the key; the persisted config is 0600', async () => {
  const other = await managed(gatewayWorkload('default'), 'gateway');
  assert.equal(other.config!.gateway!.listeners, [], 'no listener without the credential in its namespace');
  const sidecar = await managed({ name: 'web', namespace: 'istio-system', labels: { app: 'web' }, serviceAccount: 'web' }, 'sidecar');
  for (const r of [other, sidecar]) assert.not.ok(JSON.stringify(r.config).includes('PRIVATE KEY'));
  const persisted = join(dir, 'istio-system-ingress', 'config.json');
  await waitFor('the persisted config', async () => (await readFile(persisted, 'utf8').catch(() => '')).includes('shop-cert'));
  assert.is((await stat(persisted)).mode & 0o777, 0o600);
});

test.run();
