// One per listener (inbound or outbound): owns the per-request flow's shared state, which the proxy
// swaps whole on a config change (in-flight requests keep what they started with).
import type { MetricsRegistry, StreamInfo } from '../../../wasm/src/index.ts';
import type { ProxyConfig, RouteConfig, UpstreamProtocol, VirtualHostConfig } from '../../../mesh/src/proxy-config.ts';
import type { AccessLog } from '../access-log.ts';
import type { FilterChain } from '../filter-chain/chain.ts';
import { createStreamInfo } from '../filter-chain/stream-info.ts';
import type { DownstreamRequest, DownstreamResponse } from '../listener/listener.ts';
import { RouteTable, authorityPort, type RouteHit } from '../routing/route-table.ts';
import type { Cluster, ClusterManager } from '../upstream/cluster.ts';
import type { EndpointState } from '../upstream/endpoint.ts';
import type { LbContext } from '../upstream/load-balancer.ts';
import type { UpstreamPools } from '../upstream/upstream-pools.ts';
import { CircuitBreakers } from '../upstream/circuit-breaker.ts';
import type { UpstreamClient } from '../upstream/upstream-request.ts';
import { ClusterStats, DirectionStats, type Direction } from '../stats/proxy-stats.ts';
import { ActiveRequest } from './active-request.ts';
import type { RequestHost } from './request-host.ts';
import { getHeader, type DownstreamFacts } from './request-headers.ts';
import { spiffeIdOf } from '../identity/certs.ts';
import type { ListenerTelemetry } from '../telemetry/listener-telemetry.ts';

/** What a listener routes with: swapped whole when config changes. */
export interface ListenerState {
  readonly config: ProxyConfig;
  /** Outbound: the route table from the config. Inbound: one route to the local app. */
  readonly routes: RouteTable;
  readonly chain: FilterChain;
  /** Spans and access logs to backends (Telemetry); absent: none. */
  readonly telemetry?: ListenerTelemetry;
}

export interface ConnectionManagerOptions {
  direction: Direction;
  scheme: 'http' | 'https';
  clusters: ClusterManager;
  upstreams: UpstreamPools;
  metrics: MetricsRegistry;
  accessLog: AccessLog;
  state: ListenerState;
  /**
   * Inbound: the app's "ip:port", reported as destination.address/port (Istio's original destination,
   * the port policies name), rather than the listener the request arrived on.
   */
  destinationAddress?: string;
  /** This proxy's SPIFFE id while it has an identity (streamInfo.localPrincipal of mTLS connections). */
  localPrincipal?: () => string | undefined;
  /**
   * The port a route's `match.port` compares with: a gateway listener's server port. Absent: the port
   * in `:authority`, else the scheme's default (80, 443), the service port an app reaching the sidecar
   * by Host addressed (without iptables there is no original destination to read).
   */
  routePort?: number;
  /** Outbound: golden signals per edge for the orchestrator's graph (stats/edge-stats.ts); absent: none kept. */
  edges?: EdgeRecorder;
}

/** Counts a finished outbound call per edge (the proxy's EdgeStats, with its mTLS test). */
export interface EdgeRecorder {
  record(ar: ActiveRequest, status: number, durationMs: number): void;
}

/** What a downstream TLS connection proved: mTLS and the peer's SPIFFE id, read once per connection. */
interface PeerFacts {
  mtls: boolean;
  peerPrincipal: string | undefined;
}

const peerFacts = new WeakMap<object, PeerFacts>();
const PLAINTEXT: PeerFacts = { mtls: false, peerPrincipal: undefined };

type MaybeTlsSocket = { encrypted?: boolean; authorized?: boolean; getPeerCertificate?: () => { subjectaltname?: string } };
type AddressedSocket = { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number };

/** The connection's socket (HTTP/2 requests expose a per-stream proxy; the session has the real one). */
function connectionSocket(req: DownstreamRequest): object | undefined {
  const stream = (req as { stream?: { session?: { socket?: object } } }).stream;
  return stream?.session?.socket ?? req.socket ?? undefined;
}

export function downstreamPeer(req: DownstreamRequest): PeerFacts {
  const socket = connectionSocket(req) as MaybeTlsSocket | undefined;
  if (!socket || !socket.encrypted) return PLAINTEXT;
  let facts = peerFacts.get(socket);
  if (!facts) {
    const cert = socket.authorized ? socket.getPeerCertificate?.() : undefined;
    facts = { mtls: !!socket.authorized, peerPrincipal: cert ? spiffeIdOf(cert.subjectaltname) : undefined };
    peerFacts.set(socket, facts);
  }
  return facts;
}

