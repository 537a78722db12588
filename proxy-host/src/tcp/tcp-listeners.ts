// The sidecar's TCP listeners (and a gateway's TCP/TLS ports): sockets accepted and handed to
// TcpSession (tcp-proxy.ts).
//
// Outbound: one listener per service port the proxy was asked to serve (ProxyOptions.tcpOutbound:
// `--tcp-outbound PORT[=LOCAL]`), bound to loopback; a connection to it is a connection to that
// service port, routed with the current config's TcpPortConfig for the port (read per connection, so
// config changes apply to new connections and never cut live ones).
//
// Inbound: one listener per app TCP port (ProxyOptions.tcpInbound: `--tcp-inbound LISTEN=APP`), whose
// connections go to the app's port, under the PeerAuthentication of that app port:
//   STRICT: mTLS only (the client's certificate must chain to the trust bundle; its SPIFFE id is the
//     peer principal); without a usable certificate every connection is closed, never plaintext.
//   PERMISSIVE: a connection whose first bytes are a ClientHello offering the mesh's ALPN protocols
//     (istio-peer-exchange, istio) is mTLS; anything else, an app's own TLS included, goes to the app
//     as it is. A client that sends nothing for CLIENT_HELLO_TIMEOUT_MS (a server-first protocol) is
//     taken as plaintext then, as Istio advises STRICT or DISABLE for such protocols.
//   DISABLE: plaintext.
// Under iptables capture the same path also serves connections the HTTP inbound listener accepted
// for an app TCP port (takeCaptured, from captured-inbound.ts): the original destination stands for
// the listener's address.
import net from 'node:net';
import tls from 'node:tls';
import type { PeerAuthenticationMode, RefusedReason } from '../listener/listener.ts';
import { ReplaySocket } from '../listener/socket-wrapper.ts';
import { uriSans } from '../identity/certs.ts';
import { logInfo } from '../log.ts';
import type { TcpPortConfig } from '../../../mesh/src/proxy-config.ts';
import { parseClientHello } from './client-hello.ts';
import { MESH_ALPNS } from './peer-exchange.ts';
import { CLIENT_HELLO_TIMEOUT_MS, TcpSession, TcpSessions, type TcpProxyDeps } from './tcp-proxy.ts';

/** `--tcp-outbound`: a service port, and the local port its listener binds (0: any; default: the service port). */
export interface TcpOutboundPort {
  port: number;
  listenPort?: number;
}

/** `--tcp-inbound`: the listener's port, and the app port (and PeerAuthentication port) behind it. */
export interface TcpInboundPort {
  port: number;
  appPort: number;
}

async function listen(server: net.Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as net.AddressInfo).port;
}

/** A bound TCP listener and the sockets it accepted (closed on destroy). */
export class TcpListener {
  readonly server: net.Server;
  readonly port: number;
  readonly #sockets: Set<net.Socket>;

  private constructor(server: net.Server, port: number, sockets: Set<net.Socket>) {
    this.server = server;
    this.port = port;
    this.#sockets = sockets;
  }

  /** Listens on host:port; every accepted socket (paused, half-open allowed) goes to `onSocket`. */
  static async open(host: string, port: number, onSocket: (socket: net.Socket) => void): Promise<TcpListener> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      onSocket(socket);
    });
    return new TcpListener(server, await listen(server, port, host), sockets);
  }

  /** Stops accepting; live connections go on. */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  destroy(): void {
    this.server.close();
    for (const s of this.#sockets) s.destroy();
  }
}

/** Outbound TCP listeners of a sidecar, or the TCP/TLS ports of a gateway (reporter "source" on both). */
export class TcpOutboundListeners {
  readonly #listeners = new Map<number, TcpListener>();
  readonly sessions = new TcpSessions();

  /**
   * Opens a listener per port. `portConfig` gives, per connection, the routing of the service port
   * (undefined: nothing configured: closed, NR).
   */
  static async open(host: string, ports: readonly TcpOutboundPort[], deps: TcpProxyDeps, portConfig: (port: number) => TcpPortConfig | undefined): Promise<TcpOutboundListeners> {
    const out = new TcpOutboundListeners();
    try {
      for (const p of ports) await out.add(host, p, deps, portConfig);
    } catch (err) {
      out.destroy();
      throw err;
    }
    return out;
  }

