// TypeScript view of the OTLP subset in schemas/proto/opentelemetry/ (trace and logs export), loaded at
// runtime with @grpc/proto-loader (keepCase; enums as names; 64-bit integers as strings so that
// nanosecond times keep their precision; bytes as Buffers). What reads OTLP in wasmesh loads it from
// here: the tests' collectors and the demo's receiver. The proxy writes OTLP without it
// (proxy-host/src/telemetry/otlp-protobuf.ts), and the tests check the two agree.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { installPath } from '../../repo-files.ts';

export const OTLP_PROTO_DIR = installPath('schemas', 'proto');
export const TRACE_SERVICE = 'opentelemetry.proto.collector.trace.v1.TraceService';
export const LOGS_SERVICE = 'opentelemetry.proto.collector.logs.v1.LogsService';

export interface AnyValueMessage {
  string_value?: string;
  bool_value?: boolean;
  int_value?: string;
  double_value?: number;
  bytes_value?: Buffer;
  value?: string;
}
export interface KeyValueMessage {
  key: string;
  value: AnyValueMessage | null;
}
export interface ResourceMessage {
  attributes: KeyValueMessage[];
}
export interface SpanMessage {
  trace_id: Buffer;
  span_id: Buffer;
  parent_span_id: Buffer;
  trace_state: string;
  flags: number;
  name: string;
  kind: 'SPAN_KIND_UNSPECIFIED' | 'SPAN_KIND_INTERNAL' | 'SPAN_KIND_SERVER' | 'SPAN_KIND_CLIENT' | 'SPAN_KIND_PRODUCER' | 'SPAN_KIND_CONSUMER';
  start_time_unix_nano: string;
  end_time_unix_nano: string;
  attributes: KeyValueMessage[];
  status: { message: string; code: 'STATUS_CODE_UNSET' | 'STATUS_CODE_OK' | 'STATUS_CODE_ERROR' } | null;
}
export interface ExportTraceServiceRequestMessage {
  resource_spans: { resource: ResourceMessage | null; scope_spans: { scope: { name: string } | null; spans: SpanMessage[] }[] }[];
}
export interface LogRecordMessage {
  time_unix_nano: string;
  observed_time_unix_nano: string;
  severity_number: string;
  body: AnyValueMessage | null;
  attributes: KeyValueMessage[];
  trace_id: Buffer;
  span_id: Buffer;
}
export interface ExportLogsServiceRequestMessage {
  resource_logs: { resource: ResourceMessage | null; scope_logs: { scope: { name: string } | null; log_records: LogRecordMessage[] }[] }[];
}
export interface PartialSuccess {
  partial_success?: { rejected_spans?: number; rejected_log_records?: number; error_message?: string } | null;
}

export interface OtlpDefinitions {
  /** The gRPC services, for grpc.Server.addService. */
  traceService: grpc.ServiceDefinition;
  logsService: grpc.ServiceDefinition;
  decodeTraceRequest(bytes: Uint8Array): ExportTraceServiceRequestMessage;
  decodeLogsRequest(bytes: Uint8Array): ExportLogsServiceRequestMessage;
  encodeTraceResponse(response: PartialSuccess): Buffer;
}

let loaded: OtlpDefinitions | undefined;

/** Loads the definitions once per process. */
export function otlpDefinitions(): OtlpDefinitions {
  if (loaded) return loaded;
  const files = ['opentelemetry/proto/collector/trace/v1/trace_service.proto', 'opentelemetry/proto/collector/logs/v1/logs_service.proto'];
  const def = protoLoader.loadSync(files, { includeDirs: [OTLP_PROTO_DIR], keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    opentelemetry: { proto: { collector: { trace: { v1: { TraceService: grpc.ServiceClientConstructor } }; logs: { v1: { LogsService: grpc.ServiceClientConstructor } } } } };
  };
  const trace = pkg.opentelemetry.proto.collector.trace.v1.TraceService.service;
  const logs = pkg.opentelemetry.proto.collector.logs.v1.LogsService.service;
  loaded = {
    traceService: trace,
    logsService: logs,
    decodeTraceRequest: (bytes) => trace.Export!.requestDeserialize(Buffer.from(bytes)) as ExportTraceServiceRequestMessage,
    decodeLogsRequest: (bytes) => logs.Export!.requestDeserialize(Buffer.from(bytes)) as ExportLogsServiceRequestMessage,
    encodeTraceResponse: (response) => trace.Export!.responseSerialize(response),
  };
  return loaded;
}

/** An AnyValue as a plain JS value (strings, numbers, booleans). */
export function anyValueOf(v: AnyValueMessage | null | undefined): string | number | boolean | undefined {
  if (!v) return undefined;
  switch (v.value) {
    case 'string_value': return v.string_value;
    case 'bool_value': return v.bool_value;
    case 'int_value': return Number(v.int_value);
    case 'double_value': return v.double_value;
    default: return undefined;
  }
}

/** Attributes as a plain object. */
export function attributesOf(list: readonly KeyValueMessage[]): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const kv of list) out[kv.key] = anyValueOf(kv.value);
  return out;
}
