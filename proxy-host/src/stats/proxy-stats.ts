// The proxy's own counters, resolved to metric objects once so a request only increments numbers.
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';

export type Direction = 'inbound' | 'outbound';

const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * Bounds of the proxy's request duration histogram, in seconds (Prometheus base units: `promtool check
 * metrics` refuses a *_milliseconds name). The same edges as the module histograms' milliseconds
 * (DEFAULT_HISTOGRAM_BUCKETS) divided by 1000, so the two read alike.
 */
export const REQUEST_DURATION_BUCKETS_SECONDS = [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600] as const;

export class DirectionStats {
  readonly requests: Metric;
  readonly active: Metric;
  /** Seconds (record ms / 1000). */
  readonly duration: Metric;
  readonly responses: Metric[];
  readonly bytesReceived: Metric;
  readonly bytesSent: Metric;

  constructor(registry: MetricsRegistry, direction: Direction) {
    const l = { direction };
    this.requests = registry.counter('wasmesh_proxy_requests_total', 'Requests received', l);
    this.active = registry.gauge('wasmesh_proxy_active_requests', 'Requests in flight', l);
    this.duration = registry.histogram('wasmesh_proxy_request_duration_seconds', 'Time from request start to response end, in seconds', l, REQUEST_DURATION_BUCKETS_SECONDS);
    this.bytesReceived = registry.counter('wasmesh_proxy_request_bytes_total', 'Request body bytes received from clients', l);
    this.bytesSent = registry.counter('wasmesh_proxy_response_bytes_total', 'Response body bytes sent to clients', l);
    this.responses = CODE_CLASSES.map((c) => registry.counter('wasmesh_proxy_responses_total', 'Responses by status class', { direction, response_code_class: c }));
  }

  response(status: number): void {
    const i = Math.floor(status / 100) - 1;
    if (i >= 0 && i < 5) this.responses[i].increment(1);
  }
}

export class ClusterStats {
  readonly requests: Metric;
  readonly errors: Metric;
  readonly connections: Metric;
  readonly #registry: MetricsRegistry;
  readonly #flags = new Map<string, Metric>();
  readonly cluster: string;

  constructor(registry: MetricsRegistry, cluster: string) {
    this.#registry = registry;
    this.cluster = cluster;
    this.requests = registry.counter('wasmesh_proxy_upstream_requests_total', 'Requests sent to a cluster', { cluster });
    this.errors = registry.counter('wasmesh_proxy_upstream_errors_total', 'Upstream requests that failed', { cluster });
    this.connections = registry.gauge('wasmesh_proxy_upstream_connections', 'Open connections to a cluster', { cluster });
  }

  /** A counter with only the cluster label, created on first use (retries, overflows, mirrors). */
  counter(name: string, help: string): Metric {
    let m = this.#flags.get(name);
    if (!m) {
      m = this.#registry.counter(name, help, { cluster: this.cluster });
      this.#flags.set(name, m);
    }
    return m;
  }

  /** Failures by Envoy response flag (UF, UC, UT, UH, ...). */
  flag(flag: string): void {
    let m = this.#flags.get(flag);
    if (!m) {
      m = this.#registry.counter('wasmesh_proxy_upstream_failures_total', 'Upstream failures by response flag', { cluster: this.cluster, response_flag: flag });
      this.#flags.set(flag, m);
    }
    m.increment(1);
  }
}
