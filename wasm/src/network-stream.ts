// One TCP connection through one network filter: the L4 context of the ABI (proxy_on_new_connection,
// proxy_on_downstream_data, proxy_on_upstream_data, the two close callbacks). Bytes arrive from the
// embedder (a TCP proxy); what the filter lets through goes to the sink, at once or after a pause.
// The runtime still knows nothing about sockets: the proxy reads, writes and closes them.
import { BufferType, PeerType, StreamType, WasmResult } from './abi/constants.ts';
import { Context, type BufferSlot, type OutputKind, type RootContext } from './context.ts';
import type { ConnectionPeer, ConnectionSide, HeaderList, NetworkStreamSink, StreamInfo } from './host.ts';
import type { GuestExports, Vm } from './vm.ts';

/** Where one direction (client to upstream, or upstream to client) stands. */
const enum Phase {
  /** Bytes go through the data callback and on to the sink when it returns Continue. */
  Open,
  /** The data callback returned StopIteration: bytes accumulate (readable, writable) until continue. */
  Paused,
  /** on_new_connection returned StopIteration: client bytes are held without callbacks until continue. */
  Held,
  /** End of stream went on (or the connection closed): nothing more goes out this way. */
  Done,
}

/**
 * What a NetworkStream call did with the connection: `continue` (whatever the filter let through has
 * gone to the sink, possibly nothing), `pause` (the filter holds the bytes; they go to the sink when it
 * resumes) or `close` (the connection is being closed: the sink's close was called).
 */
export type ConnectionAction = 'continue' | 'pause' | 'close';

const EMPTY = Buffer.alloc(0);
const PEER: Record<ConnectionPeer, number> = { unknown: PeerType.Unknown, local: PeerType.Local, remote: PeerType.Remote };

/** The state of one direction; also the DOWNSTREAM_DATA / UPSTREAM_DATA buffer while it is readable. */
class Direction implements BufferSlot {
  readonly downstream: boolean;
  phase = Phase.Open;
  /** Bytes handed to the filter and not yet let through. */
  data: Buffer = EMPTY;
  /** The input ended (the peer half-closed). */
  ended = false;
  /** Inside this direction's callback, or paused: the buffer is readable and writable. */
  readable = false;
  /** Inside this direction's callback (or on_new_connection, for the client side). */
  inCall = false;
  /** proxy_continue_stream for this direction came during its own callback: the callback's pause is void. */
  continueAsked = false;
  /** The bytes as they were when the current callback began: a trap discards that callback's changes. */
  beforeCall: Buffer = EMPTY;
  /** Bytes received in total. */
  totalBytes = 0;
  /** BufferSlot: the most bytes the filter may make the buffer hold. */
  readonly maxBytes: number;

  constructor(downstream: boolean, maxBytes: number) {
    this.downstream = downstream;
    this.maxBytes = maxBytes;
  }

  bytes(): Uint8Array {
    return this.data;
  }

  replace(data: Uint8Array): void {
    this.data = toBuffer(data);
  }

  /** The VM failed during this direction's callback: what that callback did to the buffer is undone. */
  discardCall(): void {
    if (!this.inCall) return;
    this.data = this.beforeCall;
    this.beforeCall = EMPTY;
    this.inCall = false;
  }

  /** The filter holds bytes of this direction (the VM failing elsewhere must release or close them). */
  get held(): boolean {
    return this.phase === Phase.Paused || this.phase === Phase.Held;
  }
}

/**
 * A proxied TCP connection's filter context. Made by Plugin.createNetworkStream; the embedder calls, in
 * order: onNewConnection() once, then onDownstreamData / onUpstreamData for every chunk read (with
 * endOfStream on a half-close), onDownstreamClose / onUpstreamClose when a socket closes, and finish()
 * once the connection is gone. The methods never throw for anything the module does.
 */
export class NetworkStream extends Context {
  readonly vm: Vm;
  readonly sink: NetworkStreamSink;
  readonly info: StreamInfo | undefined;
  readonly downstream: Direction;
  readonly upstream: Direction;
  /** The connection is closed or closing (by the filter, a failure or a bound): nothing more goes out. */
  closed = false;
  /** The VM failed and the plugin fails open: bytes pass through untouched, no callbacks. */
  bypass = false;
  finished = false;
  #started = false;
  #downstreamCloseSeen = false;
  #upstreamCloseSeen = false;
  #onFinish: ((stream: NetworkStream) => void) | undefined;
  #guest: GuestExports;
  #maxBuffered: number;
  /** What the filter wrote past the bound (the connection fails after the callback), and whether that was done. */
  #outputOverflow: OutputKind | undefined;
  #outputFailed = false;
  /** The sink was told to close (it hears that once). */
  #sinkClosed = false;

