// Where the milliseconds of the global rate-limit check go: a small in-process measurement, not a
// benchmark for bench/RESULTS.md (npm run bench:ratelimit is that) and not a test. Run it briefly:
//
//   node --import tsx integration/bench/ratelimit-path.measure.ts [requests per step, default 300]
//
// STEPS=global,local runs only those steps (with --cpu-prof, a profile of just them).
//
// Everything on loopback in this process but redis-server: one sidecar (the policy filter translated
// from a RateLimitPolicy), the rate-limit service, Redis. Sequential requests (one at a time, as
// autocannon's one connection), and the layers of the global check measured one by one so their
// differences say where the time goes:
//   redis    one MULTI of INCRBY+EXPIRE from ioredis (what the service does per call)
//   limiter  the service's counting core called directly (no gRPC)
//   rls      one ShouldRateLimit from a grpc-js client (service + Redis)
//   callout  one ShouldRateLimit through the proxy's own gRPC callout client (the path the filter uses)
//   local    a request through the sidecar with a local bucket only
//   global   the same with the global check
// Prints median, mean and p99 per step, in milliseconds.
import * as grpc from '@grpc/grpc-js';
import { readFileSync, readdirSync } from 'node:fs';
import { Redis } from 'ioredis';
import { parseDocuments } from '../../mesh/src/documents.ts';
import { translateProxyConfig } from '../../mesh/src/translate/proxy-config.ts';
import { rateLimitServiceConfig } from '../../mesh/src/translate/ratelimit.ts';
import { startRateLimitServer } from '../../orchestrator/src/ratelimit/server.ts';
import { TestRedis, ensureRedis } from '../../orchestrator/test/support/redis.ts';
import { rateLimitServiceDefinition, type RateLimitRequestMessage, type RateLimitServiceClient } from '../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { policyWasm } from '../../filters/policy/test/support.ts';
import { startProxy } from '../../proxy-host/test/support/proxy.ts';
import { request, startHttp1 } from '../../proxy-host/test/support/servers.ts';
import { createGrpcCallout } from '../../proxy-host/src/grpc-callout.ts';

const N = Number(process.argv[2] ?? 300);

function mesh(rlsPort: number, global: boolean): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratelimit, namespace: default }
spec:
  hosts: [ratelimit.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8081, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${rlsPort} } }]
---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: measure, namespace: default }
spec:
  local: [{ name: burst, descriptor: { global: true }, maxTokens: 1000000000, fillInterval: 1s }]
${global ? `  global:
    service: { host: ratelimit, port: 8081 }
    timeout: 1s
    limits: [{ name: per-client, descriptors: [{ remoteAddress: {} }], requestsPerUnit: 4000000000, unit: SECOND }]` : ''}
