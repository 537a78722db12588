// Managed mode with identity, in one process: an orchestrator with a CA (discovery server over a
// memory store and tokens), two proxies driven by XdsClient whose certificates come from
// OrchestratorIdentity (productpage -> reviews -> app), PeerAuthentication STRICT applied through the
// store. Requests go over mTLS with the SPIFFE ids of the proxy tokens; short-lived certificates are
// renewed under load without a failed request; a token for one namespace gets no identity in another.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TokenStore } from '../../orchestrator/src/auth/tokens.ts';
import { CertificateAuthority } from '../../orchestrator/src/certs/ca.ts';
import { MemoryStore } from '../../orchestrator/src/store/memory-store.ts';
import type { ResourceInput } from '../../orchestrator/src/store/types.ts';
import { startXdsServer, type XdsServer } from '../../orchestrator/src/xds/server.ts';
import { MetricsRegistry } from '../../wasm/src/index.ts';
import type { ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { createHttpCallout } from '../../proxy-host/src/http-callout.ts';
import { OrchestratorIdentity } from '../../proxy-host/src/identity/orchestrator-identity.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { EndpointState } from '../../proxy-host/src/upstream/endpoint.ts';
import { HealthChecker, type CheckOutcome } from '../../proxy-host/src/upstream/health-checker.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';

type HealthCheckTargetTls = NonNullable<ConstructorParameters<typeof HealthChecker>[0]['tls']>;

const NS = 'default';
const REVIEWS_HOST = `reviews.${NS}.svc.cluster.local`;
const TTL_SECONDS = 4;
const quiet = () => undefined;
const logs: string[] = [];

interface Managed {
  proxy: Proxy;
  client: XdsClient;
  identity: OrchestratorIdentity;
}

let dir = '';
let app: TestServer;
let store: MemoryStore;
let tokens: TokenStore;
let ca: CertificateAuthority;
let server: XdsServer;
let reviews: Managed;
let productpage: Managed;

function workload(name: string): WorkloadIdentity {
  return { name, namespace: NS, labels: { app: name }, serviceAccount: name };
}

/** A managed proxy as `wasmesh proxy --orchestrator` wires it: identity first, then the config stream. */
async function managedProxy(w: WorkloadIdentity, appPort?: number): Promise<Managed> {
  const token = tokens.create('proxy', { namespace: w.namespace, serviceAccount: w.serviceAccount });
  const address = `127.0.0.1:${server.port}`;
  const identity = new OrchestratorIdentity({
    address,
    token,
    namespace: w.namespace,
    serviceAccount: w.serviceAccount,
    ttlSeconds: TTL_SECONDS,
    backoff: { initialMs: 100, maxMs: 1000 },
    log: (level, message) => void logs.push(`${w.name} identity ${level} ${message}`),
  });
  const first = await identity.waitForCertificate(5000);
  assert.ok(first, `${w.name} got no certificate: ${identity.status().lastError}`);
  let proxy: Proxy | undefined;
  const client = new XdsClient({
    address,
    token,
    workload: w,
    dataDir: join(dir, w.name),
    backoff: { initialMs: 50, maxMs: 300 },
    apply: async (config: ProxyConfig) => {
      if (proxy) return proxy.applyConfig(config);
      proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity, ...(appPort ? { appPort } : {}) }, config);
    },
    log: (level, message) => void logs.push(`${w.name} xds ${level} ${message}`),
  });
  client.start();
  await client.firstConfig();
  return { proxy: proxy!, client, identity };
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-15).join('\n')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const ask = (path = '/reviews/1') => request(productpage.proxy.outboundPort, { path, headers: { host: REVIEWS_HOST } });

const peerAuthentication: ResourceInput = {
  apiVersion: 'security.istio.io/v1',
  kind: 'PeerAuthentication',
  metadata: { name: 'default', namespace: NS },
  spec: { mtls: { mode: 'STRICT' } },
};

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-managed-mtls-'));
  app = await startHttp1('reviews-app');
  store = new MemoryStore();
  tokens = TokenStore.inMemory();
  ca = await CertificateAuthority.open({ dir: join(dir, 'ca') });
  server = await startXdsServer({ store, tokens, ca, host: '127.0.0.1', port: 0, debounceMs: 20, maxDelayMs: 200, log: (level, message) => void logs.push(`orchestrator ${level} ${message}`) });
  await store.put(peerAuthentication);
  reviews = await managedProxy(workload('reviews'), app.port);
  // reviews is a mesh service whose endpoint is the reviews proxy's inbound port, run by service account reviews.
  await store.putAll([
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'reviews', namespace: NS },
      spec: { hosts: [REVIEWS_HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], workloadSelector: { labels: { app: 'reviews' } } },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'reviews-1', namespace: NS },
      // The sidecar label (as a registered sidecar carries it): clients' auto mTLS sends it mTLS.
      spec: { address: '127.0.0.1', ports: { http: reviews.proxy.inboundPort }, labels: { app: 'reviews', 'security.istio.io/tlsMode': 'istio' }, serviceAccount: 'reviews' },
    },
  ]);
  productpage = await managedProxy(workload('productpage'));
});

