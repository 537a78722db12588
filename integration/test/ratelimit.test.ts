// Mesh-wide quota end to end: three sidecars of one service (the policy filter, configured from a
// RateLimitPolicy by the translator), the rate-limit service (RLS v3 over gRPC) and a real
// redis-server, all on loopback. The three share one limit; Redis killed mid-test follows the failure
// mode (ALLOW, then DENY); Redis restarted recovers without restarting anything; limits change at run
// time (the service's limits and the proxies' config) without restarts; a service that stops
// answering costs the timeout, then the failure mode applies.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseDocuments } from '../../mesh/src/documents.ts';
import { formatErrors, validateDocuments } from '../../mesh/src/validate.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { rateLimitServiceConfig } from '../../mesh/src/translate/ratelimit.ts';
import { startRateLimitServer, type RateLimitServer } from '../../orchestrator/src/ratelimit/server.ts';
import { TestRedis, ensureRedis, freePort, reportRedisSkip } from '../../orchestrator/test/support/redis.ts';
import { policyWasm } from '../../filters/policy/test/support.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { GATEWAY_ROLE_LABEL } from '../../mesh/src/translate/gateways.ts';
import { startProxy } from '../../proxy-host/test/support/proxy.ts';
import { request, startHttp1, type TestServer } from '../../proxy-host/test/support/servers.ts';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const redisBin = ensureRedis();
const WASMESH = fileURLToPath(new URL('../../scripts/wasmesh.mjs', import.meta.url));

interface Knobs {
  perHour: number;
  perUser: number;
  failureMode: 'ALLOW' | 'DENY';
}

function meshText(rlsPort: number, k: Knobs): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratelimit, namespace: wasmesh-system }
spec:
  hosts: [ratelimit.wasmesh-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8081, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${rlsPort} } }]
---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: reviews-quota, namespace: default }
spec:
  selector: { matchLabels: { app: reviews } }
  global:
    service: { host: ratelimit.wasmesh-system.svc.cluster.local, port: 8081 }
    timeout: 500ms
    failureMode: ${k.failureMode}
    limits:
      - name: all
        descriptors: [{ header: { name: x-test-run } }]
        requestsPerUnit: ${k.perHour}
        unit: HOUR
      - name: per-user
        descriptors: [{ header: { name: x-user } }]
        requestsPerUnit: ${k.perUser}
        unit: HOUR
