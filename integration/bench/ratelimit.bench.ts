// npm run bench:ratelimit: what mesh-wide quota costs. A benchmark, not a test: it prints a table
// and writes its own section of bench/RESULTS.md (every other section is kept).
//
// 1. The cost per request of the global check: a sidecar (`wasmesh proxy --config`, its own process,
//    pinned to CPU 1 when taskset exists) in front of the bench upstream, loaded by autocannon (pinned
//    to CPU 0) on its inbound listener, in three windows on fresh proxies: no RateLimitPolicy (the
//    reference), a policy with a local bucket only (the policy filter's path without the global check),
//    and the same policy with a global limit (the gRPC callout to the rate-limit service, which counts
//    in Redis). Each at 1 connection (latency: what the check adds to one request) and at 16
//    (throughput). Limits are far above the load: every request is counted, none is refused.
// 2. The service's own throughput: `wasmesh ratelimit` (its own process) answering unary calls from
//    this process, 16 in flight, one descriptor per call spread over 1000 counters.
//
// The service shares CPU 0 with the load generator; Redis runs unpinned. The machine is shared and noisy: read the ratios, measured in
// the same run. Environment: BENCH_SECONDS (per window, default 5), BENCH_CONNECTIONS (default 16).
import * as grpc from '@grpc/grpc-js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { TestRedis, ensureRedis, freePort } from '../../orchestrator/test/support/redis.ts';
import { rateLimitServiceDefinition, type RateLimitServiceClient } from '../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { AUTOCANNON_VERSION, TASKSET, runAutocannon, type Load } from '../../proxy-host/bench/load.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '## Global rate limiting (npm run bench:ratelimit)';
const SECONDS = num(process.env.BENCH_SECONDS, 5);
const CONNECTIONS = num(process.env.BENCH_CONNECTIONS, 16);
/** Calls in flight against the service alone. */
const IN_FLIGHT = 16;

function num(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

type WindowKind = 'none' | 'local' | 'global';

function meshYaml(kind: WindowKind, appPort: number, rlsPort: number): string {
  const rls = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratelimit, namespace: default }
spec:
  hosts: [ratelimit.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8081, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1, ports: { grpc: ${rlsPort} } }]
`;
  if (kind === 'none') return rls;
  const global = kind === 'global'
    ? `
  global:
    service: { host: ratelimit, port: 8081 }
    timeout: 1s
    limits:
      - name: per-client
        descriptors: [{ remoteAddress: {} }]
        requestsPerUnit: 4000000000
        unit: SECOND`
    : '';
  return `${rls}---
apiVersion: policy.wasmesh.io/v1alpha1
kind: RateLimitPolicy
metadata: { name: bench, namespace: default }
spec:
  local:
    - name: burst
      descriptor: { global: true }
      maxTokens: 1000000000
      fillInterval: 1s${global}
