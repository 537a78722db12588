// A gRPC server for unary methods over node:http2, for the rate-limit service's one method. The rate
// limit check sits on the path of every request a sidecar lets through, and measured against
// @grpc/grpc-js's server on the same machine this costs about 0.3 ms less CPU per call (its
// interceptor and metadata machinery; integration/bench/ratelimit-path.measure.ts, RATIONALE.md
// "The global check's cost"). The protocol is gRPC over HTTP/2 as its spec (PROTOCOL-HTTP2.md) says:
//
//   request   POST /<service>/<method>, content-type application/grpc[+proto|;...], te: trailers,
//             one length-prefixed message (flag 0: no compression; grpc-encoding identity only)
//   answer    :status 200, content-type application/grpc, the message, then trailers grpc-status 0;
//             an error is a trailers-only answer (grpc-status, grpc-message percent-encoded)
//
// Unknown methods are UNIMPLEMENTED (12), a compressed or malformed message INTERNAL (13) or
// UNIMPLEMENTED, a message over maxMessageBytes RESOURCE_EXHAUSTED (8); a wrong method, path or
// content-type gets the HTTP status the spec gives (405, 415). Sockets have Nagle's algorithm off.
import http2, { type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';

export const GRPC_STATUS = { OK: 0, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14 } as const;

export class GrpcError extends Error {
  readonly grpcCode: number;
  constructor(grpcCode: number, message: string) {
    super(message);
    this.grpcCode = grpcCode;
  }
}

/** One unary method: bytes in, bytes out (the caller decodes and encodes its messages). */
export type UnaryHandler = (message: Buffer, metadata: IncomingHttpHeaders) => Promise<Buffer>;

export interface UnaryServerOptions {
  /** Full method paths ("/pkg.Service/Method") and their handlers. */
  methods: ReadonlyMap<string, UnaryHandler>;
  /** Largest request message accepted (default 1 MiB). */
  maxMessageBytes?: number;
}

export interface UnaryServer {
  readonly port: number;
  /** Calls being answered. */
  readonly inFlight: number;
  /** Stops accepting connections; calls in flight finish within graceMs, then sessions are destroyed. */
  close(graceMs: number): Promise<void>;
}

/** grpc-message is percent-encoded (the spec's "Percent-Encoded" ABNF: visible ASCII but '%' kept as is). */
function encodeGrpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function isGrpcContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  return v === 'application/grpc' || v.startsWith('application/grpc+') || v.startsWith('application/grpc;');
}

export async function startUnaryServer(host: string, port: number, options: UnaryServerOptions): Promise<UnaryServer> {
  const maxMessage = options.maxMessageBytes ?? 1024 * 1024;
  const sessions = new Set<Http2Session>();
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const server: Http2Server = http2.createServer({ maxSessionMemory: 16 });
  server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {});
  });

  const fail = (stream: ServerHttp2Stream, code: number, message: string): void => {
    if (stream.destroyed || stream.closed) return;
    if (stream.headersSent) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) }, { endStream: true });
  };

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => {});
    if (headers[':method'] !== 'POST') {
      stream.respond({ ':status': 405, allow: 'POST' }, { endStream: true });
      return;
    }
    if (!isGrpcContentType(headers['content-type'])) {
      stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const handler = options.methods.get(String(headers[':path']));
    if (!handler) {
      stream.resume();
      fail(stream, GRPC_STATUS.UNIMPLEMENTED, `unknown method ${String(headers[':path'])}`);
      return;
    }
    const encoding = headers['grpc-encoding'];
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    stream.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxMessage + 5) {
        refused = true;
        fail(stream, GRPC_STATUS.RESOURCE_EXHAUSTED, `request message larger than ${maxMessage} bytes`);
        return;
      }
      chunks.push(chunk);
    });
    stream.on('end', () => {
      if (refused) return;
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      if (body.length < 5) return fail(stream, GRPC_STATUS.INTERNAL, 'a unary call needs exactly one request message');
      const length = body.readUInt32BE(1);
      if (body[0] !== 0) {
        return fail(stream, GRPC_STATUS.UNIMPLEMENTED, `compressed messages are not supported${encoding ? ` (grpc-encoding ${String(encoding)})` : ''}`);
      }
      if (body.length !== 5 + length) return fail(stream, GRPC_STATUS.INTERNAL, 'a unary call needs exactly one request message');
      inFlight++;
      handler(body.subarray(5), headers).then(
        (answer) => {
          if (stream.destroyed || stream.closed) return;
          const frame = Buffer.allocUnsafe(5 + answer.length);
          frame[0] = 0;
          frame.writeUInt32BE(answer.length, 1);
          answer.copy(frame, 5);
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(frame);
        },
        (err: unknown) => {
          const e = err instanceof GrpcError ? err : new GrpcError(GRPC_STATUS.INTERNAL, err instanceof Error ? err.message : String(err));
          fail(stream, e.grpcCode, e.message);
        },
      ).finally(() => {
        inFlight--;
        if (inFlight === 0) idle?.();
      });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    get inFlight() {
      return inFlight;
    },
    close: async (graceMs) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Ask clients to stop sending on each session (GOAWAY), let calls in flight finish.
      for (const s of sessions) if (!s.closed) s.close();
      if (inFlight > 0) {
        await Promise.race([new Promise<void>((resolve) => (idle = resolve)), new Promise((r) => setTimeout(r, graceMs))]);
      }
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}
