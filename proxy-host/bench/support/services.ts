// Starting benchmark processes and talking to them: a child that announces `BENCH_READY {"port":N}`,
// waiting for a port, free ports, the tail of a child's output for error messages, one GET.
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { pinned } from './cpus.ts';
import type { Children } from './children.ts';

export interface Service {
  name: string;
  cp: ChildProcess;
  pid: number;
  port: number;
  output(): string;
}

/** Keeps the last few KB of a child's stdout+stderr (for error messages); calls onLine per line. */
export function capture(cp: ChildProcess, onLine?: (line: string) => void): () => string {
  let tail = '';
  let partial = '';
  const add = (chunk: Buffer) => {
    const s = chunk.toString();
    tail = (tail + s).slice(-4000);
    if (onLine) {
      partial += s;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        onLine(partial.slice(0, i));
        partial = partial.slice(i + 1);
      }
      if (partial.length > 8000) partial = '';
    }
  };
  cp.stdout?.on('data', add);
  cp.stderr?.on('data', add);
  return () => tail.trim();
}

export function lastLines(text: string, n = 3): string {
  return text.split('\n').filter(Boolean).slice(-n).join(' | ');
}

export interface NodeServiceOptions {
  cwd: string;
  /** The CPU to pin it to (taskset), if any. */
  cpu?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Starts `node args` (tracked in `children`) and waits for its `BENCH_READY {"port":N}` line. */
export function startNodeService(children: Children, name: string, args: string[], opts: NodeServiceOptions): Promise<Service> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const [cmd, argv] = pinned(opts.cpu, process.execPath, args);
  // stdin is a pipe: the child exits when it closes, so even a killed benchmark leaves none behind.
  const cp = children.spawn(cmd, argv, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ? { ...process.env, ...opts.env } : process.env });
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error, svc?: Service) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        void children.stop(cp, 500);
        reject(err);
      } else resolve(svc!);
    };
    const output = capture(cp, (line) => {
      const m = /^BENCH_READY (.*)$/.exec(line);
      if (m) finish(undefined, { name, cp, pid: cp.pid!, port: JSON.parse(m[1]!).port, output });
    });
    const timer = setTimeout(() => finish(new Error(`${name} did not start in ${timeoutMs / 1000} s: ${lastLines(output())}`)), timeoutMs);
    cp.once('error', (err) => finish(err));
    cp.once('exit', (code, signal) => finish(new Error(`${name} exited (${signal ?? code}) before it was ready: ${lastLines(output())}`)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function waitForPort(port: number, cp: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (cp.exitCode !== null || cp.signalCode !== null) return reject(new Error(`exited (${cp.signalCode ?? cp.exitCode}): ${lastLines(output())}`));
      const sock = net.connect(port, '127.0.0.1');
      sock.once('connect', () => {
        sock.destroy();
        resolve();
      });
      sock.once('error', () => {
        sock.destroy();
        if (Date.now() > deadline) reject(new Error(`not listening on ${port} after ${timeoutMs / 1000} s: ${lastLines(output())}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

/** One GET on 127.0.0.1:port with a Host header, on a fresh connection. */
export function httpGet(port: number, urlPath: string, host: string, timeoutMs = 5000): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${urlPath} on port ${port} timed out after ${timeoutMs} ms`)));
  });
}
