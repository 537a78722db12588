// Per-request cost of the telemetry filter: streams per second through the wasm runtime (Plugin +
// createHttpStream, no sockets) with a no-op module and with the filter, on each side.
//
//   node scripts/wasmesh.mjs filter build filters/telemetry && node --import tsx filters/telemetry/bench/cost.bench.ts
//
// A benchmark, not a test: it prints a table. The machine may be shared and noisy, so every round runs
// every configuration in turn (noise hits them alike) and the table gives the best and the median round.
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTelemetryForeignFunctions } from '../../../proxy-host/src/telemetry-sinks.ts';
import { MetricsRegistry, Plugin, type HeaderList, type HttpStreamSink, type PluginHost, type PropertyValue, type StreamInfo } from '../../../wasm/src/index.ts';
import { guestModule, wat2wasm } from '../../../wasm/test/support/wat.ts';

const ROUNDS = 9;
const STREAMS = 10_000;
const WASM = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build/telemetry.wasm');

class NullSink implements HttpStreamSink {
  requestHeaders(): void {}
  requestData(): void {}
  requestTrailers(): void {}
  responseHeaders(): void {}
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(): void {
    throw new Error('unexpected local response');
  }
  reset(): void {
    throw new Error('unexpected reset');
  }
}

const noopWat = guestModule({
  body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))`,
});

const NODE: Record<string, PropertyValue> = {
  'node.metadata.NAME': 'productpage',
  'node.metadata.NAMESPACE': 'default',
  'node.metadata.SERVICE_ACCOUNT': 'bookinfo-productpage',
  'node.metadata.LABELS': new Map([['app', 'productpage'], ['version', 'v1']]),
};

function streamInfo(direction: 1 | 2): StreamInfo {
  return {
    sourceAddress: '10.0.0.1:40000',
    destinationAddress: '10.0.0.2:9080',
    protocol: 'HTTP/1.1',
    getProperty: (p) => {
      const key = p.join('.');
      if (key === 'xds.listener_direction') return direction;
      if (key === 'upstream.address') return '10.0.0.9:9080';
      if (key === 'xds.cluster_name') return 'outbound|9080||reviews.default.svc.cluster.local';
      return undefined;
    },
  };
}

const PEER = Buffer.from('name=reviews;namespace=default;app=reviews;version=v2;sa=bookinfo-reviews').toString('base64');
const CALLER = Buffer.from('name=productpage;namespace=default;app=productpage;version=v1;sa=bookinfo-productpage').toString('base64');

function outboundRequest(): HeaderList {
  return [':method', 'GET', ':path', '/reviews/1', ':authority', 'reviews:9080', ':scheme', 'http', 'user-agent', 'curl/8.5', 'accept', '*/*', 'x-request-id', 'b1f6c3e2-4f7a-4c1e-9d3a-2f1b6e8c9a0d'];
}
function inboundRequest(): HeaderList {
  return [...outboundRequest(), 'traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'x-wasmesh-peer-metadata', CALLER];
}
function outboundResponse(): HeaderList {
  return [':status', '200', 'content-type', 'text/html', 'content-length', '1024', 'x-wasmesh-peer-metadata', PEER];
}
function inboundResponse(): HeaderList {
  return [':status', '200', 'content-type', 'text/html', 'content-length', '1024'];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** One round: ns per stream (create, request headers, response headers, finish: on_log, on_done, on_delete). */
function round(plugin: Plugin, side: 'outbound' | 'inbound'): number {
  const sink = new NullSink();
  const info = streamInfo(side === 'inbound' ? 1 : 2);
  const req = side === 'inbound' ? inboundRequest : outboundRequest;
  const res = side === 'inbound' ? inboundResponse : outboundResponse;
  const start = process.hrtime.bigint();
  for (let i = 0; i < STREAMS; i++) {
    const stream = plugin.createHttpStream(sink, info);
    stream.requestHeaders(req(), true);
    stream.responseHeaders(res(), true);
    stream.finish();
  }
  const ns = Number(process.hrtime.bigint() - start) / STREAMS;
  if (plugin.state !== 'running') throw new Error(`plugin ${plugin.settings.name} failed: ${plugin.lastFailure}`);
  return ns;
}

async function telemetry(name: string, configuration: object, records: { n: number }): Promise<Plugin> {
  const host: PluginHost = {
    metrics: new MetricsRegistry(),
    getProperty: (p) => NODE[p.join('.')],
    foreignFunctions: createTelemetryForeignFunctions(() => {
      records.n++;
    }),
    log: () => {},
  };
  return Plugin.load(await readFile(WASM), { name, rootId: 'telemetry', configuration, logLevel: 'info' }, host);
}

const records = { n: 0 };
const noop = await Plugin.load(await wat2wasm(noopWat), { name: 'noop' }, { metrics: new MetricsRegistry() });
const full = await telemetry('telemetry', {}, records);
const metricsOnly = await telemetry('telemetry-metrics', { accessLog: false }, records);
const bare = await telemetry('telemetry-bare', { accessLog: false, metrics: false }, records);

const configs: Array<[string, Plugin]> = [
  ['no-op module (runtime floor)', noop],
  ['telemetry: exchange + trace context only', bare],
  ['telemetry: + metrics', metricsOnly],
  ['telemetry: + metrics + access log (foreign function)', full],
];
const lines = [
  `Machine: ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}, Node.js ${process.version}. ${ROUNDS} rounds of ${STREAMS} streams, after a warm-up round.`,
  '',
  '| side | what | best round | median round | streams/s (best) | filter cost per request (best) |',
  '|---|---|---|---|---|---|',
];
for (const side of ['outbound', 'inbound'] as const) {
  const times = configs.map((): number[] => []);
  for (let r = 0; r <= ROUNDS; r++) {
    configs.forEach(([, plugin], i) => {
      const ns = round(plugin, side);
      if (r > 0) times[i].push(ns);
    });
  }
  const base = Math.min(...times[0]);
  configs.forEach(([what], i) => {
    const best = Math.min(...times[i]);
    const cost = i === 0 ? '-' : `${((best - base) / 1000).toFixed(2)} µs`;
    lines.push(`| ${side} | ${what} | ${(best / 1000).toFixed(2)} µs | ${(median(times[i]) / 1000).toFixed(2)} µs | ${Math.round(1e9 / best / 1000)} k | ${cost} |`);
  });
}
if (records.n === 0) throw new Error('no access-log record reached the sink');
process.stdout.write(lines.join('\n') + '\n');
await Promise.all([noop.stop(), full.stop(), metricsOnly.stop(), bare.stop()]);
