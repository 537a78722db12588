// Circuit breakers per cluster (DestinationRule connectionPool, Envoy circuit_breakers thresholds):
// concurrent requests (http2MaxRequests, HTTP/1.1 included like Envoy max_requests), requests
// waiting for an HTTP/1.1 connection (http1MaxPendingRequests, with maxConnections per endpoint),
// concurrent retries (maxRetries). Over a limit the caller answers 503 UO at once; nothing waits.
// Unset limits are unbounded (Istio's 2^32-1). No retry budget by default either: Istio configures
// none, and one (Envoy's 20 % / at least 3) turned a restarted workload's stale endpoint, refused at
// once and retried to a live one, into 503s for every request past three concurrent retries.
import type { ConnectionPoolConfig } from '../../../mesh/src/proxy-config.ts';
import type { EndpointState } from './endpoint.ts';

export class CircuitBreaker {
  /** Upstream attempts in flight (each try of a retried request counts while it runs). */
  requests = 0;
  /** Downstream requests routed to the cluster and not finished. */
  active = 0;
  /** Retries scheduled or running. */
  retries = 0;

  /**
   * Whether one more attempt to `endpoint` may start. HTTP/1.1 pending requests are those beyond
   * maxConnections busy connections per endpoint (undici queues them), summed over the cluster.
   */
  admitRequest(pool: ConnectionPoolConfig, endpoint: EndpointState, endpoints: readonly EndpointState[], http1: boolean): boolean {
    const maxRequests = pool.http2MaxRequests;
    if (maxRequests !== undefined && maxRequests > 0 && this.requests >= maxRequests) return false;
    const maxPending = pool.http1MaxPendingRequests;
    const maxConnections = pool.maxConnections;
    if (http1 && maxPending !== undefined && maxPending > 0 && maxConnections !== undefined && maxConnections > 0 && endpoint.activeRequests >= maxConnections) {
      let pending = 0;
      for (const e of endpoints) if (e.activeRequests > maxConnections) pending += e.activeRequests - maxConnections;
      if (pending >= maxPending) return false;
    }
    return true;
  }

  /** Whether one more retry may be scheduled: maxRetries. */
  admitRetry(pool: ConnectionPoolConfig): boolean {
    const maxRetries = pool.maxRetries;
    return !(maxRetries !== undefined && maxRetries > 0 && this.retries >= maxRetries);
  }
}

/** Breakers by cluster name, so counts survive a config update that rebuilds the Cluster object. */
export class CircuitBreakers {
  readonly #byName = new Map<string, CircuitBreaker>();

  get(cluster: string): CircuitBreaker {
    let b = this.#byName.get(cluster);
    if (b === undefined) {
      b = new CircuitBreaker();
      this.#byName.set(cluster, b);
    }
    return b;
  }
}
