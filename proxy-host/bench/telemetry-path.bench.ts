// What the telemetry filter costs in the real proxy (issue 15): CPU per request of each sidecar of a
// pair, client -> outbound sidecar -> (mTLS or plaintext) -> inbound sidecar -> app, with no filter,
// with a no-op wasm filter on both sides, and with the built-in telemetry binding (the translator's,
// metrics on, access log off). A benchmark, not a test: it prints a table and writes its own section
// of bench/RESULTS.md.
//
//   npm run bench:telemetry-path          (node --import tsx proxy-host/bench/telemetry-path.bench.ts)
//   BENCH_QUICK=1 npm run bench:telemetry-path   (one short round, nothing written: proves it runs)
//
// Parts (telemetry-path/): configs.ts the six configurations, processes.ts and start.ts the child
// processes, pair.ts a pair of sidecars, measure.ts one measured window, render.ts the table.
//
// Processes (telemetry-path/processes.ts): a node:http app answering 1 KB, the sidecars (Proxy.start,
// identities from the test CA), wrk -t1 -c16 keep-alive to an outbound sidecar. Pinning: sidecars on
// one CPU, wrk and the app on another (taskset). CPU per request per sidecar is utime + stime from
// /proc/<pid>/stat over the measured window, divided by the requests wrk completed.
//
// The machine is shared and its load moves by tens of percent within minutes, so configurations are
// compared a few seconds apart, never minutes apart: every pair of one security mode is started and
// warmed first, then each round puts load through each pair in turn (idle pairs use no CPU), and the
// ratios are taken within each round.
//
// Environment: BENCH_ROUNDS (default 5), BENCH_DURATION (s per window, 5), BENCH_WARMUP (s per pair, 6),
// BENCH_CONNECTIONS (16), BENCH_BODY (bytes, 1024), BENCH_CONFIGS (comma list of
// <plain|mtls|permissive>-<none|noop|telemetry>, default all nine).
// BENCH_BASELINE=<dir>: a checkout of another commit (its filters built, node_modules in place): every
// configuration also runs with the sidecars' code and filter modules from there, in the same rounds
// (before/after on one noisy machine); BENCH_BASELINE_NAME names it (default: its git commit).
// BENCH_CPU_PROF=<dir>: after the rounds, one more window per configuration with both sidecars under
// the V8 profiler, <dir>/<config>-<side>.cpuprofile (`node proxy-host/bench/profile-summary.mjs <dir>`).
// BENCH_NO_RESULTS=1 prints without writing bench/RESULTS.md. BENCH_QUICK=1: defaults of 1 round, 2 s
// windows, 1 s warm-up, and no bench/RESULTS.md (a smoke run; its figures mean nothing).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { RESULTS_FILE, writeResultsSection } from '../../scripts/bench-results.ts';
import { createTestCa } from '../test/support/test-ca.ts';
import { Children } from './support/children.ts';
import { CPUS } from './support/cpus.ts';
import { ensureTools, wrkVersion } from './support/tools.ts';
import { chooseConfigs, NOOP_WAT } from './telemetry-path/configs.ts';
import { measure, profileWindow, total, type Window } from './telemetry-path/measure.ts';
import { load, startPair, stopPair, type Load, type Pair, type PairFiles } from './telemetry-path/pair.ts';
import { render } from './telemetry-path/render.ts';
import { startBenchProcess } from './telemetry-path/start.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '## Telemetry in the proxy (proxy-host/bench/telemetry-path.bench.ts)';

