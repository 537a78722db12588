// The per-connection filter chain of the TCP proxy: the seam where L4 filters (proxy-wasm network
// filters: proxy_on_new_connection, proxy_on_downstream_data, proxy_on_upstream_data, the close
// callbacks) plug in. The proxy (tcp-proxy.ts) calls a TcpFilterChain at four points; with no
// filters the chain passes every byte through unchanged.
//
// Order (Envoy's network filters): downstream data (client -> upstream) goes through the filters
// first to last, upstream data (upstream -> client) last to first.
//
// A filter that pauses keeps the bytes it was given: they stay buffered at its place in the chain,
// and the next chunk in that direction is appended and the filter called again with everything
// held so far (proxy-wasm's data_size grows), until it continues (passing the buffer on, or bytes
// it returns instead) or closes. A filter may also let held bytes go later without new data, through
// its TcpFilterCallbacks.resume* (proxy_continue_stream). While bytes are held, the proxy stops
// reading that side once the held amount passes MAX_HELD_BYTES (backpressure, not unbounded buffering).

/** What a data callback makes the chain do. */
export type TcpFilterStatus =
  /**
   * Pass the bytes held so far on to the next filter; `data` (if given) replaces them. `endOfStream`
   * (if given) says whether the end goes on with them: false keeps a half-close back (a filter that
   * holds bytes itself lets the end go later, through resume*).
   */
  | { readonly action: 'continue'; readonly data?: Buffer; readonly endOfStream?: boolean }
  /** Hold the bytes: they are given again, with the next chunk, on the next call. */
  | { readonly action: 'pause' }
  /** Close both sides of the connection now (proxy_close_stream). */
  | { readonly action: 'close' };

export const CONTINUE: TcpFilterStatus = Object.freeze({ action: 'continue' });
export const PAUSE: TcpFilterStatus = Object.freeze({ action: 'pause' });
export const CLOSE: TcpFilterStatus = Object.freeze({ action: 'close' });

/** What a filter may know about its connection (read when it is called; fields fill in as the connection progresses). */
export interface TcpConnectionInfo {
  readonly direction: 'inbound' | 'outbound';
  readonly downstreamAddress: string;
  readonly downstreamPort: number;
  /** The listener's address and port the client connected to. */
  readonly localAddress: string;
  readonly localPort: number;
  /** The SNI of the client's ClientHello, when its first bytes were one (outbound TLS routing). */
  readonly serverName: string | undefined;
  /** Route and cluster, once routed (outbound); the inbound cluster on the inbound side. */
  readonly route: string | undefined;
  readonly cluster: string | undefined;
  /** "ip:port" of the upstream, once picked. */
  readonly upstreamAddress: string | undefined;
  /** "ip:port" of the proxy's end of the upstream connection, once connected. */
  readonly upstreamLocalAddress?: string | undefined;
  /** The peer's SPIFFE id when the connection came in over mTLS (inbound). */
  readonly peerPrincipal: string | undefined;
  /**
   * Inbound: the app's "host:port", the destination the connection stands for. Filters see it as
   * destination.address / destination.port, as on the HTTP inbound side (so an AuthorizationPolicy's
   * `ports` name the app's port, as in Istio, not the sidecar's listener).
   */
  readonly appAddress?: string | undefined;
}

/** Given to a filter when its connection starts. */
export interface TcpFilterCallbacks {
  readonly info: TcpConnectionInfo;
  /**
   * Let the downstream bytes this filter holds go on (proxy_continue_stream(Downstream)); no-op when
   * it holds none and `data` is absent. `data` (a filter that keeps its own buffer, as a proxy-wasm
   * network filter does) replaces the held bytes: what the filter let through, possibly rewritten.
   */
  resumeDownstream(data?: Buffer, endOfStream?: boolean): void;
  /** The same for upstream bytes. */
  resumeUpstream(data?: Buffer, endOfStream?: boolean): void;
  /** Close both sides of the connection (proxy_close_stream). */
  close(): void;
}