`;
  void appPort;
}

function spawnNode(args: string[], cpu?: number): ChildProcess {
  return TASKSET && cpu !== undefined
    ? spawn(TASKSET, ['-c', String(cpu), process.execPath, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
}

function waitForOutput(cp: ChildProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}:\n${text.slice(-2000)}`)), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString();
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        cp.stdout!.off('data', onData);
        cp.stderr!.off('data', onData);
        // Keep draining, so a chatty child never blocks on a full pipe.
        cp.stdout!.resume();
        cp.stderr!.resume();
        resolve(m);
      }
    };
    cp.stdout!.on('data', onData);
    cp.stderr!.on('data', onData);
    cp.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what}: the process exited (${code}):\n${text.slice(-2000)}`));
    });
  });
}

async function stop(cp: ChildProcess): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = new Promise((r) => cp.once('exit', r));
  cp.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  if (cp.exitCode === null && cp.signalCode === null) cp.kill('SIGKILL');
}

interface WindowResult {
  kind: WindowKind;
  one: Load;
  many: Load;
}

async function window(kind: WindowKind, dir: string, appPort: number, rlsPort: number, children: Set<ChildProcess>): Promise<WindowResult> {
  const config = path.join(dir, `mesh-${kind}.yaml`);
  writeFileSync(config, meshYaml(kind, appPort, rlsPort));
  const proxy = spawnNode(['scripts/wasmesh.mjs', 'proxy', '--config', config, '--workload', 'web', '--app-port', String(appPort), '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--no-telemetry'], 1);
  children.add(proxy);
  try {
    const m = await waitForOutput(proxy, /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+)/, 'the proxy to listen');
    const inbound = Number(m[2]);
    await runAutocannon(inbound, 3, CONNECTIONS, children); // warm-up: VMs, connections, JIT and wasm tier-up
    const one = await runAutocannon(inbound, SECONDS, 1, children);
    const many = await runAutocannon(inbound, SECONDS, CONNECTIONS, children);
    return { kind, one, many };
  } finally {
    children.delete(proxy);
    await stop(proxy);
  }
}

async function serviceThroughput(port: number): Promise<{ calls: number; perSecond: number; p50: number; p99: number; failed: number }> {
  const client: RateLimitServiceClient = new (rateLimitServiceDefinition().Client)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const latencies: number[] = [];
  let failed = 0;
  let n = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const value = `10.0.${(n >> 8) & 3}.${n & 255}`;
      n++;
      const started = performance.now();
      client.ShouldRateLimit(
        { domain: 'wasmesh', descriptors: [{ entries: [{ key: 'wasmesh_limit', value: 'default.bench.per-client' }, { key: 'remote_address', value }], limit: null, hits_addend: null }] },
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err) => {
          if (err) failed++;
          else latencies.push(performance.now() - started);
          resolve();
        },
      );
    });
  // Warm-up, then IN_FLIGHT callers for SECONDS.
  await Promise.all(Array.from({ length: IN_FLIGHT }, one));
  latencies.length = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  client.close();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { calls: latencies.length, perSecond: latencies.length / elapsed, p50: q(0.5), p99: q(0.99), failed };
}

async function main(): Promise<void> {
  const redisBin = ensureRedis();
  if (!redisBin.bin) throw new Error(`bench:ratelimit needs redis-server: ${redisBin.reason}`);
  if (TASKSET) spawnSync(TASKSET, ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wasmesh-bench-rl-'));
  const children = new Set<ChildProcess>();
  const redis = await TestRedis.start(redisBin.bin);
  const rlsPort = await freePort();
  const limits = path.join(dir, 'limits.yaml');
  writeFileSync(limits, meshYaml('global', 0, rlsPort));
  // The service beside the load generator (CPU 0): the sidecar keeps CPU 1 to itself.
  const rls = spawnNode(['scripts/wasmesh.mjs', 'ratelimit', '--redis', redis.url, '--listen', `127.0.0.1:${rlsPort}`, '--config', limits], 0);
  children.add(rls);
  const upstream = spawnNode(['proxy-host/bench/upstream.mjs'], 0);
  children.add(upstream);
  const cleanup = async () => {
    await Promise.all([...children].map(stop));
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    await waitForOutput(rls, /RLS v3 on/, 'the rate-limit service');
    const up = await waitForOutput(upstream, /"port":(\d+)/, 'the upstream');
    const appPort = Number(up[1]);
    const results: WindowResult[] = [];
    for (const kind of ['none', 'local', 'global'] as const) {
      process.stderr.write(`bench:ratelimit: window ${kind}\n`);
      results.push(await window(kind, dir, appPort, rlsPort, children));
    }
    process.stderr.write('bench:ratelimit: the service alone\n');
    const service = await serviceThroughput(rlsPort);
    const section = report(results, service);
    process.stdout.write(`${section}\n`);
    await writeResultsSection(section);
  } finally {
    await cleanup();
  }
}

function report(results: WindowResult[], service: Awaited<ReturnType<typeof serviceThroughput>>): string {
  const by = (k: WindowKind) => results.find((r) => r.kind === k)!;
  const none = by('none');
  const local = by('local');
  const global = by('global');
  const f = (n: number, d = 0) => n.toFixed(d);
  const mean1 = (r: WindowResult) => (r.one.rps > 0 ? 1000 / r.one.rps : NaN); // ms per request, one connection
  const row = (r: WindowResult, label: string) =>
    `| ${label} | ${f(r.one.rps)} | ${f(mean1(r), 3)} | ${r.one.p50} / ${r.one.p99} | ${f(r.many.rps)} | ${f(r.many.rps / none.many.rps, 2)} | ${r.many.p50} / ${r.many.p99} | ${r.one.non2xx + r.many.non2xx + r.one.errors + r.many.errors} |`;
  const cpus = os.cpus();
  const added = mean1(global) - mean1(local);
  return [
    SECTION,
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}, autocannon ${AUTOCANNON_VERSION}` +
      `${TASKSET ? ' (load and the service on CPU 0, sidecar on CPU 1; Redis unpinned)' : ' (no taskset: nothing pinned)'}; ${SECONDS} s per window, redis-server ${redisVersion()}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} when it ended (other work on the machine).`,
    `Command: \`npm run bench:ratelimit\` (integration/bench/ratelimit.bench.ts). Limits far above the load: every request counted, none refused.`,
    '',
    `| sidecar inbound path | req/s, 1 conn | ms per request, 1 conn | p50 / p99 ms, 1 conn | req/s, ${CONNECTIONS} conns | ratio to no policy | p50 / p99 ms, ${CONNECTIONS} conns | non-2xx + errors |`,
    '|---|---|---|---|---|---|---|---|',
    row(none, 'no RateLimitPolicy (reference)'),
    row(local, 'local bucket only (policy filter)'),
    row(global, 'local bucket + global check (gRPC callout, RLS, Redis)'),
    '',
    `The global check adds **${f(added, 3)} ms** per request on one connection (${f(mean1(global) / mean1(local), 2)}x the local-only path's time per request): the ` +
      `callout's round trip through the service and Redis, during which the request waits. Under ${CONNECTIONS} connections the sidecar serves ` +
      `${f(global.many.rps / local.many.rps, 2)}x the local-only path's requests per second (the service, Redis, the load generator and the sidecar share two cores: with all of them in one process, as in integration/test/ratelimit.test.ts, the global path kept about 0.8x the local path's throughput in an ad hoc run on this machine).`,
    '',
    `The service alone (\`wasmesh ratelimit\`, ${IN_FLIGHT} calls in flight from one client, one descriptor per call over 1000 counters, one Lua script (INCRBY, and EXPIRE on a new counter) each): ` +
      `**${f(service.perSecond)} calls/s**, p50 ${f(service.p50, 2)} ms, p99 ${f(service.p99, 2)} ms, ${service.failed} failed, over ${service.calls} calls.`,
  ].join('\n');
}

function redisVersion(): string {
  const bin = ensureRedis().bin;
  if (!bin) return 'unknown';
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return /v=([\d.]+)/.exec(r.stdout)?.[1] ?? 'unknown';
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ratelimit: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
