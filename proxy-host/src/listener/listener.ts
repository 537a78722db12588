// One listening port that speaks HTTP/1.1 and HTTP/2 cleartext (prior knowledge) side by side, or
// TLS with ALPN (h2, http/1.1). Requests from either protocol arrive at one handler with Node's
// compatibility request/response objects; WebSocket and other upgrades go to the upgrade handler.
//
// Inbound mTLS (PeerAuthentication) fails closed: under STRICT, a listener without a usable
// certificate closes every connection at once (never plaintext); under PERMISSIVE it serves plaintext
// only and closes TLS attempts. Connections that never produce a request are closed: the header read
// timeout runs from accept to the first request head for plaintext; over TLS the handshake may stall
// for at most the timeout (Node's handshakeTimeout), then the request head gets the timeout again.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import net, { type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { ReplaySocket } from './socket-wrapper.ts';

export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

export interface ListenerOptions {
  host: string;
  port: number;
  /** TLS server options (key, cert, ca, requestCert...): ALPN offers h2 and http/1.1. */
  tls?: tls.SecureContextOptions & Pick<tls.TlsOptions, 'SNICallback'> & { requestCert?: boolean; rejectUnauthorized?: boolean };
  onRequest(req: DownstreamRequest, res: DownstreamResponse): void;
  onUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /**
   * Slow-client guard: time from accept to a request's headers (a silent connection is closed, a
   * partial HTTP/1.1 head gets 408); over TLS, the handshake's idle limit too. Default 60 s (Node's).
   */
  headersTimeoutMs?: number;
  /** Downstream idle timeout of an HTTP/1.1 keep-alive connection. Default 5 s (Node's). */
  keepAliveTimeoutMs?: number;
  /** Largest request head (HTTP/1.1) / header list (HTTP/2) accepted; past it, 431. Default 16 KiB (Node's). */
  maxHeaderSize?: number;
  /** An HTTP/2 session with no stream activity for this long is closed (GOAWAY). Default 0: never. */
  h2IdleTimeoutMs?: number;
  /**
   * Peer authentication (inbound mTLS), asked per connection; absent: plaintext. STRICT: only TLS with
   * a client certificate chaining to the trust bundle, and no connection at all while the listener has
   * no certificate (setIdentity); PERMISSIVE: TLS (first byte 0x16) or plaintext, per connection
   * (plaintext only without a certificate); DISABLE: plaintext.
   */
  peerAuthentication?: () => PeerAuthenticationMode;
  /**
   * With `tls`: checks each connection right after its handshake, before any request is read; a
   * reason closes it (a gateway's client certificate checks: SANs, hashes, optional mutual TLS).
   */
  verifyClient?: (socket: tls.TLSSocket) => string | undefined;
  /**
   * A connection closed by peer authentication: no certificate to do mTLS with, a failed handshake,
   * or a request on a plaintext connection accepted before the mode became STRICT.
   */
  onRefused?: (reason: RefusedReason) => void;
  /**
   * Plaintext listeners: asked first for every accepted connection, before a byte is read; true takes
   * the socket away from HTTP (the outbound listener under iptables capture hands a TCP service
   * port's connection to the TCP proxy, by its original destination: server-first protocols are never
   * kept waiting for a request that will not come).
   */
  takeConnection?: (socket: Socket) => boolean;
}

export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';
export type RefusedReason = 'no_certificate' | 'handshake_failed' | 'plaintext';

/** The first byte of a TLS record carrying a handshake (ClientHello). */
const TLS_HANDSHAKE = 0x16;

export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5_000;
export const DEFAULT_MAX_HEADER_SIZE = 16 * 1024;

