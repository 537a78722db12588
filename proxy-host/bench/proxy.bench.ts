// npm run bench:proxy: requests/s, latency and memory of the wasmesh sidecar next to references
// measured in the same run on loopback: the upstream hit directly, nginx as a reverse proxy, and two
// minimal Node reverse proxies. A benchmark, not a test: it prints a table and writes it into
// bench/RESULTS.md (its own section; every other section of the file is kept).
//
// Environment: BENCH_DURATION (s measured per target, default 10), BENCH_WARMUP (s, default 3),
// BENCH_ROUNDS (the measured time is split into this many rounds over all targets, default 2),
// BENCH_BUDGET (s; extra rounds for targets disturbed by other processes end by then, default 115),
// BENCH_LOADGEN=wrk|autocannon (default: wrk when available), BENCH_TARGETS=comma list of target ids
// (a partial run prints but does not write RESULTS.md), BENCH_CPU_PROF=<dir> (each wasmesh target
// writes <dir>/<id>.cpuprofile covering its measured window, positions mapped to the TypeScript
// sources; summarize with `node proxy-host/bench/profile-summary.mjs <dir>`).
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Children } from './support/children.ts';
import { CPUS, pinned, repin } from './support/cpus.ts';
import { startNginx as startNginxProcess } from './support/nginx.ts';
import { cpuSeconds, machineCpu, peakRss } from './support/proc.ts';
import { freePort, httpGet, lastLines, startNodeService, type Service } from './support/services.ts';
import { ensureTools, nginxVersion as nginxVersionOf, wrkVersion } from './support/tools.ts';
import { runChild, runWrk } from './support/wrk.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BENCH_DIR = path.join(ROOT, 'proxy-host/bench');
const RESULTS = path.join(ROOT, 'bench/RESULTS.md');
const SECTION = '## Proxy (npm run bench:proxy)';
const FILTER_WASM = path.join(ROOT, 'filters/examples/add-header/build/add-header.wasm');
const FILTER_CONFIG = { request: { 'x-wasmesh-example': 'hello' } };
const CONNECTIONS = 64;

function seconds(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}
const DURATION = Math.round(seconds(process.env.BENCH_DURATION, 10));
const WARMUP = Math.round(seconds(process.env.BENCH_WARMUP, 3));
const ROUNDS = Math.max(1, Math.round(seconds(process.env.BENCH_ROUNDS, 2)));
/** Extra rounds for targets whose rounds were all disturbed by other processes stop at this total (s). */
const BUDGET_S = seconds(process.env.BENCH_BUDGET, 115);
const ONLY = process.env.BENCH_TARGETS ? new Set(process.env.BENCH_TARGETS.split(',').map((s) => s.trim())) : undefined;
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;

// ---- processes, tools, CPUs: shared with the other benchmarks (support/) ------------------------

const children = new Children('bench:proxy');
children.installHandlers();
const tmp = children.tmpDir('wasmesh-bench-proxy-');
const stopChild = (cp: ChildProcess, graceMs?: number) => children.stop(cp, graceMs);

/** wrk when installed (bash scripts/bench-tools.sh install provides it, as root); else autocannon. */
function chooseLoadGenerator(wrkBin: string | undefined, wrkWhy: string | undefined): { kind: 'wrk' | 'autocannon'; bin: string; version: string; note?: string } {
  const autocannon = (): { kind: 'autocannon'; bin: string; version: string } => {
    const require = createRequire(import.meta.url);
    const pkg = require.resolve('autocannon/package.json');
    const version = JSON.parse(readFileSync(pkg, 'utf8')).version as string;
    return { kind: 'autocannon', bin: path.join(path.dirname(pkg), 'autocannon.js'), version };
  };
  if (process.env.BENCH_LOADGEN === 'autocannon') return { ...autocannon(), note: 'forced by BENCH_LOADGEN' };
  if (wrkBin) return { kind: 'wrk', bin: wrkBin, version: wrkVersion(wrkBin) };
  return { ...autocannon(), note: wrkWhy ?? 'wrk not installed' };
}

function startService(name: string, args: string[], cpu: string | undefined, timeoutMs = 30_000, env?: Record<string, string>): Promise<Service> {
  return startNodeService(children, name, args, { cwd: ROOT, cpu, timeoutMs, env });
}

