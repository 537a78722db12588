// What exporting telemetry costs a sidecar (issue 18): CPU per request of each sidecar of a pair
// (client -> outbound sidecar -> inbound sidecar -> app, plaintext, the built-in telemetry filter on
// both), with no backend, with spans sampled at 1 % and 100 % to an OTLP/gRPC collector, at 100 % over
// OTLP/HTTP protobuf, with every access-log record sent as OTLP logs (envoyOtelAls), and with spans and
// logs at 100 % to a collector that is down (nothing listens): there, the sidecars' memory after the
// windows says whether the bounded queues hold. A benchmark, not a test: it prints a table and writes
// its own section of bench/RESULTS.md.
//
//   node --import tsx proxy-host/bench/telemetry-export.bench.ts       (npm run bench:telemetry-export)
//   BENCH_QUICK=1 ...   one short round, nothing written: proves it runs
//
// It reuses the telemetry-path benchmark's parts (telemetry-path/: the pair, the windows, the CPU
// pinning and the rounds that compare configurations seconds apart); the configurations here add a
// ProxyConfig.telemetry section to its `plain-telemetry` pair. The collector runs in this process (not
// on the sidecars' CPU): a grpc-js server for TraceService/Export and LogsService/Export and an HTTP
// server for /v1/traces, which count bytes and calls and do not decode (decoding is the receiver's
// cost, not the sidecar's).
//
// Environment: BENCH_ROUNDS (default 5), BENCH_DURATION (s per window, 5), BENCH_WARMUP (s per pair, 6),
// BENCH_CONNECTIONS (16), BENCH_BODY (bytes, 1024), BENCH_CONFIGS (comma list of the names below,
// default all), BENCH_NO_RESULTS=1 prints without writing bench/RESULTS.md.
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProxyTelemetryConfig, SideTelemetry, TracingProviderConfig } from '../../mesh/src/telemetry/proxy-telemetry.ts';
import { RESULTS_FILE, writeResultsSection } from '../../scripts/bench-results.ts';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { createTestCa } from '../test/support/test-ca.ts';
import { Children } from './support/children.ts';
import { CPUS } from './support/cpus.ts';
import { memory } from './support/proc.ts';
import { freePort, httpGet } from './support/services.ts';
import { ensureTools, wrkVersion } from './support/tools.ts';
import { NOOP_WAT, type BenchConfig } from './telemetry-path/configs.ts';
import { measure, total, type Window } from './telemetry-path/measure.ts';
import { load, startPair, stopPair, type Pair, type PairFiles } from './telemetry-path/pair.ts';
import { startBenchProcess } from './telemetry-path/start.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SECTION = '## Telemetry export (proxy-host/bench/telemetry-export.bench.ts)';
const QUICK = process.env.BENCH_QUICK === '1';

function num(name: string, fallback: number): number {
  const v = process.env[name];
  const n = Number(v);
  return v !== undefined && v !== '' && Number.isFinite(n) && n > 0 ? n : fallback;
}
const commitOf = (root: string) => spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || '?';
const f1 = (n: number) => n.toFixed(1);
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A collector in this process: counts calls and bytes per service, answers OK (an empty response). */
interface Collector {
  grpcPort: number;
  httpPort: number;
  calls: Record<'traces' | 'logs' | 'http', number>;
  bytes: number;
  close(): Promise<void>;
}

