// What counting calls per edge costs the proxy (issue 22: the console's graph comes from counters
// the outbound sidecar keeps per edge, stats/edge-stats.ts). Two measures, one run:
//
//   1. In process: EdgeStats.record alone, ns per call (four edges in turn, latencies spread over
//      the histogram), the median of several timed loops; and report(), the 2-s snapshot, with
//      256 edges.
//   2. The real proxy path, client -> outbound sidecar -> inbound sidecar -> app (the telemetry-path
//      benchmark's processes and pairs, no filter), plaintext and mTLS: one pair whose outbound
//      sidecar counts edges and one whose does not (Proxy option edgeStats: false), started and
//      warmed side by side, then measured in alternation within each round (rotated), so both see
//      the same machine. CPU per request of the outbound sidecar from /proc, and the median over
//      rounds of the within-round ratio on/off.
//
//   npm run bench:edges
//   BENCH_QUICK=1 npm run bench:edges    (one short round, nothing written: proves it runs)
//
// Environment: BENCH_ROUNDS (default 6), BENCH_DURATION (s per window, 5), BENCH_WARMUP (s per pair, 5),
// BENCH_CONNECTIONS (16), BENCH_BODY (bytes, 1024), BENCH_SECURITY (plain,mtls), BENCH_NO_RESULTS=1
// prints without writing bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { RESULTS_FILE, writeResultsSection } from '../../scripts/bench-results.ts';
import { createTestCa } from '../test/support/test-ca.ts';
import { EdgeStats, LATENCY_BOUNDS_MS, MAX_EDGES, type EdgeCall } from '../src/stats/edge-stats.ts';
import { Children } from './support/children.ts';
import { CPUS } from './support/cpus.ts';
import { httpGet } from './support/services.ts';
import { ensureTools, wrkVersion } from './support/tools.ts';
import { chooseConfigs, clientConfig, HOST, NOOP_WAT, serverConfig, type BenchConfig } from './telemetry-path/configs.ts';
import { measure, total, type Window } from './telemetry-path/measure.ts';
import { load, stopPair, type Pair, type PairFiles } from './telemetry-path/pair.ts';
import { median } from './telemetry-path/render.ts';
import { startBenchProcess } from './telemetry-path/start.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '## Counting calls per edge (proxy-host/bench/edges.bench.ts)';
const QUICK = process.env.BENCH_QUICK === '1';

function num(name: string, fallback: number): number {
  const v = process.env[name];
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

const f1 = (n: number) => n.toFixed(1);
const commitOf = (root: string) => spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || '?';

// ---- 1. in process --------------------------------------------------------------------------

const WORKLOAD = { name: 'productpage', namespace: 'default', labels: { app: 'productpage', version: 'v1' }, serviceAccount: 'productpage' };

/** ns per EdgeStats.record call: median of `loops` timed loops of `calls` calls. */
function recordCost(calls: number, loops: number): { nsPerCall: number; loops: number[] } {
  const labels = [
    { app: 'reviews', version: 'v1' },
    { app: 'reviews', version: 'v2' },
    { app: 'ratings', version: 'v1' },
    { app: 'details', version: 'v1' },
  ];
  const hosts = ['reviews.default.svc.cluster.local', 'reviews.default.svc.cluster.local', 'ratings.default.svc.cluster.local', 'details.default.svc.cluster.local'];
  const durations = [0.4, 3, 7, 20, 60, 300, 1200];
  const statuses = [200, 200, 200, 200, 200, 200, 200, 404, 503, 0];
  const sample: EdgeCall[] = Array.from({ length: 420 }, (_, i) => ({ service: hosts[i % 4], labels: labels[i % 4], subset: undefined, mtls: i % 2 === 0, status: statuses[i % statuses.length]!, durationMs: durations[i % durations.length]! }));
  const stats = new EdgeStats(() => WORKLOAD);
  const per: number[] = [];
  for (let l = 0; l < loops + 1; l++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) stats.record(sample[i % sample.length]!);
    const ns = ((performance.now() - t0) * 1e6) / calls;
    if (l > 0) per.push(ns); // the first loop warms the JIT
  }
  return { nsPerCall: median(per), loops: per };
}

