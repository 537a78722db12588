// HTTP callouts from filters (proxy_http_call) to named clusters, through the same upstream clients
// and load balancers as proxied traffic. The whole response is collected (callouts are small).
import { WasmResult, type HeaderList, type HttpCallRequest, type HttpCallResponse } from '../../wasm/src/index.ts';
import type { ClusterManager } from './upstream/cluster.ts';
import type { UpstreamPools } from './upstream/upstream-pools.ts';
import type { UpstreamCall, UpstreamResponseHandler } from './upstream/upstream-request.ts';

/** Bound on a callout's response body; past it the call fails (as Envoy's buffer limit does). */
const MAX_CALLOUT_BODY = 4 * 1024 * 1024;

class CalloutCollector implements UpstreamResponseHandler {
  headers: HeaderList = [];
  chunks: Buffer[] = [];
  size = 0;
  call: UpstreamCall | undefined;
  timer: NodeJS.Timeout | undefined;
  readonly resolve: (r: HttpCallResponse | null) => void;
  done = false;
  constructor(resolve: (r: HttpCallResponse | null) => void) {
    this.resolve = resolve;
  }
  onUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.headers = headers;
    if (endOfStream) this.onUpstreamEnd(undefined);
  }
  onUpstreamData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_CALLOUT_BODY) {
      this.call?.abort(new Error('callout response too large'));
      this.finish(null);
      return true;
    }
    this.chunks.push(chunk);
    return true;
  }
  onUpstreamEnd(trailers: HeaderList | undefined): void {
    this.finish({ headers: this.headers, body: Buffer.concat(this.chunks), trailers: trailers ?? [] });
  }
  onUpstreamError(): void {
    this.finish(null);
  }
  finish(r: HttpCallResponse | null): void {
    if (this.done) return;
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.resolve(r);
  }
}

export function createHttpCallout(clusters: ClusterManager, upstreams: UpstreamPools) {
  return (request: HttpCallRequest): Promise<HttpCallResponse | null> | WasmResult => {
    const cluster = clusters.get(request.upstream);
    if (!cluster) return WasmResult.BadArgument;
    return new Promise((resolve) => {
      const collector = new CalloutCollector(resolve);
      const endpoint = cluster.pick({ headers: request.headers });
      if (!endpoint) return collector.finish(null);
      const headers = request.headers.slice();
      if (request.body.length > 0) {
        let hasLength = false;
        for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'content-length') hasLength = true;
        if (!hasLength) headers.push('content-length', String(request.body.length));
      }
      const body = request.body.length > 0 ? Buffer.from(request.body) : null;
      // The callout speaks the cluster's TLS to this endpoint (auto mTLS, DestinationRule tls), as routed requests do.
      const client = upstreams.get(cluster.config.protocol, endpoint, cluster.config.connectionPool, cluster.config);
      collector.call = client.request({ headers, body }, collector);
      if (request.timeoutMs > 0) {
        collector.timer = setTimeout(() => {
          collector.call?.abort(new Error('callout timeout'));
          // Envoy answers a timed-out callout with a router-generated 504.
          collector.finish({ headers: [':status', '504'], body: Buffer.from('upstream request timeout'), trailers: [] });
        }, request.timeoutMs);
      }
    });
  };
}
