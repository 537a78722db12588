// What the telemetry filter costs in the real proxy (issue 15): CPU per request of each sidecar of a
// pair, client -> outbound sidecar -> (mTLS or plaintext) -> inbound sidecar -> app, with no filter,
// with a no-op wasm filter on both sides, and with the built-in telemetry binding (the translator's,
// metrics on, access log off). A benchmark, not a test: it prints a table and writes its own section
// of bench/RESULTS.md.
//
//   node --import tsx proxy-host/bench/telemetry-path.bench.ts
//
// Processes (proxy-host/bench/telemetry-path/processes.ts): a node:http app answering 1 KB, the two
// sidecars (Proxy.start, identities from the test CA), wrk -t1 -c16 keep-alive to the outbound sidecar.
// Pinning: both sidecars on one CPU, wrk and the app on another (taskset). CPU per request per sidecar
// is utime + stime from /proc/<pid>/stat over the measured window, divided by the requests wrk
// completed. The machine is shared: every round runs every configuration (in a rotated order, fresh
// sidecars each time), and the table gives medians over rounds and ratios to the no-filter row of the
// same security mode.
//
// Environment: BENCH_ROUNDS (default 3), BENCH_DURATION (s measured, 8), BENCH_WARMUP (s, 3),
// BENCH_CONNECTIONS (16), BENCH_BODY (bytes, 1024), BENCH_CONFIGS (comma list of <plain|mtls>-<none|noop|telemetry>,
// default all six), BENCH_CPU_PROF=<dir>: after the rounds, one more window per configuration with both
// sidecars under the V8 profiler, written as <dir>/<config>-<side>.cpuprofile (summarize with
// `node proxy-host/bench/profile-summary.mjs <dir>`); profiled windows are not in the table.
// BENCH_BASELINE=<dir>: a checkout of another commit (its filters built, node_modules in place): every
// configuration also runs with the sidecars' code and filter modules from there, in the same rounds,
// and the table gives this checkout's figures against it (before/after on one noisy machine).
// BENCH_BASELINE_NAME names it in the output (default: its git commit). BENCH_NO_RESULTS=1 prints without writing bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClusterConfig, FilterBinding, ProxyConfig, WorkloadIdentity } from '../../mesh/src/proxy-config.ts';
import { withBuiltinFilters } from '../../mesh/src/translate/builtin-filters.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import { RESULTS_FILE, writeResultsSection } from '../../scripts/bench-results.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../test/support/config.ts';
import { createTestCa } from '../test/support/test-ca.ts';
import { Children } from './support/children.ts';
import { CPUS } from './support/cpus.ts';
import { cpuTimes } from './support/proc.ts';
import { httpGet } from './support/services.ts';
import { ensureTools, wrkVersion } from './support/tools.ts';
import { runWrk } from './support/wrk.ts';
import { startBenchProcess, type BenchProcess } from './telemetry-path/start.ts';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
const SECTION = '## Telemetry in the proxy (proxy-host/bench/telemetry-path.bench.ts)';
const HOST = 'reviews.default.svc.cluster.local';
const CLUSTER = `outbound|9080||${HOST}`;
const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/reviews';

type Security = 'plain' | 'mtls';
type Filters = 'none' | 'noop' | 'telemetry';
interface BenchConfig {
  security: Security;
  filters: Filters;
  name: string;
  /** The checkout whose proxy code and filter modules the sidecars run. */
  root: string;
  /** Set for the baseline checkout's twin of a configuration. */
  baseline: boolean;
}

const ALL_CONFIGS: BenchConfig[] = (['plain', 'mtls'] as const).flatMap((security) =>
  (['none', 'noop', 'telemetry'] as const).map((filters) => ({ security, filters, name: `${security}-${filters}`, root: ROOT, baseline: false })),
);

