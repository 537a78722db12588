// One request through the proxy, start to end. The order of layers (STYLE rule 8):
//   downstream (Node HTTP/1.1 or HTTP/2) -> header normalisation -> filter chain (wasm, both ways)
//   -> router (match, split, rewrite, header ops, timeout) -> cluster (LB) -> upstream client.
// With no filters the chain is skipped and this object is the chain's terminal itself, so the
// no-filter path costs one object per request plus the upstream client's.
import type { ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import type { HeaderList, LocalResponse } from '../../../wasm/src/index.ts';
import type { RouteConfig, WeightedCluster } from '../config/types.ts';
import type { ChainStream, ChainTerminal } from '../filter-chain/chain.ts';
import type { DownstreamRequest, DownstreamResponse } from '../listener/listener.ts';
import { applyHeaderOperations, pickWeighted, redirectLocation, rewritePath } from '../routing/route-table.ts';
import type { Cluster } from '../upstream/cluster.ts';
import type { EndpointState } from '../upstream/endpoint.ts';
import type { UpstreamCall, UpstreamResponseHandler } from '../upstream/upstream-request.ts';
import type { ConnectionManager } from './connection-manager.ts';
import { getHeader, requestHasBody, requestHeaderList, requestTrailerList } from './request-headers.ts';
import { writeDownstreamHeaders, writeDownstreamTrailers } from './downstream.ts';

const EMPTY = Buffer.alloc(0);

/** gRPC status for a proxy-generated HTTP status (as Envoy maps them). */
function grpcStatusFor(status: number): number {
  switch (status) {
    case 400: return 13;
    case 401: return 16;
    case 403: return 7;
    case 404: return 12;
    case 429: return 14;
    case 502: case 503: case 504: return 14;
    default: return 2;
  }
}

export class ActiveRequest implements ChainTerminal, UpstreamResponseHandler {
  readonly cm: ConnectionManager;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly startMs = Date.now();
  readonly isH2: boolean;
  headers!: HeaderList;
  chain: ChainStream | undefined;
  route: RouteConfig | undefined;
  cluster: Cluster | undefined;
  endpoint: EndpointState | undefined;
  destination: WeightedCluster | undefined;
  call: UpstreamCall | undefined;
  upstreamBody: PassThrough | undefined;
  responseFlags = '';
  details = '';
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  isGrpc = false;
  #responseStarted = false;
  #upstreamDone = true;
  #finished = false;
  #blocked = false;
  #timer: NodeJS.Timeout | undefined;
  #setCookie: string | undefined;

  constructor(cm: ConnectionManager, req: DownstreamRequest, res: DownstreamResponse) {
    this.cm = cm;
    this.req = req;
    this.res = res;
    this.isH2 = req.httpVersionMajor === 2;
  }

  start(): void {
    const cm = this.cm;
    const req = this.req;
    this.res.once('close', () => this.#complete());
    this.headers = requestHeaderList(req, cm.downstreamFacts(req));
    const ct = getHeader(this.headers, 'content-type');
    this.isGrpc = ct !== undefined && ct.startsWith('application/grpc');
    const hasBody = requestHasBody(req);
    const chain = cm.chain;
    if (chain.isEmpty) {
      // No filters: the router sees the request directly and the body streams straight upstream.
      this.requestHeaders(this.headers, !hasBody);
      return;
    }
    const cs = chain.createStream(this, cm.streamInfo(req, this));
    this.chain = cs;
    cs.requestHeaders(this.headers, !hasBody);
    if (!hasBody) return;
    req.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      cs.requestData(chunk, false);
    });
    req.on('end', () => {
      const trailers = requestTrailerList(req);
      if (trailers) cs.requestTrailers(trailers);
      else cs.requestData(EMPTY, true);
    });
  }

  // ---- the chain's terminal: request side goes to the router ------------------------------------

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#finished) return;
    this.headers = headers;
    const cm = this.cm;
    const hit = cm.routeFor(this);
    if (!hit) return this.localReply(404, 'route_not_found', 'NR', '');
    const route = hit.route;
    this.route = route;
    const action = route.action;
    if (action.kind === 'direct') return this.localReply(action.status, 'direct_response', '', action.body ?? '');
    if (action.kind === 'redirect') {
      const location = redirectLocation(action, { scheme: getHeader(headers, ':scheme') ?? 'http', authority: getHeader(headers, ':authority') ?? '', path: getHeader(headers, ':path') ?? '/' });
      return this.localReply(action.status, 'redirect', '', '', ['location', location]);
    }
    const destination = action.destinations.length === 1 ? action.destinations[0] : pickWeighted(action.destinations, Math.random());
    this.destination = destination;
    const cluster = cm.clusters.get(destination.cluster);
    if (!cluster) return this.localReply(503, 'cluster_not_found', 'NC', 'no cluster');
    this.cluster = cluster;
    if (route.requestHeaders) applyHeaderOperations(headers, route.requestHeaders);
    if (destination.requestHeaders) applyHeaderOperations(headers, destination.requestHeaders);
    if (action.rewriteUri !== undefined) setHeader(headers, ':path', rewritePath(getHeader(headers, ':path') ?? '/', hit.matchIndex >= 0 ? route.match[hit.matchIndex] : undefined, action.rewriteUri));
    if (action.rewriteAuthority !== undefined) setHeader(headers, ':authority', action.rewriteAuthority);
    const endpoint = cluster.pick(cm.lbContext(this));
    if (!endpoint) {
      cm.clusterStats(cluster).flag('UH');
      return this.localReply(503, 'no_healthy_upstream', 'UH', 'no healthy upstream');
    }
    this.#setCookie = cluster.lastSetCookie;
    this.endpoint = endpoint;
    endpoint.activeRequests++;
    let body: Readable | null = null;
    if (!endOfStream) {
      body = this.upstreamBody = new PassThrough();
      if (!this.chain) {
        // Both listeners attach in this tick, so no chunk flows before the pipe is in place.
        this.req.on('data', (c: Buffer) => (this.bytesIn += c.length));
        (this.req as unknown as Readable).pipe(this.upstreamBody);
      }
    }
    if (action.timeoutMs > 0) this.#timer = setTimeout(() => this.#timeout(), action.timeoutMs);
    cm.clusterStats(cluster).requests.increment(1);
    this.#upstreamDone = false;
    this.call = cm.upstreamFor(cluster, endpoint, this.isH2).request({ headers, body }, this);
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    const body = this.upstreamBody;
    if (!body) return;
    if (data.length > 0) body.write(data);
    if (endOfStream) body.end();
  }

  requestTrailers(_trailers: HeaderList): void {
    // Request trailers are not forwarded upstream (no upstream client here sends them); end the body.
    this.upstreamBody?.end();
  }

  // ---- upstream responses -----------------------------------------------------------------------

  onUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#finished) return;
    const route = this.route;
    if (route?.responseHeaders) applyHeaderOperations(headers, route.responseHeaders);
    if (this.destination?.responseHeaders) applyHeaderOperations(headers, this.destination.responseHeaders);
    if (this.#setCookie) headers.push('set-cookie', this.#setCookie);
    if (endOfStream) this.#upstreamFinished();
    if (this.chain) this.chain.responseHeaders(headers, endOfStream);
    else this.responseHeaders(headers, endOfStream);
  }

  onUpstreamData(chunk: Buffer): boolean {
    if (this.#finished) return true;
    if (this.chain) this.chain.responseData(chunk, false);
    else this.responseData(chunk, false);
    return !this.#blocked;
  }

  onUpstreamEnd(trailers: HeaderList | undefined): void {
    this.#upstreamFinished();
    if (this.#finished) return;
    if (this.chain) {
      if (trailers) this.chain.responseTrailers(trailers);
      else this.chain.responseData(EMPTY, true);
    } else if (trailers) this.responseTrailers(trailers);
    else this.responseData(EMPTY, true);
  }

  onUpstreamError(err: Error, flag: string): void {
    // After a timeout or a reset the call was aborted on purpose: that error is not news.
    if (this.#upstreamDone) return;
    this.#upstreamFinished();
    if (this.#finished) return;
    if (this.cluster) {
      const s = this.cm.clusterStats(this.cluster);
      s.errors.increment(1);
      s.flag(flag);
    }
    if (this.#responseStarted) {
      this.responseFlags = flag;
      this.reset(`upstream_reset: ${err.message}`);
      return;
    }
    const status = flag === 'UF' || flag === 'UC' ? 503 : flag === 'UT' ? 504 : 502;
    const text = flag === 'UF' ? 'upstream connect error or disconnect/reset before headers' : `upstream error: ${err.message}`;
    this.localReply(status, flag === 'UF' ? 'upstream_connect_failure' : 'upstream_reset_before_response_started', flag, text);
  }

  #upstreamFinished(): void {
    if (this.#upstreamDone) return;
    this.#upstreamDone = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.endpoint) this.endpoint.activeRequests--;
  }

  /** Cancels the upstream call, marking it finished first so its error callback is ignored. */
  #abortUpstream(reason: string): void {
    if (this.#upstreamDone) return;
    this.#upstreamFinished();
    this.call?.abort(new Error(reason));
  }

  #timeout(): void {
    if (this.#upstreamDone) return;
    this.#abortUpstream('upstream request timeout');
    if (this.cluster) this.cm.clusterStats(this.cluster).flag('UT');
    if (this.#responseStarted) {
      this.responseFlags = 'UT';
      this.reset('upstream_response_timeout');
    } else {
      this.localReply(504, 'upstream_response_timeout', 'UT', 'upstream request timeout');
    }
  }

  // ---- the chain's terminal: response side goes to the client -----------------------------------

  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#finished || this.#responseStarted) return;
    this.#responseStarted = true;
    this.status = Number(getHeader(headers, ':status')) || 200;
    writeDownstreamHeaders(this.res, this.isH2, headers, endOfStream, this.isGrpc);
  }

  responseData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#finished) return;
    const res = this.res as ServerResponse;
    if (data.length > 0) {
      this.bytesOut += data.length;
      if (!res.write(data)) this.#block();
    }
    if (endOfStream) res.end();
  }

  responseTrailers(trailers: HeaderList): void {
    if (this.#finished) return;
    writeDownstreamTrailers(this.res, trailers);
  }

  localResponse(response: LocalResponse): void {
    // A filter answered: nothing more goes upstream. The reply itself arrives through responseHeaders.
    this.details = response.details;
    this.#abortUpstream('local_reply');
    this.upstreamBody?.destroy();
  }

  reset(reason: string): void {
    if (!this.details) this.details = reason;
    this.#abortUpstream(reason);
    this.upstreamBody?.destroy();
    const res = this.res as DownstreamResponse & { stream?: { close(code: number): void } };
    if (this.isH2 && res.stream) res.stream.close(2 /* INTERNAL_ERROR */);
    else (this.req.socket as { destroy(): void }).destroy();
  }

  /** A reply the proxy makes itself (no route, no upstream, timeout...). Filters see it like any response. */
  localReply(status: number, details: string, flag: string, body: string, extra?: HeaderList): void {
    if (this.#finished) return;
    this.details = details;
    if (flag) this.responseFlags = flag;
    let headers: HeaderList;
    let payload = EMPTY;
    if (this.isGrpc) {
      // gRPC clients read the status from grpc-status, not the HTTP code.
      headers = [':status', '200', 'content-type', 'application/grpc', 'grpc-status', String(grpcStatusFor(status)), 'grpc-message', encodeURIComponent(body || details)];
    } else {
      payload = body ? Buffer.from(body) : EMPTY;
      headers = [':status', String(status)];
      if (payload.length > 0) headers.push('content-type', 'text/plain', 'content-length', String(payload.length));
      else headers.push('content-length', '0');
    }
    if (extra) for (let i = 0; i < extra.length; i++) headers.push(extra[i]);
    const eos = payload.length === 0;
    if (this.chain) {
      this.chain.responseHeaders(headers, eos);
      if (!eos) this.chain.responseData(payload, true);
    } else {
      this.responseHeaders(headers, eos);
      if (!eos) this.responseData(payload, true);
    }
  }

  #block(): void {
    if (this.#blocked) return;
    this.#blocked = true;
    this.res.once('drain', () => {
      this.#blocked = false;
      this.call?.resume();
    });
  }

  /** The downstream response is over (sent, or the client went away). */
  #complete(): void {
    if (this.#finished) return;
    this.#finished = true;
    if (!this.#upstreamDone) {
      if (!this.responseFlags) this.responseFlags = 'DC';
      this.#abortUpstream('downstream closed');
    }
    this.upstreamBody?.destroy();
    this.chain?.finish();
    this.cm.requestDone(this);
  }

  get responseStarted(): boolean {
    return this.#responseStarted;
  }
}

function setHeader(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value;
      return;
    }
  }
  list.push(name, value);
}
