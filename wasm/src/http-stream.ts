// One HTTP request/response through one filter: the stream context of the ABI. Input arrives from
// the embedder; output goes to the sink once the filter lets it through, possibly after a pause.
import { BufferType, GrpcStatus, MapType, StreamType, WasmResult } from './abi/constants.ts';
import { Context, type BufferSlot, type OutputKind, type RootContext } from './context.ts';
import { Latin1Text, type HeaderList, type HttpStreamSink, type LocalResponse, type PropertyValue, type StreamInfo } from './host.ts';
import { headerGet } from './pairs.ts';
import { isGrpcRequest } from './local-reply.ts';
import { realtimeNs } from './imports/proxy-general.ts';
import { CALL_FAILED, type GuestExports, type Vm } from './vm.ts';

/** Where one direction (request or response) stands. */
const enum Phase {
  /** Headers not seen yet. */
  Idle,
  /** The filter paused on headers: nothing forwarded, body and trailers held without callbacks. */
  HeadersPaused,
  /** Headers forwarded; body chunks go through the body callback. */
  Open,
  /** The filter stopped on a body chunk: the body accumulates and each chunk calls back with the total. */
  BodyStopped,
  /** The filter paused on trailers. */
  TrailersPaused,
  /** End of stream forwarded (or the stream answered locally / reset): nothing more goes out. */
  Done,
}

const EMPTY = Buffer.alloc(0);

/** The stream callbacks whose return value (the ABI's Action: 0 Continue, else Pause) an observer is told. */
export type StreamCallback =
  | 'on_request_headers'
  | 'on_request_body'
  | 'on_request_trailers'
  | 'on_response_headers'
  | 'on_response_body'
  | 'on_response_trailers';

/** Told what each stream callback returned (the test harness reports it); not told about calls that trapped. */
export interface StreamObserver {
  callbackReturned(callback: StreamCallback, value: number): void;
}

/** The state of one direction. Held per stream, reused for its life: no per-chunk objects. */
class Direction implements BufferSlot {
  readonly isRequest: boolean;
  phase = Phase.Idle;
  headers: HeaderList | undefined;
  trailers: HeaderList | undefined;
  /** Body bytes held for the filter (not yet forwarded). */
  body: Buffer = EMPTY;
  /** The input ended (end_of_stream on headers or data, or trailers arrived). */
  ended = false;
  headersEndStream = false;
  /** Bytes seen in total, for request.size / response.size. */
  totalBytes = 0;
  /** True while the filter is inside a body callback or the body is held: the body buffer is readable. */
  bodyReadable = false;
  /** Inside the last body callback of a stream without trailers: the filter may add trailers. */
  lastBodyCall = false;
  /** The filter changed the headers / trailers: their size is checked before they go on. */
  headersModified = false;
  trailersModified = false;
  /** BufferSlot: the most body bytes the filter may set (the plugin's buffer bound). */
  readonly maxBytes: number;

  constructor(isRequest: boolean, maxBytes: number) {
    this.isRequest = isRequest;
    this.maxBytes = maxBytes;
  }

  bytes(): Uint8Array {
    return this.body;
  }

  replace(data: Uint8Array): void {
    this.body = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
  }
}

export class HttpStream extends Context {
  readonly vm: Vm;
  readonly sink: HttpStreamSink;
  readonly info: StreamInfo | undefined;
  readonly request: Direction;
  readonly response: Direction;
  /** Wall-clock start, for request.time and request.duration (Date.now: cheaper than hrtime per stream). */
  readonly startMs: number;
  /** A local response went (or is going) out: nothing more is forwarded. */
  answered = false;
  /** The local response came while the upstream's response was being processed: the rest of that is dropped. */
  #responseReplaced = false;
  /** The filter reset the stream. */
  closed = false;
  /** The VM failed and the plugin fails open: everything passes through untouched. */
  bypass = false;
  finished = false;
  /** Tests: told each callback's return value. Undefined in a proxy (one comparison per callback). */
  observer: StreamObserver | undefined = undefined;
  #onFinish: ((stream: HttpStream) => void) | undefined;
  #guest: GuestExports;
  #maxBuffered: number;
  /** What the filter wrote past the output limits (the stream fails after the callback), and whether that was done. */
  #outputOverflow: OutputKind | undefined;
  #outputFailed = false;

