// npm run bench:swap: filter module hot reload, two measurements, written to bench/RESULTS.md.
//
// 1. Deploy to serving. A real orchestrator (sqlite store, REST + gRPC on loopback port 0) and N
//    managed proxies (XdsClient + Proxy, workloads web-0..web-N-1, app: web) all in this process.
//    Each round first pushes a plain routing change (a VirtualService weight; the reference: time
//    until every proxy's XdsClient reports the new config applied and ACKed), then runs the real
//    `wasmesh filter deploy` (scripts/cli/filter-deploy.ts, in process) of the other module version
//    under a fresh version string, and times, from the moment the command is issued, when each proxy's
//    inbound chain shows the new module as its stable version (polled every 2 ms) and when real HTTP
//    requests to 5 sample proxies' inbound ports first answer with the new `x-filter-version`.
// 2. Requests in flight during swaps. One standalone proxy (hand-built config, the version module on
//    its outbound chain) in this process; a child process (this file with --load-child) runs the
//    upstream (answers after 5 ms) and a closed loop of 16 keep-alive connections, recording each
//    request's start and end. Run (a) without swaps, then run (b) swapping between the two modules
//    every 100 ms with applyConfig; report both, their ratio, and the requests that were in flight
//    at a swap.
//
// node --import tsx integration/bench/swap.bench.ts [--proxies 100] [--deploys 5] [--quick]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeResultsSection, RESULTS_FILE } from '../../scripts/bench-results.ts';
import { startOrchestrator, type RunningOrchestrator } from '../../scripts/cli/orchestrator.ts';
import { run as filterDeploy } from '../../scripts/cli/filter-deploy.ts';
import { run as tokenCreate } from '../../scripts/cli/token-create.ts';
import type { FilterBinding, ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { XdsClient } from '../../proxy-host/src/config/xds-client.ts';
import { setLogLevel } from '../../proxy-host/src/log.ts';
import { Proxy } from '../../proxy-host/src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../proxy-host/test/support/config.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';
import { TASKSET } from '../../proxy-host/bench/load.ts';
import { reviewsSeed, reviewsVirtualService } from '../../orchestrator/bench/reviews-mesh.ts';
import { PLURALS } from '../../orchestrator/src/http/kinds.ts';

const SECTION = '## Filter module hot reload (npm run bench:swap)';
const THIS_FILE = fileURLToPath(import.meta.url);
const POLL_MS = 2;
const SAMPLE = 5;
const CONNECTIONS = 16;
const UPSTREAM_DELAY_MS = 5;
const SWAP_EVERY_MS = 100;
const PLUGIN = 'bench';
const wallNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const quiet = { write: () => true };

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}
const median = (xs: readonly number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
const f = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const ms = (x: number): string => (x < 10 ? `${f(x, 2)} ms` : x < 100 ? `${f(x, 1)} ms` : `${f(x)} ms`);
const n0 = (x: number): string => Math.round(x).toLocaleString('en-US');

// =================================================================================================
// The load child: upstream + closed-loop load generator (runs on CPU 0 when taskset exists).
// =================================================================================================

interface LoadRecords {
  /** Wall clock of the child (ms), per request. */
  start: number[];
  end: number[];
  /** HTTP status, 0 for a failed request. */
  status: number[];
  /** 1 = "one", 2 = "two", 0 = no or another x-filter-version. */
  version: number[];
  firstError?: string;
}

type ToChild = { type: 'upstream' } | { type: 'clock'; id: number } | { type: 'load'; port: number; seconds: number; connections: number } | { type: 'stop' };
type FromChild = { type: 'upstream'; port: number } | { type: 'clock'; id: number; wall: number } | { type: 'load'; records: LoadRecords };

async function loadChild(): Promise<void> {
  const send = (m: FromChild) => process.send!(m);
  const upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
        res.end('ok');
      }, UPSTREAM_DELAY_MS),
    );
  });
  upstream.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  process.on('message', (m: ToChild) => {
    if (m.type === 'upstream') send({ type: 'upstream', port: (upstream.address() as AddressInfo).port });
    else if (m.type === 'clock') send({ type: 'clock', id: m.id, wall: wallNow() });
    else if (m.type === 'load') void closedLoop(m.port, m.seconds, m.connections).then((records) => send({ type: 'load', records }));
    else if (m.type === 'stop') {
      upstream.closeAllConnections();
      upstream.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    }
  });
  process.on('disconnect', () => process.exit(0));
}

