// One measured window: the CPU each process of a row used while a load generator ran, and the noise
// check (CPU used meanwhile by processes this benchmark did not start, and hypervisor steal), from
// /proc. The benchmark's own process tree is "ours": everything else busy on the machine is noise.
import { cpuSeconds, descendantPids, machineCpu } from '../../../proxy-host/bench/support/proc.ts';
import type { LoadResult } from '../../../proxy-host/bench/support/wrk.ts';

export interface MeasuredProcess {
  /** What it is, as shown in the tables ("outbound sidecar (bench-client)", "nginx server side", ...). */
  role: string;
  pid: number;
  kind: 'sidecar' | 'supervisor' | 'proxy' | 'app' | 'orchestrator';
}

export interface WindowCpu {
  wallS: number;
  /** CPU seconds per pid of the row's processes over the window. */
  byPid: Map<number, number>;
  /** The load generator's CPU seconds. */
  loadCpuS?: number;
  /** CPU of processes outside this benchmark (100 = one core), and hypervisor steal. */
  otherPercent?: number;
  stealPercent?: number;
}

function treeCpu(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const s = cpuSeconds(pid);
    if (s !== undefined) out.set(pid, s);
  }
  return out;
}

export async function measureWindow<T extends LoadResult>(procs: readonly MeasuredProcess[], run: () => Promise<T>): Promise<{ result: T; cpu: WindowCpu }> {
  const ours0 = treeCpu(descendantPids(process.pid));
  const row0 = treeCpu(procs.map((p) => p.pid));
  const self0 = process.cpuUsage();
  const m0 = machineCpu();
  const t0 = process.hrtime.bigint();
  const result = await run();
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const m1 = machineCpu();
  const self = process.cpuUsage(self0);
  const row1 = treeCpu(procs.map((p) => p.pid));
  const ours1 = treeCpu([...ours0.keys()]);
  const byPid = new Map<number, number>();
  for (const [pid, s] of row1) if (row0.has(pid)) byPid.set(pid, s - row0.get(pid)!);
  let oursS = (self.user + self.system) / 1e6 + (result.loadCpuS ?? 0);
  for (const [pid, s] of ours1) oursS += s - (ours0.get(pid) ?? s);
  const cpu: WindowCpu = { wallS, byPid, loadCpuS: result.loadCpuS };
  if (m0 && m1) {
    cpu.otherPercent = Math.max(0, ((m1.busy - m0.busy - oursS) / wallS) * 100);
    cpu.stealPercent = ((m1.steal - m0.steal) / wallS) * 100;
  }
  return { result, cpu };
}
