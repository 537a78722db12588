// One sidecar: outbound and inbound listeners, the admin endpoint, and the config they run on.
// A new config is prepared whole (filters loaded and configured, route table built) before
// anything switches; if any part fails, the running config stays and the error is returned.
import net from 'node:net';
import os from 'node:os';
import { LogLevel, MetricsRegistry, SharedDataStore, SharedQueueRegistry, type PluginHost } from '../../wasm/src/index.ts';
import { AccessLog } from './access-log.ts';
import { startAdminServer, startStatusServer, type AdminServer, type AdminSource } from './admin/admin-server.ts';
import { LOOPBACK_HOST, type AdminWriteAccess } from './admin/admin-access.ts';
import type { ClusterConfig, ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { ModuleOverrides } from './filter-chain/module-overrides.ts';
import { canaryReport, filterStatus, type FilterStatus } from './filter-chain/filter-status.ts';
import type { FilterVersionStatsMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { CanaryPair, FilterChain, type FilterPlugin } from './filter-chain/chain.ts';
import { PluginManager } from './filter-chain/plugin-manager.ts';
import { ComponentCache } from './component-filter/component-filter.ts';
import { TranspileCache } from './component-filter/transpile-cache.ts';
import { workloadNodeProperty } from './filter-chain/stream-info.ts';
import { ConnectionManager, inboundRouteTable, type ListenerState } from './http/connection-manager.ts';
import { createHttpCallout } from './http-callout.ts';
import { createGrpcCallout } from './grpc-callout.ts';
import { handleUpgrade } from './http/upgrade.ts';
import { createTelemetryForeignFunctions } from './telemetry-sinks.ts';
import { TelemetryBackends } from './telemetry/listener-telemetry.ts';
import { MetricOverrides } from './telemetry/metric-overrides.ts';
import { createListener, DEFAULT_MAX_HEADER_SIZE, type Listener, type ListenerOptions } from './listener/listener.ts';
import { log, logError, logInfo } from './log.ts';
import type { IdentityProvider } from './identity/types.ts';
import { ProxyIdentity } from './identity/proxy-identity.ts';
import { serverContextOptions } from './identity/tls-options.ts';
import { RouteTable } from './routing/route-table.ts';
import { ClusterManager, type Cluster } from './upstream/cluster.ts';
import type { EndpointState } from './upstream/endpoint.ts';
import { DEFAULT_MAX_RESPONSE_HEADER_BYTES, UpstreamPools } from './upstream/upstream-pools.ts';
import { EventLoopWatchdog, type WatchdogOptions } from './watchdog/event-loop-watchdog.ts';
import { LoopDelayGauges } from './watchdog/loop-delay.ts';
import { EdgeStats } from './stats/edge-stats.ts';
import type { TrafficReportMessage } from '../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { GatewayListeners, prepareGatewayListeners, type PreparedGatewayListener } from './gateway/gateway-listeners.ts';
import { TcpStats } from './tcp/tcp-stats.ts';
import { TcpConnectionLimits, type TcpProxyDeps } from './tcp/tcp-proxy.ts';
import type { TcpFilterFactory } from './tcp/tcp-filter.ts';
import { WasmTcpFilterFactory, type NetworkFilterPlugin } from './tcp/wasm-tcp-filter.ts';
import { TcpInboundListeners, TcpOutboundListeners, type TcpInboundPort, type TcpOutboundPort } from './tcp/tcp-listeners.ts';
import { CapturedInbound } from './tcp/captured-inbound.ts';
import { CapturedOutbound } from './tcp/captured-outbound.ts';
import { redactProxyConfig } from '../../mesh/src/redact.ts';

export interface ProxyOptions {
  /** Address the listeners bind (loopback by default). */
  host?: string;
  outboundPort: number;
  inboundPort: number;
  /** null: no admin endpoint (a worker under --concurrency: the primary serves admin for all). */
  adminPort: number | null;
  /** The local app the inbound listener forwards to. */
  appPort?: number;
  appHost?: string;
  /** "stdout" (default), "off", or a file path. */
  accessLog?: string;
  /** Downstream connection handling for both listeners (slow clients, idle keep-alive, header size). */
  connections?: Pick<ListenerOptions, 'headersTimeoutMs' | 'keepAliveTimeoutMs' | 'maxHeaderSize' | 'h2IdleTimeoutMs'>;
  /**
   * Workload identity (SPIFFE certificate and trust bundle): the inbound listener's mTLS and the
   * upstreams' ISTIO_MUTUAL. Without one, or while its certificate is missing or expired, inbound
   * STRICT refuses every connection and mTLS destinations fail; auto mTLS without one is plaintext.
   * Closed by stop().
   */
  identity?: IdentityProvider;
  /**
   * Largest response header block (bytes) accepted from the app and upstreams (HTTP/1.1; past it 502) and
   * written by a filter (past it 500). Default 16 KiB. Filters' request headers are bounded by
   * connections.maxHeaderSize, the listeners' own limit.
   */
  maxResponseHeaderBytes?: number;
  /**
   * Let the admin endpoint swap a WasmPlugin's module for uploaded bytes (`wasmesh filter dev`).
   * Standalone proxies only: a managed proxy's modules are the orchestrator's.
   */
  moduleOverrides?: boolean;
  /**
   * Watch the event loop from a thread of its own (watchdog/): stalls fail /ready and are counted,
   * a long one kills the process; the loop's delay goes into the metrics. One per process: the CLI
   * turns it on; tests that run several proxies in one process leave it off.
   */
  watchdog?: WatchdogOptions;
  /** Address the admin endpoint binds: loopback unless given, whatever `host` is. */
  adminHost?: string;
  /** Who may change the proxy through admin (module overrides, log level); default: nobody. */
  adminAccess?: AdminWriteAccess;
  /** A read-only port on `host` for probes and scrapes (/ready, /healthz, /stats/prometheus). */
  statusPort?: number;
  /**
   * 'gateway': no sidecar listeners; the listeners of the config's `gateway` section instead
   * (gateway/gateway-listeners.ts), running the outbound chain. Default 'sidecar'.
   */
  role?: 'sidecar' | 'gateway';
  /**
   * Where jco's transpiles of component filters are kept across restarts (component-filter/
   * transpile-cache.ts: 0700 dir, 0600 files, least recently used removed past maxBytes, default
   * 256 MiB). Without it a component is transpiled again by every process that loads it.
   */
  componentCache?: { dir: string; maxBytes?: number };
  /**
   * Outbound TCP listeners (sidecar role): one per service port, bound to loopback (`host` when it is
   * a loopback address, else 127.0.0.1) at `listenPort`
   * (default: the service port itself; 0: any free port). A connection to one is routed with the
   * config's TcpPortConfig for that service port (`--tcp-outbound PORT[=LOCAL]`).
   */
  tcpOutbound?: readonly TcpOutboundPort[];
  /**
   * Inbound TCP listeners (sidecar role): each forwards to `appHost:appPort` under the PeerAuthentication
   * of that app port (`--tcp-inbound LISTEN=APP`). Register `LISTEN` as the endpoint port of the
   * service's TCP port so other sidecars reach it.
   */
  tcpInbound?: readonly TcpInboundPort[];
  /**
   * The outbound listener receives connections an iptables REDIRECT captured (an injected pod,
   * `--iptables-capture`): each one's original destination (SO_ORIGINAL_DST, a native addon) picks
   * the TCP proxy for a TCP service port of the config, HTTP otherwise (tcp/captured-outbound.ts).
   * A port no service has: passed through to the original destination, or closed under the
   * MeshConfig's outboundTrafficPolicy REGISTRY_ONLY. Without the addon, captured TCP is reported
   * unavailable (capturedTcpUnavailable) and every connection is HTTP. Sidecar role only.
   * The inbound listener does the same for the app's TCP ports (the appPorts of `tcpInbound`): a
   * connection captured to one of them takes that port's inbound TCP path (tcp/captured-inbound.ts);
   * others stay HTTP.
   */
  iptablesCapture?: boolean;
  /**
   * L4 filters a new TCP connection on that side runs (tcp/tcp-filter.ts) before the config's
   * WasmPlugins of type NETWORK (tcp/wasm-tcp-filter.ts); gateways' connections are 'outbound'.
   * Asked per connection.
   */
  tcpFilters?: (direction: 'inbound' | 'outbound') => readonly TcpFilterFactory[];
  /**
   * false: calls are not counted per edge (the console's graph gets nothing from this proxy). Only
   * for measuring what the counting costs (npm run bench:edges); default true.
   */
  edgeStats?: boolean;
}

export interface ConfigStatus {
  version: string;
  appliedAt: string;
  /** The last rejected config's error, if the latest attempt failed. */
  lastError?: { version?: string; message: string; at: string };
}

/** One side's network filters: the plugins (for status) and the factories new connections use. */
interface NetworkChains {
  readonly inbound: { readonly chain: FilterChain; readonly factories: readonly TcpFilterFactory[] };
  readonly outbound: { readonly chain: FilterChain; readonly factories: readonly TcpFilterFactory[] };
}

const LEVEL_BY_ABI = [0, 1, 2, 3, 4, 5];

export class Proxy {
  readonly options: ProxyOptions;
  readonly metrics = new MetricsRegistry();
  readonly upstreams: UpstreamPools;
  readonly clusters = new ClusterManager(this.metrics, (cluster, endpoint) => this.upstreams.endpointTls(cluster, endpoint));
  readonly #plugins: PluginManager;
  readonly #accessLog: AccessLog;
  /** Span exporters and access-log files of Telemetry providers, kept across config changes. */
  readonly #telemetry = new TelemetryBackends(this.metrics);
  /** Telemetry overrides of Istio's standard metrics, applied where the telemetry filter defines them. */
  readonly #metricOverrides = new MetricOverrides(this.metrics);
  #config!: ProxyConfig;
  /** The config as given, before module overrides. */
  #base!: ProxyConfig;
  /** Modules standing in for WasmPlugins' own (standalone author's loop). */
  readonly #overrides = new ModuleOverrides();
  #status!: ConfigStatus;
  #outbound!: ConnectionManager;
  #inbound!: ConnectionManager;
  #listeners: Listener[] = [];
  #gateway: GatewayListeners | undefined;
  #admin: AdminServer | undefined;
  #statusServer: AdminServer | undefined;
  #ready = false;
  #draining = false;
  readonly startedAt = new Date();
  #applying: Promise<void> = Promise.resolve();
  #identity: ProxyIdentity | undefined;
  #watchdog: EventLoopWatchdog | undefined;
  #loopDelay: LoopDelayGauges | undefined;
  /** The process's stall count when each module version was loaded: its reports count stalls since. */
  readonly #stallsAtLoad = new WeakMap<FilterPlugin, number>();
  /** Outbound golden signals per edge, reported to the orchestrator (trafficReport). */
  readonly #edges = new EdgeStats(() => this.#config.workload);
  /** TCP proxying: Istio's TCP metrics, connection limits per cluster, listeners. */
  readonly #tcpStats = new TcpStats(this.metrics);
  readonly #tcpLimits = new TcpConnectionLimits();
  #tcpOutbound: TcpOutboundListeners | undefined;
  #tcpInbound: TcpInboundListeners | undefined;
  #captured: CapturedOutbound | undefined;
  #capturedInbound: CapturedInbound | undefined;
  /** The current config's network filters (WasmPlugins of type NETWORK) per side: new connections take these. */
  #network: NetworkChains = { inbound: { chain: new FilterChain([]), factories: [] }, outbound: { chain: new FilterChain([]), factories: [] } };

  private constructor(options: ProxyOptions) {
    this.options = options;
    const maxResponseHeaderBytes = options.maxResponseHeaderBytes ?? DEFAULT_MAX_RESPONSE_HEADER_BYTES;
    this.upstreams = new UpstreamPools({ maxResponseHeaderBytes });
    this.#accessLog = new AccessLog(options.accessLog ?? 'stdout');
    const host: PluginHost = {
      log: (level, message, plugin) => log(LEVEL_BY_ABI[level] ?? LogLevel.Info, `wasm ${plugin}`, message),
      httpCall: createHttpCallout(this.clusters, this.upstreams),
      grpcCall: createGrpcCallout(this.clusters, this.upstreams),
      metrics: this.metrics,
      // One store per proxy: every VM of the proxy shares data by vm_id, and it survives module swaps.
      sharedData: new SharedDataStore(),
      sharedQueues: new SharedQueueRegistry(),
      // Root contexts have no stream: they learn their workload's identity from node attributes.
      getProperty: (path) => (this.#config ? workloadNodeProperty(this.#config.workload, path) : undefined),
      // The telemetry filter hands its access-log records to the proxy's sink.
      foreignFunctions: createTelemetryForeignFunctions((record) => this.#accessLog.writeRecord(record)),
      // What a filter writes obeys the limits the proxy applies to clients and apps: nothing a filter
      // adds can make a header block the proxy itself would refuse.
      outputLimits: { requestHeaderBytes: options.connections?.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE, responseHeaderBytes: maxResponseHeaderBytes },
    };
    const transpiles = options.componentCache ? new TranspileCache(options.componentCache.dir, { maxBytes: options.componentCache.maxBytes, onError: (m) => logError('proxy', m) }) : undefined;
    this.#plugins = new PluginManager(host, undefined, new ComponentCache(transpiles));
    options.identity?.collectMetrics?.(this.metrics);
  }

  /** Starts listeners and admin on the first config. Throws if the config cannot be applied. */
  static async start(options: ProxyOptions, config: ProxyConfig): Promise<Proxy> {
    const proxy = new Proxy(options);
    const states = await proxy.#prepare(config);
    states.retainTelemetry();
    proxy.#network = states.network;
    proxy.#config = config;
    proxy.#base = config;
    proxy.#status = { version: config.version, appliedAt: new Date().toISOString() };
    const edges = proxy.#edges;
    const upstreams = proxy.upstreams;
    const edgeRecorder = {
      // ISTIO_MUTUAL to this endpoint, as the upstream pool decides it (auto mTLS: sidecar endpoints only).
      record: (ar: { cluster: Cluster | undefined; endpoint: EndpointState | undefined }, status: number, durationMs: number) => {
        const c = ar.cluster?.config;
        const e = ar.endpoint?.config;
        const mtls = c !== undefined && e !== undefined && c.tls?.mode === 'ISTIO_MUTUAL' && upstreams.endpointTls(c, e).kind === 'tls';
        edges.record({ service: c?.host, labels: e?.labels, subset: c?.subset, mtls, status, durationMs });
      },
    };
    const common = { clusters: proxy.clusters, upstreams: proxy.upstreams, metrics: proxy.metrics, accessLog: proxy.#accessLog, scheme: 'http' as const, ...(options.edgeStats === false ? {} : { edges: edgeRecorder }) };
    proxy.#outbound = new ConnectionManager({ ...common, direction: 'outbound', state: states.outbound });
    proxy.#inbound = new ConnectionManager({
      ...common,
      direction: 'inbound',
      state: states.inbound,
      destinationAddress: `${options.appHost ?? '127.0.0.1'}:${options.appPort ?? 8080}`,
      localPrincipal: () => options.identity?.current()?.spiffeId,
    });
    const host = options.host ?? '127.0.0.1';
    const tcp: TcpProxyDeps = {
      clusters: proxy.clusters,
      upstreams: proxy.upstreams,
      stats: proxy.#tcpStats,
      clusterStats: (c) => proxy.#outbound.clusterStats(c),
      limits: proxy.#tcpLimits,
      workload: () => proxy.#config.workload,
      localPrincipal: () => options.identity?.current()?.spiffeId,
      // ProxyOptions.tcpFilters, then the config's NETWORK WasmPlugins (as of the connection's start).
      filters: (direction) => {
        const own = proxy.#network[direction].factories;
        const extra = options.tcpFilters?.(direction) ?? [];
        return extra.length === 0 ? own : [...extra, ...own];
      },
    };
    try {
      if (options.watchdog) {
        proxy.#watchdog = await EventLoopWatchdog.start(options.watchdog, proxy.metrics);
        proxy.#loopDelay = new LoopDelayGauges(proxy.metrics);
      }
      const outbound = proxy.#outbound;
      const inbound = proxy.#inbound;
      const connections = options.connections ?? {};
      if (options.role === 'gateway') {
        proxy.#gateway = new GatewayListeners({ host, connections, manager: common, tcp });
        await proxy.#gateway.apply(states.gateway, states.outbound);
      } else {
      if (options.iptablesCapture) {
        proxy.#captured = new CapturedOutbound({
          deps: tcp,
          portConfig: (port) => proxy.#config.tcp?.outbound.find((p) => p.port === port),
          listenerPort: () => proxy.outboundPort,
          httpPorts: () => httpServicePorts(proxy.#config),
          outboundTrafficPolicy: () => proxy.#config.outboundTrafficPolicy ?? 'ALLOW_ANY',
        });
      }
      const captured = proxy.#captured?.unavailable === undefined ? proxy.#captured : undefined;
      // Opened before the inbound listener, which hands them its captured TCP connections.
      if (options.tcpInbound && options.tcpInbound.length > 0) {
        proxy.#tcpInbound = await TcpInboundListeners.open({
          host,
          ports: options.tcpInbound,
          appHost: options.appHost ?? '127.0.0.1',
          deps: tcp,
          peerAuthentication: (appPort) => proxy.mtlsModeFor(appPort),
          onRefused: (reason) => proxy.#identity?.refused(reason),
          handshakeTimeoutMs: connections.headersTimeoutMs ?? 60_000,
        });
      }
      if (options.iptablesCapture && proxy.#tcpInbound) {
        proxy.#capturedInbound = new CapturedInbound({
          tcp: proxy.#tcpInbound,
          tcpPorts: new Set(options.tcpInbound!.map((p) => p.appPort)),
          listenerPort: () => proxy.inboundPort,
        });
      }
      const capturedInbound = proxy.#capturedInbound?.unavailable === undefined ? proxy.#capturedInbound : undefined;
      proxy.#listeners.push(
        await createListener({
          ...connections,
          host,
          port: options.outboundPort,
          onRequest: outbound.handle,
          onUpgrade: (req, socket, head) => handleUpgrade(outbound, req, socket, head),
          ...(captured ? { takeConnection: captured.take } : {}),
        }),
      );
      proxy.#listeners.push(
        await createListener({
          ...connections,
          host,
          port: options.inboundPort,
          onRequest: inbound.handle,
          onUpgrade: (req, socket, head) => handleUpgrade(inbound, req, socket, head),
          // PeerAuthentication applies with or without an identity: STRICT never answers plaintext.
          peerAuthentication: () => proxy.inboundMtlsMode(),
          onRefused: (reason) => proxy.#identity?.refused(reason),
          ...(capturedInbound ? { takeConnection: capturedInbound.take } : {}),
        }),
      );
      if (options.tcpOutbound && options.tcpOutbound.length > 0) {
        // Loopback only, whatever --host is: reachable from outside (a pod's 0.0.0.0), an outbound
        // listener would let anyone into the mesh with this workload's identity.
        const local = net.isIP(host) && isLoopbackAddress(host) ? host : LOOPBACK_HOST;
        proxy.#tcpOutbound = await TcpOutboundListeners.open(local, options.tcpOutbound, tcp, (port) => proxy.#config.tcp?.outbound.find((p) => p.port === port));
      }
      }
      // A new workload certificate or trust bundle is swapped in place for new handshakes and new
      // upstream connections; a missing or expired one takes mTLS away (fail closed).
      proxy.#identity = new ProxyIdentity({
        provider: options.identity,
        metrics: proxy.metrics,
        inboundMode: () => proxy.inboundMtlsMode(),
        apply: (state) => {
          proxy.#listeners[1]?.setIdentity(state.cert ? serverContextOptions(state.cert) : undefined);
          proxy.#tcpInbound?.setIdentity(state.cert ? serverContextOptions(state.cert) : undefined);
          proxy.upstreams.setIdentity(state.cert, state.configured, state.missing);
          proxy.#gateway?.setIdentity(state.cert);
        },
      });
      if (options.adminPort !== null) proxy.#admin = await startAdminServer(proxy.#adminSource(), { host: options.adminHost ?? LOOPBACK_HOST, port: options.adminPort, access: options.adminAccess ?? {} });
      if (options.statusPort !== undefined) proxy.#statusServer = await startStatusServer(proxy.#adminSource(), host, options.statusPort);
    } catch (err) {
      await proxy.stop(0);
      throw err;
    }
    proxy.#ready = true;
    const status = proxy.#statusServer ? `, status ${host}:${proxy.statusPort}` : '';
    if (proxy.#gateway) logInfo('proxy', `gateway ready: ${[...proxy.gatewayPorts().values()].map((p) => `${host}:${p}`).join(', ') || 'no listeners yet'}, admin ${options.adminHost ?? LOOPBACK_HOST}:${proxy.adminPort}${status}; config ${config.version.slice(0, 12)}`);
    else logInfo('proxy', `listening: outbound ${host}:${proxy.outboundPort}, inbound ${host}:${proxy.inboundPort}, admin ${options.adminHost ?? LOOPBACK_HOST}:${proxy.adminPort}${status}; config ${config.version.slice(0, 12)}`);
    return proxy;
  }

  /** Under iptables capture: why captured TCP is unavailable (the native addon's state); undefined when it works or capture is off. */
  get capturedTcpUnavailable(): string | undefined {
    return this.#captured?.unavailable;
  }

  get outboundPort(): number {
    return this.#listeners[0]?.port ?? 0;
  }
  get inboundPort(): number {
    return this.#listeners[1]?.port ?? 0;
  }
  /** A gateway's listening ports, by the port its config names (they differ only for port 0). */
  gatewayPorts(): Map<number, number> {
    return this.#gateway?.ports() ?? new Map();
  }
  get adminPort(): number {
    return this.#admin?.port ?? 0;
  }
  get statusPort(): number {
    return this.#statusServer?.port ?? 0;
  }
  /** The inbound listener's PeerAuthentication mode for the app port (Istio's default: PERMISSIVE). */
  inboundMtlsMode(): 'STRICT' | 'PERMISSIVE' | 'DISABLE' {
    return this.mtlsModeFor(this.options.appPort ?? 8080);
  }

  /** PeerAuthentication mode of one app port (port-level setting, else the workload's mode). */
  mtlsModeFor(appPort: number): 'STRICT' | 'PERMISSIVE' | 'DISABLE' {
    const mtls = this.#config?.mtls;
    return mtls?.portLevel?.[appPort] ?? mtls?.mode ?? 'PERMISSIVE';
  }

  /** Outbound TCP listeners' local ports, by service port. */
  tcpOutboundPorts(): Map<number, number> {
    return this.#tcpOutbound?.ports() ?? new Map();
  }

  /** Inbound TCP listeners' ports, in the order of options.tcpInbound. */
  tcpInboundPorts(): number[] {
    return this.#tcpInbound?.ports() ?? [];
  }

  get config(): ProxyConfig {
    return this.#config;
  }
  get configStatus(): ConfigStatus {
    return this.#status;
  }

  #inboundCluster(config: ProxyConfig): ClusterConfig {
    const port = this.options.appPort ?? 8080;
    return {
      name: `inbound|${port}||${config.workload.name}.${config.workload.namespace}`,
      host: config.workload.name,
      port,
      protocol: 'http1',
      endpoints: [{ address: this.options.appHost ?? '127.0.0.1', port, labels: {}, weight: 1 }],
      loadBalancer: { simple: 'ROUND_ROBIN' },
      connectionPool: {},
    };
  }

  /** Loads filters and builds the listener states for a config; changes nothing visible. */
  async #prepare(config: ProxyConfig): Promise<{ inbound: ListenerState; outbound: ListenerState; gateway: PreparedGatewayListener[]; network: NetworkChains; retainTelemetry: () => void }> {
    const gateway = this.options.role === 'gateway' ? await prepareGatewayListeners(config) : [];
    const networkIn = config.networkFilters?.inbound ?? [];
    const networkOut = config.networkFilters?.outbound ?? [];
    const http = config.inboundFilters.length + config.outboundFilters.length;
    // One apply for every chain: HTTP and network plugins load (and are refused) together.
    const bindings = [...config.inboundFilters, ...config.outboundFilters, ...networkIn, ...networkOut];
    const plugins = await this.#plugins.load(bindings, new Set([...networkIn, ...networkOut]));
    const networkChain = (slots: typeof plugins): NetworkChains['inbound'] => {
      // NETWORK plugins have no canary (validation) and are proxy-wasm Plugins (the manager checked).
      const list = slots.map((s) => (s instanceof CanaryPair ? s.stable : s));
      return { chain: new FilterChain(list), factories: list.map((p) => new WasmTcpFilterFactory(p as unknown as NetworkFilterPlugin)) };
    };
    const network: NetworkChains = { inbound: networkChain(plugins.slice(http, http + networkIn.length)), outbound: networkChain(plugins.slice(http + networkIn.length)) };
    const stalls = this.#watchdog?.stalls() ?? 0;
    for (const slot of plugins) {
      for (const p of slot instanceof CanaryPair ? [slot.stable, slot.canary] : [slot]) if (!this.#stallsAtLoad.has(p)) this.#stallsAtLoad.set(p, stalls);
    }
    const inboundPlugins = plugins.slice(0, config.inboundFilters.length);
    const outboundPlugins = plugins.slice(config.inboundFilters.length, http);
    const inboundCluster = this.#inboundCluster(config);
    const routes = new RouteTable(config.virtualHosts);
    this.clusters.update({ ...config.clusters, [inboundCluster.name]: inboundCluster });
    const keep = new Set<string>();
    for (const c of this.clusters.list()) for (const e of c.endpoints) keep.add(e.key);
    this.upstreams.retain(keep);
    const telemetry = this.#telemetry.build(config.telemetry, config.workload, { inbound: `${this.options.appHost ?? '127.0.0.1'}:${this.options.appPort ?? 8080}`, outbound: '' });
    const metricOverrides = [config.telemetry?.inbound.metricOverrides, config.telemetry?.outbound.metricOverrides] as const;
    this.#metricOverrides.check(...metricOverrides);
    return {
      outbound: { config, routes, chain: new FilterChain(outboundPlugins), ...(telemetry.outbound ? { telemetry: telemetry.outbound } : {}) },
      inbound: { config, routes: inboundRouteTable(inboundCluster.name), chain: new FilterChain(inboundPlugins), ...(telemetry.inbound ? { telemetry: telemetry.inbound } : {}) },
      retainTelemetry: () => {
        telemetry.retain();
        this.#metricOverrides.set(...metricOverrides);
      },
      gateway,
      network,
    };
  }

  /**
   * Applies a new config. Serialized: concurrent calls apply in order. On failure the running config
   * stays, the error is kept in configStatus.lastError, and the promise rejects with it.
   */
  applyConfig(config: ProxyConfig): Promise<void> {
    const run = async () => {
      const base = config;
      config = this.#overrides.apply(base);
      if (config.version === this.#config.version) {
        this.#base = base;
        return;
      }
      try {
        const states = await this.#prepare(config);
        this.#base = base;
        this.#outbound.state = states.outbound;
        this.#inbound.state = states.inbound;
        this.#network = states.network;
        states.retainTelemetry();
        await this.#gateway?.apply(states.gateway, states.outbound);
        this.#config = config;
        this.#status = { version: config.version, appliedAt: new Date().toISOString() };
        logInfo('proxy', `config ${config.version.slice(0, 12)} applied`);
        this.#identity?.check(); // the inbound mTLS mode may have changed
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        this.#status = { ...this.#status, lastError: { version: config.version, message, at: new Date().toISOString() } };
        logError('proxy', `config ${config.version.slice(0, 12)} rejected, keeping ${this.#config.version.slice(0, 12)}: ${message}`);
        throw err;
      }
    };
    const next = this.#applying.then(run, run);
    this.#applying = next.catch(() => {});
    return next;
  }

  /**
   * Runs `bytes` in place of the module of WasmPlugin `plugin` (`namespace/name`, or `name` when it is
   * unique), in every chain that has it, until cleared; later config changes keep the override. The new
   * module is compiled and started before it takes traffic; if that fails the running one stays and
   * this throws with the reason.
   */
  async overrideModule(plugin: string, bytes: Uint8Array): Promise<{ plugin: string; sha256: string; config: string }> {
    const key = this.#overrides.keyFor(this.#base, plugin);
    const { sha256, restore } = await this.#overrides.set(key, bytes);
    try {
      await this.applyConfig(this.#base);
    } catch (err) {
      restore();
      throw err;
    }
    return { plugin: key, sha256, config: this.#config.version };
  }

  /** Drops an override: the WasmPlugin's own module serves again. */
  async clearModuleOverride(plugin: string): Promise<void> {
    if (this.#overrides.delete(this.#overrides.keyFor(this.#base, plugin))) await this.applyConfig(this.#base);
  }

  #adminSource(): AdminSource {
    const source: AdminSource = {
      renderPrometheus: () => this.renderPrometheus(),
      configDump: () => this.configDump(),
      clustersDump: () => this.clustersDump(),
      serverInfo: () => this.serverInfo(),
      ready: () => this.ready(),
      notReadyReasons: () => this.notReadyReasons(),
      filters: () => this.filters(),
    };
    if (this.options.moduleOverrides) {
      source.overrideModule = (plugin, bytes) => this.overrideModule(plugin, bytes);
      source.clearModuleOverride = (plugin) => this.clearModuleOverride(plugin);
    }
    return source;
  }

  /** The filters of both chains: which module version serves each, and how its streams ended. */
  filters(): { inbound: FilterStatus[]; outbound: FilterStatus[]; network?: { inbound: FilterStatus[]; outbound: FilterStatus[] }; config: string; overrides: Record<string, string> } {
    const n = this.#network;
    return {
      config: this.#config.version,
      inbound: filterStatus('inbound', this.#inbound.state.chain),
      outbound: filterStatus('outbound', this.#outbound.state.chain),
      // The TCP proxy's chains (WasmPlugins of type NETWORK), when the config has any.
      ...(n.inbound.chain.isEmpty && n.outbound.chain.isEmpty ? {} : { network: { inbound: filterStatus('inbound', n.inbound.chain), outbound: filterStatus('outbound', n.outbound.chain) } }),
      overrides: this.#overrides.summary(),
    };
  }

  /** The canaried filters' outcomes per module version, for the orchestrator's rollout controller. */
  canaryStats(): FilterVersionStatsMessage[] {
    const now = this.#watchdog?.stalls() ?? 0;
    return canaryReport([this.#inbound.state.chain, this.#outbound.state.chain], (p) => now - (this.#stallsAtLoad.get(p) ?? now));
  }

  /** The outbound calls' golden signals per edge and the certificate's expiry, for the orchestrator's console. */
  trafficReport(): TrafficReportMessage {
    return this.#edges.report(this.options.identity?.current()?.notAfter.toISOString());
  }

  /** Records a config rejected before it reached the proxy (invalid YAML, schema errors). */
  noteRejectedConfig(message: string): void {
    this.#status = { ...this.#status, lastError: { message, at: new Date().toISOString() } };
  }

  // ---- admin ----------------------------------------------------------------------------------

  renderPrometheus(): string {
    for (const c of this.clusters.list()) {
      const stats = this.#outbound.clusterStats(c);
      stats.connections.record(this.upstreams.connectionsTo(c.endpoints));
    }
    this.options.identity?.collectMetrics?.(this.metrics);
    return this.metrics.renderPrometheus();
  }

  configDump(): unknown {
    return { status: this.#status, config: redactProxyConfig(this.#config) };
  }

  clustersDump(): unknown {
    return this.clusters.list().map((c) => ({
      name: c.config.name,
      protocol: c.config.protocol,
      loadBalancer: c.config.loadBalancer,
      endpoints: c.endpoints.map((e) => ({ address: e.key, labels: e.config.labels, weight: e.config.weight, healthy: e.healthy, activeRequests: e.activeRequests, ...c.endpointHealth(e) })),
    }));
  }

  serverInfo(): unknown {
    return {
      version: process.env.npm_package_version ?? '0.1.0',
      state: this.#draining ? 'DRAINING' : this.#ready ? 'LIVE' : 'INITIALIZING',
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      hostname: os.hostname(),
      node: process.version,
      workload: this.#config?.workload,
      configVersion: this.#status?.version,
      notReady: this.notReadyReasons(),
    };
  }

  ready(): boolean {
    return this.notReadyReasons().length === 0;
  }

  /** Why /ready fails: starting, draining, a recent event-loop stall, identity problems; empty when ready. */
  notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (this.#draining) reasons.push('draining');
    else if (!this.#ready) reasons.push('starting');
    const stall = this.#watchdog?.notReadyReason();
    if (stall) reasons.push(stall);
    reasons.push(...(this.#identity?.problems() ?? []));
    return reasons;
  }

  /** The reasons in one line (a worker's heartbeat to its primary); undefined when ready. */
  notReadyReason(): string | undefined {
    const reasons = this.notReadyReasons();
    return reasons.length > 0 ? reasons.join('; ') : undefined;
  }

  /** Stops accepting, lets in-flight requests finish for up to drainMs, then closes everything. */
  async stop(drainMs = 5000): Promise<void> {
    this.#draining = true;
    const closing = [...this.#listeners.map((l) => l.close()), this.#gateway?.close(), this.#tcpOutbound?.close(), this.#tcpInbound?.close()];
    const idle = Promise.all([this.#outbound?.idle(), this.#inbound?.idle(), this.#gateway?.idle(), this.#tcpOutbound?.sessions.idle(), this.#tcpInbound?.sessions.idle(), this.#captured?.idle()]);
    const drained = await within(idle, drainMs);
    if (!drained) for (const l of this.#listeners) l.destroy();
    else for (const l of this.#listeners) l.closeIdle();
    if (!drained) this.#gateway?.destroy();
    else this.#gateway?.closeIdle();
    await within(Promise.all(closing), 1000);
    for (const l of this.#listeners) l.destroy();
    this.#gateway?.destroy();
    this.#tcpOutbound?.destroy();
    this.#tcpInbound?.destroy();
    this.#captured?.destroy();
    await this.#admin?.close();
    await this.#statusServer?.close();
    this.#identity?.close();
    await this.options.identity?.close();
    this.clusters.stop();
    await this.upstreams.close();
    await this.#plugins.stop();
    await this.#overrides.close();
    await this.#accessLog.close();
    await this.#telemetry.close();
    this.#metricOverrides.close();
    this.#loopDelay?.stop();
    await this.#watchdog?.stop();
  }
}

/** Resolves true if `promise` settles within `ms`, false otherwise; the timer never outlives it. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const httpPortsByConfig = new WeakMap<ProxyConfig, ReadonlySet<number>>();

/** The ports of the config's outbound HTTP (and gRPC) clusters: captured connections to them are HTTP. */
function httpServicePorts(config: ProxyConfig): ReadonlySet<number> {
  let ports = httpPortsByConfig.get(config);
  if (!ports) {
    ports = new Set(Object.values(config.clusters).filter((c) => c.name.startsWith('outbound|') && c.protocol !== 'tcp').map((c) => c.port));
    httpPortsByConfig.set(config, ports);
  }
  return ports;
}

/** 127.0.0.0/8 and ::1. */
function isLoopbackAddress(address: string): boolean {
  return address === '::1' || (net.isIPv4(address) && address.startsWith('127.'));
}