/** µs per report() with MAX_EDGES edges (one every 2 s per proxy). */
function reportCost(times: number): number {
  const stats = new EdgeStats(() => WORKLOAD);
  for (let i = 0; i < MAX_EDGES; i++) stats.record({ service: `s${i}.default.svc.cluster.local`, labels: { app: `s${i}`, version: 'v1' }, subset: undefined, mtls: true, status: 200, durationMs: 5 });
  let edges = 0;
  const t0 = performance.now();
  for (let i = 0; i < times; i++) edges += stats.report(undefined).edges.length;
  if (edges !== MAX_EDGES * times) throw new Error(`report() gave ${edges / times} edges, not ${MAX_EDGES}`);
  return ((performance.now() - t0) * 1000) / times;
}

// ---- 2. the proxy path ----------------------------------------------------------------------

interface EdgePair extends Pair {
  edges: boolean;
  label: string;
}

async function startEdgePair(children: Children, c: BenchConfig, edges: boolean, files: PairFiles, appPort: number): Promise<EdgePair> {
  const label = `${c.security}-edges-${edges ? 'on' : 'off'}`;
  const serverFile = path.join(files.tmp, `server-${label}.json`);
  writeFileSync(serverFile, JSON.stringify(serverConfig(c, files.noopWasm)));
  const server = await startBenchProcess(children, `${label} inbound sidecar`, ['sidecar', ROOT, serverFile, files.serverPems, 'inbound', String(appPort)], CPUS?.target);
  try {
    const clientFile = path.join(files.tmp, `client-${label}.json`);
    writeFileSync(clientFile, JSON.stringify(clientConfig(c, server.port, files.noopWasm)));
    const client = await startBenchProcess(children, `${label} outbound sidecar`, ['sidecar', ROOT, clientFile, files.clientPems, 'outbound', '0', ...(edges ? [] : ['edges=off'])], CPUS?.target);
    const r = await httpGet(client.port, '/reviews/1', HOST);
    if (r.status !== 200) throw new Error(`${label}: GET through the pair answered ${r.status}: ${r.body.slice(0, 200)}`);
    return { config: c, client, server, edges, label };
  } catch (err) {
    await children.stop(server.cp);
    throw err;
  }
}