function num(name: string, fallback: number): number {
  const v = process.env[name];
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

const CLIENT: WorkloadIdentity = { name: 'productpage', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };
const SERVER: WorkloadIdentity = { name: 'reviews', namespace: 'default', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'reviews' };

/** The chains of one configuration, as the translator would give them (telemetry) or one no-op module per side. */
function chains(filters: Filters, workload: WorkloadIdentity, noopWasm: string, root: string): { inbound: FilterBinding[]; outbound: FilterBinding[] } {
  if (filters === 'telemetry') return withBuiltinFilters({ inbound: [], outbound: [] }, [], [], workload, { filtersDir: path.join(root, 'filters') });
  if (filters === 'noop') {
    const noop = filterBinding('noop', noopWasm, { failStrategy: 'FAIL_OPEN' });
    return { inbound: [noop], outbound: [noop] };
  }
  return { inbound: [], outbound: [] };
}

function serverConfig(c: BenchConfig, noopWasm: string): ProxyConfig {
  const { inbound, outbound } = chains(c.filters, SERVER, noopWasm, c.root);
  const base = proxyConfig({ inboundFilters: inbound, outboundFilters: outbound });
  return { ...base, workload: SERVER, mtls: { mode: c.security === 'mtls' ? 'STRICT' : 'DISABLE' }, version: `${base.version}-${c.name}` };
}

function clientConfig(c: BenchConfig, serverPort: number, noopWasm: string): ProxyConfig {
  const { inbound, outbound } = chains(c.filters, CLIENT, noopWasm, c.root);
  const upstream: ClusterConfig = cluster(CLUSTER, [{ port: serverPort }], { host: HOST, port: 9080 });
  const base = proxyConfig({
    clusters: [c.security === 'mtls' ? { ...upstream, tls: { mode: 'ISTIO_MUTUAL', subjectAltNames: [SERVER_ID] } } : upstream],
    virtualHosts: [{ name: HOST, domains: ['reviews', HOST, `${HOST}:9080`], routes: [forward('reviews/default', CLUSTER)] }],
    inboundFilters: inbound,
    outboundFilters: outbound,
  });
  return { ...base, workload: CLIENT, version: `${base.version}-${c.name}` };
}

/** A module that answers every callback it exports at once: the runtime's floor per stream. */
const NOOP_WAT = guestModule({
  body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))`,
});

interface Window {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  failed: number;
  /** µs of CPU per request: user, system. */
  outbound: { user: number; system: number };
  inbound: { user: number; system: number };
}

const total = (t: { user: number; system: number }) => t.user + t.system;

/** Sum of istio_requests_total samples of one reporter in a sidecar's Prometheus text. */
async function istioRequests(adminPort: number, reporter: string, policy: string): Promise<number> {
  const text = (await httpGet(adminPort, '/stats/prometheus', `127.0.0.1:${adminPort}`)).body;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('istio_requests_total{') && line.includes(`reporter="${reporter}"`) && line.includes(`connection_security_policy="${policy}"`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface Pair {
  server: BenchProcess;
  client: BenchProcess;
}

async function startPair(children: Children, c: BenchConfig, tmp: string, appPort: number, noopWasm: string): Promise<Pair> {
  const target = CPUS?.target;
  const label = labelOf(c).replace('@', '-');
  const serverFile = path.join(tmp, `server-${label}.json`);
  writeFileSync(serverFile, JSON.stringify(serverConfig(c, noopWasm)));
  const server = await startBenchProcess(children, 'inbound sidecar', ['sidecar', c.root, serverFile, path.join(tmp, 'reviews.json'), 'inbound', String(appPort)], target);
  try {
    const clientFile = path.join(tmp, `client-${label}.json`);
    writeFileSync(clientFile, JSON.stringify(clientConfig(c, server.port, noopWasm)));
    const client = await startBenchProcess(children, 'outbound sidecar', ['sidecar', c.root, clientFile, path.join(tmp, 'productpage.json'), 'outbound'], target);
    return { server, client };
  } catch (err) {
    await children.stop(server.cp);
    throw err;
  }
}

/** One request through the pair, and for mTLS a plaintext one straight to the inbound sidecar, which STRICT must refuse. */
async function checkPath(c: BenchConfig, pair: Pair): Promise<void> {
  const r = await httpGet(pair.client.port, '/reviews/1', HOST);
  if (r.status !== 200) throw new Error(`${c.name}: GET through the pair answered ${r.status}: ${r.body.slice(0, 200)}`);
  if (c.security === 'mtls') {
    const plain = await httpGet(pair.server.port, '/reviews/1', HOST).then((x) => x.status, () => 0);
    if (plain === 200) throw new Error(`${c.name}: the inbound sidecar answered a plaintext request under STRICT`);
  }
}

async function measure(children: Children, wrk: string, c: BenchConfig, pair: Pair, seconds: number, connections: number): Promise<Window> {
  const url = `http://127.0.0.1:${pair.client.port}/reviews/1`;
  const before = { out: cpuTimes(pair.client.pid), in: cpuTimes(pair.server.pid) };
  const policy = c.security === 'mtls' ? 'mutual_tls' : 'none';
  const countedBefore = c.filters === 'telemetry' ? await istioRequests(pair.server.adminPort, 'destination', policy) : 0;
  const load = await runWrk(children, { bin: wrk, url, host: HOST, seconds, connections, cpu: CPUS?.load });
  const after = { out: cpuTimes(pair.client.pid), in: cpuTimes(pair.server.pid) };
  if (!before.out || !before.in || !after.out || !after.in) throw new Error('no /proc: this benchmark needs Linux');
  const n = load.requests;
  const per = (a: { user: number; system: number }, b: { user: number; system: number }) => ({ user: ((b.user - a.user) * 1e6) / n, system: ((b.system - a.system) * 1e6) / n });
  if (c.filters === 'telemetry') {
    // The filter really ran on every request: the inbound side counted them with the expected policy.
    const counted = (await istioRequests(pair.server.adminPort, 'destination', policy)) - countedBefore;
    if (counted < n) {
      const text = (await httpGet(pair.server.adminPort, '/stats/prometheus', `127.0.0.1:${pair.server.adminPort}`)).body;
      const seen = text.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n') || '(no istio_requests_total)';
      throw new Error(`${c.name}: wrk completed ${n} requests but the inbound telemetry counted ${counted} with connection_security_policy="${policy}"; it has:\n${seen}`);
    }
  }
  return { requests: n, rps: load.rps, p50Ms: load.p50Ms, p99Ms: load.p99Ms, failed: load.errors + load.non2xx, outbound: per(before.out, after.out), inbound: per(before.in, after.in) };
}

