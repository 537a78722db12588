// One listening port that speaks HTTP/1.1 and HTTP/2 cleartext (prior knowledge) side by side, or
// TLS with ALPN (h2, http/1.1). Requests from either protocol arrive at one handler with Node's
// compatibility request/response objects; WebSocket and other upgrades go to the upgrade handler.
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
  tls?: tls.SecureContextOptions & { requestCert?: boolean; rejectUnauthorized?: boolean };
  onRequest(req: DownstreamRequest, res: DownstreamResponse): void;
  onUpgrade?(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Slow-client guard: time to receive a request's headers (HTTP/1.1); past it, 408. Default 60 s (Node's). */
  headersTimeoutMs?: number;
  /** Downstream idle timeout of an HTTP/1.1 keep-alive connection. Default 5 s (Node's). */
  keepAliveTimeoutMs?: number;
  /** Largest request head (HTTP/1.1) / header list (HTTP/2) accepted; past it, 431. Default 16 KiB (Node's). */
  maxHeaderSize?: number;
  /** An HTTP/2 session with no stream activity for this long is closed (GOAWAY). Default 0: never. */
  h2IdleTimeoutMs?: number;
  /**
   * Peer authentication (inbound mTLS), asked per connection. Active only once the listener has an
   * identity (setIdentity); until then, and without this option, the listener is plaintext exactly as
   * before. STRICT: only TLS with a client certificate chaining to the trust bundle; PERMISSIVE: TLS
   * (first byte 0x16) or plaintext, per connection; DISABLE: plaintext.
   */
  peerAuthentication?: () => PeerAuthenticationMode;
}

export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

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
   * Sets (or replaces) the mTLS server identity: key, chain and trust bundle. New handshakes use it at
   * once; established connections keep theirs. Ignored without the peerAuthentication option.
   */
  setIdentity(context: tls.SecureContextOptions): void;
}

export async function createListener(options: ListenerOptions): Promise<Listener> {
  const onRequest = options.onRequest as (req: IncomingMessage, res: ServerResponse) => void;
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const maxHeaderSize = options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE;
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
  if (options.onUpgrade) h1.on('upgrade', options.onUpgrade);
  // h1 never listens itself (connections are handed to it), but Node starts the timer that enforces
  // headersTimeout on 'listening': without this, slow clients would never be cut off.
  h1.emit('listening');
  // Bad requests are answered 400 (431 head too large, 408 head too slow); the socket errors of
  // clients that went away are not ours.
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (socket.writable && err.code !== 'ECONNRESET') socket.end(clientErrorResponse(err.code));
    else socket.destroy();
  });
  const h2 = http2.createServer({ maxSessionMemory: 64, settings: { maxHeaderListSize: maxHeaderSize } }, options.onRequest as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
  h2.on('sessionError', () => {});
  if (options.h2IdleTimeoutMs) h2.on('session', (session) => session.setTimeout(options.h2IdleTimeoutMs!, () => session.close()));
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  const sockets = new Set<Socket>();

  // Inbound mTLS: a TLS server that never listens; connections are handed to it (raw, or replayed
  // after sniffing), and the authenticated sockets go to the HTTP/1.1 or HTTP/2 server by ALPN.
  let mtls: tls.Server | undefined;
  const tlsSockets = new Set<tls.TLSSocket>();
  const peerAuthentication = options.peerAuthentication;
  const startMtls = (context: tls.SecureContextOptions): tls.Server => {
    const server = tls.createServer({ ...context, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) => {
      tlsSockets.add(socket);
      socket.on('close', () => tlsSockets.delete(socket));
      socket.on('error', () => socket.destroy());
      if (socket.alpnProtocol === 'h2') h2.emit('connection', socket);
      else h1.emit('connection', socket);
    });
    // Refused handshakes (no certificate, another CA, expired, plaintext under STRICT): the socket is
    // destroyed by Node; nothing to answer.
    server.on('tlsClientError', (_err, socket) => socket.destroy());
    return server;
  };
  const dispatchPlaintext = (socket: Socket, first: Buffer): void => {
    if (looksLikeH2(first)) {
      h2.emit('connection', new ReplaySocket(socket, first));
    } else {
      socket.unshift(first);
      h1.emit('connection', socket);
      socket.resume();
    }
  };

  let server: net.Server;
  if (options.tls) {
    const secure = http2.createSecureServer({ ...options.tls, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'] }, options.onRequest as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
    if (options.onUpgrade) secure.on('upgrade', options.onUpgrade);
    secure.on('session', (session) => {
      sessions.add(session);
      session.on('close', () => sessions.delete(session));
    });
    secure.on('tlsClientError', () => {});
    server = secure;
  } else {
    server = net.createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      const mode = mtls && peerAuthentication ? peerAuthentication() : 'DISABLE';
      if (mode === 'STRICT') {
        // No sniffing: TLS reads the socket natively, anything else fails the handshake.
        mtls!.emit('connection', socket);
        return;
      }
      if (mode === 'PERMISSIVE') {
        socket.once('data', (first: Buffer) => {
          socket.pause();
          if (first[0] === TLS_HANDSHAKE) mtls!.emit('connection', new ReplaySocket(socket, first));
          else dispatchPlaintext(socket, first);
        });
        return;
      }
      socket.once('data', (first: Buffer) => {
        socket.pause();
        if (looksLikeH2(first)) {
          h2.emit('connection', new ReplaySocket(socket, first));
        } else {
          socket.unshift(first);
          h1.emit('connection', socket);
          socket.resume();
        }
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
      if (mtls) mtls.setSecureContext({ ...context });
      else mtls = startMtls(context);
    },
  };
}