async function main(): Promise<void> {
  const rounds = Math.round(num('BENCH_ROUNDS', QUICK ? 1 : 6));
  const duration = Math.round(num('BENCH_DURATION', QUICK ? 1 : 5));
  const warmup = Math.round(num('BENCH_WARMUP', QUICK ? 1 : 5));
  const connections = Math.round(num('BENCH_CONNECTIONS', 16));
  const bodyBytes = Math.round(num('BENCH_BODY', 1024));
  const securities = (process.env.BENCH_SECURITY ?? (QUICK ? 'plain' : 'plain,mtls')).split(',').map((s) => s.trim()).filter((s) => s === 'plain' || s === 'mtls');
  const started = Date.now();

  const micro = recordCost(QUICK ? 200_000 : 5_000_000, QUICK ? 3 : 9);
  const reportUs = reportCost(QUICK ? 50 : 2_000);
  process.stdout.write(`EdgeStats.record: ${micro.nsPerCall.toFixed(1)} ns per call (loops: ${micro.loops.map((x) => x.toFixed(1)).join(', ')}); report() with ${MAX_EDGES} edges: ${f1(reportUs)} µs\n`);

  const tools = ensureTools(['wrk']);
  if (tools.missing) throw new Error(tools.missing);
  const wrk = tools.paths.wrk!;
  const children = new Children('edges bench');
  children.installHandlers();
  const tmp = children.tmpDir('wasmesh-bench-edges-');
  const files: PairFiles = { tmp, noopWasm: path.join(tmp, 'noop.wasm'), serverPems: path.join(tmp, 'reviews.json'), clientPems: path.join(tmp, 'productpage.json') };
  const ca = await createTestCa('wasmesh bench root');
  for (const [file, sa] of [[files.serverPems, 'reviews'], [files.clientPems, 'productpage']] as const) {
    const cert = await ca.issue('default', sa);
    writeFileSync(file, JSON.stringify({ keyPem: cert.keyPem, certChainPem: cert.certChainPem, trustBundlePem: cert.trustBundlePem }));
  }
  writeFileSync(files.noopWasm, await wat2wasm(NOOP_WAT));

  const results = new Map<string, Window[]>();
  try {
    const app = await startBenchProcess(children, 'app', ['app', String(bodyBytes)], CPUS?.load);
    for (const security of securities) {
      const config = chooseConfigs([`${security}-none`], ROOT, undefined)[0]!;
      const pairs: EdgePair[] = [];
      try {
        for (const edges of [true, false]) {
          const pair = await startEdgePair(children, config, edges, files, app.port);
          pairs.push(pair);
          results.set(pair.label, []);
          await load(children, pair, { wrk, seconds: warmup, connections });
        }
        for (let round = 0; round < rounds; round++) {
          for (let i = 0; i < pairs.length; i++) {
            const pair = pairs[(i + round) % pairs.length]!;
            const w = await measure(children, pair, { wrk, seconds: duration, connections });
            results.get(pair.label)!.push(w);
            process.stdout.write(`round ${round + 1}/${rounds} ${pair.label.padEnd(18)} ${Math.round(w.rps)} req/s, outbound ${f1(total(w.outbound))} µs, inbound ${f1(total(w.inbound))} µs, failed ${w.failed}, others ${Math.round(w.others * 100)} %\n`);
          }
        }
      } finally {
        await Promise.all(pairs.map((p) => stopPair(children, p)));
      }
    }
    await children.stop(app.cp);
  } finally {
    await children.stopAll();
    children.killAllSync();
  }

  const rows: string[] = [];
  for (const security of securities) {
    const on = results.get(`${security}-edges-on`) ?? [];
    const off = results.get(`${security}-edges-off`) ?? [];
    const ratios: number[] = [];
    const diffs: number[] = [];
    for (let i = 0; i < Math.min(on.length, off.length); i++) {
      ratios.push(total(on[i]!.outbound) / total(off[i]!.outbound));
      diffs.push(total(on[i]!.outbound) - total(off[i]!.outbound));
    }
    const rps = (ws: Window[]) => Math.round(median(ws.map((w) => w.rps)));
    rows.push(
      `| ${security} | ${f1(median(on.map((w) => total(w.outbound))))} | ${f1(median(off.map((w) => total(w.outbound))))} | ${median(diffs).toFixed(2)} | ${median(ratios).toFixed(3)}x | ${rps(on)} / ${rps(off)} | ${on.reduce((a, w) => a + w.failed, 0) + off.reduce((a, w) => a + w.failed, 0)} |`,
    );
  }
  const section = [
    SECTION,
    '',
    `\`npm run bench:edges\` at ${commitOf(ROOT)}, ${new Date().toISOString().slice(0, 16)}Z, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, ${wrkVersion(wrk)}; ` +
      `${rounds} rounds of ${duration} s windows, ${connections} connections, ${bodyBytes} B answers, ${warmup} s warm-up per pair; ${CPUS ? `sidecars on CPU ${CPUS.target}, wrk and the app on ${CPUS.load}` : 'no CPU pinning'}; ${Math.round((Date.now() - started) / 1000)} s.`,
    '',
    `In process: \`EdgeStats.record\` ${micro.nsPerCall.toFixed(1)} ns per call (median of ${micro.loops.length} loops; four edges in turn, latencies across the histogram); \`report()\` with ${MAX_EDGES} edges (once every 2 s) ${f1(reportUs)} µs. Histogram of ${LATENCY_BOUNDS_MS.length + 1} buckets.`,
    '',
    'The outbound sidecar on the proxy path, CPU µs per request (median over rounds), counting edges or not (Proxy option `edgeStats: false`), the two pairs measured in alternation within each round:',
    '',
    '| between the sidecars | edges on, µs/req | edges off, µs/req | on − off, µs (median of rounds) | on / off (median of rounds) | req/s on / off | failed |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
  process.stdout.write(`\n${section}\n`);
  if (process.env.BENCH_NO_RESULTS !== '1' && !QUICK) {
    await writeResultsSection(section, RESULTS_FILE);
    process.stdout.write(`written to ${path.relative(ROOT, RESULTS_FILE)}\n`);
  }
}

await main();
