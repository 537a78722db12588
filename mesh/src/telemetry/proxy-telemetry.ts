// What a proxy runs for telemetry backends (ProxyConfig.telemetry), resolved from the Telemetry
// documents that apply to its workload and the MeshConfig's extensionProviders
// (mesh/src/telemetry/resolve.ts). One SideTelemetry per listener: inbound is Istio's SERVER side,
// outbound its CLIENT side. Plain JSON: the orchestrator ships it inside the ProxyConfig.

export type SpanTag =
  | { literal: { value: string } }
  | { header: { name: string; defaultValue?: string } }
  | { environment: { name: string; defaultValue?: string } };

/**
 * How an exporter sends: OTLP over HTTP (a POST to `path`) with the protobuf or the JSON encoding,
 * OTLP over gRPC (the service's Export method; `path` unused), or Zipkin v2 JSON (a POST to `path`).
 */
export type ExportProtocol = 'otlp-http-protobuf' | 'otlp-http-json' | 'otlp-grpc' | 'zipkin';

export interface TracingProviderConfig {
  /** The extensionProviders name. */
  name: string;
  /** opentelemetry: OTLP (ExportTraceServiceRequest, over `protocol`); zipkin: Zipkin v2 JSON. */
  kind: 'opentelemetry' | 'zipkin';
  /** Absent (configs from before OTLP/protobuf and gRPC): otlp-http-json for opentelemetry, zipkin for zipkin. */
  protocol?: ExportProtocol;
  host: string;
  port: number;
  path: string;
  timeoutMs: number;
  /** HTTP headers, or gRPC initial metadata. */
  headers: readonly (readonly [string, string])[];
  maxTagLength: number;
}

/** An envoyOtelAls provider: access-log records as OTLP logs over gRPC (LogsService/Export). */
export interface OtelLogTarget {
  host: string;
  port: number;
  /** Resource attribute log_name (Envoy's common_config.log_name). */
  logName: string;
  timeoutMs: number;
}

export interface TracingConfig {
  /** Share of new traces sampled (0..100); requests with a decision keep it. */
  samplingPercentage: number;
  providers: readonly TracingProviderConfig[];
  customTags: Readonly<Record<string, SpanTag>>;
  meshId: string;
}

export interface AccessLogConfig {
  provider: string;
  /** File appended to; /dev/stdout and /dev/stderr are the proxy's output. Unused with `otel`. */
  path: string;
  /**
   * envoyOtelAls: records go to an OTLP logs collector instead of a file; `format.text` (or Istio's
   * default line) is the record's body and `format.labels` its attributes.
   */
  otel?: OtelLogTarget;
  format: { text?: string; labels?: Readonly<Record<string, string>> };
  /** CEL filter.expression (mesh/src/telemetry/cel.ts); absent: every request. */
  filter?: string;
}

export interface SideTelemetry {
  /** Absent: no spans from this side (trace context is still propagated by the telemetry filter). */
  tracing?: TracingConfig;
  accessLogs: readonly AccessLogConfig[];
  /** false: Istio's standard metrics are not recorded on this side (the telemetry filter's `metrics`). */
  metrics: boolean;
  /**
   * Telemetry metrics overrides of single metrics on this side (absent: none): a metric disabled, or
   * labels upserted (a CEL expression, mesh/src/telemetry/cel.ts) or removed, applied in order.
   */
  metricOverrides?: readonly MetricOverrideConfig[];
}

/** Istio's standard metric names, as Telemetry's match.metric names them. */
export type StandardMetric = 'REQUEST_COUNT' | 'REQUEST_DURATION' | 'REQUEST_SIZE' | 'RESPONSE_SIZE';

export interface MetricOverrideConfig {
  /** The metrics it applies to (ALL_METRICS: the four). */
  metrics: readonly StandardMetric[];
  disabled?: boolean;
  /** Label name -> its new value (an expression) or removal. */
  tags?: readonly (readonly [string, { remove: true } | { value: string }])[];
}

export interface ProxyTelemetryConfig {
  inbound: SideTelemetry;
  outbound: SideTelemetry;
}
