import type { ProxyTelemetryConfig } from './telemetry/proxy-telemetry.ts';

// The proxy's internal configuration: what the router, clusters, filter chain and listeners run on.
// Built from Istio-style documents (standalone: translated locally; managed: sent by the orchestrator),
// validated before it gets here, immutable once built, versioned by content hash.

export type StringMatch = { exact: string } | { prefix: string } | { regex: string };

/** A header condition: a string match, or presence (`present: true`) / absence (`present: false`). */
export type HeaderMatch = StringMatch | { present: boolean };

export interface RouteMatch {
  /** Informational (VirtualService match name). */
  name?: string;
  uri?: StringMatch;
  method?: StringMatch;
  authority?: StringMatch;
  /** Lowercase header name -> condition. */
  headers?: Readonly<Record<string, HeaderMatch>>;
  /** Headers that must NOT match (Istio `withoutHeaders`). */
  withoutHeaders?: Readonly<Record<string, HeaderMatch>>;
  queryParams?: Readonly<Record<string, StringMatch | { present: boolean }>>;
  /** Match only requests arriving on this port (the destination port of the listener's original target). */
  port?: number;
}

export interface HeaderOperations {
  set?: Readonly<Record<string, string>>;
  add?: Readonly<Record<string, string>>;
  remove?: readonly string[];
}

export interface WeightedCluster {
  /** Name of a ClusterConfig in ProxyConfig.clusters. */
  cluster: string;
  /** Share of requests, 0..100; the weights of one route add up to 100. */
  weight: number;
  /** Header operations that apply only when this destination is chosen. */
  requestHeaders?: HeaderOperations;
  responseHeaders?: HeaderOperations;
}

export type RouteAction =
  | {
      kind: 'forward';
      destinations: readonly WeightedCluster[];
      /** Replaces the matched uri prefix (or the whole path for exact/regex matches) with this. */
      rewriteUri?: string;
      rewriteAuthority?: string;
      /** 0 = no timeout (Istio's default). Covers the whole request, retries included. */
      timeoutMs: number;
      /** Absent: no retries (the translator writes Istio's default policy when a rule sets none). */
      retry?: RetryPolicy;
      /** Copy a share of requests to another cluster (fire and forget). */
      mirror?: MirrorPolicy;
    }
  | { kind: 'redirect'; uri?: string; authority?: string; scheme?: string; port?: number; status: number }
  | { kind: 'direct'; status: number; body?: string };

