// HTTP/1.1 to one endpoint through an undici Pool (keep-alive connections, bounded by the cluster's
// connection pool settings). The call object is the dispatch handler itself: one object per request.
import type { Dispatcher } from 'undici';
// The pool alone: undici's index also loads fetch, web streams and more, about 5 MB a sidecar never uses.
import Pool from 'undici/lib/dispatcher/pool.js';
import type { HeaderList } from '../../../wasm/src/index.ts';
import { responseHeaderList, trailerList } from '../http/request-headers.ts';
import type { ConnectionPoolConfig } from '../../../mesh/src/proxy-config.ts';
import { connectOptions, isTlsConnectFailure, type UpstreamTlsOptions } from '../identity/tls-options.ts';
import type { UpstreamCall, UpstreamClient, UpstreamRequestOptions, UpstreamResponseHandler } from './upstream-request.ts';

type Controller = Parameters<NonNullable<Dispatcher.DispatchHandler['onResponseStart']>>[0];

class Http1Call implements UpstreamCall, Dispatcher.DispatchHandler {
  readonly #handler: UpstreamResponseHandler;
  #controller: Controller | undefined;
  #abortedWith: Error | undefined;
  #done = false;

  constructor(handler: UpstreamResponseHandler) {
    this.#handler = handler;
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
    if (this.#abortedWith) controller.abort(this.#abortedWith);
  }

  onResponseStart(controller: Controller, statusCode: number, headers: Record<string, string | string[]>): void {
    if (statusCode < 200) return; // 1xx informational: Node's server already handled 100-continue.
    this.#controller = controller;
    const list = responseHeaderList(statusCode, headers);
    this.#handler.onUpstreamHeaders(list, false);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (!this.#handler.onUpstreamData(chunk)) controller.pause();
  }

  onResponseEnd(_controller: Controller, trailers: Record<string, string | string[]>): void {
    this.#done = true;
    this.#handler.onUpstreamEnd(trailerList(trailers));
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#handler.onUpstreamError(err, flagFor(err));
  }

  abort(reason: Error): void {
    if (this.#done) return;
    this.#abortedWith = reason;
    this.#controller?.abort(reason);
  }

  resume(): void {
    this.#controller?.resume();
  }
}

/** Envoy's response flag for an upstream failure. */
export function flagFor(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  // A refused TLS handshake or a peer with the wrong SPIFFE id: the connection failed (Envoy: UF).
  if (isTlsConnectFailure(err as NodeJS.ErrnoException)) return 'UF';
  if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH') return 'UF';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'UT';
  if (code === 'UND_ERR_ABORTED' || err.name === 'AbortError') return 'DC';
  // A response head past maxResponseHeaderBytes: the upstream broke the proxy's limit (Envoy: 502 UPE).
  if (code === 'UND_ERR_HEADERS_OVERFLOW') return 'UPE';
  return 'UC';
}

export class Http1Client implements UpstreamClient {
  readonly #pool: Pool;
  readonly #origin: string;
  /** SNI of a TLS client; undici would otherwise take it from each request's Host header. */
  readonly #servername: string | undefined;

  /**
   * With `tls`: TLS origination (ISTIO_MUTUAL with the workload certificate, SIMPLE or MUTUAL).
   * `maxResponseHeaderBytes`: a response whose header block is larger fails (502 UPE); default undici's (16 KiB).
   */
  constructor(address: string, port: number, pool: ConnectionPoolConfig, tls?: UpstreamTlsOptions, maxResponseHeaderBytes?: number) {
    const host = address.includes(':') ? `[${address}]` : address;
    this.#origin = `${tls ? 'https' : 'http'}://${host}:${port}`;
    this.#servername = tls?.servername;
    this.#pool = new Pool(this.#origin, {
      ...(tls
        ? {
            connect: { ...connectOptions(tls), timeout: pool.connectTimeoutMs ?? 10_000 },
          }
        : {}),
      connections: pool.maxConnections ?? null,
      pipelining: 1,
      keepAliveTimeout: pool.idleTimeoutMs ?? 4000,
      connectTimeout: pool.connectTimeoutMs ?? 10_000,
      maxRequestsPerClient: pool.maxRequestsPerConnection,
      ...(maxResponseHeaderBytes !== undefined ? { maxHeaderSize: maxResponseHeaderBytes } : {}),
      // The route timeout governs the whole request; undici's own timers are off.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  get connections(): number {
    return this.#pool.stats.connected;
  }

  request(options: UpstreamRequestOptions, handler: UpstreamResponseHandler): UpstreamCall {
    const call = new Http1Call(handler);
    const { method, path, headers } = toUndici(options.headers);
    try {
      const servername = this.#servername;
      this.#pool.dispatch({ origin: this.#origin, method, path, headers, body: options.body, upgrade: null, ...(servername ? { servername } : {}) } as Dispatcher.DispatchOptions, call);
    } catch (err) {
      // Invalid headers and the like throw synchronously: report them like any upstream failure.
      queueMicrotask(() => call.onResponseError(undefined as unknown as Controller, err as Error));
    }
    return call;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

/** Pseudo-headers become method, path and host; the rest pass as undici's flat header array. */
function toUndici(list: HeaderList): { method: string; path: string; headers: string[] } {
  let method = 'GET';
  let path = '/';
  const headers: string[] = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':method') method = list[i + 1];
      else if (name === ':path') path = list[i + 1];
      else if (name === ':authority') headers.push('host', list[i + 1]);
      continue;
    }
    if (name === 'te') continue; // HTTP/1.1 upstreams get no TE.
    headers.push(name, list[i + 1]);
  }
  return { method, path, headers };
}
