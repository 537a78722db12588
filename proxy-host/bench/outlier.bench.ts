// npm run bench:outlier: throughput, p99 and the error rate clients see through the wasmesh sidecar when
// one of three endpoints fails half its requests (503 at random), with and without outlier detection.
// A benchmark, not a test: it prints a table and writes it into bench/RESULTS.md (its own section;
// every other section of the file is kept).
//
// Processes: the three upstreams in one child, the proxy in another, autocannon in a third; this file
// is all of them (`upstreams` and `proxy` modes below). Environment: BENCH_DURATION (s per window,
// default 10), BENCH_WARMUP (s, default 2), BENCH_ROUNDS (alternating rounds per mode, default 2),
// BENCH_CONNECTIONS (default 32).
import { AUTOCANNON_VERSION, TASKSET, runAutocannon, type Load } from './load.ts';
import { writeResultsSection } from '../../scripts/bench-results.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const ROOT = path.resolve(path.dirname(SELF), '../..');
const RESULTS = path.join(ROOT, 'bench/RESULTS.md');
const SECTION = '## Outlier detection (npm run bench:outlier)';
const CLUSTER = 'outbound|80||bench';

/** Outlier detection used in the "with" runs: Istio's defaults except shorter interval and ejection. */
const OUTLIER = { consecutive5xxErrors: 5, consecutiveGatewayErrors: 0, intervalMs: 1000, baseEjectionTimeMs: 3000, maxEjectionPercent: 10, minHealthPercent: 0 };

function num(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}

// ---- child modes ------------------------------------------------------------------------------


/** Three upstreams; the first answers 503 to a random half of its requests. Counts on GET /__counts. */
async function runUpstreams(): Promise<void> {
  // @ts-expect-error plain ESM helper without types
  const { announceReady, exitWith } = await import('./child-lifecycle.mjs');
  const body = Buffer.from('{"ok":true,"pad":"' + 'x'.repeat(80) + '"}\n');
  const counts = [0, 0, 0];
  const failures = [0, 0, 0];
  const servers = [0, 1, 2].map((i) =>
    http.createServer((req, res) => {
      if (req.url === '/__counts') {
        res.end(JSON.stringify({ counts, failures }));
        return;
      }
      counts[i]!++;
      if (i === 0 && Math.random() < 0.5) {
        failures[i]!++;
        res.writeHead(503, { 'content-length': '0' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) });
      res.end(body);
    }),
  );
  const ports: number[] = [];
  for (const s of servers) {
    s.keepAliveTimeout = 65_000;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    ports.push((s.address() as { port: number }).port);
  }
  announceReady({ ports });
  exitWith(() => Promise.all(servers.map((s) => new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); }))));
}

async function runProxy(ports: number[], withOutlier: boolean): Promise<void> {
  // @ts-expect-error plain ESM helper without types
  const { announceReady, exitWith } = await import('./child-lifecycle.mjs');
  const { Proxy } = await import('../src/proxy.ts');
  const { cluster, forward, proxyConfig } = await import('../test/support/config.ts');
  const base = cluster(CLUSTER, ports.map((port) => ({ port })), { host: 'bench', loadBalancer: { simple: 'ROUND_ROBIN' } });
  const config = proxyConfig({
    clusters: [withOutlier ? { ...base, outlierDetection: OUTLIER } : base],
    virtualHosts: [{ name: 'bench', domains: ['bench'], routes: [forward('bench/default', CLUSTER)] }],
  });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off' }, config);
  announceReady({ port: proxy.outboundPort, adminPort: proxy.adminPort });
  exitWith(() => proxy.stop(200));
}

// ---- the bench --------------------------------------------------------------------------------

interface Ready {
  port?: number;
  ports?: number[];
  adminPort?: number;
}

const children = new Set<ChildProcess>();