/** VirtualService `retries` (Envoy retry_policy). The proxy applies it in its http/retry-policy.ts. */
export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`); 0 disables retrying. */
  attempts: number;
  /** Timeout of each try, 0 = none (the route timeout still bounds the whole request). */
  perTryTimeoutMs: number;
  /** Envoy retry_on / retry_grpc_on names: 5xx, gateway-error, reset, connect-failure, refused-stream, retriable-4xx, retriable-status-codes, cancelled, deadline-exceeded, resource-exhausted, unavailable. */
  retryOn: readonly string[];
  /** Statuses retried under `retriable-status-codes`. */
  retriableStatusCodes: readonly number[];
}

/** VirtualService `mirror` + `mirrorPercentage`. */
export interface MirrorPolicy {
  /** Name of a ClusterConfig in ProxyConfig.clusters. */
  cluster: string;
  /** Share of requests mirrored, 0..100 (fractions allowed). */
  percentage: number;
}

export interface RouteConfig {
  /** "<virtual service name>.<namespace>/<index or route name>", for logs and config_dump. */
  name: string;
  /** Any of these matches (an empty list matches every request). */
  match: readonly RouteMatch[];
  action: RouteAction;
  requestHeaders?: HeaderOperations;
  responseHeaders?: HeaderOperations;
}

export interface VirtualHostConfig {
  name: string;
  /** Host names (lowercase, without port) this virtual host answers for; `*` prefix wildcards allowed ("*.example.com"). */
  domains: readonly string[];
  routes: readonly RouteConfig[];
}

export type LoadBalancerConfig =
  | { simple: 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'PASSTHROUGH' }
  | {
      consistentHash: {
        httpHeaderName?: string;
        httpCookie?: { name: string; path?: string; ttlSeconds?: number };
        useSourceIp?: boolean;
        httpQueryParameterName?: string;
        /** Ring size (default 1024, Istio's ringHash.minimumRingSize). */
        minimumRingSize?: number;
      };
    };

export interface EndpointConfig {
  address: string;
  port: number;
  labels: Readonly<Record<string, string>>;
  /** Relative weight (WorkloadEntry weight), default 1. */
  weight: number;
  /**
   * 'istio': the endpoint runs a sidecar that takes Istio mTLS on this port (it carries the label
   * security.istio.io/tlsMode=istio and its PeerAuthentication does not DISABLE mTLS there). Absent:
   * plaintext only. Read by clusters under auto mTLS (ClusterTlsConfig.auto), like Envoy's
   * transport_socket_matches on the endpoint's tlsMode metadata.
   */
  tlsMode?: 'istio';
}

/** Istio's label for workloads that run a sidecar (value "istio"; "disabled": no mTLS). */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

export interface ConnectionPoolConfig {
  /** Upstream connections per endpoint (undici pool size for HTTP/1.1). Default unbounded (Istio: 2^32-1). */
  maxConnections?: number;
  connectTimeoutMs?: number;
  /** 1 disables keep-alive. */
  maxRequestsPerConnection?: number;
  idleTimeoutMs?: number;
  /** Requests waiting for an HTTP/1.1 connection, across the cluster (circuit breaker). Default unbounded. */
  http1MaxPendingRequests?: number;
  /** Concurrent requests to the cluster (circuit breaker; HTTP/1.1 too, like Envoy max_requests). Default unbounded. */
  http2MaxRequests?: number;
  /** Concurrent retries to the cluster (circuit breaker). Default unbounded. */
  maxRetries?: number;
  /**
   * TCP proxying (protocol 'tcp' clusters): close a proxied connection after this long without a byte
   * either way (DestinationRule connectionPool.tcp.idleTimeout). Absent: Istio's default, 1 h; 0: never.
   */
  tcpIdleTimeoutMs?: number;
}

/**
 * How the proxy talks to a cluster's endpoints. 'tcp': bytes proxied as they come (ports of protocol
 * TCP, TLS, HTTPS and the opaque ones, Mongo, MySQL, Redis); an HTTP route to such a cluster speaks HTTP/1.1.
 */
export type UpstreamProtocol = 'http1' | 'http2' | 'grpc' | 'tcp';

export interface ClusterConfig {
  /** Envoy-style name: outbound|<port>|<subset>|<host> (inbound|<port>||<workload> for the local app). */
  name: string;
  /** The service host this cluster belongs to (ServiceEntry host). */
  host: string;
  port: number;
  subset?: string;
  protocol: UpstreamProtocol;
  endpoints: readonly EndpointConfig[];
  loadBalancer: LoadBalancerConfig;
  connectionPool: ConnectionPoolConfig;
  /** Passive health checking (DestinationRule outlierDetection); absent: none. */
  outlierDetection?: OutlierDetectionConfig;
  /** Active health checking (wasmesh extension trafficPolicy.healthCheck); absent: none. */
  healthCheck?: HealthCheckConfig;
  /** Upstream TLS (DestinationRule tls, or Istio auto mTLS); absent: plaintext. */
  tls?: ClusterTlsConfig;
}

/**
 * How the proxy talks to a cluster's endpoints.
 * - ISTIO_MUTUAL: mTLS with the workload certificate; the peer's URI SAN must be one of
 *   subjectAltNames (any SPIFFE id of the trust bundle when empty). With `auto` (no DestinationRule
 *   asked for it: Istio auto mTLS) only endpoints whose tlsMode is 'istio' get it, the others
 *   plaintext, and a proxy without any identity sends plaintext. Without `auto` (a DestinationRule
 *   said ISTIO_MUTUAL) every endpoint gets it. Either way a proxy whose certificate is missing or
 *   expired fails the request (503) rather than sending plaintext.
 * - SIMPLE: TLS (the server is verified against caCertificates, else the system roots; its name
 *   against subjectAltNames, else sni, else the cluster host). MUTUAL: the same with the client
 *   certificate and key from clientCertificate and privateKey. Paths are on the proxy's host.
 * - DISABLE: plaintext.
 */
export interface ClusterTlsConfig {
  mode: 'ISTIO_MUTUAL' | 'SIMPLE' | 'MUTUAL' | 'DISABLE';
  subjectAltNames: readonly string[];
  auto?: boolean;
  sni?: string;
  caCertificates?: string;
  clientCertificate?: string;
  privateKey?: string;
  insecureSkipVerify?: boolean;
}

/** PeerAuthentication mode of the inbound listener. */
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** Inbound mTLS (PeerAuthentication); absent: PERMISSIVE, as Istio. Active only when the proxy has an identity. */
export interface MtlsConfig {
  mode: MtlsMode;
  /** Per port of the app (the inbound destination port). */
  portLevel?: Readonly<Record<number, MtlsMode>>;
}

/** Istio outlierDetection with defaults filled in (see upstream/outlier-detector.ts). */
export interface OutlierDetectionConfig {
  /** Consecutive 5xx (and local-origin failures) before ejection; 0 disables. */
  consecutive5xxErrors: number;
  /** Consecutive 502/503/504 (and local-origin failures) before ejection; 0 disables. */
  consecutiveGatewayErrors: number;
  /** Sweep period: ejected endpoints return at the first sweep after their ejection time. */
  intervalMs: number;
  /** Ejection time = baseEjectionTimeMs x times ejected (capped at max(300 s, base)). */
  baseEjectionTimeMs: number;
  /** No new ejection while this share of endpoints (0..100) is already ejected. */
  maxEjectionPercent: number;
  /** Panic threshold (0..100): below this healthy share, balance over all endpoints and eject nothing. */
  minHealthPercent: number;
}

/** Active health check (Envoy cluster health_checks semantics; see upstream/health-checker.ts). */
export interface HealthCheckConfig {
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes that bring an unhealthy endpoint back. */
  healthyThreshold: number;
  /** Consecutive failures that mark a healthy endpoint unhealthy. */
  unhealthyThreshold: number;
  check:
    | {
        kind: 'http';
        path: string;
        /** Host header; default the cluster's host. */
        host?: string;
        /** Accepted statuses as half-open ranges [start, end) (Envoy Int64Range); default [[200, 201)]. */
        expectedStatuses: readonly { start: number; end: number }[];
      }
    | { kind: 'grpc'; serviceName: string }
    | { kind: 'tcp' };
}

export type FilterPhase = 'AUTHN' | 'AUTHZ' | 'STATS' | 'UNSPECIFIED_PHASE';

export interface FilterBinding {
  /** WasmPlugin metadata name and namespace. */
  name: string;
  namespace: string;
  phase: FilterPhase;
  priority: number;
  /** Module location as written (file:// path, or digest:sha256 in managed mode). */
  url: string;
  /** Resolved local path for file:// modules. */
  path?: string;
  /** Expected sha256 (hex), checked when given. */
  sha256?: string;
  /** Root id (WasmPlugin pluginName). */
  rootId: string;
  vmId: string;
  pluginConfig: unknown;
  failStrategy: 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical';
  env: Readonly<Record<string, string>>;
  /**
   * CPU budget of each callback, in fuel units (about one wasm instruction each); past it the VM traps
   * (cause cpu_budget). Absent: the runtime's default (1e9). WasmPlugin spec.cpuBudget.
   */
  cpuBudget?: number;
  /** The same for VM startup (_initialize, on_vm_start, on_configure). Absent: the runtime's default (2e10). */
  startupCpuBudget?: number;
  /**
   * VMs in the plugin's pool (1..16): streams are spread over them and a trap fails only the streams of
   * the VM that trapped. Absent: 1. WasmPlugin spec.vms.
   */
  vms?: number;
  /**
   * A second version of the module taking a share of the streams (a canary rollout): each stream picks
   * by a stable hash of its x-request-id, so a request id lands on the same version on every proxy.
   * Same settings as the binding, only the module differs.
   */
  canary?: CanaryModule;
}

export interface CanaryModule {
  /** Module location as written (digest:sha256:<hex>, or file://). */
  url: string;
  /** Resolved local path. */
  path?: string;
  /** Expected sha256 (hex). */
  sha256?: string;
  /** Share of streams, 0..100 (fractions allowed). */
  weight: number;
}

export interface WorkloadIdentity {
  name: string;
  namespace: string;
  labels: Readonly<Record<string, string>>;
  serviceAccount: string;
}

/**
 * TLS a gateway listener terminates (Gateway server tls SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL).
 * The certificate comes from files on the gateway proxy's host (re-read when they change), from a
 * TLSSecret (`credential`, sent to this gateway only; redacted in config_dump), or, for
 * ISTIO_MUTUAL, from the proxy's workload identity.
 */
export interface GatewayTlsConfig {
  /** SNI names this certificate serves (`*` and `*.x` wildcards); the listener's first certificate is its default. */
  hosts: readonly string[];
  /** Absent: SIMPLE. */
  mode?: 'MUTUAL' | 'OPTIONAL_MUTUAL' | 'ISTIO_MUTUAL';
  /** PEM files (serverCertificate, privateKey, caCertificates). */
  certificate?: string;
  privateKey?: string;
  caCertificates?: string;
  /** credentialName: the TLSSecret's PEM (client roots from it or `<name>-cacert`). */
  credential?: { name: string; cert: string; key: string; cacert?: string; sha256: string };
  /** Client certificate checks of the mutual modes: any SAN listed; SPKI or certificate hash listed. */
  subjectAltNames?: readonly string[];
  /** base64 sha256 of the SPKI. */
  verifyCertificateSpki?: readonly string[];
  /** hex sha256 of the DER, lowercase, no colons. */
  verifyCertificateHash?: readonly string[];
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL names of TLS 1.2 cipher suites; absent: Node's defaults. */
  cipherSuites?: readonly string[];
}

/**
 * One L4 route (VirtualService `tcp` or `tls` rule): the connection goes to one of `destinations`,
 * picked by weight per connection. Matches are checked when the connection starts; any of them
 * (or none written) selects the route. `sourceLabels` and `gateways` were decided by translation.
 */
export interface TcpRouteConfig {
  /** "<virtual service name>.<namespace>/tcp/<index>" (or tls/), or "<host>/default" for a service's own route. */
  name: string;
  match: readonly TcpRouteMatch[];
  /** Weights add up to 100 (a single destination has 100). */
  destinations: readonly { cluster: string; weight: number }[];
}

export interface TcpRouteMatch {
  /** The connection's destination port: the service port of the listener it arrived on. */
  port?: number;
  /**
   * IPv4/IPv6 addresses or CIDR blocks; the connection's destination address must be in one. Without
   * iptables capture that address is the listener's own (the address the app connected to).
   */
  destinationSubnets?: readonly string[];
  /** TLS routes only: SNI names (`*.x` and `*` wildcards), lowercase; the ClientHello's must match one. */
  sniHosts?: readonly string[];
}

/**
 * L4 routing of one service port: what a connection to that port goes to. A connection whose first
 * bytes are a TLS ClientHello is matched against `tlsRoutes` by its SNI first (the bytes are peeked,
 * never terminated), then every connection against `tcpRoutes`; no match closes it (response flag NR).
 */
export interface TcpPortConfig {
  port: number;
  tlsRoutes: readonly TcpRouteConfig[];
  tcpRoutes: readonly TcpRouteConfig[];
}

/** One listener of a gateway proxy (the Gateway servers on one port). See mesh/src/translate/gateways.ts. */
export interface GatewayListenerConfig {
  /** "gateway|<port>". */
  name: string;
  port: number;
  /** Address to bind; absent: the proxy's host (loopback unless told otherwise). */
  bind?: string;
  /**
   * HTTP: HTTP/1.1 and h2c. HTTPS: TLS terminated with `tls`, then HTTP/1.1 or h2 by ALPN. TCP: bytes
   * routed by `tcp` (tcp routes). TLS: TLS passed through, routed by the ClientHello's SNI (`tcp`'s tls routes).
   */
  protocol: 'HTTP' | 'HTTPS' | 'TCP' | 'TLS';
  tls?: readonly GatewayTlsConfig[];
  /** Routing on this port, by :authority; requests to other hosts get 404. Empty for TCP and TLS. */
  virtualHosts: readonly VirtualHostConfig[];
  /** TCP and TLS listeners: their L4 routes. */
  tcp?: TcpPortConfig;
}

export interface ProxyConfig {
  /** sha256 of the canonical JSON of everything below: equal configs have equal versions. */
  readonly version: string;
  readonly workload: WorkloadIdentity;
  /** Outbound routing: the request's :authority picks a virtual host. */
  readonly virtualHosts: readonly VirtualHostConfig[];
  readonly clusters: Readonly<Record<string, ClusterConfig>>;
  /** Filters on the inbound side (WasmPlugin match SERVER), in execution order. */
  readonly inboundFilters: readonly FilterBinding[];
  /** Filters on the outbound side (CLIENT), in execution order. */
  readonly outboundFilters: readonly FilterBinding[];
  /** Inbound peer authentication (PeerAuthentication); absent: PERMISSIVE. */
  readonly mtls?: MtlsConfig;
  /**
   * Present for a gateway proxy (a workload labelled wasmesh.io/proxy-role=gateway): its listeners.
   * A gateway runs outboundFilters on them (client side: telemetry reports reporter="source").
   */
  readonly gateway?: { readonly listeners: readonly GatewayListenerConfig[] };
  /** Traces and access logs to backends (Telemetry + MeshConfig); absent: neither. */
  readonly telemetry?: ProxyTelemetryConfig;
  /**
   * Outbound L4 routing per service port (TCP, TLS, HTTPS and opaque ports of the services the
   * workload sees): what the proxy's outbound TCP listeners (ProxyOptions.tcpOutbound) route with.
   * Absent: no such service.
   */
  readonly tcp?: { readonly outbound: readonly TcpPortConfig[] };
  /**
   * The MeshConfig's outboundTrafficPolicy.mode when it is REGISTRY_ONLY: a connection captured by
   * iptables to a port no service has is closed (BlackHoleCluster). Absent: ALLOW_ANY, Istio's
   * default: passed through to its original destination (PassthroughCluster).
   */
  readonly outboundTrafficPolicy?: 'REGISTRY_ONLY';
  /**
   * WasmPlugins of type NETWORK: proxy-wasm network filters the TCP proxy runs on each connection
   * (inbound: the inbound TCP listeners, SERVER; outbound: the outbound TCP listeners and every TCP
   * listener of a gateway, CLIENT), in execution order. Absent: none (HTTP filters never run here,
   * and these never run on HTTP requests).
   */
  readonly networkFilters?: { readonly inbound: readonly FilterBinding[]; readonly outbound: readonly FilterBinding[] };
}

/** Every filter binding of a config: the HTTP chains' and the network chains' (modules to fetch, check, override). */
export function allFilterBindings(config: Pick<ProxyConfig, 'inboundFilters' | 'outboundFilters' | 'networkFilters'>): FilterBinding[] {
  const net = config.networkFilters;
  return [...config.inboundFilters, ...config.outboundFilters, ...(net ? [...net.inbound, ...net.outbound] : [])];
}

/** The config with `f` applied to every binding (HTTP and network chains alike). */
export function mapFilterBindings<C extends Pick<ProxyConfig, 'inboundFilters' | 'outboundFilters' | 'networkFilters'>>(config: C, f: (b: FilterBinding) => FilterBinding): C {
  const net = config.networkFilters;
  return {
    ...config,
    inboundFilters: config.inboundFilters.map(f),
    outboundFilters: config.outboundFilters.map(f),
    ...(net ? { networkFilters: { inbound: net.inbound.map(f), outbound: net.outbound.map(f) } } : {}),
  };
}
