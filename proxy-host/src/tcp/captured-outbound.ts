// The outbound listener under iptables capture (an injected pod: every outbound TCP connection of the
// app is REDIRECTed to it, see orchestrator/src/inject/iptables.ts). The connection's original
// destination (original-dst.ts: SO_ORIGINAL_DST) picks the path before a byte is read, as Envoy's
// original_dst listener filter picks a filter chain by destination port:
//   - a port the config proxies as TCP (config.tcp.outbound: TCP, TLS, HTTPS and opaque service
//     ports, VirtualService tcp/tls ports): the TCP proxy (tcp-proxy.ts), exactly as a per-port
//     `--tcp-outbound` listener's connection, with the original address as the destination that
//     routes' destinationSubnets match;
//   - anything else (HTTP service ports, a connection made to the listener itself, a socket whose
//     original destination cannot be read): the HTTP listener, as before, where the Host header
//     names the service.
// Deciding by port, not by sniffing, keeps server-first protocols (MySQL, SMTP...) from waiting.
import type net from 'node:net';
import type { TcpPortConfig } from '../../../mesh/src/proxy-config.ts';
import { logDebug, logError, logInfo } from '../log.ts';
import { loadOriginalDstAddon, originalDestination, type OriginalDestination } from './original-dst.ts';
import { TcpSession, TcpSessions, type TcpProxyDeps } from './tcp-proxy.ts';

export interface CapturedOutboundOptions {
  deps: TcpProxyDeps;
  /** The current config's routing of a TCP service port (undefined: not a TCP port: HTTP). */
  portConfig: (port: number) => TcpPortConfig | undefined;
  /** The outbound listener's own port: a connection made to it directly is HTTP. */
  listenerPort: () => number;
}

export class CapturedOutbound {
  readonly sessions = new TcpSessions();
  readonly #options: CapturedOutboundOptions;
  /** Why captured TCP does not work in this process (the addon is missing); undefined: it does. */
  readonly unavailable: string | undefined;

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
    if (isListenerItself(socket, dst, this.#options.listenerPort())) return false;
    const port = this.#options.portConfig(dst.port);
    if (!port) return false;
    // The TCP proxy passes a FIN on as a FIN (half-close); the HTTP listener's sockets end with it.
    socket.allowHalfOpen = true;
    TcpSession.outbound(socket, port, this.#options.deps, this.sessions, { address: dst.address, port: dst.port });
    return true;
  };

  destroy(): void {
    this.sessions.destroyAll();
  }
}

function isListenerItself(socket: net.Socket, dst: OriginalDestination, listenerPort: number): boolean {
  return dst.port === listenerPort && (dst.address === socket.localAddress || dst.address === '0.0.0.0' || dst.address === '::');
}
