// The HTTP filter chain: one proxy-wasm stream per filter, wired as Envoy wires decoder and encoder
// filters. The request runs filter 0 → 1 → … → n-1 → the terminal (upstream, the router); the
// response runs filter n-1 → … → 0 → the terminal (downstream, the client).
//
// Per request the chain allocates a ChainStream, one ChainLink per filter (the filter's sink) and the
// filters' HttpStreams, once, when the stream is created. Nothing is allocated per chunk and no
// closure is made per request; a local reply (rare) builds its response headers. With no filter at
// all the caller skips the chain entirely (FilterChain.isEmpty).
import { isGrpcRequest, isTrailersOnly, localResponseHeaders, type HeaderList, type HttpStreamSink, type LocalResponse, type ModuleMetadata, type PluginSettings, type StreamInfo, type TrapCause } from '../../../wasm/src/index.ts';
import { hashString } from '../stable-hash.ts';

/**
 * What the chain hands its output to: implemented by the connection manager.
 *
 * - `requestHeaders` / `requestData` / `requestTrailers`: the request as the last filter let it
 *   through; send it upstream (the router). Called possibly later than the input arrived (a filter
 *   paused), never after a local reply or a reset.
 * - `responseHeaders` / `responseData` / `responseTrailers`: the response as the first filter let it
 *   through; write it to the client. Headers come at most once, and nothing follows end of stream.
 *   A local reply arrives here too, exactly like an upstream response, after it has run through the
 *   response path of the filters that saw the request (they may rewrite it, as in Envoy): `:status`,
 *   the reply's headers, then its body. As in Envoy, a reply with a gRPC status to a gRPC request
 *   (content-type application/grpc...) is sent as a gRPC trailers-only response: `grpc-status`,
 *   `content-type: application/grpc` unless set, the body moved to `grpc-message`, end of stream on
 *   the headers; any other request gets an HTTP reply with the body, `content-type: text/plain`
 *   when the body is not empty and the filter set none (wasm/src/local-reply.ts).
 * - `localResponse(r)`: a notification, not the reply itself. Called the moment a filter (or the
 *   runtime, for a failed VM or an oversized body) answers, before the reply's headers come through
 *   `responseHeaders` (a filter on the response path may pause them). On it the connection manager
 *   stops sending the request upstream (abort an upstream request already started: the chain drops
 *   its response from now on) and keeps `r.status` / `r.details` for the access log and response
 *   flags. The headers the client finally gets may differ from `r` (filters on the response path may
 *   change them). Normally called once; if a filter fails (FAIL_CLOSE) while the reply runs through
 *   it, its 503 replaces the reply and this is called again (the last call wins). A reply that comes
 *   after response headers already reached the client resets the stream instead
 *   (`reset('local_reply_after_response_started')`).
 * - `reset(reason)`: reset the downstream stream (and abort the upstream one). `reason` is the
 *   runtime's: `wasm_close_stream` (proxy_close_stream), `wasm_fail_stream` (a VM failed after the
 *   response started), `response_payload_too_large`. Nothing more is sent to the terminal after it.
 *
 * The connection manager's own answers (no route, upstream failure, timeout) are responses like any
 * other: it feeds them in through ChainStream.responseHeaders/responseData so every filter sees them.
 * It calls ChainStream.finish() when the stream is over, whatever happened.
 */
export interface ChainTerminal extends HttpStreamSink {}

/**
 * One filter's stream as the chain drives it: wasm's HttpStream (a proxy-wasm VM) or a
 * ComponentStream (component-filter/component-plugin.ts).
 */
export interface FilterStream {
  /** The filter failed and the stream does not pass through it (a local reply skips it). */
  readonly vmFailed: boolean;
  readonly request: { readonly headers: HeaderList | undefined };
  readonly response: { readonly headers: HeaderList | undefined };
  requestHeaders(headers: HeaderList, endOfStream: boolean): void;
  requestData(data: Uint8Array, endOfStream: boolean): void;
  requestTrailers(trailers: HeaderList): void;
  responseHeaders(headers: HeaderList, endOfStream: boolean): void;
  responseData(data: Uint8Array, endOfStream: boolean): void;
  responseTrailers(trailers: HeaderList): void;
  finish(): void;
}

/**
 * A running filter version, as the chain, the plugin manager and the status reports see it: a
 * proxy-wasm Plugin or a ComponentPlugin.
 */
