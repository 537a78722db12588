// Active health checks against real servers on loopback: HTTP (HTTP/1.1 and HTTP/2), gRPC health
// protocol, TCP connect; thresholds, timeouts, the load balancer leaving unhealthy endpoints out, and
// checkers stopping with their cluster.
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClusterConfig, HealthCheckConfig } from '../../mesh/src/proxy-config.ts';
import type { Proxy } from '../src/proxy.ts';
import { ClusterManager } from '../src/upstream/cluster.ts';
import { EndpointState } from '../src/upstream/endpoint.ts';
import { healthOf } from '../src/upstream/endpoint-health.ts';
import {
  HealthChecker,
  decodeHealthCheckRequest,
  decodeHealthCheckResponse,
  encodeHealthCheckRequest,
  encodeHealthCheckResponse,
  type CheckOutcome,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from '../src/upstream/health-checker.ts';
import { cluster, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, startHttp2, type TestServer } from './support/servers.ts';

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const ep = (port: number) => new EndpointState({ address: '127.0.0.1', port, labels: {}, weight: 1 });

function hc(check: HealthCheckConfig['check'], extra: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return { intervalMs: 20, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2, check, ...extra };
}

/** An HTTP/1.1 server whose /health answers `state.status`; everything else 200 with x-upstream. */
async function healthServer(name: string, state: { status: number; hang?: boolean }): Promise<TestServer> {
  return startHttp1(name, (req, res) => {
    if (req.url?.startsWith('/health')) {
      if (state.hang) return; // never answers (the server's close ends it)
      res.writeHead(state.status, { 'content-length': '0' }).end();
    } else {
      res.writeHead(200, { 'x-upstream': name, 'content-length': String(name.length) }).end(name);
    }
  });
}

test('HTTP check: unhealthy after unhealthyThreshold failures, healthy again after healthyThreshold successes', async () => {
  const state = { status: 200 };
  const server = await healthServer('a', state);
  const e = ep(server.port);
  const seen: Array<[string, boolean]> = [];
  const checker = new HealthChecker({ name: 'c', host: 'svc.local', protocol: 'http1', endpoints: [e] }, hc({ kind: 'http', path: '/health?x=1', expectedStatuses: [{ start: 200, end: 201 }] }), {
    onCheck: (_e, o: CheckOutcome) => seen.push([o.detail, e.healthy]),
  });
  try {
    checker.start();
    await until(() => seen.length >= 2, 'two checks');
    assert.ok(e.healthy);
    const hdr = server.received[0]!;
    assert.is(hdr.url, '/health?x=1');
    assert.is(hdr.headers.host, 'svc.local');
    assert.is(hdr.headers['user-agent'], 'wasmesh-health-check');

    state.status = 503;
    const mark = seen.length;
    await until(() => !e.healthy, 'unhealthy');
    const failing = seen.slice(mark).filter(([d]) => d === 'status 503');
    // The first failure leaves it healthy; the second (threshold 2) takes it out.
    assert.equal(failing.slice(0, 2).map(([, h]) => h), [true, false]);
    assert.is(healthOf(e).lastCheck, 'status 503');

    state.status = 200;
    const back = seen.length;
    await until(() => e.healthy, 'healthy again');
    const ok = seen.slice(back).filter(([d]) => d === 'ok');
    assert.equal(ok.slice(0, 2).map(([, h]) => h), [false, true]);
  } finally {
    checker.stop();
    await server.close();
  }
  assert.not.ok(checker.running);
});

test('HTTP check: expected statuses (Envoy default 200 only; ranges end-exclusive), timeout', async () => {
  const state = { status: 204, hang: false };
  const server = await healthServer('a', state);
  const e = ep(server.port);
  const target = { name: 'c', host: 'h', protocol: 'http1' as const, endpoints: [e] };
  const byDefault = new HealthChecker(target, hc({ kind: 'http', path: '/health', expectedStatuses: [] }));
  const ranged = new HealthChecker(target, hc({ kind: 'http', path: '/health', expectedStatuses: [{ start: 200, end: 205 }] }));
  const narrow = new HealthChecker(target, hc({ kind: 'http', path: '/health', expectedStatuses: [{ start: 200, end: 204 }] }));
  const fast = new HealthChecker(target, hc({ kind: 'http', path: '/health', expectedStatuses: [] }, { timeoutMs: 50 }));
  try {
    assert.equal(await byDefault.check(e), { result: 'failure', detail: 'status 204' });
    assert.equal(await ranged.check(e), { result: 'success', detail: 'ok' });
    assert.equal(await narrow.check(e), { result: 'failure', detail: 'status 204' });
    state.hang = true;
    const started = Date.now();
    assert.equal(await fast.check(e), { result: 'network_failure', detail: 'timeout' });
    assert.ok(Date.now() - started < 400);
  } finally {
    for (const c of [byDefault, ranged, narrow, fast]) c.stop();
    await server.close();
  }
});

test('HTTP check over HTTP/2 for an http2 cluster', async () => {
  const server = await startHttp2('h2');
  const e = ep(server.port);
  const checker = new HealthChecker({ name: 'c', host: 'svc', protocol: 'http2', endpoints: [e] }, hc({ kind: 'http', path: '/ready', expectedStatuses: [{ start: 200, end: 201 }] }));
  try {
    assert.equal(await checker.check(e), { result: 'success', detail: 'ok' });
    assert.equal(await checker.check(e), { result: 'success', detail: 'ok' });
    assert.is(server.received.length, 2);
    assert.is(server.received[0]!.url, '/ready');
    assert.is(server.received[0]!.headers[':authority'], 'svc');
  } finally {
    checker.stop();
    await server.close();
  }
});

test('gRPC check: grpc.health.v1.Health/Check, SERVING is healthy, NOT_SERVING and unknown services are not', async () => {
  const statuses = new Map<string, number>([['', 1], ['reviews.Reviews', 1]]);
  const requested: string[] = [];
  const server = new grpc.Server();
  server.addService(
    {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: encodeHealthCheckRequest,
        requestDeserialize: decodeHealthCheckRequest,
        responseSerialize: encodeHealthCheckResponse,
        responseDeserialize: decodeHealthCheckResponse,
      },
    },
    {
      Check: (call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, callback: grpc.sendUnaryData<HealthCheckResponse>) => {
        requested.push(call.request.service);
        const s = statuses.get(call.request.service);
        if (s === undefined) callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
        else callback(null, { status: s });
      },
    },
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const e = ep(port);
  const target = { name: 'g', host: 'reviews', protocol: 'grpc' as const, endpoints: [e] };
  const checker = new HealthChecker(target, hc({ kind: 'grpc', serviceName: 'reviews.Reviews' }, { intervalMs: 20, unhealthyThreshold: 1, healthyThreshold: 1 }));
  const whole = new HealthChecker(target, hc({ kind: 'grpc', serviceName: '' }));
  const unknown = new HealthChecker(target, hc({ kind: 'grpc', serviceName: 'nope' }));
  try {
    assert.equal(await whole.check(e), { result: 'success', detail: 'ok' });
    assert.equal(await unknown.check(e), { result: 'failure', detail: 'NOT_FOUND' });
    checker.start();
    await until(() => healthOf(e).lastCheck === 'ok', 'a SERVING answer');
    assert.ok(e.healthy);
    statuses.set('reviews.Reviews', 2); // NOT_SERVING
    await until(() => !e.healthy, 'NOT_SERVING to mark it unhealthy');
    assert.is(healthOf(e).lastCheck, 'NOT_SERVING');
    statuses.set('reviews.Reviews', 1);
    await until(() => e.healthy, 'SERVING again');
    assert.ok(requested.includes('reviews.Reviews') && requested.includes(''));
  } finally {
    checker.stop();
    whole.stop();
    unknown.stop();
    server.forceShutdown();
  }
});

test('TCP check: a listening port is healthy, a stopped server is not', async () => {
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const e = ep(port);
  const checker = new HealthChecker({ name: 't', host: 't', protocol: 'http1', endpoints: [e] }, hc({ kind: 'tcp' }));
  try {
    checker.start();
    await until(() => healthOf(e).checkSuccesses >= 2, 'two successful connects');
    assert.ok(e.healthy);
    await new Promise<void>((r) => server.close(() => r()));
    await until(() => !e.healthy, 'the stopped server to be unhealthy');
    assert.match(healthOf(e).lastCheck, /connect ECONNREFUSED/);
    assert.ok(healthOf(e).checkFailures >= 2);
  } finally {
    checker.stop();
    server.close();
  }
});

test('through the proxy: an endpoint failing its checks gets no traffic, and gets it back when it recovers', async () => {
  const states = [{ status: 200 }, { status: 200 }, { status: 200 }];
  const servers = await Promise.all(states.map((s, i) => healthServer(`u${i}`, s)));
  const name = 'outbound|80||svc';
  const healthCheck = hc({ kind: 'http', path: '/health', expectedStatuses: [{ start: 200, end: 201 }] });
  const config = proxyConfig({
    clusters: [{ ...cluster(name, servers.map((s) => ({ port: s.port }))), healthCheck }],
    virtualHosts: [{ name: 'svc', domains: ['svc'], routes: [forward('svc/0', name)] }],
  });
  let proxy: Proxy | undefined;
  const send = async (n: number) => {
    const seen: string[] = [];
    for (let i = 0; i < n; i++) seen.push((await request(proxy!.outboundPort, { headers: { host: 'svc' } })).body);
    return seen;
  };
  try {
    proxy = await startProxy(config);
    const c = proxy.clusters.get(name)!;
    const bad = c.endpoints[0]!;
    await until(() => c.endpoints.every((e) => e.healthy), 'first checks to pass');
    assert.equal(new Set(await send(9)), new Set(['u0', 'u1', 'u2']));

    states[0]!.status = 500;
    await until(() => !bad.healthy, 'u0 to fail its checks');
    const during = await send(12);
    assert.not.ok(during.includes('u0'), 'no traffic to the unhealthy endpoint');

    const dump = JSON.parse((await request(proxy.adminPort, { path: '/clusters' })).body) as Array<{ name: string; endpoints: Array<{ address: string; healthy: boolean; activeHealthCheck?: { healthy: boolean; lastCheck: string } }> }>;
    const entry = dump.find((d) => d.name === name)!.endpoints.find((x) => x.address === bad.key)!;
    assert.is(entry.healthy, false);
    assert.equal(entry.activeHealthCheck!.healthy, false);
    assert.is(entry.activeHealthCheck!.lastCheck, 'status 500');
    const metrics = proxy.renderPrometheus();
    assert.match(metrics, `wasmesh_proxy_endpoint_healthy{cluster="${name}",endpoint="${bad.key}"} 0`);
    assert.match(metrics, new RegExp(`wasmesh_proxy_health_checks_total\\{cluster="${name.replace(/\|/g, '\\|')}",result="failure"\\} [1-9]`));
    assert.match(metrics, /wasmesh_proxy_health_checks_total\{cluster="[^"]+",result="success"\} [1-9]/);

    states[0]!.status = 200;
    await until(() => bad.healthy, 'u0 to recover');
    assert.ok((await send(9)).includes('u0'));

    // All endpoints failing: panic, traffic still flows to all of them.
    for (const s of states) s.status = 503;
    await until(() => c.endpoints.every((e) => !e.healthy), 'all unhealthy');
    assert.equal(new Set(await send(9)), new Set(['u0', 'u1', 'u2']));
    assert.ok(c.stats.healthyPanic >= 9);

    const checker = c.healthChecker!;
    await proxy.stop(0);
    proxy = undefined;
    assert.not.ok(checker.running, 'proxy stop stops the checks');
  } finally {
    await proxy?.stop(0);
    await Promise.all(servers.map((s) => s.close()));
  }
});

function hcCluster(name: string, ports: number[], healthCheck?: HealthCheckConfig): ClusterConfig {
  return { ...cluster(name, ports.map((port) => ({ port }))), ...(healthCheck ? { healthCheck } : {}) };
}

test('ClusterManager: new endpoints wait for their first check; checkers stop when the cluster changes or goes', async () => {
  const up = http.createServer((_req, res) => res.end());
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', () => r()));
  const port = (up.address() as AddressInfo).port;
  const slow = hc({ kind: 'tcp' }, { intervalMs: 60_000 });
  const m = new ClusterManager();
  try {
    // No health check: endpoints are healthy at once.
    m.update({ a: hcCluster('a', [port]) });
    assert.ok(m.get('a')!.endpoints[0]!.healthy);
    // Health check added: endpoints that were serving keep their health; the first check confirms it.
    m.update({ a: hcCluster('a', [port], slow) });
    const a1 = m.get('a')!;
    assert.ok(a1.healthChecker!.running);
    assert.ok(a1.endpoints[0]!.healthy);
    // A new endpoint (a closed port) is pending, out of the pool until its check answers: then unhealthy.
    m.update({ a: hcCluster('a', [port, 1], slow) });
    const a2 = m.get('a')!;
    assert.not.ok(a1.healthChecker!.running, 'the replaced cluster stopped checking');
    const added = a2.endpoints[1]!;
    assert.ok(healthOf(added).checkPending || !added.healthy);
    assert.not.ok(added.healthy);
    await until(() => !healthOf(added).checkPending, 'the first check of the new endpoint');
    assert.not.ok(added.healthy);
    assert.ok(a2.endpoints[0]!.healthy);
    // Health check removed: its verdicts go with it.
    m.update({ a: hcCluster('a', [port, 1]) });
    assert.not.ok(a2.healthChecker!.running);
    assert.ok(m.get('a')!.endpoints[1]!.healthy);
    // Cluster dropped: stopped.
    m.update({ b: hcCluster('b', [port], slow) });
    const b = m.get('b')!;
    assert.ok(b.healthChecker!.running);
    m.update({});
    assert.not.ok(b.healthChecker!.running);
  } finally {
    m.stop();
    await new Promise<void>((r) => up.close(() => r()));
  }
});

test('gRPC health messages encode and decode', () => {
  assert.is(encodeHealthCheckRequest({ service: '' }).length, 0);
  assert.equal(decodeHealthCheckRequest(encodeHealthCheckRequest({ service: 'a.B' })), { service: 'a.B' });
  const long = 'x'.repeat(300);
  assert.equal(decodeHealthCheckRequest(encodeHealthCheckRequest({ service: long })), { service: long });
  for (const status of [0, 1, 2, 3]) assert.equal(decodeHealthCheckResponse(encodeHealthCheckResponse({ status })), { status });
  assert.equal(decodeHealthCheckResponse(Buffer.from([0xff])), { status: 0 }, 'malformed input: UNKNOWN');
});

test.run();