/**
 * One filter instance, for one connection (created by a TcpFilterFactory per connection). Every
 * method is optional; an absent one continues. Called on the proxy's event loop, never concurrently;
 * a method that throws closes the connection (as a trapped filter fails closed).
 */
export interface TcpFilter {
  /**
   * A downstream connection was accepted, before it is routed or any upstream is connected
   * (proxy_on_new_connection). 'close' ends it at once (nothing is sent upstream).
   */
  onNewConnection?(callbacks: TcpFilterCallbacks): 'continue' | 'close';
  /**
   * Bytes from the client (proxy_on_downstream_data): `data` is everything this filter holds, the new
   * chunk included; `endOfStream` when the client half-closed (then `data` may be empty).
   */
  onDownstreamData?(data: Buffer, endOfStream: boolean): TcpFilterStatus;
  /** Bytes from the upstream (proxy_on_upstream_data), the same way. */
  onUpstreamData?(data: Buffer, endOfStream: boolean): TcpFilterStatus;
  /** The client's side closed ('remote': by the client; 'local': by the proxy) (proxy_on_downstream_connection_close). */
  onDownstreamClose?(kind: 'local' | 'remote'): void;
  /** The upstream side closed, the same way (proxy_on_upstream_connection_close); not called when no upstream was connected. */
  onUpstreamClose?(kind: 'local' | 'remote'): void;
  /** The connection is over; release anything held (proxy_on_done / proxy_on_delete). */
  onDone?(): void;
  /**
   * Bytes of `direction` the filter keeps itself (not held by the chain), counted with the chain's for
   * backpressure (MAX_HELD_BYTES).
   */
  heldBytes?(direction: 'downstream' | 'upstream'): number;
}

/** Makes the filters of one connection; built once per config (the immutable part), called per connection. */
export interface TcpFilterFactory {
  readonly name: string;
  create(): TcpFilter;
}

/** Bytes one filter may hold in one direction before the proxy stops reading that side. */
export const MAX_HELD_BYTES = 1024 * 1024;

interface Stage {
  held: Buffer[];
  heldBytes: number;
  end: boolean;
  paused: boolean;
}

/** What the chain asks of the connection carrying it. */
export interface TcpChainSink {
  /** Bytes (possibly empty) that passed every filter in that direction; `end`: half-close after them. */
  emit(direction: 'downstream' | 'upstream', data: Buffer, end: boolean): void;
  /** A filter asked to close (or threw). */
  close(reason: string): void;
}

/**
 * The filters of one connection. `downstream` data flows filters[0] -> filters[n-1] -> upstream
 * socket; `upstream` data flows filters[n-1] -> filters[0] -> client socket.
 */
export class TcpFilterChain {
  readonly #filters: readonly TcpFilter[];
  readonly #sink: TcpChainSink;
  readonly #stages: Record<'downstream' | 'upstream', Stage[]>;
  #closed = false;

  constructor(factories: readonly TcpFilterFactory[], sink: TcpChainSink) {
    this.#filters = factories.map((f) => f.create());
    this.#sink = sink;
    const stages = (): Stage[] => this.#filters.map(() => ({ held: [], heldBytes: 0, end: false, paused: false }));
    this.#stages = { downstream: stages(), upstream: stages() };
  }

  get empty(): boolean {
    return this.#filters.length === 0;
  }