async function closedLoop(port: number, seconds: number, connections: number): Promise<LoadRecords> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const rec: LoadRecords = { start: [], end: [], status: [], version: [] };
  const deadline = performance.now() + seconds * 1000;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = wallNow();
      let done = false;
      const finish = (status: number, version: string | undefined, err?: unknown) => {
        if (done) return;
        done = true;
        if (err !== undefined && rec.firstError === undefined) rec.firstError = err instanceof Error ? err.message : String(err);
        rec.start.push(t0);
        rec.end.push(wallNow());
        rec.status.push(status);
        rec.version.push(version === 'one' ? 1 : version === 'two' ? 2 : 0);
        resolve();
      };
      const req = http.request({ host: '127.0.0.1', port, path: '/', agent, headers: { host: 'bench' } }, (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode ?? 0, res.headers['x-filter-version'] as string | undefined, res.statusCode === 200 ? undefined : `status ${res.statusCode}`));
        res.on('error', (err) => finish(0, undefined, err));
      });
      req.on('error', (err) => finish(0, undefined, err));
      req.setTimeout(10_000, () => req.destroy(new Error('request timed out after 10 s')));
      req.end();
    });
  await Promise.all(
    Array.from({ length: connections }, async () => {
      // Bounded by time, and by count (a broken proxy answering instantly cannot run away).
      for (let i = 0; i < 1_000_000 && performance.now() < deadline; i++) await one();
    }),
  );
  agent.destroy();
  return rec;
}

class LoadChild {
  readonly cp: ChildProcess;
  #waiters = new Map<string, (m: FromChild) => void>();

