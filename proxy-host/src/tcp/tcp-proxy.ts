// One proxied TCP connection (Envoy's tcp_proxy): a downstream socket, routed (outbound: by the port's
// tls routes on the ClientHello's SNI, then its tcp routes; inbound: to the local app), connected to
// one upstream endpoint (with auto mTLS and the peer metadata exchange between sidecars), and the
// bytes of both directions passed through the connection's filter chain (tcp-filter.ts, the seam for
// L4 filters).
//
// The steps, in order (outbound and gateways):
//   accept -> peek the ClientHello when the port has TLS routes -> filters' onNewConnection
//   (AuthorizationPolicy on a gateway's TCP/TLS listeners: a denied connection is closed here) -> route -> pick an endpoint -> connection limit (maxConnections, else closed: UO) -> connect
//   (connectTimeout, else UF; mTLS per endpoint, never plaintext where mTLS is needed) -> [mTLS with
//   istio-peer-exchange] exchange metadata -> bytes both ways until both sides have ended.
// Inbound: accept (the listener ends mTLS) -> [istio-peer-exchange] exchange metadata -> filters'
//   onNewConnection (AuthorizationPolicy on TCP: a denied connection is closed here, the app never
//   connected) -> connect to the app -> bytes both ways.
//
// Half-close: a FIN from one side is passed on as a FIN to the other (after every byte before it),
// and the other direction keeps flowing until it ends too; then both sockets are closed. An error or
// reset on either side closes both. Idle timeout: no byte either way for the cluster's
// tcpIdleTimeoutMs (default 1 h, Istio's; 0: never) closes both sides.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { TcpPortConfig, TcpRouteConfig, WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import { uriSans } from '../identity/certs.ts';
import { connectOptions } from '../identity/tls-options.ts';
import { logDebug } from '../log.ts';
import type { ClusterStats } from '../stats/proxy-stats.ts';
import type { Cluster, ClusterManager } from '../upstream/cluster.ts';
import type { EndpointState } from '../upstream/endpoint.ts';
import type { UpstreamPools } from '../upstream/upstream-pools.ts';
import { parseClientHello } from './client-hello.ts';
import { MESH_ALPNS, PEER_EXCHANGE_ALPN, encodeExchange, readExchange, type PeerMetadata } from './peer-exchange.ts';
import { MAX_HELD_BYTES, TcpFilterChain, type TcpConnectionInfo, type TcpFilterFactory } from './tcp-filter.ts';
import { UNKNOWN, type TcpReportLabels, type TcpSeries, type TcpStats, type TcpWorkloadLabels } from './tcp-stats.ts';

/** Istio's default TCP idle timeout (DestinationRule connectionPool.tcp.idleTimeout). */
export const DEFAULT_TCP_IDLE_TIMEOUT_MS = 3_600_000;
/** Istio's default connectTimeout. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** How long the first bytes may take when a port routes by SNI (Envoy's listener filter timeout is 15 s). */
export const CLIENT_HELLO_TIMEOUT_MS = 5_000;
/** Bytes buffered towards an upstream that is still connecting before the client is read no more. */
const MAX_PENDING_BYTES = 64 * 1024;
const OVERFLOW_TOTAL = 'wasmesh_proxy_upstream_overflow_total';

/** Upstream TCP connections per cluster, for connectionPool.tcp.maxConnections (Envoy's max_connections breaker). */
export class TcpConnectionLimits {
  readonly #open = new Map<string, number>();

  /** Takes a slot of `cluster` unless `max` are taken; returns its release, or undefined when full. */
  admit(cluster: string, max: number | undefined): (() => void) | undefined {
    const n = this.#open.get(cluster) ?? 0;
    if (max !== undefined && max > 0 && n >= max) return undefined;
    this.#open.set(cluster, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(cluster) ?? 1) - 1;
      if (left <= 0) this.#open.delete(cluster);
      else this.#open.set(cluster, left);
    };
  }
}

