// Closed-loop load with wrk (`-t1 -cN --latency`): requests per second and latency percentiles, and
// the CPU the generator itself used (from this process's exited-children CPU time, exact to the tick).
import { spawn } from 'node:child_process';
import { pinned } from './cpus.ts';
import type { Children } from './children.ts';
import { exitedChildrenCpuSeconds } from './proc.ts';
import { lastLines } from './services.ts';

export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** CPU seconds the child used (undefined without /proc). */
  cpuS?: number;
  wallS: number;
}

/** Runs a child to its end (SIGKILL after `limitMs`), with the CPU it used. */
export function runChild(children: Children, cmd: string, args: string[], limitMs: number, cwd?: string): Promise<ChildRun> {
  const t0 = process.hrtime.bigint();
  const cpu0 = exitedChildrenCpuSeconds();
  const cp = children.track(spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  cp.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  cp.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const timer = setTimeout(() => cp.kill('SIGKILL'), limitMs);
  return new Promise((resolve, reject) => {
    cp.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    cp.once('close', (code) => {
      clearTimeout(timer);
      const cpu1 = exitedChildrenCpuSeconds();
      resolve({ code, stdout, stderr, cpuS: cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : undefined, wallS: Number(process.hrtime.bigint() - t0) / 1e9 });
    });
  });
}

export interface LoadResult {
  rps: number;
  requests: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Socket errors (connect, read, write, timeout). */
  errors: number;
  non2xx: number;
  detail: string;
  /** CPU seconds the load generator used, and its wall time. */
  loadCpuS?: number;
  wallS: number;
}

/** "1.23ms" -> 1.23 (wrk's units: us, ms, s, m). */
export function wrkMs(value: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(value.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

export interface WrkOptions {
  bin: string;
  url: string;
  host: string;
  seconds: number;
  connections: number;
  cpu?: string;
}

export async function runWrk(children: Children, o: WrkOptions): Promise<LoadResult> {
  const [cmd, args] = pinned(o.cpu, o.bin, ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency', '--timeout', '5s', '-H', `Host: ${o.host}`, o.url]);
  const r = await runChild(children, cmd, args, (o.seconds + 20) * 1000);
  const out = r.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  if (r.code !== 0 || !Number.isFinite(rps)) throw new Error(`wrk failed (${r.code}): ${lastLines(r.stderr || out)}`);
  const pct = (p: string) => wrkMs(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const detail = sock ? `socket errors: connect ${sock[1]}, read ${sock[2]}, write ${sock[3]}, timeout ${sock[4]}` : '';
  return { rps, requests, p50Ms: pct('50'), p90Ms: pct('90'), p99Ms: pct('99'), errors, non2xx, detail, loadCpuS: r.cpuS, wallS: r.wallS };
}
