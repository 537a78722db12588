// The mesh benchmark's report: markdown for bench/RESULTS.md (and the terminal).
import os from 'node:os';
import type { LinearMemoryRow, MemoryRow } from './memory.ts';
import { cpuPerRequestUs, inPath, noise, pathProcs, vcpuPer1000, type RowResult, type RowSample } from './results.ts';
import type { MeasuredProcess } from './window.ts';

export const SECTION = '## Mesh path (npm run bench:mesh)';

export interface RenderInput {
  rows: RowResult[];
  memory: MemoryRow[];
  linear: LinearMemoryRow[];
  setup: string[];
  elapsedS: number;
  notes: string[];
}

const MIB = 2 ** 20;
const mib = (b?: number) => (b === undefined ? '?' : `${(b / MIB).toFixed(0)} MB`);
const ms = (x?: number) => (x === undefined || !Number.isFinite(x) ? '?' : `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`);
const mibSigned = (b: number) => `${b >= 0 ? '+' : '−'}${mib(Math.abs(b))}`;
const kbSigned = (b: number) => (Number.isFinite(b) ? `${b >= 0 ? '+' : '−'}${(Math.abs(b) / 1024).toFixed(0)} KB` : '?');
const msSigned = (x?: number) => (x === undefined || !Number.isFinite(x) ? '?' : `${x >= 0 ? '+' : '−'}${ms(Math.abs(x))}`);
const us = (x?: number) => (x === undefined || !Number.isFinite(x) ? '?' : `${x.toFixed(0)} µs`);
const int = (x?: number) => (x === undefined || !Number.isFinite(x) ? '?' : Math.round(x).toLocaleString('en-US'));
const ratio = (x?: number) => (x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(2)}x`);
const pct = (x?: number) => (x === undefined ? '?' : `${x.toFixed(0)}%`);
const cell = (s: string) => s.replace(/\|/g, '/').replace(/\s+/g, ' ');

function memSum(s: RowSample, which: 'idle' | 'end', procs: readonly MeasuredProcess[]): number {
  return procs.reduce((n, p) => n + (s[which].get(p.pid)?.rss ?? 0), 0);
}

function memoryCell(s: RowSample): string {
  const procs = pathProcs(s);
  if (procs.length === 0) return '-';
  const names = procs.map((p) => p.role.replace(/ \(.*\)$/, '')).join(' + ');
  return `${mib(memSum(s, 'end', procs))} (${names})`;
}

function errorsOf(s: RowSample): string {
  const parts: string[] = [];
  for (const [name, r] of [['open', s.open.result], ['closed', s.closed.result]] as const) {
    const n = r.errors + r.non2xx;
    if (n > 0) parts.push(`${name}: ${n} (${r.non2xx} non-2xx${r.detail ? `; ${r.detail}` : ''})`);
  }
  return parts.length ? parts.join('; ') : '0';
}

export function render(x: RenderInput): string {
  const done = x.rows.filter((r) => r.best);
  const row = (id: string) => done.find((r) => r.spec.id === id)?.best;
  const direct = row('direct');
  const nginxPair = row('nginx-pair');
  const nginxCost = nginxPair ? cpuPerRequestUs(nginxPair, pathProcs(nginxPair)) : undefined;

  const main = x.rows.map((r) => {
    const s = r.best;
    if (!s) return `| ${r.spec.label} | failed: ${cell(r.error ?? 'not measured')} | | | | | | | |`;
    const path = pathProcs(s);
    const o = s.open.result;
    const vcpu = path.length ? vcpuPer1000(s, path).toFixed(2) : '-';
    const cpr = path.length ? us(cpuPerRequestUs(s, path)) : '-';
    return `| ${r.spec.label} | ${ms(o.p50Ms)} | ${ms(o.p90Ms)} | ${ms(o.p99Ms)} | ${vcpu} | ${int(s.closed.result.rps)} | ${cpr} | ${memoryCell(s)} | ${pct(s.open.cpu.otherPercent)} / ${pct(s.closed.cpu.otherPercent)} |`;
  });

  const added = x.rows
    .filter((r) => r.best)
    .map((r) => {
      const s = r.best!;
      const o = s.open.result;
      const d = direct?.open.result;
      const behind = o.rps < o.targetRps * 0.95 ? ' (behind the target: latencies understate)' : '';
      return `| ${r.spec.label} | ${d ? `${msSigned(o.p50Ms - d.p50Ms)} / ${msSigned(o.p90Ms - d.p90Ms)} / ${msSigned(o.p99Ms - d.p99Ms)}` : '?'} | ${int(o.rps)} of ${int(o.targetRps)}${behind} | ${ms(s.closed.result.p50Ms)} / ${ms(s.closed.result.p99Ms)} | ${nginxPair ? ratio(s.closed.result.rps / nginxPair.closed.result.rps) : '—'} | ${nginxCost && pathProcs(s).length ? ratio(cpuPerRequestUs(s, pathProcs(s)) / nginxCost) : '—'} | ${cell(errorsOf(s))} |`;
    });

  const perProcess: string[] = [];
  for (const r of done) {
    const s = r.best!;
    for (const p of s.procs) {
      const openPct = ((s.open.cpu.byPid.get(p.pid) ?? 0) / s.open.cpu.wallS) * 100;
      const closedPct = ((s.closed.cpu.byPid.get(p.pid) ?? 0) / s.closed.cpu.wallS) * 100;
      const path = inPath(p);
      perProcess.push(
        `| ${r.spec.label} | ${p.role}${path ? '' : ' (not in the path\'s CPU)'} | ${pct(openPct)} | ${path ? vcpuPer1000(s, [p]).toFixed(2) : '-'} | ${pct(closedPct)} | ${path ? us(cpuPerRequestUs(s, [p])) : '-'} | ${mib(s.idle.get(p.pid)?.rss)} | ${mib(s.end.get(p.pid)?.rss)} | ${mib(s.end.get(p.pid)?.hwm)} | ${mib(s.end.get(p.pid)?.pss)} |`,
      );
    }
  }

  const noiseRows = done.map((r) => {
    const s = r.best!;
    const c = (w: 'open' | 'closed') => `${pct(s[w].cpu.otherPercent)}${(s[w].cpu.stealPercent ?? 0) >= 1 ? ` + steal ${pct(s[w].cpu.stealPercent)}` : ''}, load generator ${pct(((s[w].cpu.loadCpuS ?? NaN) / s[w].cpu.wallS) * 100)}`;
    return `| ${r.spec.label} | ${c('open')} | ${c('closed')} | ${r.samples.length > 1 ? r.samples.map((x) => `${pct(noise(x))}`).join(', ') : '-'} | ${cell(s.checks.join('; ') || '-')} |`;
  });

  return [
    SECTION,
    '',
    ...x.setup,
    '',
    '| path | p50 | p90 | p99 (open loop, 1000 rps, 16 conns) | vCPU per 1000 rps | max rps (wrk -c64) | CPU per request | memory (RSS at the end of load) | other processes (open / closed) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...main,
    '',
    goals(x.rows, direct, nginxPair),
    '',
    'Latency added over no proxy at 1000 rps, the rate hey achieved, closed-loop latency, and ratios to the nginx pair (throughput: higher is better; CPU per request: lower is better):',
    '',
    '| path | added p50 / p90 / p99 | achieved rps (open loop) | closed loop p50 / p99 | max rps vs nginx pair | CPU per request vs nginx pair | errors |',
    '|---|---|---|---|---|---|---|',
    ...added,
    '',
    'Each process (CPU: 100% = one core; per request from the closed loop, per 1000 rps from the open loop; RSS idle = after start and the sanity requests, before load; end = VmRSS after the closed loop; peak = VmHWM; PSS end = the proportional set then, shared pages such as the node binary\'s divided among the processes mapping them, so what the process adds to the machine):',
    '',
    '| path | process | CPU open loop | vCPU per 1000 rps | CPU closed loop | CPU per request | RSS idle | RSS end | RSS peak | PSS end |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...perProcess,
    '',
    'Noise check (CPU of processes this benchmark did not start, during each window; 100% = one core) and what was checked about each path before load:',
    '',
    '| path | open loop: other processes | closed loop: other processes | noise of each round | checks |',
    '|---|---|---|---|---|',
    ...noiseRows,
    '',
    ...memorySection(x.memory, x.linear),
    ...(x.notes.length ? ['', ...x.notes.map((n) => `- ${n}`)] : []),
    '',
  ].join('\n');
}

function goals(rows: RowResult[], direct: RowSample | undefined, nginxPair: RowSample | undefined): string {
  const s = rows.find((r) => r.spec.id === 'pair-mtls')?.best;
  if (!s) return 'Goals of issue 15: not judged (the wasmesh pair with mTLS was not measured).';
  const sidecars = s.procs.filter((p) => p.kind === 'sidecar');
  const supervisors = s.procs.filter((p) => p.kind === 'supervisor');
  const verdict = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? '**met**' : '**missed**');
  const perSidecar = sidecars.map((p) => `${p.role} ${us(cpuPerRequestUs(s, [p]))}`).join(', ');
  const tput = nginxPair ? s.closed.result.rps / nginxPair.closed.result.rps : undefined;
  const addP90 = direct ? s.open.result.p90Ms - direct.open.result.p90Ms : undefined;
  const addP99 = direct ? s.open.result.p99Ms - direct.open.result.p99Ms : undefined;
  const rssMax = (p: MeasuredProcess) => Math.max(s.idle.get(p.pid)?.rss ?? 0, s.end.get(p.pid)?.hwm ?? 0);
  const sidecarMem = sidecars.map((p) => `${p.role} ${mib(s.idle.get(p.pid)?.rss)} idle, ${mib(s.end.get(p.pid)?.hwm)} peak`).join('; ');
  // RSS counts the pages of the node binary every Node process on the machine shares; PSS divides them.
  const sidecarPss = sidecars.map((p) => `${p.role} PSS ${mib(s.idle.get(p.pid)?.pss)} idle, ${mib(s.end.get(p.pid)?.pss)} after load, of RSS ${mib(s.end.get(p.pid)?.fileRss)} mapped from files`).join('; ');
  const supMem = supervisors.map((p) => `${p.role} ${mib(s.end.get(p.pid)?.rss)}`).join(', ');
  return [
    'Goals of issue 15 for the wasmesh pair with STRICT mTLS and telemetry, judged on this run:',
    '',
    `- CPU per request per sidecar ≤ 100 µs: ${perSidecar} → ${verdict(sidecars.every((p) => cpuPerRequestUs(s, [p]) <= 100))}.`,
    `- Max throughput ≥ 0.5x the nginx pair's: ${ratio(tput)} → ${verdict(tput === undefined ? undefined : tput >= 0.5)}.`,
    `- Latency added over no proxy at 1000 rps, p90 and p99 each < 1 ms: p90 ${msSigned(addP90)}, p99 ${msSigned(addP99)} → ${verdict(addP90 === undefined || addP99 === undefined ? undefined : addP90 < 1 && addP99 < 1)}.`,
    `- Each sidecar < 64 MB RSS idle and under load: ${sidecarMem} → ${verdict(sidecars.every((p) => rssMax(p) < 64 * MIB))}. What each adds to the machine: ${sidecarPss}.`,
    `- The process \`wasmesh run\` keeps beside the app < 20 MB: ${supMem} → ${verdict(supervisors.every((p) => (s.end.get(p.pid)?.hwm ?? Infinity) < 20 * MIB))}.`,
  ].join('\n');
}

