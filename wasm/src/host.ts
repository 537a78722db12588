// The interfaces an embedder implements to run filters. The runtime knows nothing about sockets:
// everything that reaches outside the VM (callouts, connection attributes, logs) goes through here.
import type { LogLevel, WasmResult } from './abi/constants.ts';
import type { MetricsRegistry } from './metrics/registry.ts';
import type { SharedDataStore } from './shared-data.ts';
import type { SharedQueueRegistry } from './shared-queue.ts';

/** Header, trailer and metadata maps: a flat list [name0, value0, name1, value1, ...], names lowercase. */
export type HeaderList = string[];

export type FailStrategy = 'FAIL_CLOSE' | 'FAIL_OPEN' | 'FAIL_RELOAD';

/**
 * A value the host hands back for proxy_get_property; encoded as Envoy encodes CEL values. A string is
 * text (sent as UTF-8); Latin1Text is header bytes held one per char (sent as those bytes).
 */
export type PropertyValue = string | Latin1Text | Uint8Array | number | bigint | boolean | HeaderList | Map<string, string>;

/** Header-derived text: one byte per char, handed to the guest as those bytes without a Buffer in between. */
export class Latin1Text {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

export interface HttpCallRequest {
  /** The cluster the module named. */
  upstream: string;
  headers: HeaderList;
  body: Uint8Array;
  trailers: HeaderList;
  /** 0 means no timeout. */
  timeoutMs: number;
}

export interface HttpCallResponse {
  headers: HeaderList;
  body: Uint8Array;
  trailers: HeaderList;
}

export interface GrpcCallRequest {
  upstream: string;
  service: string;
  method: string;
  initialMetadata: HeaderList;
  message: Uint8Array;
  timeoutMs: number;
}

export interface GrpcCallResponse {
  initialMetadata: HeaderList;
  /** Absent when the call failed; status then says why. */
  message?: Uint8Array;
  trailingMetadata: HeaderList;
  status: number;
  statusMessage: string;
}

/**
 * A foreign function the host registers: gets the argument bytes (at most MAX_FOREIGN_ARGS_BYTES),
 * returns result bytes or a status. The runtime always passes `call` (optional only for direct calls
 * from TypeScript). A function whose work is heavy prices it with `call.chargeFuel`
 * before doing it, so it counts in the calling callback's CPU budget (past it, the VM traps with cause
 * cpu_budget). A thrown error answers InternalFailure; the guest never sees an exception.
 */
export type ForeignFunction = (args: Uint8Array, call?: ForeignCall) => Uint8Array | WasmResult;

/** What a foreign function may ask of the VM that called it. */
export interface ForeignCall {
  /** Charges fuel units to the calling callback's budget; throws (ending the call) past it. */
  chargeFuel(units: number): void;
}

/**
 * What the embedder provides to every VM of a plugin. Every member is optional; what is missing makes
 * the matching host call answer as a host without that capability would (Unimplemented, NotFound, ...).
 */
export interface PluginHost {
  /** Called for every module log line at or above the plugin's log level. Default: stderr. */
  log?(level: LogLevel, message: string, pluginName: string): void;
  /**
   * Start an HTTP callout. Return BadArgument synchronously for an unknown cluster. The promise
   * resolves with the response, or with null when the call failed (reset, timeout, overflow).
   */
  httpCall?(request: HttpCallRequest): Promise<HttpCallResponse | null> | WasmResult;
  /** Start a unary gRPC callout. Return ParseFailure synchronously for an unknown cluster. */
  grpcCall?(request: GrpcCallRequest): Promise<GrpcCallResponse> | WasmResult;
  /** Properties the runtime does not know itself (connection, upstream, node attributes). */
  getProperty?(path: readonly string[], stream: StreamInfo | undefined): PropertyValue | undefined;
  foreignFunctions?: ReadonlyMap<string, ForeignFunction>;
  /** Shared by every plugin of one proxy: module metrics and the runtime's own. */
  metrics?: MetricsRegistry;
  /**
   * What a filter may write (headers, trailers and local replies); past it the stream fails with a
   * local reply (details `wasm_output_too_large[<plugin>][<what>]`) and nothing oversized goes on.
   * The proxy passes the limits its listeners apply to clients.
   */
  outputLimits?: Partial<OutputLimits>;
  /**
   * Tests: the timer a module sets (proxy_set_tick_period_milliseconds) is not started, and on_tick
   * runs only when the embedder calls Vm.runTick (FilterHarness.tick steps it).
   */
  manualTicks?: boolean;
  /** Shared data and queues live as long as the host's stores; pass the same stores to keep them across VM swaps. */
  sharedData?: SharedDataStore;
  sharedQueues?: SharedQueueRegistry;
}

/** Facts about one stream's connection that the proxy knows and the module may ask for. */
export interface StreamInfo {
  /**
   * Filter state of the stream, shared by every filter it passes (Envoy keeps proxy_set_property
   * values as the stream's filter state): a value one filter sets, a later filter reads with
   * proxy_get_property. Created by the runtime on the first write; keys are NUL-joined paths.
   */
  filterState?: Map<string, Uint8Array>;
  /** "ip:port" of the downstream peer. */
  sourceAddress?: string;
  /** "ip:port" of the local listener. */
  destinationAddress?: string;
  /** HTTP/1.0, HTTP/1.1, HTTP/2 */
  protocol?: string;
  connectionId?: number;
  mtls?: boolean;
  /** Peer certificate URI SAN, e.g. spiffe://cluster.local/ns/default/sa/reviews */
  peerPrincipal?: string;
  localPrincipal?: string;
  /** TLS SNI the client asked for (connection.requested_server_name). */
  requestedServerName?: string;
  /**
   * "ip:port" of the upstream host and of the proxy's end of that connection (upstream.address,
   * upstream.port, upstream.local_address). A TCP proxy sets these once it has connected; until then
   * the properties are absent (NotFound), as in Envoy before the upstream is chosen.
   */
  upstreamAddress?: string;
  upstreamLocalAddress?: string;
  /** Any other attribute, by path (e.g. ["upstream", "address"]). */
  getProperty?(path: readonly string[]): PropertyValue | undefined;
}

/** A response generated by a filter (proxy_send_local_response) or by the runtime (fail-closed, limits). */
export interface LocalResponse {
  status: number;
  /** Response code details, whitespace replaced by '_' (Envoy). */
  details: string;
  body: Uint8Array;
  headers: HeaderList;
  /** -1 when none. */
  grpcStatus: number;
}

/**
 * Where an HTTP stream's output goes: the next filter, the router, or a test harness. The stream calls
 * these when it lets data through, possibly later than the input arrived (after a pause).
 */
export interface HttpStreamSink {
  requestHeaders(headers: HeaderList, endOfStream: boolean): void;
  requestData(data: Uint8Array, endOfStream: boolean): void;
  requestTrailers(trailers: HeaderList): void;
  responseHeaders(headers: HeaderList, endOfStream: boolean): void;
  responseData(data: Uint8Array, endOfStream: boolean): void;
  responseTrailers(trailers: HeaderList): void;
  /** The filter answered the stream itself; nothing more of the request goes upstream. */
  localResponse(response: LocalResponse): void;
  /** The filter reset the stream (proxy_close_stream). */
  reset(reason: string): void;
}

/** Which end of a proxied TCP connection: the client (downstream) or the upstream host. */
export type ConnectionSide = 'downstream' | 'upstream';

/** Who closed a connection side (the ABI's PeerType): the proxy itself, the peer, or not known. */
export type ConnectionPeer = 'local' | 'remote' | 'unknown';

/**
 * What a network filter asks of the proxy, for one TCP connection (NetworkStream): the bytes it lets
 * through, in order, and closing. Calls may come during a NetworkStream method (the filter continued at
 * once) or later (the filter resumed a paused direction from a callout answer or another callback).
 */
export interface NetworkStreamSink {
  /** Client bytes the filter let through: write them to the upstream connection; endOfStream: then half-close it (FIN). */
  toUpstream(data: Uint8Array, endOfStream: boolean): void;
  /** Upstream bytes the filter let through: write them to the client; endOfStream: then half-close the client side. */
  toDownstream(data: Uint8Array, endOfStream: boolean): void;
  /**
   * Close the connection, once per stream: the filter called proxy_close_stream (`reason`
   * "wasm_close_stream", `side` the stream type it named), the VM failed under FAIL_CLOSE
   * ("wasm_fail_stream"), the filter held or wrote more than the bound ("downstream_buffer_overflow",
   * "upstream_buffer_overflow", "wasm_output_too_large[<plugin>][<what>]"). As Envoy does for either
   * side (a flush-write close of the connection), the proxy writes what it already queued for the
   * client, then closes both sockets; bytes the filter held are dropped.
   */
  close(side: ConnectionSide, reason: string): void;
}

export interface OutputLimits {
  /** Request header (and trailer) block: names + values + 4 bytes per header. */
  requestHeaderBytes: number;
  /** The same for responses, local replies included. */
  responseHeaderBytes: number;
  /** Headers in one map. */
  headerCount: number;
}
