// One measured window of the telemetry-path benchmark: wrk through a pair, and the CPU each sidecar
// used per request from /proc (checked, with telemetry, against the inbound sidecar's own count of
// the requests); or the same window with both sidecars under the V8 profiler.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Children } from '../support/children.ts';
import { CPUS } from '../support/cpus.ts';
import { cpuBusy, cpuTimes } from '../support/proc.ts';
import { httpGet } from '../support/services.ts';
import { load, type Load, type Pair } from './pair.ts';

export interface CpuSplit {
  user: number;
  system: number;
}

export interface Window {
  /** Share of the sidecars' CPU that other processes (anyone's, the idle pairs included) used during the window. */
  others: number;
  requests: number;
  rps: number;
  p50Ms: number;
  failed: number;
  /** µs of CPU per request. */
  outbound: CpuSplit;
  inbound: CpuSplit;
}

export const total = (t: CpuSplit): number => t.user + t.system;

/** CPU seconds the sidecars' CPU ran (any process), and what this pair's sidecars used. */
function cpuReading(pair: Pair): { cpu: number; pair: number; out: CpuSplit; in: CpuSplit } {
  const out = cpuTimes(pair.client.pid);
  const inn = cpuTimes(pair.server.pid);
  if (!out || !inn) throw new Error('no /proc: this benchmark needs Linux');
  const cpu = CPUS ? cpuBusy(CPUS.target) ?? 0 : 0;
  return { cpu, pair: total(out) + total(inn), out, in: inn };
}

/** Sum of istio_requests_total samples of one reporter and security policy in a sidecar's Prometheus text. */
async function istioRequests(adminPort: number, reporter: string, policy: string): Promise<{ sum: number; text: string }> {
  const text = (await httpGet(adminPort, '/stats/prometheus', `127.0.0.1:${adminPort}`)).body;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('istio_requests_total{') && line.includes(`reporter="${reporter}"`) && line.includes(`connection_security_policy="${policy}"`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { sum, text };
}

/**
 * One measured window: wrk through the pair, CPU per request of each sidecar from /proc. With
 * telemetry, the inbound sidecar must have counted every request wrk completed (with the expected
 * connection_security_policy), or the window measured something else.
 */
export async function measure(children: Children, pair: Pair, l: Load): Promise<Window> {
  const c = pair.config;
  const policy = c.security === 'plain' ? 'none' : 'mutual_tls';
  const counted0 = c.filters === 'telemetry' ? (await istioRequests(pair.server.adminPort, 'destination', policy)).sum : 0;
  const a = cpuReading(pair);
  const r = await load(children, pair, l);
  const b = cpuReading(pair);
  const n = r.requests;
  const per = (x: CpuSplit, y: CpuSplit): CpuSplit => ({ user: ((y.user - x.user) * 1e6) / n, system: ((y.system - x.system) * 1e6) / n });
  if (c.filters === 'telemetry') {
    const after = await istioRequests(pair.server.adminPort, 'destination', policy);
    if (after.sum - counted0 < n) {
      const seen = after.text.split('\n').filter((line) => line.startsWith('istio_requests_total')).join('\n') || '(no istio_requests_total)';
      throw new Error(`${c.label}: wrk completed ${n} requests but the inbound telemetry counted ${after.sum - counted0} with connection_security_policy="${policy}"; it has:\n${seen}`);
    }
  }
  return {
    others: CPUS ? Math.max(0, b.cpu - a.cpu - (b.pair - a.pair)) / r.wallS : 0,
    requests: n,
    rps: r.rps,
    p50Ms: r.p50Ms,
    failed: r.errors + r.non2xx,
    outbound: per(a.out, b.out),
    inbound: per(a.in, b.in),
  };
}

/** A window with both sidecars under the V8 profiler: <dir>/<label>-<side>.cpuprofile, and the window's requests in <label>.json. */
export async function profileWindow(children: Children, pair: Pair, l: Load, dir: string): Promise<string> {
  const name = pair.config.label.replace('@', '-');
  const files = { outbound: path.join(dir, `${name}-outbound.cpuprofile`), inbound: path.join(dir, `${name}-inbound.cpuprofile`) };
  pair.client.send('profile-start');
  pair.server.send('profile-start');
  await new Promise((r) => setTimeout(r, 300));
  const a = cpuReading(pair);
  const r = await load(children, pair, l);
  const b = cpuReading(pair);
  const written = [pair.client.waitForLine(`BENCH_PROFILED ${files.outbound}`, 30_000), pair.server.waitForLine(`BENCH_PROFILED ${files.inbound}`, 30_000)];
  pair.client.send(`profile-stop ${files.outbound}`);
  pair.server.send(`profile-stop ${files.inbound}`);
  await Promise.all(written);
  // Beside the profiles: the window's requests, so profiles of different configurations compare per request.
  const us = (x: CpuSplit, y: CpuSplit) => ((total(y) - total(x)) * 1e6) / r.requests;
  const facts = { requests: r.requests, rps: r.rps, outboundUsPerRequest: us(a.out, b.out), inboundUsPerRequest: us(a.in, b.in) };
  writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(facts));
  return `${files.outbound}, ${files.inbound} (${r.requests} requests; under the profiler outbound ${facts.outboundUsPerRequest.toFixed(1)} µs, inbound ${facts.inboundUsPerRequest.toFixed(1)} µs per request)`;
}