`;
}

let redisPid: number | undefined;

/** CPU milliseconds redis-server has used (utime + stime from /proc), 0 when it cannot be read. */
function redisCpuMs(): number {
  if (redisPid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${redisPid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks, USER_HZ 100
  } catch {
    return 0;
  }
}

/** The pid of the redis-server listening on `port` (its command line names the port). */
function findRedisPid(port: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // redis-server rewrites its title: "/usr/bin/redis-server 127.0.0.1:<port>".
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('redis-server') && (cmd.includes(`:${port}`) || cmd.split('\0').includes(String(port)))) return Number(entry);
    } catch {
      // gone
    }
  }
  return undefined;
}

const ONLY = process.env.STEPS?.split(',');

async function steps(name: string, n: number, one: () => Promise<void>): Promise<void> {
  if (ONLY && !ONLY.includes(name)) return;
  for (let i = 0; i < Math.min(50, n); i++) await one(); // warm-up
  const times: number[] = [];
  const cpu0 = process.cpuUsage();
  const redis0 = redisCpuMs();
  const deadline = Date.now() + 20_000;
  for (let i = 0; i < n && Date.now() < deadline; i++) {
    const t = process.hrtime.bigint();
    await one();
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const cpu = process.cpuUsage(cpu0);
  const redisCpu = redisCpuMs() - redis0;
  times.sort((a, b) => a - b);
  const mean = times.reduce((s, x) => s + x, 0) / times.length;
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  console.log(`${name.padEnd(8)} n=${String(times.length).padStart(4)}  median ${at(0.5).toFixed(3)} ms  mean ${mean.toFixed(3)} ms  p99 ${at(0.99).toFixed(3)} ms  cpu/req: this process ${((cpu.user + cpu.system) / 1000 / times.length).toFixed(3)} ms, redis ${(redisCpu / times.length).toFixed(3)} ms`);
}

async function main(): Promise<void> {
  const bin = ensureRedis().bin;
  if (!bin) throw new Error('redis-server is needed: bash scripts/redis.sh install');
  await policyWasm();
  const redis = await TestRedis.start(bin);
  redisPid = findRedisPid(redis.port);
  const rls = await startRateLimitServer({ redisUrl: redis.url, log: () => {} });
  const app = await startHttp1('app');
  const docs = (global: boolean) => parseDocuments(mesh(rls.port, global), 'mesh.yaml').documents;
  rls.setConfig(rateLimitServiceConfig(docs(true)));
  const workload = { name: 'web', namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
  const local = await startProxy(translateProxyConfig(docs(false), workload, { telemetry: false }), app.port);
  const global = await startProxy(translateProxyConfig(docs(true), workload, { telemetry: false }), app.port);
  const client = new Redis(redis.url);
  const grpcClient: RateLimitServiceClient = new (rateLimitServiceDefinition().Client)(`127.0.0.1:${rls.port}`, grpc.credentials.createInsecure());
  const rlsRequest: RateLimitRequestMessage = {
    domain: 'wasmesh',
    descriptors: [{ entries: [{ key: 'wasmesh_limit', value: 'default.measure.per-client' }, { key: 'remote_address', value: '127.0.0.1' }], limit: null, hits_addend: null }],
    hits_addend: 0,
  };
  try {
    let k = 0;
    await steps('redis', N, async () => {
      const key = `m_${k++ % 1000}`;
      await client.multi().incrby(key, 1).expire(key, 1).exec();
    });
    await steps('limiter', N, async () => {
      await rls.limiter.shouldRateLimit(rlsRequest);
    });
    await steps('rls', N, () => new Promise<void>((resolve, reject) => grpcClient.ShouldRateLimit(rlsRequest, new grpc.Metadata(), {}, (err) => (err ? reject(err) : resolve()))));
    // The proxy's own callout client, with the global proxy's clusters and pools.
    const internals = global as unknown as { clusters: never; upstreams: never };
    const callout = createGrpcCallout(internals.clusters, internals.upstreams);
    const cluster = (global.config.inboundFilters.find((b) => b.rootId === 'policy')!.pluginConfig as { globalRateLimit: { cluster: string } }).globalRateLimit.cluster;
    const message = rateLimitServiceDefinition().encodeRequest(rlsRequest);
    await steps('callout', N, async () => {
      const r = await callout({ upstream: cluster, service: 'envoy.service.ratelimit.v3.RateLimitService', method: 'ShouldRateLimit', initialMetadata: [], message, timeoutMs: 1000 });
      if (typeof r === 'number' || r.status !== 0) throw new Error(`callout failed: ${JSON.stringify(r)}`);
    });
    await steps('local', N, async () => {
      const res = await request(local.inboundPort, { path: '/x', headers: { host: 'web' } });
      if (res.status !== 200) throw new Error(`local: ${res.status}`);
    });
    await steps('global', N, async () => {
      const res = await request(global.inboundPort, { path: '/x', headers: { host: 'web' } });
      if (res.status !== 200) throw new Error(`global: ${res.status} ${res.body}`);
    });
  } finally {
    grpcClient.close();
    client.disconnect();
    await local.stop(100);
    await global.stop(100);
    await app.close();
    await rls.close();
    await redis.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
