// Retries and timeouts through the proxy against real loopback upstreams that fail on purpose:
// 503 for the first N requests, hanging, resetting the connection, stopped; 4xx; gRPC UNAVAILABLE;
// the retry budget under concurrent load; the request-body replay bound; the access log's attempt
// count and the retry counter.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ClusterConfig, RetryPolicy, RouteConfig, VirtualHostConfig } from '../../mesh/src/proxy-config.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, proxyConfig } from './support/config.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const packageDef = protoLoader.loadSync(new URL('./fixtures/greeter.proto', import.meta.url).pathname, { keepCase: true });
const proto = grpc.loadPackageDefinition(packageDef) as unknown as { wasmesh: { test: { Greeter: grpc.ServiceClientConstructor } } };
const Greeter = proto.wasmesh.test.Greeter;

function retry(attempts: number, retryOn: string[], extra: Partial<RetryPolicy> = {}): RetryPolicy {
  return { attempts, perTryTimeoutMs: 0, retryOn, retriableStatusCodes: [503], ...extra };
}

function route(name: string, clusterName: string, policy?: RetryPolicy, timeoutMs = 0): RouteConfig {
  return { name, match: [], action: { kind: 'forward', destinations: [{ cluster: clusterName, weight: 100 }], timeoutMs, ...(policy ? { retry: policy } : {}) } };
}

function host(name: string, r: RouteConfig): VirtualHostConfig {
  return { name, domains: [name], routes: [r] };
}

