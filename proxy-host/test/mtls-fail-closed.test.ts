// mTLS fails closed: a sidecar whose inbound PeerAuthentication is STRICT never answers plaintext.
// Without a usable workload certificate (none yet, expired, or no identity at all) it closes every
// connection, says why in /ready (503) and counts the refusals; PERMISSIVE then serves plaintext
// only. On the client side, a destination that needs mTLS fails (503) instead of going plaintext.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MtlsConfig, ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { MemoryIdentity } from '../src/identity/static-identity.ts';
import type { WorkloadCertificate } from '../src/identity/types.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { request, startHttp1, startHttp2, type TestServer } from './support/servers.ts';
import { createTestCa, type TestCa } from './support/test-ca.ts';

let app: TestServer;
let ca: TestCa;
const proxies: Proxy[] = [];

function withMtls(mtls: MtlsConfig, config: ProxyConfig = proxyConfig({})): ProxyConfig {
  return { ...config, mtls, version: `${config.version.slice(0, 40)}-${JSON.stringify(mtls)}` };
}

async function sidecar(mode: MtlsConfig['mode'], identity?: MemoryIdentity, appPort = app.port): Promise<Proxy> {
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort, accessLog: 'off', ...(identity ? { identity } : {}) }, withMtls({ mode }));
  proxies.push(proxy);
  return proxy;
}

/** Sends a plaintext request on a raw connection; resolves with what came back before the close. */
function rawPlaintext(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nhost: reviews\r\n\r\n'));
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('close', () => resolve(data));
    s.on('error', () => {});
    s.setTimeout(5000, () => s.destroy());
  });
}

/** An mTLS request with `cert`; resolves with the status or the error. */
function mtlsGet(port: number, cert: WorkloadCertificate): Promise<number | Error> {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/',
      headers: { host: 'reviews' },
      createConnection: () => tls.connect({ host: '127.0.0.1', port, ca: cert.trustBundlePem, key: cert.keyPem, cert: cert.certChainPem, checkServerIdentity: () => undefined }),
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', (err) => resolve(err));
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function ready(proxy: Proxy): Promise<{ status: number; body: string }> {
  const res = await request(proxy.adminPort, { path: '/ready' });
  return { status: res.status, body: res.body };
}

async function refusedCount(proxy: Proxy, reason: string): Promise<number> {
  const text = (await request(proxy.adminPort, { path: '/stats/prometheus' })).body;
  const m = new RegExp(`^wasmesh_proxy_mtls_refused_connections_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test.before(async () => {
  app = await startHttp1('reviews-app');
  ca = await createTestCa();
});

test.after(async () => {
  await Promise.all(proxies.map((p) => p.stop(100)));
  await app.close();
});

test('STRICT before the first certificate: plaintext is closed unanswered, /ready says why, refusals are counted; the certificate opens mTLS', async () => {
  const identity = new MemoryIdentity();
  const proxy = await sidecar('STRICT', identity);
  const before = app.received.length;
  for (let i = 0; i < 3; i++) assert.is(await rawPlaintext(proxy.inboundPort), '', 'closed without a byte');
  assert.is(app.received.length, before, 'nothing reached the app');
  const r = await ready(proxy);
  assert.is(r.status, 503);
  assert.match(r.body, 'inbound STRICT mTLS without a workload certificate (none yet)');
  assert.is(await refusedCount(proxy, 'no_certificate'), 3);

  const cert = await ca.issue('default', 'reviews');
  identity.set(cert);
  assert.is(await mtlsGet(proxy.inboundPort, await ca.issue('default', 'productpage')), 200);
  assert.is(app.received.length, before + 1);
  assert.equal(await ready(proxy), { status: 200, body: 'LIVE\n' });
  assert.is(await rawPlaintext(proxy.inboundPort).then((d) => d.startsWith('HTTP/1.1 200')), false, 'still no plaintext');
});

test('STRICT without any identity (standalone without --cert-dir): every connection refused, not ready', async () => {
  const proxy = await sidecar('STRICT');
  assert.is(await rawPlaintext(proxy.inboundPort), '');
  const r = await ready(proxy);
  assert.is(r.status, 503);
  assert.match(r.body, 'this proxy has no workload identity');
  assert.is(await refusedCount(proxy, 'no_certificate'), 1);
  // Switching the config to PERMISSIVE makes it ready and serve plaintext.
  await proxy.applyConfig(withMtls({ mode: 'PERMISSIVE' }));
  assert.equal(await ready(proxy), { status: 200, body: 'LIVE\n' });
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'reviews' } })).status, 200);
});

test('a certificate that expires while serving stops mTLS at once: refused (counted as expired), not ready', async () => {
  const identity = new MemoryIdentity(await ca.issue('default', 'reviews', { notAfter: new Date(Date.now() + 1500) }));
  const proxy = await sidecar('STRICT', identity);
  const client = await ca.issue('default', 'productpage');
  assert.is(await mtlsGet(proxy.inboundPort, client), 200);
  await until('the certificate to expire', async () => (await ready(proxy)).status === 503);
  assert.match((await ready(proxy)).body, /the certificate expired at \d{4}-/);
  assert.instance(await mtlsGet(proxy.inboundPort, client), Error);
  assert.is(await rawPlaintext(proxy.inboundPort), '');
  assert.is(await refusedCount(proxy, 'certificate_expired'), 2);
  // A renewed certificate brings it back.
  identity.set(await ca.issue('default', 'reviews'));
  assert.is(await mtlsGet(proxy.inboundPort, client), 200);
  assert.is((await ready(proxy)).status, 200);
});

test('an expired certificate given at start is not used', async () => {
  const expired = await ca.issue('default', 'reviews', { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
  const proxy = await sidecar('STRICT', new MemoryIdentity(expired));
  assert.instance(await mtlsGet(proxy.inboundPort, await ca.issue('default', 'productpage')), Error);
  assert.match((await ready(proxy)).body, 'the certificate expired at');
});

test('PERMISSIVE without a certificate: plaintext only (Istio does the same), TLS attempts are closed; ready', async () => {
  const proxy = await sidecar('PERMISSIVE', new MemoryIdentity());
  assert.is((await request(proxy.inboundPort, { path: '/', headers: { host: 'reviews' } })).status, 200);
  assert.instance(await mtlsGet(proxy.inboundPort, await ca.issue('default', 'productpage')), Error);
  assert.is(await refusedCount(proxy, 'no_certificate'), 1);
  assert.is((await ready(proxy)).status, 200);
});

test('plaintext connections (HTTP/1.1 keep-alive, HTTP/2) accepted under PERMISSIVE carry no request once the mode is STRICT', async () => {
  // Inbound HTTP/2 reaches the app as HTTP/2: that sidecar fronts an HTTP/2 app, the other the HTTP/1.1 one.
  const app2 = await startHttp2('reviews-h2');
  const identity = new MemoryIdentity(await ca.issue('default', 'reviews'));
  const h2Proxy = await sidecar('PERMISSIVE', identity, app2.port);
  const proxy = await sidecar('PERMISSIVE', identity);
  const session = http2.connect(`http://127.0.0.1:${h2Proxy.inboundPort}`);
  session.on('error', () => {});
  const h2Get = () =>
    new Promise<number | Error>((resolve) => {
      const stream = session.request({ ':path': '/', ':authority': 'reviews' });
      stream.on('response', (headers) => resolve(Number(headers[':status'])));
      stream.on('error', (err) => resolve(err));
      stream.on('close', () => resolve(new Error('stream closed without an answer')));
      stream.resume();
      stream.end();
    });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const h1Get = () =>
    new Promise<number | Error>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: proxy.inboundPort, path: '/', headers: { host: 'reviews' }, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', (err) => resolve(err));
    });
  try {
    assert.is(await h2Get(), 200);
    assert.is(await h1Get(), 200);
    await h2Proxy.applyConfig(withMtls({ mode: 'STRICT' }));
    await proxy.applyConfig(withMtls({ mode: 'STRICT' }));
    assert.instance(await h2Get(), Error, 'HTTP/2 over plaintext refused');
    assert.instance(await h1Get(), Error, 'HTTP/1.1 keep-alive over plaintext refused');
    assert.is(await refusedCount(h2Proxy, 'plaintext'), 1);
    assert.is(await refusedCount(proxy, 'plaintext'), 1);
  } finally {
    session.destroy();
    agent.destroy();
    await app2.close();
  }
});

