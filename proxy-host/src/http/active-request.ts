// One request through the proxy, start to end. The order of layers (STYLE rule 8):
//   downstream (Node HTTP/1.1 or HTTP/2) -> header normalisation -> filter chain (wasm, both ways)
//   -> router (match, split, rewrite, header ops, timeout) -> cluster (LB) -> upstream client.
// With no filters the chain is skipped and this object is the chain's terminal itself, so the
// no-filter path costs one object per request plus the upstream client's.
import type { ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import type { HeaderList, LocalResponse } from '../../../wasm/src/index.ts';
import type { MirrorPolicy, RouteConfig, WeightedCluster } from '../../../mesh/src/proxy-config.ts';
import type { ChainStream, ChainTerminal } from '../filter-chain/chain.ts';
import type { DownstreamRequest, DownstreamResponse } from '../listener/listener.ts';
import { applyHeaderOperations, pickWeighted, redirectLocation, rewritePath } from '../routing/route-table.ts';
import type { Cluster } from '../upstream/cluster.ts';
import type { EndpointState } from '../upstream/endpoint.ts';
import type { CircuitBreaker } from '../upstream/circuit-breaker.ts';
import type { UpstreamCall, UpstreamResponseHandler } from '../upstream/upstream-request.ts';
import type { RequestHost } from './request-host.ts';
import type { TraceState } from '../telemetry/tracer.ts';
import { metricsReadRequest, withRequest } from '../telemetry/metric-overrides.ts';
import { RequestFacts } from '../telemetry/request-facts.ts';
import { sendMirror, shouldMirror, skipMirror } from './mirror.ts';
import { RequestBodyBuffer } from './retry-buffer.ts';
import { backoffMs, compileRetryPolicy, HOST_SELECTION_ATTEMPTS, isRefusedStream, RETRY_BODY_LIMIT, type CompiledRetryPolicy } from './retry-policy.ts';
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

export const RETRIES_TOTAL = 'wasmesh_proxy_upstream_retries_total';
export const RETRY_OVERFLOW_TOTAL = 'wasmesh_proxy_upstream_retry_overflow_total';
export const OVERFLOW_TOTAL = 'wasmesh_proxy_upstream_overflow_total';

/** Envoy's local reply text for a failure before response headers. */
function resetText(reason: string): string {
  return `upstream connect error or disconnect/reset before headers. reset reason: ${reason}`;
}

/**
 * One try of the upstream request. Callbacks of a try that is no longer the request's current one
 * (aborted for a retry or a timeout) are dropped by the ActiveRequest.
 */
class Attempt implements UpstreamResponseHandler {
  readonly ar: ActiveRequest;
  readonly endpoint: EndpointState;
  /** Holds one of the cluster's retry slots (circuit breaker maxRetries) while it runs. */
  readonly isRetry: boolean;
  call: UpstreamCall | undefined;
  body: PassThrough | undefined;
  perTryTimer: NodeJS.Timeout | undefined;
  /** Its response headers went on to the filter chain / client: no retry from here on. */
  forwarded = false;
  /** Its in-flight counts were released. */
  released = false;

  constructor(ar: ActiveRequest, endpoint: EndpointState, isRetry: boolean) {
    this.ar = ar;
    this.endpoint = endpoint;
    this.isRetry = isRetry;
  }

  onUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.ar.attemptHeaders(this, headers, endOfStream);
  }

  onUpstreamData(chunk: Buffer): boolean {
    return this.ar.attemptData(this, chunk);
  }

  onUpstreamEnd(trailers: HeaderList | undefined): void {
    this.ar.attemptEnd(this, trailers);
  }

  onUpstreamError(err: Error, flag: string): void {
    this.ar.attemptError(this, err, flag);
  }
}

export class ActiveRequest implements ChainTerminal {