function num(name: string, fallback: number): number {
  const v = process.env[name];
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

const commitOf = (root: string) => spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || '?';
const f1 = (n: number) => n.toFixed(1);

const QUICK = process.env.BENCH_QUICK === '1';

async function main(): Promise<void> {
  const rounds = Math.round(num('BENCH_ROUNDS', QUICK ? 1 : 5));
  const duration = Math.round(num('BENCH_DURATION', QUICK ? 2 : 5));
  const warmup = Math.round(num('BENCH_WARMUP', QUICK ? 1 : 6));
  const connections = Math.round(num('BENCH_CONNECTIONS', 16));
  const bodyBytes = Math.round(num('BENCH_BODY', 1024));
  const baselineRoot = process.env.BENCH_BASELINE ? path.resolve(process.env.BENCH_BASELINE) : undefined;
  const configs = chooseConfigs(process.env.BENCH_CONFIGS?.split(',').map((s) => s.trim()).filter(Boolean), ROOT, baselineRoot);
  const profDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
  const tools = ensureTools(['wrk']);
  if (tools.missing) throw new Error(tools.missing);
  const wrk = tools.paths.wrk!;

  const children = new Children('telemetry-path bench');
  children.installHandlers();
  const tmp = children.tmpDir('wasmesh-bench-telemetry-');
  const started = Date.now();
  const files: PairFiles = { tmp, noopWasm: path.join(tmp, 'noop.wasm'), serverPems: path.join(tmp, 'reviews.json'), clientPems: path.join(tmp, 'productpage.json') };
  const ca = await createTestCa('wasmesh bench root');
  for (const [file, sa] of [[files.serverPems, 'reviews'], [files.clientPems, 'productpage']] as const) {
    const cert = await ca.issue('default', sa);
    writeFileSync(file, JSON.stringify({ keyPem: cert.keyPem, certChainPem: cert.certChainPem, trustBundlePem: cert.trustBundlePem }));
  }
  writeFileSync(files.noopWasm, await wat2wasm(NOOP_WAT));

  const results = new Map<string, Window[]>(configs.map((c) => [c.label, []]));
  const windowLoad: Load = { wrk, seconds: duration, connections };
  try {
    const app = await startBenchProcess(children, 'app', ['app', String(bodyBytes)], CPUS?.load);
    for (const security of ['plain', 'mtls', 'permissive'] as const) {
      const group = configs.filter((c) => c.security === security);
      if (group.length === 0) continue;
      const pairs: Pair[] = [];
      try {
        for (const c of group) {
          const pair = await startPair(children, c, files, app.port);
          pairs.push(pair);
          await load(children, pair, { wrk, seconds: warmup, connections });
        }
        for (let round = 0; round < rounds; round++) {
          // Rotated each round, so no configuration always runs first (or right after the same neighbour).
          for (let i = 0; i < pairs.length; i++) {
            const pair = pairs[(i + round) % pairs.length]!;
            const w = await measure(children, pair, windowLoad);
            results.get(pair.config.label)!.push(w);
            process.stdout.write(
              `round ${round + 1}/${rounds} ${pair.config.label.padEnd(24)} ${Math.round(w.rps)} req/s, outbound ${f1(total(w.outbound))} µs (sys ${f1(w.outbound.system)}), ` +
                `inbound ${f1(total(w.inbound))} µs (sys ${f1(w.inbound.system)}), p50 ${w.p50Ms} ms, failed ${w.failed}, others ${Math.round(w.others * 100)} %\n`,
            );
          }
        }
        if (profDir) {
          mkdirSync(profDir, { recursive: true });
          for (const pair of pairs) process.stdout.write(`profiles: ${await profileWindow(children, pair, windowLoad, profDir)}\n`);
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

  const section = render(SECTION, configs, results, {
    command: 'npm run bench:telemetry-path',
    commit: commitOf(ROOT),
    baseline: baselineRoot === undefined ? undefined : process.env.BENCH_BASELINE_NAME ?? commitOf(baselineRoot),
    rounds,
    duration,
    warmup,
    connections,
    bodyBytes,
    wrk: wrkVersion(wrk),
    seconds: Math.round((Date.now() - started) / 1000),
    cpus: CPUS,
  });
  process.stdout.write(`\n${section}\n`);
  if (process.env.BENCH_NO_RESULTS !== '1' && !QUICK) {
    await writeResultsSection(section, RESULTS_FILE);
    process.stdout.write(`written to ${path.relative(ROOT, RESULTS_FILE)}\n`);
  }
}

await main();
