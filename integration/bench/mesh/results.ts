// What one measured row holds, and the figures derived from it (per process and for the path).
import type { Memory } from '../../../proxy-host/bench/support/proc.ts';
import type { LoadResult } from '../../../proxy-host/bench/support/wrk.ts';
import type { OpenLoopResult } from './hey.ts';
import type { RowSpec } from './rows.ts';
import type { MeasuredProcess, WindowCpu } from './window.ts';

export interface Measured<T> {
  result: T;
  cpu: WindowCpu;
}

export interface RowSample {
  procs: MeasuredProcess[];
  checks: string[];
  /** Before load, after the sanity requests. */
  idle: Map<number, Memory>;
  /** Right after the closed-loop window. */
  end: Map<number, Memory>;
  open: Measured<OpenLoopResult>;
  closed: Measured<LoadResult>;
}

export interface RowResult {
  spec: RowSpec;
  /** Every round's sample; `best` is the one least disturbed by other processes. */
  samples: RowSample[];
  best?: RowSample;
  error?: string;
}

/** Processes that are the path's cost: proxies, sidecars and the `wasmesh run` beside them. */
export function inPath(p: MeasuredProcess): boolean {
  return p.kind === 'sidecar' || p.kind === 'supervisor' || p.kind === 'proxy';
}

export function noise(s: RowSample): number {
  return Math.max(s.open.cpu.otherPercent ?? 0, s.closed.cpu.otherPercent ?? 0) + Math.max(s.open.cpu.stealPercent ?? 0, s.closed.cpu.stealPercent ?? 0);
}

export function pickBest(samples: RowSample[]): RowSample | undefined {
  return [...samples].sort((a, b) => noise(a) - noise(b))[0];
}

/** CPU seconds of the given processes in a window. */
export function cpuOf(m: Measured<LoadResult>, procs: readonly MeasuredProcess[]): number {
  return procs.reduce((n, p) => n + (m.cpu.byPid.get(p.pid) ?? 0), 0);
}

/** vCPU (cores) per 1000 requests per second, from the open-loop window. */
export function vcpuPer1000(s: RowSample, procs: readonly MeasuredProcess[]): number {
  return cpuOf(s.open, procs) / s.open.cpu.wallS / (s.open.result.rps / 1000);
}

/** CPU µs per request, from the closed-loop window (saturation). */
export function cpuPerRequestUs(s: RowSample, procs: readonly MeasuredProcess[]): number {
  return (cpuOf(s.closed, procs) / s.closed.result.requests) * 1e6;
}

export function pathProcs(s: RowSample): MeasuredProcess[] {
  return s.procs.filter(inPath);
}
