// Istio's standard TCP metrics, from the proxy itself (the telemetry filter is an HTTP filter):
//   istio_tcp_connections_opened_total, istio_tcp_connections_closed_total,
//   istio_tcp_received_bytes_total (client -> server bytes), istio_tcp_sent_bytes_total (server -> client),
// with Istio's labels: reporter ("source" on the client's sidecar and on gateways, "destination" on
// the server's sidecar), source_* and destination_* workload, app, version and principal, the
// destination service (with its name and namespace), request_protocol="tcp", response_flags (Envoy's:
// "-" when none, UF connect failure, UO over maxConnections, UH no endpoint, NR no route) and
// connection_security_policy ("mutual_tls" or "none" on the destination side, "unknown" on the source
// side, as Istio reports).
//
// A connection's label set is fixed when it is routed and connected (or fails): opened counts then,
// bytes count as they pass (not only at close), closed counts at the end. Series are resolved once per
// label set and cached (bounded), so a connection only adds numbers.
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';

export const UNKNOWN = 'unknown';

export interface TcpWorkloadLabels {
  workload: string;
  namespace: string;
  app: string;
  version: string;
}

export interface TcpReportLabels {
  reporter: 'source' | 'destination';
  source: TcpWorkloadLabels;
  sourcePrincipal: string;
  destination: TcpWorkloadLabels;
  destinationPrincipal: string;
  /** The service host (`unknown` when none). */
  destinationService: string;
  responseFlags: string;
  security: 'mutual_tls' | 'none' | 'unknown';
}

export interface TcpSeries {
  readonly opened: Metric;
  readonly closed: Metric;
  readonly received: Metric;
  readonly sent: Metric;
}

/** Label sets cached; past this the registry is asked each time (it still holds one series per set). */
const MAX_CACHED = 10_000;

/** `reviews.default.svc.cluster.local` -> reviews / default; other hosts: the host / unknown (as Istio). */
export function serviceNameAndNamespace(host: string): { name: string; namespace: string } {
  const m = /^([^.]+)\.([^.]+)\.svc(?:\.|$)/.exec(host);
  return m ? { name: m[1]!, namespace: m[2]! } : { name: host, namespace: UNKNOWN };
}

export class TcpStats {
  readonly #registry: MetricsRegistry;
  readonly #cache = new Map<string, TcpSeries>();
  readonly active: Record<'inbound' | 'outbound', Metric>;

  constructor(registry: MetricsRegistry) {
    this.#registry = registry;
    this.active = {
      inbound: registry.gauge('wasmesh_proxy_tcp_active_connections', 'TCP connections being proxied', { direction: 'inbound' }),
      outbound: registry.gauge('wasmesh_proxy_tcp_active_connections', 'TCP connections being proxied', { direction: 'outbound' }),
    };
  }

  series(l: TcpReportLabels): TcpSeries {
    const key = JSON.stringify(l);
    const cached = this.#cache.get(key);
    if (cached) return cached;
    const service = l.destinationService === UNKNOWN ? { name: UNKNOWN, namespace: UNKNOWN } : serviceNameAndNamespace(l.destinationService);
    const labels: Record<string, string> = {
      reporter: l.reporter,
      source_workload: l.source.workload,
      source_workload_namespace: l.source.namespace,
      source_principal: l.sourcePrincipal,
      source_app: l.source.app,
      source_version: l.source.version,
      destination_workload: l.destination.workload,
      destination_workload_namespace: l.destination.namespace,
      destination_principal: l.destinationPrincipal,
      destination_app: l.destination.app,
      destination_version: l.destination.version,
      destination_service: l.destinationService,
      destination_service_name: service.name,
      destination_service_namespace: service.namespace,
      request_protocol: 'tcp',
      response_flags: l.responseFlags,
      connection_security_policy: l.security,
    };
    const r = this.#registry;
    const series: TcpSeries = {
      opened: r.counter('istio_tcp_connections_opened_total', 'TCP connections opened', labels),
      closed: r.counter('istio_tcp_connections_closed_total', 'TCP connections closed', labels),
      received: r.counter('istio_tcp_received_bytes_total', 'Bytes received from the client of a TCP connection (request direction)', labels),
      sent: r.counter('istio_tcp_sent_bytes_total', 'Bytes sent to the client of a TCP connection (response direction)', labels),
    };
    if (this.#cache.size < MAX_CACHED) this.#cache.set(key, series);
    return series;
  }
}
