// HTTP/2 (and gRPC) to one endpoint over one multiplexed session, reconnected when it closes.
import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { HeaderList } from '../../../wasm/src/index.ts';
import { responseHeaderList, trailerList } from '../http/request-headers.ts';
import type { ConnectionPoolConfig } from '../../../mesh/src/proxy-config.ts';
import { connectOptions, isTlsConnectFailure, type UpstreamTlsOptions } from '../identity/tls-options.ts';
import type { UpstreamCall, UpstreamClient, UpstreamRequestOptions, UpstreamResponseHandler } from './upstream-request.ts';

const { NGHTTP2_CANCEL } = http2.constants;

class Http2Call implements UpstreamCall {
  readonly #stream: ClientHttp2Stream;
  readonly #handler: UpstreamResponseHandler;
  #done = false;
  #trailers: HeaderList | undefined;

  constructor(stream: ClientHttp2Stream, handler: UpstreamResponseHandler) {
    this.#stream = stream;
    this.#handler = handler;
    stream.on('response', (headers: IncomingHttpHeaders, flags: number) => {
      const status = Number(headers[':status']);
      if (status < 200) return;
      const endOfStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      handler.onUpstreamHeaders(responseHeaderList(status, headers as Record<string, string | string[]>), endOfStream);
      if (endOfStream) this.#finish();
    });
    stream.on('data', (chunk: Buffer) => {
      if (!handler.onUpstreamData(chunk)) stream.pause();
    });
    stream.on('trailers', (trailers: IncomingHttpHeaders) => {
      this.#trailers = trailerList(trailers as Record<string, string | string[]>);
    });
    stream.on('end', () => this.#finish());
    stream.on('error', (err: Error) => this.#fail(err));
    stream.on('close', () => {
      if (!this.#done) this.#fail(Object.assign(new Error(`upstream stream closed (code ${stream.rstCode})`), { code: 'ERR_HTTP2_STREAM_RESET' }));
    });
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#handler.onUpstreamEnd(this.#trailers);
  }

  #fail(err: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#handler.onUpstreamError(err, h2FailureFlag(err));
  }

  abort(_reason: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#stream.close(NGHTTP2_CANCEL);
  }

  resume(): void {
    this.#stream.resume();
  }
}

export class Http2Client implements UpstreamClient {
  readonly #authority: string;
  readonly #pool: ConnectionPoolConfig;
  readonly #tls: UpstreamTlsOptions | undefined;
  #session: ClientHttp2Session | undefined;

  /** With `tls`: TLS origination, ALPN h2 (ISTIO_MUTUAL with the workload certificate, SIMPLE or MUTUAL). */
  constructor(address: string, port: number, pool: ConnectionPoolConfig, tls?: UpstreamTlsOptions) {
    const host = address.includes(':') ? `[${address}]` : address;
    this.#authority = `${tls ? 'https' : 'http'}://${host}:${port}`;
    this.#pool = pool;
    this.#tls = tls;
  }

  get connections(): number {
    return this.#session && !this.#session.destroyed ? 1 : 0;
  }

  #sessionFor(): ClientHttp2Session {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) return s;
    const tls = this.#tls;
    const session = http2.connect(this.#authority, {
      peerMaxConcurrentStreams: this.#pool.http2MaxRequests ?? 1000,
      ...(tls ? connectOptions(tls) : {}),
    });
    session.on('error', () => {});
    // Connect timeout (DestinationRule connectionPool.tcp.connectTimeout, Istio's default 10 s): the
    // session's pending streams fail with it as their cause, which maps to UF.
    const connectTimeoutMs = this.#pool.connectTimeoutMs ?? 10_000;
    const connectTimer = setTimeout(() => {
      session.destroy(Object.assign(new Error(`upstream connect timeout after ${connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, connectTimeoutMs);
    connectTimer.unref();
    session.once('connect', () => clearTimeout(connectTimer));
    session.once('close', () => clearTimeout(connectTimer));
    session.on('close', () => {
      if (this.#session === session) this.#session = undefined;
    });
    session.on('goaway', () => {
      if (this.#session === session) this.#session = undefined;
    });
    if (this.#pool.idleTimeoutMs) session.setTimeout(this.#pool.idleTimeoutMs, () => session.close());
    this.#session = session;
    return session;
  }

  request(options: UpstreamRequestOptions, handler: UpstreamResponseHandler): UpstreamCall {
    const headers: Record<string, string | string[]> = {};
    const list = options.headers;
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i];
      const prev = headers[name];
      if (prev === undefined) headers[name] = list[i + 1];
      else if (Array.isArray(prev)) prev.push(list[i + 1]);
      else headers[name] = [prev, list[i + 1]];
    }
    headers[':scheme'] = 'http';
    let stream: ClientHttp2Stream;
    try {
      stream = this.#sessionFor().request(headers, { endStream: options.body === null });
    } catch (err) {
      const failed = { abort() {}, resume() {} };
      queueMicrotask(() => handler.onUpstreamError(err as Error, 'UF'));
      return failed;
    }
    const call = new Http2Call(stream, handler);
    if (Buffer.isBuffer(options.body)) stream.end(options.body);
    else if (options.body) options.body.pipe(stream);
    return call;
  }

  close(): Promise<void> {
    const s = this.#session;
    this.#session = undefined;
    if (!s || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => s.close(() => resolve()));
  }
}

/**
 * Envoy's flag for a failed HTTP/2 stream. A stream cancelled because its session never connected
 * carries the connect error as its cause: that is a connection failure (UF), not a reset (UC).
 */
export function h2FailureFlag(err: Error): string {
  const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = e.code === 'ERR_HTTP2_STREAM_CANCEL' ? e.cause?.code : e.code;
  if (isTlsConnectFailure({ code })) return 'UF';
  return code === 'ECONNREFUSED' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? 'UF' : 'UC';
}