  constructor() {
    const args = ['--import', 'tsx', THIS_FILE, '--load-child'];
    const opts = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as ('ignore' | 'inherit' | 'ipc')[] };
    this.cp = TASKSET ? spawn(TASKSET, ['-c', '0', process.execPath, ...args], opts) : spawn(process.execPath, args, opts);
    this.cp.on('message', (m: FromChild) => {
      const key = m.type === 'clock' ? `clock-${m.id}` : m.type;
      const w = this.#waiters.get(key);
      if (w) {
        this.#waiters.delete(key);
        w(m);
      }
    });
  }

  request<T extends FromChild>(m: ToChild, timeoutMs: number): Promise<T> {
    const key = m.type === 'clock' ? `clock-${m.id}` : m.type;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`load child: no ${m.type} reply within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.set(key, (r) => {
        clearTimeout(timer);
        resolve(r as T);
      });
      this.cp.send(m);
    });
  }

  /** The child's wall clock minus ours (ms), from the ping with the shortest round trip. */
  async clockOffset(): Promise<{ offset: number; rtt: number }> {
    let best = { offset: 0, rtt: Infinity };
    for (let i = 0; i < 30; i++) {
      const t0 = wallNow();
      const r = await this.request<{ type: 'clock'; id: number; wall: number }>({ type: 'clock', id: i }, 5000);
      const t1 = wallNow();
      if (t1 - t0 < best.rtt) best = { offset: r.wall - (t0 + t1) / 2, rtt: t1 - t0 };
    }
    return best;
  }

  async stop(): Promise<void> {
    if (this.cp.exitCode !== null || this.cp.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.cp.once('exit', () => r()));
    try {
      this.cp.send({ type: 'stop' });
    } catch {
      /* already gone */
    }
    const timer = setTimeout(() => this.cp.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

// =================================================================================================
// Part 1: filter deploy -> N managed proxies serving the new module.
// =================================================================================================

interface Managed {
  name: string;
  client: XdsClient;
  proxy?: Proxy;
}

interface ReferenceRound {
  /** Per proxy: ms from the write until its XdsClient reported the new config applied, sorted. */
  times: number[];
  writeMs: number;
}

interface DeployRound {
  version: string;
  tag: 'one' | 'two';
  /** The CLI command's own time (upload, read the plugin, write it). */
  cliMs: number;
  /** Per proxy: ms from the command until its inbound chain's stable module is the new one, sorted. */
  serving: number[];
  /** Per sampled proxy: ms until an HTTP response first carried the new x-filter-version. */
  http: number[];
  httpRequests: number;
  httpErrors: number;
  /** Responses with the old version after the new one had answered on that proxy. */
  httpBackslides: number;
}

interface DeployResult {
  n: number;
  startMs: number;
  rssMiB: number;
  reference: ReferenceRound[];
  deploys: DeployRound[];
  orchestratorErrors: string[];
}

const seed = reviewsSeed.map((doc) => ({ kind: PLURALS[doc.kind], name: doc.metadata.name, doc }));
const virtualService = reviewsVirtualService;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function startApp(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((r) => server.close(() => r()));
}

/** The stable module of the bench WasmPlugin on a proxy's inbound chain (undefined during a canary or before it exists). */
function servingSha(p: Proxy | undefined): string | undefined {
  const s = p?.filters().inbound.find((x) => x.plugin === `default.${PLUGIN}`);
  return s && !s.canary ? s.stable.sha256 : undefined;
}

function probe(port: number, agent: http.Agent): Promise<{ status: number; version: string | undefined }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.headers['x-filter-version'] as string | undefined }));
      res.on('error', () => resolve({ status: 0, version: undefined }));
    });
    req.on('error', () => resolve({ status: 0, version: undefined }));
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.end();
  });
}

async function deployBench(n: number, deploys: number, files: Record<'one' | 'two', string>, shas: Record<'one' | 'two', string>, root: string): Promise<DeployResult> {
  const dataDir = join(root, 'orchestrator');
  const errLines: string[] = [];
  const errSink = { write: (t: string) => (errLines.length < 20 && errLines.push(t.trim()), true) };
  let orch: RunningOrchestrator | undefined;
  let app: http.Server | undefined;
  const managed: Managed[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  // The discovery server logs every proxy's connect and disconnect at info to stderr (no option for it
  // through startOrchestrator): drop those lines while this part runs, keep warnings and errors.
  const stderrWrite = process.stderr.write;
  process.stderr.write = function (chunk: unknown, ...rest: unknown[]): boolean {
    if (typeof chunk === 'string' && /^\S+ info \[xds\] /.test(chunk)) return true;
    return (stderrWrite as (...a: unknown[]) => boolean).call(process.stderr, chunk, ...rest);
  } as typeof process.stderr.write;
  try {
    orch = await startOrchestrator({ dataDir, store: 'sqlite', listen: { host: '127.0.0.1', port: 0 }, grpcListen: { host: '127.0.0.1', port: 0 }, out: quiet, err: errSink });
    const url = orch.url;
    const token = async (args: string[]) => {
      const out: string[] = [];
      if ((await tokenCreate([...args, '--data-dir', dataDir], { write: (t: string) => out.push(t) }, quiet)) !== 0) throw new Error(`token create ${args.join(' ')} failed`);
      return out.join('').trim();
    };
    const admin = await token(['--role', 'admin']);
    const proxyToken = await token(['--role', 'proxy', '--namespace', 'default', '--service-account', 'web']);
    const api = async (method: string, path: string, body?: unknown): Promise<number> => {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { authorization: `Bearer ${admin}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
      return res.status;
    };
    const deploy = async (file: string, version: string) => {
      const out: string[] = [];
      const code = await filterDeploy([file, '--name', PLUGIN, '--version', version, '--server', url, '--token', admin], { out: { write: (t: string) => out.push(t) }, err: { write: (t: string) => out.push(t) } });
      if (code !== 0) throw new Error(`filter deploy ${version} exited ${code}: ${out.join('')}`);
    };
    for (const s of seed) await api('PUT', `/apis/${s.kind}/default/${s.name}`, s.doc);
    await api('PUT', '/apis/virtualservices/default/reviews', virtualService(90));
    await deploy(files.one, '1.0.0');
    app = await startApp();
    const appPort = (app.address() as AddressInfo).port;

    // N managed proxies, one shared service account (the proxy token is bound to it).
    const startT = performance.now();
    for (let i = 0; i < n; i++) {
      const m: Managed = { name: `web-${i}`, client: undefined as unknown as XdsClient };
      const workload: WorkloadIdentity = { name: m.name, namespace: 'default', labels: { app: 'web' }, serviceAccount: 'web' };
      m.client = new XdsClient({
        address: `127.0.0.1:${orch.grpcPort}`,
        token: proxyToken,
        workload,
        dataDir: join(root, 'proxies', m.name),
        backoff: { initialMs: 100, maxMs: 1000 },
        apply: async (config: ProxyConfig) => {
          if (m.proxy) return m.proxy.applyConfig(config);
          m.proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: null, appPort, accessLog: 'off' }, config);
        },
      });
      managed.push(m);
      m.client.start();
    }
    await waitFor('every proxy to start with its first config', () => managed.every((m) => m.proxy !== undefined && servingSha(m.proxy) === shas.one), 120_000);
    const startMs = performance.now() - startT;
    const sample = [...new Set(Array.from({ length: Math.min(SAMPLE, n) }, (_, k) => Math.round((k * (n - 1)) / Math.max(1, Math.min(SAMPLE, n) - 1))))].map((i) => managed[i]!);
    for (const m of sample) {
      const r = await probe(m.proxy!.inboundPort, agent);
      if (r.status !== 200 || r.version !== 'one') throw new Error(`${m.name}: inbound answered ${r.status} with x-filter-version ${r.version} (expected one)`);
    }
    const rssMiB = process.memoryUsage().rss / 2 ** 20;
    process.stdout.write(`part 1: ${n} proxies up and serving 1.0.0 in ${f(startMs)} ms (RSS ${f(rssMiB)} MiB)\n`);

    const reference: ReferenceRound[] = [];
    const rounds: DeployRound[] = [];
    for (let r = 0; r < deploys; r++) {
      // Reference: a plain routing change, every proxy's config changes.
      {
        await sleep(300); // let the previous round's pushes and the debounce settle
        const baseline = managed.map((m) => m.client.status().applied);
        const times: (number | undefined)[] = new Array(n).fill(undefined);
        const t0 = performance.now();
        const write = api('PUT', '/apis/virtualservices/default/reviews', virtualService(r % 2 === 0 ? 80 : 90)).then(() => performance.now() - t0);
        await pollUntil(() => {
          const now = performance.now() - t0;
          let left = 0;
          for (let i = 0; i < n; i++) {
            if (times[i] !== undefined) continue;
            const applied = managed[i]!.client.status().applied;
            if (applied !== undefined && applied !== baseline[i]) times[i] = now;
            else left++;
          }
          return left === 0;
        }, 30_000, `round ${r + 1}: the routing change on every proxy`);
        reference.push({ times: (times as number[]).sort((a, b) => a - b), writeMs: await write });
      }
      // The module deploy.
      await sleep(300);
      const tag: 'one' | 'two' = r % 2 === 0 ? 'two' : 'one';
      const old: 'one' | 'two' = tag === 'one' ? 'two' : 'one';
      const version = `${r + 2}.0.0`;
      const serving: (number | undefined)[] = new Array(n).fill(undefined);
      const httpSeen: (number | undefined)[] = new Array(sample.length).fill(undefined);
      let httpRequests = 0;
      let httpErrors = 0;
      let httpBackslides = 0;
      let probing = true;
      const t0 = performance.now();
      const probeDeadline = t0 + 60_000;
      // Real requests to the sampled proxies' inbound ports, one after another on each, until each
      // answered with the new version (and the poll below is done), bounded in time.
      const probers = sample.map(async (m, k) => {
        for (let i = 0; i < 100_000 && (probing || httpSeen[k] === undefined) && performance.now() < probeDeadline; i++) {
          const res = await probe(m.proxy!.inboundPort, agent);
          const at = performance.now() - t0;
          httpRequests++;
          if (res.status !== 200 || (res.version !== tag && res.version !== old)) httpErrors++;
          else if (res.version === tag) httpSeen[k] ??= at;
          else if (httpSeen[k] !== undefined) httpBackslides++;
        }
      });
      const cli = deploy(files[tag], version).then(() => performance.now() - t0);
      try {
        await pollUntil(() => {
          const now = performance.now() - t0;
          let left = 0;
          for (let i = 0; i < n; i++) {
            const m = managed[i]!;
            if (serving[i] === undefined && servingSha(m.proxy) === shas[tag]) serving[i] = now;
            if (serving[i] === undefined) left++;
          }
          return left === 0;
        }, 60_000, `deploy ${version}: every proxy serving ${tag}`);
      } finally {
        probing = false;
        await Promise.all(probers);
      }
      const cliMs = await cli;
      if (httpSeen.some((x) => x === undefined)) throw new Error(`deploy ${version}: a sampled proxy never answered with x-filter-version ${tag}`);
      const round: DeployRound = {
        version,
        tag,
        cliMs,
        serving: (serving as number[]).sort((a, b) => a - b),
        http: httpSeen as number[],
        httpRequests,
        httpErrors,
        httpBackslides,
      };
      rounds.push(round);
      const ref = reference.at(-1)!;
      process.stdout.write(
        `  round ${r + 1}: routing change all applied ${f(ref.times.at(-1)!)} ms; deploy ${version} (${tag}): CLI ${f(cliMs)} ms, serving first ${f(round.serving[0]!)} / median ${f(quantile(round.serving, 0.5))} / last ${f(round.serving.at(-1)!)} ms, HTTP sample last ${f(Math.max(...round.http))} ms, ${httpRequests} probes, ${httpErrors} errors, ${httpBackslides} back to the old version\n`,
      );
    }
    return { n, startMs, rssMiB, reference, deploys: rounds, orchestratorErrors: errLines };
  } finally {
    agent.destroy();
    await Promise.all(managed.map((m) => m.client.stop().catch(() => undefined)));
    await Promise.all(managed.map((m) => m.proxy?.stop(0).catch(() => undefined)));
    if (app) await closeServer(app);
    await orch?.close();
    process.stderr.write = stderrWrite;
  }
}

