// npm run bench:mesh: what the path users run costs (issue 15). client -> sidecar (outbound) -> mTLS ->
// sidecar (inbound) -> app, with telemetry on both sides, as `wasmesh run` workloads under a real
// `wasmesh orchestrator`; beside it, in the same run: no proxy, one sidecar, the pair without mTLS,
// two nginx with mTLS between them (the reference) and one nginx. Per path: open-loop latency at
// 1000 requests/s (hey, 16 workers at 62.5/s), closed-loop max throughput (wrk -t1 -c64), CPU of every
// process from /proc, RSS idle and after load; then what a sidecar's memory is made of (VMs, workers,
// config size). A benchmark, not a test: it prints the report and, on a full run, writes it into
// bench/RESULTS.md (its own section; the other sections are kept).
//
// Environment: BENCH_DURATION (s of each window, open and closed loop, default 10), BENCH_WARMUP (s of
// closed-loop load before the windows, default 3), BENCH_ROUNDS (default 1; with more, each path is
// measured once per round, in rotating order, and reported from its least disturbed round),
// BENCH_TARGETS=comma list of direct, sidecar, pair, pair-mtls, nginx-pair, node-pair, nginx, memory (a partial
// run prints but does not write RESULTS.md), BENCH_CPU_PROF=<dir> (after the windows, one more
// closed-loop window of the mTLS pair with both sidecars under the CPU profiler: <dir>/outbound-
// sidecar.cpuprofile and inbound-sidecar.cpuprofile, in TypeScript positions; summarize with
// `node proxy-host/bench/profile-summary.mjs <dir>`).
//
// Tools: nginx, wrk, hey and openssl from Debian; `bash scripts/bench-tools.sh install` (run here
// when something is missing and this is root).
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { Children } from '../../proxy-host/bench/support/children.ts';
import { CPUS } from '../../proxy-host/bench/support/cpus.ts';
import { memory, type Memory } from '../../proxy-host/bench/support/proc.ts';
import { freePort, lastLines } from '../../proxy-host/bench/support/services.ts';
import { debianVersion, ensureTools, nginxVersion, wrkVersion } from '../../proxy-host/bench/support/tools.ts';
import { runWrk } from '../../proxy-host/bench/support/wrk.ts';
import { runHey } from './mesh/hey.ts';
import { linearMemory, measureMemory, type LinearMemoryRow, type MemoryRow } from './mesh/memory.ts';
import { SidecarInspector } from './mesh/inspector.ts';
import { machineLine, render } from './mesh/render.ts';
import { pickBest, type RowResult, type RowSample } from './mesh/results.ts';
import { ROWS, failedAnswers, runningOrchestrator, type RowContext, type RowSpec, type RunningRow } from './mesh/rows.ts';
import { measureWindow } from './mesh/window.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OPEN_WORKERS = 16;
const OPEN_QPS_PER_WORKER = 62.5;
const CONNECTIONS = 64;

