// What the client receives when a filter (or the runtime) answers a stream itself, following Envoy's
// local replies: the gRPC form only for gRPC requests, an HTTP reply otherwise. Shared by the proxy's
// filter chain and the test harness so both answer alike.
import type { HeaderList, LocalResponse } from './host.ts';
import { headerGet } from './pairs.ts';

/** The request is gRPC when its content-type starts with application/grpc (Envoy's Grpc::Common::isGrpcRequestHeaders). */
export function isGrpcRequest(requestHeaders: HeaderList | undefined): boolean {
  if (requestHeaders === undefined) return false;
  const contentType = headerGet(requestHeaders, 'content-type');
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/** A local reply answers a gRPC request in gRPC's trailers-only form: headers end the stream, the body goes into grpc-message. */
export function isTrailersOnly(reply: LocalResponse, grpcRequest: boolean): boolean {
  return grpcRequest && reply.grpcStatus >= 0;
}

/**
 * The reply as response headers: `:status` and the reply's own headers, then, as Envoy does:
 * - a gRPC request with a gRPC status gets a trailers-only response: `grpc-status`,
 *   `content-type: application/grpc` unless the reply set one, and the body (not a gRPC message)
 *   moved into `grpc-message`; the headers end the stream;
 * - any other request gets an HTTP reply (the gRPC status, which only gRPC clients understand, is
 *   left out) with `content-type: text/plain` when the body is not empty and the filter set none.
 */
export function localResponseHeaders(reply: LocalResponse, grpcRequest: boolean): HeaderList {
  const headers: HeaderList = [':status', String(reply.status)];
  let hasGrpcStatus = false;
  let hasContentType = false;
  const own = reply.headers;
  for (let i = 0; i < own.length; i += 2) {
    const name = own[i];
    if (name === ':status') continue;
    if (name === 'grpc-status') hasGrpcStatus = true;
    else if (name === 'content-type') hasContentType = true;
    headers.push(name, own[i + 1]);
  }
  if (isTrailersOnly(reply, grpcRequest)) {
    if (!hasContentType) headers.push('content-type', 'application/grpc');
    if (!hasGrpcStatus) headers.push('grpc-status', String(reply.grpcStatus));
    if (reply.body.length > 0 && headerGet(headers, 'grpc-message') === undefined) headers.push('grpc-message', grpcPercentEncode(reply.body));
  } else if (reply.body.length > 0 && !hasContentType) {
    headers.push('content-type', 'text/plain');
  }
  return headers;
}

/** gRPC's Percent-Encoded form of a status message: bytes outside 0x20..0x7E, and '%', as %XX. */
function grpcPercentEncode(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