  async add(host: string, p: TcpOutboundPort, deps: TcpProxyDeps, portConfig: (port: number) => TcpPortConfig | undefined): Promise<void> {
    const listener = await TcpListener.open(host, p.listenPort ?? p.port, (socket) => {
      TcpSession.outbound(socket, portConfig(p.port), deps, this.sessions);
    });
    this.#listeners.set(p.port, listener);
    logInfo('tcp', `outbound TCP listener for service port ${p.port}: ${host}:${listener.port}`);
  }

  async remove(port: number): Promise<void> {
    const l = this.#listeners.get(port);
    if (!l) return;
    this.#listeners.delete(port);
    await l.close();
  }

  /** Local ports by service port. */
  ports(): Map<number, number> {
    return new Map([...this.#listeners].map(([port, l]) => [port, l.port]));
  }

  close(): Promise<unknown> {
    return Promise.all([...this.#listeners.values()].map((l) => l.close()));
  }

  destroy(): void {
    for (const l of this.#listeners.values()) l.destroy();
    this.sessions.destroyAll();
  }
}

export interface TcpInboundOptions {
  host: string;
  ports: readonly TcpInboundPort[];
  appHost: string;
  deps: TcpProxyDeps;
  /** PeerAuthentication mode of an app port, asked per connection. */
  peerAuthentication: (appPort: number) => PeerAuthenticationMode;
  onRefused?: (reason: RefusedReason) => void;
  /** TLS handshake limit (the listeners' header read timeout). */
  handshakeTimeoutMs: number;
}

/** Inbound TCP listeners of a sidecar. */
export class TcpInboundListeners {
  readonly #listeners: TcpListener[] = [];
  readonly #options: TcpInboundOptions;
  readonly sessions = new TcpSessions();
  /** One never-listening TLS server per app port, fed accepted sockets; undefined: no usable certificate. */
  readonly #mtls = new Map<number, tls.Server>();
  /** Captured connections' original destinations (the address the client connected to), by accepted socket. */
  readonly #captured = new WeakMap<net.Socket, { address: string; port: number }>();
  #context: tls.SecureContextOptions | undefined;

  private constructor(options: TcpInboundOptions) {
    this.#options = options;
  }

  static async open(options: TcpInboundOptions): Promise<TcpInboundListeners> {
    const out = new TcpInboundListeners(options);
    try {
      for (const p of options.ports) out.#listeners.push(await TcpListener.open(options.host, p.port, (socket) => out.#accept(socket, p)));
    } catch (err) {
      out.destroy();
      throw err;
    }
    for (const [i, p] of options.ports.entries()) logInfo('tcp', `inbound TCP listener ${options.host}:${out.#listeners[i]!.port} -> app ${options.appHost}:${p.appPort}`);
    return out;
  }

  /** Listening ports, in the order of `ports`. */
  ports(): number[] {
    return this.#listeners.map((l) => l.port);
  }

  /** The workload certificate for mTLS (undefined: none usable, so STRICT refuses everything). New handshakes use it at once. */
  setIdentity(context: tls.SecureContextOptions | undefined): void {
    this.#context = context;
    if (!context) {
      this.#mtls.clear();
      return;
    }
    for (const server of this.#mtls.values()) server.setSecureContext({ ...context });
  }

  #mtlsServer(p: TcpInboundPort): tls.Server | undefined {
    if (!this.#context) return undefined;
    let server = this.#mtls.get(p.appPort);
    if (!server) {
      server = tls.createServer(
        { ...this.#context, requestCert: true, rejectUnauthorized: true, ALPNProtocols: [...MESH_ALPNS], handshakeTimeout: this.#options.handshakeTimeoutMs, allowHalfOpen: true },
        (socket: tls.TLSSocket) => {
          const base = underlyingSocket(socket);
          const peerPrincipal = uriSans(socket.getPeerCertificate()?.subjectaltname)[0];
          socket.pause();
          const destination = this.#captured.get(base);
          TcpSession.inbound(socket, base as net.Socket, { mtls: true, ...(peerPrincipal ? { peerPrincipal } : {}), appHost: this.#options.appHost, appPort: p.appPort, ...(destination ? { destination } : {}) }, this.#options.deps, this.sessions);
        },
      );
      server.on('tlsClientError', (_err, socket) => {
        this.#options.onRefused?.('handshake_failed');
        socket.destroy();
      });
      this.#mtls.set(p.appPort, server);
    }
    return server;
  }

  /**
   * A connection iptables captured to the app's TCP port `destination.port` (accepted by another
   * listener, not a byte read yet): served exactly as one accepted by that port's own listener, with
   * `destination` as the local address the connection stands for.
   */
  takeCaptured(socket: net.Socket, destination: { address: string; port: number }): void {
    // As the per-port listeners' sockets: half-open allowed, paused until a path reads them.
    socket.allowHalfOpen = true;
    socket.pause();
    this.#captured.set(socket, { address: destination.address, port: destination.port });
    this.#accept(socket, { port: destination.port, appPort: destination.port });
  }

  #accept(socket: net.Socket, p: TcpInboundPort): void {
    const mode = this.#options.peerAuthentication(p.appPort);
    const destination = this.#captured.get(socket);
    const plaintext = (first?: Buffer, ended = false): void => {
      TcpSession.inbound(socket, socket, { mtls: false, appHost: this.#options.appHost, appPort: p.appPort, ...(first && first.length > 0 ? { first } : {}), ended, ...(destination ? { destination } : {}) }, this.#options.deps, this.sessions);
    };
    if (mode === 'DISABLE') return plaintext();
    if (mode === 'STRICT') {
      const server = this.#mtlsServer(p);
      if (!server) {
        // Never plaintext: without a certificate there is no mTLS to offer, so no connection at all.
        this.#options.onRefused?.('no_certificate');
        socket.destroy();
        return;
      }
      server.emit('connection', socket);
      socket.resume();
      return;
    }
    // PERMISSIVE: mTLS when the client offers the mesh's ALPN, else the bytes as they are.
    let bytes: Buffer = Buffer.alloc(0);
    const decide = (mesh: boolean): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      if (!mesh) return plaintext(bytes);
      const server = this.#mtlsServer(p);
      if (!server) {
        this.#options.onRefused?.('no_certificate');
        socket.destroy();
        return;
      }
      server.emit('connection', new ReplaySocket(socket, bytes));
    };
    const onData = (chunk: Buffer): void => {
      bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
      const r = parseClientHello(bytes);
      if (r.kind === 'tls') decide(r.alpn.some((a) => MESH_ALPNS.includes(a)));
      else if (r.kind === 'not-tls') decide(false);
    };
    const onEnd = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      // Half-closed before deciding: the app gets what came, then the FIN.
      plaintext(bytes, true);
    };
    const timer = setTimeout(() => decide(false), CLIENT_HELLO_TIMEOUT_MS);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.resume();
  }

  close(): Promise<unknown> {
    return Promise.all(this.#listeners.map((l) => l.close()));
  }

  destroy(): void {
    for (const l of this.#listeners) l.destroy();
    this.sessions.destroyAll();
  }
}

/**
 * The accepted TCP socket under a server-side TLS socket (for its addresses): the net.Socket TLS
 * wrapped, or the one under the ReplaySocket a PERMISSIVE listener handed over. Node keeps the latter
 * only on the TLS handle's JS stream wrapper; the TLS socket itself is the fallback.
 */
function underlyingSocket(socket: tls.TLSSocket): net.Socket {
  const parent = (socket as unknown as { _parent?: unknown })._parent;
  if (parent instanceof net.Socket) return parent;
  const stream = (socket as unknown as { _handle?: { _parentWrap?: { stream?: unknown } } })._handle?._parentWrap?.stream;
  if (stream instanceof ReplaySocket) return stream.socket;
  return socket;
}
