// Circuit breakers (connectionPool limits) under concurrent load, mirroring, and connection handling
// (slow and oversized request heads, idle keep-alive connections) with real loopback servers.
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RouteConfig } from '../../mesh/src/proxy-config.ts';
import { createListener } from '../src/listener/listener.ts';
import type { Proxy } from '../src/proxy.ts';
import { cluster, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

function fwd(name: string, clusterName: string, extra: Partial<Extract<RouteConfig['action'], { kind: 'forward' }>> = {}): RouteConfig {
  return { name, match: [], action: { kind: 'forward', destinations: [{ cluster: clusterName, weight: 100 }], timeoutMs: 0, ...extra } };
}

async function metric(adminPort: number, name: string, clusterName: string): Promise<number> {
  const body = (await request(adminPort, { path: '/stats/prometheus' })).body;
  for (const line of body.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(`cluster="${clusterName}"`) && !line.includes('response_flag')) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const servers: TestServer[] = [];
let slow: TestServer;
let slowInFlight = 0;
let slowMaxInFlight = 0;
let main: TestServer;
let shadow: TestServer;
let hangingShadow: TestServer;
let deadPort = 0;
let proxy: Proxy;

test.before(async () => {
  slow = await startHttp1('slow', (_req, res) => {
    slowInFlight++;
    slowMaxInFlight = Math.max(slowMaxInFlight, slowInFlight);
    setTimeout(() => {
      slowInFlight--;
      res.end('slow ok');
    }, 300);
  });
  main = await startHttp1('main');
  shadow = await startHttp1('shadow');
  hangingShadow = await startHttp1('hanging-shadow', (_req, res) => {
    const t = setTimeout(() => res.end('late'), 5000);
    res.on('close', () => clearTimeout(t));
  });
  servers.push(slow, main, shadow, hangingShadow);
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  deadPort = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));

  proxy = await startProxy(
    proxyConfig({
      clusters: [
        cluster('limited', [{ port: slow.port }], { connectionPool: { http2MaxRequests: 5 } }),
        cluster('pending', [{ port: slow.port }], { connectionPool: { maxConnections: 1, http1MaxPendingRequests: 2 } }),
        cluster('main', [{ port: main.port }]),
        cluster('shadow', [{ port: shadow.port }]),
        cluster('shadow-dead', [{ port: deadPort }]),
        cluster('shadow-hang', [{ port: hangingShadow.port }]),
      ],
      virtualHosts: [
        { name: 'limited', domains: ['limited'], routes: [fwd('limited', 'limited')] },
        { name: 'pending', domains: ['pending'], routes: [fwd('pending', 'pending')] },
        { name: 'mirrored', domains: ['mirrored'], routes: [fwd('mirrored', 'main', { mirror: { cluster: 'shadow', percentage: 50 } })] },
        { name: 'mirrored-all', domains: ['mirrored-all'], routes: [fwd('mirrored-all', 'main', { mirror: { cluster: 'shadow', percentage: 100 } })] },
        { name: 'mirror-dead', domains: ['mirror-dead'], routes: [fwd('mirror-dead', 'main', { mirror: { cluster: 'shadow-dead', percentage: 100 } })] },
        { name: 'mirror-hang', domains: ['mirror-hang'], routes: [fwd('mirror-hang', 'main', { timeoutMs: 500, mirror: { cluster: 'shadow-hang', percentage: 100 } })] },
      ],
    }),
  );
});

test.after(async () => {
  await proxy?.stop(0);
  await Promise.all(servers.map((s) => s.close()));
});

test('http2MaxRequests 5: of 50 concurrent requests 5 reach the upstream, the rest get 503 UO at once; then it recovers', async () => {
  slow.received.length = 0;
  slowMaxInFlight = 0;
  const results = await Promise.all(
    Array.from({ length: 50 }, async () => {
      const started = Date.now();
      const r = await request(proxy.outboundPort, { headers: { host: 'limited' } });
      return { ...r, took: Date.now() - started };
    }),
  );
  const ok = results.filter((r) => r.status === 200);
  const shed = results.filter((r) => r.status === 503);
  assert.is(ok.length, 5);
  assert.is(shed.length, 45);
  assert.ok(shed.every((r) => r.body === 'upstream connect error or disconnect/reset before headers. reset reason: overflow'));
  assert.ok(shed.every((r) => r.took < 250), 'overflow answers do not wait for the upstream');
  assert.is(slow.received.length, 5);
  assert.ok(slowMaxInFlight <= 5);
  assert.is(await metric(proxy.adminPort, 'wasmesh_proxy_upstream_overflow_total', 'limited'), 45);
  const prom = (await request(proxy.adminPort, { path: '/stats/prometheus' })).body;
  assert.match(prom, /wasmesh_proxy_upstream_failures_total\{cluster="limited",response_flag="UO"\} 45/);
  // Recovered: within the limit, everything goes through.
  const again = await Promise.all(Array.from({ length: 5 }, () => request(proxy.outboundPort, { headers: { host: 'limited' } })));
  assert.ok(again.every((r) => r.status === 200));
});