  /** Bytes held by filters in a direction (the connection stops reading that side past MAX_HELD_BYTES). */
  held(direction: 'downstream' | 'upstream'): number {
    let n = 0;
    for (const s of this.#stages[direction]) n += s.heldBytes;
    for (const f of this.#filters) if (f.heldBytes) n += f.heldBytes(direction);
    return n;
  }

  /** proxy_on_new_connection on every filter, in order; false when one closed the connection. */
  newConnection(info: TcpConnectionInfo): boolean {
    for (let i = 0; i < this.#filters.length; i++) {
      const f = this.#filters[i]!;
      if (!f.onNewConnection) continue;
      const callbacks: TcpFilterCallbacks = {
        info,
        resumeDownstream: (data, end) => this.#resume('downstream', i, data, end),
        resumeUpstream: (data, end) => this.#resume('upstream', i, data, end),
        close: () => this.#close(`filter ${i} closed the connection`),
      };
      let verdict: 'continue' | 'close';
      try {
        verdict = f.onNewConnection(callbacks);
      } catch (err) {
        this.#close(`filter ${i} failed on a new connection: ${(err as Error).message}`);
        return false;
      }
      if (verdict === 'close') {
        this.#close(`filter ${i} refused the connection`);
        return false;
      }
    }
    return !this.#closed;
  }

  /** A chunk from one side (`end`: that side half-closed). */
  data(direction: 'downstream' | 'upstream', chunk: Buffer, end: boolean): void {
    if (this.#closed) return;
    if (this.#filters.length === 0) {
      this.#sink.emit(direction, chunk, end);
      return;
    }
    this.#run(direction, 0, chunk, end);
  }

  /** A side closed: tells every filter. */
  closed(side: 'downstream' | 'upstream', kind: 'local' | 'remote'): void {
    for (const f of this.#filters) {
      try {
        if (side === 'downstream') f.onDownstreamClose?.(kind);
        else f.onUpstreamClose?.(kind);
      } catch {
        // the connection is closing anyway
      }
    }
  }

  /** The connection is over. */
  done(): void {
    this.#closed = true;
    for (const f of this.#filters) {
      try {
        f.onDone?.();
      } catch {
        // nothing left to protect
      }
    }
  }

  /** Filter order for a direction: position `step` -> index into #filters. */
  #index(direction: 'downstream' | 'upstream', step: number): number {
    return direction === 'downstream' ? step : this.#filters.length - 1 - step;
  }

  #run(direction: 'downstream' | 'upstream', from: number, chunk: Buffer, end: boolean): void {
    const stages = this.#stages[direction];
    let data = chunk;
    let eos = end;
    for (let step = from; step < this.#filters.length; step++) {
      if (this.#closed) return;
      const i = this.#index(direction, step);
      const stage = stages[i]!;
      const filter = this.#filters[i]!;
      if (data.length > 0) {
        stage.held.push(data);
        stage.heldBytes += data.length;
      }
      stage.end ||= eos;
      const all = stage.held.length === 1 ? stage.held[0]! : Buffer.concat(stage.held, stage.heldBytes);
      const callback = direction === 'downstream' ? filter.onDownstreamData : filter.onUpstreamData;
      let status: TcpFilterStatus = CONTINUE;
      if (callback) {
        try {
          status = callback.call(filter, all, stage.end);
        } catch (err) {
          this.#close(`filter ${i} failed on ${direction} data: ${(err as Error).message}`);
          return;
        }
      }
      if (status.action === 'close') {
        this.#close(`filter ${i} closed the connection`);
        return;
      }
      if (status.action === 'pause') {
        stage.held = all.length > 0 ? [all] : [];
        stage.paused = true;
        return;
      }
      data = status.data ?? all;
      eos = status.endOfStream ?? stage.end;
      stage.held = [];
      stage.heldBytes = 0;
      stage.paused = false;
    }
    if (!this.#closed) this.#sink.emit(direction, data, eos);
  }

  /** Lets what filter `index` holds (or `data` in its place) go on to the next one, without calling it again. */
  #resume(direction: 'downstream' | 'upstream', index: number, data?: Buffer, endOfStream?: boolean): void {
    if (this.#closed) return;
    const stage = this.#stages[direction][index]!;
    if (!stage.paused && data === undefined) return;
    const all = data ?? Buffer.concat(stage.held, stage.heldBytes);
    const end = endOfStream ?? stage.end;
    stage.held = [];
    stage.heldBytes = 0;
    stage.paused = false;
    const step = direction === 'downstream' ? index : this.#filters.length - 1 - index;
    if (step + 1 >= this.#filters.length) this.#sink.emit(direction, all, end);
    else this.#run(direction, step + 1, all, end);
  }

  #close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sink.close(reason);
  }
}