  constructor(vm: Vm, sink: HttpStreamSink, info: StreamInfo | undefined, onFinish?: (stream: HttpStream) => void) {
    super(vm.newContextId());
    this.vm = vm;
    this.sink = sink;
    this.info = info;
    this.#guest = vm.guest;
    this.#maxBuffered = vm.settings.maxBufferedBodyBytes;
    this.request = new Direction(true, this.#maxBuffered);
    this.response = new Direction(false, this.#maxBuffered);
    this.#onFinish = onFinish;
    this.startMs = Date.now();
    vm.contexts.set(this.id, this);
    // A failure here (or a VM already failed) is handled when the headers arrive, so the sink
    // hears nothing before the embedder has sent anything.
    const create = this.#guest.onContextCreate;
    if (create && !vm.failed) vm.call(create, this, this.id, vm.root.id);
  }

  get root(): RootContext {
    return this.vm.root;
  }

  override get streamInfo(): StreamInfo | undefined {
    return this.info;
  }

  // ---- input from the embedder -------------------------------------------------------------

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.#headers(this.request, headers, endOfStream);
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.#data(this.request, data, endOfStream);
  }

  requestTrailers(trailers: HeaderList): void {
    this.#trailers(this.request, trailers);
  }

  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.#headers(this.response, headers, endOfStream);
  }

  responseData(data: Uint8Array, endOfStream: boolean): void {
    this.#data(this.response, data, endOfStream);
  }

  responseTrailers(trailers: HeaderList): void {
    this.#trailers(this.response, trailers);
  }