test('a failed mTLS handshake (a client certificate from another CA) is counted', async () => {
  const proxy = await sidecar('STRICT', new MemoryIdentity(await ca.issue('default', 'reviews')));
  const other = await createTestCa('another root');
  const stranger = await other.issue('default', 'productpage', { bundle: [ca.rootPem] });
  assert.instance(await mtlsGet(proxy.inboundPort, stranger), Error);
  await until('the refusal to be counted', async () => (await refusedCount(proxy, 'handshake_failed')) === 1);
});

test('client side: mTLS destinations fail with 503 while the certificate is missing; auto mTLS to a plain endpoint stays plaintext', async () => {
  const server = await sidecar('STRICT', new MemoryIdentity(await ca.issue('default', 'reviews')));
  const sidecarCluster = 'outbound|9080||reviews.default.svc.cluster.local';
  const plainCluster = 'outbound|9080||details.default.svc.cluster.local';
  const config = proxyConfig({
    virtualHosts: [
      { name: 'reviews', domains: ['reviews'], routes: [forward('r', sidecarCluster)] },
      { name: 'details', domains: ['details'], routes: [forward('d', plainCluster)] },
    ],
    clusters: [
      { ...cluster(sidecarCluster, [{ port: server.inboundPort, tlsMode: 'istio' }]), tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [], auto: true } },
      { ...cluster(plainCluster, [{ port: app.port }]), tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [], auto: true } },
    ],
  });
  const identity = new MemoryIdentity();
  const client = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', identity }, config);
  proxies.push(client);
  const res = await request(client.outboundPort, { path: '/', headers: { host: 'reviews' } });
  assert.is(res.status, 503);
  assert.match(res.body, 'mTLS (ISTIO_MUTUAL) needs the workload certificate: none yet');
  assert.is((await request(client.outboundPort, { path: '/', headers: { host: 'details' } })).status, 200, 'no sidecar there: plaintext');
  identity.set(await ca.issue('default', 'productpage'));
  assert.is((await request(client.outboundPort, { path: '/', headers: { host: 'reviews' } })).status, 200);
});

test.run();