  readonly cm: RequestHost<ActiveRequest>;
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
  /** Upstream tries started (1 + retries); in the access log as upstream_request_attempt_count. */
  attempts = 0;
  /** Tracing's sampling decision and span ids (absent: the listener traces nothing). */
  trace: TraceState | undefined;
  #attempt: Attempt | undefined;
  #retryPolicy: CompiledRetryPolicy | undefined;
  #breaker: CircuitBreaker | undefined;
  #tried: EndpointState[] | undefined;
  #backoff: NodeJS.Timeout | undefined;
  /** A retry slot is held for a retry waiting out its backoff. */
  #pendingRetry = false;
  #hasBody = false;
  #bodyEnded = false;
  /** Request body copy for retries and the mirror (absent when neither needs it). */
  #bodyBuffer: RequestBodyBuffer | undefined;
  /** No filter chain and a body copy: request data comes through our own 'data' listener. */
  #manualBody = false;
  #mirror: MirrorPolicy | undefined;
  #mirrorHeaders: HeaderList | undefined;

  constructor(cm: RequestHost<ActiveRequest>, req: DownstreamRequest, res: DownstreamResponse) {
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
    const telemetry = cm.telemetry;
    if (telemetry?.tracer !== undefined) this.trace = telemetry.tracer.begin(this.headers, telemetry);
    const ct = getHeader(this.headers, 'content-type');
    this.isGrpc = ct !== undefined && ct.startsWith('application/grpc');
    const hasBody = requestHasBody(req);
    const chain = cm.chain;
    if (chain.isEmpty) {
      // No filters: the router sees the request directly and the body streams straight upstream.
      this.requestHeaders(this.headers, !hasBody);
      return;
    }
    const cs = chain.createStream(this, cm.streamInfo(req, this), chain.hasCanary ? getHeader(this.headers, 'x-request-id') : undefined);
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
    if (this.trace !== undefined) this.trace.tracer.forward(this.trace, headers);
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
    const policy = compileRetryPolicy(action.retry);
    this.#retryPolicy = policy;
    const breaker = cm.breakers.get(cluster.config.name);
    this.#breaker = breaker;
    breaker.active++;
    const mirror = action.mirror !== undefined && shouldMirror(action.mirror) ? action.mirror : undefined;
    if (!endOfStream) {
      this.#hasBody = true;
      if ((policy !== undefined && policy.numRetries > 0) || mirror !== undefined) this.#bodyBuffer = new RequestBodyBuffer(RETRY_BODY_LIMIT);
      if (!this.chain) {
        const req = this.req as unknown as Readable;
        if (this.#bodyBuffer === undefined) {
          // Nothing to replay: the body streams straight upstream. Both listeners attach in this
          // tick, so no chunk flows before the pipe is in place.
          this.upstreamBody = new PassThrough();
          this.req.on('data', (c: Buffer) => (this.bytesIn += c.length));
          req.pipe(this.upstreamBody);
        } else {
          this.#manualBody = true;
          req.on('data', (c: Buffer) => {
            this.bytesIn += c.length;
            this.requestData(c, false);
          });
          req.on('end', () => this.requestData(EMPTY, true));
        }
      }
    }
    if (mirror !== undefined) {
      if (endOfStream) sendMirror(cm, mirror, headers, null, cm.lbContext(this), action.timeoutMs, this.isH2);
      else {
        this.#mirror = mirror;
        this.#mirrorHeaders = headers.slice();
      }
    }
    if (action.timeoutMs > 0) this.#timer = setTimeout(() => this.#timeout(), action.timeoutMs);
    this.#startAttempt(endpoint, false);
  }