async function startNginx(bin: string, upstreamPort: number, cpu: string | undefined): Promise<Service> {
  const port = await freePort();
  const http = `  upstream bench_upstream {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${port};
    server_name bench;
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }
  }`;
  return startNginxProcess(children, { bin, name: 'nginx', dir: path.join(tmp, 'nginx'), http, port, cpu });
}

/** One GET through a port with Host: bench. */
function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return httpGet(port, urlPath, 'bench');
}

// ---- load -------------------------------------------------------------------------------------------------

interface LoadResult {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
  detail: string;
  /** The load generator's own CPU use over its run (100 = one core). */
  loadCpuPercent?: number;
}

let LOADGEN: ReturnType<typeof chooseLoadGenerator>;

async function load(port: number, durationS: number): Promise<LoadResult> {
  const url = `http://127.0.0.1:${port}/`;
  const limit = (durationS + 20) * 1000;
  if (LOADGEN.kind === 'wrk') {
    const r = await runWrk(children, { bin: LOADGEN.bin, url, host: 'bench', seconds: durationS, connections: CONNECTIONS, cpu: CPUS?.load });
    return { ...r, loadCpuPercent: r.loadCpuS === undefined ? undefined : (r.loadCpuS / r.wallS) * 100 };
  }
  const [cmd, args] = pinned(CPUS?.load, process.execPath, [LOADGEN.bin, '-c', String(CONNECTIONS), '-p', '1', '-d', String(durationS), '-t', '5', '-H', 'host=bench', '-j', url]);
  const r = await runChild(children, cmd, args, limit, ROOT);
  let j: any;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    throw new Error(`autocannon failed (${r.code}): ${lastLines(r.stderr || r.stdout)}`);
  }
  return {
    rps: j.requests.average,
    p50Ms: j.latency.p50,
    p99Ms: j.latency.p99,
    errors: (j.errors ?? 0) + (j.timeouts ?? 0),
    non2xx: j.non2xx ?? 0,
    detail: `errors ${j.errors ?? 0}, timeouts ${j.timeouts ?? 0}`,
    loadCpuPercent: r.cpuS === undefined ? undefined : (r.cpuS / r.wallS) * 100,
  };
}

// ---- targets ----------------------------------------------------------------------------------------------

interface Target {
  id: string;
  label: string;
  /** Starts the target process (pinned to the target CPU); undefined start = skipped with `skip`. */
  start?: (upstream: Service) => Promise<Service>;
  skip?: string;
  /** Checks one request through the target before load (throws with the reason). */
  check?: (port: number) => Promise<string | void>;
  /** The upstream itself: re-pinned to the target CPU while measured. */
  direct?: boolean;
  /** Sent SIGUSR2 after the warm-up: starts its CPU profile (BENCH_CPU_PROF). */
  profiled?: boolean;
}

interface Row {
  target: Target;
  result?: LoadResult;
  rssBytes?: number;
  cpuPercent?: number;
  upstreamCpuPercent?: number;
  /** CPU used by processes outside this bench during the window (100 = one core), and hypervisor steal. */
  otherCpuPercent?: number;
  stealPercent?: number;
  /** req/s of every round (the row's figures come from the best one). */
  rounds?: number[];
  note?: string;
  error?: string;
}

interface Sample {
  result: LoadResult;
  rssBytes?: number;
  cpuPercent?: number;
  upstreamCpuPercent?: number;
  otherCpuPercent?: number;
  stealPercent?: number;
}

interface Live {
  target: Target;
  /** The target's process while a window runs (the upstream itself for "direct"). */
  svc?: Service;
  samples: Sample[];
  note?: string;
  error?: string;
}

/** Starts a target and checks one request through it (throws with the reason). */
async function startTarget(live: Live, upstream: Service): Promise<Service> {
  const { target } = live;
  const svc = target.direct ? upstream : await target.start!(upstream);
  try {
    const sanity = await get(svc.port, '/');
    if (sanity.status !== 200 || sanity.body.length !== 100) throw new Error(`sanity GET / answered ${sanity.status} with ${sanity.body.length} bytes: ${sanity.body.slice(0, 120)}`);
    const note = (await target.check?.(svc.port)) ?? undefined;
    if (note) live.note = note;
    return svc;
  } catch (err) {
    if (!target.direct) await stopChild(svc.cp);
    throw err;
  }
}

