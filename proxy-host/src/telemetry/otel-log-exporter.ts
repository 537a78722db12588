// envoyOtelAls: access-log records as OpenTelemetry logs, sent in batches over gRPC
// (opentelemetry.proto.collector.logs.v1.LogsService/Export), with the same bounded queue, one export
// in flight and drop-and-count as span export (export-queue.ts). The resource carries what Envoy's
// OpenTelemetry access logger puts there: log_name, node_name and cluster_name.
import type { MetricsRegistry } from '../../../wasm/src/index.ts';
import type { OtelLogTarget } from '../../../mesh/src/telemetry/proxy-telemetry.ts';
import { BatchExporter, grpcTransport } from './export-queue.ts';
import { encodeLogsRequest, type OtelLogRecord } from './otlp-protobuf.ts';

export const LOGS_EXPORT_METHOD = '/opentelemetry.proto.collector.logs.v1.LogsService/Export';

export class OtelLogExporter extends BatchExporter<OtelLogRecord> {
  constructor(provider: string, target: OtelLogTarget, metrics: MetricsRegistry, resource: { nodeName: string; clusterName: string }) {
    const l = { provider };
    const attributes = [['log_name', target.logName], ['node_name', resource.nodeName], ['cluster_name', resource.clusterName]] as const;
    super(
      {
        exported: metrics.counter('wasmesh_proxy_access_log_records_exported_total', 'Access-log records an OpenTelemetry logs provider accepted', l),
        dropped: metrics.counter('wasmesh_proxy_access_log_records_dropped_total', 'Access-log records dropped: queue full, export failed or timed out, or rejected by the receiver', l),
        failures: metrics.counter('wasmesh_proxy_access_log_export_failures_total', 'Access-log exports that failed (connection, timeout, gRPC error)', l),
        queued: metrics.gauge('wasmesh_proxy_access_log_records_queued', 'Access-log records waiting for export', l),
      },
      (batch) => encodeLogsRequest(batch, attributes, Date.now()),
      grpcTransport({ host: target.host, port: target.port, method: LOGS_EXPORT_METHOD, metadata: [], timeoutMs: target.timeoutMs }),
    );
  }
}
