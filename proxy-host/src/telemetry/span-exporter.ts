// Span export: a BatchExporter (export-queue.ts: bounded queue, batches, one export in flight, drop
// and count) per tracing provider, with the encoding and transport the provider names: OTLP over
// HTTP with protobuf (as Envoy's OpenTelemetry tracer sends it) or JSON (the OTLP/JSON mapping of
// ExportTraceServiceRequest), OTLP over gRPC (TraceService/Export), or Zipkin v2 JSON (a list of spans).
import type { MetricsRegistry } from '../../../wasm/src/index.ts';
import type { ExportProtocol, TracingProviderConfig } from '../../../mesh/src/telemetry/proxy-telemetry.ts';
import { BatchExporter, grpcTransport, httpTransport, type Transport } from './export-queue.ts';
import { encodeTraceRequest } from './otlp-protobuf.ts';

export { MAX_QUEUED as MAX_QUEUED_SPANS, MAX_BATCH, FLUSH_INTERVAL_MS } from './export-queue.ts';

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

export const TRACE_EXPORT_METHOD = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** The protocol a provider config means (configs without one predate OTLP/protobuf and gRPC). */
export function protocolOf(c: TracingProviderConfig): ExportProtocol {
  return c.protocol ?? (c.kind === 'zipkin' ? 'zipkin' : 'otlp-http-json');
}

function transportFor(c: TracingProviderConfig, protocol: ExportProtocol): Transport {
  if (protocol === 'otlp-grpc') return grpcTransport({ host: c.host, port: c.port, method: TRACE_EXPORT_METHOD, metadata: c.headers, timeoutMs: c.timeoutMs });
  const contentType = protocol === 'otlp-http-protobuf' ? 'application/x-protobuf' : 'application/json';
  return httpTransport({ host: c.host, port: c.port, path: c.path, contentType, headers: c.headers, timeoutMs: c.timeoutMs });
}

/** One provider's exporter: shared by every config that names the same provider settings. */
export class SpanExporter extends BatchExporter<FinishedSpan> {
  readonly config: TracingProviderConfig;

  constructor(config: TracingProviderConfig, metrics: MetricsRegistry, readonly serviceName: string) {
    const l = { provider: config.name };
    const protocol = protocolOf(config);
    const max = config.maxTagLength;
    const encode =
      protocol === 'otlp-http-protobuf' || protocol === 'otlp-grpc'
        ? (batch: readonly FinishedSpan[]) => encodeTraceRequest(batch, serviceName, max)
        : protocol === 'zipkin'
          ? (batch: readonly FinishedSpan[]) => Buffer.from(JSON.stringify(zipkinSpans(batch, max)))
          : (batch: readonly FinishedSpan[]) => Buffer.from(JSON.stringify(otlpRequest(batch, serviceName, max)));
    super(
      {
        exported: metrics.counter('wasmesh_proxy_tracing_spans_exported_total', 'Spans a tracing provider accepted', l),
        dropped: metrics.counter('wasmesh_proxy_tracing_spans_dropped_total', 'Spans dropped: queue full, export failed or timed out, or rejected by the receiver', l),
        failures: metrics.counter('wasmesh_proxy_tracing_export_failures_total', 'Exports that failed (connection, timeout, non-2xx, gRPC error)', l),
        queued: metrics.gauge('wasmesh_proxy_tracing_spans_queued', 'Spans waiting for export', l),
      },
      encode,
      transportFor(config, protocol),
    );
    this.config = config;
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

/**
 * Zipkin v2 JSON spans. Names and service names are lowercase, as Zipkin's v2 model wants them (its
 * server and zipkin-js lowercase them too; an authority or app label may have capitals).
 */
export function zipkinSpans(spans: readonly FinishedSpan[], maxTag: number): object[] {
  return spans.map((s) => {
    const tags: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.tags)) tags[k] = cut(v, maxTag);
    if (s.error) tags.error = 'true';
    return {
      traceId: s.traceId,
      id: s.spanId,
      ...(s.parentSpanId ? { parentId: s.parentSpanId } : {}),
      name: s.name.toLowerCase(),
      kind: s.kind,
      timestamp: Math.round(s.startMs * 1000),
      duration: Math.max(1, Math.round(s.durationMs * 1000)),
      localEndpoint: { ...s.localEndpoint, serviceName: s.localEndpoint.serviceName.toLowerCase() },
      tags,
    };
  });
}