/** What Node's own clientError handling would answer: 431 for a head too large, 408 for a slow one. */
function clientErrorResponse(code: string | undefined): string {
  if (code === 'HPE_HEADER_OVERFLOW') return 'HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
  return 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function looksLikeH2(first: Buffer): boolean {
  const n = Math.min(first.length, PREFACE.length);
  return n >= 3 && first.compare(PREFACE, 0, n, 0, n) === 0;
}

export interface Listener {
  readonly port: number;
  readonly server: net.Server;
  /** Stops accepting; resolves when every connection has closed (call closeIdle/destroy to hurry). */
  close(): Promise<void>;
  /** Ends idle keep-alive connections and sends GOAWAY on HTTP/2 sessions. */
  closeIdle(): void;
  /** Destroys every connection. */
  destroy(): void;
  /**
   * Sets (or replaces) the mTLS server identity: key, chain and trust bundle; undefined: none usable
   * (not yet, or expired), so STRICT refuses every connection. New handshakes use it at once;
   * established connections keep theirs. Ignored without the peerAuthentication option.
   */
  setIdentity(context: tls.SecureContextOptions | undefined): void;
}

/** A timer from accept: closes the connection unless cleared (by its first request head) in time. */
interface Deadline {
  clear(): void;
}

export async function createListener(options: ListenerOptions): Promise<Listener> {
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const maxHeaderSize = options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE;
  // Plaintext connections handed to a protocol server, with the deadline their first request clears.
  const deadlines = new WeakMap<object, Deadline>();
  const startDeadline = (expire: () => void): Deadline => {
    const timer = setTimeout(expire, headersTimeout);
    timer.unref();
    return { clear: () => clearTimeout(timer) };
  };
  const firstRequest = (socket: object | undefined): void => {
    if (!socket) return;
    deadlines.get(socket)?.clear();
    deadlines.delete(socket);
  };
  const peerAuthentication = options.peerAuthentication;
  // A plaintext connection accepted before the mode became STRICT carries no more requests.
  const plaintextUnderStrict = (socket: Duplex | undefined): boolean =>
    peerAuthentication !== undefined && (socket as { encrypted?: boolean } | undefined)?.encrypted !== true && peerAuthentication() === 'STRICT';
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    firstRequest(req.socket);
    if (plaintextUnderStrict(req.socket)) {
      options.onRefused?.('plaintext');
      const stream = (req as unknown as Http2ServerRequest).stream;
      if (stream) stream.session?.destroy();
      else req.socket.destroy();
      return;
    }
    (options.onRequest as (req: IncomingMessage, res: ServerResponse) => void)(req, res);
  };
  const h1 = http.createServer(
    {
      maxHeaderSize,
      keepAliveTimeout: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
      headersTimeout,
      requestTimeout: 0,
      // Node checks headersTimeout on this period (30 s by default): check often enough to honour it.
      connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4))),
    },
    onRequest,
  );
  const onUpgrade = options.onUpgrade;
  if (onUpgrade) {
    h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      firstRequest(socket);
      if (plaintextUnderStrict(socket)) {
        options.onRefused?.('plaintext');
        socket.destroy();
        return;
      }
      onUpgrade(req, socket, head);
    });
  }
  // h1 never listens itself (connections are handed to it), but Node starts the timer that enforces
  // headersTimeout on 'listening': without this, slow clients would never be cut off.
  h1.emit('listening');
  // Bad requests are answered 400 (431 head too large, 408 head too slow); the socket errors of
  // clients that went away are not ours.
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (socket.writable && err.code !== 'ECONNRESET') socket.end(clientErrorResponse(err.code));
    else socket.destroy();
  });
  const h2 = http2.createServer({ maxSessionMemory: 64, settings: { maxHeaderListSize: maxHeaderSize } }, onRequest as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
  h2.on('sessionError', () => {});
  if (options.h2IdleTimeoutMs) h2.on('session', (session) => session.setTimeout(options.h2IdleTimeoutMs!, () => session.close()));
  const sessions = new Set<http2.ServerHttp2Session>();
  // The deadline of the plaintext connection being handed to h2 (it makes its session synchronously).
  let handing: Deadline | undefined;
  h2.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    // A session that opens no stream in time is closed: from accept for plaintext, from the
    // handshake over TLS.
    const deadline = handing ?? startDeadline(() => session.destroy());
    handing = undefined;
    session.once('stream', () => deadline.clear());
    session.once('close', () => deadline.clear());
  });
  const sockets = new Set<Socket>();

  // Inbound mTLS: a TLS server that never listens; connections are handed to it (raw, or replayed
  // after sniffing), and the authenticated sockets go to the HTTP/1.1 or HTTP/2 server by ALPN.
  let mtls: tls.Server | undefined;
  const tlsSockets = new Set<tls.TLSSocket>();
  const startMtls = (context: tls.SecureContextOptions): tls.Server => {
    const server = tls.createServer({ ...context, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2', 'http/1.1'], handshakeTimeout: headersTimeout }, (socket) => {
      tlsSockets.add(socket);
      socket.on('close', () => tlsSockets.delete(socket));
      socket.on('error', () => socket.destroy());
      if (socket.alpnProtocol === 'h2') h2.emit('connection', socket);
      else h1.emit('connection', socket);
    });
    // Refused handshakes (no certificate, another CA, expired, plaintext under STRICT, stalled): the
    // socket is destroyed; nothing to answer.
    server.on('tlsClientError', (_err, socket) => {
      options.onRefused?.('handshake_failed');
      socket.destroy();
    });
    return server;
  };
  const refuse = (socket: Socket): void => {
    options.onRefused?.('no_certificate');
    socket.destroy();
  };
  const dispatchPlaintext = (socket: Socket, first: Buffer, deadline: Deadline): void => {
    if (looksLikeH2(first)) {
      handing = deadline;
      h2.emit('connection', new ReplaySocket(socket, first));
      handing = undefined;
    } else {
      deadlines.set(socket, deadline);
      socket.unshift(first);
      h1.emit('connection', socket);
      socket.resume();
    }
  };

  let server: net.Server;
  if (options.tls) {
    const secure = http2.createSecureServer({ ...options.tls, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'], handshakeTimeout: headersTimeout }, options.onRequest as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
    if (options.onUpgrade) secure.on('upgrade', options.onUpgrade);
    secure.on('session', (session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    secure.on('tlsClientError', () => {});
    const verifyClient = options.verifyClient;
    if (verifyClient) {
      // Runs before the HTTP/2 server's own handler (which would start reading requests).
      const handlers = secure.listeners('secureConnection') as ((socket: tls.TLSSocket) => void)[];
      secure.removeAllListeners('secureConnection');
      secure.on('secureConnection', (socket: tls.TLSSocket) => {
        if (verifyClient(socket) !== undefined) {
          socket.destroy();
          return;
        }
        for (const handler of handlers) handler.call(secure, socket);
      });
    }
    server = secure;
  } else {
    server = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      if (options.takeConnection?.(socket)) return;
      const mode = peerAuthentication ? peerAuthentication() : 'DISABLE';
      if (mode === 'STRICT') {
        // Never plaintext: without a certificate there is no mTLS to offer, so no connection at all.
        if (!mtls) return refuse(socket);
        // No sniffing: TLS reads the socket natively (its handshake timeout runs from now), anything
        // else fails the handshake.
        mtls.emit('connection', socket);
        return;
      }
      // Closes a connection that sends nothing; one that started an HTTP/1.1 head it did not finish
      // gets 408, as Node's own header timeout answers.
      const deadline = startDeadline(() => {
        if (deadlines.has(socket) && socket.writable) socket.end(clientErrorResponse('ERR_HTTP_REQUEST_TIMEOUT'), () => socket.destroy());
        else socket.destroy();
      });
      socket.once('close', () => deadline.clear());
      socket.once('data', (first: Buffer) => {
        socket.pause();
        if (mode === 'PERMISSIVE' && first[0] === TLS_HANDSHAKE) {
          // The handshake timeout takes over; without a certificate, PERMISSIVE is plaintext only.
          deadline.clear();
          if (!mtls) return refuse(socket);
          // Put the sniffed bytes back: a TLS socket made from a net.Socket feeds what the socket has
          // buffered to its TLS engine before it reads the handle natively. (A JS duplex that replays
          // them, as HTTP/2 needs, would send every encrypted byte of the connection through JS.)
          socket.unshift(first);
          mtls.emit('connection', socket);
          return;
        }
        dispatchPlaintext(socket, first, deadline);
      });
    });
  }
  server.on('connection', (socket: Socket) => {
    if (options.tls) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        h1.close(() => {}); // stops the headersTimeout timer (h1 itself is not listening)
        h1.closeIdleConnections();
        for (const s of sessions) s.close();
      }),
    closeIdle: () => {
      h1.closeIdleConnections();
      for (const s of sessions) s.close();
    },
    destroy: () => {
      h1.close(() => {});
      for (const s of sessions) s.destroy();
      for (const s of tlsSockets) s.destroy();
      for (const s of sockets) s.destroy();
    },
    setIdentity: (context) => {
      if (!peerAuthentication || options.tls) return;
      if (!context) {
        // Established connections keep their session; new ones see no certificate.
        mtls = undefined;
        return;
      }
      if (mtls) mtls.setSecureContext({ ...context });
      else mtls = startMtls(context);
    },
  };
}