/** A port nothing listens on (bound, then closed). */
async function stoppedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A server that reads the request and then destroys the connection without answering. */
async function startResetter(): Promise<{ port: number; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', () => {
      hits++;
      socket.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    hits: () => hits,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function metric(adminPort: number, name: string, clusterName: string): Promise<number> {
  const body = (await request(adminPort, { path: '/stats/prometheus' })).body;
  for (const line of body.split('\n')) {
    if (line.startsWith(`${name}{`) && line.includes(`cluster="${clusterName}"`) && !line.includes('response_flag')) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

const servers: TestServer[] = [];
let flaky: TestServer; // 503 for its first 2 requests
let flakyServed = 0;
let hang: TestServer;
let ok: TestServer;
let ok2: TestServer;
let conflict: TestServer; // 409 for its first request
let conflictServed = 0;
let always503: TestServer;
let inFlightRetries = 0;
let maxInFlightRetries = 0;
let bodyFlaky: TestServer; // 503 for the first request of each body size
const bodySeen = new Set<number>();
let resetter: Awaited<ReturnType<typeof startResetter>>;
let dead1 = 0;
let dead2 = 0;
let grpcServer: grpc.Server;
let grpcPort = 0;
let grpcCalls = 0;
let proxy: Proxy;
let logDir = '';

test.before(async () => {
  flaky = await startHttp1('flaky', (_req, res) => {
    flakyServed++;
    if (flakyServed <= 2) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      return res.end('busy');
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`ok after ${flakyServed}`);
  });
  hang = await startHttp1('hang', (_req, res) => {
    const t = setTimeout(() => res.end('too late'), 5000);
    res.on('close', () => clearTimeout(t));
  });
  ok = await startHttp1('ok');
  ok2 = await startHttp1('ok2');
  conflict = await startHttp1('conflict', (_req, res) => {
    conflictServed++;
    res.writeHead(conflictServed === 1 ? 409 : 200);
    res.end(conflictServed === 1 ? 'conflict' : 'resolved');
  });
  always503 = await startHttp1('always503', (req, res) => {
    const isRetry = Number(req.headers['x-envoy-attempt-count'] ?? '1') > 1;
    if (isRetry) {
      inFlightRetries++;
      maxInFlightRetries = Math.max(maxInFlightRetries, inFlightRetries);
    }
    setTimeout(() => {
      if (isRetry) inFlightRetries--;
      res.writeHead(503);
      res.end('down');
    }, 80);
  });
  bodyFlaky = await startHttp1('body-flaky', (_req, res, body) => {
    if (!bodySeen.has(body.length)) {
      bodySeen.add(body.length);
      res.writeHead(503);
      return res.end('first try fails');
    }
    res.writeHead(200);
    res.end(`got ${body.length} bytes`);
  });
  servers.push(flaky, hang, ok, ok2, conflict, always503, bodyFlaky);
  resetter = await startResetter();
  dead1 = await stoppedPort();
  dead2 = await stoppedPort();

  grpcServer = new grpc.Server();
  grpcServer.addService(Greeter.service, {
    SayHello(call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      grpcCalls++;
      if (grpcCalls === 1) return cb({ code: grpc.status.UNAVAILABLE, details: 'warming up' });
      cb(null, { message: `hello ${call.request.name}` });
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );

  const clusters: ClusterConfig[] = [
    cluster('flaky', [{ port: flaky.port }]),
    cluster('hang-then-ok', [{ port: hang.port }, { port: ok.port }]),
    cluster('hang', [{ port: hang.port }]),
    cluster('reset', [{ port: resetter.port }]),
    cluster('dead-then-ok', [{ port: dead1 }, { port: ok2.port }]),
    cluster('dead', [{ port: dead1 }, { port: dead2 }]),
    cluster('conflict', [{ port: conflict.port }]),
    cluster('always503', [{ port: always503.port }], { connectionPool: { maxRetries: 4 } }),
    cluster('body', [{ port: bodyFlaky.port }]),
    cluster('grpc', [{ port: grpcPort }], { protocol: 'grpc' }),
  ];
  const gateway = ['5xx'];
  logDir = mkdtempSync(join(tmpdir(), 'wasmesh-resilience-'));
  proxy = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: join(logDir, 'access.log') },
    proxyConfig({
      clusters,
      virtualHosts: [
        host('flaky', route('flaky', 'flaky', retry(3, ['5xx']))),
        host('flaky-once', route('flaky-once', 'flaky', retry(1, ['gateway-error']))),
        host('hang-then-ok', route('hang-then-ok', 'hang-then-ok', retry(2, gateway, { perTryTimeoutMs: 150 }), 3000)),
        host('hang', route('hang', 'hang', retry(1, gateway, { perTryTimeoutMs: 100 }), 5000)),
        host('hang-route', route('hang-route', 'hang', retry(5, gateway, { perTryTimeoutMs: 150 }), 400)),
        host('reset', route('reset', 'reset', retry(2, ['reset']))),
        host('reset-no-retry', route('reset-no-retry', 'reset')),
        host('dead-then-ok', route('dead-then-ok', 'dead-then-ok', retry(2, ['connect-failure']))),
        host('dead', route('dead', 'dead', retry(2, ['connect-failure']))),
        host('conflict-plain', route('conflict-plain', 'conflict', retry(2, ['5xx']))),
        host('conflict-4xx', route('conflict-4xx', 'conflict', retry(2, ['retriable-4xx']))),
        host('always503', route('always503', 'always503', retry(5, ['5xx']))),
        host('body', route('body', 'body', retry(2, ['retriable-status-codes']))),
        host('grpc', route('grpc', 'grpc', retry(2, ['unavailable']))),
      ],
    }),
  );
});

test.after(async () => {
  await proxy?.stop(0);
  await Promise.all(servers.map((s) => s.close()));
  await resetter?.close();
  grpcServer?.forceShutdown();
  if (logDir) rmSync(logDir, { recursive: true, force: true });
});

test('503 for the first two requests: the client sees 200 after exactly three attempts', async () => {
  flakyServed = 0;
  flaky.received.length = 0;
  const r = await request(proxy.outboundPort, { headers: { host: 'flaky' } });
  assert.is(r.status, 200);
  assert.is(r.body, 'ok after 3');
  assert.is(flaky.received.length, 3);
  assert.equal(flaky.received.map((x) => x.headers['x-envoy-attempt-count']), ['1', '2', '3']);
  assert.is(await metric(proxy.adminPort, 'wasmesh_proxy_upstream_retries_total', 'flaky'), 2);
});

test('attempts bound the retries: one retry, the second 503 goes to the client', async () => {
  flakyServed = 0;
  flaky.received.length = 0;
  const r = await request(proxy.outboundPort, { headers: { host: 'flaky-once' } });
  assert.is(r.status, 503);
  assert.is(r.body, 'busy');
  assert.is(flaky.received.length, 2);
});

test('per-try timeout: the hanging endpoint is cancelled and the retry goes to the other endpoint', async () => {
  hang.received.length = 0;
  ok.received.length = 0;
  for (let i = 0; i < 2; i++) {
    const started = Date.now();
    const r = await request(proxy.outboundPort, { headers: { host: 'hang-then-ok' } });
    assert.is(r.status, 200);
    assert.is(JSON.parse(r.body).upstream, 'ok');
    assert.ok(Date.now() - started < 2000);
  }
  // Round robin starts on either endpoint; the hanging one is never tried twice for one request.
  assert.ok(hang.received.length >= 1 && hang.received.length <= 2, `hang got ${hang.received.length}`);
  assert.is(ok.received.length, 2);
});

test('per-try timeout on the last attempt answers 504 UT; the route timeout covers all retries', async () => {
  hang.received.length = 0;
  const r = await request(proxy.outboundPort, { headers: { host: 'hang' } });
  assert.is(r.status, 504);
  assert.is(hang.received.length, 2);
  hang.received.length = 0;
  const started = Date.now();
  const r2 = await request(proxy.outboundPort, { headers: { host: 'hang-route' } });
  const took = Date.now() - started;
  assert.is(r2.status, 504);
  assert.ok(took >= 350 && took < 1500, `route timeout took ${took} ms`);
  assert.ok(hang.received.length >= 2 && hang.received.length <= 4, `attempts within the route timeout: ${hang.received.length}`);
});

test('reset: retried under retryOn reset, 503 UC without retries', async () => {
  const before = resetter.hits();
  const r = await request(proxy.outboundPort, { headers: { host: 'reset' } });
  assert.is(r.status, 503);
  assert.match(r.body, 'reset reason: connection termination');
  assert.is(resetter.hits() - before, 3);
  const r2 = await request(proxy.outboundPort, { headers: { host: 'reset-no-retry' } });
  assert.is(r2.status, 503);
  assert.is(resetter.hits() - before, 4);
});

test('connect failure: retried on the other endpoint; 503 UF when every endpoint is down', async () => {
  ok2.received.length = 0;
  for (let i = 0; i < 4; i++) {
    const r = await request(proxy.outboundPort, { headers: { host: 'dead-then-ok' } });
    assert.is(r.status, 200);
    assert.is(JSON.parse(r.body).upstream, 'ok2');
  }
  assert.is(ok2.received.length, 4);
  const r = await request(proxy.outboundPort, { headers: { host: 'dead' } });
  assert.is(r.status, 503);
  assert.match(r.body, 'reset reason: connection failure');
});

test('4xx is not retried under 5xx; 409 is under retriable-4xx', async () => {
  conflictServed = 0;
  conflict.received.length = 0;
  const r = await request(proxy.outboundPort, { headers: { host: 'conflict-plain' } });
  assert.is(r.status, 409);
  assert.is(conflict.received.length, 1);
  conflictServed = 0;
  const r2 = await request(proxy.outboundPort, { headers: { host: 'conflict-4xx' } });
  assert.is(r2.status, 200);
  assert.is(r2.body, 'resolved');
  assert.is(conflict.received.length, 3);
});

test('gRPC UNAVAILABLE is retried (grpc-status in a trailers-only response)', async () => {
  grpcCalls = 0;
  const client = new Greeter(`127.0.0.1:${proxy.outboundPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': 'grpc' });
  try {
    const reply = await new Promise<{ message: string }>((resolve, reject) =>
      client.SayHello({ name: 'ada' }, (err: grpc.ServiceError | null, res: { message: string }) => (err ? reject(err) : resolve(res))),
    );
    assert.is(reply.message, 'hello ada');
    assert.is(grpcCalls, 2);
  } finally {
    client.close();
  }
});

test('request bodies are replayed on retry; past the 64 KiB buffer bound they are not retried', async () => {
  bodySeen.clear();
  bodyFlaky.received.length = 0;
  const small = 'x'.repeat(20_000);
  const r = await request(proxy.outboundPort, { method: 'POST', headers: { host: 'body', 'content-type': 'text/plain' }, body: small });
  assert.is(r.status, 200);
  assert.is(r.body, 'got 20000 bytes');
  assert.equal(bodyFlaky.received.map((x) => x.body.length), [20_000, 20_000]);
  bodyFlaky.received.length = 0;
  const big = 'y'.repeat(100_000);
  const r2 = await request(proxy.outboundPort, { method: 'POST', headers: { host: 'body', 'content-type': 'text/plain' }, body: big });
  assert.is(r2.status, 503);
  assert.is(bodyFlaky.received.length, 1);
  assert.is(bodyFlaky.received[0]!.body.length, 100_000);
});

test('maxRetries (DestinationRule connectionPool.http) caps concurrent retries under load', async () => {
  maxInFlightRetries = 0;
  always503.received.length = 0;
  const before = await metric(proxy.adminPort, 'wasmesh_proxy_upstream_retry_overflow_total', 'always503');
  const n = 20;
  const results = await Promise.all(Array.from({ length: n }, () => request(proxy.outboundPort, { headers: { host: 'always503' } })));
  assert.ok(results.every((r) => r.status === 503));
  // 20 active requests, each retried up to 5 times, but at most 4 retries at once.
  assert.ok(maxInFlightRetries <= 4, `max concurrent retries ${maxInFlightRetries}`);
  assert.ok(maxInFlightRetries >= 1);
  assert.ok(always503.received.length < n * 6, `attempts ${always503.received.length}`);
  assert.ok((await metric(proxy.adminPort, 'wasmesh_proxy_upstream_retry_overflow_total', 'always503')) > before);
});

test('access log: upstream_request_attempt_count and the flags', async () => {
  flakyServed = 0;
  await request(proxy.outboundPort, { headers: { host: 'flaky', 'x-request-id': 'attempts-3' } });
  await request(proxy.outboundPort, { headers: { host: 'dead', 'x-request-id': 'dead-uf' } });
  let entries: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 50; i++) {
    entries = readFileSync(join(logDir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    if (entries.some((e) => e.request_id === 'dead-uf')) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const three = entries.find((e) => e.request_id === 'attempts-3')!;
  assert.is(three.upstream_request_attempt_count, 3);
  assert.is(three.response_code, 200);
  const uf = entries.find((e) => e.request_id === 'dead-uf')!;
  assert.is(uf.upstream_request_attempt_count, 3);
  assert.is(uf.response_flags, 'UF');
  assert.is(uf.response_code, 503);
});

test.run();