async function profileWindow(children: Children, wrk: string, c: BenchConfig, pair: Pair, seconds: number, connections: number, dir: string): Promise<void> {
  const label = labelOf(c).replace('@', '-');
  const files = { outbound: path.join(dir, `${label}-outbound.cpuprofile`), inbound: path.join(dir, `${label}-inbound.cpuprofile`) };
  pair.client.send('profile-start');
  pair.server.send('profile-start');
  await new Promise((r) => setTimeout(r, 300));
  const before = { out: cpuTimes(pair.client.pid), in: cpuTimes(pair.server.pid) };
  const load = await runWrk(children, { bin: wrk, url: `http://127.0.0.1:${pair.client.port}/reviews/1`, host: HOST, seconds, connections, cpu: CPUS?.load });
  const after = { out: cpuTimes(pair.client.pid), in: cpuTimes(pair.server.pid) };
  const written = [pair.client.waitForLine(`BENCH_PROFILED ${files.outbound}`, 30_000), pair.server.waitForLine(`BENCH_PROFILED ${files.inbound}`, 30_000)];
  pair.client.send(`profile-stop ${files.outbound}`);
  pair.server.send(`profile-stop ${files.inbound}`);
  await Promise.all(written);
  // Beside each profile: the requests of its window, so profiles of different configurations compare per request.
  const us = (a?: { user: number; system: number }, b?: { user: number; system: number }) => (a && b ? ((b.user + b.system - a.user - a.system) * 1e6) / load.requests : NaN);
  writeFileSync(path.join(dir, `${label}.json`), JSON.stringify({ requests: load.requests, rps: load.rps, outboundUsPerRequest: us(before.out, after.out), inboundUsPerRequest: us(before.in, after.in) }));
  process.stdout.write(`profiles: ${path.relative(ROOT, files.outbound)}, ${path.relative(ROOT, files.inbound)} (${load.requests} requests; under the profiler outbound ${f1(us(before.out, after.out))} µs, inbound ${f1(us(before.in, after.in))} µs per request)\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const f1 = (n: number) => n.toFixed(1);

/** A configuration's name in the output: `mtls-telemetry`, or `mtls-telemetry@baseline` for the baseline checkout's twin. */
function labelOf(c: BenchConfig): string {
  return c.baseline ? `${c.name}@baseline` : c.name;
}

function chosenConfigs(baselineRoot: string | undefined): BenchConfig[] {
  const wanted = process.env.BENCH_CONFIGS?.split(',').map((s) => s.trim()).filter(Boolean);
  const configs = wanted ? ALL_CONFIGS.filter((c) => wanted.includes(c.name)) : ALL_CONFIGS;
  if (configs.length === 0) throw new Error(`BENCH_CONFIGS names none of ${ALL_CONFIGS.map((c) => c.name).join(', ')}`);
  return baselineRoot === undefined ? configs : configs.flatMap((c) => [c, { ...c, root: baselineRoot, baseline: true }]);
}

async function main(): Promise<void> {
  const rounds = Math.round(num('BENCH_ROUNDS', 3));
  const duration = Math.round(num('BENCH_DURATION', 8));
  const warmup = Math.round(num('BENCH_WARMUP', 3));
  const connections = Math.round(num('BENCH_CONNECTIONS', 16));
  const bodyBytes = Math.round(num('BENCH_BODY', 1024));
  const baselineRoot = process.env.BENCH_BASELINE ? path.resolve(process.env.BENCH_BASELINE) : undefined;
  const configs = chosenConfigs(baselineRoot);
  const profDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
  const tools = ensureTools(['wrk']);
  if (tools.missing) throw new Error(tools.missing);
  const wrk = tools.paths.wrk!;

  const children = new Children('telemetry-path bench');
  children.installHandlers();
  const tmp = children.tmpDir('wasmesh-bench-telemetry-');
  const started = Date.now();
  const ca = await createTestCa('wasmesh bench root');
  for (const [file, sa] of [['reviews.json', 'reviews'], ['productpage.json', 'productpage']] as const) {
    const cert = await ca.issue('default', sa);
    writeFileSync(path.join(tmp, file), JSON.stringify({ keyPem: cert.keyPem, certChainPem: cert.certChainPem, trustBundlePem: cert.trustBundlePem }));
  }
  const noopWasm = path.join(tmp, 'noop.wasm');
  writeFileSync(noopWasm, await wat2wasm(NOOP_WAT));

  const results = new Map<string, Window[]>(configs.map((c) => [labelOf(c), []]));
  const onePair = async (c: BenchConfig, appPort: number, run: (pair: Pair) => Promise<void>): Promise<void> => {
    const pair = await startPair(children, c, tmp, appPort, noopWasm);
    try {
      await checkPath(c, pair);
      await runWrk(children, { bin: wrk, url: `http://127.0.0.1:${pair.client.port}/reviews/1`, host: HOST, seconds: warmup, connections, cpu: CPUS?.load });
      await run(pair);
    } finally {
      await Promise.all([children.stop(pair.client.cp), children.stop(pair.server.cp)]);
    }
  };
  try {
    const app = await startBenchProcess(children, 'app', ['app', String(bodyBytes)], CPUS?.load);
    for (let round = 0; round < rounds; round++) {
      // Rotated each round, so no configuration always runs first (or right after the same neighbour).
      const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
      for (const c of order) {
        await onePair(c, app.port, async (pair) => {
          const w = await measure(children, wrk, c, pair, duration, connections);
          results.get(labelOf(c))!.push(w);
          process.stdout.write(
            `round ${round + 1}/${rounds} ${labelOf(c).padEnd(24)} ${Math.round(w.rps)} req/s, outbound ${f1(total(w.outbound))} µs (sys ${f1(w.outbound.system)}), inbound ${f1(total(w.inbound))} µs (sys ${f1(w.inbound.system)}), p50 ${w.p50Ms} ms, failed ${w.failed}\n`,
          );
        });
      }
    }
    if (profDir) {
      mkdirSync(profDir, { recursive: true });
      for (const c of configs) await onePair(c, app.port, (pair) => profileWindow(children, wrk, c, pair, duration, connections, profDir));
    }
    await children.stop(app.cp);
  } finally {
    await children.stopAll();
    children.killAllSync();
  }

  const section = render(configs, results, { rounds, duration, warmup, connections, bodyBytes, wrk: wrkVersion(wrk), seconds: Math.round((Date.now() - started) / 1000), baseline: baselineRoot });
  process.stdout.write(`\n${section}\n`);
  if (process.env.BENCH_NO_RESULTS !== '1') {
    await writeResultsSection(section, RESULTS_FILE);
    process.stdout.write(`written to ${path.relative(ROOT, RESULTS_FILE)}\n`);
  }
}