async function waitFor(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Calls `done` every POLL_MS until it returns true; bounded by `timeoutMs`. */
async function pollUntil(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (done()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

// =================================================================================================
// Part 2: latency of requests in flight during swaps (one standalone proxy).
// =================================================================================================

interface LatencyStats {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  versions: { one: number; two: number; none: number };
}

interface InFlightStats {
  /** Requests in flight while applyConfig ran (the new module compiled and started, then switched in). */
  duringApply: LatencyStats;
  /** Requests in flight at the instant applyConfig returned (the switch). */
  atSwitch: LatencyStats;
}

interface SwapResult {
  seconds: number;
  noSwaps: LatencyStats;
  swaps: LatencyStats;
  swapCount: number;
  applyMs: number[];
  inFlight: InFlightStats;
  clockRttMs: number;
  /** The proxy's event loop delay (this process's main thread) during each run, ms. */
  loopDelay: { a: { p99: number; max: number }; b: { p99: number; max: number } };
  firstError?: string;
  pinned: boolean;
}

function stats(rec: LoadRecords, idx: number[] | undefined, seconds: number): LatencyStats {
  const all = idx ?? rec.start.map((_, i) => i);
  const lat = all.map((i) => rec.end[i]! - rec.start[i]!).sort((a, b) => a - b);
  const versions = { one: 0, two: 0, none: 0 };
  let errors = 0;
  for (const i of all) {
    if (rec.status[i] !== 200) errors++;
    const v = rec.version[i];
    if (v === 1) versions.one++;
    else if (v === 2) versions.two++;
    else versions.none++;
  }
  return { requests: all.length, errors, rps: all.length / seconds, p50: quantile(lat, 0.5), p90: quantile(lat, 0.9), p99: quantile(lat, 0.99), max: lat.at(-1) ?? NaN, versions };
}

/** The current CPU affinity list of this process's main thread ("0-1"), or undefined without taskset. */
function affinity(): string | undefined {
  if (!TASKSET) return undefined;
  const r = spawnSync(TASKSET, ['-pc', String(process.pid)], { encoding: 'utf8' });
  const m = /:\s*(\S+)\s*$/.exec(r.stdout ?? '');
  return r.status === 0 && m ? m[1] : undefined;
}

function setAffinity(list: string): boolean {
  return TASKSET !== undefined && spawnSync(TASKSET, ['-pc', list, String(process.pid)], { stdio: 'ignore' }).status === 0;
}

async function swapBench(seconds: number, files: Record<'one' | 'two', string>): Promise<SwapResult> {
  const child = new LoadChild();
  let proxy: Proxy | undefined;
  const savedAffinity = affinity();
  let pinned = false;
  try {
    const { port: upstreamPort } = await child.request<{ type: 'upstream'; port: number }>({ type: 'upstream' }, 30_000);
    const config = (file: string): ProxyConfig => {
      const binding: FilterBinding = filterBinding('versioned', file);
      return proxyConfig({ virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }], clusters: [cluster('app', [{ port: upstreamPort }])], outboundFilters: [binding] });
    };
    const configs = { one: config(files.one), two: config(files.two) };
    // The proxy (this process's main thread) on CPU 1, the load child on CPU 0.
    if (savedAffinity !== undefined && os.cpus().length >= 2) pinned = setAffinity('1');
    proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: null, accessLog: 'off' }, configs.one);
    const port = proxy.outboundPort;
    const load = async (s: number) => (await child.request<{ type: 'load'; records: LoadRecords }>({ type: 'load', port, seconds: s, connections: CONNECTIONS }, (s + 30) * 1000)).records;
    const loop = monitorEventLoopDelay({ resolution: 1 });
    const loopDelay = () => ({ p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 });

    await load(Math.min(2, seconds / 3)); // warm-up (JIT, connections), discarded
    process.stdout.write(`part 2: (a) ${seconds} s without swaps\n`);
    loop.enable();
    const a = await load(seconds);
    loop.disable();
    const loopA = loopDelay();
    loop.reset();

    // Swaps are noted on our clock; converted to the child's for matching against its records.
    const clock = await child.clockOffset();
    process.stdout.write(`part 2: (b) ${seconds} s with a swap every ${SWAP_EVERY_MS} ms (clock offset ${f(clock.offset, 2)} ms, rtt ${f(clock.rtt, 2)} ms)\n`);
    const swaps: Array<{ start: number; end: number }> = [];
    let loading = true;
    loop.enable();
    const bLoad = load(seconds).finally(() => (loading = false));
    const swapper = (async () => {
      const t0 = performance.now();
      const maxSwaps = Math.ceil((seconds * 1000) / SWAP_EVERY_MS) + 5;
      let current: 'one' | 'two' = 'one';
      for (let k = 1; k <= maxSwaps && loading; k++) {
        const next = t0 + k * SWAP_EVERY_MS;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        if (!loading) break;
        current = current === 'one' ? 'two' : 'one';
        const start = wallNow();
        await proxy!.applyConfig(configs[current]);
        swaps.push({ start: start + clock.offset, end: wallNow() + clock.offset });
      }
    })();
    const b = await bLoad;
    await swapper;
    loop.disable();
    const loopB = loopDelay();

    // Requests in flight during a swap: overlapping an applyConfig call, or spanning its end.
    const during = new Set<number>();
    const atSwitch = new Set<number>();
    const order = b.start.map((_, i) => i).sort((x, y) => b.start[x]! - b.start[y]!);
    for (const s of swaps) {
      for (const i of order) {
        if (b.start[i]! > s.end) break;
        if (b.end[i]! < s.start) continue;
        during.add(i);
        if (b.start[i]! <= s.end && b.end[i]! >= s.end) atSwitch.add(i);
      }
    }
    return {
      seconds,
      noSwaps: stats(a, undefined, seconds),
      swaps: stats(b, undefined, seconds),
      swapCount: swaps.length,
      applyMs: swaps.map((s) => s.end - s.start).sort((x, y) => x - y),
      inFlight: { duringApply: stats(b, [...during], seconds), atSwitch: stats(b, [...atSwitch], seconds) },
      clockRttMs: clock.rtt,
      loopDelay: { a: loopA, b: loopB },
      ...((a.firstError ?? b.firstError) !== undefined ? { firstError: a.firstError ?? b.firstError } : {}),
      pinned,
    };
  } finally {
    await proxy?.stop(0).catch(() => undefined);
    await child.stop();
    if (pinned && savedAffinity !== undefined) setAffinity(savedAffinity);
  }
}

