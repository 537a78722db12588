// A proxy-wasm network filter (WasmPlugin type NETWORK) as a TcpFilter: one wasm NetworkStream per
// connection, driven by the TCP proxy's filter chain (tcp-filter.ts).
//
// The two models differ: the chain asks each filter for a verdict per chunk (continue with bytes,
// pause, close), the runtime's NetworkStream pushes what the filter lets through into a sink, during
// the call or later (proxy_continue_stream, a FAIL_OPEN flush after the VM failed elsewhere). The
// adapter keeps the bytes where the runtime keeps them (in the stream: the filter's DOWNSTREAM_DATA /
// UPSTREAM_DATA buffer grows there), so the chain never holds bytes at this filter:
//   - during a data call, what the sink got for that direction is the call's `continue` data (empty
//     when the filter paused), with the end of stream only when the filter let the end through;
//   - what the sink gets at any other time goes on through the chain's resume (with those bytes),
//     on a microtask: never back into the chain or a VM from inside a VM call; a later call in that
//     direction sends anything still queued first, so the order of bytes is kept;
//   - a close from the filter (proxy_close_stream, FAIL_CLOSE after a trap, a buffer bound) closes
//     the connection: as the call's `close`, or through the chain's close when it came outside one.
// Bytes the stream holds count as held by the chain (heldBytes), so the proxy stops reading a side
// whose filter holds too much, as for any other filter.
import type { NetworkStream, NetworkStreamSink, StreamInfo } from '../../../wasm/src/index.ts';
import { CLOSE, CONTINUE, type TcpConnectionInfo, type TcpFilter, type TcpFilterCallbacks, type TcpFilterFactory, type TcpFilterStatus } from './tcp-filter.ts';

/** What the adapter needs of a running plugin: the wasm runtime's Plugin (a component has no network callbacks). */
export interface NetworkFilterPlugin {
  readonly settings: { readonly name: string };
  createNetworkStream(sink: NetworkStreamSink, info?: StreamInfo): NetworkStream;
}

type Direction = 'downstream' | 'upstream';

const EMPTY = Buffer.alloc(0);
let nextConnectionId = 1;

/** Makes one WasmTcpFilter per connection for a plugin (the plugin of one config version). */
export class WasmTcpFilterFactory implements TcpFilterFactory {
  readonly name: string;
  readonly plugin: NetworkFilterPlugin;

  constructor(plugin: NetworkFilterPlugin) {
    this.plugin = plugin;
    this.name = plugin.settings.name;
  }

  create(): TcpFilter {
    return new WasmTcpFilter(this.plugin);
  }
}

/** `host:port`, with IPv6 addresses in brackets (Envoy's address form). */
function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The connection as proxy_get_property sees it; read when asked, so upstream fields appear once connected. */
export function tcpStreamInfo(info: TcpConnectionInfo, connectionId: number): StreamInfo {
  return {
    connectionId,
    get sourceAddress() {
      return hostPort(info.downstreamAddress, info.downstreamPort);
    },
    get destinationAddress() {
      return info.appAddress ?? hostPort(info.localAddress, info.localPort);
    },
    get mtls() {
      return info.peerPrincipal !== undefined;
    },
    get peerPrincipal() {
      return info.peerPrincipal;
    },
    get requestedServerName() {
      return info.serverName;
    },
    get upstreamAddress() {
      return info.upstreamAddress;
    },
    get upstreamLocalAddress() {
      return info.upstreamLocalAddress;
    },
  };
}

interface Queued {
  chunks: Buffer[];
  end: boolean;
  any: boolean;
}

export class WasmTcpFilter implements TcpFilter {
  readonly #plugin: NetworkFilterPlugin;
  #stream: NetworkStream | undefined;
  #callbacks: TcpFilterCallbacks | undefined;
  /** The direction whose data callback is running (its sink output is the call's result). */
  #inCall: Direction | undefined;
  #collected: Buffer[] = [];
  #collectedEnd = false;
  /** The filter closed the connection (the sink's close came). */
  #closeAsked = false;
  /** Sink output outside a call of its direction, waiting for the microtask that resumes the chain. */
  readonly #queued: Record<Direction, Queued> = { downstream: { chunks: [], end: false, any: false }, upstream: { chunks: [], end: false, any: false } };
  #scheduled = false;
  #done = false;

