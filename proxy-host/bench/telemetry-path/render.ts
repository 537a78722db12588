// The telemetry-path benchmark's table (bench/RESULTS.md section): per configuration the median CPU
// per request of each sidecar over the rounds, and ratios taken within each round (a configuration
// against the no-filter pair of the same checkout and mode, this checkout against the baseline), then
// their median: windows of one round ran seconds apart, so they share the machine's mood.
import os from 'node:os';
import type { CpuPlan } from '../support/cpus.ts';
import type { BenchConfig } from './configs.ts';
import { total, type Window } from './measure.ts';

export interface RunFacts {
  command: string;
  commit: string;
  baseline: string | undefined;
  rounds: number;
  duration: number;
  warmup: number;
  connections: number;
  bodyBytes: number;
  wrk: string;
  seconds: number;
  cpus: CpuPlan | undefined;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const f1 = (n: number) => n.toFixed(1);
const outOf = (w: Window) => total(w.outbound);
const inOf = (w: Window) => total(w.inbound);

/** Median over rounds of mine[i] / ref[i]. */
function pairedRatio(mine: readonly Window[], ref: readonly Window[] | undefined, pick: (w: Window) => number): string {
  if (!ref || ref.length === 0) return '-';
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(mine.length, ref.length); i++) ratios.push(pick(mine[i]!) / pick(ref[i]!));
  return `${median(ratios).toFixed(2)}x`;
}

export function render(title: string, configs: readonly BenchConfig[], results: ReadonlyMap<string, Window[]>, r: RunFacts): string {
  const cpus = os.cpus();
  const withBaseline = r.baseline !== undefined;
  const lines = [
    title,
    '',
    `Written by \`${r.command}\` on ${new Date().toISOString()} (commit ${r.commit}${withBaseline ? `, baseline ${r.baseline}` : ''}), ${r.rounds} round(s), whole run ${r.seconds} s.`,
    `Machine: ${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, Node.js ${process.version}, ${os.platform()} ${os.release()}. Shared and noisy: read the ratios, taken within each round.`,
    `Path: wrk ${r.wrk} (\`-t1 -c${r.connections}\`, keep-alive) -> outbound sidecar (productpage) -> inbound sidecar (reviews) -> node:http app (${r.bodyBytes}-byte body). ` +
      `mTLS: ISTIO_MUTUAL + STRICT with SPIFFE certificates from a throwaway CA; permissive: the same client, the inbound sidecar PERMISSIVE (Istio's default: TLS told from plaintext by the first bytes); plaintext: DISABLE. Filters on both sides of both sidecars: none, a no-op wasm module (WAT: headers and on_log only), or the built-in telemetry binding (the translator's default: metrics on, access log off, FAIL_OPEN). ` +
      (r.cpus ? `Pinning: every sidecar on CPU ${r.cpus.target}, wrk and the app on CPU ${r.cpus.load}. ` : 'No pinning (taskset or a second CPU missing). ') +
      `Every pair of a security mode runs at once (idle but for its window), warmed for ${r.warmup} s; a round puts ${r.duration} s of load through each pair in turn (the order rotates each round). ` +
      `CPU per request = utime + stime of the sidecar process over its window (/proc) / requests completed; sys is the kernel's part. Medians over rounds; ratios are medians of the ratios within each round. ` +
      `Telemetry windows were checked against the inbound sidecar's istio_requests_total; "others" is the share of the sidecars' CPU other processes used during the windows (median).` +
      (withBaseline ? ' `@baseline` rows ran the sidecars (proxy code and filter modules) of the baseline commit.' : ''),
    '',
    `| configuration | req/s | outbound µs/req (sys) | inbound µs/req (sys) | outbound / no filter | inbound / no filter |${withBaseline ? ' outbound / baseline | inbound / baseline |' : ''} p50 ms | failed | others |`,
    `|---|---|---|---|---|---|${withBaseline ? '---|---|' : ''}---|---|---|`,
  ];
  const med = (ws: readonly Window[], pick: (w: Window) => number) => median(ws.map(pick));
  for (const c of configs) {
    const ws = results.get(c.label) ?? [];
    if (ws.length === 0) continue;
    const none = results.get(`${c.security}-none${c.baseline ? '@baseline' : ''}`);
    const base = c.baseline ? undefined : results.get(`${c.label}@baseline`);
    lines.push(
      `| ${c.label} | ${Math.round(med(ws, (w) => w.rps))} | ${f1(med(ws, outOf))} (${f1(med(ws, (w) => w.outbound.system))}) | ${f1(med(ws, inOf))} (${f1(med(ws, (w) => w.inbound.system))}) | ` +
        `${c.filters === 'none' ? '-' : pairedRatio(ws, none, outOf)} | ${c.filters === 'none' ? '-' : pairedRatio(ws, none, inOf)} |` +
        (withBaseline ? ` ${pairedRatio(ws, base, outOf)} | ${pairedRatio(ws, base, inOf)} |` : '') +
        ` ${med(ws, (w) => w.p50Ms).toFixed(2)} | ${ws.reduce((a, w) => a + w.failed, 0)} | ${Math.round(med(ws, (w) => w.others) * 100)} % |`,
    );
  }
  lines.push('');
  lines.push('Per round, outbound / inbound µs per request: ' + configs.map((c) => `${c.label} ${(results.get(c.label) ?? []).map((w) => `${f1(outOf(w))}/${f1(inOf(w))}`).join(', ')}`).join('; ') + '.');
  lines.push('');
  return lines.join('\n');
}
