// Two proxies with mTLS on loopback: the client side's outbound originates TLS with its workload
// certificate to an ISTIO_MUTUAL cluster, the server side's inbound authenticates it per
// PeerAuthentication and hands the peer's SPIFFE id to its filters (AuthorizationPolicy, telemetry).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfigFile } from '../src/config/file-source.ts';
import { TLS_MODE_LABEL, type ClusterTlsConfig, type MtlsConfig, type ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import type { WorkloadCertificate } from '../src/identity/types.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { request, startHttp1, startHttp2, type TestServer } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

const REVIEWS = 'spiffe://cluster.local/ns/default/sa/reviews';
let app: TestServer;
let ca: TestCa;
let otherCa: TestCa;
let serverConfig: ProxyConfig;
let server: Proxy;
let serverIdentity: MemoryIdentity;
const clients: Proxy[] = [];
let dir: string;

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-evil, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  action: DENY
  rules: [{ from: [{ source: { principals: [cluster.local/ns/default/sa/evil] } }] }]
`;

function withMtls(config: ProxyConfig, mtls: MtlsConfig): ProxyConfig {
  return { ...config, mtls, version: `${config.version.slice(0, 40)}-${JSON.stringify(mtls)}` };
}

/** A client-side proxy whose outbound cluster goes to the server proxy's inbound port. */
async function clientProxy(
  identity: WorkloadCertificate | undefined,
  tlsConfig: ClusterTlsConfig = { mode: 'ISTIO_MUTUAL', subjectAltNames: [REVIEWS] },
  protocol: 'http1' | 'http2' = 'http1',
  port?: number,
  labels: Record<string, string> = {},
): Promise<Proxy> {
  const name = 'outbound|9080||reviews.default.svc.cluster.local';
  const config = proxyConfig({
    virtualHosts: [{ name: 'reviews', domains: ['reviews'], routes: [forward('r', name)] }],
    clusters: [{ ...cluster(name, [{ port: port ?? server.inboundPort, labels, ...(labels[TLS_MODE_LABEL] === 'istio' ? { tlsMode: 'istio' as const } : {}) }], { protocol }), tls: tlsConfig }],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', ...(identity ? { identity: new MemoryIdentity(identity) } : {}) }, config);
  clients.push(proxy);
  return proxy;
}

async function setServerMode(mode: MtlsConfig['mode']): Promise<void> {
  await server.applyConfig(withMtls(serverConfig, { mode }));
}

/** A raw TLS client to the server's inbound port; resolves with the HTTP status, or the error. */
function tlsGet(port: number, cert: WorkloadCertificate | undefined, ca: string[]): Promise<number | Error> {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/',
      headers: { host: 'reviews' },
      createConnection: () =>
        tls.connect({ host: '127.0.0.1', port, ca, ...(cert ? { key: cert.keyPem, cert: cert.certChainPem } : {}), checkServerIdentity: () => undefined }),
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (err) => resolve(err));
    req.end();
  });
}

test.before(async () => {
  app = await startHttp1('reviews-app');
  ca = await createTestCa();
  otherCa = await createTestCa('another root');
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-mtls-'));
  writeFileSync(join(dir, 'mesh.yaml'), POLICY);
  const loaded = await loadConfigFile(join(dir, 'mesh.yaml'), { name: 'reviews', namespace: 'default', labels: { app: 'reviews' }, serviceAccount: 'reviews' });
  if (!loaded.ok) throw new Error(loaded.error);
  serverConfig = loaded.config;
  serverIdentity = new MemoryIdentity(await ca.issue('default', 'reviews'));
  server = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off', identity: serverIdentity }, withMtls(serverConfig, { mode: 'STRICT' }));
});

test.after(async () => {
  await Promise.all(clients.map((c) => c.stop(100)));
  await server.stop(100);
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

test('STRICT: mTLS between two proxies; the server side sees the peer principal (policy and telemetry)', async () => {
  const client = await clientProxy(await ca.issue('default', 'productpage'));
  const res = await request(client.outboundPort, { path: '/reviews/1', headers: { host: 'reviews' } });
  assert.is(res.status, 200);
  assert.is(JSON.parse(res.body).upstream, 'reviews-app');
  const evil = await clientProxy(await ca.issue('default', 'evil'));
  const denied = await request(evil.outboundPort, { path: '/reviews/1', headers: { host: 'reviews' } });
  assert.is(denied.status, 403, 'AuthorizationPolicy denies the evil principal');
  const text = (await request(server.adminPort, { path: '/stats/prometheus' })).body;
  const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('response_code="200"') && l.includes('reporter="destination"'));
  assert.ok(line, 'inbound request counted');
  assert.match(line!, /source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/productpage"/);
  assert.match(line!, /connection_security_policy="mutual_tls"/);
});

test('STRICT: HTTP/2 (ALPN h2) over mTLS to an HTTP/2 app', async () => {
  const app2 = await startHttp2('reviews-h2');
  const server2 = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app2.port, accessLog: 'off', identity: new MemoryIdentity(await ca.issue('default', 'reviews')) },
    withMtls(serverConfig, { mode: 'STRICT' }),
  );
  try {
    const client = await clientProxy(await ca.issue('default', 'productpage'), undefined, 'http2', server2.inboundPort);
    for (let i = 0; i < 3; i++) {
      const res = await request(client.outboundPort, { path: `/h2/${i}`, headers: { host: 'reviews' } });
      assert.is(res.status, 200);
      assert.is(JSON.parse(res.body).upstream, 'reviews-h2');
    }
  } finally {
    await server2.stop(100);
    await app2.close();
  }
});

test('STRICT refuses a plaintext client, a client without certificate, a client cert from another CA, an expired or not-yet-valid cert', async () => {
  assert.instance(await request(server.inboundPort, { path: '/', headers: { host: 'reviews' } }).catch((err: Error) => err), Error, 'plaintext refused');
  const before = app.received.length;
  assert.instance(await tlsGet(server.inboundPort, undefined, [ca.rootPem]), Error);
  assert.instance(await tlsGet(server.inboundPort, await otherCa.issue('default', 'productpage'), [ca.rootPem]), Error);
  const expired = await ca.issue('default', 'productpage', { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  assert.instance(await tlsGet(server.inboundPort, expired, [ca.rootPem]), Error);
  const future = await ca.issue('default', 'productpage', { notBefore: new Date(Date.now() + 3600_000), notAfter: new Date(Date.now() + 7200_000) });
  assert.instance(await tlsGet(server.inboundPort, future, [ca.rootPem]), Error);
  assert.is(await tlsGet(server.inboundPort, await ca.issue('default', 'productpage'), [ca.rootPem]), 200);
  assert.is(app.received.length, before + 1);
});

test('the client refuses a server cert from another CA (503 UF)', async () => {
  const client = await clientProxy(await otherCa.issue('default', 'productpage'));
  const res = await request(client.outboundPort, { path: '/', headers: { host: 'reviews' } });
  assert.is(res.status, 503);
});

test('outbound: a peer SPIFFE id not in subjectAltNames is refused with 503 UF and a clear detail', async () => {
  const client = await clientProxy(await ca.issue('default', 'productpage'), { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/default/sa/ratings'] });
  const res = await request(client.outboundPort, { path: '/', headers: { host: 'reviews' } });
  assert.is(res.status, 503);
  assert.match(res.body, /connection failure/);
  assert.match(res.body, /sa\/reviews does not match the expected spiffe:\/\/cluster.local\/ns\/default\/sa\/ratings/);
  const h2 = await clientProxy(await ca.issue('default', 'productpage'), { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://cluster.local/ns/default/sa/ratings'] }, 'http2');
  assert.is((await request(h2.outboundPort, { path: '/', headers: { host: 'reviews' } })).status, 503);
});

test('PERMISSIVE serves mTLS and plaintext on the same port', async () => {
  await setServerMode('PERMISSIVE');
  const client = await clientProxy(await ca.issue('default', 'productpage'));
  assert.is((await request(client.outboundPort, { path: '/m', headers: { host: 'reviews' } })).status, 200);
  assert.is((await request(server.inboundPort, { path: '/p', headers: { host: 'reviews' } })).status, 200);
  assert.is(await tlsGet(server.inboundPort, await ca.issue('default', 'productpage'), [ca.rootPem]), 200);
});

test('DISABLE: plaintext only (a TLS client fails)', async () => {
  await setServerMode('DISABLE');
  assert.is((await request(server.inboundPort, { path: '/p', headers: { host: 'reviews' } })).status, 200);
  assert.instance(await tlsGet(server.inboundPort, await ca.issue('default', 'productpage'), [ca.rootPem]), Error);
  await setServerMode('STRICT');
});

test('portLevel mode of the app port overrides the workload mode', async () => {
  await server.applyConfig(withMtls(serverConfig, { mode: 'STRICT', portLevel: { [app.port]: 'PERMISSIVE' } }));
  assert.is((await request(server.inboundPort, { path: '/p', headers: { host: 'reviews' } })).status, 200);
  await setServerMode('STRICT');
  assert.instance(await request(server.inboundPort, { path: '/', headers: { host: 'reviews' } }).catch((err: Error) => err), Error, 'plaintext refused');
});

test('without identity on the client, a DestinationRule ISTIO_MUTUAL cluster fails (503) instead of going plaintext; auto mTLS goes plaintext', async () => {
  await setServerMode('PERMISSIVE');
  try {
    const client = await clientProxy(undefined);
    const res = await request(client.outboundPort, { path: '/', headers: { host: 'reviews' } });
    assert.is(res.status, 503, 'even though the server would take plaintext');
    assert.match(res.body, /needs the workload certificate: this proxy has no workload identity/);
    // Auto mTLS on a proxy without any identity: mTLS is off there, plaintext to the sidecar.
    const auto = await clientProxy(undefined, { mode: 'ISTIO_MUTUAL', subjectAltNames: [REVIEWS], auto: true }, 'http1', undefined, { [TLS_MODE_LABEL]: 'istio' });
    assert.is((await request(auto.outboundPort, { path: '/', headers: { host: 'reviews' } })).status, 200);
  } finally {
    await setServerMode('STRICT');
  }
});

test('a raw plaintext connection under STRICT is closed without an answer', async () => {
  const got = await new Promise<string>((resolve) => {
    const s = net.connect(server.inboundPort, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: reviews\r\n\r\n'));
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', () => {});
  });
  assert.not.match(got, /^HTTP\/1.1 200/);
});

test('rotation of the workload certs and of the root under continuous load: zero failed requests', async () => {
  const newCa = await createTestCa('next root');
  const both = [ca.rootPem, newCa.rootPem];
  const clientIdentity = new MemoryIdentity(await ca.issue('default', 'productpage'));
  const name = 'outbound|9080||reviews.default.svc.cluster.local';
  const config = proxyConfig({
    virtualHosts: [{ name: 'reviews', domains: ['reviews'], routes: [forward('r', name)] }],
    clusters: [{ ...cluster(name, [{ port: server.inboundPort }]), tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [REVIEWS] } }],
  });
  const client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity: clientIdentity }, config);
  clients.push(client);
  let stop = false;
  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + 10_000;
  const worker = async () => {
    while (!stop && ok + failures.length < 2000 && Date.now() < deadline) {
      const res = await request(client.outboundPort, { path: '/load', headers: { host: 'reviews' } }).catch((err: Error) => ({ status: 0, body: err.message }));
      if (res.status === 200) ok++;
      else failures.push(`${res.status} ${res.body}`);
    }
  };
  const load = Promise.all([worker(), worker(), worker(), worker()]);
  const pause = () => new Promise((r) => setTimeout(r, 150));
  await pause();
  // 1. Workload certificates renewed (same root).
  serverIdentity.set(await ca.issue('default', 'reviews'));
  clientIdentity.set(await ca.issue('default', 'productpage'));
  await pause();
  // 2. Root rotation: both roots trusted, workloads re-issued by the new root, then the old root removed.
  serverIdentity.set(await ca.issue('default', 'reviews', { bundle: both }));
  clientIdentity.set(await ca.issue('default', 'productpage', { bundle: both }));
  await pause();
  serverIdentity.set(await newCa.issue('default', 'reviews', { bundle: both }));
  await pause();
  clientIdentity.set(await newCa.issue('default', 'productpage', { bundle: both }));
  await pause();
  serverIdentity.set(await newCa.issue('default', 'reviews', { bundle: [newCa.rootPem] }));
  clientIdentity.set(await newCa.issue('default', 'productpage', { bundle: [newCa.rootPem] }));
  await pause();
  stop = true;
  await load;
  assert.equal(failures, []);
  assert.ok(ok > 20, `requests completed: ${ok}`);
  // The old root is gone: a client still on it is refused.
  assert.instance(await tlsGet(server.inboundPort, await ca.issue('default', 'productpage'), [ca.rootPem, newCa.rootPem]), Error);
  assert.is(await tlsGet(server.inboundPort, await newCa.issue('default', 'productpage'), [newCa.rootPem]), 200);
});

test.run();
