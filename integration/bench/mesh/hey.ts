// Open-loop load with hey (Debian package hey): W workers, each at Q requests per second, for N
// seconds; what issue 15 measured with (16 workers at 62.5/s = 1000 requests per second). hey does not
// correct for coordinated omission: a worker waiting on a slow answer skips its next ticks, so the
// achieved rate is reported beside the target, and a shortfall means the latencies understate.
import type { Children } from '../../../proxy-host/bench/support/children.ts';
import { pinned } from '../../../proxy-host/bench/support/cpus.ts';
import { lastLines } from '../../../proxy-host/bench/support/services.ts';
import { runChild, type LoadResult } from '../../../proxy-host/bench/support/wrk.ts';

export interface OpenLoopOptions {
  bin: string;
  url: string;
  host: string;
  seconds: number;
  workers: number;
  perWorkerQps: number;
  cpu?: string;
}

export interface OpenLoopResult extends LoadResult {
  targetRps: number;
}

export async function runHey(children: Children, o: OpenLoopOptions): Promise<OpenLoopResult> {
  // -cpus 1: Go's scheduler gets the one CPU the generator is pinned to.
  const args = ['-z', `${o.seconds}s`, '-c', String(o.workers), '-q', String(o.perWorkerQps), '-t', '5', '-host', o.host, ...(o.cpu !== undefined ? ['-cpus', '1'] : []), o.url];
  const [cmd, argv] = pinned(o.cpu, o.bin, args);
  const r = await runChild(children, cmd, argv, (o.seconds + 30) * 1000);
  const out = r.stdout;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  if (r.code !== 0 || !Number.isFinite(rps)) throw new Error(`hey failed (${r.code}): ${lastLines(r.stderr || out)}`);
  const pct = (p: number) => Number(new RegExp(`^\\s+${p}% in ([\\d.]+) secs`, 'm').exec(out)?.[1] ?? NaN) * 1000;
  const section = (title: string) => {
    const at = out.indexOf(title);
    return at < 0 ? [] : out.slice(at + title.length).split('\n\n')[0]!.split('\n').filter((l) => l.trim());
  };
  let ok = 0;
  let non2xx = 0;
  for (const line of section('Status code distribution:')) {
    const m = /\[(\d+)\]\s+(\d+) responses/.exec(line);
    if (m) (m[1]!.startsWith('2') ? (ok += Number(m[2])) : (non2xx += Number(m[2])));
  }
  let errors = 0;
  const kinds: string[] = [];
  for (const line of section('Error distribution:')) {
    const m = /\[(\d+)\]\s+(.*)$/.exec(line.trim());
    if (m) {
      errors += Number(m[1]);
      kinds.push(`${m[1]} × ${m[2]!.slice(0, 120)}`);
    }
  }
  return {
    rps,
    requests: ok + non2xx + errors,
    p50Ms: pct(50),
    p90Ms: pct(90),
    p99Ms: pct(99),
    errors,
    non2xx,
    detail: kinds.join('; '),
    loadCpuS: r.cpuS,
    wallS: r.wallS,
    targetRps: o.workers * o.perWorkerQps,
  };
}
