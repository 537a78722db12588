// CPU pinning for benchmarks on a small machine: the load generator (and what sits with it) on one
// CPU, the processes under test on another, with taskset. Undefined when taskset is missing or this
// process may use fewer than two CPUs: callers say so in their output.
import { spawnSync } from 'node:child_process';
import { which } from './tools.ts';

export interface CpuPlan {
  /** The load generator's CPU (and the app's, the upstream's). */
  load: string;
  /** The CPU of the processes under test (proxies). */
  target: string;
}

function choose(): CpuPlan | undefined {
  if (process.platform !== 'linux' || !which('taskset')) return undefined;
  const r = spawnSync('taskset', ['-cp', String(process.pid)], { encoding: 'utf8' });
  const list = /:\s*([\d,\-]+)\s*$/.exec(r.stdout ?? '')?.[1];
  if (!list) return undefined;
  const cpus: number[] = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a!; c <= (b ?? a!); c++) cpus.push(c);
  }
  return cpus.length >= 2 ? { load: String(cpus[0]), target: String(cpus[1]) } : undefined;
}

export const CPUS: CpuPlan | undefined = choose();

/** The command line that runs `cmd args` on `cpu` (unchanged without a plan or a cpu). */
export function pinned(cpu: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  return CPUS && cpu !== undefined ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, [...args]];
}

/** Moves a running process (all its threads) to `cpu`. */
export function repin(pid: number, cpu: string | undefined): void {
  if (CPUS && cpu !== undefined) spawnSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' });
}