test.after(async () => {
  for (const m of [productpage, reviews]) {
    if (!m) continue;
    await m.client.stop();
    await m.proxy.stop(100); // closes the identity too
  }
  await server?.close();
  await app?.close();
  await rm(dir, { recursive: true, force: true });
});

test('certificates from the orchestrator: the SPIFFE id of the token, the CA bundle, key made locally', async () => {
  for (const [m, sa] of [[reviews, 'reviews'], [productpage, 'productpage']] as const) {
    const cert = m.identity.current()!;
    assert.is(cert.spiffeId, `spiffe://cluster.local/ns/${NS}/sa/${sa}`);
    assert.equal(cert.trustBundlePem, ca.trustBundle());
    assert.ok(cert.notAfter.getTime() - Date.now() <= TTL_SECONDS * 1000 + 1000, 'the requested ttl');
    assert.match(cert.keyPem, /BEGIN PRIVATE KEY/);
  }
  assert.is(reviews.proxy.inboundMtlsMode(), 'STRICT', 'PeerAuthentication from the store');
  // The store changes (ServiceEntry, WorkloadEntry) may reach productpage in a second push.
  const expectedTls = { mode: 'ISTIO_MUTUAL', subjectAltNames: [`spiffe://cluster.local/ns/${NS}/sa/reviews`], auto: true };
  await waitFor('auto mTLS on the reviews cluster', () => JSON.stringify(productpage.proxy.config.clusters[`outbound|9080||${REVIEWS_HOST}`]?.tls) === JSON.stringify(expectedTls));
  assert.equal(productpage.proxy.config.clusters[`outbound|9080||${REVIEWS_HOST}`]?.tls, expectedTls);
  assert.is(productpage.proxy.config.clusters[`outbound|9080||${REVIEWS_HOST}`]?.endpoints[0]?.tlsMode, 'istio', 'the sidecar endpoint takes mTLS');
});

test('STRICT: requests go over mTLS; the server side sees the client principal; plaintext is refused', async () => {
  await waitFor('a route to reviews', async () => (await ask()).status === 200);
  const res = await ask();
  assert.is(res.status, 200);
  assert.is(JSON.parse(res.body).upstream, 'reviews-app');
  const text = (await request(reviews.proxy.adminPort, { path: '/stats/prometheus' })).body;
  const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="destination"') && l.includes('response_code="200"'));
  assert.ok(line, 'inbound request counted');
  assert.match(line!, /source_principal="spiffe:\/\/cluster.local\/ns\/default\/sa\/productpage"/);
  assert.match(line!, /connection_security_policy="mutual_tls"/);
  const expiry = /^wasmesh_proxy_cert_expiry_seconds (\S+)$/m.exec(text);
  assert.ok(expiry && Number(expiry[1]) > 0 && Number(expiry[1]) <= TTL_SECONDS, `expiry gauge: ${expiry?.[1]}`);
  assert.match(text, /^wasmesh_proxy_cert_renewal_failures_total 0$/m);
  const plain = await request(reviews.proxy.inboundPort, { path: '/', headers: { host: 'reviews' } }).catch((err: Error) => err);
  assert.instance(plain, Error, 'plaintext refused by STRICT');
});

