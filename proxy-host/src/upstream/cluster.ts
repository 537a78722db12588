// Clusters: a ClusterConfig with live endpoint state and its load balancer, and the manager that swaps
// them when a new config arrives without losing in-flight counts or health of endpoints that stay.
// A cluster also owns its active health checker and outlier detector: the manager starts them when it
// installs the cluster and stops them when the cluster is replaced or dropped.

import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';
import type { ClusterConfig, EndpointConfig } from '../../../mesh/src/proxy-config.ts';
import { EndpointState } from './endpoint.ts';
import { healthOf, syncHealthy } from './endpoint-health.ts';
import { HealthChecker, type CheckResult } from './health-checker.ts';
import { createLoadBalancer, type LbContext, type LoadBalancer } from './load-balancer.ts';
import { OutlierDetector } from './outlier-detector.ts';
import type { EndpointTls } from './upstream-tls.ts';

export interface ClusterStats {
  /** Endpoint picks (each attempt of a retried request counts). Envoy upstream_rq_total. */
  requests: number;
  /** Picks made in panic mode, over all endpoints because none was healthy. Envoy lb_healthy_panic. */
  healthyPanic: number;
  /** Picks that found no endpoint at all (empty cluster). Envoy upstream_cx_none_healthy. */
  noEndpoint: number;
}

/** The JSON key that decides whether a cluster's config changed. */
function configKey(config: ClusterConfig): string {
  return JSON.stringify(config);
}

export class Cluster {
  readonly config: ClusterConfig;
  readonly endpoints: readonly EndpointState[];
  readonly stats: ClusterStats = { requests: 0, healthyPanic: 0, noEndpoint: 0 };
  /** The config key this cluster was built from (see ClusterManager.update). */
  readonly key: string;
  private readonly lb: LoadBalancer;

