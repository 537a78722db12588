// What the connection manager hands an upstream client, and what it gets back. One interface for
// HTTP/1.1 (undici pools) and HTTP/2 / gRPC (multiplexed sessions).
import type { Readable } from 'node:stream';
import type { HeaderList } from '../../../wasm/src/index.ts';

export interface UpstreamResponseHandler {
  /** Status and headers (a list with :status first). `endOfStream` when no body follows. */
  onUpstreamHeaders(headers: HeaderList, endOfStream: boolean): void;
  /** A body chunk. Return false to ask for a pause (the client resumes when `resume()` is called). */
  onUpstreamData(chunk: Buffer): boolean;
  onUpstreamEnd(trailers: HeaderList | undefined): void;
  /** The request failed: `flag` is Envoy's response flag (UF connect failure, UC reset, UT timeout...). */
  onUpstreamError(err: Error, flag: string): void;
}

export interface UpstreamRequestOptions {
  /** Request headers with pseudo-headers (:method, :path, :authority, :scheme). */
  headers: HeaderList;
  /**
   * null: no body; a Readable: streamed as it arrives; a Buffer: the whole body, sent with the
   * request (callouts: on HTTP/2 the HEADERS and DATA frames then leave in one write, with no stream
   * machinery per call).
   */
  body: Readable | Buffer | null;
}

export interface UpstreamCall {
  /** Cancel the request (client went away, timeout). */
  abort(reason: Error): void;
  /** Resume after onUpstreamData returned false. */
  resume(): void;
}

export interface UpstreamClient {
  request(options: UpstreamRequestOptions, handler: UpstreamResponseHandler): UpstreamCall;
  /** Connections open to this endpoint (for stats). */
  readonly connections: number;
  close(): Promise<void>;
}
