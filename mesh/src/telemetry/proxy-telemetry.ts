// What a proxy runs for telemetry backends (ProxyConfig.telemetry), resolved from the Telemetry
// documents that apply to its workload and the MeshConfig's extensionProviders
// (mesh/src/telemetry/resolve.ts). One SideTelemetry per listener: inbound is Istio's SERVER side,
// outbound its CLIENT side. Plain JSON: the orchestrator ships it inside the ProxyConfig.

export type SpanTag =
  | { literal: { value: string } }
  | { header: { name: string; defaultValue?: string } }
  | { environment: { name: string; defaultValue?: string } };

export interface TracingProviderConfig {
  /** The extensionProviders name. */
  name: string;
  /** opentelemetry: OTLP/HTTP JSON (ExportTraceServiceRequest); zipkin: Zipkin v2 JSON. */
  kind: 'opentelemetry' | 'zipkin';
  host: string;
  port: number;
  path: string;
  timeoutMs: number;
  headers: readonly (readonly [string, string])[];
  maxTagLength: number;
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
  /** File appended to; /dev/stdout and /dev/stderr are the proxy's output. */
  path: string;
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
}

export interface ProxyTelemetryConfig {
  inbound: SideTelemetry;
  outbound: SideTelemetry;
}
