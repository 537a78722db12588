// npm run bench:isolation: no amplification, measured. Good traffic at a steady rate (default 200
// requests per second) and one trapping request a second go through the same FAIL_CLOSE WasmPlugin of a
// wasmesh sidecar for a minute: how many good requests still get 200, their latency, and how many VMs
// were replaced. A benchmark, not a test: it prints a table and writes its own section of
// bench/RESULTS.md (every other section is kept).
//
// Windows (each on a fresh proxy, after a warm-up of good traffic): no traps (the reference); a trap a
// second that hits `unreachable`; a trap a second that loops forever, stopped by the default CPU budget
// and then by a WasmPlugin spec.cpuBudget of 1e7; then the unreachable and the 1e7-budget loop windows
// again with a pool of VMs (spec.vms 4): a trap then fails only the good requests on its own VM. The
// module is the isolation tests' hostile filter (proxy-host/test/support/), bound by a standalone config.
//
// Processes: the upstream (proxy-host/bench/upstream.mjs) and the proxy (`wasmesh proxy --config`) in
// their own processes; this one generates the load. Environment: BENCH_DURATION (s per window, default
// 60), BENCH_BASELINE (s for the window without traps, default 20), BENCH_RATE (good requests per
// second, default 200), BENCH_WARMUP (s, default 3), BENCH_WINDOWS (which windows, default
// none,unreachable,loop,loop-budget,unreachable-vms4,loop-budget-vms4).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { hostileFilterWat } from '../test/support/hostile-filter.ts';
import { APP_HOST, AUTHZ_CLUSTER, isolationMeshYaml } from '../test/support/isolation-mesh.ts';
import { SteadyTraffic, percentile, send, type Outcome } from '../test/support/traffic.ts';
import { TASKSET } from './load.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '## Filter isolation: no amplification (npm run bench:isolation)';
/** Good requests in flight at most; far above what 200 rps needs, a guard against an unbounded queue. */
const MAX_IN_FLIGHT = 512;
/** spec.cpuBudget of the last window: a loop stopped after about 1.5 ms of guest time on the bench machine. */
const LOOP_BUDGET = 10_000_000;
/** spec.vms of the pool windows. */
const POOL_VMS = 4;
/** Seed of the trap moments (a fixed seed: every run sends its traps at the same moments). */
const TRAP_PHASE_SEED = 0x5eed;