  constructor(vm: Vm, sink: NetworkStreamSink, info: StreamInfo | undefined, onFinish?: (stream: NetworkStream) => void) {
    super(vm.newContextId());
    this.vm = vm;
    this.sink = sink;
    this.info = info;
    this.#guest = vm.guest;
    this.#maxBuffered = vm.settings.maxBufferedBodyBytes;
    this.downstream = new Direction(true, this.#maxBuffered);
    this.upstream = new Direction(false, this.#maxBuffered);
    this.#onFinish = onFinish;
    vm.contexts.set(this.id, this);
    // A failure here (or a VM already failed) is answered by onNewConnection, so the sink hears
    // nothing before the embedder asked.
    const create = this.#guest.onContextCreate;
    if (create && !vm.failed) vm.call(create, this, this.id, vm.root.id);
  }

  get root(): RootContext {
    return this.vm.root;
  }

  override get streamInfo(): StreamInfo | undefined {
    return this.info;
  }

  /** Client bytes the filter holds (paused): a proxy may stop reading the client above a watermark. */
  get heldDownstreamBytes(): number {
    return this.downstream.data.length;
  }

  /** Upstream bytes the filter holds. */
  get heldUpstreamBytes(): number {
    return this.upstream.data.length;
  }

  // ---- input from the embedder -------------------------------------------------------------

  /**
   * The client connected: proxy_on_new_connection. `continue`: connect upstream and pass bytes on;
   * `pause`: the filter holds the client's bytes (no data callback) until it continues, so the proxy
   * may connect upstream at once or wait, nothing goes upstream before; `close`: the sink's close came.
   */
  onNewConnection(): ConnectionAction {
    if (this.#started) return this.#action(this.downstream);
    this.#started = true;
    if (this.closed) return 'close';
    if (this.vm.failed) {
      this.#afterCall();
      return this.#action(this.downstream);
    }
    const fn = this.#guest.onNewConnection;
    if (!fn) return 'continue';
    const dir = this.downstream;
    dir.inCall = true;
    dir.continueAsked = false;
    const result = this.vm.call(fn, this, this.id);
    dir.inCall = false;
    if (this.#afterCall()) return this.#action(dir);
    this.vm.servedStream = true;
    if (this.closed) return 'close';
    if (result !== 0 && !dir.continueAsked && dir.phase === Phase.Open) dir.phase = Phase.Held;
    return this.#action(dir);
  }

  /** Bytes read from the client (endOfStream: the client half-closed; data may then be empty). */
  onDownstreamData(data: Uint8Array, endOfStream: boolean): ConnectionAction {
    if (!this.#started) this.onNewConnection();
    return this.#data(this.downstream, data, endOfStream);
  }

  /** Bytes read from the upstream (endOfStream: the upstream half-closed). */
  onUpstreamData(data: Uint8Array, endOfStream: boolean): ConnectionAction {
    if (!this.#started) this.onNewConnection();
    return this.#data(this.upstream, data, endOfStream);
  }

  /**
   * The client connection closed: proxy_on_downstream_connection_close with PeerType `peer` (`remote`:
   * the client closed it, `local`: the proxy did). Once; later calls are ignored.
   */
  onDownstreamClose(peer: ConnectionPeer = 'remote'): void {
    if (this.#downstreamCloseSeen) return;
    this.#downstreamCloseSeen = true;
    this.#closeCallback(this.#guest.onDownstreamConnectionClose, peer);
  }

  /** The upstream connection closed (or could not be made): proxy_on_upstream_connection_close. Once. */
  onUpstreamClose(peer: ConnectionPeer = 'remote'): void {
    if (this.#upstreamCloseSeen) return;
    this.#upstreamCloseSeen = true;
    this.#closeCallback(this.#guest.onUpstreamConnectionClose, peer);
  }

  /** The connection is gone: on_done, on_log, on_delete (Envoy's order for TCP), once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.closed = true;
    this.#drop();
    const vm = this.vm;
    if (!this.deleted && !vm.failed && !this.bypass) {
      if (this.#guest.onDone) vm.call(this.#guest.onDone, this, this.id);
      if (this.#guest.onLog && !vm.failed) vm.call(this.#guest.onLog, this, this.id);
      vm.deleteContext(this);
    }
    vm.contexts.delete(this.id);
    this.#onFinish?.(this);
  }

  // ---- the ABI's view of this context --------------------------------------------------------

  override getMap(type: number): HeaderList | undefined {
    // A connection has no HTTP maps; callout answers are the root's.
    return this.vm.root.getMap(type);
  }

  override getBuffer(type: number): BufferSlot | undefined {
    if (type === BufferType.DownstreamData) return this.downstream.readable ? this.downstream : undefined;
    if (type === BufferType.UpstreamData) return this.upstream.readable ? this.upstream : undefined;
    return this.vm.root.getBuffer(type);
  }

  override get resumesUpstream(): boolean {
    return true;
  }

  override continueStream(type: number): number {
    const dir = type === StreamType.Downstream ? this.downstream : type === StreamType.Upstream ? this.upstream : undefined;
    // HTTP stream types name nothing on a connection: a no-op, as in Envoy.
    if (!dir) return WasmResult.Ok;
    if (dir.inCall) {
      // Within the direction's own callback: its StopIteration no longer holds.
      dir.continueAsked = true;
      return WasmResult.Ok;
    }
    // Resume after the guest call returns, as Envoy does: never call back into the guest from a host call.
    this.vm.defer(() => this.#resume(dir));
    return WasmResult.Ok;
  }

  override closeStream(type: number): number {
    if (type !== StreamType.Downstream && type !== StreamType.Upstream) return WasmResult.Ok;
    if (this.closed) return WasmResult.Ok;
    const side: ConnectionSide = type === StreamType.Downstream ? 'downstream' : 'upstream';
    this.closed = true;
    this.vm.defer(() => this.#close(side, 'wasm_close_stream'));
    return WasmResult.Ok;
  }

  override outputTooLarge(what: OutputKind): number {
    this.#outputOverflow ??= what;
    // The connection fails once the guest call returns (also when the write came from a root callback
    // with this connection as the effective context), before a continue queued after it.
    this.vm.defer(() => this.#failOutput());
    return WasmResult.BadArgument;
  }

  /** The VM failed elsewhere (a root callback, another connection): bytes this filter holds would wait forever. */
  override onVmFailed(): void {
    // Runs before the failing call has unwound into #run: undo that callback's changes first.
    this.downstream.discardCall();
    this.upstream.discardCall();
    if (this.finished || (!this.downstream.held && !this.upstream.held)) return;
    this.#afterCall();
  }

  // ---- flow ----------------------------------------------------------------------------------

  #data(dir: Direction, data: Uint8Array, endOfStream: boolean): ConnectionAction {
    if (this.closed) return 'close';
    if (dir.phase === Phase.Done) return 'continue';
    dir.totalBytes += data.length;
    if (endOfStream) dir.ended = true;
    if (this.bypass) {
      this.#emit(dir, data, endOfStream);
      return 'continue';
    }
    dir.data = dir.data.length === 0 ? toBuffer(data) : Buffer.concat([dir.data, data]);
    // On a failed VM the failStrategy decides (FAIL_OPEN forwards these bytes with anything held).
    if (this.vm.failed) {
      this.#afterCall();
      return this.#action(dir);
    }
    // Only bytes held for the filter count against the bound: a chunk on its way through (Open) does not.
    if (dir.phase !== Phase.Open && dir.data.length > this.#maxBuffered) {
      this.#close('downstream', dir.downstream ? 'downstream_buffer_overflow' : 'upstream_buffer_overflow');
      return 'close';
    }
    if (dir.phase === Phase.Held) return 'pause';
    return this.#run(dir);
  }

  /** Calls the direction's data callback with everything it holds; forwards on Continue. */
  #run(dir: Direction): ConnectionAction {
    const fn = dir.downstream ? this.#guest.onDownstreamData : this.#guest.onUpstreamData;
    if (!fn) {
      this.#flush(dir);
      return 'continue';
    }
    dir.readable = true;
    dir.inCall = true;
    dir.continueAsked = false;
    dir.beforeCall = dir.data;
    const result = this.vm.call(fn, this, this.id, dir.data.length, dir.ended ? 1 : 0);
    if (this.vm.failed) dir.discardCall();
    dir.inCall = false;
    dir.beforeCall = EMPTY;
    if (this.#afterCall()) return this.#action(dir);
    this.vm.servedStream = true;
    if (this.closed) return 'close';
    if (result === 0 || dir.continueAsked) {
      this.#flush(dir);
      return this.closed ? 'close' : 'continue';
    }
    dir.phase = Phase.Paused;
    if (dir.data.length > this.#maxBuffered) {
      this.#close('downstream', dir.downstream ? 'downstream_buffer_overflow' : 'upstream_buffer_overflow');
      return 'close';
    }
    return 'pause';
  }

  /** proxy_continue_stream, run after the guest call returned. */
  #resume(dir: Direction): void {
    if (this.closed || this.bypass || this.vm.failed || this.finished) return;
    if (dir.phase === Phase.Paused) {
      this.#flush(dir);
    } else if (dir.phase === Phase.Held) {
      dir.phase = Phase.Open;
      // What arrived while the connection was held reaches the filter now, as one buffer.
      if (dir.data.length > 0 || dir.ended) this.#run(dir);
    }
  }

  /** Lets everything the direction holds through (with the end of stream if the input ended). */
  #flush(dir: Direction): void {
    const data = dir.data;
    dir.data = EMPTY;
    dir.readable = false;
    const endOfStream = dir.ended;
    dir.phase = endOfStream ? Phase.Done : Phase.Open;
    if (data.length > 0 || endOfStream) this.#emit(dir, data, endOfStream);
  }

  #emit(dir: Direction, data: Uint8Array, endOfStream: boolean): void {
    if (endOfStream) dir.phase = Phase.Done;
    if (dir.downstream) this.sink.toUpstream(data, endOfStream);
    else this.sink.toDownstream(data, endOfStream);
  }

  #action(dir: Direction): ConnectionAction {
    if (this.closed) return 'close';
    return dir.held ? 'pause' : 'continue';
  }

  #closeCallback(fn: GuestExports['onDownstreamConnectionClose'], peer: ConnectionPeer): void {
    if (!fn || this.finished || this.deleted || this.vm.failed || this.bypass || !this.#started) return;
    this.vm.call(fn, this, this.id, PEER[peer]);
    this.#afterCall();
  }

  #drop(): void {
    for (const dir of [this.downstream, this.upstream]) {
      dir.phase = Phase.Done;
      dir.data = EMPTY;
      dir.readable = false;
    }
  }

  /** Closes the connection once: the sink hears it, held bytes are dropped. */
  #close(side: ConnectionSide, reason: string): void {
    if (this.finished) return;
    const first = !this.#sinkClosed;
    this.closed = true;
    this.#sinkClosed = true;
    this.#drop();
    if (first) this.sink.close(side, reason);
  }

  /**
   * After each call into the guest: true when the connection must not go on as the filter said (the
   * VM failed, or the filter wrote past the bound). FAIL_OPEN lets everything held through and passes
   * the rest untouched; FAIL_CLOSE and FAIL_RELOAD close the connection.
   */
  #afterCall(): boolean {
    if (this.#outputOverflow !== undefined && !this.#outputFailed) {
      this.#failOutput();
      return true;
    }
    if (!this.vm.failed) return false;
    if (this.bypass || this.#sinkClosed) return true;
    if (this.vm.settings.failStrategy === 'FAIL_OPEN') {
      this.bypass = true;
      this.closed = false;
      for (const dir of [this.downstream, this.upstream]) {
        dir.inCall = false;
        if (dir.phase !== Phase.Done && (dir.data.length > 0 || dir.ended)) this.#flush(dir);
        else if (dir.phase !== Phase.Done) {
          dir.phase = Phase.Open;
          dir.readable = false;
        }
      }
      return true;
    }
    this.#close('downstream', 'wasm_fail_stream');
    return true;
  }

  /**
   * The filter made a buffer larger than the bound: nothing of it goes on, the connection closes with
   * a reason naming the plugin and the buffer. Counted in wasmesh_wasm_output_limit_total{plugin, what}.
   */
  #failOutput(): void {
    const what = this.#outputOverflow;
    if (what === undefined || this.#outputFailed || this.finished) return;
    this.#outputFailed = true;
    const plugin = this.vm.settings.name;
    this.vm.settings.host.metrics
      .counter('wasmesh_wasm_output_limit_total', 'Streams failed because a filter wrote headers, trailers, a body or a local reply past the limits', { plugin, what })
      .increment(1);
    this.#close('downstream', `wasm_output_too_large[${plugin}][${what}]`);
  }
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
}