function memorySection(rows: MemoryRow[], linear: LinearMemoryRow[]): string[] {
  if (rows.length === 0 && linear.length === 0) return [];
  const total = (r: MemoryRow) => r.processes.reduce((n, p) => n + p.mem.rss, 0);
  // Differences between sidecars use the RSS after full GCs where there is one (start-up garbage aside).
  const settled = (r: MemoryRow) => r.afterGc?.rss ?? total(r);
  const by = (label: string) => rows.find((r) => r.label.startsWith(label) && !r.error);
  const base = by('no filters');
  const one = by('1 WasmPlugin');
  const three = by('3 WasmPlugins');
  const tele = by('default: telemetry');
  const lines = [
    '### Memory of a sidecar',
    '',
    'Standalone sidecars (`wasmesh proxy --config`, the proxy `wasmesh run` starts, here reading a generated file instead of the orchestrator), each alone, idle after 50 requests through its inbound listener and 1 s of rest: RSS as is (VmRSS; peak VmHWM), and for one-process sidecars again after two full GCs forced through the inspector (with V8\'s heap in use then); the differences below use the latter. Workers are not GC\'d (one inspector port per process tree).',
    '',
    '| sidecar | plugins running (admin /filters) | RSS | after full GC (V8 heap used) | peak | processes | ready after |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) =>
      r.error
        ? `| ${r.label} | failed: ${cell(r.error)} | | | | | |`
        : `| ${r.label} | ${r.pluginsRunning ?? '?'} | ${mib(total(r))} | ${r.afterGc ? `${mib(r.afterGc.rss)} (${mib(r.afterGc.heapUsed)})` : '-'} | ${mib(r.processes.reduce((n, p) => n + p.mem.hwm, 0))} | ${r.processes.map((p) => `${p.role} ${mib(p.mem.rss)}`).join(', ')} | ${r.readyS.toFixed(1)} s |`,
    ),
    '',
  ];
  const derived: string[] = [];
  const heap = (r: MemoryRow) => r.afterGc?.heapUsed ?? NaN;
  const delta = (a: MemoryRow, b: MemoryRow, per = 1) => `RSS ${mibSigned((settled(b) - settled(a)) / per)}, V8 heap ${kbSigned((heap(b) - heap(a)) / per)}`;
  const ten = by('10 WasmPlugins');
  const again = by('--concurrency 1');
  if (tele && again) derived.push(`- Run-to-run noise: the default sidecar measured twice (default, --concurrency 1) differs by ${mib(Math.abs(settled(tele) - settled(again)))} of RSS after GC; differences smaller than that are noise, V8's heap figure is the steadier one.`);
  if (base && one) derived.push(`- The first WasmPlugin (module compiled, one VM): ${delta(base, one)}.`);
  if (one && three) derived.push(`- Each further VM of an already compiled module, from 3: ${delta(one, three, 2)}.`);
  if (one && ten) derived.push(`- Each further VM of an already compiled module, from 10: ${delta(one, ten, 9)}.`);
  if (base && tele) derived.push(`- The default telemetry (its module and a plugin per direction): ${delta(base, tele)}.`);
  const w1 = by('--concurrency 1');
  for (const n of [2, 4]) {
    const w = by(`--concurrency ${n}`);
    if (w1 && w) derived.push(`- --concurrency ${n}: ${mib(total(w))} in all (primary and ${n} workers), ${mib((total(w) - total(w1)) / n)} per worker beyond one process.`);
  }
  const s1 = by('1 service');
  for (const n of [100, 1000]) {
    const s = by(`${n} services`);
    if (s1 && s) derived.push(`- ${n} services over 1: ${delta(s1, s)}; per service ${delta(s1, s, n - 1)}.`);
  }
  lines.push(...derived);
  if (linear.length) {
    lines.push(
      '',
      "Linear memory of one VM of each built filter, by the runtime's own accounting (FilterHarness, empty plugin config): what the guest itself holds; the rest of a VM's cost above is V8's instance and code.",
      '',
      '| module | after start | after 200 streams |',
      '|---|---|---|',
      ...linear.map((l) => (l.error ? `| ${l.filter} | failed: ${cell(l.error)} | |` : `| ${l.filter} | ${(l.afterStartBytes! / 1024).toFixed(0)} KiB | ${(l.after200StreamsBytes! / 1024).toFixed(0)} KiB |`)),
    );
  }
  return lines;
}

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `Machine: ${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}.`;
}
