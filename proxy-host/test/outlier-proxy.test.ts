// Outlier detection through the proxy, with real upstreams on loopback: one of three always answers 503.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { OutlierDetectionConfig } from '../../mesh/src/proxy-config.ts';
import type { Proxy } from '../src/proxy.ts';
import { healthOf } from '../src/upstream/endpoint-health.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const CLUSTER = 'outbound|80||svc';

interface Setup {
  proxy: Proxy;
  servers: TestServer[];
  stop(): Promise<void>;
}

/** `bad` of the three upstreams answer 503 to everything; the others 200. */
async function setup(bad: number, od: Partial<OutlierDetectionConfig>): Promise<Setup> {
  const servers: TestServer[] = [];
  for (let i = 0; i < 3; i++) {
    servers.push(
      await startHttp1(`u${i}`, i < bad ? (_req, res) => res.writeHead(503, { 'content-length': '0' }).end() : undefined),
    );
  }
  const outlierDetection: OutlierDetectionConfig = {
    consecutive5xxErrors: 3,
    consecutiveGatewayErrors: 0,
    intervalMs: 100,
    baseEjectionTimeMs: 300,
    maxEjectionPercent: 100,
    minHealthPercent: 0,
    ...od,
  };
  const config = proxyConfig({
    clusters: [{ ...cluster(CLUSTER, servers.map((s) => ({ port: s.port }))), outlierDetection }],
    virtualHosts: [{ name: 'svc', domains: ['svc'], routes: [forward('svc/0', CLUSTER)] }],
  });
  const proxy = await startProxy(config);
  return {
    proxy,
    servers,
    async stop() {
      await proxy.stop(0);
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

async function send(proxy: Proxy, n: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) statuses.push((await request(proxy.outboundPort, { headers: { host: 'svc' } })).status);
  return statuses;
}

/** Waits (bounded) until `cond` holds. */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const counts = (servers: TestServer[]) => servers.map((s) => s.received.length);

test('ejects the endpoint after 3 consecutive 503s, traffic avoids it, it returns and is ejected for longer', async () => {
  const s = await setup(1, {});
  try {
    const c = s.proxy.clusters.get(CLUSTER)!;
    const bad = c.endpoints.find((e) => e.config.port === s.servers[0]!.port)!;
    const statuses = await send(s.proxy, 30);
    assert.is(s.servers[0]!.received.length, 3, 'the failing endpoint got exactly 3 requests, then was ejected');
    assert.is(statuses.filter((x) => x === 503).length, 3);
    assert.is(statuses.filter((x) => x === 200).length, 27);
    assert.not.ok(bad.healthy);
    assert.is(healthOf(bad).ejectionMs, 300);

    const metrics = s.proxy.renderPrometheus();
    assert.match(metrics, `wasmesh_proxy_outlier_ejections_total{cluster="${CLUSTER}"} 1`);
    assert.match(metrics, `wasmesh_proxy_outlier_ejected_endpoints{cluster="${CLUSTER}"} 1`);
    assert.match(metrics, `wasmesh_proxy_endpoint_healthy{cluster="${CLUSTER}",endpoint="${bad.key}"} 0`);
    const dump = JSON.parse((await request(s.proxy.adminPort, { path: '/clusters' })).body) as Array<{ name: string; endpoints: Array<{ address: string; healthy: boolean; outlier?: { ejected: boolean } }> }>;
    const entry = dump.find((d) => d.name === CLUSTER)!.endpoints.find((e) => e.address === bad.key)!;
    assert.is(entry.healthy, false);
    assert.is(entry.outlier!.ejected, true);

    // Back after baseEjectionTime (at the next sweep).
    const ejectedAt = healthOf(bad).ejectedAtMs;
    await until(() => bad.healthy, 'the endpoint to return');
    assert.ok(Date.now() - ejectedAt >= 300, 'not back before its ejection time');
    // It fails again right away: ejected a second time, for 2 x 300 ms.
    await send(s.proxy, 9);
    assert.is(s.servers[0]!.received.length, 6);
    assert.not.ok(bad.healthy);
    assert.is(healthOf(bad).ejections, 2);
    assert.is(healthOf(bad).ejectionMs, 600);
    const second = healthOf(bad).ejectedAtMs;
    await new Promise((r) => setTimeout(r, 350));
    await send(s.proxy, 6);
    assert.is(s.servers[0]!.received.length, 6, 'still ejected after one base ejection time');
    await until(() => bad.healthy, 'the endpoint to return again');
    assert.ok(Date.now() - second >= 600);
  } finally {
    await s.stop();
  }
});

test('maxEjectionPercent caps ejections: with two failing endpoints of three and 30 %, one stays in', async () => {
  const s = await setup(2, { maxEjectionPercent: 30 });
  try {
    await send(s.proxy, 30);
    const c = s.proxy.clusters.get(CLUSTER)!;
    assert.is(c.outlierDetector!.ejectedCount, 1);
    const [a, b] = counts(s.servers);
    // One failing endpoint got 3 requests and left; the other keeps receiving its share.
    assert.is(Math.min(a!, b!), 3);
    assert.ok(Math.max(a!, b!) >= 10, `the other failing endpoint kept getting traffic (${a}, ${b})`);
    const metrics = s.proxy.renderPrometheus();
    assert.match(metrics, `wasmesh_proxy_outlier_ejections_total{cluster="${CLUSTER}"} 1`);
    assert.match(metrics, /wasmesh_proxy_outlier_ejections_overflow_total\{cluster="[^"]+"\} [1-9]/);
  } finally {
    await s.stop();
  }
});

test('panic below minHealthPercent: once the healthy share drops under it, traffic goes to all endpoints', async () => {
  const s = await setup(2, { minHealthPercent: 50, baseEjectionTimeMs: 30_000 });
  try {
    const c = s.proxy.clusters.get(CLUSTER)!;
    await send(s.proxy, 20);
    // Both failing endpoints were ejected (the second at 2/3 healthy >= 50 %), leaving 1/3 < 50 %.
    assert.is(c.outlierDetector!.ejectedCount, 2);
    const before = counts(s.servers);
    const panicBefore = c.stats.healthyPanic;
    await send(s.proxy, 30);
    const after = counts(s.servers);
    assert.ok(after[0]! - before[0]! >= 5 && after[1]! - before[1]! >= 5, `ejected endpoints get traffic in panic: ${before} -> ${after}`);
    assert.ok(c.stats.healthyPanic - panicBefore >= 30);
    assert.is(c.outlierDetector!.ejectedCount, 2, 'reports of ejected endpoints do not extend anything');
  } finally {
    await s.stop();
  }
});

test('without panic threshold (0 %), ejected endpoints get nothing while one endpoint is healthy', async () => {
  const s = await setup(2, {});
  try {
    await send(s.proxy, 20);
    const before = counts(s.servers);
    const statuses = await send(s.proxy, 20);
    assert.equal(counts(s.servers).slice(0, 2), before.slice(0, 2));
    assert.ok(statuses.every((x) => x === 200));
  } finally {
    await s.stop();
  }
});

test('connect failures count: a stopped endpoint is ejected', async () => {
  const s = await setup(0, { consecutive5xxErrors: 2 });
  try {
    await s.servers[0]!.close();
    const statuses = await send(s.proxy, 12);
    assert.is(statuses.filter((x) => x === 503).length, 2);
    assert.is(s.proxy.clusters.get(CLUSTER)!.outlierDetector!.ejectedCount, 1);
  } finally {
    await s.stop();
  }
});

test.run();
