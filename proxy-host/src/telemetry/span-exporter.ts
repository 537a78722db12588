// Span export, off the request path: finished spans go into a bounded queue (a full queue drops the
// span and counts it), a timer or a full batch sends them in one POST, one export in flight per
// provider, each with a timeout; a failed or refused export drops its batch and counts it. The
// request path only pushes into an array. Encodings: OTLP/HTTP JSON (ExportTraceServiceRequest, as
// the OTLP/JSON mapping of opentelemetry-proto spells it) and Zipkin v2 JSON (a list of spans).
import { Agent, request } from 'node:http';
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';
import type { TracingProviderConfig } from '../../../mesh/src/telemetry/proxy-telemetry.ts';

export interface FinishedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: 'CLIENT' | 'SERVER';
  startMs: number;
  durationMs: number;
  /** Istio's span tags (strings). */
  tags: Record<string, string>;
  error: boolean;
  localEndpoint: { serviceName: string; ipv4?: string; port?: number };
}

export const MAX_QUEUED_SPANS = 2048;
export const MAX_BATCH = 512;
export const FLUSH_INTERVAL_MS = 1000;

/** One provider's exporter: shared by every config that names the same provider settings. */
export class SpanExporter {
  readonly config: TracingProviderConfig;
  readonly #queue: FinishedSpan[] = [];
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 1 });
  readonly #timer: NodeJS.Timeout;
  #inFlight = false;
  #closed = false;
  readonly exported: Metric;
  readonly dropped: Metric;
  readonly failures: Metric;
  readonly queued: Metric;

  constructor(config: TracingProviderConfig, metrics: MetricsRegistry, readonly serviceName: string) {
    this.config = config;
    const l = { provider: config.name };
    this.exported = metrics.counter('wasmesh_proxy_tracing_spans_exported_total', 'Spans a tracing provider accepted', l);
    this.dropped = metrics.counter('wasmesh_proxy_tracing_spans_dropped_total', 'Spans dropped: queue full, export failed or timed out', l);
    this.failures = metrics.counter('wasmesh_proxy_tracing_export_failures_total', 'Exports that failed (connection, timeout, non-2xx)', l);
    this.queued = metrics.gauge('wasmesh_proxy_tracing_spans_queued', 'Spans waiting for export', l);
    this.#timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    this.#timer.unref();
  }

  /** Queues a span; never blocks, never grows past MAX_QUEUED_SPANS. */
  push(span: FinishedSpan): void {
    if (this.#closed || this.#queue.length >= MAX_QUEUED_SPANS) {
      this.dropped.increment(1);
      return;
    }
    this.#queue.push(span);
    this.queued.increment(1);
    if (this.#queue.length >= MAX_BATCH && !this.#inFlight) setImmediate(() => this.flush());
  }

  get queueLength(): number {
    return this.#queue.length;
  }

  /** Sends one batch if none is in flight; resolves when that export ends. */
  flush(): Promise<void> {
    if (this.#inFlight || this.#queue.length === 0) return Promise.resolve();
    const batch = this.#queue.splice(0, MAX_BATCH);
    this.queued.increment(-batch.length);
    this.#inFlight = true;
    const c = this.config;
    const body = Buffer.from(JSON.stringify(c.kind === 'zipkin' ? zipkinSpans(batch, c.maxTagLength) : otlpRequest(batch, this.serviceName, c.maxTagLength)));
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (ok: boolean): void => {
        if (settled) return;
        settled = true;
        this.#inFlight = false;
        if (ok) this.exported.increment(batch.length);
        else {
          this.failures.increment(1);
          this.dropped.increment(batch.length);
        }
        resolve();
      };
      const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(body.length) };
      for (const [k, v] of c.headers) headers[k] = v;
      const req = request({ host: c.host, port: c.port, path: c.path, method: 'POST', headers, agent: this.#agent, timeout: c.timeoutMs }, (res) => {
        res.resume();
        res.on('end', () => done((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300));
        res.on('error', () => done(false));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => done(false));
      req.end(body);
    });
  }

  /** Sends what is queued (bounded: at most a few batches), then stops. */
  async close(): Promise<void> {
    for (let i = 0; i < 4 && this.#queue.length > 0; i++) {
      await this.flush();
      if (this.#inFlight) break;
    }
    this.#closed = true;
    clearInterval(this.#timer);
    this.#agent.destroy();
  }
}

const cut = (v: string, n: number): string => (v.length > n ? v.slice(0, n) : v);
const msToNanos = (ms: number): string => (BigInt(Math.round(ms * 1000)) * 1000n).toString();

/** OTLP/JSON ExportTraceServiceRequest (ids as hex, as the OTLP/JSON mapping says). */
export function otlpRequest(spans: readonly FinishedSpan[], serviceName: string, maxTag: number): object {
  return {
    resourceSpans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { stringValue: serviceName } }] },
        scopeSpans: [
          {
            scope: { name: 'wasmesh-proxy' },
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}),
              name: s.name,
              kind: s.kind === 'SERVER' ? 2 : 3,
              startTimeUnixNano: msToNanos(s.startMs),
              endTimeUnixNano: msToNanos(s.startMs + s.durationMs),
              attributes: Object.entries(s.tags).map(([key, v]) => ({ key, value: { stringValue: cut(v, maxTag) } })),
              status: { code: s.error ? 2 : 0 },
            })),
          },
        ],
      },
    ],
  };
}

/** Zipkin v2 JSON spans. */
export function zipkinSpans(spans: readonly FinishedSpan[], maxTag: number): object[] {
  return spans.map((s) => {
    const tags: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.tags)) tags[k] = cut(v, maxTag);
    if (s.error) tags.error = 'true';
    return {
      traceId: s.traceId,
      id: s.spanId,
      ...(s.parentSpanId ? { parentId: s.parentSpanId } : {}),
      name: s.name,
      kind: s.kind,
      timestamp: Math.round(s.startMs * 1000),
      duration: Math.max(1, Math.round(s.durationMs * 1000)),
      localEndpoint: s.localEndpoint,
      tags,
    };
  });
}