// =================================================================================================
// Report.
// =================================================================================================

function section(cmd: string, d: DeployResult, s: SwapResult, wallS: number): string {
  const cpus = os.cpus();
  const L: string[] = [];
  L.push(SECTION, '');
  L.push(`Written by \`${cmd}\` (integration/bench/swap.bench.ts) on ${new Date().toISOString()}.`);
  L.push(`Machine: ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}. Shared and noisy: read the ratios against the references measured in the same run. Whole run ${f(wallS)} s.`);
  L.push('');
  L.push(`### Deploy to serving: ${d.n} managed proxies`);
  L.push('');
  L.push(
    `The orchestrator (sqlite store, REST and gRPC on loopback, default debounce, built-in telemetry filter on) and ${d.n} managed proxies (XdsClient + Proxy, workloads web-0..web-${d.n - 1}, label app: web, one service-account token) all in the bench process, so the proxies share one event loop and one core: each does its own module fetch over gRPC, compile and start. ` +
      `The filter: wasm/test/support/version-module.ts (a WAT module adding \`x-filter-version\`), WasmPlugin \`${PLUGIN}\` on the inbound side. Start: ${f(d.startMs)} ms until every proxy served 1.0.0; RSS then ${f(d.rssMiB)} MiB. ` +
      `Each round: a plain routing change first (a VirtualService weight, PUT through the REST API; the reference: until every XdsClient reports the new config applied and ACKed), then \`wasmesh filter deploy <other version>.wasm --name ${PLUGIN} --version <next>\` run in process. ` +
      `"Serving": the proxy's inbound chain (\`proxy.filters()\`) has the new sha256 as its stable module, polled every ${POLL_MS} ms, all times from the moment the command (or the write) is issued. ` +
      `HTTP check: ${Math.min(SAMPLE, d.n)} sampled proxies get real requests on their inbound port, one after another, and the time of the first response with the new \`x-filter-version\` is noted.`,
  );
  L.push('');
  L.push('| round | routing change: all applied (reference) | deploy | CLI command | first proxy serving | median proxy | last proxy (all serving) | all / reference | HTTP sample: last new answer | HTTP probes (errors, back to old) |');
  L.push('|---|---|---|---|---|---|---|---|---|---|');
  d.deploys.forEach((r, i) => {
    const ref = d.reference[i]!.times.at(-1)!;
    const last = r.serving.at(-1)!;
    L.push(
      `| ${i + 1} | ${ms(ref)} | ${r.version} (${r.tag}) | ${ms(r.cliMs)} | ${ms(r.serving[0]!)} | ${ms(quantile(r.serving, 0.5))} | **${ms(last)}** | ${f(last / ref, 2)}x | ${ms(Math.max(...r.http))} | ${r.httpRequests} (${r.httpErrors}, ${r.httpBackslides}) |`,
    );
  });
  const allServing = d.deploys.map((r) => r.serving.at(-1)!);
  const allRef = d.reference.map((r) => r.times.at(-1)!);
  const medServing = median(allServing);
  const medRef = median(allRef);
  const refMedianProxy = median(d.reference.map((r) => quantile(r.times, 0.5)));
  const depMedianProxy = median(d.deploys.map((r) => quantile(r.serving, 0.5)));
  L.push('');
  L.push(
    `- All ${d.n} proxies serving the new module after \`filter deploy\`: median **${ms(medServing)}**, max ${ms(Math.max(...allServing))} over ${d.deploys.length} deploys; ` +
      `the same orchestrator's routing change reached all of them in median ${ms(medRef)} (max ${ms(Math.max(...allRef))}): a module swap takes **${f(medServing / medRef, 2)}x** a config push (median proxy: ${ms(depMedianProxy)} vs ${ms(refMedianProxy)}). ` +
      `The difference is the CLI's upload round trips (median ${ms(median(d.deploys.map((r) => r.cliMs)))} of it, before the store write), each proxy fetching the module over gRPC, compiling and starting it before the swap.`,
  );
  const http = d.deploys.flatMap((r) => r.http);
  const probes = d.deploys.reduce((a, r) => a + r.httpRequests, 0);
  const probeErrors = d.deploys.reduce((a, r) => a + r.httpErrors, 0);
  const back = d.deploys.reduce((a, r) => a + r.httpBackslides, 0);
  L.push(`- HTTP check: every sampled proxy answered with the new version, at most ${ms(Math.max(...http))} after the command; ${n0(probes)} probe requests, ${probeErrors} failed, ${back} answered with the old version after the new one had answered.`);
  if (d.orchestratorErrors.length) L.push(`- The orchestrator wrote to stderr: ${d.orchestratorErrors.slice(0, 3).join(' / ')}`);
  L.push('');
  L.push(`### Requests in flight during swaps`);
  L.push('');
  L.push(
    `One standalone wasmesh proxy in the bench process (hand-built config, the version module on the outbound chain${s.pinned ? ', main thread pinned to CPU 1 with `taskset`' : ''}); a child process${s.pinned ? ' on CPU 0' : ''} runs the upstream (answers after ${UPSTREAM_DELAY_MS} ms) and a closed loop of ${CONNECTIONS} keep-alive connections (node:http Agent), recording each request's start and end. ` +
      `After a 2 s warm-up: (a) ${s.seconds} s without swaps, then (b) ${s.seconds} s with \`proxy.applyConfig\` alternating between the two module versions every ${SWAP_EVERY_MS} ms (${s.swapCount} swaps; each starts a fresh VM of the other version (compiled once: the version before stays compiled) and configures it before switching; applyConfig took median ${ms(quantile(s.applyMs, 0.5))}, max ${ms(s.applyMs.at(-1) ?? NaN)}). ` +
      `"In flight" sets are from (b): requests whose [start, end] overlaps an applyConfig call, and those spanning the instant it returned (the switch; with a closed loop that is every connection, ${CONNECTIONS} per swap); swap times are mapped to the child's clock (ping round trip ${f(s.clockRttMs, 2)} ms).`,
  );
  L.push('');
  L.push('| run | requests | req/s | errors | p50 | p90 | p99 | max | answered by one / two |');
  L.push('|---|---|---|---|---|---|---|---|---|');
  const row = (name: string, x: LatencyStats, rps = true) =>
    L.push(`| ${name} | ${n0(x.requests)} | ${rps ? n0(x.rps) : ''} | ${x.errors} | ${ms(x.p50)} | ${ms(x.p90)} | ${ms(x.p99)} | ${ms(x.max)} | ${n0(x.versions.one)} / ${n0(x.versions.two)}${x.versions.none ? ` (${x.versions.none} neither)` : ''} |`);
  row('(a) no swaps (reference)', s.noSwaps);
  row(`(b) a swap every ${SWAP_EVERY_MS} ms`, s.swaps);
  row('(b) in flight during an applyConfig', s.inFlight.duringApply, false);
  row('(b) in flight at the switch', s.inFlight.atSwitch, false);
  const r = (x: number, y: number) => `${f(x / y, 2)}x`;
  L.push(`| (b) / (a) | ${r(s.swaps.requests, s.noSwaps.requests)} | | | ${r(s.swaps.p50, s.noSwaps.p50)} | ${r(s.swaps.p90, s.noSwaps.p90)} | ${r(s.swaps.p99, s.noSwaps.p99)} | ${r(s.swaps.max, s.noSwaps.max)} | |`);
  L.push(`| in flight during an applyConfig / (a) | | | | ${r(s.inFlight.duringApply.p50, s.noSwaps.p50)} | ${r(s.inFlight.duringApply.p90, s.noSwaps.p90)} | ${r(s.inFlight.duringApply.p99, s.noSwaps.p99)} | ${r(s.inFlight.duringApply.max, s.noSwaps.max)} | |`);
  L.push('');
  const errs = s.noSwaps.errors + s.swaps.errors;
  L.push(
    `- Errors: ${errs === 0 ? '**0**' : `**${errs}** (first: ${s.firstError ?? '?'})`} in both runs. ${n0(s.inFlight.duringApply.requests)} requests (${f((100 * s.inFlight.duringApply.requests) / Math.max(1, s.swaps.requests), 1)}% of run b) were in flight during a swap, ${n0(s.inFlight.atSwitch.requests)} across the switch itself; their p99 is ${ms(s.inFlight.duringApply.p99)} vs ${ms(s.noSwaps.p99)} with no swaps.`,
  );
  L.push(
    `- The proxy's event loop delay (\`monitorEventLoopDelay\`, 1 ms resolution): (a) p99 ${ms(s.loopDelay.a.p99)}, max ${ms(s.loopDelay.a.max)}; (b) p99 ${ms(s.loopDelay.b.p99)}, max ${ms(s.loopDelay.b.max)}.`,
  );
  return L.join('\n') + '\n';
}