test('maxConnections 1 + http1MaxPendingRequests 2: one running, two waiting, the rest shed', async () => {
  slow.received.length = 0;
  const results = await Promise.all(Array.from({ length: 10 }, () => request(proxy.outboundPort, { headers: { host: 'pending' } })));
  assert.is(results.filter((r) => r.status === 200).length, 3);
  assert.is(results.filter((r) => r.status === 503).length, 7);
  assert.is(slow.received.length, 3);
  const later = await request(proxy.outboundPort, { headers: { host: 'pending' } });
  assert.is(later.status, 200);
});

test('mirror 50%: the shadow gets about half of 200 requests, with the authority suffixed -shadow', async () => {
  shadow.received.length = 0;
  main.received.length = 0;
  for (let batch = 0; batch < 10; batch++) {
    const rs = await Promise.all(Array.from({ length: 20 }, () => request(proxy.outboundPort, { headers: { host: 'mirrored' } })));
    assert.ok(rs.every((r) => r.status === 200 && JSON.parse(r.body).upstream === 'main'));
  }
  assert.is(main.received.length, 200);
  // Mirrors are fire and forget: let the last ones land.
  let last = -1;
  await until('mirrors to settle', () => {
    const n = shadow.received.length;
    const stable = n === last;
    last = n;
    return stable;
  });
  const n = shadow.received.length;
  // Binomial(200, 0.5): sd about 7; 65..135 is five standard deviations.
  assert.ok(n >= 65 && n <= 135, `shadow got ${n} of 200`);
  assert.ok(shadow.received.every((r) => r.headers.host === 'mirrored-shadow'));
  assert.is(await metric(proxy.adminPort, 'wasmesh_proxy_mirror_requests_total', 'shadow'), n);
});

test('mirror copies the request body', async () => {
  shadow.received.length = 0;
  const r = await request(proxy.outboundPort, { method: 'POST', path: '/submit', headers: { host: 'mirrored-all:8080', 'content-type': 'text/plain' }, body: 'payload-123' });
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body).body, 'payload-123');
  await until('the mirror', () => shadow.received.length === 1);
  assert.is(shadow.received[0]!.body, 'payload-123');
  assert.is(shadow.received[0]!.url, '/submit');
  assert.is(shadow.received[0]!.headers.host, 'mirrored-all-shadow:8080');
});

test("a failing or hanging mirror does not affect the client's response", async () => {
  for (let i = 0; i < 5; i++) {
    const r = await request(proxy.outboundPort, { headers: { host: 'mirror-dead' } });
    assert.is(r.status, 200);
    assert.is(JSON.parse(r.body).upstream, 'main');
  }
  await until('mirror failures to be counted', () => true);
  const started = Date.now();
  const r = await request(proxy.outboundPort, { headers: { host: 'mirror-hang' } });
  assert.is(r.status, 200);
  assert.ok(Date.now() - started < 400, 'the response does not wait for the mirror');
  await until('hanging mirror to time out', () => hangingShadow.received.length === 1);
  await new Promise((res) => setTimeout(res, 600));
  assert.ok((await metric(proxy.adminPort, 'wasmesh_proxy_mirror_failures_total', 'shadow-dead')) >= 5);
  assert.is(await metric(proxy.adminPort, 'wasmesh_proxy_mirror_failures_total', 'shadow-hang'), 1);
});

test('listener: a request head too large is 431, one too slow is 408', async () => {
  const listener = await createListener({
    host: '127.0.0.1',
    port: 0,
    headersTimeoutMs: 200,
    maxHeaderSize: 1024,
    onRequest: (_req, res) => res.end('ok'),
  });
  try {
    const big = await request(listener.port, { headers: { 'x-big': 'a'.repeat(4000) } });
    assert.is(big.status, 431);
    const fine = await request(listener.port, {});
    assert.is(fine.status, 200);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(listener.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n'));
      let out = '';
      socket.on('data', (d) => (out += d.toString()));
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
      setTimeout(() => {
        socket.destroy();
        resolve(out);
      }, 3000);
    });
    assert.match(answer, /^HTTP\/1\.1 408 /);
  } finally {
    listener.destroy();
    await listener.close();
  }
});

test('listener: an idle keep-alive connection is closed after keepAliveTimeoutMs', async () => {
  const listener = await createListener({ host: '127.0.0.1', port: 0, keepAliveTimeoutMs: 150, onRequest: (_req, res) => res.end('ok') });
  try {
    const { out, idleMs } = await new Promise<{ out: string; idleMs: number }>((resolve, reject) => {
      const socket = net.connect(listener.port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
      let text = '';
      let answeredAt = 0;
      socket.on('data', (d) => {
        text += d.toString();
        answeredAt = Date.now();
      });
      socket.on('close', () => resolve({ out: text, idleMs: Date.now() - answeredAt }));
      socket.on('error', reject);
    });
    assert.match(out, /^HTTP\/1\.1 200 /);
    assert.match(out, /keep-alive/i);
    // Node keeps an idle socket for keepAliveTimeout plus its 1 s keepAliveTimeoutBuffer.
    assert.ok(idleMs >= 100 && idleMs < 3000, `closed after ${idleMs} ms idle`);
  } finally {
    listener.destroy();
    await listener.close();
  }
});

test.run();