  /**
   * `previous` endpoint states are reused by address:port (their in-flight counts and health carry
   * over, their config is replaced); endpoints not in it start fresh.
   */
  constructor(config: ClusterConfig, previous?: readonly EndpointState[], key = configKey(config), metrics?: MetricsRegistry, tlsFor?: TlsOptionsFor) {
    this.config = config;
    this.key = key;
    const reusable = new Map<string, EndpointState>();
    if (previous !== undefined) for (const e of previous) if (!reusable.has(e.key)) reusable.set(e.key, e);
    const endpoints: EndpointState[] = [];
    const fresh = new Set<EndpointState>();
    for (const ec of config.endpoints) {
      const created = new EndpointState(ec);
      const old = reusable.get(created.key);
      if (old !== undefined) {
        // Each old state is reused once, so a duplicated address gets a state of its own.
        reusable.delete(created.key);
        if (old.config !== ec) old.reconfigure(ec);
        endpoints.push(old);
      } else {
        endpoints.push(created);
        fresh.add(created);
      }
    }
    this.endpoints = endpoints;

    // Health verdicts: endpoints that stay keep theirs; a verdict whose mechanism is no longer
    // configured is cleared; endpoints new to an actively checked cluster wait for their first check.
    // `healthy` is only recomputed when a verdict changed here, so health set by other means stays.
    for (const e of endpoints) {
      const h = healthOf(e);
      let changed = false;
      if (config.healthCheck === undefined) {
        changed = !h.checkHealthy;
        h.checkHealthy = true;
        h.checkPending = false;
        h.checkSuccesses = h.checkFailures = 0;
      } else if (fresh.has(e)) {
        h.checkHealthy = false;
        h.checkPending = true;
        changed = true;
      }
      if (config.outlierDetection === undefined) {
        changed ||= h.ejected;
        h.ejected = false;
        h.ejections = h.consecutive5xx = h.consecutiveGateway = 0;
      }
      if (changed) syncHealthy(e);
    }

    this.#metrics = metrics === undefined ? undefined : new ClusterHealthMetrics(metrics, config.name);
    if (config.healthCheck !== undefined) {
      // Checks speak to each endpoint what its traffic speaks (auto mTLS, DestinationRule tls).
      const tls = tlsFor && config.tls ? (e: EndpointState) => tlsFor(config, e.config) : undefined;
      this.#checker = new HealthChecker({ name: config.name, host: config.host, protocol: config.protocol, endpoints, tls }, config.healthCheck, {
        onChange: (e) => this.#healthChanged(e),
        onCheck: (_e, outcome) => this.#metrics?.check(outcome.result),
      });
    }
    if (config.outlierDetection !== undefined) {
      this.#detector = new OutlierDetector(config.outlierDetection, endpoints, {
        onChange: (e) => this.#healthChanged(e),
        onEject: () => this.#metrics?.ejections.increment(1),
        onOverflow: () => this.#metrics?.overflow.increment(1),
      });
    }
    this.lb = createLoadBalancer(config.loadBalancer, endpoints, config.outlierDetection?.minHealthPercent ?? 0);
    for (const e of endpoints) this.#metrics?.endpoint(e);
    if (this.#detector !== undefined) {
      this.#metrics?.ejections.increment(0);
      this.#metrics?.ejected.record(this.#detector.ejectedCount);
    }
  }

  readonly #checker: HealthChecker | undefined;
  readonly #detector: OutlierDetector | undefined;
  readonly #metrics: ClusterHealthMetrics | undefined;

  /** Starts active health checks and the outlier sweep (no-op without them). */
  start(): void {
    this.#checker?.start();
    this.#detector?.start();
  }

  /** Stops them: no timer, check or connection of this cluster is left running. */
  stop(): void {
    this.#checker?.stop();
    this.#detector?.stop();
  }

  get healthChecker(): HealthChecker | undefined {
    return this.#checker;
  }

  get outlierDetector(): OutlierDetector | undefined {
    return this.#detector;
  }

  /**
   * The outcome of one upstream attempt, for outlier detection: the response status (a number, or the
   * response headers with `:status`), or the Envoy flag of a failure the proxy saw itself (UF, UC, UT...).
   * Cheap no-op when the cluster has no outlier detection.
   */
  reportOutcome(endpoint: EndpointState | undefined, outcome: number | string | readonly string[]): void {
    const detector = this.#detector;
    if (detector === undefined || endpoint === undefined) return;
    let status: number | string = 0;
    if (typeof outcome === 'number' || typeof outcome === 'string') status = outcome;
    else for (let i = 0; i < outcome.length; i += 2) if (outcome[i] === ':status') status = Number(outcome[i + 1]) || 0;
    detector.report(endpoint, status);
  }

  #healthChanged(endpoint: EndpointState): void {
    const m = this.#metrics;
    if (m === undefined) return;
    m.endpoint(endpoint);
    if (this.#detector !== undefined) m.ejected.record(this.#detector.ejectedCount);
  }

  /** Health details of an endpoint for /clusters. */
  endpointHealth(endpoint: EndpointState): Record<string, unknown> {
    const h = healthOf(endpoint);
    const out: Record<string, unknown> = {};
    if (this.config.healthCheck !== undefined) {
      out.activeHealthCheck = { healthy: h.checkHealthy, pending: h.checkPending, lastCheck: h.lastCheck, consecutiveSuccesses: h.checkSuccesses, consecutiveFailures: h.checkFailures };
    }
    if (this.config.outlierDetection !== undefined) {
      out.outlier = {
        ejected: h.ejected,
        ejections: h.ejections,
        ...(h.ejected ? { ejectedUntil: new Date(h.ejectedAtMs + h.ejectionMs).toISOString() } : {}),
        consecutive5xx: h.consecutive5xx,
        consecutiveGatewayErrors: h.consecutiveGateway,
      };
    }
    return out;
  }

  get name(): string {
    return this.config.name;
  }

  pick(ctx: LbContext): EndpointState | undefined {
    const stats = this.stats;
    stats.requests++;
    const endpoint = this.lb.pick(ctx);
    if (endpoint === undefined) stats.noEndpoint++;
    else if (this.lb.panic === true) stats.healthyPanic++;
    return endpoint;
  }

  /** The `set-cookie` value generated by the last pick (consistent hash by cookie), if any. */
  get lastSetCookie(): string | undefined {
    return this.lb.lastSetCookie;
  }
}

/** What a connection to one endpoint of a cluster speaks (UpstreamPools.endpointTls). */
export type TlsOptionsFor = (cluster: ClusterConfig, endpoint: EndpointConfig) => EndpointTls;

