// The fault filter in a running proxy (outbound chain): a delayed request waits while 20 concurrent
// other requests pass at once; an aborted request never reaches the upstream; a gRPC abort is a
// trailers-only 200; a client that leaves while delayed is never forwarded. Build first:
//   node scripts/wasmesh.mjs filter build filters/fault
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Proxy } from '../../../proxy-host/src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../../proxy-host/test/support/config.ts';
import { startProxy } from '../../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';

const WASM = fileURLToPath(new URL('../build/fault.wasm', import.meta.url));
const DELAY_MS = 500;

const pluginConfig = {
  rules: [
    { hosts: ['slow'], delay: { fixedDelayMs: DELAY_MS, percentage: 100 } },
    { hosts: ['broken'], abort: { httpStatus: 503, percentage: 100 } },
    { hosts: ['grpc-broken'], abort: { grpcStatus: 'UNAVAILABLE', percentage: 100 } },
    { hosts: ['gone'], delay: { fixedDelayMs: 150 } },
  ],
};

let app: TestServer;
let proxy: Proxy;

test.before(async () => {
  app = await startHttp1('app');
  proxy = await startProxy(
    proxyConfig({
      clusters: [cluster('outbound|80||app', [{ port: app.port }])],
      virtualHosts: [{ name: 'app', domains: ['app', 'slow', 'broken', 'grpc-broken', 'gone'], routes: [forward('app', 'outbound|80||app')] }],
      outboundFilters: [filterBinding('fault', WASM, { rootId: 'fault', pluginConfig })],
    }),
  );
});

test.after(async () => {
  await proxy.stop(100);
  await app.close();
});

const seen = (host: string) => app.received.filter((r) => r.headers.host === host).length;

test('a delayed request takes the delay while 20 concurrent other requests are not delayed', async () => {
  // Warm up (JIT, upstream connections) with the same load, so the comparison is about the filter.
  const others = () => Array.from({ length: 20 }, () => request(proxy.outboundPort, { headers: { host: 'app' } }));
  const baselineStart = performance.now();
  await Promise.all(others());
  const baseline = performance.now() - baselineStart;
  // The event loop's own lateness over the same span (a starved machine), added to the bounds.
  const loopStart = performance.now();
  const loop = new Promise<number>((r) => setTimeout(() => r(Math.max(0, performance.now() - loopStart - DELAY_MS)), DELAY_MS));
  const start = performance.now();
  const slow = request(proxy.outboundPort, { headers: { host: 'slow' } }).then((r) => ({ r, ms: performance.now() - start }));
  await new Promise((r) => setTimeout(r, 5));
  const fast = await Promise.all(others().map((p) => p.then((r) => ({ r, ms: performance.now() - start }))));
  const delayed = await slow;
  const slack = await loop;
  for (const f of fast) {
    assert.is(f.r.status, 200);
    // Delayed would mean at least DELAY_MS; 60% of it leaves room for a slow, busy machine.
    assert.ok(f.ms < DELAY_MS * 0.6 + slack, `an undelayed request finished after ${f.ms.toFixed(1)} ms (same batch without faults: ${baseline.toFixed(1)} ms)`);
  }
  assert.is(delayed.r.status, 200);
  assert.is(JSON.parse(delayed.r.body).upstream, 'app');
  assert.ok(delayed.ms >= DELAY_MS, `delayed request took ${delayed.ms.toFixed(1)} ms`);
  assert.ok(delayed.ms < DELAY_MS + 50 + slack, `delayed request took ${delayed.ms.toFixed(1)} ms (event loop ${slack.toFixed(1)} ms late)`);
  const slowest = Math.max(...fast.map((f) => f.ms));
  process.stdout.write(`\n  proxy: delayed ${delayed.ms.toFixed(1)} ms (delay ${DELAY_MS}); slowest of 20 others ${slowest.toFixed(1)} ms (same batch alone: ${baseline.toFixed(1)} ms)\n`);
});

test('an aborted request never reaches the upstream', async () => {
  const before = seen('broken');
  const r = await request(proxy.outboundPort, { headers: { host: 'broken' } });
  assert.is(r.status, 503);
  assert.is(r.body, 'fault filter abort');
  await new Promise((res) => setTimeout(res, 20));
  assert.is(seen('broken'), before);
  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.match(stats.body, /fault_injected_total\{host="broken",kind="abort"\} 1/);
  assert.match(stats.body, /fault_injected_total\{host="slow",kind="delay"\} 1/);
});

test('a gRPC abort answers 200 with grpc-status and content-type application/grpc', async () => {
  const r = await request(proxy.outboundPort, { method: 'POST', path: '/helloworld.Greeter/SayHello', headers: { host: 'grpc-broken', 'content-type': 'application/grpc' } });
  assert.is(r.status, 200);
  assert.is(r.headers['grpc-status'], '14');
  assert.is(r.headers['content-type'], 'application/grpc');
  assert.is(seen('grpc-broken'), 0);
});

test('a client that leaves while its request is delayed is never forwarded', async () => {
  await new Promise<void>((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: proxy.outboundPort, path: '/', headers: { host: 'gone' }, agent: false });
    req.on('error', () => resolve());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 30);
  });
  await new Promise((res) => setTimeout(res, 250));
  assert.is(seen('gone'), 0);
  // The proxy still serves delayed requests afterwards.
  const r = await request(proxy.outboundPort, { headers: { host: 'gone' } });
  assert.is(r.status, 200);
  assert.is(seen('gone'), 1);
});

test.run();