interface RunFacts {
  rounds: number;
  duration: number;
  warmup: number;
  connections: number;
  bodyBytes: number;
  wrk: string;
  seconds: number;
  baseline: string | undefined;
}

function render(configs: BenchConfig[], results: Map<string, Window[]>, r: RunFacts): string {
  const cpus = os.cpus();
  const commit = (root: string) => spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || '?';
  const lines = [
    SECTION,
    '',
    `Written by \`node --import tsx proxy-host/bench/telemetry-path.bench.ts\` on ${new Date().toISOString()} (commit ${commit(ROOT)}${r.baseline ? `, baseline: ${process.env.BENCH_BASELINE_NAME ?? commit(r.baseline)}` : ''}), ${r.rounds} round(s), whole run ${r.seconds} s.`,
    `Machine: ${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, Node.js ${process.version}, ${os.platform()} ${os.release()}. Shared and noisy: read the ratios, measured in the same rounds.`,
    `Path: wrk ${r.wrk} (\`-t1 -c${r.connections}\`, keep-alive) -> outbound sidecar (productpage) -> inbound sidecar (reviews) -> node:http app (${r.bodyBytes}-byte body). ` +
      `mTLS: ISTIO_MUTUAL + STRICT with SPIFFE certificates from a throwaway CA; plaintext: DISABLE. Filters on both sides of both sidecars: none, a no-op wasm module (WAT: headers and on_log only), or the built-in telemetry binding (translator's default: metrics on, access log off, FAIL_OPEN). ` +
      (CPUS ? `Pinning: both sidecars on CPU ${CPUS.target}, wrk and the app on CPU ${CPUS.load}. ` : 'No pinning (taskset or a second CPU missing). ') +
      `Each round starts fresh sidecars per configuration (in a rotated order), ${r.warmup} s warm-up, ${r.duration} s measured; CPU per request = utime + stime of the sidecar process over the window (/proc) / requests completed. Medians over rounds; the telemetry rows were checked against the inbound sidecar's istio_requests_total.` +
      (r.baseline ? ' `@baseline` rows ran the sidecars (proxy code and filter modules) of the baseline commit, interleaved with this commit\'s.' : ''),
    '',
    `| configuration | req/s | outbound µs/req (sys) | inbound µs/req (sys) | outbound / no filter | inbound / no filter |${r.baseline ? ' outbound / baseline | inbound / baseline |' : ''} p50 ms | failed |`,
    `|---|---|---|---|---|---|${r.baseline ? '---|---|' : ''}---|---|`,
  ];
  const med = (ws: Window[], pick: (w: Window) => number) => median(ws.map(pick));
  const outOf = (w: Window) => total(w.outbound);
  const inOf = (w: Window) => total(w.inbound);
  const ratio = (mine: number, other: Window[] | undefined, pick: (w: Window) => number) => (other && other.length > 0 ? `${(mine / med(other, pick)).toFixed(2)}x` : '-');
  for (const c of configs) {
    const ws = results.get(labelOf(c))!;
    if (ws.length === 0) continue;
    const none = results.get(labelOf({ ...c, name: `${c.security}-none` }));
    const base = c.baseline ? undefined : results.get(`${c.name}@baseline`);
    const out = med(ws, outOf);
    const inn = med(ws, inOf);
    lines.push(
      `| ${labelOf(c)} | ${Math.round(med(ws, (w) => w.rps))} | ${f1(out)} (${f1(med(ws, (w) => w.outbound.system))}) | ${f1(inn)} (${f1(med(ws, (w) => w.inbound.system))}) | ` +
        `${ratio(out, none, outOf)} | ${ratio(inn, none, inOf)} |` +
        (r.baseline ? ` ${ratio(out, base, outOf)} | ${ratio(inn, base, inOf)} |` : '') +
        ` ${med(ws, (w) => w.p50Ms)} | ${ws.reduce((a, w) => a + w.failed, 0)} |`,
    );
  }
  lines.push('');
  lines.push('Per round (outbound / inbound µs per request): ' + configs.map((c) => `${labelOf(c)} ${results.get(labelOf(c))!.map((w) => `${f1(outOf(w))}/${f1(inOf(w))}`).join(', ')}`).join('; ') + '.');
  lines.push('');
  return lines.join('\n');
}

await main();
