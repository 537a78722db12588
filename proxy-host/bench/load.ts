// Shared by the proxy benchmarks: CPU pinning and an autocannon run in its own process, pinned to CPU 0
// when taskset exists (the target runs on CPU 1).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

export const TASKSET = process.platform === 'linux' && os.cpus().length >= 2 ? which('taskset') : undefined;

export interface Load {
  rps: number;
  p50: number;
  p99: number;
  total: number;
  non2xx: number;
  errors: number;
}

const require = createRequire(import.meta.url);
const AUTOCANNON = path.join(path.dirname(require.resolve('autocannon/package.json')), 'autocannon.js');
export const AUTOCANNON_VERSION = (require('autocannon/package.json') as { version: string }).version;

/** `seconds` of load with `Host: bench` on `port`; the child is tracked in `children` so the caller can kill it. */
export function runAutocannon(port: number, seconds: number, connections: number, children: Set<ChildProcess>): Promise<Load> {
  const args = [AUTOCANNON, '-c', String(connections), '-d', String(seconds), '-H', 'host=bench', '--json', `http://127.0.0.1:${port}/`];
  const cp = TASKSET ? spawn(TASKSET, ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(cp);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    cp.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    cp.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    cp.once('exit', (code) => {
      children.delete(cp);
      try {
        const r = JSON.parse(out) as { requests: { average: number; total: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number };
        resolve({ rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, total: r.requests.total, non2xx: r.non2xx, errors: r.errors });
      } catch {
        reject(new Error(`autocannon failed (${code}): ${err.slice(-400)}`));
      }
    });
  });
}
