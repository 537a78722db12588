// A throwaway Prometheus for tests (Debian's `prometheus` package, installed by scripts/prometheus.sh):
// a free loopback port, its data in a temp dir, scraping the targets it is given every second, killed
// when the tests end. Also promtool, for `promtool check metrics`. Tests that need them skip, loudly,
// only when the binaries are absent and nothing said they must be there: .ci/run runs `bash
// scripts/prometheus.sh install` and sets WASMESH_REQUIRE_PROMETHEUS=1 (CI=true does the same), and then
// an absent binary fails the test instead.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../../scripts/prometheus.sh', import.meta.url));

function find(what: 'path' | 'promtool'): string | undefined {
  const found = spawnSync('bash', [SCRIPT, what], { encoding: 'utf8' });
  const path = found.status === 0 ? found.stdout.trim() : '';
  return path && existsSync(path) ? path : undefined;
}

/** The prometheus and promtool binaries, or why a test cannot run (throws in CI). */
export function findPrometheus(): { prometheus?: string; promtool?: string; reason?: string } {
  const prometheus = find('path');
  const promtool = find('promtool');
  if (prometheus && promtool) return { prometheus, promtool };
  const reason = `${prometheus ? 'promtool' : 'prometheus'} is not installed: run 'bash scripts/prometheus.sh install' (Debian's prometheus package)`;
  if (process.env.WASMESH_REQUIRE_PROMETHEUS === '1' || process.env.CI === 'true') throw new Error(`${reason}; CI installs it in .ci/run`);
  return { reason };
}

export function reportPrometheusSkip(suite: string, reason: string | undefined): void {
  const line = '!'.repeat(100);
  process.stderr.write(`\n${line}\n!! SKIPPING ${suite}: ${reason}\n!! CI must install it: bash scripts/prometheus.sh install\n${line}\n\n`);
}

/** `promtool check metrics` on a text exposition: the problems it reports, one per line ([] when clean). */
export function promtoolCheckMetrics(promtool: string, text: string): string[] {
  const r = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface PromResult {
  metric: Record<string, string>;
  value: [number, string];
}

export class TestPrometheus {
  #child: ChildProcess | undefined;
  #log = '';
  readonly #kill = (): void => {
    this.#child?.kill('SIGKILL');
  };

  private constructor(readonly port: number, readonly dir: string) {}

  /** Starts Prometheus scraping `targets` (host:port) at `metricsPath` every second; resolves when it is ready. */
  static async start(bin: string, targets: readonly string[], metricsPath = '/stats/prometheus'): Promise<TestPrometheus> {
    const p = new TestPrometheus(await freePort(), await mkdtemp(join(tmpdir(), 'wasmesh-prometheus-')));
    const config = [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: wasmesh-proxies',
      `    metrics_path: ${metricsPath}`,
      `    static_configs: [{ targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}] }]`,
      '',
    ].join('\n');
    await writeFile(join(p.dir, 'prometheus.yml'), config);
    const child = spawn(bin, [
      `--config.file=${join(p.dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(p.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${p.port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    p.#child = child;
    process.once('exit', p.#kill);
    const keep = (c: Buffer) => {
      if (p.#log.length < 65536) p.#log += c.toString();
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const end = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${p.#log}`);
      try {
        const r = await fetch(`http://127.0.0.1:${p.port}/-/ready`);
        if (r.ok) return p;
      } catch {
        // not listening yet
      }
      if (Date.now() > end) {
        await p.stop();
        throw new Error(`prometheus not ready within 20 s:\n${p.#log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** An instant query through the HTTP API (/api/v1/query). */
  async query(promql: string): Promise<PromResult[]> {
    const r = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await r.json()) as { status: string; error?: string; data?: { resultType: string; result: PromResult[] } };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
    return body.data!.result;
  }

  /** The scrape targets' health (up / down and the last error). */
  async targets(): Promise<{ scrapeUrl: string; health: string; lastError: string }[]> {
    const r = await fetch(`http://127.0.0.1:${this.port}/api/v1/targets`);
    const body = (await r.json()) as { data: { activeTargets: { scrapeUrl: string; health: string; lastError: string }[] } };
    return body.data.activeTargets;
  }

  get log(): string {
    return this.#log;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child && child.exitCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    process.removeListener('exit', this.#kill);
    await rm(this.dir, { recursive: true, force: true });
  }
}
