// What a benchmark reads from /proc: CPU time per process and for the whole machine, resident memory,
// and the process tree (to find the sidecar a `wasmesh run` started). Linux only; undefined elsewhere.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** The fields of /proc/<pid>/stat after the command name; field N of proc(5) is at index N - 3. */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system, all threads) the process has used. */
export function cpuSeconds(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / CLK_TCK : undefined;
}

/** CPU seconds in user and in kernel mode (all threads), apart: the kernel's share is the sockets' floor. */
export function cpuTimes(pid: number): { user: number; system: number } | undefined {
  const f = statFields(pid);
  return f ? { user: Number(f[11]) / CLK_TCK, system: Number(f[12]) / CLK_TCK } : undefined;
}

/**
 * CPU seconds of this process's children that have exited and been waited for (cutime + cstime).
 * Around a load generator's run it is exactly the CPU the generator used, to the last tick, when no
 * other child exits meanwhile.
 */
export function exitedChildrenCpuSeconds(): number | undefined {
  const f = statFields('self');
  return f ? (Number(f[13]) + Number(f[14])) / CLK_TCK : undefined;
}

/**
 * Process CPU seconds (user + nice + system) and steal of the whole machine, from /proc/stat. Interrupt
 * time is left out: the loopback traffic's own softirq work lands there and belongs to no process.
 */
export function machineCpu(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const [user, nice, system, , , , , steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return { busy: (user! + nice! + system!) / CLK_TCK, steal: (steal ?? 0) / CLK_TCK };
  } catch {
    return undefined;
  }
}

/** Process CPU seconds (user + nice + system) one CPU has run (its `cpuN` line of /proc/stat), any process. */
export function cpuBusy(cpu: string): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    if (line === undefined) return undefined;
    const [user, nice, system] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user! + nice! + system!) / CLK_TCK;
  } catch {
    return undefined;
  }
}

export interface Memory {
  /** Resident set now (VmRSS), bytes. */
  rss: number;
  /** Peak resident set since the process started (VmHWM), bytes. */
  hwm: number;
  /** Of rss, pages mapped from files (RssFile: mostly the node or nginx binary, shared with every process running it). */
  fileRss?: number;
  /** Proportional set size (smaps_rollup Pss): private pages, plus each shared page divided by its sharers. */
  pss?: number;
}

export function memory(pid: number): Memory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const hwm = kb('VmHWM');
    const fileRss = kb('RssFile');
    let pss = NaN;
    try {
      pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? NaN) * 1024;
    } catch {
      // smaps_rollup needs Linux 4.14 and ptrace access to the process
    }
    if (!Number.isFinite(rss)) return undefined;
    return { rss, hwm: Number.isFinite(hwm) ? hwm : rss, ...(Number.isFinite(fileRss) ? { fileRss } : {}), ...(Number.isFinite(pss) ? { pss } : {}) };
  } catch {
    return undefined;
  }
}

/** Peak resident set (VmHWM, else VmRSS) in bytes. */
export function peakRss(pid: number): number | undefined {
  return memory(pid)?.hwm;
}

/** The command line of a process, arguments joined by spaces. */
export function commandLine(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return undefined;
  }
}

/** Direct children of a process (scanning /proc: works without CONFIG_PROC_CHILDREN). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === pid) out.push(Number(name));
  }
  return out;
}

/** Every descendant of a process (children, their children, ...). */
export function descendantPids(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f) parentOf.set(Number(name), Number(f[1]));
  }
  const out: number[] = [];
  const frontier = [pid];
  while (frontier.length > 0) {
    const parent = frontier.pop()!;
    for (const [child, ppid] of parentOf) {
      if (ppid === parent) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}
