// One listener's telemetry backends, built from ProxyConfig.telemetry on every config change (so a
// Telemetry change takes effect for new requests without a restart): the Tracer and the access logs
// (format, filter, and a file or an OpenTelemetry logs exporter). Exporters and files outlive
// configs: TelemetryBackends keeps one per provider settings and per path, and drops the exporters no
// config uses any more.
import type { MetricsRegistry } from '../../../wasm/src/index.ts';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import type { OtelLogTarget, ProxyTelemetryConfig, SideTelemetry, TracingProviderConfig } from '../../../mesh/src/telemetry/proxy-telemetry.ts';
import { compileFilter, type CompiledFilter } from '../../../mesh/src/telemetry/cel.ts';
import { compileLogFormat, compileOtelLogFormat, setFormatHostname, type LineFormatter, type OtelRecordFormatter } from '../../../mesh/src/telemetry/log-format.ts';
import { hostname } from 'node:os';
import type { ActiveRequest } from '../http/active-request.ts';
import { LogSinks, type LogSink } from './log-sinks.ts';
import { RequestFacts } from './request-facts.ts';
import { SpanExporter } from './span-exporter.ts';
import { OtelLogExporter } from './otel-log-exporter.ts';
import { Tracer } from './tracer.ts';

type CompiledLog =
  | { filter: CompiledFilter | undefined; format: LineFormatter; sink: LogSink; otel?: undefined }
  | { filter: CompiledFilter | undefined; otel: { format: OtelRecordFormatter; exporter: OtelLogExporter } };

export class ListenerTelemetry {
  constructor(readonly tracer: Tracer | undefined, readonly logs: readonly CompiledLog[], readonly localAddress: string) {}

  /** The request is done: its span and its access-log lines. */
  done(ar: ActiveRequest, status: number, durationMs: number): void {
    const f = new RequestFacts(ar, status, durationMs, this.localAddress);
    const trace = ar.trace;
    if (trace !== undefined) trace.tracer.finish(trace, ar.headers, f);
    else if (this.logs.length > 0) {
      // No span on this side: the trace the request carries still names the record's trace.
      const m = /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(f.requestHeader('traceparent') ?? '');
      if (m) f.traceId = m[1]!;
    }
    for (const log of this.logs) {
      if (log.filter !== undefined && !log.filter.matches(f)) continue;
      if (log.otel === undefined) log.sink.write(log.format.line(f));
      else {
        const o = log.otel;
        o.exporter.push({ startMs: f.startMs, body: o.format.body(f), attributes: o.format.attributes(f), traceId: f.traceId, spanId: trace?.spanId ?? '' });
      }
    }
  }
}

export class TelemetryBackends {
  readonly #metrics: MetricsRegistry;
  readonly #exporters = new Map<string, SpanExporter | OtelLogExporter>();
  readonly sinks = new LogSinks();

  constructor(metrics: MetricsRegistry) {
    this.#metrics = metrics;
    setFormatHostname(hostname());
  }

  #exporter(p: TracingProviderConfig, serviceName: string): SpanExporter {
    const key = JSON.stringify(['trace', p, serviceName]);
    let e = this.#exporters.get(key);
    if (e === undefined) {
      e = new SpanExporter(p, this.#metrics, serviceName);
      this.#exporters.set(key, e);
    }
    return e as SpanExporter;
  }

  #logExporter(provider: string, target: OtelLogTarget, resource: { nodeName: string; clusterName: string }): OtelLogExporter {
    const key = JSON.stringify(['logs', provider, target, resource]);
    let e = this.#exporters.get(key);
    if (e === undefined) {
      e = new OtelLogExporter(provider, target, this.#metrics, resource);
      this.#exporters.set(key, e);
    }
    return e as OtelLogExporter;
  }

  /** Both listeners' telemetry for a config (undefined: nothing configured on that side). */
  build(config: ProxyTelemetryConfig | undefined, workload: WorkloadIdentity, addresses: { inbound: string; outbound: string }): { inbound?: ListenerTelemetry; outbound?: ListenerTelemetry; retain: () => void } {
    const used = new Set<SpanExporter | OtelLogExporter>();
    const resource = { nodeName: `sidecar~${workload.name}.${workload.namespace}`, clusterName: `${workload.labels.app ?? workload.name}.${workload.namespace}` };
    const side = (s: SideTelemetry, name: 'inbound' | 'outbound'): ListenerTelemetry | undefined => {
      const serviceName = `${workload.labels.app ?? workload.name}.${workload.namespace}`;
      const exporters = (s.tracing?.providers ?? []).map((p) => this.#exporter(p, serviceName));
      for (const e of exporters) used.add(e);
      const tracer = s.tracing && exporters.length > 0 ? new Tracer(s.tracing, exporters, name, workload) : undefined;
      const logs: CompiledLog[] = [];
      for (const l of s.accessLogs) {
        let filter: CompiledFilter | undefined;
        if (l.filter !== undefined) {
          const c = compileFilter(l.filter);
          if ('message' in c) throw new Error(`access log ${l.provider}: filter.expression: ${c.message}`);
          filter = c;
        }
        if (l.otel !== undefined) {
          const format = compileOtelLogFormat(l.format);
          if ('message' in format) throw new Error(`access log ${l.provider}: logFormat${format.path}: ${format.message}`);
          const exporter = this.#logExporter(l.provider, l.otel, resource);
          used.add(exporter);
          logs.push({ filter, otel: { format, exporter } });
          continue;
        }
        const format = compileLogFormat(l.format);
        // Validated before translation; a config from elsewhere that does not compile is refused whole.
        if ('message' in format) throw new Error(`access log ${l.provider}: logFormat${format.path}: ${format.message}`);
        logs.push({ format, filter, sink: this.sinks.get(l.path) });
      }
      return tracer === undefined && logs.length === 0 ? undefined : new ListenerTelemetry(tracer, logs, addresses[name]);
    };
    const out = config === undefined ? {} : { inbound: side(config.inbound, 'inbound'), outbound: side(config.outbound, 'outbound') };
    return Object.assign(out, { retain: () => this.#retain(used) });
  }

  /** Closes the exporters the applied config no longer uses (after its queue is sent). */
  #retain(used: ReadonlySet<SpanExporter | OtelLogExporter>): void {
    for (const [k, e] of this.#exporters) {
      if (!used.has(e)) {
        this.#exporters.delete(k);
        void e.close();
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#exporters.values()].map((e) => e.close()));
    this.#exporters.clear();
    await this.sinks.close();
  }
}