/** What a TCP session needs from the proxy. */
export interface TcpProxyDeps {
  readonly clusters: ClusterManager;
  readonly upstreams: UpstreamPools;
  readonly stats: TcpStats;
  readonly clusterStats: (cluster: Cluster) => ClusterStats;
  readonly limits: TcpConnectionLimits;
  /** The proxy's workload, from its current config. */
  readonly workload: () => WorkloadIdentity;
  /** This proxy's SPIFFE id while it has a valid certificate. */
  readonly localPrincipal: () => string | undefined;
  /**
   * The L4 filters of a new connection on that side (the proxy's: WasmPlugins of type NETWORK,
   * wasm-tcp-filter.ts, after any ProxyOptions.tcpFilters). Asked once per connection: a connection
   * keeps the filters it started with across config changes.
   */
  readonly filters: (direction: 'inbound' | 'outbound') => readonly TcpFilterFactory[];
}

/** Live sessions, for draining and stopping. */
export class TcpSessions {
  readonly #live = new Set<TcpSession>();
  #waiters: (() => void)[] = [];

  add(s: TcpSession): void {
    this.#live.add(s);
  }

  delete(s: TcpSession): void {
    this.#live.delete(s);
    if (this.#live.size === 0) for (const w of this.#waiters.splice(0)) w();
  }

  get size(): number {
    return this.#live.size;
  }

  /** Resolves when no session is left. */
  idle(): Promise<void> {
    if (this.#live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  destroyAll(): void {
    for (const s of [...this.#live]) s.destroy('proxy stopping');
  }
}

/** Istio's workload labels of a metric series, from this proxy's workload. */
export function workloadLabels(w: WorkloadIdentity): TcpWorkloadLabels {
  return { workload: w.name, namespace: w.namespace, app: w.labels.app ?? w.labels['app.kubernetes.io/name'] ?? UNKNOWN, version: w.labels.version ?? w.labels['app.kubernetes.io/version'] ?? UNKNOWN };
}

function peerLabels(p: PeerMetadata | undefined): TcpWorkloadLabels {
  return { workload: p?.name ?? UNKNOWN, namespace: p?.namespace ?? UNKNOWN, app: p?.app ?? UNKNOWN, version: p?.version ?? UNKNOWN };
}

/** The labels of a peer nobody knows (`unknown` everywhere). */
export const NOBODY: TcpWorkloadLabels = Object.freeze({ workload: UNKNOWN, namespace: UNKNOWN, app: UNKNOWN, version: UNKNOWN });

/** Whether `address` is in one of `subnets` (addresses or CIDR blocks). */
function inSubnets(address: string, subnets: readonly string[]): boolean {
  const list = new net.BlockList();
  const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
  const plain = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
  for (const s of subnets) {
    const [a, bits] = s.split('/') as [string, string?];
    const type = net.isIPv6(a) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(a, type);
    else list.addSubnet(a, Number(bits), type);
  }
  return list.check(plain, net.isIPv4(plain) ? 'ipv4' : family);
}

function sniMatches(pattern: string, name: string): boolean {
  if (pattern === '*' || pattern === name) return true;
  return pattern.startsWith('*.') && name.endsWith(pattern.slice(1));
}

/** The first route of `port` whose match applies: TLS routes by SNI (when the client sent a ClientHello), then TCP routes. */
export function selectTcpRoute(port: TcpPortConfig, localAddress: string, serverName: string | undefined, isTls: boolean): TcpRouteConfig | undefined {
  const applies = (route: TcpRouteConfig, tlsRoute: boolean): boolean => {
    if (route.match.length === 0) return true;
    return route.match.some(
      (m) =>
        (m.port === undefined || m.port === port.port) &&
        (!m.destinationSubnets || inSubnets(localAddress, m.destinationSubnets)) &&
        (!tlsRoute || (serverName !== undefined && (m.sniHosts ?? []).some((p) => sniMatches(p, serverName)))),
    );
  };
  if (isTls) for (const r of port.tlsRoutes) if (applies(r, true)) return r;
  for (const r of port.tcpRoutes) if (applies(r, false)) return r;
  return undefined;
}

/** A destination by weight (per connection). */
function pickDestination(route: TcpRouteConfig): string | undefined {
  const list = route.destinations;
  if (list.length === 1) return list[0]!.cluster;
  const total = list.reduce((s, d) => s + d.weight, 0);
  if (total <= 0) return list[0]?.cluster;
  let r = Math.random() * total;
  for (const d of list) {
    if (r < d.weight) return d.cluster;
    r -= d.weight;
  }
  return list[list.length - 1]?.cluster;
}

/** What the inbound side learned from the downstream connection before handing it over. */
export interface InboundFacts {
  /** The connection came over mTLS (the socket is the terminated TLS socket). */
  mtls: boolean;
  peerPrincipal?: string;
  /** The service port the inbound listener stands for (PeerAuthentication port) and the app's address. */
  appHost: string;
  appPort: number;
  /** Bytes read before the handover (a plaintext connection's sniffed first bytes). */
  first?: Buffer;
  /** The client half-closed before the handover. */
  ended?: boolean;
  /** The address the client connected to when it is not the socket's own (an iptables-captured connection's original destination). */
  destination?: { address: string; port: number };
}

type Side = 'downstream' | 'upstream';

export class TcpSession {
  readonly #deps: TcpProxyDeps;
  readonly #sessions: TcpSessions;
  readonly #down: Duplex;
  readonly #direction: 'inbound' | 'outbound';
  readonly #reporter: 'source' | 'destination';
  #up: Duplex | undefined;
  #chain!: TcpFilterChain;
  readonly #info: { -readonly [K in keyof TcpConnectionInfo]: TcpConnectionInfo[K] };
  #series: TcpSeries | undefined;
  #idleMs = DEFAULT_TCP_IDLE_TIMEOUT_MS;
  #lastActivity = Date.now();
  #idleTimer: NodeJS.Timeout | undefined;
  /** FIN received from each side / FIN sent to each side. */
  readonly #ended = { downstream: false, upstream: false };
  readonly #finished = { downstream: false, upstream: false };
  /** Chain output for the upstream while it is connecting. */
  #pendingUp: Buffer[] = [];
  #pendingUpBytes = 0;
  #pendingUpEnd = false;
  #release: (() => void) | undefined;
  #endpoint: EndpointState | undefined;
  /** Bytes seen before the connection's label set was known (counted once it is). */
  readonly #uncounted = { downstream: 0, upstream: 0 };
  /** Each socket's 'close'. */
  readonly #socketClosed = { downstream: false, upstream: false };
  /** A write to that side's socket returned false: its source waits for 'drain'. */
  readonly #draining = { downstream: false, upstream: false };
  #done = false;
  #closedBy: Side | undefined;

  private constructor(down: Duplex, direction: 'inbound' | 'outbound', reporter: 'source' | 'destination', deps: TcpProxyDeps, sessions: TcpSessions, local: { address: string; port: number }, remote: { address: string; port: number }) {
    this.#down = down;
    this.#direction = direction;
    this.#reporter = reporter;
    this.#deps = deps;
    this.#sessions = sessions;
    this.#info = {
      direction,
      downstreamAddress: remote.address,
      downstreamPort: remote.port,
      localAddress: local.address,
      localPort: local.port,
      serverName: undefined,
      route: undefined,
      cluster: undefined,
      upstreamAddress: undefined,
      upstreamLocalAddress: undefined,
      peerPrincipal: undefined,
      appAddress: undefined,
    };
    sessions.add(this);
    down.on('error', () => this.destroy('downstream error'));
    down.on('close', () => this.#sideClosed('downstream'));
    this.#chain = new TcpFilterChain(deps.filters(direction), {
      emit: (direction, data, end) => this.#emit(direction, data, end),
      close: (reason) => this.destroy(reason),
    });
  }

  /**
   * An outbound (or gateway) connection to service port `port.port`; `port` undefined: nothing is
   * configured for it (closed, NR). `reporter` 'source' for both. `destination`: the address the
   * client connected to when it is not the socket's own (an iptables-captured connection's original
   * destination): routes' destinationSubnets match it.
   */
  static outbound(socket: net.Socket, port: TcpPortConfig | undefined, deps: TcpProxyDeps, sessions: TcpSessions, destination?: { address: string; port: number }): TcpSession {
    const local = destination ?? { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const s = new TcpSession(socket, 'outbound', 'source', deps, sessions, local, { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 });
    socket.setNoDelay(true);
    void s.#startOutbound(socket, port);
    return s;
  }

  /** An inbound connection (plaintext or already past its mTLS handshake), to the local app. `first`: bytes already read. */
  static inbound(socket: Duplex, raw: net.Socket, facts: InboundFacts, deps: TcpProxyDeps, sessions: TcpSessions): TcpSession {
    const local = facts.destination ?? { address: raw.localAddress ?? '', port: raw.localPort ?? 0 };
    const s = new TcpSession(socket, 'inbound', 'destination', deps, sessions, local, { address: raw.remoteAddress ?? '', port: raw.remotePort ?? 0 });
    raw.setNoDelay(true);
    s.#info.peerPrincipal = facts.peerPrincipal;
    // The SNI of the client's (mTLS) handshake: connection.sni / requested_server_name to filters.
    const sni = socket instanceof tls.TLSSocket ? (socket as tls.TLSSocket & { servername?: string | false }).servername : undefined;
    if (typeof sni === 'string' && sni !== '') s.#info.serverName = sni;
    s.#info.appAddress = facts.appHost.includes(':') ? `[${facts.appHost}]:${facts.appPort}` : `${facts.appHost}:${facts.appPort}`;
    void s.#startInbound(facts);
    return s;
  }

  // ---- outbound --------------------------------------------------------------------------------

  async #startOutbound(socket: net.Socket, port: TcpPortConfig | undefined): Promise<void> {
    const workload = this.#deps.workload();
    let first: Buffer = Buffer.alloc(0);
    let serverName: string | undefined;
    let isTls = false;
    let endedEarly = false;
    if (port && port.tlsRoutes.length > 0) {
      const peek = await this.#peekClientHello(socket);
      if (this.#done) return;
      first = peek.bytes;
      serverName = peek.serverName;
      isTls = peek.tls;
      endedEarly = peek.ended;
      this.#info.serverName = serverName;
    }
    // The network filters see the connection after the ClientHello was read (as Envoy's tls_inspector,
    // a listener filter, runs before them): connection.sni is known to them. One that refuses it (the
    // policy filter denying it on a gateway) closes it before it is routed; it is counted as opened and
    // closed.
    if (!this.#chain.newConnection(this.#info)) {
      this.#open(this.#deps.stats.series(this.#labels(workload, NOBODY, UNKNOWN, '-', UNKNOWN, UNKNOWN, 'unknown')));
      this.#series!.closed.increment(1);
      return;
    }
    const route = port ? selectTcpRoute(port, this.#info.localAddress, serverName, isTls) : undefined;
    if (!route) return this.#fail('NR', { destination: NOBODY, service: UNKNOWN, workload }, `no route for port ${port?.port ?? this.#info.localPort}${serverName ? ` (SNI ${serverName})` : ''}`);
    this.#info.route = route.name;
    const clusterName = pickDestination(route);
    const cluster = clusterName ? this.#deps.clusters.get(clusterName) : undefined;
    if (!cluster) return this.#fail('NR', { destination: NOBODY, service: UNKNOWN, workload }, `route ${route.name}: no cluster ${clusterName}`);
    this.#info.cluster = cluster.name;
    const service = cluster.config.host;
    const stats = this.#deps.clusterStats(cluster);
    const pool = cluster.config.connectionPool;
    this.#idleMs = pool.tcpIdleTimeoutMs ?? DEFAULT_TCP_IDLE_TIMEOUT_MS;
    // Bytes start through the chain now; what it lets out waits for the upstream.
    socket.on('data', (chunk: Buffer) => this.#onData('downstream', chunk));
    socket.on('end', () => this.#onEnd('downstream'));
    if (first.length > 0) this.#onData('downstream', first);
    if (endedEarly) this.#onEnd('downstream');

    const endpoint = cluster.pick({ headers: [], sourceIp: this.#info.downstreamAddress });
    if (!endpoint) {
      stats.flag('UH');
      return this.#fail('UH', { destination: NOBODY, service, workload }, `cluster ${cluster.name} has no healthy endpoint`);
    }
    const release = this.#deps.limits.admit(cluster.name, pool.maxConnections);
    if (!release) {
      stats.counter(OVERFLOW_TOTAL, 'Requests refused by a circuit breaker (503 UO)').increment(1);
      stats.flag('UO');
      return this.#fail('UO', { destination: NOBODY, service, workload }, `cluster ${cluster.name}: ${pool.maxConnections} connections open (maxConnections)`);
    }
    this.#release = release;
    this.#endpoint = endpoint;
    endpoint.activeRequests++;
    this.#info.upstreamAddress = endpoint.key;

    const decision = this.#deps.upstreams.endpointTls(cluster.config, endpoint.config);
    if (decision.kind === 'refused') {
      stats.flag('UF');
      return this.#fail('UF', { destination: NOBODY, service, workload }, `cluster ${cluster.name}: ${decision.reason}`);
    }
    const mtls = decision.kind === 'tls' && decision.options.verify === 'spiffe';
    const timeoutMs = pool.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    let up: Duplex;
    let peer: PeerMetadata | undefined;
    let upstreamFirst: Buffer = Buffer.alloc(0);
    let peerPrincipal: string | undefined;
    try {
      const connected = await connectUpstream(endpoint.config.address, endpoint.config.port, decision.kind === 'tls' ? decision.options : undefined, mtls, timeoutMs, () => this.#done);
      up = connected.socket;
      if (connected.socket instanceof tls.TLSSocket) peerPrincipal = uriSans(connected.socket.getPeerCertificate()?.subjectaltname)[0];
      if (mtls && connected.alpn === PEER_EXCHANGE_ALPN) {
        const self = this.#deps.workload();
        up.write(encodeExchange({ name: self.name, namespace: self.namespace, app: self.labels.app, version: self.labels.version, serviceAccount: self.serviceAccount, service }));
        const ex = await readFrame(up, timeoutMs);
        peer = ex.peer;
        upstreamFirst = ex.rest;
      }
    } catch (err) {
      stats.flag('UF');
      cluster.reportOutcome(endpoint, 'UF'); // outlier detection: a local-origin failure
      return this.#fail('UF', { destination: NOBODY, service, workload }, `connect to ${endpoint.key} (${cluster.name}): ${(err as Error).message}`);
    }
    if (this.#done) {
      up.destroy();
      return;
    }
    const destination = peer ? peerLabels(peer) : { ...NOBODY, app: endpoint.config.labels.app ?? UNKNOWN, version: endpoint.config.labels.version ?? UNKNOWN };
    this.#open(this.#deps.stats.series(this.#labels(workload, destination, service, '-', mtls ? (this.#deps.upstreams.identity?.spiffeId ?? UNKNOWN) : UNKNOWN, peerPrincipal ?? UNKNOWN, 'unknown')));
    this.#deps.stats.active.outbound.increment(1);
    this.#attachUpstream(up, upstreamFirst);
  }

  /** Reads until the first bytes are a complete ClientHello, or are not one, or the client waits too long (then: no SNI). */
  #peekClientHello(socket: net.Socket): Promise<{ bytes: Buffer; tls: boolean; serverName: string | undefined; ended: boolean }> {
    return new Promise((resolve) => {
      let bytes: Buffer = Buffer.alloc(0);
      let ended = false;
      const finish = (tlsHello: boolean, serverName: string | undefined): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.pause();
        resolve({ bytes, tls: tlsHello, serverName, ended });
      };
      const onData = (chunk: Buffer): void => {
        bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
        const r = parseClientHello(bytes);
        if (r.kind === 'tls') finish(true, r.serverName);
        else if (r.kind === 'not-tls') finish(false, undefined);
      };
      const onEnd = (): void => {
        // The client half-closed before its first bytes decided anything: route what there is.
        ended = true;
        finish(false, undefined);
      };
      const timer = setTimeout(() => finish(false, undefined), CLIENT_HELLO_TIMEOUT_MS);
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.resume();
    });
  }

  // ---- inbound ---------------------------------------------------------------------------------

  async #startInbound(facts: InboundFacts): Promise<void> {
    const workload = this.#deps.workload();
    const down = this.#down;
    let peer: PeerMetadata | undefined;
    let first: Buffer = facts.first ?? Buffer.alloc(0);
    if (facts.mtls && (down as tls.TLSSocket).alpnProtocol === PEER_EXCHANGE_ALPN) {
      down.write(encodeExchange({ name: workload.name, namespace: workload.namespace, app: workload.labels.app, version: workload.labels.version, serviceAccount: workload.serviceAccount }));
      try {
        const ex = await readFrame(down, DEFAULT_CONNECT_TIMEOUT_MS);
        peer = ex.peer;
        first = ex.rest;
      } catch (err) {
        return this.#fail('-', { destination: workloadLabels(workload), service: UNKNOWN, workload }, `peer metadata exchange: ${(err as Error).message}`);
      }
    }
    if (this.#done) return;
    this.#info.cluster = `inbound|${facts.appPort}||${workload.name}.${workload.namespace}`;
    const service = peer?.service ?? `${workload.name}.${workload.namespace}.svc.cluster.local`;
    const source = peerLabels(peer);
    const principal = facts.mtls ? (this.#deps.localPrincipal() ?? UNKNOWN) : UNKNOWN;
    const labels = (flags: string): TcpReportLabels => ({
      reporter: 'destination',
      source,
      sourcePrincipal: facts.peerPrincipal ?? UNKNOWN,
      destination: workloadLabels(workload),
      destinationPrincipal: principal,
      destinationService: service,
      responseFlags: flags,
      security: facts.mtls ? 'mutual_tls' : 'none',
    });
    // The network filters see the connection after the metadata exchange, as in Istio's inbound chain
    // (metadata exchange, RBAC, stats, tcp_proxy). One that refuses it (the policy filter denying it:
    // AuthorizationPolicy on TCP) closes it before a byte reaches the app, which is never connected;
    // it is counted as opened and closed, as Istio's stats count a connection RBAC closed.
    if (!this.#chain.newConnection(this.#info)) {
      this.#open(this.#deps.stats.series(labels('-')));
      this.#series!.closed.increment(1);
      return;
    }
    down.on('data', (chunk: Buffer) => this.#onData('downstream', chunk));
    down.on('end', () => this.#onEnd('downstream'));
    if (first.length > 0) this.#onData('downstream', first);
    if (facts.ended) this.#onEnd('downstream');
    this.#info.upstreamAddress = `${facts.appHost}:${facts.appPort}`;
    let up: Duplex;
    try {
      up = (await connectUpstream(facts.appHost, facts.appPort, undefined, false, DEFAULT_CONNECT_TIMEOUT_MS, () => this.#done)).socket;
    } catch (err) {
      this.#open(this.#deps.stats.series(labels('UF')));
      this.destroy(`connect to the app ${facts.appHost}:${facts.appPort}: ${(err as Error).message}`);
      return;
    }
    if (this.#done) {
      up.destroy();
      return;
    }
    this.#open(this.#deps.stats.series(labels('-')));
    this.#deps.stats.active.inbound.increment(1);
    this.#attachUpstream(up, Buffer.alloc(0));
  }

  // ---- both ------------------------------------------------------------------------------------

  #labels(workload: WorkloadIdentity, destination: TcpWorkloadLabels, service: string, flags: string, sourcePrincipal: string, destinationPrincipal: string, security: TcpReportLabels['security']): TcpReportLabels {
    return { reporter: this.#reporter, source: workloadLabels(workload), sourcePrincipal, destination, destinationPrincipal, destinationService: service, responseFlags: flags, security };
  }

  /** A connection that never reached an upstream: opened and closed with `flags`, then closed. */
  #fail(flags: string, l: { destination: TcpWorkloadLabels; service: string; workload: WorkloadIdentity }, reason: string): void {
    if (this.#done) return;
    this.#open(this.#deps.stats.series(this.#labels(l.workload, l.destination, l.service, flags, UNKNOWN, UNKNOWN, this.#reporter === 'source' ? 'unknown' : 'none')));
    logDebug('tcp', `${this.#direction} connection from ${this.#info.downstreamAddress}:${this.#info.downstreamPort} closed (${flags}): ${reason}`);
    this.destroy(reason);
  }

  #attachUpstream(up: Duplex, first: Buffer): void {
    this.#up = up;
    const local = up as net.Socket;
    if (local.localAddress) this.#info.upstreamLocalAddress = `${local.localAddress}:${local.localPort ?? 0}`;
    up.on('error', () => this.destroy('upstream error'));
    up.on('close', () => this.#sideClosed('upstream'));
    up.on('data', (chunk: Buffer) => this.#onData('upstream', chunk));
    up.on('end', () => this.#onEnd('upstream'));
    // What the chain let through while connecting.
    const pending = this.#pendingUp;
    this.#pendingUp = [];
    this.#pendingUpBytes = 0;
    for (const b of pending) this.#write('upstream', b);
    if (this.#pendingUpEnd) this.#finish('upstream');
    if (first.length > 0) this.#onData('upstream', first);
    this.#flow('downstream');
    this.#flow('upstream');
    this.#armIdle();
  }

  #onData(from: Side, chunk: Buffer): void {
    if (this.#done) return;
    this.#touch();
    this.#count(from, chunk.length);
    this.#chain.data(from, chunk, false);
    // Filters holding too much: stop reading that side until they let go (see #emit).
    this.#flow(from);
  }

  #onEnd(from: Side): void {
    if (this.#done || this.#ended[from]) return;
    this.#ended[from] = true;
    this.#touch();
    this.#chain.data(from, Buffer.alloc(0), true);
    this.#maybeDone();
  }

  /** Chain output: `direction` is where the bytes came from; they go to the other side. */
  #emit(direction: Side, data: Buffer, end: boolean): void {
    if (this.#done) return;
    const to: Side = direction === 'downstream' ? 'upstream' : 'downstream';
    if (to === 'upstream' && !this.#up) {
      if (data.length > 0) {
        this.#pendingUp.push(data);
        this.#pendingUpBytes += data.length;
        this.#flow('downstream');
      }
      if (end) this.#pendingUpEnd = true;
      return;
    }
    if (data.length > 0) this.#write(to, data);
    if (end) this.#finish(to);
    // Held bytes may have been let go: read the source again unless something else holds it.
    this.#flow(direction);
  }

  /**
   * Reads `side` or not: paused while the other side's socket is full (until 'drain'), while filters
   * hold more than MAX_HELD_BYTES of its bytes, or (client) while too much waits for the upstream to connect.
   */
  #flow(side: Side): void {
    const socket = side === 'downstream' ? this.#down : this.#up;
    if (!socket || this.#done || this.#ended[side]) return;
    const stop = this.#draining[side === 'downstream' ? 'upstream' : 'downstream'] || this.#chain.held(side) > MAX_HELD_BYTES || (side === 'downstream' && !this.#up && this.#pendingUpBytes > MAX_PENDING_BYTES);
    // Before the upstream is connected the client is not read (apart from peeked bytes) anyway.
    if (stop) socket.pause();
    else if (side === 'upstream' || this.#up) socket.resume();
  }

  #write(to: Side, data: Buffer): void {
    const target = to === 'upstream' ? this.#up! : this.#down;
    if (!target.write(data) && !this.#draining[to]) {
      this.#draining[to] = true;
      target.once('drain', () => {
        this.#draining[to] = false;
        this.#flow(to === 'upstream' ? 'downstream' : 'upstream');
      });
      this.#flow(to === 'upstream' ? 'downstream' : 'upstream');
    }
  }

  /** Sends a FIN to `to` (after everything written before it). */
  #finish(to: Side): void {
    if (this.#finished[to]) return;
    this.#finished[to] = true;
    (to === 'upstream' ? this.#up! : this.#down).end();
    this.#maybeDone();
  }

  /** Over once both sides sent their FIN, both were passed on, and both sockets closed (their writes flushed). */
  #maybeDone(): void {
    if (this.#done) return;
    const over = this.#ended.downstream && this.#ended.upstream && this.#finished.downstream && this.#finished.upstream;
    if (over && this.#socketClosed.downstream && this.#socketClosed.upstream) this.destroy(undefined);
  }

  /**
   * A socket closed. After its own FIN both ways that is the normal end of that side (the other may
   * still be flushing); before, it is a reset or an error, which closes the other side too.
   */
  #sideClosed(side: Side): void {
    this.#socketClosed[side] = true;
    if (this.#done) return;
    if (this.#ended[side] && this.#finished[side]) {
      this.#maybeDone();
      return;
    }
    this.#closedBy ??= side;
    this.destroy(`${side} closed`);
  }

  #count(from: Side, n: number): void {
    const series = this.#series;
    if (!series) this.#uncounted[from] += n;
    else if (from === 'downstream') series.received.increment(n);
    else series.sent.increment(n);
  }

  /** Fixes the connection's label set: opened counts now, and the bytes seen so far. */
  #open(series: TcpSeries): void {
    this.#series = series;
    series.opened.increment(1);
    if (this.#uncounted.downstream > 0) series.received.increment(this.#uncounted.downstream);
    if (this.#uncounted.upstream > 0) series.sent.increment(this.#uncounted.upstream);
    this.#uncounted.downstream = 0;
    this.#uncounted.upstream = 0;
  }

  #touch(): void {
    this.#lastActivity = Date.now();
  }

  #armIdle(): void {
    if (this.#idleMs <= 0 || this.#done) return;
    const wait = Math.max(1, this.#lastActivity + this.#idleMs - Date.now());
    this.#idleTimer = setTimeout(() => {
      if (this.#done) return;
      if (Date.now() - this.#lastActivity >= this.#idleMs) {
        logDebug('tcp', `${this.#direction} connection ${this.#info.downstreamAddress}:${this.#info.downstreamPort} -> ${this.#info.upstreamAddress}: idle for ${this.#idleMs} ms, closed`);
        this.destroy('idle timeout');
      } else this.#armIdle();
    }, wait);
    this.#idleTimer.unref();
  }

  /** Closes both sides at once and ends the session (idempotent). */
  destroy(reason: string | undefined): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#idleTimer);
    if (reason) logDebug('tcp', `${this.#direction} ${this.#info.downstreamAddress}:${this.#info.downstreamPort}: ${reason}`);
    const upWasOpen = this.#up !== undefined;
    this.#down.destroy();
    this.#up?.destroy();
    this.#chain.closed('downstream', this.#closedBy === 'downstream' ? 'remote' : 'local');
    if (upWasOpen) this.#chain.closed('upstream', this.#closedBy === 'upstream' ? 'remote' : 'local');
    this.#chain.done();
    this.#series?.closed.increment(1);
    if (upWasOpen) this.#deps.stats.active[this.#direction].increment(-1);
    if (this.#endpoint) this.#endpoint.activeRequests--;
    this.#release?.();
    this.#sessions.delete(this);
  }
}

/** Reads one peer metadata frame from `socket`; rejects on a bad frame, the socket's end, or after `timeoutMs`. */
function readFrame(socket: Duplex, timeoutMs: number): Promise<{ peer: PeerMetadata; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let bytes: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: { peer: PeerMetadata; rest: Buffer }): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer): void => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const r = readExchange(bytes);
      if (r.kind === 'error') done(new Error(r.reason));
      else if (r.kind === 'done') done(undefined, { peer: r.peer, rest: r.rest });
    };
    const onEnd = (): void => done(new Error('connection ended during the peer metadata exchange'));
    const timer = setTimeout(() => done(new Error(`no peer metadata within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.resume();
  });
}

/**
 * Connects to `host:port`: plaintext, or TLS with `tlsOptions` (mTLS offers the mesh ALPN protocols).
 * Rejects after `timeoutMs` (connect and handshake). The socket is paused, half-open allowed.
 */
function connectUpstream(
  host: string,
  port: number,
  tlsOptions: Parameters<typeof connectOptions>[0] | undefined,
  mtls: boolean,
  timeoutMs: number,
  cancelled: () => boolean,
): Promise<{ socket: Duplex; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket | tls.TLSSocket;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(Object.assign(new Error(`connect timeout after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
    const ready = (): void => {
      clearTimeout(timer);
      socket.off('error', fail);
      if (cancelled()) {
        socket.destroy();
        reject(new Error('cancelled'));
        return;
      }
      socket.pause();
      resolve({ socket, alpn: socket instanceof tls.TLSSocket ? socket.alpnProtocol : null });
    };
    if (tlsOptions) {
      socket = tls.connect({ host, port, ...connectOptions(tlsOptions), ...(mtls ? { ALPNProtocols: [...MESH_ALPNS] } : {}), allowHalfOpen: true } as tls.ConnectionOptions, ready);
    } else {
      socket = net.connect({ host, port, allowHalfOpen: true }, ready);
    }
    socket.setNoDelay(true);
    socket.once('error', fail);
  });
}