  /** The stream is over (completed or reset): on_log, on_done, on_delete, once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const vm = this.vm;
    if (!this.deleted && !vm.failed && !this.bypass) {
      if (this.#guest.onLog) vm.call(this.#guest.onLog, this, this.id);
      if (this.#guest.onDone) vm.call(this.#guest.onDone, this, this.id);
      vm.deleteContext(this);
    }
    vm.contexts.delete(this.id);
    this.#onFinish?.(this);
  }

  // ---- the ABI's view of this context --------------------------------------------------------

  override getMap(type: number): HeaderList | undefined {
    switch (type) {
      case MapType.HttpRequestHeaders:
        return this.request.headers;
      case MapType.HttpRequestTrailers:
        return this.request.trailers;
      case MapType.HttpResponseHeaders:
        return this.response.headers;
      case MapType.HttpResponseTrailers:
        return this.response.trailers;
      default:
        return this.vm.root.getMap(type);
    }
  }

  override writableMap(type: number): HeaderList | undefined {
    switch (type) {
      case MapType.HttpRequestHeaders:
        return writableHeaders(this.request);
      case MapType.HttpRequestTrailers:
        return writableTrailers(this.request);
      case MapType.HttpResponseHeaders:
        return writableHeaders(this.response);
      case MapType.HttpResponseTrailers:
        return writableTrailers(this.response);
      default:
        return undefined;
    }
  }

  override mapWriteLimit(type: number): number {
    const limits = this.vm.settings.outputLimits;
    if (type === MapType.HttpRequestHeaders || type === MapType.HttpRequestTrailers) return limits.requestHeaderBytes;
    if (type === MapType.HttpResponseHeaders || type === MapType.HttpResponseTrailers) return limits.responseHeaderBytes;
    return Infinity;
  }

  override outputTooLarge(what: OutputKind): number {
    this.#outputOverflow ??= what;
    // Outside a guest call (a check before forwarding) the stream fails now; inside one, after it returns.
    if (!this.vm.inGuestCall) this.#failOutput();
    return WasmResult.BadArgument;
  }

  override getBuffer(type: number): BufferSlot | undefined {
    if (type === BufferType.HttpRequestBody) return this.request.bodyReadable ? this.request : undefined;
    if (type === BufferType.HttpResponseBody) return this.response.bodyReadable ? this.response : undefined;
    return this.vm.root.getBuffer(type);
  }

  override continueStream(type: number): number {
    const dir = type === StreamType.HttpRequest ? this.request : type === StreamType.HttpResponse ? this.response : undefined;
    if (!dir) return WasmResult.Ok;
    // Resume after the guest call returns, as Envoy does: never call back into the guest from a host call.
    this.vm.defer(() => this.#resume(dir));
    return WasmResult.Ok;
  }

  override closeStream(_type: number): number {
    if (this.closed || this.answered) return WasmResult.Ok;
    this.closed = true;
    this.vm.defer(() => {
      this.request.phase = Phase.Done;
      this.response.phase = Phase.Done;
      this.sink.reset('wasm_close_stream');
    });
    return WasmResult.Ok;
  }

  override sendLocalResponse(response: LocalResponse): number {
    // A second local reply in one stream is a no-op; after response headers went out it is too late.
    if (this.answered || this.closed) return WasmResult.Ok;
    if (this.response.phase > Phase.HeadersPaused) return WasmResult.BadArgument;
    if (!this.#fits(response.headers, this.vm.settings.outputLimits.responseHeaderBytes)) return this.outputTooLarge('local_reply');
    this.answered = true;
    this.vm.defer(() => this.#answer(response));
    return WasmResult.Ok;
  }

  override streamProperty(path: readonly string[]): PropertyValue | undefined {
    return httpProperty(this, path);
  }

  // ---- flow ----------------------------------------------------------------------------------

  #headers(dir: Direction, headers: HeaderList, endOfStream: boolean): void {
    if (this.#stopped(dir)) return;
    dir.headers = headers;
    dir.ended = endOfStream;
    dir.headersEndStream = endOfStream;
    // On a failed VM the failStrategy decides; FAIL_OPEN has forwarded these headers already.
    if (this.vm.failed && !this.bypass && this.#afterCall()) return;
    if (this.bypass) return this.#forwardHeaders(dir);
    const fn = dir.isRequest ? this.#guest.onRequestHeaders : this.#guest.onResponseHeaders;
    const result = fn ? this.vm.call(fn, this, this.id, headers.length >>> 1, endOfStream ? 1 : 0) : 0;
    if (fn && this.observer !== undefined && !this.vm.failed) this.observer.callbackReturned(dir.isRequest ? 'on_request_headers' : 'on_response_headers', result);
    if (this.#afterCall()) return;
    this.vm.servedStream = true;
    if (result === 0 && !this.#stopped(dir)) this.#forwardHeaders(dir);
    else if (dir.phase === Phase.Idle) dir.phase = Phase.HeadersPaused;
  }

  #data(dir: Direction, data: Uint8Array, endOfStream: boolean): void {
    if (this.#stopped(dir)) return;
    dir.totalBytes += data.length;
    if (endOfStream) dir.ended = true;
    if (this.bypass) return this.#emitData(dir, data, endOfStream);
    dir.body = dir.body.length === 0 ? toBuffer(data) : Buffer.concat([dir.body, data]);
    // Only bytes held for the filter count against the bound: a chunk on its way through (Open) does not.
    if (dir.phase !== Phase.Open && dir.body.length > this.#maxBuffered) return this.#overflow(dir);
    if (dir.phase === Phase.Open || dir.phase === Phase.BodyStopped) this.#runBody(dir);
  }

  #trailers(dir: Direction, trailers: HeaderList): void {
    if (this.#stopped(dir)) return;
    dir.trailers = trailers;
    dir.ended = true;
    if (this.bypass) {
      this.#flushBody(dir, false);
      return this.#emitTrailers(dir);
    }
    if (dir.phase === Phase.HeadersPaused) return;
    this.#runTrailers(dir);
  }

  #runBody(dir: Direction): void {
    const fn = dir.isRequest ? this.#guest.onRequestBody : this.#guest.onResponseBody;
    const endOfStream = dir.ended && dir.trailers === undefined;
    dir.bodyReadable = true;
    dir.lastBodyCall = endOfStream;
    const result = fn ? this.vm.call(fn, this, this.id, dir.body.length, endOfStream ? 1 : 0) : 0;
    dir.lastBodyCall = false;
    if (fn && this.observer !== undefined && !this.vm.failed) this.observer.callbackReturned(dir.isRequest ? 'on_request_body' : 'on_response_body', result);
    // Trailers the filter added in the last body callback go out after the body (which then does not end the stream).
    if (endOfStream && dir.trailers !== undefined && dir.trailers.length === 0) dir.trailers = undefined;
    const addedTrailers = endOfStream && dir.trailers !== undefined;
    if (this.#afterCall()) return;
    if (this.#stopped(dir)) return;
    if (result === 0) {
      dir.phase = Phase.Open;
      if (addedTrailers) {
        this.#flushBody(dir, false);
        this.#emitTrailers(dir);
      } else {
        this.#flushBody(dir, endOfStream);
      }
    } else {
      dir.phase = Phase.BodyStopped;
      if (dir.body.length > this.#maxBuffered) this.#overflow(dir);
    }
  }

  #runTrailers(dir: Direction): void {
    const fn = dir.isRequest ? this.#guest.onRequestTrailers : this.#guest.onResponseTrailers;
    const trailers = dir.trailers!;
    const result = fn ? this.vm.call(fn, this, this.id, trailers.length >>> 1) : 0;
    if (fn && this.observer !== undefined && !this.vm.failed) this.observer.callbackReturned(dir.isRequest ? 'on_request_trailers' : 'on_response_trailers', result);
    if (this.#afterCall()) return;
    if (this.#stopped(dir)) return;
    if (result === 0 && dir.phase !== Phase.BodyStopped) {
      this.#flushBody(dir, false);
      this.#emitTrailers(dir);
    } else if (result !== 0) {
      dir.phase = Phase.TrailersPaused;
    }
    // result 0 while the body is stopped: the trailers wait for the body's continue.
  }

  /** proxy_continue_stream, run after the guest call returned. */
  #resume(dir: Direction): void {
    if (this.#stopped(dir) || this.vm.failed) return;
    switch (dir.phase) {
      case Phase.HeadersPaused:
        this.#forwardHeaders(dir);
        if ((dir.phase as Phase) === Phase.Done) return;
        // Body that arrived while paused goes to the filter now, then any trailers.
        if (dir.body.length > 0 || (dir.ended && dir.trailers === undefined)) this.#runBody(dir);
        if ((dir.phase as Phase) === Phase.Open && dir.trailers !== undefined) this.#runTrailers(dir);
        return;
      case Phase.BodyStopped:
      case Phase.TrailersPaused: {
        const hasTrailers = dir.trailers !== undefined;
        this.#flushBody(dir, dir.ended && !hasTrailers);
        if (hasTrailers) this.#emitTrailers(dir);
        else if (!dir.ended) dir.phase = Phase.Open;
        return;
      }
      default:
        return;
    }
  }

