// The test harness's stand-in for the network: HTTP and gRPC callouts are answered from canned
// responses the test lists, and every call is recorded with what was sent and what came back.
import { WasmResult } from './abi/constants.ts';
import type { GrpcCallRequest, GrpcCallResponse, HeaderList, HttpCallRequest, HttpCallResponse } from './host.ts';
import { headerGet, toHeaderList } from './pairs.ts';

export type HeadersInput = Record<string, string | string[]> | Array<[string, string]>;
export type HeadersOutput = Record<string, string | string[]>;

/** A canned answer to an HTTP callout, by cluster name. `fail: true` makes the call fail (reset). */
export interface CalloutAnswer {
  status?: number;
  headers?: HeadersInput;
  body?: string;
  trailers?: HeadersInput;
  fail?: boolean;
}

export interface CalloutRecord {
  upstream: string;
  headers: HeadersOutput;
  body: string;
  timeoutMs: number;
  response: { headers: HeadersOutput; body: string } | null;
}

/**
 * A canned answer to a unary gRPC callout (proxy_grpc_call). Listed by "cluster/service/method",
 * "cluster/service" or "cluster"; the most specific key that matches answers.
 */
export interface GrpcCalloutAnswer {
  /** The gRPC status code; default 0 (OK). */
  status?: number;
  /** grpc-message of a failed call (what proxy_get_status gives the module in on_grpc_close). */
  statusMessage?: string;
  /** The response message: serialized protobuf bytes, or text sent as its UTF-8 bytes. */
  message?: string | Uint8Array;
  initialMetadata?: HeadersInput;
  trailingMetadata?: HeadersInput;
}

export interface GrpcCalloutRecord {
  upstream: string;
  service: string;
  method: string;
  metadata: HeadersOutput;
  /** The request message as the module serialized it. */
  message: Uint8Array;
  timeoutMs: number;
  response: { status: number; statusMessage: string; message?: Uint8Array } | null;
}

export function headersToObject(list: HeaderList): HeadersOutput {
  const out: HeadersOutput = {};
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i];
    const prev = out[k];
    if (prev === undefined) out[k] = list[i + 1];
    else if (Array.isArray(prev)) prev.push(list[i + 1]);
    else out[k] = [prev, list[i + 1]];
  }
  return out;
}

export function bodyBytes(body: string | Uint8Array | undefined): Buffer {
  if (body === undefined) return Buffer.alloc(0);
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body);
}

/** Answers callouts from the lists the test gave; the answer arrives on a later turn of the event loop, as from a network. */
export class CannedCallouts {
  readonly http: CalloutRecord[] = [];
  readonly grpc: GrpcCalloutRecord[] = [];
  /** Callouts started and not answered yet. */
  pending = 0;
  readonly #httpAnswers: Record<string, CalloutAnswer>;
  readonly #grpcAnswers: Record<string, GrpcCalloutAnswer>;

  constructor(httpAnswers: Record<string, CalloutAnswer> = {}, grpcAnswers: Record<string, GrpcCalloutAnswer> = {}) {
    this.#httpAnswers = httpAnswers;
    this.#grpcAnswers = grpcAnswers;
  }

  /** PluginHost.httpCall: an unlisted cluster is unknown (BadArgument, as a proxy answers). */
  readonly httpCall = (req: HttpCallRequest): Promise<HttpCallResponse | null> | WasmResult => {
    const answer = this.#httpAnswers[req.upstream];
    if (!answer) return WasmResult.BadArgument;
    const record: CalloutRecord = { upstream: req.upstream, headers: headersToObject(req.headers), body: Buffer.from(req.body).toString('utf8'), timeoutMs: req.timeoutMs, response: null };
    this.http.push(record);
    return this.#later(() => {
      if (answer.fail) return null;
      const headers = toHeaderList(answer.headers);
      if (headerGet(headers, ':status') === undefined) headers.unshift(':status', String(answer.status ?? 200));
      record.response = { headers: headersToObject(headers), body: answer.body ?? '' };
      return { headers, body: bodyBytes(answer.body), trailers: toHeaderList(answer.trailers) };
    });
  };

  /** PluginHost.grpcCall: an unlisted cluster is unknown (ParseFailure, as a proxy answers). */
  readonly grpcCall = (req: GrpcCallRequest): Promise<GrpcCallResponse> | WasmResult => {
    const answers = this.#grpcAnswers;
    const answer = answers[`${req.upstream}/${req.service}/${req.method}`] ?? answers[`${req.upstream}/${req.service}`] ?? answers[req.upstream];
    if (!answer) return WasmResult.ParseFailure;
    const record: GrpcCalloutRecord = {
      upstream: req.upstream,
      service: req.service,
      method: req.method,
      metadata: headersToObject(req.initialMetadata),
      message: Uint8Array.from(req.message),
      timeoutMs: req.timeoutMs,
      response: null,
    };
    this.grpc.push(record);
    return this.#later(() => {
      const status = answer.status ?? 0;
      const message = answer.message === undefined ? undefined : bodyBytes(answer.message);
      record.response = { status, statusMessage: answer.statusMessage ?? '', ...(message ? { message: Uint8Array.from(message) } : {}) };
      return {
        initialMetadata: toHeaderList(answer.initialMetadata),
        ...(message ? { message } : {}),
        trailingMetadata: toHeaderList(answer.trailingMetadata),
        status,
        statusMessage: answer.statusMessage ?? '',
      };
    });
  };

  #later<T>(answer: () => T): Promise<T> {
    this.pending++;
    return new Promise((resolve) => {
      setImmediate(() => {
        this.pending--;
        resolve(answer());
      });
    });
  }
}