/** One load window on a target, with the CPU every process used during it. */
async function window(live: Live, upstream: Service, seconds: number): Promise<Sample> {
  const { target } = live;
  const svc = live.svc!;
  // The upstream shares the load generator's CPU, except when it is the target.
  repin(upstream.pid, target.direct ? CPUS?.target : CPUS?.load);
  if (svc.cp.exitCode !== null || svc.cp.signalCode !== null) throw new Error(`target exited: ${lastLines(svc.output())}`);
  const cpu0 = cpuSeconds(svc.pid);
  const up0 = target.direct ? undefined : cpuSeconds(upstream.pid);
  const self0 = process.cpuUsage();
  const m0 = machineCpu();
  const t0 = process.hrtime.bigint();
  const result = await load(svc.port, seconds);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = cpuSeconds(svc.pid);
  const up1 = target.direct ? undefined : cpuSeconds(upstream.pid);
  const m1 = machineCpu();
  const self = process.cpuUsage(self0);
  if (svc.cp.exitCode !== null || svc.cp.signalCode !== null) throw new Error(`target exited during the run: ${lastLines(svc.output())}`);
  const pct = (a?: number, b?: number) => (a !== undefined && b !== undefined ? ((b - a) / wall) * 100 : undefined);
  const cpuPercent = pct(cpu0, cpu1);
  const upstreamCpuPercent = pct(up0, up1);
  let otherCpuPercent: number | undefined;
  let stealPercent: number | undefined;
  if (m0 && m1 && cpuPercent !== undefined) {
    const ours = cpuPercent + (upstreamCpuPercent ?? 0) + (result.loadCpuPercent ?? 0) + ((self.user + self.system) / 1e6 / wall) * 100;
    otherCpuPercent = Math.max(0, ((m1.busy - m0.busy) / wall) * 100 - ours);
    stealPercent = ((m1.steal - m0.steal) / wall) * 100;
  }
  return { result, cpuPercent, upstreamCpuPercent, otherCpuPercent, stealPercent, rssBytes: peakRss(svc.pid) };
}

/** A round in which other processes on the machine used less than a quarter of a core. */
const DISTURBED_PERCENT = 25;
function clean(x: Sample): boolean {
  return (x.otherCpuPercent ?? 0) + (x.stealPercent ?? 0) < DISTURBED_PERCENT;
}

/**
 * The target's best undisturbed round (highest req/s; any round if none was undisturbed) stands for it: on a shared machine, interference from
 * outside (other processes, other guests of the hypervisor, which this VM may not see as steal) only
 * ever slows a round down. Errors count over all rounds.
 */
function toRow(live: Live): Row {
  const { target, samples } = live;
  if (live.error || samples.length === 0) return { target, error: live.error ?? 'no measurement' };
  const pool = samples.some(clean) ? samples.filter(clean) : samples;
  const best = [...pool].sort((x, y) => y.result.rps - x.result.rps)[0];
  const errors = samples.reduce((n, x) => n + x.result.errors, 0);
  const non2xx = samples.reduce((n, x) => n + x.result.non2xx, 0);
  const detail = samples.map((x) => x.result.detail).filter((d) => !/connect 0, read 0, write 0, timeout 0|errors 0, timeouts 0/.test(d)).join('; ');
  return { target, ...best, result: { ...best.result, errors, non2xx, detail }, note: live.note, rounds: samples.map((x) => x.result.rps) };
}