  #forwardHeaders(dir: Direction): void {
    if (dir.headersModified && !this.#fits(dir.headers!, this.#headerLimit(dir))) {
      this.outputTooLarge(dir.isRequest ? 'request_headers' : 'response_headers');
      return;
    }
    // With the body held (paused), end_of_stream on the headers is only true if nothing follows.
    const endOfStream = dir.headersEndStream;
    dir.phase = endOfStream ? Phase.Done : Phase.Open;
    if (dir.isRequest) this.sink.requestHeaders(dir.headers!, endOfStream);
    else this.sink.responseHeaders(dir.headers!, endOfStream);
  }

  #flushBody(dir: Direction, endOfStream: boolean): void {
    const body = dir.body;
    dir.body = EMPTY;
    dir.bodyReadable = false;
    if (endOfStream) dir.phase = Phase.Done;
    if (body.length > 0 || endOfStream) this.#emitData(dir, body, endOfStream);
  }

  #emitData(dir: Direction, data: Uint8Array, endOfStream: boolean): void {
    if (endOfStream) dir.phase = Phase.Done;
    if (dir.isRequest) this.sink.requestData(data, endOfStream);
    else this.sink.responseData(data, endOfStream);
  }

  #emitTrailers(dir: Direction): void {
    if (dir.trailersModified && !this.#fits(dir.trailers!, this.#headerLimit(dir))) {
      this.outputTooLarge(dir.isRequest ? 'request_trailers' : 'response_trailers');
      return;
    }
    dir.phase = Phase.Done;
    if (dir.isRequest) this.sink.requestTrailers(dir.trailers!);
    else this.sink.responseTrailers(dir.trailers!);
  }

  #stopped(dir: Direction): boolean {
    return this.closed || (this.answered && (dir.isRequest || this.#responseReplaced)) || dir.phase === Phase.Done && dir.headers !== undefined && dir.ended;
  }

  #answer(response: LocalResponse): void {
    this.request.phase = Phase.Done;
    this.request.body = EMPTY;
    if (this.response.headers !== undefined) this.#replaceResponse();
    this.sink.localResponse(response);
  }

  #replaceResponse(): void {
    this.#responseReplaced = true;
    this.response.phase = Phase.Done;
    this.response.body = EMPTY;
    this.response.bodyReadable = false;
  }

  /** Body over the buffer bound: 413 for a request, 500 for a response (as Envoy's buffer filter). */
  #overflow(dir: Direction): void {
    dir.body = EMPTY;
    dir.bodyReadable = false;
    if (dir.isRequest && this.response.phase <= Phase.HeadersPaused && !this.answered) {
      this.answered = true;
      this.#answer(localReply(413, 'request_payload_too_large', 'Payload Too Large', -1));
    } else if (!this.answered && this.response.phase <= Phase.HeadersPaused) {
      this.answered = true;
      this.#replaceResponse();
      this.sink.localResponse(localReply(500, 'response_payload_too_large', 'Internal Server Error', -1));
    } else {
      this.closed = true;
      this.sink.reset('response_payload_too_large');
    }
  }

  #headerLimit(dir: Direction): number {
    const limits = this.vm.settings.outputLimits;
    return dir.isRequest ? limits.requestHeaderBytes : limits.responseHeaderBytes;
  }

  /** The header block is within `maxBytes` (names, values, 4 bytes of framing each) and the header count limit. */
  #fits(list: HeaderList, maxBytes: number): boolean {
    if (list.length >>> 1 > this.vm.settings.outputLimits.headerCount) return false;
    let bytes = 2 * list.length;
    for (let i = 0; i < list.length; i++) bytes += list[i].length;
    return bytes <= maxBytes;
  }

  /**
   * The filter wrote past the output limits: nothing of it goes on. Before the response started the
   * client gets a 500 whose details name the plugin and what was too large; after, the stream is reset.
   * Counted in wasmesh_wasm_output_limit_total{plugin, what}.
   */
  #failOutput(): void {
    const what = this.#outputOverflow;
    if (what === undefined || this.#outputFailed || this.finished) return;
    this.#outputFailed = true;
    const plugin = this.vm.settings.name;
    this.vm.settings.host.metrics
      .counter('wasmesh_wasm_output_limit_total', 'Streams failed because a filter wrote headers, trailers, a body or a local reply past the limits', { plugin, what })
      .increment(1);
    const details = `wasm_output_too_large[${plugin}][${what}]`;
    if (this.closed || (this.answered && what !== 'local_reply')) return;
    if (this.response.phase <= Phase.HeadersPaused) {
      this.answered = true;
      const grpc = isGrpcRequest(this.request.headers);
      this.#answer(localReply(500, details, grpc ? 'filter output too large' : 'filter output too large\n', grpc ? GrpcStatus.Internal : -1));
    } else {
      this.closed = true;
      this.request.phase = Phase.Done;
      this.response.phase = Phase.Done;
      this.sink.reset(details);
    }
  }

  /** A stream held by the filter when the VM failed elsewhere (a root callback, another stream) would wait forever. */
  override onVmFailed(): void {
    if (this.finished || (!isHeld(this.request) && !isHeld(this.response))) return;
    this.#afterCall();
  }

  /**
   * After each call into the guest: true when the stream must not go on (the VM failed). The failStrategy
   * may already have been applied during the call (onVmFailed), in which case this only reports it.
   */
  #afterCall(): boolean {
    if (this.#outputOverflow !== undefined && !this.#outputFailed) {
      this.#failOutput();
      return true;
    }
    if (!this.vm.failed) return false;
    if (this.bypass) return true;
    if (this.vm.settings.failStrategy === 'FAIL_OPEN') {
      this.bypass = true;
      this.#passThroughHeld(this.request);
      this.#passThroughHeld(this.response);
      return true;
    }
    this.#failClosed();
    return true;
  }

  /** The VM this stream runs on failed: FAIL_OPEN passes it through, the others answer 503. */
  get vmFailed(): boolean {
    return this.vm.failed && !this.bypass;
  }

  #passThroughHeld(dir: Direction): void {
    if (dir.headers === undefined || this.#stopped(dir)) return;
    if (dir.phase === Phase.Idle || dir.phase === Phase.HeadersPaused) this.#forwardHeaders(dir);
    if (dir.phase === Phase.Done) return;
    const hasTrailers = dir.trailers !== undefined;
    if (dir.body.length > 0 || (dir.ended && !hasTrailers)) this.#flushBody(dir, dir.ended && !hasTrailers);
    if (hasTrailers) this.#emitTrailers(dir);
  }

  #failClosed(): void {
    if (this.answered || this.closed) return;
    if (this.response.phase <= Phase.HeadersPaused) {
      this.answered = true;
      this.response.phase = Phase.Done;
      const grpc = isGrpcRequest(this.request.headers);
      this.#answer(localReply(503, 'wasm_fail_stream', '', grpc ? GrpcStatus.Unavailable : -1));
    } else {
      this.closed = true;
      this.sink.reset('wasm_fail_stream');
    }
  }
}