// =================================================================================================

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { proxies: { type: 'string' }, deploys: { type: 'string' }, quick: { type: 'boolean' }, seconds: { type: 'string' }, 'load-child': { type: 'boolean' } },
    strict: true,
  });
  if (values['load-child']) return loadChild();
  const quick = values.quick ?? false;
  const n = Number(values.proxies ?? (quick ? 20 : 100));
  const deploys = Number(values.deploys ?? (quick ? 2 : 5));
  const seconds = Number(values.seconds ?? (quick ? 3 : 10));
  for (const [flag, v] of [['--proxies', n], ['--deploys', deploys], ['--seconds', seconds]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 5000) throw new Error(`${flag} must be a whole number from 1 to 5000`);
  }
  const cmd = ['npm run bench:swap', ...(values.proxies ? [`--proxies ${n}`] : []), ...(values.deploys ? [`--deploys ${deploys}`] : []), ...(values.seconds ? [`--seconds ${seconds}`] : []), ...(quick ? ['--quick'] : [])].join(' ').replace('npm run bench:swap ', 'npm run bench:swap -- ');
  setLogLevel('warn');
  const t = performance.now();
  const root = await mkdtemp(join(os.tmpdir(), 'wasmesh-swap-bench-'));
  try {
    const bytes = { one: await versionModule('one'), two: await versionModule('two') };
    const files = { one: join(root, 'one.wasm'), two: join(root, 'two.wasm') };
    await mkdir(join(root, 'proxies'), { recursive: true });
    await writeFile(files.one, bytes.one);
    await writeFile(files.two, bytes.two);
    const shas = { one: sha256(bytes.one), two: sha256(bytes.two) };
    const d = await deployBench(n, deploys, files, shas, root);
    const s = await swapBench(seconds, files);
    process.stdout.write(
      `part 2: (a) ${s.noSwaps.requests} requests, ${s.noSwaps.errors} errors, p50 ${f(s.noSwaps.p50, 2)} p99 ${f(s.noSwaps.p99, 2)} max ${f(s.noSwaps.max, 1)} ms; ` +
        `(b) ${s.swaps.requests} requests, ${s.swaps.errors} errors, ${s.swapCount} swaps, p50 ${f(s.swaps.p50, 2)} p99 ${f(s.swaps.p99, 2)} max ${f(s.swaps.max, 1)} ms; in flight during a swap ${s.inFlight.duringApply.requests}, p99 ${f(s.inFlight.duringApply.p99, 2)} ms\n`,
    );
    const text = section(cmd, d, s, (performance.now() - t) / 1000);
    await writeResultsSection(text);
    process.stdout.write(`\n${text}\nwritten to ${RESULTS_FILE}\n`);
    if (s.noSwaps.errors + s.swaps.errors > 0) throw new Error(`${s.noSwaps.errors + s.swaps.errors} requests failed (${s.firstError ?? '?'})`);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().then(
  () => {
    if (!process.argv.includes('--load-child')) process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`bench:swap failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