async function main(): Promise<number> {
  const started = Date.now();
  if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });
  const tools = ensureTools(['nginx', 'wrk']);
  const nginx = { bin: tools.paths.nginx, why: tools.paths.nginx ? undefined : `skipped: ${tools.missing}` };
  LOADGEN = chooseLoadGenerator(tools.paths.wrk, tools.paths.wrk ? undefined : tools.missing);
  const nginxVersion = nginx.bin ? nginxVersionOf(nginx.bin) : undefined;

  // Build every filter as the brief's command does; if another filter in the tree fails to build,
  // build the example alone so this bench does not depend on unrelated work in progress.
  const buildCmd = (args: string[]) => spawnSync(process.execPath, ['scripts/wasmesh.mjs', 'filter', 'build', ...args, '--quiet'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
  const why = (b: ReturnType<typeof buildCmd>) => `${b.error?.message ?? `exit ${b.status}`}: ${lastLines(`${b.stdout}\n${b.stderr}`)}`;
  let filterNote: string | undefined;
  let build = buildCmd(['--all']);
  if (build.status !== 0) {
    const all = why(build);
    build = buildCmd([path.dirname(path.dirname(FILTER_WASM))]);
    if (build.status === 0) filterNote = `\`filter build --all\` failed on other filters (${all}); add-header built alone`;
  }
  const filterReady = build.status === 0 && existsSync(FILTER_WASM);
  const filterWhy = filterReady ? undefined : `filter build failed (${why(build)})`;
  let rootId = '';
  try {
    rootId = JSON.parse(readFileSync(path.join(ROOT, 'filters/examples/add-header/filter.json'), 'utf8')).rootId ?? '';
  } catch {}

  const tsxArgs = (extra: string[]) => [...(CPU_PROF_DIR ? ['--enable-source-maps'] : []), '--import', 'tsx', path.join(BENCH_DIR, 'wasmesh-proxy.ts'), ...extra];
  const profEnv = (id: string) => (CPU_PROF_DIR ? { BENCH_CPU_PROF_FILE: path.join(CPU_PROF_DIR, `${id}.cpuprofile`) } : undefined);
  const allTargets: Target[] = [
    { id: 'direct', label: 'direct (no proxy; the upstream)', direct: true },
    {
      id: 'nginx',
      label: `nginx${nginxVersion ? ` ${nginxVersion}` : ''} (1 worker, keepalive pool)`,
      start: nginx.bin ? (up) => startNginx(nginx.bin!, up.port, CPUS?.target) : undefined,
      skip: nginx.why,
    },
    { id: 'node-undici', label: 'Node proxy: node:http + undici Pool', start: (up) => startService('undici proxy', [path.join(BENCH_DIR, 'node-proxy-undici.mjs'), String(up.port)], CPUS?.target) },
    { id: 'node-http', label: 'Node proxy: node:http + keep-alive Agent', start: (up) => startService('node:http proxy', [path.join(BENCH_DIR, 'node-proxy-http.mjs'), String(up.port)], CPUS?.target) },
    {
      id: 'wasmesh',
      label: 'wasmesh, no filters',
      start: (up) => startService('wasmesh', tsxArgs([String(up.port)]), CPUS?.target, 60_000, profEnv('wasmesh')),
      profiled: CPU_PROF_DIR !== undefined,
    },
    {
      id: 'wasmesh-filter',
      label: 'wasmesh + add-header filter',
      start: filterReady ? (up) => startService('wasmesh + filter', tsxArgs([String(up.port), FILTER_WASM, rootId, JSON.stringify(FILTER_CONFIG)]), CPUS?.target, 60_000, profEnv('wasmesh-filter')) : undefined,
      profiled: CPU_PROF_DIR !== undefined,
      skip: filterWhy,
      check: async (port) => {
        const r = await get(port, '/__echo');
        const seen = JSON.parse(r.body)['x-wasmesh-example'];
        if (seen !== 'hello') throw new Error(`the filter did not add x-wasmesh-example (upstream saw ${JSON.stringify(seen)})`);
        return `filter checked: the upstream sees x-wasmesh-example: hello${filterNote ? `; ${filterNote}` : ''}`;
      },
    },
  ];
  const targets = allTargets.filter((t) => !ONLY || ONLY.has(t.id));

  process.stdout.write(
    `bench:proxy: ${targets.map((t) => t.id).join(', ')}; load ${LOADGEN.kind} ${LOADGEN.version}${LOADGEN.note ? ` (${LOADGEN.note})` : ''}, ` +
      `${CONNECTIONS} connections, warm-up ${WARMUP} s + ${DURATION} s each; ${CPUS ? `taskset: load CPU ${CPUS.load}, target CPU ${CPUS.target}` : 'no CPU pinning'}\n`,
  );

  const upstream = await startService('upstream', [path.join(BENCH_DIR, 'upstream.mjs')], CPUS?.load);
  const rows: Row[] = [];
  const lives: Live[] = [];
  const failed = new Map<Target, Row>();
  try {
    // Every window runs on a fresh process of its target: start, check one request, warm up, measure,
    // stop. (A process that sat idle for a minute after start and is loaded only then can behave
    // differently, see the bench's report; a fresh process keeps every target on the same footing.)
    // The measured time can be split into rounds (BENCH_ROUNDS) that visit the targets in rotating
    // order, so a burst of load from other processes on this shared machine does not fall on one
    // target only; a target disturbed in all its windows gets extra ones while the budget lasts.
    for (const t of targets) {
      if (!t.start && !t.direct) failed.set(t, { target: t, error: t.skip ?? 'skipped' });
      else lives.push({ target: t, samples: [] });
    }
    const perRound = Math.max(1, Math.round(DURATION / ROUNDS));
    const measureOnce = async (live: Live, label: string): Promise<void> => {
      try {
        live.svc = await startTarget(live, upstream);
        if (WARMUP > 0) await window(live, upstream, WARMUP);
        if (live.target.profiled) live.svc.cp.kill('SIGUSR2');
        const sample = await window(live, upstream, perRound);
        live.samples.push(sample);
        process.stdout.write(`  ${label} ${live.target.label}: ${Math.round(sample.result.rps)} req/s, target CPU ${sample.cpuPercent?.toFixed(0)}%, other processes ${sample.otherCpuPercent?.toFixed(0)}%\n`);
      } catch (err) {
        live.error = err instanceof Error ? err.message : String(err);
        process.stdout.write(`  ${label} ${live.target.label}: failed: ${live.error}\n`);
      } finally {
        if (live.svc && !live.target.direct) await stopChild(live.svc.cp);
        live.svc = undefined;
      }
    };
    for (let round = 0; round < ROUNDS && !children.interrupted; round++) {
      const shift = round % Math.max(1, lives.length);
      for (const live of lives.slice(shift).concat(lives.slice(0, shift))) {
        if (children.interrupted || live.error) continue;
        await measureOnce(live, `round ${round + 1}/${ROUNDS}`);
      }
    }
    // Extra rounds, within the time budget, for targets every one of whose rounds was disturbed.
    const budgetEnd = started + BUDGET_S * 1000;
    const windowCostMs = (WARMUP + perRound + 3) * 1000;
    for (let extra = 1; !children.interrupted; extra++) {
      const pending = lives.filter((l) => !l.error && !l.samples.some(clean));
      if (pending.length === 0 || Date.now() + windowCostMs > budgetEnd) break;
      for (const live of pending) if (!children.interrupted && Date.now() + windowCostMs <= budgetEnd) await measureOnce(live, `extra round ${extra}`);
    }
    for (const t of targets) {
      const live = lives.find((l) => l.target === t);
      rows.push(live ? toRow(live) : (failed.get(t) ?? { target: t, error: 'not started' }));
    }
  } finally {
    await Promise.all(lives.filter((l) => l.svc && !l.target.direct).map((l) => stopChild(l.svc!.cp)));
    await stopChild(upstream.cp);
  }
  if (children.interrupted) return 130;

  const text = render(rows, nginx.why, Math.round((Date.now() - started) / 1000));
  process.stdout.write(`\n${text}\n`);
  if (ONLY) process.stdout.write(`(BENCH_TARGETS set: partial run, ${path.relative(ROOT, RESULTS)} not written)\n`);
  else {
    await writeSection(text);
    process.stdout.write(`written to ${path.relative(ROOT, RESULTS)}\n`);
  }
  return 0;
}

// ---- output -------------------------------------------------------------------------------------------------

function ms(x: number): string {
  return Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) + ' ms' : '?';
}
function mib(b?: number): string {
  return b === undefined ? '?' : `${(b / 2 ** 20).toFixed(0)} MiB`;
}
function signed(pctValue: number): string {
  return `${pctValue >= 0 ? '+' : '−'}${Math.abs(pctValue).toFixed(1)}%`;
}
function ratio(x?: number): string {
  return x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(2)}x`;
}

function render(rows: Row[], nginxWhy: string | undefined, elapsedS: number): string {
  const byId = (id: string) => rows.find((r) => r.target.id === id && r.result);
  const nginx = byId('nginx');
  const rps = (id: string) => byId(id)?.result?.rps;
  const table = rows.map((r) => {
    if (!r.result) return `| ${r.target.label} | failed: ${r.error?.replace(/\|/g, '/').replace(/\s+/g, ' ')} | — | — | — | — | — |`;
    const x = r.result;
    const errs = x.errors + x.non2xx;
    const errText = errs === 0 ? '0' : `${errs} (${x.non2xx} non-2xx; ${x.detail})`;
    return `| ${r.target.label} | ${Math.round(x.rps).toLocaleString('en-US')} | ${nginx ? ratio(x.rps / nginx.result!.rps) : '—'} | ${ms(x.p50Ms)} | ${ms(x.p99Ms)} | ${mib(r.rssBytes)} | ${errText} |`;
  });

  const lines: string[] = [];
  const w = rps('wasmesh');
  const wf = rps('wasmesh-filter');
  const n = nginx?.result?.rps;
  if (w !== undefined && n !== undefined) lines.push(`- wasmesh (no filters) vs nginx: **${ratio(w / n)}** of nginx's req/s (aim ≥ 0.5: ${w / n >= 0.5 ? 'met' : 'missed'}).`);
  else lines.push(`- wasmesh (no filters) vs nginx: not measured (${n === undefined ? (nginxWhy ?? rows.find((r) => r.target.id === 'nginx')?.error ?? 'nginx not run') : 'wasmesh failed'}).`);
  const nodes = ['node-undici', 'node-http'].map(byId).filter((r): r is Row => r !== undefined);
  const best = nodes.sort((a, b) => b.result!.rps - a.result!.rps)[0];
  if (w !== undefined && best) lines.push(`- wasmesh (no filters) vs the best plain Node proxy (${best.target.label.replace(/^Node proxy: /, '')}): **${ratio(w / best.result!.rps)}**.`);
  else lines.push('- wasmesh vs the best plain Node proxy: not measured.');
  if (w !== undefined && wf !== undefined) {
    const loss = (1 - wf / w) * 100;
    const p50 = `p50 ${ms(byId('wasmesh')!.result!.p50Ms)} → ${ms(byId('wasmesh-filter')!.result!.p50Ms)}`;
    lines.push(`- Cost of one filter (add-header): **${signed(-loss)}** req/s vs wasmesh without filters (aim: loss < 10%: ${loss < 10 ? 'met' : 'missed'}); ${p50}.`);
  } else lines.push('- Cost of one filter: not measured.');

  // CPU: when the load core (load generator + upstream) is the one that saturates, a target's req/s
  // is a floor of what it can do; its CPU time per request is then the figure to compare.
  const cpuPerReq = (r?: Row) => (r?.result && r.cpuPercent !== undefined ? (r.cpuPercent / 100 / r.result.rps) * 1e6 : undefined);
  const nginxCost = cpuPerReq(nginx);
  const pctText = (x?: number) => (x === undefined ? '?' : `${x.toFixed(0)}%`);
  const cpuTable = rows
    .filter((r) => r.result)
    .map((r) => {
      const c = cpuPerReq(r);
      const loadCore = r.target.direct ? r.result!.loadCpuPercent : r.result!.loadCpuPercent !== undefined && r.upstreamCpuPercent !== undefined ? r.result!.loadCpuPercent + r.upstreamCpuPercent : undefined;
      return `| ${r.target.label} | ${pctText(r.cpuPercent)} | ${c === undefined ? '?' : `${c.toFixed(1)} µs`} | ${nginxCost && c ? ratio(nginxCost / c) : '—'} | ${pctText(loadCore)}${r.target.direct ? ' (load generator only)' : ` (${pctText(r.result!.loadCpuPercent)} + upstream ${pctText(r.upstreamCpuPercent)})`} | ${pctText(r.otherCpuPercent)}${r.stealPercent && r.stealPercent >= 1 ? ` (+ steal ${pctText(r.stealPercent)})` : ''} | ${(r.rounds ?? []).map((x) => Math.round(x).toLocaleString('en-US')).join(', ')} |`;
    });
  const wCost = cpuPerReq(byId('wasmesh'));
  const wfCost = cpuPerReq(byId('wasmesh-filter'));
  if (wCost !== undefined && nginxCost !== undefined) {
    const nginxBusy = nginx!.cpuPercent ?? 100;
    lines.push(
      `- By CPU per request (target process): wasmesh ${wCost.toFixed(1)} µs vs nginx ${nginxCost.toFixed(1)} µs, an efficiency of **${ratio(nginxCost / wCost)}** nginx's` +
        (nginxBusy < 90 ? ` (nginx used ${nginxBusy.toFixed(0)}% of its core: its req/s was bounded by the load core, so the req/s ratio above flatters wasmesh; this one does not).` : '.'),
    );
  }
  if (wCost !== undefined && wfCost !== undefined) lines.push(`- The filter's CPU per request: ${wCost.toFixed(1)} → ${wfCost.toFixed(1)} µs (**${signed(((wfCost - wCost) / wCost) * 100)}**).`);
  const notes = rows.filter((r) => r.note).map((r) => `${r.target.id}: ${r.note}`);
  const busy = rows.filter((r) => (r.otherCpuPercent ?? 0) + (r.stealPercent ?? 0) >= DISTURBED_PERCENT);
  if (busy.length) notes.unshift(`**Warning:** other processes used more than a quarter of a core in every window of ${busy.map((r) => r.target.id).join(', ')}: those rows are unreliable; rerun on a quieter machine.`);
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const loadLine =
    LOADGEN.kind === 'wrk'
      ? `wrk ${LOADGEN.version} (\`-t1 -c${CONNECTIONS} --latency\`)`
      : `autocannon ${LOADGEN.version} (\`-c ${CONNECTIONS} -p 1\`, its own Node process)${LOADGEN.note ? `; wrk not used: ${LOADGEN.note}` : ''}`;
  return `${SECTION}

Written by \`npm run bench:proxy\` (proxy-host/bench/proxy.bench.ts) on ${new Date().toISOString()}.
Machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}.
The machine is shared and noisy: read the ratios against the references measured in the same run.
Loopback HTTP/1.1, \`GET /\` with \`Host: bench\`, 100-byte body from a node:http upstream; every target in its own process.
Load: ${loadLine}, ${CONNECTIONS} connections, pipelining 1; per target a fresh process, a ${WARMUP} s warm-up, then ${DURATION} s measured${ROUNDS > 1 ? ` in ${ROUNDS} rounds of ${Math.max(1, Math.round(DURATION / ROUNDS))} s (rotating order, each on a fresh process after its own warm-up)` : ''}. A target whose window was disturbed (other processes on the machine used ${DISTURBED_PERCENT}% of a core or more) is measured again while the time budget lasts, and its row shows its best undisturbed window (highest req/s: outside interference only slows a window down); errors count over all windows. Whole run ${elapsedS} s.
Pinning: ${CPUS ? `\`taskset\`: load generator and upstream on CPU ${CPUS.load}, the target on CPU ${CPUS.target} (for "direct" the upstream is the target, on CPU ${CPUS.target})` : 'none (taskset missing or fewer than 2 CPUs): figures are noisier'}.
Peak RSS: VmHWM of the target's process at the end of its window (wasmesh's includes the tsx loader it runs under; "direct" is the upstream over the whole run).${CPU_PROF_DIR ? '\nThe wasmesh targets ran under the CPU profiler (BENCH_CPU_PROF): their figures include its overhead.' : ''}

| target | req/s | ratio to nginx | p50 | p99 | peak RSS | errors |
|---|---|---|---|---|---|---|
${table.join('\n')}

${lines.join('\n')}

CPU in each row's window (100% = one core), from /proc/<pid>/stat; "other processes" is the rest of the machine's process CPU time (/proc/stat):

| target | target CPU | target CPU per request | efficiency vs nginx | load core (load generator + upstream) | other processes on the machine | req/s of each window |
|---|---|---|---|---|---|---|
${cpuTable.join('\n')}
${notes.length ? `\n${notes.map((n) => `- ${n}`).join('\n')}\n` : ''}`;
}

const writeSection = writeResultsSection;

let code = 1;
try {
  code = await main();
} catch (err) {
  process.stderr.write(`bench:proxy failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  code = 1;
} finally {
  await children.stopAll(1000);
  children.killAllSync();
}
process.exit(code);