export interface FilterPlugin {
  readonly compiled: { readonly sha256: string; readonly metadata: ModuleMetadata };
  readonly settings: PluginSettings;
  readonly state: 'running' | 'failed' | 'stopped';
  readonly bad: boolean;
  readonly trapCount: number;
  readonly trapsByCause: ReadonlyMap<TrapCause, number>;
  readonly streamsFinished: number;
  readonly streamsFailed: number;
  readonly activeStreams: number;
  readonly lastFailure: string;
  /** A proxy-wasm plugin's pool of VMs (spec.vms), slot by slot; components have none. */
  readonly vms?: ReadonlyArray<{ readonly failed: boolean }>;
  createHttpStream(sink: HttpStreamSink, info?: StreamInfo): FilterStream;
  recordOutcome(failed: boolean): void;
  drained(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Two versions of one filter during a canary rollout: a stream goes to `canary` when the stable hash of
 * its x-request-id falls under the weight, so one request id meets the same version on every proxy.
 */
export class CanaryPair {
  /** The WasmPlugin, `namespace/name`. */
  readonly id: string;
  readonly stable: FilterPlugin;
  readonly canary: FilterPlugin;
  /** Share of streams for the canary, 0..100. */
  readonly weight: number;
  /** The weight on the 32-bit hash scale. */
  readonly threshold: number;

  constructor(id: string, stable: FilterPlugin, canary: FilterPlugin, weight: number) {
    this.id = id;
    this.stable = stable;
    this.canary = canary;
    this.weight = weight;
    this.threshold = Math.round((Math.min(100, Math.max(0, weight)) / 100) * 0x1_0000_0000);
  }

  pick(hash: number): FilterPlugin {
    return hash < this.threshold ? this.canary : this.stable;
  }
}

/** One position of the chain: a plugin, or two versions of it sharing the streams. */
export type FilterSlot = FilterPlugin | CanaryPair;

/** A chain of plugins in execution order, built once per config version and shared by every stream. */
export class FilterChain {
  readonly slots: readonly FilterSlot[];
  /** No filter: the caller must not create streams at all and wires the request straight to the router. */
  readonly isEmpty: boolean;
  /** Some slot has a canary: streams need their request id's hash. */
  readonly hasCanary: boolean;

  constructor(slots: readonly FilterSlot[]) {
    this.slots = Object.freeze([...slots]);
    this.isEmpty = this.slots.length === 0;
    this.hasCanary = this.slots.some((s) => s instanceof CanaryPair);
  }

  get length(): number {
    return this.slots.length;
  }

  /** The stable plugin of every slot (what runs for a stream outside every canary). */
  get plugins(): FilterPlugin[] {
    return this.slots.map((s) => (s instanceof CanaryPair ? s.stable : s));
  }

  /**
   * A stream through every filter of the chain; its output goes to `terminal`. Each filter's stream
   * context is created now (proxy_on_context_create). `requestId` (x-request-id) picks the version of
   * a canaried filter. Throws if a plugin is stopped (a chain kept past its config's lifetime); no
   * filter stream is left open then.
   */
  createStream(terminal: ChainTerminal, info: StreamInfo, requestId?: string): ChainStream {
    return new ChainStream(this.slots, terminal, info, this.hasCanary ? hashString(requestId ?? '') : 0);
  }
}

/** Where the response to the client stands (guards the terminal against a second response). */
const enum Client {
  None,
  Headers,
  Ended,
}

/**
 * One request/response through the chain. The connection manager feeds the request and the upstream
 * response in with the same methods as HttpStream, and calls finish() once the stream is over.
 */
export class ChainStream {
  readonly #terminal: ChainTerminal;
  /** First filter (request entry); undefined when the chain is empty. */
  readonly #head: ChainLink | undefined;
  /** Last filter (response entry). */
  readonly #tail: ChainLink | undefined;
  #local: LocalResponse | undefined;
  #resetReason: string | undefined;
  #client = Client.None;
  /** The status sent to the client (0: none yet). */
  #status = 0;
  #finished = false;

  constructor(slots: readonly FilterSlot[], terminal: ChainTerminal, info: StreamInfo | undefined, hash = 0) {
    this.#terminal = terminal;
    let head: ChainLink | undefined;
    let prev: ChainLink | undefined;
    try {
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[i];
        const plugin = slot instanceof CanaryPair ? slot.pick(hash) : slot;
        const link = new ChainLink(this, prev, plugin);
        link.stream = plugin.createHttpStream(link, info);
        if (prev === undefined) head = link;
        else prev.next = link;
        prev = link;
      }
    } catch (err) {
      // A stopped plugin: close what was opened, so no plugin waits forever to drain.
      for (let l = head; l !== undefined; l = l.next) l.stream.finish();
      throw err;
    }
    this.#head = head;
    this.#tail = prev;
  }

  /** The reply a filter (or the runtime) gave instead of the upstream, if any. */
  get localResponse(): LocalResponse | undefined {
    return this.#local;
  }

  /** Why the stream was reset by a filter, if it was. */
  get resetReason(): string | undefined {
    return this.#resetReason;
  }

  /** The filters' streams, in chain order (for tests and diagnostics; allocates an array). */
  get streams(): FilterStream[] {
    const out: FilterStream[] = [];
    for (let l = this.#head; l !== undefined; l = l.next) out.push(l.stream);
    return out;
  }

  // ---- input from the connection manager ------------------------------------------------------
  // The request is dropped once a filter answered or reset the stream; so is the upstream response
  // after a local reply (the reply replaced it).

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const head = this.#head;
    if (head !== undefined) head.stream.requestHeaders(headers, endOfStream);
    else this.#terminal.requestHeaders(headers, endOfStream);
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const head = this.#head;
    if (head !== undefined) head.stream.requestData(data, endOfStream);
    else this.#terminal.requestData(data, endOfStream);
  }

  requestTrailers(trailers: HeaderList): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const head = this.#head;
    if (head !== undefined) head.stream.requestTrailers(trailers);
    else this.#terminal.requestTrailers(trailers);
  }

  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const tail = this.#tail;
    if (tail !== undefined) tail.stream.responseHeaders(headers, endOfStream);
    else this.toClientHeaders(headers, endOfStream);
  }

  responseData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const tail = this.#tail;
    if (tail !== undefined) tail.stream.responseData(data, endOfStream);
    else this.toClientData(data, endOfStream);
  }

  responseTrailers(trailers: HeaderList): void {
    if (this.#local !== undefined || this.#resetReason !== undefined) return;
    const tail = this.#tail;
    if (tail !== undefined) tail.stream.responseTrailers(trailers);
    else this.toClientTrailers(trailers);
  }

  /**
   * The stream is over (completed, answered locally, reset, or the client went away): every filter's
   * stream gets on_log, on_done and on_delete, in chain order. Idempotent. Nothing reaches the
   * terminal afterwards.
   */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    // A stream the client left before any response is no one's failure; a 5xx or a reset is.
    const failed = this.#resetReason !== undefined || this.#status >= 500;
    for (let l = this.#head; l !== undefined; l = l.next) {
      l.stream.finish();
      l.plugin.recordOutcome(failed);
    }
  }

  /** The filters' plugins, in chain order (the version each canaried slot picked; allocates). */
  get plugins(): FilterPlugin[] {
    const out: FilterPlugin[] = [];
    for (let l = this.#head; l !== undefined; l = l.next) out.push(l.plugin);
    return out;
  }

  // ---- called by the links ----------------------------------------------------------------------

  /** @internal The last filter let request headers through. */
  toUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#local === undefined && this.#resetReason === undefined && !this.#finished) this.#terminal.requestHeaders(headers, endOfStream);
  }

  /** @internal */
  toUpstreamData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#local === undefined && this.#resetReason === undefined && !this.#finished) this.#terminal.requestData(data, endOfStream);
  }

  /** @internal */
  toUpstreamTrailers(trailers: HeaderList): void {
    if (this.#local === undefined && this.#resetReason === undefined && !this.#finished) this.#terminal.requestTrailers(trailers);
  }

  /** @internal The first filter let response headers through (or a local reply skipped every filter). */
  toClientHeaders(headers: HeaderList, endOfStream: boolean): void {
    if (this.#client !== Client.None || this.#resetReason !== undefined || this.#finished) return;
    this.#client = endOfStream ? Client.Ended : Client.Headers;
    this.#status = statusOf(headers);
    this.#terminal.responseHeaders(headers, endOfStream);
  }

  /** @internal */
  toClientData(data: Uint8Array, endOfStream: boolean): void {
    if (this.#client !== Client.Headers || this.#resetReason !== undefined || this.#finished) return;
    if (endOfStream) this.#client = Client.Ended;
    this.#terminal.responseData(data, endOfStream);
  }

  /** @internal */
  toClientTrailers(trailers: HeaderList): void {
    if (this.#client !== Client.Headers || this.#resetReason !== undefined || this.#finished) return;
    this.#client = Client.Ended;
    this.#terminal.responseTrailers(trailers);
  }

  /** @internal True while a local reply replaces the response: failed filters are then skipped. */
  get answered(): boolean {
    return this.#local !== undefined;
  }

  /**
   * @internal The filter at `from` answered (proxy_send_local_response, or the runtime's reply for a
   * failed VM or an oversized body). Filters after it never see the request (their streams drop it,
   * and so does the chain). The reply runs through the response path from that filter back to the
   * first, skipping a filter whose VM failed and one that already had response headers (it answered
   * on the response path; feeding it a second set would mix two responses).
   */
  filterAnswered(from: ChainLink, response: LocalResponse): void {
    if (this.#resetReason !== undefined || this.#finished) return;
    if (this.#client !== Client.None) {
      this.filterReset('local_reply_after_response_started');
      return;
    }
    this.#local = response;
    this.#terminal.localResponse(response);
    // The request as the first filter received it decides whether the client speaks gRPC.
    const grpc = isGrpcRequest(this.#head?.stream.request.headers);
    const headers = localResponseHeaders(response, grpc);
    const endOfStream = response.body.length === 0 || isTrailersOnly(response, grpc);
    let at: ChainLink | undefined = from;
    while (at !== undefined && (at.stream.vmFailed || at.stream.response.headers !== undefined)) at = at.prev;
    if (at !== undefined) {
      const stream = at.stream;
      stream.responseHeaders(headers, endOfStream);
      // A filter may have failed, reset or replaced the reply on its headers; the streams and the
      // client guard drop what no longer applies.
      if (!endOfStream && this.#local === response && this.#resetReason === undefined) stream.responseData(response.body, true);
    } else {
      this.toClientHeaders(headers, endOfStream);
      if (!endOfStream) this.toClientData(response.body, true);
    }
  }

  /** @internal A filter reset the stream: the terminal resets the downstream; everything else stops. */
  filterReset(reason: string): void {
    if (this.#resetReason !== undefined || this.#finished) return;
    this.#resetReason = reason;
    this.#terminal.reset(reason);
  }
}

/**
 * The sink of one filter's stream: what the filter lets through goes to the next filter (request) or
 * the previous one (response), or to the terminal at either end. Internal: exported only because
 * ChainStream's link-facing methods name it.
 */
export class ChainLink implements HttpStreamSink {
  readonly chain: ChainStream;
  readonly prev: ChainLink | undefined;
  readonly plugin: FilterPlugin;
  next: ChainLink | undefined = undefined;
  /** Set right after construction (the stream needs its sink first). */
  stream!: FilterStream;

  constructor(chain: ChainStream, prev: ChainLink | undefined, plugin: FilterPlugin) {
    this.chain = chain;
    this.prev = prev;
    this.plugin = plugin;
  }

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    const next = this.next;
    if (next !== undefined) next.stream.requestHeaders(headers, endOfStream);
    else this.chain.toUpstreamHeaders(headers, endOfStream);
  }

  requestData(data: Uint8Array, endOfStream: boolean): void {
    const next = this.next;
    if (next !== undefined) next.stream.requestData(data, endOfStream);
    else this.chain.toUpstreamData(data, endOfStream);
  }

  requestTrailers(trailers: HeaderList): void {
    const next = this.next;
    if (next !== undefined) next.stream.requestTrailers(trailers);
    else this.chain.toUpstreamTrailers(trailers);
  }

  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    const prev = this.#responseNext();
    if (prev !== undefined) prev.stream.responseHeaders(headers, endOfStream);
    else this.chain.toClientHeaders(headers, endOfStream);
  }

  responseData(data: Uint8Array, endOfStream: boolean): void {
    const prev = this.#responseNext();
    if (prev !== undefined) prev.stream.responseData(data, endOfStream);
    else this.chain.toClientData(data, endOfStream);
  }

  responseTrailers(trailers: HeaderList): void {
    const prev = this.#responseNext();
    if (prev !== undefined) prev.stream.responseTrailers(trailers);
    else this.chain.toClientTrailers(trailers);
  }

  localResponse(response: LocalResponse): void {
    this.chain.filterAnswered(this, response);
  }

  reset(reason: string): void {
    this.chain.filterReset(reason);
  }

  /** The filter the response goes to next: a local reply passes over filters whose VM failed. */
  #responseNext(): ChainLink | undefined {
    let prev = this.prev;
    if (this.chain.answered) while (prev !== undefined && prev.stream.vmFailed) prev = prev.prev;
    return prev;
  }
}

/** The numeric `:status` of response headers (first pair in practice), 0 when absent. */
function statusOf(headers: HeaderList): number {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === ':status') return Number(headers[i + 1]) | 0;
  return 0;
}