  constructor(plugin: NetworkFilterPlugin) {
    this.#plugin = plugin;
  }

  onNewConnection(callbacks: TcpFilterCallbacks): 'continue' | 'close' {
    this.#callbacks = callbacks;
    const sink: NetworkStreamSink = {
      toUpstream: (data, end) => this.#output('downstream', data, end),
      toDownstream: (data, end) => this.#output('upstream', data, end),
      close: () => {
        if (this.#closeAsked) return;
        this.#closeAsked = true;
        // Inside a call the call answers 'close'; otherwise close through the chain, after the VM call returned.
        if (this.#inCall === undefined) queueMicrotask(() => this.#callbacks?.close());
      },
    };
    this.#inCall = 'downstream';
    let action: string;
    try {
      this.#stream = this.#plugin.createNetworkStream(sink, tcpStreamInfo(callbacks.info, nextConnectionId++));
      // 'pause': the stream holds the client's bytes itself until the filter continues; the proxy connects meanwhile.
      action = this.#stream.onNewConnection();
    } finally {
      this.#inCall = undefined;
    }
    return action === 'close' || this.#closeAsked ? 'close' : 'continue';
  }

  onDownstreamData(data: Buffer, endOfStream: boolean): TcpFilterStatus {
    return this.#data('downstream', data, endOfStream);
  }

  onUpstreamData(data: Buffer, endOfStream: boolean): TcpFilterStatus {
    return this.#data('upstream', data, endOfStream);
  }

  onDownstreamClose(kind: 'local' | 'remote'): void {
    this.#stream?.onDownstreamClose(kind);
  }

  onUpstreamClose(kind: 'local' | 'remote'): void {
    this.#stream?.onUpstreamClose(kind);
  }

  onDone(): void {
    this.#done = true;
    this.#stream?.finish();
  }

  heldBytes(direction: Direction): number {
    const s = this.#stream;
    if (!s) return 0;
    return direction === 'downstream' ? s.heldDownstreamBytes : s.heldUpstreamBytes;
  }

  #data(direction: Direction, data: Buffer, endOfStream: boolean): TcpFilterStatus {
    const stream = this.#stream;
    if (!stream) return CONTINUE;
    if (this.#closeAsked) return CLOSE;
    // What the filter let through earlier goes before this chunk's output.
    if (this.#queued[direction].any) this.#release(direction);
    this.#inCall = direction;
    this.#collected = [];
    this.#collectedEnd = false;
    let action: string;
    try {
      action = direction === 'downstream' ? stream.onDownstreamData(data, endOfStream) : stream.onUpstreamData(data, endOfStream);
    } finally {
      this.#inCall = undefined;
    }
    if (action === 'close' || this.#closeAsked) return CLOSE;
    const out = this.#collected.length === 0 ? EMPTY : this.#collected.length === 1 ? this.#collected[0]! : Buffer.concat(this.#collected);
    this.#collected = [];
    // The end goes on only when the filter let it through (a paused filter sends it later, with its bytes).
    return { action: 'continue', data: out, endOfStream: this.#collectedEnd };
  }

  /** The sink: bytes the filter let through from `direction` (client bytes are 'downstream'). */
  #output(direction: Direction, data: Uint8Array, end: boolean): void {
    if (this.#done) return;
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length);
    if (this.#inCall === direction) {
      if (buf.length > 0) this.#collected.push(buf);
      if (end) this.#collectedEnd = true;
      return;
    }
    const q = this.#queued[direction];
    if (buf.length > 0) q.chunks.push(buf);
    if (end) q.end = true;
    q.any = true;
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#release('downstream');
      this.#release('upstream');
    });
  }

  /** Hands queued output of `direction` to the chain (on to the next filter, or the other socket). */
  #release(direction: Direction): void {
    const q = this.#queued[direction];
    if (!q.any || this.#done) return;
    const data = q.chunks.length === 1 ? q.chunks[0]! : Buffer.concat(q.chunks);
    const end = q.end;
    q.chunks = [];
    q.end = false;
    q.any = false;
    if (direction === 'downstream') this.#callbacks?.resumeDownstream(data, end);
    else this.#callbacks?.resumeUpstream(data, end);
  }
}
