// The outbound listener under iptables capture (an injected pod: every outbound TCP connection of the
// app is REDIRECTed to it, see orchestrator/src/inject/iptables.ts). The connection's original
// destination (original-dst.ts: SO_ORIGINAL_DST) picks the path before a byte is read, as Envoy's
// original_dst listener filter picks a filter chain by destination port:
//   - a port the config proxies as TCP (config.tcp.outbound: TCP, TLS, HTTPS and opaque service
//     ports, VirtualService tcp/tls ports): the TCP proxy (tcp-proxy.ts), exactly as a per-port
//     `--tcp-outbound` listener's connection, with the original address as the destination that
//     routes' destinationSubnets match;
//   - a port no service of the config has (neither TCP nor HTTP): outside the mesh. Under
//     outboundTrafficPolicy ALLOW_ANY (Istio's default) the bytes go to the original destination as
//     they are (Istio's PassthroughCluster: plain TCP, counted in the TCP metrics with
//     destination_service "PassthroughCluster"); under REGISTRY_ONLY the connection is closed
//     (BlackHoleCluster);
//   - anything else (HTTP service ports, a connection made to the listener itself, a socket whose
//     original destination cannot be read): the HTTP listener, as before, where the Host header
//     names the service.
// Deciding by port, not by sniffing, keeps server-first protocols (MySQL, SMTP...) from waiting.
import net from 'node:net';
import type { TcpPortConfig } from '../../../mesh/src/proxy-config.ts';
import { logDebug, logError, logInfo } from '../log.ts';
import { loadOriginalDstAddon, originalDestination, type OriginalDestination } from './original-dst.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS, NOBODY, TcpSession, TcpSessions, workloadLabels, type TcpProxyDeps } from './tcp-proxy.ts';
import { UNKNOWN, type TcpSeries } from './tcp-stats.ts';

/** Istio's MeshConfig outboundTrafficPolicy.mode: where connections to unknown destinations go. */
export type OutboundTrafficPolicy = 'ALLOW_ANY' | 'REGISTRY_ONLY';
export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
export const BLACKHOLE_CLUSTER = 'BlackHoleCluster';

export interface CapturedOutboundOptions {
  deps: TcpProxyDeps;
  /** The current config's routing of a TCP service port (undefined: not a TCP port: HTTP). */
  portConfig: (port: number) => TcpPortConfig | undefined;
  /** The outbound listener's own port: a connection made to it directly is HTTP. */
  listenerPort: () => number;
  /** The current config's HTTP service ports (any other port without a TCP config is outside the mesh). */
  httpPorts: () => ReadonlySet<number>;
  /** The current config's outboundTrafficPolicy (the MeshConfig's; ALLOW_ANY unless it says otherwise). */
  outboundTrafficPolicy: () => OutboundTrafficPolicy;
}

export class CapturedOutbound {
  readonly sessions = new TcpSessions();
  readonly #options: CapturedOutboundOptions;
  /** Why captured TCP does not work in this process (the addon is missing); undefined: it does. */
  readonly unavailable: string | undefined;
  /** Passthrough connections (downstream sockets) still open. */
  readonly #passthrough = new Set<net.Socket>();
  #passthroughIdle: (() => void)[] = [];
  /**
   * The passthrough connections the proxy opened, as "<local port>><destination>": one of them
   * arriving here again (same source port, same original destination: the same 4-tuple) means the
   * proxy's own traffic is captured (it does not run as the UID/GID the rules exclude), a loop that
   * would open connections without end.
   */
  readonly #own = new Set<string>();
  #loopReported = false;

  constructor(options: CapturedOutboundOptions) {
    this.#options = options;
    const addon = loadOriginalDstAddon();
    this.unavailable = addon.ok ? undefined : addon.reason;
    if (addon.ok) logInfo('tcp', `iptables capture: the outbound listener reads each connection's original destination (${addon.path}); TCP service ports go to the TCP proxy`);
    else logError('tcp', `iptables capture: captured TCP is unavailable, every captured connection is served as HTTP: ${addon.reason}`);
  }

