// Service registry and clusters: ServiceEntry hosts and ports (with WorkloadEntry endpoints) and
// DestinationRule policies become ClusterConfigs named the Envoy/Istio way, outbound|<port>|<subset>|<host>.
//
// Host naming rules (short names, wildcards, exportTo) live here too, because validation uses the
// same rules to decide whether a VirtualService destination exists.

import type {
  ClusterConfig,
  ConnectionPoolConfig,
  EndpointConfig,
  HealthCheckConfig,
  LoadBalancerConfig,
  OutlierDetectionConfig,
  UpstreamProtocol,
  WorkloadIdentity,
} from '../proxy-config.ts';
import {
  ROOT_NAMESPACE,
  namespaceOf,
  type DestinationRule,
  type Labels,
  type LoadBalancerSettings,
  type ConnectionPoolSettings,
  type HealthCheckSpec,
  type OutlierDetectionSpec,
  type PeerAuthentication,
  type PortProtocol,
  type ServiceEntry,
  type ServicePort,
  type Subset,
  type TrafficPolicy,
  type WorkloadEntry,
} from '../documents.ts';
import { durationMs } from './durations.ts';
import { DEFAULT_TRUST_DOMAIN, clusterTls, destinationTls, endpointTlsMode } from './mtls.ts';

// ---------------------------------------------------------------------------------------------
// Host names

export const CLUSTER_DOMAIN = 'svc.cluster.local';

/**
 * Istio's short-name rule for hosts named by VirtualServices and DestinationRules: a name without
 * dots is completed with the namespace of the resource naming it (`reviews` in `default` is
 * `reviews.default.svc.cluster.local`); anything else is taken as written. Lowercased.
 */
export function resolveHost(host: string, namespace: string): string {
  const h = host.toLowerCase();
  return h === '*' || h.includes('.') ? h : `${h}.${namespace}.${CLUSTER_DOMAIN}`;
}

/** Whether `pattern` (a host, "*.suffix" or "*") covers `host`. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === host || pattern === '*') return true;
  return pattern.startsWith('*.') && host.endsWith(pattern.slice(1));
}

/** Larger is more specific: an exact host beats any wildcard, a longer wildcard beats a shorter one. */
export function hostSpecificity(pattern: string): number {
  return pattern.startsWith('*') ? pattern.length : Number.MAX_SAFE_INTEGER;
}

/** `<name>.<namespace>` parts of a Kubernetes-style `<name>.<namespace>.svc.cluster.local` host. */
export function kubernetesName(host: string): { name: string; namespace: string } | undefined {
  const suffix = `.${CLUSTER_DOMAIN}`;
  if (!host.endsWith(suffix)) return undefined;
  const parts = host.slice(0, -suffix.length).split('.');
  return parts.length === 2 && parts[0] && parts[1] ? { name: parts[0], namespace: parts[1] } : undefined;
}

/** Istio exportTo: absent or "*" is everywhere, "." the resource's own namespace, else the listed namespaces. */
export function isExportedTo(exportTo: readonly string[] | undefined, resourceNamespace: string, namespace: string): boolean {
  if (!exportTo || exportTo.length === 0) return true;
  return exportTo.some((e) => e === '*' || e === namespace || (e === '.' && resourceNamespace === namespace));
}