/**
 * What every request of one downstream connection tells filters the same way (addresses, id, mTLS,
 * the peer's principal): worked out on the connection's first request, so a request costs one lookup
 * instead of two address strings, an id lookup and a peer lookup.
 */
interface ConnectionFacts {
  readonly sourceAddress: string;
  readonly destinationAddress: string;
  readonly connectionId: number;
  readonly peer: PeerFacts;
}

let nextConnectionId = 1;

/** `HTTP/1.1` and the like without a string per request. */
function protocolOf(req: DownstreamRequest): string {
  if (req.httpVersionMajor === 2) return 'HTTP/2';
  const v = req.httpVersion;
  return v === '1.1' ? 'HTTP/1.1' : v === '1.0' ? 'HTTP/1.0' : `HTTP/${v}`;
}

export class ConnectionManager implements RequestHost<ActiveRequest> {
  readonly direction: Direction;
  readonly clusters: ClusterManager;
  readonly stats: DirectionStats;
  state: ListenerState;
  readonly #upstreams: UpstreamPools;
  readonly #metrics: MetricsRegistry;
  readonly #accessLog: AccessLog;
  readonly #scheme: 'http' | 'https';
  readonly #destinationAddress: string | undefined;
  readonly #localPrincipal: (() => string | undefined) | undefined;
  readonly #routePort: number | undefined;
  readonly #edges: EdgeRecorder | undefined;
  readonly #clusterStats = new Map<Cluster, ClusterStats>();
  /** Per downstream connection (its socket; HTTP/2: the session's), see ConnectionFacts. */
  readonly #connections = new WeakMap<object, ConnectionFacts>();
  /** connectionPool limits per cluster, counted per listener (see upstream/circuit-breaker.ts). */
  readonly breakers = new CircuitBreakers();
  active = 0;
  readonly #idle: Array<() => void> = [];

  constructor(options: ConnectionManagerOptions) {
    this.direction = options.direction;
    this.clusters = options.clusters;
    this.#upstreams = options.upstreams;
    this.#metrics = options.metrics;
    this.#accessLog = options.accessLog;
    this.#scheme = options.scheme;
    this.#destinationAddress = options.destinationAddress;
    this.#localPrincipal = options.localPrincipal;
    this.#routePort = options.routePort;
    this.#edges = options.direction === 'outbound' ? options.edges : undefined;
    this.state = options.state;
    this.stats = new DirectionStats(options.metrics, options.direction);
  }

  /** The request handler the listener calls. */
  readonly handle = (req: DownstreamRequest, res: DownstreamResponse): void => {
    this.active++;
    this.stats.requests.increment(1);
    this.stats.active.increment(1);
    new ActiveRequest(this, req, res).start();
  };

  get chain(): FilterChain {
    return this.state.chain;
  }

  get telemetry(): ListenerTelemetry | undefined {
    return this.state.telemetry;
  }

  routeFor(ar: ActiveRequest): RouteHit | undefined {
    const h = ar.headers;
    const authority = getHeader(h, ':authority') ?? '';
    const routes = this.state.routes;
    return routes.match({
      authority,
      path: getHeader(h, ':path') ?? '/',
      method: getHeader(h, ':method') ?? 'GET',
      headers: h,
      // Worked out only when a route matches on it (most configs have none).
      port: routes.matchesPort ? this.routePort(authority) : undefined,
    });
  }

  /** The port `match.port` compares with for a request to `authority` (see ConnectionManagerOptions.routePort). */
  routePort(authority: string): number {
    return this.#routePort ?? authorityPort(authority) ?? (this.#scheme === 'https' ? 443 : 80);
  }

  upstreamFor(cluster: Cluster, endpoint: EndpointState, downstreamH2: boolean): UpstreamClient {
    // Outbound clusters may originate TLS (auto mTLS, DestinationRule tls); the inbound side talks plaintext to the app.
    return this.#upstreams.get(this.upstreamProtocol(cluster, downstreamH2), endpoint, cluster.config.connectionPool, this.direction === 'outbound' ? cluster.config : undefined);
  }

  upstreamProtocol(cluster: Cluster, downstreamH2: boolean): UpstreamProtocol {
    // The local app speaks what its client spoke: HTTP/2 in, HTTP/2 (cleartext) to the app.
    return this.direction === 'inbound' ? (downstreamH2 ? 'http2' : 'http1') : cluster.config.protocol;
  }