/** mulberry32: a small seeded generator of numbers in [0, 1). */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function num(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

type TrapKind = 'none' | 'loop' | 'unreachable';

/** What one window runs: the trap kind, the plugin's spec.cpuBudget and spec.vms (absent: the defaults). */
interface Plan {
  kind: TrapKind;
  seconds: number;
  cpuBudget?: number;
  vms?: number;
}

interface Window {
  kind: TrapKind;
  cpuBudget?: number;
  vms?: number;
  seconds: number;
  good: number;
  goodOk: number;
  notSent: number;
  /** Failed good requests sent before a trapping request and answered after it was sent: on the VM that trapped. */
  failedInFlight: number;
  /**
   * Failed good requests sent while a trapping request was waiting for its answer: on the VM that trapped
   * if the proxy, busy, read them before the trapping request.
   */
  failedDuring: number;
  /** Failed good requests that overlapped no trapping request at all: amplification. */
  failedOther: number;
  /** What those were: status or client error, and when, relative to the nearest trapping request. */
  otherDetails: string[];
  p50: number;
  p99: number;
  p999: number;
  max: number;
  traps: number;
  traps503: number;
  trapP50: number;
  vmsReplaced: number;
  /** Trapping requests that met a live VM and made it trap (the rest met a VM waiting out a backoff). */
  trapped: number;
  /** Failures after which the plugin backed off instead of replacing the VM at once (from the proxy's log). */
  backoffs: number;
  trapCauses: string;
}

// ---- child processes ----------------------------------------------------------------------------

const children = new Set<ChildProcess>();

function spawnPinned(cpu: number, args: string[]): ChildProcess {
  const cp = TASKSET
    ? spawn(TASKSET, ['-c', String(cpu), process.execPath, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}

/** Resolves with the first match of `pattern` in the child's output (stdout or stderr). */
function waitForOutput(cp: ChildProcess, pattern: RegExp, what: string, timeoutMs = 60_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}:\n${text.slice(-2000)}`)), timeoutMs);
    const onData = (c: Buffer) => {
      text += c.toString();
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
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
  if (cp.exitCode !== null) return;
  const exited = new Promise((resolve) => cp.once('exit', resolve));
  cp.kill('SIGTERM');
  const timer = setTimeout(() => cp.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

// ---- one window ---------------------------------------------------------------------------------

async function counters(adminPort: number): Promise<{ replaced: number; trapped: number; causes: string }> {
  const text = (await send(adminPort, { path: '/stats/prometheus' })).body;
  let replaced = 0;
  let trapped = 0;
  const causes: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('wasmesh_wasm_vm_restarts_total{plugin="default.guard"} ')) replaced = Number(line.split(' ').pop());
    const m = /^wasmesh_wasm_vm_traps_total\{cause="([a-z_]+)",plugin="default.guard"\} (\d+)/.exec(line);
    if (m) {
      causes.push(`${m[1]} ${m[2]}`);
      trapped += Number(m[2]);
    }
  }
  return { replaced, trapped, causes: causes.join(', ') || 'none' };
}

/** Was `good` on the VM when `trap` came: sent before the trapping request and answered after it was sent? */
const inFlightAt = (good: Outcome, trap: Outcome): boolean => good.startMs <= trap.startMs && good.startMs + good.latencyMs >= trap.startMs;
/** Was `good` sent while `trap` waited for its answer? */
const sentDuring = (good: Outcome, trap: Outcome): boolean => good.startMs > trap.startMs && good.startMs <= trap.startMs + trap.latencyMs;

async function measure(config: string, appPort: number, plan: Plan, rate: number, warmupS: number): Promise<Window> {
  const { kind, seconds } = plan;
  const proxy = spawnPinned(1, ['scripts/wasmesh.mjs', 'proxy', '--config', config, '--workload', 'web', '--app-port', String(appPort), '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--no-telemetry']);
  // The plugin logs each failure: "new streams get a fresh VM", or "... until it is replaced (in N ms)".
  let backoffs = 0;
  let log = '';
  proxy.stderr!.on('data', (c: Buffer) => {
    log += c.toString();
    const lines = log.split('\n');
    log = lines.pop()!;
    // "VM failed ..." with one VM, "VM 2 of 4 failed ..." in a pool.
    for (const line of lines) if (/VM( \d+ of \d+)? failed .* until it is replaced \(in \d+ ms\)/.test(line)) backoffs++;
  });
  try {
    const m = await waitForOutput(proxy, /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+), admin [\d.]+:(\d+)/, 'the proxy to listen');
    const outbound = Number(m[1]);
    const admin = Number(m[3]);
    const request = { path: '/', headers: { host: APP_HOST } };
    await new SteadyTraffic({ port: outbound, rate, maxRequests: rate * warmupS, maxMs: warmupS * 1000, maxInFlight: MAX_IN_FLIGHT, request }).finished();

    const good = new SteadyTraffic({ port: outbound, rate, maxRequests: Math.round(rate * seconds), maxMs: seconds * 1000, maxInFlight: MAX_IN_FLIGHT, request });
    const traps: Outcome[] = [];
    if (kind !== 'none') {
      const headers: Record<string, string> = kind === 'loop' ? { host: APP_HOST, 'x-loop': '1' } : { host: APP_HOST };
      const trapPath = kind === 'loop' ? '/loop' : '/trap';
      const started = performance.now();
      const phase = seededRandom(TRAP_PHASE_SEED);
      for (let i = 0; i < seconds - 1; i++) {
        // One trap in each second, at a random moment of it (the same moments in every run), whatever the
        // previous trap took. Not at a fixed offset: the good requests leave on a 1/rate grid, and a trap
        // on the same grid would always arrive together with a good request, which the trap then fails.
        // Real bad requests have no phase relation to the rest of the traffic.
        const wait = started + i * 1000 + 50 + phase() * 900 - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        traps.push(await send(outbound, { path: trapPath, headers }));
      }
    }
    const outcomes = await good.finished();
    const { replaced, trapped, causes } = await counters(admin);
    const failed = outcomes.filter((o) => o.status !== 200);
    const inFlight = failed.filter((o) => o.status === 503 && traps.some((t) => inFlightAt(o, t)));
    const during = failed.filter((o) => o.status === 503 && !inFlight.includes(o) && traps.some((t) => sentDuring(o, t)));
    const latencies = outcomes.map((o) => o.latencyMs);
    return {
      kind,
      ...(plan.cpuBudget !== undefined ? { cpuBudget: plan.cpuBudget } : {}),
      ...(plan.vms !== undefined ? { vms: plan.vms } : {}),
      seconds,
      good: outcomes.length,
      goodOk: outcomes.length - failed.length,
      notSent: good.skipped,
      failedInFlight: inFlight.length,
      failedDuring: during.length,
      failedOther: failed.length - inFlight.length - during.length,
      otherDetails: failed
        .filter((o) => !inFlight.includes(o) && !during.includes(o))
        .map((o) => {
          const nearest = traps.reduce<Outcome | undefined>((best, t) => (best === undefined || Math.abs(t.startMs - o.startMs) < Math.abs(best.startMs - o.startMs) ? t : best), undefined);
          const when = nearest === undefined ? '' : `, sent ${(o.startMs - nearest.startMs).toFixed(0)} ms after a trapping request (answered in ${nearest.latencyMs.toFixed(0)} ms)`;
          return `${o.status === 0 ? `no answer (${o.error})` : `${o.status}${o.error ? ` (${o.error})` : ''}`} after ${o.latencyMs.toFixed(0)} ms${when}`;
        }),
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      p999: percentile(latencies, 99.9),
      max: Math.max(...latencies),
      traps: traps.length,
      traps503: traps.filter((t) => t.status === 503).length,
      trapP50: percentile(traps.map((t) => t.latencyMs), 50),
      vmsReplaced: replaced,
      trapped,
      backoffs,
      trapCauses: causes,
    };
  } finally {
    await stop(proxy);
  }
}

// ---- report -------------------------------------------------------------------------------------

const ms = (v: number) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : '-');
const pct = (a: number, b: number) => (b === 0 ? '-' : `${((100 * a) / b).toFixed(2)} %`);

async function main(): Promise<void> {
  const seconds = num(process.env.BENCH_DURATION, 60);
  const baseline = num(process.env.BENCH_BASELINE, 20);
  const rate = num(process.env.BENCH_RATE, 200);
  const warmup = num(process.env.BENCH_WARMUP, 3);
  const cleanup = () => {
    for (const cp of children) cp.kill('SIGKILL');
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const started = Date.now();
  // This process generates the load: it shares CPU 0 with the upstream, the proxy has CPU 1.
  if (TASKSET) spawnSync(TASKSET, ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wasmesh-bench-isolation-'));
  const upstream = spawnPinned(0, ['proxy-host/bench/upstream.mjs']);
  const windows: Window[] = [];
  try {
    const ready = await waitForOutput(upstream, /BENCH_READY (\{.*\})/, 'the upstream');
    const appPort = (JSON.parse(ready[1]!) as { port: number }).port;
    writeFileSync(path.join(dir, 'hostile.wasm'), await wat2wasm(hostileFilterWat(AUTHZ_CLUSTER)));
    const all: Record<string, Plan> = {
      none: { kind: 'none', seconds: baseline },
      unreachable: { kind: 'unreachable', seconds },
      loop: { kind: 'loop', seconds },
      'loop-budget': { kind: 'loop', seconds, cpuBudget: LOOP_BUDGET },
      // The same traps with a pool: the loss should be about a quarter of the rows above.
      [`unreachable-vms${POOL_VMS}`]: { kind: 'unreachable', seconds, vms: POOL_VMS },
      [`loop-budget-vms${POOL_VMS}`]: { kind: 'loop', seconds, cpuBudget: LOOP_BUDGET, vms: POOL_VMS },
    };
    const plans = (process.env.BENCH_WINDOWS ?? Object.keys(all).join(',')).split(',').map((name) => {
      const plan = all[name.trim()];
      if (plan === undefined) throw new Error(`BENCH_WINDOWS: unknown window ${JSON.stringify(name)} (known: ${Object.keys(all).join(', ')})`);
      return plan;
    });
    for (const plan of plans) {
      // The callout target is never called here; the app stands in for it.
      const config = path.join(dir, `mesh-${plan.cpuBudget ?? 'default'}-vms${plan.vms ?? 1}.yaml`);
      writeFileSync(config, isolationMeshYaml({ appPort, authzPort: appPort, ...(plan.cpuBudget !== undefined ? { cpuBudget: plan.cpuBudget } : {}), ...(plan.vms !== undefined ? { vms: plan.vms } : {}) }));
      process.stdout.write(`window: ${plan.kind}, budget ${plan.cpuBudget ?? 'default'}, vms ${plan.vms ?? 1}, ${plan.seconds} s at ${rate} good requests/s ...\n`);
      const w = await measure(config, appPort, plan, rate, warmup);
      windows.push(w);
      process.stdout.write(
        `  ${w.good} good, ${pct(w.goodOk, w.good)} got 200 (failed: ${w.failedInFlight} in flight at a trap, ${w.failedDuring} sent during one, ${w.failedOther} other), p50 ${ms(w.p50)}, p99 ${ms(w.p99)}, p99.9 ${ms(w.p999)}, max ${ms(w.max)}; ` +
          `traps ${w.traps503}/${w.traps} got 503, ${w.trapped} of them trapped a live VM, VMs replaced ${w.vmsReplaced} (${w.trapCauses}), backoffs ${w.backoffs}\n`,
      );
      for (const d of w.otherDetails.slice(0, 10)) process.stdout.write(`    other failure: ${d}\n`);
    }
  } finally {
    await stop(upstream);
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  }

  const cpus = os.cpus();
  const lines: string[] = [];
  lines.push(SECTION, '');
  lines.push(`Written by \`npm run bench:isolation\` (proxy-host/bench/isolation.bench.ts) on ${new Date().toISOString()}.`);
  lines.push(`Machine: ${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}. Shared and noisy: load average ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')} at the end of the run.`);
  lines.push(
    `One wasmesh sidecar (\`wasmesh proxy --config\`, its own process, default CPU budget) with a FAIL_CLOSE WasmPlugin of the isolation tests' hostile filter on the outbound side; a node:http upstream (its own process). ` +
      `Good traffic: \`GET /\`, open loop at ${rate} requests/s (at most ${MAX_IN_FLIGHT} in flight), HTTP/1.1 keep-alive; one trapping request a second (at a random moment of each second, seeded) through the same plugin, from ${warmup} s after a fresh proxy started (a warm-up of good traffic). ` +
      `Trap kinds: "unreachable" traps at once; "loop" loops forever in on_request_headers until the CPU budget stops it (the default 1e9 units, or spec.cpuBudget ${LOOP_BUDGET.toExponential().replace('+', '')}). ` +
      `VMs: the plugin's pool (spec.vms): 1, the default, is one VM for all streams; with ${POOL_VMS}, new streams go to the least loaded of ${POOL_VMS} VMs and a trap fails only the streams on its own VM. ` +
      (TASKSET ? 'Pinning: `taskset`, the proxy on CPU 1, upstream and load generator on CPU 0. ' : '') +
      `Whole run ${Math.round((Date.now() - started) / 1000)} s.`,
  );
  lines.push('');
  lines.push('| traps | VMs | window | good requests | got 200 | failed: in flight at a trap / sent during one / other | good p50 | p99 | p99.9 | max | trapping requests answered 503 | of them met a live VM | trap latency p50 | VMs replaced | backoffs | traps by cause |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const w of windows) {
    lines.push(
      `| ${w.kind === 'none' ? 'none (reference)' : `1/s, ${w.kind}${w.kind === 'loop' ? `, budget ${w.cpuBudget === undefined ? 'default (1e9)' : w.cpuBudget.toExponential().replace('+', '')}` : ''}`} | ${w.vms ?? 1} | ${w.seconds} s | ${w.good}${w.notSent ? ` (+${w.notSent} not sent)` : ''} | ${pct(w.goodOk, w.good)} | ${w.failedInFlight} / ${w.failedDuring} / ${w.failedOther} | ${ms(w.p50)} | ${ms(w.p99)} | ${ms(w.p999)} | ${ms(w.max)} | ${w.traps === 0 ? '-' : `${w.traps503} / ${w.traps}`} | ${w.traps === 0 ? '-' : w.trapped} | ${w.traps === 0 ? '-' : ms(w.trapP50)} | ${w.vmsReplaced} | ${w.backoffs} | ${w.trapCauses} |`,
    );
  }
  lines.push('');
  lines.push(
    'Failed good requests, by when they were sent: "in flight at a trap" were sent before a trapping request and answered after it was sent: they were on the VM that trapped, and FAIL_CLOSE answers such streams 503 by design. ' +
      '"Sent during one" were sent while a trapping request waited for its answer: on the VM that trapped too if the proxy, backlogged, read them before the trapping request (all requests wait in the same queue when the machine holds the proxy up). ' +
      'The share of good requests that fail these two ways is about (traps per second) x (their mean time in the proxy), whatever the rate: 1 trap/s at 2 ms costs 0.2 %. ' +
      `With a pool of VMs only the requests on the VM that trapped fail, about 1/${POOL_VMS} of those with ${POOL_VMS} VMs (the good requests still in flight are spread over the pool's VMs, least loaded first). ` +
      '"Other" failures overlapped no trapping request: amplification (a VM waiting out a backoff, a stall that fails requests); there should be none. ' +
      'A trapping request that did not meet a live VM was answered by a VM waiting out a backoff; "backoffs" counts the failures after which the plugin backed off instead of replacing the VM at once (it does when a fresh VM fails before it finished any stream, or more than 20 VMs fail within a second).',
  );
  for (const w of windows.filter((x) => x.otherDetails.length > 0)) {
    lines.push('');
    lines.push(`"Other" failures in the ${w.kind}${w.cpuBudget !== undefined ? ` (budget ${w.cpuBudget})` : ''}${w.vms !== undefined ? ` (vms ${w.vms})` : ''} window: ${w.otherDetails.slice(0, 5).join('; ')}${w.otherDetails.length > 5 ? '; ...' : ''}.`);
  }
  lines.push('');
  const section = lines.join('\n');
  process.stdout.write(`\n${section}\n`);
  await writeResultsSection(section);
  process.stdout.write(`written to ${path.relative(ROOT, path.join(ROOT, 'bench/RESULTS.md'))}\n`);
}

await main();