/** Every selector label is present with the same value. An empty selector selects everything. */
export function labelsMatch(selector: Labels | undefined, labels: Labels): boolean {
  if (!selector) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function clusterName(host: string, port: number, subset?: string): string {
  return `outbound|${port}|${subset ?? ''}|${host}`;
}

// ---------------------------------------------------------------------------------------------
// Ports and protocols

const NAME_PROTOCOLS: Readonly<Record<string, PortProtocol>> = {
  http: 'HTTP',
  http2: 'HTTP2',
  grpc: 'GRPC',
  'grpc-web': 'HTTP',
  https: 'HTTPS',
  tls: 'TLS',
  tcp: 'TCP',
  mongo: 'MONGO',
  redis: 'REDIS',
  mysql: 'MYSQL',
};

/**
 * The protocol of a port: as declared, else from the port name's prefix the way Istio reads
 * `<protocol>[-<suffix>]` names, else HTTP (Istio would sniff; we only proxy HTTP).
 */
export function portProtocol(port: ServicePort): PortProtocol {
  if (port.protocol) return port.protocol;
  const name = port.name.toLowerCase();
  return NAME_PROTOCOLS[name.startsWith('grpc-web') ? 'grpc-web' : name.split('-')[0]!] ?? 'HTTP';
}

/** How the proxy talks to a port's endpoints; undefined for ports it does not proxy (TCP, TLS, HTTPS). */
export function upstreamProtocol(protocol: PortProtocol): UpstreamProtocol | undefined {
  switch (protocol) {
    case 'HTTP':
      return 'http1';
    case 'HTTP2':
      return 'http2';
    case 'GRPC':
      return 'grpc';
    default:
      return undefined;
  }
}

/** The ports of a service the proxy routes HTTP to. */
export function httpPorts(entry: ServiceEntry): ServicePort[] {
  return entry.spec.ports.filter((p) => upstreamProtocol(portProtocol(p)) !== undefined);
}

/**
 * Protocols proxied as bytes: TCP and the opaque ones (Envoy proxies Mongo, MySQL and Redis as TCP
 * unless their protocol filters are on, and Istio turns those off), and TLS and HTTPS, passed through
 * and routed by SNI (a sidecar never terminates an app's TLS).
 */
export function isTcpProtocol(protocol: PortProtocol): boolean {
  return protocol === 'TCP' || protocol === 'TLS' || protocol === 'HTTPS' || protocol === 'MONGO' || protocol === 'MYSQL' || protocol === 'REDIS';
}

/** TLS-carrying ports: routed by SNI (tls routes; without a VirtualService, SNI = the service's host). */
export function isTlsProtocol(protocol: PortProtocol): boolean {
  return protocol === 'TLS' || protocol === 'HTTPS';
}

/** The ports of a service the proxy proxies as TCP. */
export function tcpPorts(entry: ServiceEntry): ServicePort[] {
  return entry.spec.ports.filter((p) => isTcpProtocol(portProtocol(p)));
}

// ---------------------------------------------------------------------------------------------
// Service registry

export interface Service {
  /** Lowercased host, as written in the ServiceEntry. */
  readonly host: string;
  readonly namespace: string;
  readonly entry: ServiceEntry;
}

/**
 * Hosts of a set of ServiceEntries. When two entries declare the same host the first one wins, so
 * callers pass entries in a deterministic order.
 */
export class ServiceRegistry {
  readonly #services = new Map<string, Service>();

  constructor(entries: readonly ServiceEntry[]) {
    for (const entry of entries) {
      for (const raw of entry.spec.hosts) {
        const host = raw.toLowerCase();
        if (!this.#services.has(host)) this.#services.set(host, { host, namespace: namespaceOf(entry), entry });
      }
    }
  }

  /** All services, in registration order. */
  all(): Service[] {
    return [...this.#services.values()];
  }

  /** The service declaring exactly this (lowercased) host. */
  get(host: string): Service | undefined {
    return this.#services.get(host);
  }

  /**
   * The service a host named by a resource in `namespace` refers to: the host as written if a
   * ServiceEntry declares it literally, else its short-name completion.
   */
  lookup(host: string, namespace: string): Service | undefined {
    return this.#services.get(host.toLowerCase()) ?? this.#services.get(resolveHost(host, namespace));
  }
}

// ---------------------------------------------------------------------------------------------
// Destination rules

/**
 * The DestinationRule that applies to `host` for a workload, the way Istio looks it up: rules in
 * the workload's namespace first, then in the service's namespace, then in the root namespace,
 * then anywhere else; within those, the most specific host, then the name.
 * `rules` must already be limited to those visible to (and selecting) the workload.
 */
export function findDestinationRule(
  rules: readonly DestinationRule[],
  host: string,
  serviceNamespace: string | undefined,
  workloadNamespace: string,
): DestinationRule | undefined {
  const rank = (ns: string): number =>
    ns === workloadNamespace ? 0 : ns === serviceNamespace ? 1 : ns === ROOT_NAMESPACE ? 2 : 3;
  let best: { rule: DestinationRule; key: [number, number, string] } | undefined;
  for (const rule of rules) {
    const ns = namespaceOf(rule);
    const pattern = resolveHost(rule.spec.host, ns);
    if (!hostMatches(pattern, host)) continue;
    const key: [number, number, string] = [rank(ns), -hostSpecificity(pattern), `${ns}/${rule.metadata.name}`];
    if (!best || compareKeys(key, best.key) < 0) best = { rule, key };
  }
  return best?.rule;
}

function compareKeys(a: [number, number, string], b: [number, number, string]): number {
  return a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);
}

interface PolicyFields {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetectionSpec;
  /** wasmesh extension. */
  healthCheck?: HealthCheckSpec;
}

/**
 * Istio's merge of traffic policies for one port: the rule's policy, replaced by its port-level
 * settings for the port; then the subset's fields override field by field, and the subset's
 * port-level settings replace everything. Port-level settings never inherit (a field they leave
 * out takes its default), as Istio documents.
 */
export function effectivePolicy(top: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): PolicyFields {
  let merged = portLevel(top, port) ?? {
    loadBalancer: top?.loadBalancer,
    connectionPool: top?.connectionPool,
    outlierDetection: top?.outlierDetection,
    healthCheck: top?.healthCheck,
  };
  if (subset) {
    merged = {
      loadBalancer: subset.loadBalancer ?? merged.loadBalancer,
      connectionPool: subset.connectionPool ?? merged.connectionPool,
      outlierDetection: subset.outlierDetection ?? merged.outlierDetection,
      healthCheck: subset.healthCheck ?? merged.healthCheck,
    };
    merged = portLevel(subset, port) ?? merged;
  }
  return merged;
}

function portLevel(policy: TrafficPolicy | undefined, port: number): PolicyFields | undefined {
  const p = policy?.portLevelSettings?.find((s) => s.port.number === port);
  return p ? { loadBalancer: p.loadBalancer, connectionPool: p.connectionPool, outlierDetection: p.outlierDetection, healthCheck: p.healthCheck } : undefined;
}

/**
 * Istio's default algorithm is LEAST_REQUEST, not ROUND_ROBIN: istio/istio#37220 switched the
 * default in 1.14 ("Switch default LB algorithm to LEAST_REQUEST"), and pilot's
 * defaultLBAlgorithm() returns LEAST_REQUEST. The DestinationRule API text also recommends it.
 */
export const DEFAULT_LOAD_BALANCER: LoadBalancerConfig = { simple: 'LEAST_REQUEST' };

export function translateLoadBalancer(lb: LoadBalancerSettings | undefined): LoadBalancerConfig {
  const hash = lb?.consistentHash;
  if (hash) {
    const out: {
      httpHeaderName?: string;
      httpCookie?: { name: string; path?: string; ttlSeconds?: number };
      useSourceIp?: boolean;
      httpQueryParameterName?: string;
      minimumRingSize?: number;
    } = {};
    if (hash.httpHeaderName !== undefined) out.httpHeaderName = hash.httpHeaderName.toLowerCase();
    if (hash.httpCookie) {
      const ttl = durationMs(hash.httpCookie.ttl);
      out.httpCookie = {
        name: hash.httpCookie.name,
        ...(hash.httpCookie.path !== undefined ? { path: hash.httpCookie.path } : {}),
        ...(ttl !== undefined ? { ttlSeconds: ttl / 1000 } : {}),
      };
    }
    if (hash.useSourceIp !== undefined) out.useSourceIp = hash.useSourceIp;
    if (hash.httpQueryParameterName !== undefined) out.httpQueryParameterName = hash.httpQueryParameterName;
    if (hash.minimumRingSize !== undefined) out.minimumRingSize = hash.minimumRingSize;
    return { consistentHash: out };
  }
  switch (lb?.simple) {
    case 'ROUND_ROBIN':
    case 'RANDOM':
    case 'PASSTHROUGH':
    case 'LEAST_REQUEST':
      return { simple: lb.simple };
    case 'LEAST_CONN': // Istio's deprecated alias
      return { simple: 'LEAST_REQUEST' };
    default: // absent or UNSPECIFIED
      return DEFAULT_LOAD_BALANCER;
  }
}

/** Istio numbers are proto3 scalars: 0 means "not set". */
function positive(n: number | undefined): number | undefined {
  return n !== undefined && n > 0 ? n : undefined;
}

export function translateConnectionPool(pool: ConnectionPoolSettings | undefined): ConnectionPoolConfig {
  const out: {
    maxConnections?: number;
    connectTimeoutMs?: number;
    maxRequestsPerConnection?: number;
    idleTimeoutMs?: number;
    http1MaxPendingRequests?: number;
    http2MaxRequests?: number;
    tcpIdleTimeoutMs?: number;
  } = {};
  const set = <K extends keyof typeof out>(key: K, value: number | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  set('maxConnections', positive(pool?.tcp?.maxConnections));
  set('connectTimeoutMs', positive(durationMs(pool?.tcp?.connectTimeout)));
  set('maxRequestsPerConnection', positive(pool?.http?.maxRequestsPerConnection));
  // One idle timeout in our pool: HTTP's (no active requests) when given, else TCP's.
  set('idleTimeoutMs', positive(durationMs(pool?.http?.idleTimeout ?? pool?.tcp?.idleTimeout)));
  set('http1MaxPendingRequests', positive(pool?.http?.http1MaxPendingRequests));
  set('http2MaxRequests', positive(pool?.http?.http2MaxRequests));
  // TCP proxying's own idle timeout: unlike the proto3 numbers above, "0s" is a value (no timeout).
  set('tcpIdleTimeoutMs', durationMs(pool?.tcp?.idleTimeout));
  return out;
}

/**
 * Istio's outlierDetection with its defaults (consecutive5xxErrors 5, gateway errors off, interval 10s,
 * baseEjectionTime 30s, maxEjectionPercent 10, minHealthPercent 0). Absent: no outlier detection, as in
 * Istio. consecutive5xxErrors 0 disables that detection (Istio sets its enforcement to 0); the other
 * numbers are proto3 scalars where 0 means "not set", except the two percentages, where 0 is a value.
 */
export function translateOutlierDetection(od: OutlierDetectionSpec | undefined): OutlierDetectionConfig | undefined {
  if (od === undefined) return undefined;
  return {
    consecutive5xxErrors: od.consecutive5xxErrors ?? 5,
    consecutiveGatewayErrors: od.consecutiveGatewayErrors ?? 0,
    intervalMs: positive(durationMs(od.interval)) ?? 10_000,
    baseEjectionTimeMs: positive(durationMs(od.baseEjectionTime)) ?? 30_000,
    maxEjectionPercent: od.maxEjectionPercent ?? 10,
    minHealthPercent: od.minHealthPercent ?? 0,
  };
}

/** Defaults of the healthCheck extension (Kubernetes readiness probe's: 10s, 1s, 1 success, 3 failures). */
export const HEALTH_CHECK_DEFAULTS = { intervalMs: 10_000, timeoutMs: 1_000, healthyThreshold: 1, unhealthyThreshold: 3 } as const;

/** The wasmesh healthCheck extension; expected statuses as Envoy ranges [start, end), default [200, 201). */
export function translateHealthCheck(hc: HealthCheckSpec | undefined): HealthCheckConfig | undefined {
  if (hc === undefined) return undefined;
  let check: HealthCheckConfig['check'];
  if (hc.http) {
    const statuses = (hc.http.expectedStatuses ?? [200]).map((s) => (typeof s === 'number' ? { start: s, end: s + 1 } : { start: s.start, end: s.end }));
    check = { kind: 'http', path: hc.http.path, ...(hc.http.host !== undefined ? { host: hc.http.host } : {}), expectedStatuses: statuses };
  } else if (hc.grpc) {
    check = { kind: 'grpc', serviceName: hc.grpc.serviceName ?? '' };
  } else if (hc.tcp) {
    check = { kind: 'tcp' };
  } else {
    return undefined; // the schema requires one of them
  }
  return {
    intervalMs: positive(durationMs(hc.interval)) ?? HEALTH_CHECK_DEFAULTS.intervalMs,
    timeoutMs: positive(durationMs(hc.timeout)) ?? HEALTH_CHECK_DEFAULTS.timeoutMs,
    healthyThreshold: positive(hc.healthyThreshold) ?? HEALTH_CHECK_DEFAULTS.healthyThreshold,
    unhealthyThreshold: positive(hc.unhealthyThreshold) ?? HEALTH_CHECK_DEFAULTS.unhealthyThreshold,
    check,
  };
}

// ---------------------------------------------------------------------------------------------
// Clusters

export interface ClusterInputs {
  readonly registry: ServiceRegistry;
  /** WorkloadEntries, in a deterministic order. */
  readonly workloadEntries: readonly WorkloadEntry[];
  /** DestinationRules visible to and selecting the workload. */
  readonly destinationRules: readonly DestinationRule[];
  readonly workload: WorkloadIdentity;
  /** SPIFFE trust domain of the expected peer identities (default cluster.local). */
  readonly trustDomain?: string;
  /** Every PeerAuthentication (sorted): an endpoint whose own policy is DISABLE gets no auto mTLS. */
  readonly peerAuthentications?: readonly PeerAuthentication[];
}

/**
 * Builds clusters on demand and remembers them. `addService` creates the clusters of a service
 * (each HTTP port, and each subset of its DestinationRule); `ensure` returns the name of the cluster
 * a route destination needs, creating it if no service declared it (a fully qualified host without
 * ServiceEntry gets a DNS endpoint for the host itself).
 */
export class ClusterTable {
  readonly #in: ClusterInputs;
  readonly #clusters = new Map<string, ClusterConfig>();

  constructor(inputs: ClusterInputs) {
    this.#in = inputs;
  }

  addService(service: Service): void {
    const rule = this.#rule(service.host, service.namespace);
    for (const port of [...httpPorts(service.entry), ...tcpPorts(service.entry)]) {
      this.ensure(service.host, port.number);
      for (const subset of rule?.spec.subsets ?? []) this.ensure(service.host, port.number, subset.name);
    }
  }

  /** The port a destination without port goes to: the service's first HTTP port (then its first port, then 80). */
  defaultPort(host: string): number {
    const entry = this.#in.registry.get(host)?.entry;
    return (entry && (httpPorts(entry)[0] ?? entry.spec.ports[0])?.number) ?? 80;
  }

  /** Name of the cluster for a resolved host, port and optional subset; created if new. */
  ensure(host: string, port: number, subset?: string): string {
    const name = clusterName(host, port, subset);
    if (!this.#clusters.has(name)) this.#clusters.set(name, this.#build(host, port, subset));
    return name;
  }

  /** A cluster built so far, by name. */
  get(name: string): ClusterConfig | undefined {
    return this.#clusters.get(name);
  }

  /** Adds a cluster built elsewhere (the TLS cluster of an https JWKS); a name already taken is kept. */
  add(cluster: ClusterConfig): void {
    if (!this.#clusters.has(cluster.name)) this.#clusters.set(cluster.name, cluster);
  }

  /** The clusters built so far, keyed by name, in name order. */
  toRecord(): Record<string, ClusterConfig> {
    return Object.fromEntries([...this.#clusters.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  #rule(host: string, serviceNamespace: string | undefined): DestinationRule | undefined {
    return findDestinationRule(this.#in.destinationRules, host, serviceNamespace, this.#in.workload.namespace);
  }

  #build(host: string, portNumber: number, subsetName: string | undefined): ClusterConfig {
    const service = this.#in.registry.get(host);
    const rule = this.#rule(host, service?.namespace);
    const subset: Subset | undefined = subsetName ? rule?.spec.subsets?.find((s) => s.name === subsetName) : undefined;
    const port: ServicePort | undefined = service?.entry.spec.ports.find((p) => p.number === portNumber);
    const policy = effectivePolicy(rule?.spec.trafficPolicy, subset?.trafficPolicy, portNumber);

    let protocol: UpstreamProtocol = port && isTcpProtocol(portProtocol(port)) ? 'tcp' : ((port && upstreamProtocol(portProtocol(port))) ?? 'http1');
    if (protocol === 'http1' && policy.connectionPool?.http?.h2UpgradePolicy === 'UPGRADE') protocol = 'http2';

    let endpoints = service && port ? this.#endpoints(service, port) : service ? [] : [dnsEndpoint(host, portNumber)];
    if (subsetName) {
      // A subset no applicable DestinationRule defines has no endpoints (Istio: "no healthy upstream").
      endpoints = subset ? endpoints.filter((e) => labelsMatch(subset.labels, e.labels)) : [];
    }

    // resolution NONE is Istio's ORIGINAL_DST cluster: the caller's destination address, no balancing.
    const loadBalancer =
      service?.entry.spec.resolution === 'NONE' ? ({ simple: 'PASSTHROUGH' } as const) : translateLoadBalancer(policy.loadBalancer);

    const outlierDetection = translateOutlierDetection(policy.outlierDetection);
    const healthCheck = translateHealthCheck(policy.healthCheck);
    const tls = clusterTls(host, service, destinationTls(rule?.spec.trafficPolicy, subset?.trafficPolicy, portNumber), this.#in.workloadEntries, this.#in.trustDomain ?? DEFAULT_TRUST_DOMAIN);
    return {
      name: clusterName(host, portNumber, subsetName),
      host,
      port: portNumber,
      ...(subsetName !== undefined ? { subset: subsetName } : {}),
      protocol,
      endpoints,
      loadBalancer,
      connectionPool: translateConnectionPool(policy.connectionPool),
      ...(outlierDetection !== undefined ? { outlierDetection } : {}),
      ...(healthCheck !== undefined ? { healthCheck } : {}),
      ...(tls !== undefined ? { tls } : {}),
    };
  }

  #endpoints(service: Service, port: ServicePort): EndpointConfig[] {
    const spec = service.entry.spec;
    const endpointPort = (ports: Readonly<Record<string, number>> | undefined): number =>
      ports?.[port.name] ?? port.targetPort ?? port.number;
    const out: EndpointConfig[] = [];
    // Endpoints of a ServiceEntry, inline or WorkloadEntries, are workloads of the service's namespace.
    const endpoint = (address: string, port: number, labels: Labels, weight: number | undefined): EndpointConfig => {
      const tlsMode = endpointTlsMode(this.#in.peerAuthentications ?? [], service.namespace, { labels, port });
      return { address, port, labels: { ...labels }, weight: positive(weight) ?? 1, ...(tlsMode ? { tlsMode } : {}) };
    };
    for (const e of spec.endpoints ?? []) out.push(endpoint(e.address, endpointPort(e.ports), e.labels ?? {}, e.weight));
    if (spec.workloadSelector) {
      for (const we of this.#in.workloadEntries) {
        if (namespaceOf(we) !== service.namespace) continue;
        const labels = we.spec.labels ?? {};
        if (!labelsMatch(spec.workloadSelector.labels, labels)) continue;
        out.push(endpoint(we.spec.address, endpointPort(we.spec.ports), labels, we.spec.weight));
      }
    }
    // DNS without endpoints: Istio resolves the host itself.
    if (out.length === 0 && spec.resolution === 'DNS' && !spec.workloadSelector && !service.host.startsWith('*')) {
      out.push(dnsEndpoint(service.host, port.targetPort ?? port.number));
    }
    return out;
  }
}

function dnsEndpoint(host: string, port: number): EndpointConfig {
  return { address: host, port, labels: {}, weight: 1 };
}