  clusterStats(cluster: Cluster): ClusterStats {
    let s = this.#clusterStats.get(cluster);
    if (!s) {
      s = new ClusterStats(this.#metrics, cluster.config.name);
      this.#clusterStats.set(cluster, s);
    }
    return s;
  }

  lbContext(ar: ActiveRequest): LbContext {
    return { headers: ar.headers, sourceIp: ar.req.socket?.remoteAddress, path: getHeader(ar.headers, ':path') };
  }

  downstreamFacts(req: DownstreamRequest): DownstreamFacts {
    return { scheme: this.#scheme, remoteAddress: req.socket?.remoteAddress ?? '', generateRequestId: true };
  }

  streamInfo(req: DownstreamRequest, ar: ActiveRequest): StreamInfo {
    const facts = this.#connectionFacts(req);
    const peer = facts.peer;
    return createStreamInfo({
      sourceAddress: facts.sourceAddress,
      destinationAddress: facts.destinationAddress,
      protocol: protocolOf(req),
      connectionId: facts.connectionId,
      mtls: peer.mtls,
      peerPrincipal: peer.mtls ? peer.peerPrincipal : undefined,
      // Asked per request: the proxy's own identity may be renewed while a connection lives.
      localPrincipal: peer.mtls ? this.#localPrincipal?.() : undefined,
      direction: this.direction,
      workload: this.state.config.workload,
      // The request itself: its endpoint and cluster are read only if a filter asks (no closure per request).
      upstreamSource: ar,
    });
  }

  #connectionFacts(req: DownstreamRequest): ConnectionFacts {
    const socket = connectionSocket(req) as (object & AddressedSocket) | undefined;
    let facts = socket === undefined ? undefined : this.#connections.get(socket);
    if (facts === undefined) {
      facts = {
        sourceAddress: `${socket?.remoteAddress ?? ''}:${socket?.remotePort ?? 0}`,
        destinationAddress: this.#destinationAddress ?? `${socket?.localAddress ?? ''}:${socket?.localPort ?? 0}`,
        connectionId: socket === undefined ? 0 : nextConnectionId++,
        peer: downstreamPeer(req),
      };
      if (socket !== undefined) this.#connections.set(socket, facts);
    }
    return facts;
  }

  requestDone(ar: ActiveRequest): void {
    this.active--;
    const s = this.stats;
    s.active.increment(-1);
    const status = ar.status || (ar.responseFlags ? 0 : 200);
    if (status) s.response(status);
    const duration = Date.now() - ar.startMs;
    s.duration.record(duration / 1000);
    if (ar.bytesIn) s.bytesReceived.increment(ar.bytesIn);
    if (ar.bytesOut) s.bytesSent.increment(ar.bytesOut);
    const telemetry = ar.trace?.listener ?? this.state.telemetry;
    if (telemetry !== undefined) telemetry.done(ar, status, duration);
    if (this.#edges !== undefined) this.#edges.record(ar, status, duration);
    if (this.#accessLog.enabled) {
      const h = ar.headers;
      this.#accessLog.write({
        start_time: new Date(ar.startMs).toISOString(),
        method: getHeader(h, ':method') ?? '',
        path: getHeader(h, ':path') ?? '',
        protocol: ar.req.httpVersionMajor === 2 ? 'HTTP/2' : `HTTP/${ar.req.httpVersion}`,
        response_code: status,
        response_flags: ar.responseFlags || '-',
        response_code_details: ar.details || 'via_upstream',
        bytes_received: ar.bytesIn,
        bytes_sent: ar.bytesOut,
        duration,
        upstream_host: ar.endpoint?.key ?? '',
        upstream_cluster: ar.cluster?.config.name ?? '',
        x_forwarded_for: getHeader(h, 'x-forwarded-for') ?? '',
        user_agent: getHeader(h, 'user-agent') ?? '',
        request_id: getHeader(h, 'x-request-id') ?? '',
        authority: getHeader(h, ':authority') ?? '',
        downstream_remote_address: `${ar.req.socket?.remoteAddress ?? ''}:${ar.req.socket?.remotePort ?? ''}`,
        route_name: ar.route?.name ?? '',
        upstream_request_attempt_count: ar.attempts,
        direction: this.direction,
      });
    }
    if (this.active === 0) for (const fn of this.#idle.splice(0)) fn();
  }

  /** Resolves when no request is in flight (for draining). */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}

/** The inbound side's one route: everything to the local app. */
export function inboundRouteTable(clusterName: string): RouteTable {
  const route: RouteConfig = { name: 'inbound|default', match: [], action: { kind: 'forward', destinations: [{ cluster: clusterName, weight: 100 }], timeoutMs: 0 } };
  const vh: VirtualHostConfig = { name: 'inbound', domains: ['*'], routes: [route] };
  return new RouteTable([vh]);
}
