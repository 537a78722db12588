// The types of the filter world (wasmesh:filter/http-filter@0.1.0, schemas/wit/filter.wit in
// wasmesh) as componentize-js hands them to JavaScript: kebab-case names in camelCase, `list<u8>`
// as Uint8Array, `option<T>` as T | undefined, `u64`/`s64` as bigint, variants as { tag, val },
// enums as their kebab-case strings, `result<T, string>` as T (throw the string for the error).

/** Header or trailer fields, in order, names lowercase; values are bytes. */
export type Fields = Array<[string, Uint8Array]>;

export type Phase = 'request-headers' | 'request-body' | 'request-trailers' | 'response-headers' | 'response-body' | 'response-trailers';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical';

export interface Needs {
  /** The phases the host calls the filter for; the others cost nothing. */
  phases: Phase[];
  /** Properties passed with every call (["request", "path"], ["plugin_name"], ...), in this order. */
  properties: string[][];
  /** Shared-data keys whose values are passed with every call. */
  sharedKeys: string[];
  metrics: Array<{ name: string; kind: 'counter' | 'gauge' | 'histogram' }>;
}

export interface CallContext {
  /** The same in every call for one stream. */
  streamId: bigint;
  properties: Array<{ path: string[]; value: Uint8Array | undefined }>;
  shared: Array<{ key: string; value: Uint8Array | undefined; cas: number }>;
}

/** Applied in this order: remove, set (each name's values replaced), add. */
export interface FieldChanges {
  remove: string[];
  set: Fields;
  add: Fields;
}

export interface LocalReply {
  status: number;
  headers: Fields;
  body: Uint8Array;
  /** For gRPC requests: the grpc-status of a trailers-only answer. */
  grpcStatus: number | undefined;
  details: string;
}

/** continue; stop (headers: hold them until the body has been seen; body: wait for more); reply. */
export type Action = { tag: 'continue' } | { tag: 'stop' } | { tag: 'reply'; val: LocalReply };

export interface Effects {
  logs: Array<{ level: LogLevel; message: string }>;
  metrics: Array<{ name: string; op: 'add' | 'set' | 'observe'; value: bigint }>;
  sharedWrites: Array<{ key: string; value: Uint8Array; cas: number | undefined }>;
}

export interface HeadersResult {
  action: Action;
  headers: FieldChanges;
  effects: Effects;
}

export interface BodyResult {
  action: Action;
  /** Replaces the body seen so far (undefined: leave it). */
  body: Uint8Array | undefined;
  /** Changes to headers held by `stop` (ignored once they went on). */
  headers: FieldChanges;
  effects: Effects;
}

export interface TrailersResult {
  action: Action;
  trailers: FieldChanges;
  effects: Effects;
}

/** What the component exports as `handler`. */
export interface Handler {
  configure(config: Uint8Array): Needs;
  onRequestHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onRequestBody(ctx: CallContext, body: Uint8Array, endOfStream: boolean): BodyResult;
  onRequestTrailers(ctx: CallContext, trailers: Fields): TrailersResult;
  onResponseHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onResponseBody(ctx: CallContext, body: Uint8Array, endOfStream: boolean): BodyResult;
  onResponseTrailers(ctx: CallContext, trailers: Fields): TrailersResult;
  onStreamDone(streamId: bigint): Effects;
}

export const go: Action = { tag: 'continue' };
export const unchanged = (): FieldChanges => ({ remove: [], set: [], add: [] });
export const nothing = (): Effects => ({ logs: [], metrics: [], sharedWrites: [] });