export class ClusterManager {
  private clusters = new Map<string, Cluster>();
  readonly #metrics: MetricsRegistry | undefined;
  readonly #tlsFor: TlsOptionsFor | undefined;

  /**
   * `metrics`: where clusters publish endpoint health, health check and ejection series.
   * `tlsFor`: the TLS of a connection to an endpoint (the proxy's identity), used by health checks.
   */
  constructor(metrics?: MetricsRegistry, tlsFor?: TlsOptionsFor) {
    this.#metrics = metrics;
    this.#tlsFor = tlsFor;
  }

  /**
   * Installs a new set of clusters. A cluster whose config is unchanged (same JSON key) is kept as is;
   * a changed one is rebuilt with a new load balancer, keeping the EndpointState of endpoints that
   * still exist; clusters missing from `clusters` are dropped. Health checkers and outlier detectors of
   * replaced and dropped clusters stop; those of new clusters start.
   */
  update(clusters: Readonly<Record<string, ClusterConfig>>): void {
    const next = new Map<string, Cluster>();
    const started: Cluster[] = [];
    for (const name of Object.keys(clusters)) {
      const config = clusters[name]!;
      const old = this.clusters.get(name);
      if (old !== undefined && old.config === config) {
        next.set(name, old);
        continue;
      }
      const key = configKey(config);
      if (old !== undefined && old.key === key) {
        next.set(name, old);
        continue;
      }
      // Stop the old cluster's checks before the new one shares its endpoint states.
      old?.stop();
      const cluster = new Cluster(config, old?.endpoints, key, this.#metrics, this.#tlsFor);
      next.set(name, cluster);
      started.push(cluster);
    }
    for (const [name, old] of this.clusters) if (!next.has(name)) old.stop();
    this.clusters = next;
    for (const c of started) c.start();
  }

  get(name: string): Cluster | undefined {
    return this.clusters.get(name);
  }

  list(): Cluster[] {
    return [...this.clusters.values()];
  }

  /** Stops every cluster's health checks and outlier sweeps (proxy shutdown). */
  stop(): void {
    for (const c of this.clusters.values()) c.stop();
  }
}

/** Prometheus series of one cluster's health. */
class ClusterHealthMetrics {
  readonly #registry: MetricsRegistry;
  readonly #cluster: string;
  readonly #endpoints = new Map<string, Metric>();
  readonly #checks = new Map<CheckResult, Metric>();
  #ejections: Metric | undefined;
  #overflow: Metric | undefined;
  #ejected: Metric | undefined;

  constructor(registry: MetricsRegistry, cluster: string) {
    this.#registry = registry;
    this.#cluster = cluster;
  }

  // The outlier series exist only for clusters with outlier detection (created on first use).
  get ejections(): Metric {
    return (this.#ejections ??= this.#registry.counter('wasmesh_proxy_outlier_ejections_total', 'Endpoints ejected by outlier detection', { cluster: this.#cluster }));
  }

  get overflow(): Metric {
    return (this.#overflow ??= this.#registry.counter('wasmesh_proxy_outlier_ejections_overflow_total', 'Ejections refused by maxEjectionPercent', { cluster: this.#cluster }));
  }

  get ejected(): Metric {
    return (this.#ejected ??= this.#registry.gauge('wasmesh_proxy_outlier_ejected_endpoints', 'Endpoints currently ejected by outlier detection', { cluster: this.#cluster }));
  }

  /** Publishes the endpoint's combined health (1 healthy, 0 not). */
  endpoint(e: EndpointState): void {
    let m = this.#endpoints.get(e.key);
    if (m === undefined) {
      m = this.#registry.gauge('wasmesh_proxy_endpoint_healthy', 'Endpoint health: active checks pass and not ejected (1) or not (0)', { cluster: this.#cluster, endpoint: e.key });
      this.#endpoints.set(e.key, m);
    }
    m.record(e.healthy ? 1 : 0);
  }

  check(result: CheckResult): void {
    let m = this.#checks.get(result);
    if (m === undefined) {
      m = this.#registry.counter('wasmesh_proxy_health_checks_total', 'Active health checks by result', { cluster: this.#cluster, result });
      this.#checks.set(result, m);
    }
    m.increment(1);
  }
}