`;
}

let redis: TestRedis;
let rls: RateLimitServer;
let app: TestServer;
const proxies: Proxy[] = [];
let knobs: Knobs = { perHour: 30, perUser: 1000, failureMode: 'ALLOW' };
/** A fresh counter per test (the descriptor value), so tests do not share counts. */
const run = `${process.pid}-${Date.now()}`;

function documents(k: Knobs, port = rls.port) {
  const parsed = parseDocuments(meshText(port, k), 'mesh.yaml');
  const v = validateDocuments(parsed.documents);
  assert.ok(v.ok, formatErrors(v.errors));
  return parsed.documents;
}

/** Reconfigures the service and every proxy from the documents, as the orchestrator or a file watch would. */
async function apply(k: Knobs, port = rls.port): Promise<void> {
  knobs = k;
  const docs = documents(k, port);
  rls.setConfig(rateLimitServiceConfig(docs));
  await Promise.all(proxies.map((p, i) => p.applyConfig(translateProxyConfig(docs, workload(i), { telemetry: false }))));
}

function workload(i: number) {
  return { name: `reviews-${i + 1}`, namespace: 'default', labels: { app: 'reviews' }, serviceAccount: 'reviews' };
}

async function send(i: number, headers: Record<string, string>) {
  return request(proxies[i % proxies.length]!.inboundPort, { path: '/reviews/1', headers: { host: 'reviews', ...headers } });
}

if (!redisBin.bin) {
  reportRedisSkip('the global rate limit tests (integration/test/ratelimit.test.ts)', redisBin.reason);
} else {
  test.before(async () => {
    await policyWasm();
    redis = await TestRedis.start(redisBin.bin!);
    rls = await startRateLimitServer({ redisUrl: redis.url, log: () => {} });
    app = await startHttp1('reviews');
    const docs = documents(knobs);
    rls.setConfig(rateLimitServiceConfig(docs));
    for (let i = 0; i < 3; i++) proxies.push(await startProxy(translateProxyConfig(docs, workload(i), { telemetry: false }), app.port));
  });

  test.after(async () => {
    await Promise.all(proxies.map((p) => p.stop(100)));
    await app?.close();
    await rls?.close();
    await redis?.stop();
  });

  test('three sidecars of one service share one limit: the sum of what they let through is the limit', async () => {
    const hourBefore = Math.floor(Date.now() / 3_600_000);
    const headers = { 'x-test-run': `shared-${run}` };
    const statuses: number[] = [];
    // Concurrently, 6 at a time, spread over the three sidecars.
    for (let batch = 0; batch < 10; batch++) {
      const rs = await Promise.all([0, 1, 2, 3, 4, 5].map((j) => send(batch * 6 + j, headers)));
      statuses.push(...rs.map((r) => r.status));
    }
    const ok = statuses.filter((s) => s === 200).length;
    const limited = statuses.filter((s) => s === 429).length;
    assert.is(ok + limited, 60, `only 200 and 429: ${statuses.join(',')}`);
    if (Math.floor(Date.now() / 3_600_000) === hourBefore) assert.is(ok, 30, 'exactly the limit across the three sidecars');
    else assert.ok(ok >= 30 && ok <= 60, 'the hour turned during the test: two windows');
    for (let i = 0; i < 3; i++) {
      const stats = await request(proxies[i]!.adminPort, { path: '/stats/prometheus' });
      assert.match(stats.body, /policy_global_ratelimit_total\{result="ok"\} [1-9]/, `sidecar ${i + 1} let some through`);
    }
    const over = await send(0, headers);
    assert.is(over.status, 429);
    assert.is(over.body, 'request_rate_limited');
    assert.is(over.headers['x-ratelimit-limit'], '30');
    assert.is(over.headers['x-ratelimit-remaining'], '0');
    const retry = Number(over.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 3600, `retry-after ${over.headers['retry-after']}`);
    assert.is(over.headers['x-ratelimit-reset'], over.headers['retry-after']);
    assert.is(over.headers['ratelimit-limit'], '30', "the service's RateLimit-* headers");
    assert.is(over.headers['ratelimit-remaining'], '0');
    const allowed = await send(1, { 'x-test-run': `other-${run}` });
    assert.is(allowed.status, 200);
    assert.is(allowed.headers['ratelimit-limit'], '30', 'allowed answers carry the RateLimit-* headers too');
    assert.is(allowed.headers['ratelimit-remaining'], '29');
    const none = await send(2, {});
    assert.is(none.status, 200, 'a request without the descriptor headers is not asked about');
    assert.is(none.headers['ratelimit-limit'], undefined);
  });

  test('Redis killed: failure mode ALLOW lets requests through; DENY answers 500; Redis back: limits again', async () => {
    const headers = { 'x-test-run': `outage-${run}` };
    assert.is((await send(0, headers)).status, 200);
    await redis.kill();
    for (let i = 0; i < 6; i++) assert.is((await send(i, headers)).status, 200, `ALLOW: request ${i + 1} passes while Redis is down`);
    const stats = await request(proxies[0]!.adminPort, { path: '/stats/prometheus' });
    assert.match(stats.body, /policy_global_ratelimit_total\{result="failure_allowed"\} [1-9]/);

    await apply({ ...knobs, failureMode: 'DENY' });
    for (let i = 0; i < 3; i++) {
      const r = await send(i, headers);
      assert.is(r.status, 500, `DENY: sidecar ${i + 1}`);
      assert.is(r.body, 'rate_limiter_error');
    }

    await redis.restart();
    let status = 0;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      status = (await send(0, { 'x-test-run': `recovered-${run}` })).status;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.is(status, 200, 'answers again once Redis is back, nothing restarted');
    // Counting works again: the limit (30) holds for a fresh counter.
    const fresh = { 'x-test-run': `after-${run}` };
    const rs: number[] = [];
    for (let i = 0; i < 32; i++) rs.push((await send(i, fresh)).status);
    assert.is(rs.filter((s) => s === 200).length, 30);
    await apply({ ...knobs, failureMode: 'ALLOW' });
  });

  test('limits change at run time without restarts: a lower limit applies to the next request', async () => {
    const headers = { 'x-test-run': `change-${run}`, 'x-user': `alice-${run}` };
    for (let i = 0; i < 3; i++) assert.is((await send(i, headers)).status, 200);
    await apply({ ...knobs, perUser: 3 });
    const r = await send(0, headers);
    assert.is(r.status, 429, 'alice used 3 of the new limit of 3');
    assert.is(r.headers['x-ratelimit-limit'], '3');
    await apply({ ...knobs, perUser: 1000 });
    assert.is((await send(1, headers)).status, 200, 'raised again');
  });

  test('a service that stops answering (SIGSTOP): each request waits the timeout, then the failure mode applies', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [WASMESH, 'ratelimit', '--redis', redis.url, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    try {
      const deadline = Date.now() + 20_000;
      while (!output.includes('RLS v3 on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(output.includes('RLS v3 on'), output);
      await apply({ ...knobs, failureMode: 'ALLOW' }, port);
      const headers = { 'x-test-run': `frozen-${run}` };
      assert.is((await send(0, headers)).status, 200, 'the other service answers (no limits of its own: OK)');
      child.kill('SIGSTOP');
      let started = Date.now();
      assert.is((await send(1, headers)).status, 200, 'ALLOW after the timeout');
      const waited = Date.now() - started;
      assert.ok(waited >= 450 && waited < 5000, `waited about the timeout (500 ms): ${waited} ms`);
      await apply({ ...knobs, failureMode: 'DENY' }, port);
      started = Date.now();
      const denied = await send(2, headers);
      assert.is(denied.status, 500);
      assert.ok(Date.now() - started >= 450, 'DENY after the timeout too');
    } finally {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await apply({ ...knobs, failureMode: 'ALLOW' });
    }
  });

  test('a RateLimitPolicy with targetRefs to a Gateway: the global limit is counted at the gateway proxy, not at the sidecars', async () => {
    const gatewayPort = await freePort();
    const text = `${meshText(rls.port, knobs)}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: ${app.port} } }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: ${gatewayPort}, name: http, protocol: HTTP }, hosts: ['*'] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: edge, namespace: default }