/** The filter holds this direction: paused on headers or trailers, or buffering the body. */
function isHeld(dir: Direction): boolean {
  return dir.phase === Phase.HeadersPaused || dir.phase === Phase.BodyStopped || dir.phase === Phase.TrailersPaused;
}

/** The headers the filter may change now (not yet forwarded); marks them for the size check. */
function writableHeaders(dir: Direction): HeaderList | undefined {
  if (dir.phase > Phase.HeadersPaused) return undefined;
  dir.headersModified = true;
  return dir.headers;
}

/** The trailers map the filter may change now; created empty when it adds trailers in the last body callback. */
function writableTrailers(dir: Direction): HeaderList | undefined {
  if (dir.phase === Phase.Done) return undefined;
  if (dir.trailers === undefined && dir.lastBodyCall) dir.trailers = [];
  if (dir.trailers !== undefined) dir.trailersModified = true;
  return dir.trailers;
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}

export function localReply(status: number, details: string, body: string, grpcStatus: number): LocalResponse {
  return { status, details, body: Buffer.from(body), headers: body ? ['content-type', 'text/plain'] : [], grpcStatus };
}

/** What request.* and response.* attributes are read from: an HttpStream, or another host's stream (component filters). */
export interface HttpPropertySource {
  readonly request: { readonly headers: HeaderList | undefined; readonly trailers: HeaderList | undefined; readonly totalBytes: number };
  readonly response: { readonly headers: HeaderList | undefined; readonly trailers: HeaderList | undefined; readonly totalBytes: number };
  readonly info: StreamInfo | undefined;
  readonly startMs: number;
}

