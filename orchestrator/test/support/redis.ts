// A throwaway redis-server for tests: a free loopback port, files in a temp dir, no persistence,
// killed when the tests end. It can be killed (SIGKILL, as a crash) and started again on the same port.
// Installs Debian's redis-server through scripts/redis.sh when it is missing and this is root; tests
// that need Redis skip with a loud message only when it cannot be had (CI installs it: .ci/run).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../../scripts/redis.sh', import.meta.url));

function findRedis(): string | undefined {
  const found = spawnSync('bash', [SCRIPT, 'path'], { encoding: 'utf8' });
  const path = found.status === 0 ? found.stdout.trim() : '';
  return path && existsSync(path) ? path : undefined;
}

/** The redis-server binary, installing it if possible; undefined (with the reason) if it cannot be had. */
export function ensureRedis(): { bin?: string; reason?: string } {
  let bin = findRedis();
  if (bin) return { bin };
  const install = spawnSync('bash', [SCRIPT, 'install'], { encoding: 'utf8', timeout: 300_000 });
  bin = findRedis();
  if (bin) return { bin };
  return { reason: `redis-server is not installed and could not be installed (${(install.stderr || install.stdout || '').trim().split('\n').pop()})` };
}

/** Prints why a suite that needs Redis is skipped, so nobody mistakes the skip for a pass. */
export function reportRedisSkip(suite: string, reason: string | undefined): void {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!! SKIPPING ${suite}: ${reason}\n!! CI must install redis: bash scripts/redis.sh install\n${line}\n\n`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('data', (d) => done(String(d).startsWith('+PONG')));
    s.on('error', () => done(false));
    s.write('PING\r\n');
  });
}

export class TestRedis {
  readonly bin: string;
  readonly port: number;
  readonly dir: string;
  #child: ChildProcess | undefined;
  #kill = (): void => {
    if (this.running) this.#child!.kill('SIGKILL');
  };

  private constructor(bin: string, port: number, dir: string) {
    this.bin = bin;
    this.port = port;
    this.dir = dir;
  }

  static async start(bin: string): Promise<TestRedis> {
    const r = new TestRedis(bin, await freePort(), await mkdtemp(join(tmpdir(), 'wasmesh-redis-')));
    process.once('exit', r.#kill);
    await r.restart();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    // A process killed by a signal has signalCode set and exitCode null.
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Starts redis-server (again) on the same port and waits until it answers PING (at most 10 s). */
  async restart(): Promise<void> {
    if (this.running) return;
    const child = spawn(
      this.bin,
      ['--bind', '127.0.0.1', '--port', String(this.port), '--protected-mode', 'yes', '--dir', this.dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    const collect = (d: Buffer): void => {
      if (log.length < 20_000) log += d.toString();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    this.#child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited during startup:\n${log}`);
      if (await ping(this.port)) return;
      if (Date.now() > deadline) {
        this.#kill();
        throw new Error(`redis-server did not answer PING within 10s:\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL, as a crash; resolves once the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    process.removeListener('exit', this.#kill);
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}