spec:
  hosts: ['*']
  gateways: [edge]
  http: [{ route: [{ destination: { host: reviews, port: { number: 9080 } } }] }]
---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: edge-quota, namespace: default }
spec:
  targetRefs: [{ group: networking.istio.io, kind: Gateway, name: edge }]
  global:
    service: { host: ratelimit.wasmesh-system.svc.cluster.local, port: 8081 }
    timeout: 500ms
    limits: [{ name: per-caller, descriptors: [{ header: { name: x-caller } }], requestsPerUnit: 4, unit: HOUR }]
`;
    const docs = parseDocuments(text, 'mesh.yaml').documents;
    const v = validateDocuments(docs);
    assert.ok(v.ok, formatErrors(v.errors));
    rls.setConfig(rateLimitServiceConfig(docs));
    const gatewayId = { name: 'edge-gateway', namespace: 'default', labels: { istio: 'ingressgateway', [GATEWAY_ROLE_LABEL]: 'gateway' }, serviceAccount: 'edge-gateway' };
    const gateway = await Proxy.start({ role: 'gateway', outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, translateProxyConfig(docs, gatewayId, { telemetry: false }));
    try {
      // The sidecars' own config is unchanged by the gateway's policy.
      await Promise.all(proxies.map((p, i) => p.applyConfig(translateProxyConfig(docs, workload(i), { telemetry: false }))));
      const caller = { 'x-caller': `edge-${run}` };
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await request(gatewayPort, { path: '/reviews/1', headers: { host: 'reviews.example.com', ...caller } })).status);
      assert.equal(statuses, [200, 200, 200, 200, 429, 429], statuses.join(','));
      const over = await request(gatewayPort, { path: '/reviews/1', headers: { host: 'reviews.example.com', ...caller } });
      assert.is(over.status, 429);
      assert.is(over.headers['x-ratelimit-limit'], '4');
      // The same caller straight at a sidecar: no limit of this policy there (its own limits use other headers).
      for (let i = 0; i < 6; i++) assert.is((await send(i, caller)).status, 200);
      assert.ok((rls.stats().get('default.edge-quota.per-caller')?.overLimit ?? 0) >= 2, 'counted by the service');
    } finally {
      await gateway.stop(100);
      await apply({ ...knobs, failureMode: 'ALLOW' });
    }
  });

  test.run();
}
