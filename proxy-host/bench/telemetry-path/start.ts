// Starts one process of the telemetry-path benchmark (processes.ts) pinned to a CPU, waits for its
// `BENCH_READY` line, and keeps a line channel to it: commands on its stdin, answers awaited on its
// stdout (the profiler's `BENCH_PROFILED <file>`).
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Children } from '../support/children.ts';
import { pinned } from '../support/cpus.ts';
import { capture, lastLines } from '../support/services.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '../../..');
const PROCESSES = path.join(HERE, 'processes.ts');

export interface BenchProcess {
  cp: ChildProcess;
  pid: number;
  port: number;
  adminPort: number;
  /** Writes one command line to the process. */
  send(line: string): void;
  /** Resolves when the process prints exactly `line`; rejects after `timeoutMs`. */
  waitForLine(line: string, timeoutMs: number): Promise<void>;
}

export function startBenchProcess(children: Children, name: string, args: string[], cpu: string | undefined): Promise<BenchProcess> {
  // --enable-source-maps: profiles name the TypeScript sources (tsx gives every module an inline map).
  const [cmd, argv] = pinned(cpu, process.execPath, ['--enable-source-maps', '--import', 'tsx', PROCESSES, ...args]);
  const cp = children.spawn(cmd, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const waiters = new Map<string, () => void>();
  let ready: ((info: { port: number; adminPort?: number }) => void) | undefined;
  const output = capture(cp, (line) => {
    const m = /^BENCH_READY (.*)$/.exec(line);
    if (m) ready?.(JSON.parse(m[1]!));
    waiters.get(line)?.();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not start in 60 s: ${lastLines(output())}`)), 60_000);
    const onExit = (code: number | null, signal: string | null) => fail(new Error(`${name} exited (${signal ?? code}) before it was ready: ${lastLines(output())}`));
    const fail = (err: Error) => {
      clearTimeout(timer);
      cp.off('exit', onExit);
      void children.stop(cp, 500);
      reject(err);
    };
    cp.once('exit', onExit);
    ready = (info) => {
      clearTimeout(timer);
      cp.off('exit', onExit);
      resolve({
        cp,
        pid: cp.pid!,
        port: info.port,
        adminPort: info.adminPort ?? 0,
        send: (line) => void cp.stdin!.write(`${line}\n`),
        waitForLine: (line, timeoutMs) =>
          new Promise<void>((res, rej) => {
            const t = setTimeout(() => {
              waiters.delete(line);
              rej(new Error(`${name}: no "${line}" within ${timeoutMs / 1000} s: ${lastLines(output())}`));
            }, timeoutMs);
            waiters.set(line, () => {
              clearTimeout(t);
              waiters.delete(line);
              res();
            });
          }),
      });
    };
  });
}