function seconds(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

const children = new Children('bench:mesh');
children.installHandlers();
const log = (line: string) => process.stdout.write(`${line}\n`);

interface Tools {
  wrk: string;
  hey: string;
  nginx?: string;
  openssl?: string;
}

async function measureRow(ctx: RowContext, tools: Tools, spec: RowSpec, warmupS: number, windowS: number): Promise<RowSample> {
  const running = await spec.start(ctx);
  try {
    const url = `http://127.0.0.1:${running.port}/`;
    await new Promise((r) => setTimeout(r, 1000));
    const idle = snapshot(running);
    if (warmupS > 0) await runWrk(children, { bin: tools.wrk, url, host: running.host, seconds: warmupS, connections: CONNECTIONS, cpu: CPUS?.load });
    const open = await measureWindow(running.procs, () => runHey(children, { bin: tools.hey, url, host: running.host, seconds: windowS, workers: OPEN_WORKERS, perWorkerQps: OPEN_QPS_PER_WORKER, cpu: CPUS?.load }));
    const closed = await measureWindow(running.procs, () => runWrk(children, { bin: tools.wrk, url, host: running.host, seconds: windowS, connections: CONNECTIONS, cpu: CPUS?.load }));
    const end = snapshot(running);
    const gone = running.procs.filter((p) => !end.has(p.pid));
    if (gone.length) throw new Error(`${gone.map((p) => p.role).join(', ')} exited during the windows: ${running.workloads.map((w) => lastLines(w.output(), 4)).join(' | ')}`);
    const failed = await failedAnswers(running.workloads);
    return { procs: running.procs, checks: failed ? [...running.checks, failed] : running.checks, idle, end, open, closed };
  } finally {
    await running.stop();
  }
}

function snapshot(running: RunningRow): Map<number, Memory> {
  const out = new Map<number, Memory>();
  for (const p of running.procs) {
    const m = memory(p.pid);
    if (m) out.set(p.pid, m);
  }
  return out;
}

/** One more closed-loop window of the mTLS pair with both sidecars under the CPU profiler. */
async function profilePair(ctx: RowContext, tools: Tools, dir: string, warmupS: number, windowS: number): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const spec = ROWS.find((r) => r.id === 'pair-mtls')!;
  const inspectPorts: Record<string, number> = {};
  for (const service of ['bench-app', 'bench-client']) inspectPorts[service] = await freePort();
  const profCtx: RowContext = { ...ctx, workloadEnv: (service) => ({ NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect-port=127.0.0.1:${inspectPorts[service]}`.trim() }) };
  const running = await spec.start(profCtx);
  const profilers: SidecarInspector[] = [];
  try {
    const url = `http://127.0.0.1:${running.port}/`;
    if (warmupS > 0) await runWrk(children, { bin: tools.wrk, url, host: running.host, seconds: warmupS, connections: CONNECTIONS, cpu: CPUS?.load });
    const targets = running.workloads.map((w) => ({ w, file: path.join(dir, `${w.service === 'bench-client' ? 'outbound' : 'inbound'}-sidecar.cpuprofile`) }));
    for (const t of targets) profilers.push(await SidecarInspector.attach(t.w.sidecarPid, inspectPorts[t.w.service]!, { profiler: true }));
    await Promise.all(profilers.map((p) => p.startProfile()));
    const r = await runWrk(children, { bin: tools.wrk, url, host: running.host, seconds: windowS, connections: CONNECTIONS, cpu: CPUS?.load });
    await Promise.all(profilers.map((p, i) => p.stopProfileAndWrite(targets[i]!.file)));
    return [`profiled window: ${Math.round(r.rps)} req/s under the profiler (not in the tables)`, ...targets.map((t) => `wrote ${path.relative(process.cwd(), t.file)}`)];
  } finally {
    for (const p of profilers) p.close();
    await running.stop();
  }
}

function commandLineOf(): string {
  const knobs = Object.entries(process.env)
    .filter(([k]) => /^BENCH_/.test(k))
    .map(([k, v]) => `${k}=${v}`);
  return `${knobs.length ? `${knobs.join(' ')} ` : ''}npm run bench:mesh`;
}

async function main(): Promise<number> {
  const started = Date.now();
  const windowS = Math.round(seconds('BENCH_DURATION', 10));
  const warmupS = Math.round(seconds('BENCH_WARMUP', 3));
  const rounds = Math.max(1, Math.round(seconds('BENCH_ROUNDS', 1)));
  const known = [...ROWS.map((r) => r.id), 'memory'];
  const only = process.env.BENCH_TARGETS ? process.env.BENCH_TARGETS.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const unknown = only?.filter((id) => !known.includes(id));
  if (unknown?.length) throw new Error(`BENCH_TARGETS: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`);
  const selected = ROWS.filter((r) => !only || only.includes(r.id));
  const withMemory = !only || only.includes('memory');
  const profDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;

  const found = ensureTools(['wrk', 'hey', 'nginx', 'openssl']);
  if (!found.paths.wrk || !found.paths.hey) {
    process.stderr.write(`bench:mesh needs wrk and hey: ${found.missing}\n`);
    return 1;
  }
  const tools: Tools = { wrk: found.paths.wrk, hey: found.paths.hey, nginx: found.paths.nginx, openssl: found.paths.openssl };
  const notes: string[] = [];
  if (found.missing) notes.push(`Not installed: ${found.missing}; the nginx rows failed for it.`);

  // The orchestrator serves the built filters (telemetry) to the sidecars; the memory section loads them.
  const build = spawnSync(process.execPath, ['scripts/wasmesh.mjs', 'filter', 'build', '--all', '--quiet'], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (build.status !== 0) {
    process.stderr.write(`bench:mesh: \`wasmesh filter build --all\` failed (${build.error?.message ?? `exit ${build.status}`}): ${lastLines(`${build.stdout}\n${build.stderr}`, 6)}\n`);
    return 1;
  }

  const tmp = children.tmpDir('wasmesh-bench-mesh-');
  const ctx: RowContext = { children, root: ROOT, tmp, cpus: CPUS, nginx: tools.nginx, openssl: tools.openssl };
  const heyVersion = debianVersion('hey') ?? '?';
  const nginxV = tools.nginx ? nginxVersion(tools.nginx) : undefined;
  log(
    `bench:mesh: ${selected.map((r) => r.id).join(', ')}${withMemory ? ', memory' : ''}; ${rounds} round(s) of warm-up ${warmupS} s + open loop ${windowS} s (hey ${heyVersion}, ${OPEN_WORKERS} × ${OPEN_QPS_PER_WORKER}/s) + closed loop ${windowS} s (wrk -t1 -c${CONNECTIONS}); ` +
      (CPUS ? `taskset: proxies on CPU ${CPUS.target}, load generator and app on CPU ${CPUS.load}` : 'no CPU pinning (taskset missing or fewer than 2 CPUs)'),
  );

  const results: RowResult[] = selected.map((spec) => ({ spec, samples: [] }));
  for (let round = 0; round < rounds && !children.interrupted; round++) {
    const shift = round % Math.max(1, results.length);
    for (const r of results.slice(shift).concat(results.slice(0, shift))) {
      if (children.interrupted || r.error) continue;
      try {
        const s = await measureRow(ctx, tools, r.spec, warmupS, windowS);
        r.samples.push(s);
        log(`  round ${round + 1}/${rounds} ${r.spec.label}: open loop p50 ${s.open.result.p50Ms.toFixed(2)} ms p99 ${s.open.result.p99Ms.toFixed(2)} ms at ${Math.round(s.open.result.rps)} rps; closed loop ${Math.round(s.closed.result.rps)} rps; other processes ${(s.open.cpu.otherPercent ?? 0).toFixed(0)}% / ${(s.closed.cpu.otherPercent ?? 0).toFixed(0)}%`);
      } catch (err) {
        r.error = (err as Error).message;
        log(`  round ${round + 1}/${rounds} ${r.spec.label}: failed: ${r.error}`);
      }
    }
  }
  for (const r of results) r.best = pickBest(r.samples);

  if (profDir && !children.interrupted) {
    try {
      for (const line of await profilePair(ctx, tools, profDir, warmupS, windowS)) log(`  ${line}`);
      log(`  summarize: node proxy-host/bench/profile-summary.mjs ${path.relative(process.cwd(), profDir) || '.'} 25 proxy-host/src wasm/src`);
    } catch (err) {
      log(`  profiling failed: ${(err as Error).message}`);
    }
  }

  let memoryRows: MemoryRow[] = [];
  let linear: LinearMemoryRow[] = [];
  if (withMemory && !children.interrupted) {
    memoryRows = await measureMemory({ children, root: ROOT, tmp, cpus: CPUS }, log);
    linear = await linearMemory(ROOT);
  }
  const orch = runningOrchestrator();
  if (orch) await children.stop((await orch).orch.cp, 5000);
  if (children.interrupted) return 130;

  const setup = [
    `Written by \`npm run bench:mesh\` (integration/bench/mesh.bench.ts) on ${new Date().toISOString()}; command: \`${commandLineOf()}\`; whole run ${Math.round((Date.now() - started) / 1000)} s.`,
    machineLine(),
    'The machine is shared and noisy: read the ratios against the references measured in the same run, and the noise columns.',
    `Paths, every process its own, on loopback: the app is node:http answering 1 KiB. wasmesh: \`wasmesh orchestrator\` (embedded SQLite store, its own CA) and \`wasmesh run --service bench-app|bench-client --orchestrator ... -- <command>\` workloads, exactly what users run (the app under bench-app; bench-client's command idles, the load generator plays its app and sends to its sidecar's outbound port with \`Host: bench-app.default.svc.cluster.local\`); STRICT is a mesh-wide PeerAuthentication with auto mTLS (the demo's setting), plaintext is PeerAuthentication DISABLE plus a DestinationRule with tls DISABLE; telemetry is the default. "one sidecar" is client -> the app's inbound sidecar -> app (plaintext). nginx ${nginxV ?? '(missing)'}: one process each (1 worker), upstream keepalive; the pair's mTLS uses an openssl-made CA and ECDSA P-256 certificates (as the wasmesh CA), the server side requires client certificates, the client side verifies the server and reuses sessions.`,
    `Load: warm-up ${warmupS} s (wrk), then open loop: hey ${heyVersion} (Debian), ${OPEN_WORKERS} workers at ${OPEN_QPS_PER_WORKER}/s = ${OPEN_WORKERS * OPEN_QPS_PER_WORKER} rps for ${windowS} s (hey does not correct for coordinated omission: the achieved rate is shown, and a shortfall means its latencies understate), then closed loop: wrk ${wrkVersion(tools.wrk)} \`-t1 -c${CONNECTIONS}\` for ${windowS} s. Each path is started fresh, checked, measured and stopped${rounds > 1 ? `; ${rounds} rounds in rotating order, each path reported from its least disturbed round` : ''}.`,
    `Pinning: ${CPUS ? `\`taskset\`: proxies, sidecars and \`wasmesh run\` on CPU ${CPUS.target}; the load generator, the app and the orchestrator on CPU ${CPUS.load}` : 'none (taskset missing or fewer than 2 CPUs): figures are noisier'}.`,
    'CPU from /proc/<pid>/stat per process over each window; "vCPU per 1000 rps" is the path\'s processes (sidecars and `wasmesh run`, or the nginx) in the open loop divided by the achieved thousands of rps; "CPU per request" is their CPU in the closed loop divided by its requests. The app and the orchestrator are not counted in the path (their own rows in the per-process table).',
  ];
  const text = render({ rows: results, memory: memoryRows, linear, setup, elapsedS: (Date.now() - started) / 1000, notes });
  log(`\n${text}`);
  if (only) log('(BENCH_TARGETS set: partial run, bench/RESULTS.md not written)');
  else {
    await writeResultsSection(text);
    log('written to bench/RESULTS.md');
  }
  return results.some((r) => r.error) ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`bench:mesh failed: ${err instanceof Error ? err.message : String(err)}\n`);
} finally {
  await children.stopAll(3000);
  children.killAllSync();
}
process.exit(code);