  /** Starts one try against `endpoint`, or answers 503 UO when a circuit breaker is full. */
  #startAttempt(endpoint: EndpointState, isRetry: boolean): void {
    const cm = this.cm;
    const cluster = this.cluster!;
    const breaker = this.#breaker!;
    if (isRetry) this.#pendingRetry = false;
    if (!breaker.admitRequest(cluster.config.connectionPool, endpoint, cluster.endpoints, cm.upstreamProtocol(cluster, this.isH2) === 'http1')) {
      if (isRetry) breaker.retries--;
      this.#upstreamDone = false;
      this.#upstreamFinished();
      return this.#overflow();
    }
    this.attempts++;
    setHeader(this.headers, 'x-envoy-attempt-count', String(this.attempts));
    const a = new Attempt(this, endpoint, isRetry);
    this.#attempt = a;
    this.endpoint = endpoint;
    endpoint.activeRequests++;
    breaker.requests++;
    let body: Readable | null = null;
    if (this.#hasBody) {
      if (this.#bodyBuffer !== undefined) {
        // What arrived so far, then the rest as it comes (requestData writes to the current try).
        this.upstreamBody = this.#bodyBuffer.replay();
        if (this.#manualBody && isRetry) (this.req as unknown as Readable).resume();
      } else if (this.upstreamBody === undefined) {
        this.upstreamBody = new PassThrough();
        if (this.#bodyEnded) this.upstreamBody.end();
      }
      a.body = this.upstreamBody;
      body = this.upstreamBody;
    }
    const perTry = this.#retryPolicy?.perTryTimeoutMs ?? 0;
    if (perTry > 0) a.perTryTimer = setTimeout(() => this.#perTryTimeout(a), perTry);
    cm.clusterStats(cluster).requests.increment(1);
    this.#upstreamDone = false;
    a.call = this.call = cm.upstreamFor(cluster, endpoint, this.isH2).request({ headers: this.headers, body }, a);
  }

  /** Releases a try's in-flight counts (endpoint, circuit breaker, retry slot) once. */
  #releaseAttempt(a: Attempt): void {
    if (a.released) return;
    a.released = true;
    if (a.perTryTimer) {
      clearTimeout(a.perTryTimer);
      a.perTryTimer = undefined;
    }
    a.endpoint.activeRequests--;
    const breaker = this.#breaker!;
    breaker.requests--;
    if (a.isRetry) breaker.retries--;
  }

  /** Whether another try is allowed now (attempts left, nothing sent downstream, body replayable). */
  #canRetry(a: Attempt): boolean {
    const p = this.#retryPolicy;
    if (p === undefined || this.attempts > p.numRetries || this.#finished || this.#responseStarted || a.forwarded) return false;
    if (this.#hasBody && (this.#bodyBuffer === undefined || this.#bodyBuffer.overflowed)) return false;
    return true;
  }

  /**
   * Drops try `a` and schedules the next after a jittered backoff, on another endpoint where one
   * exists. False (nothing changed) when the retry circuit breaker or budget is full.
   */
  #retry(a: Attempt, reason: string): boolean {
    const cluster = this.cluster!;
    const breaker = this.#breaker!;
    const stats = this.cm.clusterStats(cluster);
    if (!breaker.admitRetry(cluster.config.connectionPool)) {
      stats.counter(RETRY_OVERFLOW_TOTAL, 'Retries not made because the cluster\'s maxRetries was reached').increment(1);
      return false;
    }
    this.#releaseAttempt(a);
    // No longer current before the abort: its (possibly synchronous) error callback is then dropped.
    this.#attempt = undefined;
    this.call = undefined;
    if (this.upstreamBody === a.body) this.upstreamBody = undefined;
    a.call?.abort(new Error(reason));
    a.body?.destroy();
    (this.#tried ??= []).push(a.endpoint);
    breaker.retries++;
    this.#pendingRetry = true;
    stats.counter(RETRIES_TOTAL, 'Retries sent to a cluster').increment(1);
    this.#backoff = setTimeout(() => this.#afterBackoff(), backoffMs(this.attempts));
    return true;
  }

  #afterBackoff(): void {
    this.#backoff = undefined;
    if (this.#upstreamDone || this.#finished) return;
    if (this.#hasBody && this.#bodyBuffer?.overflowed) {
      // The body outgrew the replay buffer while waiting: this try cannot be made.
      this.#upstreamFinished();
      return this.localReply(503, 'upstream_reset_before_response_started{retry_buffer_overflow}', 'UC', resetText('retry buffer overflow'));
    }
    const endpoint = this.#retryHost();
    if (!endpoint) {
      this.#upstreamFinished();
      this.cm.clusterStats(this.cluster!).flag('UH');
      return this.localReply(503, 'no_healthy_upstream', 'UH', 'no healthy upstream');
    }
    this.#startAttempt(endpoint, true);
  }

  /** Envoy's previous_hosts predicate: up to HOST_SELECTION_ATTEMPTS picks to find an endpoint not tried yet. */
  #retryHost(): EndpointState | undefined {
    const cluster = this.cluster!;
    const tried = this.#tried ?? [];
    const ctx = this.cm.lbContext(this);
    let pick: EndpointState | undefined;
    for (let i = 0; i < HOST_SELECTION_ATTEMPTS; i++) {
      pick = cluster.pick(ctx);
      if (pick === undefined || !tried.includes(pick)) return pick;
    }
    return pick;
  }

  #perTryTimeout(a: Attempt): void {
    a.perTryTimer = undefined;
    if (a !== this.#attempt || this.#upstreamDone || a.forwarded) return;
    this.cluster?.reportOutcome(a.endpoint, 'UT'); // outlier detection: a timeout counts as 504
    this.cm.clusterStats(this.cluster!).flag('UT');
    if (this.#canRetry(a) && this.#retryPolicy!.retriableTimeout() && this.#retry(a, 'upstream per-try timeout')) return;
    this.#abortUpstream('upstream per-try timeout');
    this.localReply(504, 'upstream_per_try_timeout', 'UT', 'upstream request timeout');
  }

  #overflow(): void {
    const stats = this.cm.clusterStats(this.cluster!);
    stats.counter(OVERFLOW_TOTAL, 'Requests refused by a circuit breaker (503 UO)').increment(1);
    stats.flag('UO');
    this.upstreamBody?.destroy();
    this.localReply(503, 'upstream_reset_before_response_started{overflow}', 'UO', resetText('overflow'));
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#finished) return;
    const buffer = this.#bodyBuffer;
    if (buffer !== undefined) {
      buffer.append(data);
      if (endOfStream) buffer.end();
    }
    if (endOfStream) this.#bodyEnd();
    // During a retry's backoff there is no current body: the copy above is replayed to the next try.
    const body = this.upstreamBody;
    if (!body) return;
    if (data.length > 0 && !body.write(data) && this.#manualBody) {
      const req = this.req as unknown as Readable;
      req.pause();
      body.once('drain', () => req.resume());
    }
    if (endOfStream) body.end();
  }

  requestTrailers(_trailers: HeaderList): void {
    // Request trailers are not forwarded upstream (no upstream client here sends them); end the body.
    this.#bodyBuffer?.end();
    this.#bodyEnd();
    this.upstreamBody?.end();
  }

  #bodyEnd(): void {
    if (this.#bodyEnded) return;
    this.#bodyEnded = true;
    const mirror = this.#mirror;
    if (mirror === undefined) return;
    this.#mirror = undefined;
    const buffer = this.#bodyBuffer!;
    const action = this.route?.action;
    // A body past the buffer bound is not mirrored (a truncated copy would be a different request).
    if (buffer.overflowed) skipMirror(this.cm, mirror);
    else sendMirror(this.cm, mirror, this.#mirrorHeaders!, buffer.concat(), this.cm.lbContext(this), action?.kind === 'forward' ? action.timeoutMs : 0, this.isH2);
    this.#mirrorHeaders = undefined;
  }

  // ---- upstream responses -----------------------------------------------------------------------

  attemptHeaders(a: Attempt, headers: HeaderList, endOfStream: boolean): void {
    if (a !== this.#attempt || this.#upstreamDone || this.#finished) return;
    this.cluster?.reportOutcome(a.endpoint, headers); // outlier detection: this try's status
    const policy = this.#retryPolicy;
    if (policy !== undefined && this.#canRetry(a)) {
      const status = Number(getHeader(headers, ':status')) || 200;
      if (policy.retriableResponse(status, headers) && this.#retry(a, `retriable response ${status}`)) return;
    }
    a.forwarded = true;
    if (a.perTryTimer) {
      // Envoy: once the response is under way, only the route timeout governs it.
      clearTimeout(a.perTryTimer);
      a.perTryTimer = undefined;
    }
    const route = this.route;
    if (route?.responseHeaders) applyHeaderOperations(headers, route.responseHeaders);
    if (this.destination?.responseHeaders) applyHeaderOperations(headers, this.destination.responseHeaders);
    if (this.#setCookie) headers.push('set-cookie', this.#setCookie);
    if (endOfStream) this.#upstreamFinished();
    if (this.chain) this.chain.responseHeaders(headers, endOfStream);
    else this.responseHeaders(headers, endOfStream);
  }

  attemptData(a: Attempt, chunk: Buffer): boolean {
    if (a !== this.#attempt || this.#finished) return true;
    if (this.chain) this.chain.responseData(chunk, false);
    else this.responseData(chunk, false);
    return !this.#blocked;
  }

  attemptEnd(a: Attempt, trailers: HeaderList | undefined): void {
    if (a !== this.#attempt) return;
    this.#upstreamFinished();
    if (this.#finished) return;
    if (this.chain) {
      if (trailers) this.chain.responseTrailers(trailers);
      else this.chain.responseData(EMPTY, true);
    } else if (trailers) this.responseTrailers(trailers);
    else this.responseData(EMPTY, true);
  }

  attemptError(a: Attempt, err: Error, flag: string): void {
    // After a timeout, a retry or a reset the try was aborted on purpose: that error is not news.
    if (a !== this.#attempt || this.#upstreamDone) return;
    this.cluster?.reportOutcome(a.endpoint, flag); // outlier detection: a local-origin failure
    if (this.cluster && !this.#finished) {
      const s = this.cm.clusterStats(this.cluster);
      s.errors.increment(1);
      s.flag(flag);
    }
    if (!this.#finished && this.#canRetry(a) && this.#retryPolicy!.retriableFailure(flag, isRefusedStream(err)) && this.#retry(a, `upstream ${flag}: ${err.message}`)) return;
    this.#upstreamFinished();
    if (this.#finished) return;
    if (this.#responseStarted || a.forwarded) {
      this.responseFlags = flag;
      this.reset(`upstream_reset: ${err.message}`);
      return;
    }
    if (flag === 'UT') return this.localReply(504, 'upstream_response_timeout', 'UT', 'upstream request timeout');
    if (flag === 'UF') return this.localReply(503, 'upstream_reset_before_response_started{connection_failure}', 'UF', resetText(`connection failure, ${err.message}`));
    if (flag === 'UC') return this.localReply(503, 'upstream_reset_before_response_started{connection_termination}', 'UC', resetText(`connection termination, ${err.message}`));
    this.localReply(502, 'upstream_reset_before_response_started{protocol_error}', flag, resetText(`protocol error, ${err.message}`));
  }

  #upstreamFinished(): void {
    if (this.#upstreamDone) return;
    this.#upstreamDone = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#backoff) {
      clearTimeout(this.#backoff);
      this.#backoff = undefined;
    }
    if (this.#pendingRetry) {
      this.#pendingRetry = false;
      this.#breaker!.retries--;
    }
    const a = this.#attempt;
    if (a) this.#releaseAttempt(a);
  }

  /** Cancels the upstream call, marking it finished first so its error callback is ignored. */
  #abortUpstream(reason: string): void {
    if (this.#upstreamDone) return;
    const call = this.#attempt?.call;
    this.#upstreamFinished();
    call?.abort(new Error(reason));
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
    if (this.#breaker) this.#breaker.active--;
    this.#mirror = undefined;
    this.#mirrorHeaders = undefined;
    const chain = this.chain;
    if (chain !== undefined) {
      // Telemetry tagOverrides that read the request evaluate while the filters' on_log runs.
      if (metricsReadRequest()) withRequest(() => new RequestFacts(this, this.status || (this.responseFlags ? 0 : 200), Date.now() - this.startMs, ''), () => chain.finish());
      else chain.finish();
    }
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