test('short-lived certificates are renewed before expiry; requests keep succeeding', async () => {
  const before = { reviews: reviews.identity.current()!, productpage: productpage.identity.current()! };
  const renewals = { reviews: reviews.identity.status().renewals, productpage: productpage.identity.status().renewals };
  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + (TTL_SECONDS + 2) * 1000;
  const worker = async () => {
    while (Date.now() < deadline && ok + failures.length < 5000) {
      const res = await ask('/renewal').catch((err: Error) => ({ status: 0, body: err.message }));
      if (res.status === 200) ok++;
      else failures.push(`${res.status} ${res.body}`);
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  assert.equal(failures.slice(0, 5), []);
  assert.ok(ok > 20, `requests completed: ${ok}`);
  for (const name of ['reviews', 'productpage'] as const) {
    const m = name === 'reviews' ? reviews : productpage;
    const now = m.identity.current()!;
    assert.ok(m.identity.status().renewals >= renewals[name] + 2, `${name} renewed: ${m.identity.status().renewals - renewals[name]}`);
    assert.ok(now.notAfter > before[name].notAfter, `${name} has a newer certificate`);
    assert.ok(now.notAfter.getTime() > Date.now(), `${name} certificate is valid`);
    assert.is.not(now.keyPem, before[name].keyPem, 'a new key per renewal');
    assert.is(m.identity.status().failures, 0);
  }
});

test('renew() on demand gives a new certificate at once', async () => {
  const before = reviews.identity.current()!;
  let changed = 0;
  const off = reviews.identity.onChange(() => changed++);
  assert.ok(await reviews.identity.renew());
  off();
  assert.ok(changed >= 1);
  assert.is.not(reviews.identity.current()!.certChainPem, before.certChainPem);
  assert.is((await ask()).status, 200);
});

test('an HTTP callout (proxy_http_call) to an ISTIO_MUTUAL cluster goes over mTLS to the STRICT side', async () => {
  const call = createHttpCallout(productpage.proxy.clusters, productpage.proxy.upstreams);
  const res = await call({
    upstream: `outbound|9080||${REVIEWS_HOST}`,
    headers: [':method', 'GET', ':path', '/callout', ':authority', REVIEWS_HOST],
    body: new Uint8Array(),
    trailers: [],
    timeoutMs: 5000,
  });
  assert.ok(res && typeof res === 'object', 'the callout got an answer');
  const status = res.headers[res.headers.indexOf(':status') + 1];
  assert.is(status, '200', Buffer.from(res.body).toString());
  assert.is(JSON.parse(Buffer.from(res.body).toString()).upstream, 'reviews-app');
});

test('active health checks of an ISTIO_MUTUAL cluster use mTLS: pass against STRICT, plaintext and a wrong SPIFFE id do not', async () => {
  const reviewsId = `spiffe://cluster.local/ns/${NS}/sa/reviews`;
  const outcome = async (tls: HealthCheckTargetTls | undefined): Promise<CheckOutcome> => {
    const endpoint = new EndpointState({ address: '127.0.0.1', port: reviews.proxy.inboundPort, labels: {}, weight: 1 });
    const checker = new HealthChecker(
      { name: 'reviews', host: REVIEWS_HOST, protocol: 'http1', endpoints: [endpoint], ...(tls ? { tls } : {}) },
      { intervalMs: 1000, timeoutMs: 2000, healthyThreshold: 1, unhealthyThreshold: 1, check: { kind: 'http', path: '/healthz', expectedStatuses: [] } },
    );
    try {
      return await checker.check(endpoint);
    } finally {
      checker.stop();
    }
  };
  const withIdentity = (sans: string[]): HealthCheckTargetTls => () => {
    const id = productpage.identity.current()!;
    return { kind: 'tls', slot: 'mtls', options: { key: id.keyPem, cert: id.certChainPem, ca: id.trustBundlePem, verify: 'spiffe', subjectAltNames: sans, generation: id.notAfter.getTime() } };
  };
  assert.equal(await outcome(withIdentity([reviewsId])), { result: 'success', detail: 'ok' });
  assert.is((await outcome(undefined)).result, 'network_failure', 'plaintext refused by STRICT');
  assert.is((await outcome(withIdentity(['spiffe://cluster.local/ns/default/sa/ratings']))).result, 'network_failure', 'peer SPIFFE id checked');
});

test('a proxy token for namespace default never gets an identity in namespace other', async () => {
  const token = tokens.create('proxy', { namespace: NS, serviceAccount: 'productpage' });
  const identity = new OrchestratorIdentity({ address: `127.0.0.1:${server.port}`, token, namespace: 'other', serviceAccount: 'productpage', backoff: { initialMs: 100, maxMs: 200 } });
  try {
    const registry = new MetricsRegistry();
    identity.collectMetrics(registry);
    assert.is(await identity.waitForCertificate(800), undefined);
    assert.is(identity.current(), undefined);
    assert.match(identity.status().lastError ?? '', 'PERMISSION_DENIED');
    assert.ok(identity.status().failures >= 1);
    assert.match(registry.renderPrometheus(), /^wasmesh_proxy_cert_renewal_failures_total [1-9]/m);
  } finally {
    await identity.close();
  }
});

test('an orchestrator without a CA: waitForCertificate resolves at once, without identity', async () => {
  const bare = await startXdsServer({ store: new MemoryStore(), tokens, host: '127.0.0.1', port: 0, log: quiet });
  const token = tokens.create('proxy', { namespace: NS, serviceAccount: 'productpage' });
  const identity = new OrchestratorIdentity({ address: `127.0.0.1:${bare.port}`, token, namespace: NS, serviceAccount: 'productpage' });
  try {
    const t0 = Date.now();
    assert.is(await identity.waitForCertificate(10_000), undefined);
    assert.ok(Date.now() - t0 < 5000);
    assert.ok(identity.status().noCa);
    assert.match(identity.status().lastError ?? '', String(grpc.status[grpc.status.UNAVAILABLE]));
  } finally {
    await identity.close();
    await bare.close();
  }
});

test.run();
