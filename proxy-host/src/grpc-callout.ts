// Unary gRPC callouts from filters (proxy_grpc_call) to named clusters, as Envoy's Google/Envoy gRPC
// clients do: one HTTP/2 POST to /<service>/<method> through the cluster's load balancer, TLS (auto
// mTLS, DestinationRule tls) and connection pool, the message in one length-prefixed frame. The
// answer is the first frame of the response and the grpc-status of its trailers (or of a trailers-only
// response). Failures come back as gRPC statuses, never as exceptions: no endpoint or a connection
// failure is UNAVAILABLE (14), the timeout DEADLINE_EXCEEDED (4), an HTTP status other than 200 its
// gRPC mapping, a malformed answer INTERNAL (13).
import { WasmResult, type GrpcCallRequest, type GrpcCallResponse, type HeaderList } from '../../wasm/src/index.ts';
import type { ClusterManager } from './upstream/cluster.ts';
import type { UpstreamPools } from './upstream/upstream-pools.ts';
import type { UpstreamCall, UpstreamResponseHandler } from './upstream/upstream-request.ts';

/** Bound on a callout's answer (the runtime copies it into the guest). */
const MAX_GRPC_RESPONSE = 4 * 1024 * 1024;

const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const INTERNAL = 13;
const UNKNOWN = 2;

/** The gRPC status for an HTTP status of a response without grpc-status (gRPC's http-grpc-status-mapping.md). */
function statusFromHttp(status: number): number {
  switch (status) {
    case 400: return INTERNAL;
    case 401: return 16; // UNAUTHENTICATED
    case 403: return 7; // PERMISSION_DENIED
    case 404: return 12; // UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return UNAVAILABLE;
    default: return UNKNOWN;
  }
}

function get(list: HeaderList, name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

class GrpcCollector implements UpstreamResponseHandler {
  headers: HeaderList = [];
  chunks: Buffer[] = [];
  size = 0;
  call: UpstreamCall | undefined;
  timer: NodeJS.Timeout | undefined;
  done = false;
  readonly resolve: (r: GrpcCallResponse) => void;
  constructor(resolve: (r: GrpcCallResponse) => void) {
    this.resolve = resolve;
  }
  onUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.headers = headers;
    if (endOfStream) this.onUpstreamEnd(undefined);
  }
  onUpstreamData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_GRPC_RESPONSE + 5) {
      this.call?.abort(new Error('gRPC callout answer too large'));
      this.fail(13, 'answer larger than 4 MiB');
      return true;
    }
    this.chunks.push(chunk);
    return true;
  }
  onUpstreamEnd(trailers: HeaderList | undefined): void {
    const initialMetadata = this.headers.filter((_, i) => !this.headers[i - (i % 2)]!.startsWith(':'));
    const trailing = trailers ?? [];
    const httpStatus = Number(get(this.headers, ':status'));
    // A trailers-only answer carries grpc-status in its headers.
    const statusText = get(trailing, 'grpc-status') ?? get(this.headers, 'grpc-status');
    if (statusText === undefined) {
      return this.fail(httpStatus === 200 ? INTERNAL : statusFromHttp(httpStatus), httpStatus === 200 ? 'answer without grpc-status' : `HTTP status ${httpStatus}`);
    }
    const status = Number(statusText);
    const statusMessage = decodeGrpcMessage(get(trailing, 'grpc-message') ?? get(this.headers, 'grpc-message') ?? '');
    if (status !== 0) return this.finish({ initialMetadata, trailingMetadata: trailing, status, statusMessage });
    const body = Buffer.concat(this.chunks);
    if (body.length < 5) return this.fail(INTERNAL, 'OK without a message');
    if (body[0] !== 0) return this.fail(INTERNAL, 'compressed answers are not supported');
    const length = body.readUInt32BE(1);
    if (body.length < 5 + length) return this.fail(INTERNAL, 'truncated message');
    this.finish({ initialMetadata, message: body.subarray(5, 5 + length), trailingMetadata: trailing, status: 0, statusMessage: '' });
  }
  onUpstreamError(err: Error): void {
    this.fail(UNAVAILABLE, err.message);
  }
  fail(status: number, message: string): void {
    this.finish({ initialMetadata: [], trailingMetadata: [], status, statusMessage: message });
  }
  finish(r: GrpcCallResponse): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.resolve(r);
  }
}

function decodeGrpcMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export function createGrpcCallout(clusters: ClusterManager, upstreams: UpstreamPools) {
  return (request: GrpcCallRequest): Promise<GrpcCallResponse> | WasmResult => {
    const cluster = clusters.get(request.upstream);
    // Envoy answers an unknown cluster with ParseFailure, synchronously.
    if (!cluster) return WasmResult.ParseFailure;
    return new Promise((resolve) => {
      const collector = new GrpcCollector(resolve);
      const headers: HeaderList = [
        ':method', 'POST',
        ':scheme', cluster.config.tls ? 'https' : 'http',
        ':path', `/${request.service}/${request.method}`,
        ':authority', cluster.config.host,
        'content-type', 'application/grpc',
        'te', 'trailers',
      ];
      if (request.timeoutMs > 0) headers.push('grpc-timeout', `${request.timeoutMs}m`);
      for (let i = 0; i < request.initialMetadata.length; i += 2) {
        const name = request.initialMetadata[i]!;
        if (!name.startsWith(':') && name !== 'content-type' && name !== 'te') headers.push(name, request.initialMetadata[i + 1]!);
      }
      const endpoint = cluster.pick({ headers });
      if (!endpoint) return collector.fail(UNAVAILABLE, `no healthy endpoint in cluster ${request.upstream}`);
      const frame = Buffer.allocUnsafe(5 + request.message.length);
      frame[0] = 0;
      frame.writeUInt32BE(request.message.length, 1);
      frame.set(request.message, 5);
      // gRPC needs HTTP/2 whatever the cluster's port protocol says.
      const client = upstreams.get('grpc', endpoint, cluster.config.connectionPool, cluster.config);
      collector.call = client.request({ headers, body: frame }, collector);
      if (request.timeoutMs > 0) {
        collector.timer = setTimeout(() => {
          collector.call?.abort(new Error('gRPC callout timeout'));
          collector.fail(DEADLINE_EXCEEDED, `no answer within ${request.timeoutMs} ms`);
        }, request.timeoutMs);
      }
    });
  };
}