/** request.* and response.* attributes from what the stream has seen (Envoy's names and types). */
export function httpProperty(stream: HttpPropertySource, path: readonly string[]): PropertyValue | undefined {
  const v = rawProperty(stream, path);
  // Header values hold one byte per char: hand them back as those bytes, not re-encoded as UTF-8.
  return typeof v === 'string' ? new Latin1Text(v) : v;
}

function rawProperty(stream: HttpPropertySource, path: readonly string[]): PropertyValue | undefined {
  if (path.length < 2) return undefined;
  const [scope, field] = path;
  const req = stream.request;
  const res = stream.response;
  if (scope === 'request') {
    const h = req.headers;
    if (field === 'headers') return path.length === 3 ? h && joinedHeader(h, path[2]) : h && joinedHeaders(h);
    if (path.length !== 2) return undefined;
    switch (field) {
      case 'path':
        return h && headerGet(h, ':path');
      case 'url_path': {
        const p = h && headerGet(h, ':path');
        return p === undefined ? undefined : p.split('?')[0];
      }
      case 'query': {
        const p = h && headerGet(h, ':path');
        if (p === undefined) return undefined;
        const i = p.indexOf('?');
        return i < 0 ? '' : p.slice(i + 1);
      }
      case 'host':
        return h && headerGet(h, ':authority');
      case 'scheme':
        return h && headerGet(h, ':scheme');
      case 'method':
        return h && headerGet(h, ':method');
      case 'referer':
        return h && headerGet(h, 'referer');
      case 'useragent':
        return h && headerGet(h, 'user-agent');
      case 'id':
        return h && headerGet(h, 'x-request-id');
      case 'protocol':
        return stream.info?.protocol;
      case 'time':
        return BigInt(stream.startMs) * 1_000_000n;
      case 'duration':
        return realtimeNs() - BigInt(stream.startMs) * 1_000_000n;
      case 'size':
        return req.totalBytes;
      case 'total_size':
        return req.totalBytes + (h ? headersBytes(h) : 0);
      case 'headers_bytes':
        return h ? headersBytes(h) : undefined;
    }
    return undefined;
  }
  if (scope === 'response') {
    const h = res.headers;
    if (field === 'headers') return path.length === 3 ? h && joinedHeader(h, path[2]) : h && joinedHeaders(h);
    if (field === 'trailers') return path.length === 3 ? res.trailers && joinedHeader(res.trailers, path[2]) : res.trailers && joinedHeaders(res.trailers);
    if (path.length !== 2 || !h) return undefined;
    switch (field) {
      case 'code': {
        const status = Number(headerGet(h, ':status'));
        return Number.isInteger(status) ? status : undefined;
      }
      case 'grpc_status': {
        const g = (res.trailers && headerGet(res.trailers, 'grpc-status')) ?? headerGet(h, 'grpc-status');
        return g === undefined ? undefined : Number(g);
      }
      case 'size':
        return res.totalBytes;
      case 'total_size':
        return res.totalBytes + headersBytes(h);
      case 'headers_bytes':
        return headersBytes(h);
    }
  }
  return undefined;
}

function joinedHeader(list: HeaderList, name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) out = out === undefined ? list[i + 1] : `${out},${list[i + 1]}`;
  return out;
}

function joinedHeaders(list: HeaderList): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < list.length; i += 2) {
    const prev = m.get(list[i]);
    m.set(list[i], prev === undefined ? list[i + 1] : `${prev},${list[i + 1]}`);
  }
  return m;
}

function headersBytes(list: HeaderList): number {
  let n = 0;
  for (let i = 0; i < list.length; i++) n += list[i].length;
  return n;
}

export { CALL_FAILED };