/** Starts `node [--import tsx] SELF args`, pinned to `cpu` when taskset exists; resolves on BENCH_READY. */
function startChild(args: string[], cpu: number, tsx: boolean): Promise<{ cp: ChildProcess; ready: Ready }> {
  const nodeArgs = [...(tsx ? ['--import', 'tsx'] : []), ...args];
  const cp = TASKSET
    ? spawn(TASKSET, ['-c', String(cpu), process.execPath, ...nodeArgs], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(process.execPath, nodeArgs, { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`child ${args.join(' ')} not ready after 30 s`)), 30_000);
    cp.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /BENCH_READY (\{.*\})/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ cp, ready: JSON.parse(m[1]!) as Ready });
      }
    });
    cp.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child ${args.join(' ')} exited (${code}) before it was ready`));
    });
  });
}

async function stopChild(cp: ChildProcess): Promise<void> {
  if (cp.exitCode !== null || cp.signalCode !== null) return;
  const exited = new Promise<void>((r) => cp.once('exit', () => r()));
  cp.kill('SIGTERM');
  const t = setTimeout(() => cp.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

function get(port: number, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        let s = '';
        res.on('data', (c) => (s += c));
        res.on('end', () => resolve(s));
      })
      .on('error', reject);
  });
}

const autocannon = (port: number, seconds: number, connections: number): Promise<Load> => runAutocannon(port, seconds, connections, children);

interface Row extends Load {
  mode: 'without' | 'with';
  toFailing: number;
  ejections: number;
}

async function measure(ports: number[], upstreamAdmin: number, withOutlier: boolean, warmup: number, duration: number, connections: number): Promise<Row> {
  const { cp, ready } = await startChild([SELF, 'proxy', ports.join(','), withOutlier ? 'outlier' : 'none'], 1, true);
  try {
    await autocannon(ready.port!, warmup, connections);
    const before = JSON.parse(await get(upstreamAdmin, '/__counts')) as { counts: number[] };
    const load = await autocannon(ready.port!, duration, connections);
    const after = JSON.parse(await get(upstreamAdmin, '/__counts')) as { counts: number[] };
    const sent = after.counts.map((c, i) => c - before.counts[i]!);
    const metrics = await get(ready.adminPort!, '/stats/prometheus');
    const ejections = Number(/wasmesh_proxy_outlier_ejections_total\{[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
    const total = sent.reduce((a, b) => a + b, 0);
    return { mode: withOutlier ? 'with' : 'without', ...load, toFailing: total > 0 ? sent[0]! / total : 0, ejections };
  } finally {
    await stopChild(cp);
  }
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const pct = (n: number) => `${(n * 100).toFixed(2)}%`;

function mean(rows: Row[], key: keyof Load | 'toFailing' | 'ejections'): number {
  return rows.reduce((a, r) => a + (r[key] as number), 0) / rows.length;
}

async function main(): Promise<void> {
  const duration = Math.round(num(process.env.BENCH_DURATION, 10));
  const warmup = Math.round(num(process.env.BENCH_WARMUP, 2));
  const rounds = Math.round(num(process.env.BENCH_ROUNDS, 2));
  const connections = Math.round(num(process.env.BENCH_CONNECTIONS, 32));
  const cleanup = () => {
    for (const cp of children) cp.kill('SIGKILL');
  };
  process.once('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  const started = Date.now();
  const { cp: upstreams, ready } = await startChild([SELF, 'upstreams'], 0, true);
  const ports = ready.ports!;
  const rows: Row[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const withOutlier of r % 2 === 0 ? [false, true] : [true, false]) {
        const row = await measure(ports, ports[0]!, withOutlier, warmup, duration, connections);
        rows.push(row);
        process.stdout.write(
          `round ${r + 1} ${row.mode.padEnd(7)} outlier detection: ${fmt(row.rps)} req/s, p50 ${row.p50} ms, p99 ${row.p99} ms, ` +
            `client errors ${pct(row.non2xx / Math.max(1, row.total))}, to failing endpoint ${pct(row.toFailing)}, ejections ${row.ejections}\n`,
        );
      }
    }
  } finally {
    await stopChild(upstreams);
    cleanup();
  }

  const cpus = os.cpus();
  const lines: string[] = [];
  lines.push(SECTION, '');
  lines.push(`Written by \`npm run bench:outlier\` (proxy-host/bench/outlier.bench.ts) on ${new Date().toISOString()}.`);
  lines.push(`Machine: ${cpus[0]?.model.trim() ?? '?'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node.js ${process.version}, ${os.platform()} ${os.release()}. Shared and noisy: compare the two modes, measured alternately in the same run.`);
  lines.push(
    `Three node:http upstreams (one process) behind one wasmesh sidecar (its own process), ROUND_ROBIN; upstream 1 answers 503 to a random half of its requests, the others always 200. ` +
      `Load: autocannon ${AUTOCANNON_VERSION} (\`-c ${connections}\`, \`GET /\`, \`Host: bench\`), ${warmup} s warm-up then ${duration} s measured per window, ${rounds} round(s) per mode, modes alternating; no retries configured. ` +
      (TASKSET ? 'Pinning: `taskset`, load generator and upstreams on CPU 0, the proxy on CPU 1. ' : '') +
      `Whole run ${Math.round((Date.now() - started) / 1000)} s.`,
  );
  lines.push(
    `Outlier detection in the "with" runs: consecutive5xxErrors ${OUTLIER.consecutive5xxErrors}, interval ${OUTLIER.intervalMs / 1000}s, baseEjectionTime ${OUTLIER.baseEjectionTimeMs / 1000}s, maxEjectionPercent ${OUTLIER.maxEjectionPercent} (with 3 endpoints: one may be ejected), minHealthPercent ${OUTLIER.minHealthPercent}.`,
  );
  lines.push('');
  lines.push('| outlier detection | req/s | p50 | p99 | client-visible 503s | share of requests sent to the failing endpoint | ejections per window |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const m of ['without', 'with'] as const) {
    const rs = rows.filter((r) => r.mode === m);
    const errRate = rs.reduce((a, r) => a + r.non2xx, 0) / Math.max(1, rs.reduce((a, r) => a + r.total, 0));
    lines.push(
      `| ${m} | ${fmt(mean(rs, 'rps'))} | ${fmt(mean(rs, 'p50'), 1)} ms | ${fmt(mean(rs, 'p99'), 1)} ms | ${pct(errRate)} | ${pct(mean(rs, 'toFailing'))} | ${fmt(mean(rs, 'ejections'), 1)} |`,
    );
  }
  lines.push('');
  lines.push('Each window: ' + rows.map((r) => `${r.mode} ${fmt(r.rps)} req/s, p99 ${r.p99} ms, 503s ${pct(r.non2xx / Math.max(1, r.total))}, ejections ${r.ejections}`).join('; ') + '.');
  lines.push('');
  const section = lines.join('\n');
  process.stdout.write(`\n${section}\n`);

  await writeResultsSection(section);
  process.stdout.write(`written to ${path.relative(ROOT, RESULTS)}\n`);
}

// Dispatch last, once every module-level constant above is initialised.
const mode = process.argv[2];
if (mode === 'upstreams') await runUpstreams();
else if (mode === 'proxy') await runProxy(process.argv[3]!.split(',').map(Number), process.argv[4] === 'outlier');
else await main();