  /** The listener's takeConnection: true when the socket went to the TCP proxy. */
  take = (socket: net.Socket): boolean => {
    if (this.unavailable !== undefined) return false;
    const read = originalDestination(socket);
    if (!read.ok) {
      // ENOENT: the kernel rewrote nothing (a connection made to the listener's own address).
      if (read.code !== 'ENOENT') logDebug('tcp', `captured connection from ${socket.remoteAddress}:${socket.remotePort}: no original destination (${read.message}): HTTP`);
      return false;
    }
    const dst = read.destination;
    if (this.#own.size > 0 && this.#own.has(`${socket.remotePort}>${dst.address}:${dst.port}`)) {
      if (!this.#loopReported) {
        this.#loopReported = true;
        logError('tcp', `iptables capture: the proxy's own connection to ${dst.address}:${dst.port} was captured again and is closed: run the proxy as the UID/GID the iptables rules exclude (1337)`);
      }
      socket.destroy();
      return true;
    }
    if (isListenerItself(socket, dst, this.#options.listenerPort())) return false;
    const port = this.#options.portConfig(dst.port);
    if (!port) {
      if (this.#options.httpPorts().has(dst.port)) return false;
      socket.allowHalfOpen = true;
      this.#outsideMesh(socket, dst);
      return true;
    }
    // The TCP proxy passes a FIN on as a FIN (half-close); the HTTP listener's sockets end with it.
    socket.allowHalfOpen = true;
    TcpSession.outbound(socket, port, this.#options.deps, this.sessions, { address: dst.address, port: dst.port });
    return true;
  };

  /** Resolves when no captured TCP connection (proxied or passed through) is left. */
  idle(): Promise<unknown> {
    const passthrough = this.#passthrough.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.#passthroughIdle.push(resolve));
    return Promise.all([this.sessions.idle(), passthrough]);
  }

  destroy(): void {
    this.sessions.destroyAll();
    for (const s of [...this.#passthrough]) s.destroy();
  }

  /** A destination no service of the mesh has: PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY). */
  #outsideMesh(down: net.Socket, dst: OriginalDestination): void {
    const deps = this.#options.deps;
    const w = deps.workload();
    const series = (service: string, flags: string): TcpSeries =>
      deps.stats.series({
        reporter: 'source',
        source: workloadLabels(w),
        sourcePrincipal: deps.localPrincipal() ?? UNKNOWN,
        destination: NOBODY,
        destinationPrincipal: UNKNOWN,
        destinationService: service,
        responseFlags: flags,
        security: 'unknown',
      });
    if (this.#options.outboundTrafficPolicy() === 'REGISTRY_ONLY') {
      // Envoy's BlackHoleCluster: the connection is opened and closed at once, nothing is sent anywhere.
      const s = series(BLACKHOLE_CLUSTER, 'UH');
      s.opened.increment(1);
      s.closed.increment(1);
      logDebug('tcp', `captured connection to ${dst.address}:${dst.port}: not a service of the mesh, REGISTRY_ONLY: closed`);
      down.destroy();
      return;
    }
    this.#passthrough.add(down);
    let stats: TcpSeries | undefined;
    let finished = false;
    let downClosed = false;
    let upClosed = false;
    // Counted and forgotten once both sockets are closed (or the connect failed).
    const finish = (flag?: string): void => {
      if (finished) return;
      finished = true;
      if (stats) {
        stats.closed.increment(1);
        deps.stats.active.outbound.increment(-1);
      } else if (flag) {
        // Never connected: Envoy's UF (upstream connection failure).
        const s = series(PASSTHROUGH_CLUSTER, flag);
        s.opened.increment(1);
        s.closed.increment(1);
      }
      if (own !== undefined) this.#own.delete(own);
      this.#passthrough.delete(down);
      if (this.#passthrough.size === 0) for (const resolve of this.#passthroughIdle.splice(0)) resolve();
    };
    const up = net.connect({ host: dst.address, port: dst.port, allowHalfOpen: true, noDelay: true, timeout: DEFAULT_CONNECT_TIMEOUT_MS });
    // Node makes the connect call for an IP address on a next tick: its port is bound by this loop
    // turn's check phase, before the poll phase that could accept a captured copy of it.
    let own: string | undefined;
    const remember = (): void => {
      if (own !== undefined || finished || up.localPort === undefined) return;
      own = `${up.localPort}>${dst.address}:${dst.port}`;
      this.#own.add(own);
    };
    setImmediate(remember);
    up.once('connect', remember);
    const failed = (why: string): void => {
      logDebug('tcp', `passthrough to ${dst.address}:${dst.port}: ${why}`);
      down.destroy();
      up.destroy();
      finish('UF');
    };
    up.once('timeout', () => failed('connect timed out'));
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (!stats) failed(err.code ?? err.message);
    });
    // A socket closes by itself once both its directions are done (every byte written, the FIN both
    // ways); one closed by an error or a reset takes the other with it.
    down.on('close', (hadError: boolean) => {
      downClosed = true;
      if (!stats || hadError) up.destroy();
      if (!stats || upClosed) finish();
    });
    up.on('close', (hadError: boolean) => {
      upClosed = true;
      if (!stats) return;
      if (hadError) down.destroy();
      if (downClosed) finish();
    });
    up.once('connect', () => {
      up.setTimeout(0);
      stats = series(PASSTHROUGH_CLUSTER, '-');
      stats.opened.increment(1);
      deps.stats.active.outbound.increment(1);
      // Half-close both ways: a FIN is passed on after every byte before it.
      down.on('data', (chunk: Buffer) => {
        stats!.received.increment(chunk.length);
        if (!up.write(chunk)) down.pause();
      });
      up.on('drain', () => down.resume());
      up.on('data', (chunk: Buffer) => {
        stats!.sent.increment(chunk.length);
        if (!down.write(chunk)) up.pause();
      });
      down.on('drain', () => up.resume());
      down.on('end', () => up.end());
      up.on('end', () => down.end());
      down.resume();
    });
  }
}

/**
 * A connection made to the listener's own port without NAT (the kernel may answer SO_ORIGINAL_DST with
 * the socket's own address when it tracks the connection): served by the listener itself.
 */
export function isListenerItself(socket: net.Socket, dst: OriginalDestination, listenerPort: number): boolean {
  return dst.port === listenerPort && (dst.address === socket.localAddress || dst.address === '0.0.0.0' || dst.address === '::');
}