async function startCollector(): Promise<Collector> {
  const c = { grpcPort: 0, httpPort: 0, calls: { traces: 0, logs: 0, http: 0 }, bytes: 0 } as Collector;
  const raw = (b: Buffer) => b;
  const method = (p: string) => ({ path: p, requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw });
  const server = new grpc.Server();
  const count = (kind: 'traces' | 'logs') => (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    c.calls[kind]++;
    c.bytes += call.request.length;
    cb(null, Buffer.alloc(0));
  };
  server.addService({ Export: method('/opentelemetry.proto.collector.trace.v1.TraceService/Export') } as unknown as grpc.ServiceDefinition, { Export: count('traces') });
  server.addService({ Export: method('/opentelemetry.proto.collector.logs.v1.LogsService/Export') } as unknown as grpc.ServiceDefinition, { Export: count('logs') });
  c.grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const http: Server = createServer((req, res) => {
    let n = 0;
    req.on('data', (b: Buffer) => (n += b.length));
    req.on('end', () => {
      c.calls.http++;
      c.bytes += n;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  c.httpPort = (http.address() as { port: number }).port;
  c.close = async () => {
    await new Promise<void>((r) => server.tryShutdown(() => r()));
    http.closeAllConnections();
    await new Promise<void>((r) => http.close(() => r()));
  };
  return c;
}

const NAMES = ['telemetry', 'trace1', 'trace100', 'trace100-http', 'als', 'dead100'] as const;
type Name = (typeof NAMES)[number];

const DESCRIPTIONS: Record<Name, string> = {
  telemetry: 'the telemetry filter, no backend (the reference)',
  trace1: 'spans, randomSamplingPercentage 1, OTLP/gRPC',
  trace100: 'spans, 100 %, OTLP/gRPC',
  'trace100-http': 'spans, 100 %, OTLP/HTTP protobuf',
  als: 'every access-log record as OTLP logs over gRPC (envoyOtelAls, Istio labels)',
  dead100: 'spans 100 % and access logs to a collector that is down',
};

function telemetryFor(name: Name, collector: Collector, deadPort: number): ProxyTelemetryConfig | undefined {
  if (name === 'telemetry') return undefined;
  const port = name === 'dead100' ? deadPort : collector.grpcPort;
  const provider = (protocol: 'otlp-grpc' | 'otlp-http-protobuf'): TracingProviderConfig => ({
    name: 'otel',
    kind: 'opentelemetry',
    protocol,
    host: '127.0.0.1',
    port: protocol === 'otlp-grpc' ? port : collector.httpPort,
    path: '/v1/traces',
    timeoutMs: 5000,
    headers: [],
    maxTagLength: 256,
  });
  const tracing = (p: number, protocol: 'otlp-grpc' | 'otlp-http-protobuf') => ({ samplingPercentage: p, providers: [provider(protocol)], customTags: {}, meshId: 'cluster.local' });
  const als = {
    provider: 'als',
    path: '',
    otel: { host: '127.0.0.1', port, logName: 'otel_envoy_accesslog', timeoutMs: 5000 },
    format: { labels: { code: '%RESPONSE_CODE%', path: '%REQ(:PATH)%', upstream: '%UPSTREAM_HOST%', duration: '%DURATION%' } },
  };
  const side = (): SideTelemetry => {
    switch (name) {
      case 'trace1': return { accessLogs: [], metrics: true, tracing: tracing(1, 'otlp-grpc') };
      case 'trace100': return { accessLogs: [], metrics: true, tracing: tracing(100, 'otlp-grpc') };
      case 'trace100-http': return { accessLogs: [], metrics: true, tracing: tracing(100, 'otlp-http-protobuf') };
      case 'als': return { accessLogs: [als], metrics: true };
      case 'dead100': return { accessLogs: [als], metrics: true, tracing: tracing(100, 'otlp-grpc') };
    }
  };
  return { inbound: side(), outbound: side() };
}

/** Exporter counters of a sidecar's /stats/prometheus, summed by series name (without labels). */
async function exportCounters(adminPort: number): Promise<Record<string, number>> {
  const text = (await httpGet(adminPort, '/stats/prometheus', `127.0.0.1:${adminPort}`)).body;
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(wasmesh_proxy_(?:tracing|access_log)_[a-z_]+)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  }
  return out;
}

async function main(): Promise<void> {
  const rounds = Math.round(num('BENCH_ROUNDS', QUICK ? 1 : 5));
  const duration = Math.round(num('BENCH_DURATION', QUICK ? 2 : 5));
  const warmup = Math.round(num('BENCH_WARMUP', QUICK ? 1 : 6));
  const connections = Math.round(num('BENCH_CONNECTIONS', 16));
  const bodyBytes = Math.round(num('BENCH_BODY', 1024));
  const wanted = process.env.BENCH_CONFIGS?.split(',').map((s) => s.trim()).filter(Boolean);
  const names = NAMES.filter((n) => !wanted || wanted.includes(n) || n === 'telemetry');
  const tools = ensureTools(['wrk']);
  if (tools.missing) throw new Error(tools.missing);
  const wrk = tools.paths.wrk!;

  const children = new Children('telemetry-export bench');
  children.installHandlers();
  const tmp = children.tmpDir('wasmesh-bench-telemetry-export-');
  const started = Date.now();
  const files: PairFiles = { tmp, noopWasm: path.join(tmp, 'noop.wasm'), serverPems: path.join(tmp, 'reviews.json'), clientPems: path.join(tmp, 'productpage.json') };
  const ca = await createTestCa('wasmesh bench root');
  for (const [file, sa] of [[files.serverPems, 'reviews'], [files.clientPems, 'productpage']] as const) {
    const cert = await ca.issue('default', sa);
    writeFileSync(file, JSON.stringify({ keyPem: cert.keyPem, certChainPem: cert.certChainPem, trustBundlePem: cert.trustBundlePem }));
  }
  writeFileSync(files.noopWasm, await wat2wasm(NOOP_WAT));
  const collector = await startCollector();
  const deadPort = await freePort(); // nothing listens there

  const configs: BenchConfig[] = names.map((n) => {
    const telemetry = telemetryFor(n, collector, deadPort);
    return { security: 'plain', filters: 'telemetry', label: n, root: ROOT, baseline: false, ...(telemetry ? { telemetry } : {}) };
  });
  const results = new Map<string, Window[]>(configs.map((c) => [c.label, []]));
  const after = new Map<string, { rssMb: [number, number]; hwmMb: [number, number]; counters: [Record<string, number>, Record<string, number>] }>();
  const pairs: Pair[] = [];
  try {
    const app = await startBenchProcess(children, 'app', ['app', String(bodyBytes)], CPUS?.load);
    try {
      for (const c of configs) {
        const pair = await startPair(children, c, files, app.port);
        pairs.push(pair);
        await load(children, pair, { wrk, seconds: warmup, connections });
      }
      for (let round = 0; round < rounds; round++) {
        for (let i = 0; i < pairs.length; i++) {
          const pair = pairs[(i + round) % pairs.length]!;
          const w = await measure(children, pair, { wrk, seconds: duration, connections });
          results.get(pair.config.label)!.push(w);
          process.stdout.write(`round ${round + 1}/${rounds} ${pair.config.label.padEnd(14)} ${Math.round(w.rps)} req/s, outbound ${f1(total(w.outbound))} µs, inbound ${f1(total(w.inbound))} µs, failed ${w.failed}, others ${Math.round(w.others * 100)} %\n`);
        }
      }
      // Memory and exporter counters once every window ran (a dead collector has had all of them to grow into).
      await new Promise((r) => setTimeout(r, 2000));
      for (const pair of pairs) {
        const mb = (pid: number, k: 'rss' | 'hwm') => (memory(pid)?.[k] ?? NaN) / 2 ** 20;
        after.set(pair.config.label, {
          rssMb: [mb(pair.client.pid, 'rss'), mb(pair.server.pid, 'rss')],
          hwmMb: [mb(pair.client.pid, 'hwm'), mb(pair.server.pid, 'hwm')],
          counters: [await exportCounters(pair.client.adminPort), await exportCounters(pair.server.adminPort)],
        });
      }
    } finally {
      await Promise.all(pairs.map((p) => stopPair(children, p)));
      await children.stop(app.cp);
    }
  } finally {
    await collector.close();
    await children.stopAll();
    children.killAllSync();
  }

  // Per round, each configuration's CPU per request minus the reference's in the same round.
  const ref = results.get('telemetry')!;
  const lines = [
    SECTION,
    '',
    `\`npm run bench:telemetry-export\` at ${commitOf(ROOT)}, ${new Date().toISOString().slice(0, 10)}: ${rounds} rounds of ${duration} s windows per configuration (warm-up ${warmup} s), wrk ${wrkVersion(wrk)} -c${connections} keep-alive, ${bodyBytes} B answers, plaintext between the sidecars, the built-in telemetry filter on both; ${CPUS ? `sidecars pinned to CPU ${CPUS.target}, wrk and the app to CPU ${CPUS.load}` : 'no CPU pinning (one CPU)'}; ${Math.round((Date.now() - started) / 1000)} s in all. Collector calls received: ${collector.calls.traces} trace exports over gRPC, ${collector.calls.http} over HTTP, ${collector.calls.logs} log exports, ${Math.round(collector.bytes / 1024)} KiB.`,
    '',
    '| configuration | req/s | outbound µs/req | inbound µs/req | added, outbound | added, inbound | RSS after, outbound / inbound (peak) | exported / dropped (both sidecars) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const c of configs) {
    const ws = results.get(c.label)!;
    const added = (side: 'outbound' | 'inbound') => median(ws.map((w, i) => total(w[side]) - total(ref[i]![side])));
    const a = after.get(c.label);
    const sum = (k: string) => (a ? (a.counters[0][k] ?? 0) + (a.counters[1][k] ?? 0) : NaN);
    const exported = sum('wasmesh_proxy_tracing_spans_exported_total') + sum('wasmesh_proxy_access_log_records_exported_total');
    const dropped = sum('wasmesh_proxy_tracing_spans_dropped_total') + sum('wasmesh_proxy_access_log_records_dropped_total');
    lines.push(
      `| ${c.label}: ${DESCRIPTIONS[c.label as Name]} | ${Math.round(median(ws.map((w) => w.rps)))} | ${f1(median(ws.map((w) => total(w.outbound))))} | ${f1(median(ws.map((w) => total(w.inbound))))} | ` +
        `${c.label === 'telemetry' ? '–' : f1(added('outbound'))} | ${c.label === 'telemetry' ? '–' : f1(added('inbound'))} | ` +
        `${a ? `${f1(a.rssMb[0])} / ${f1(a.rssMb[1])} MB (${f1(a.hwmMb[0])} / ${f1(a.hwmMb[1])})` : '?'} | ${c.label === 'telemetry' ? '–' : `${exported} / ${dropped}`} |`,
    );
  }
  lines.push('', 'Medians over the rounds; "added" is the median of per-round differences from `telemetry`, measured seconds apart. Spans and records wait in a queue of at most 2,048 per provider, so the memory a dead collector can hold is bounded whatever the load; `dropped` counts what the queue refused.');
  const section = lines.join('\n');
  process.stdout.write(`\n${section}\n`);
  if (process.env.BENCH_NO_RESULTS !== '1' && !QUICK) {
    await writeResultsSection(section, RESULTS_FILE);
    process.stdout.write(`written to ${path.relative(ROOT, RESULTS_FILE)}\n`);
  }
}

await main();
