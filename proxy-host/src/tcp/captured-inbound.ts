// The inbound listener under iptables capture (an injected pod: connections to the app's ports are
// REDIRECTed to it, see orchestrator/src/inject/iptables.ts). Each accepted connection's original
// destination (original-dst.ts: SO_ORIGINAL_DST) is read before a byte is: a connection to one of the
// app's TCP ports (the proxy's `--tcp-inbound LISTEN=APP` app ports, the same list its per-port
// inbound TCP listeners serve) takes the inbound TCP path of that port (tcp-listeners.ts:
// PeerAuthentication, metadata exchange, AuthorizationPolicy and NETWORK filters, Istio's TCP metrics
// with reporter destination, then the app at appHost:<port>), as Envoy's inbound listener picks a
// filter chain by destination port. Anything else (HTTP app ports, a connection made to the listener
// itself, no original destination) stays on the HTTP inbound listener, as before.
import type net from 'node:net';
import { logDebug, logError, logInfo } from '../log.ts';
import { isListenerItself } from './captured-outbound.ts';
import { loadOriginalDstAddon, originalDestination } from './original-dst.ts';
import type { TcpInboundListeners } from './tcp-listeners.ts';

export interface CapturedInboundOptions {
  /** The inbound TCP path (the per-port listeners' sessions, mTLS servers and identity). */
  tcp: TcpInboundListeners;
  /** The app's TCP ports: captured connections to them go to the TCP path. */
  tcpPorts: ReadonlySet<number>;
  /** The inbound listener's own port: a connection made to it directly is HTTP. */
  listenerPort: () => number;
}

export class CapturedInbound {
  readonly #options: CapturedInboundOptions;
  /** Why captured inbound TCP does not work in this process (the addon is missing); undefined: it does. */
  readonly unavailable: string | undefined;

  constructor(options: CapturedInboundOptions) {
    this.#options = options;
    const addon = loadOriginalDstAddon();
    this.unavailable = addon.ok ? undefined : addon.reason;
    const ports = [...options.tcpPorts].join(', ');
    if (addon.ok) logInfo('tcp', `iptables capture: the inbound listener sends captured connections to app TCP port(s) ${ports} to the inbound TCP path`);
    else logError('tcp', `iptables capture: inbound TCP is unavailable, captured connections to app TCP port(s) ${ports} are served as HTTP: ${addon.reason}`);
  }

  /** The inbound listener's takeConnection: true when the socket went to the inbound TCP path. */
  take = (socket: net.Socket): boolean => {
    if (this.unavailable !== undefined) return false;
    const read = originalDestination(socket);
    if (!read.ok) {
      if (read.code !== 'ENOENT') logDebug('tcp', `inbound connection from ${socket.remoteAddress}:${socket.remotePort}: no original destination (${read.message}): HTTP`);
      return false;
    }
    const dst = read.destination;
    if (!this.#options.tcpPorts.has(dst.port)) return false;
    if (isListenerItself(socket, dst, this.#options.listenerPort())) return false;
    this.#options.tcp.takeCaptured(socket, dst);
    return true;
  };
}
