// The official OpenTelemetry definitions, for tests only: the protobufjs static code that the OpenTelemetry
// JS project generated from opentelemetry-proto, as shipped in @opentelemetry/otlp-transformer 0.214.0 (a
// devDependency, pinned: the last release that ships the generated code for traces and logs; its
// definitions have Span.flags, LogRecord.event_name and Resource.entity_refs). The tests decode what the
// proxies export with it beside our own subset (otlp.ts), and schemas/test/otlp-official.test.ts checks
// that every message, field and enum value of schemas/proto/opentelemetry/ matches it, so the copy the
// demo and the collectors load cannot drift from the official one. Nothing outside tests imports this.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const GENERATED = '@opentelemetry/otlp-transformer/build/src/generated/root.js';

/** protobufjs's toObject options, as the generated code takes them. */
export interface ConversionOptions {
  longs?: unknown;
  enums?: unknown;
  bytes?: unknown;
  defaults?: boolean;
  arrays?: boolean;
  oneofs?: boolean;
}

/** A message constructor of the generated (static) code. */
export interface StaticMessage {
  decode(bytes: Uint8Array): object;
  encode(message: object): { finish(): Uint8Array };
  fromObject(object: Record<string, unknown>): object;
  toObject(message: object, options?: ConversionOptions): Record<string, unknown>;
  verify(message: Record<string, unknown>): string | null;
}

/** The generated namespace tree (opentelemetry.proto.trace.v1.Span, ...). */
export type StaticNamespace = { [name: string]: unknown };

let root: StaticNamespace | undefined;

/** The generated root, loaded once. */
export function officialRoot(): StaticNamespace {
  root ??= require(GENERATED) as StaticNamespace;
  return root;
}

/** What the full name (`opentelemetry.proto.trace.v1.Span`, `....Span.SpanKind`) names in the official definitions, or undefined. */
export function officialLookup(fullName: string): unknown {
  let at: unknown = officialRoot();
  for (const part of fullName.replace(/^\./, '').split('.')) {
    if ((typeof at !== 'object' && typeof at !== 'function') || at === null || !Object.hasOwn(at, part)) return undefined;
    at = (at as Record<string, unknown>)[part];
  }
  return at;
}

function message(fullName: string): StaticMessage {
  const m = officialLookup(fullName);
  if (typeof m !== 'function') throw new Error(`${GENERATED} has no message ${fullName}`);
  return m as unknown as StaticMessage;
}

// The decoded messages, as toObject gives them with the options below: camelCase names as in the
// proto3 JSON mapping, 64-bit integers as decimal strings, enums as names, bytes as Buffers.
const OPTIONS: ConversionOptions = { longs: String, enums: String, defaults: true, arrays: true, oneofs: true };

export interface OfficialAnyValue {
  value?: 'stringValue' | 'boolValue' | 'intValue' | 'doubleValue' | 'arrayValue' | 'kvlistValue' | 'bytesValue';
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  bytesValue?: Uint8Array;
  arrayValue?: { values: OfficialAnyValue[] };
  kvlistValue?: { values: OfficialKeyValue[] };
}
export interface OfficialKeyValue {
  key: string;
  value: OfficialAnyValue | null;
}
export interface OfficialResource {
  attributes: OfficialKeyValue[];
}
export interface OfficialSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  parentSpanId: Uint8Array;
  traceState: string;
  flags: number;
  name: string;
  kind: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: OfficialKeyValue[];
  status: { code: string; message: string } | null;
}
export interface OfficialTraceRequest {
  resourceSpans: { resource: OfficialResource | null; scopeSpans: { scope: { name: string; version: string } | null; spans: OfficialSpan[] }[] }[];
}
export interface OfficialLogRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: string;
  body: OfficialAnyValue | null;
  attributes: OfficialKeyValue[];
  flags: number;
  traceId: Uint8Array;
  spanId: Uint8Array;
}
export interface OfficialLogsRequest {
  resourceLogs: { resource: OfficialResource | null; scopeLogs: { scope: { name: string } | null; logRecords: OfficialLogRecord[] }[] }[];
}

function decodeWith<T>(fullName: string, bytes: Uint8Array): T {
  const type = message(fullName);
  return type.toObject(type.decode(bytes), OPTIONS) as T;
}

/** An ExportTraceServiceRequest (an OTLP/HTTP body, a TraceService/Export gRPC message) decoded with the official definitions. */
export function officialDecodeTraceRequest(bytes: Uint8Array): OfficialTraceRequest {
  return decodeWith('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest', bytes);
}

/** An ExportLogsServiceRequest (a LogsService/Export gRPC message) decoded with the official definitions. */
export function officialDecodeLogsRequest(bytes: Uint8Array): OfficialLogsRequest {
  return decodeWith('opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest', bytes);
}

/** An official AnyValue as a plain JS value (strings, numbers, booleans). */
export function officialAnyValueOf(v: OfficialAnyValue | null | undefined): string | number | boolean | undefined {
  switch (v?.value) {
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'intValue': return Number(v.intValue);
    case 'doubleValue': return v.doubleValue;
    default: return undefined;
  }
}

/** Official attributes as a plain object. */
export function officialAttributesOf(list: readonly OfficialKeyValue[]): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const kv of list) out[kv.key] = officialAnyValueOf(kv.value);
  return out;
}

export const hexOf = (b: Uint8Array | null | undefined): string => (b ? Buffer.from(b).toString('hex') : '');

// OTLP/JSON: the proto3 JSON mapping of the same messages, with OTLP's exceptions: trace and span ids
// are hex, not base64 (enums as integers, 64-bit integers as strings, are the mapping's own choices).
const HEX_ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);

function hexIdsToBase64(v: unknown, path: string, problems: string[]): unknown {
  if (Array.isArray(v)) return v.map((x, i) => hexIdsToBase64(x, `${path}/${i}`, problems));
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (HEX_ID_FIELDS.has(k)) {
      if (typeof x !== 'string' || !/^([0-9a-f]{2})*$/i.test(x)) problems.push(`${path}/${k}: ${JSON.stringify(x)} is not hex`);
      else out[k] = Buffer.from(x, 'hex').toString('base64');
    } else out[k] = hexIdsToBase64(x, `${path}/${k}`, problems);
  }
  return out;
}

/** Where the message read from the input differs from it: a field the definitions do not know, or a value of another type. */
function differences(input: unknown, read: unknown, path: string, out: string[]): string[] {
  if (typeof input === 'object' && input !== null && typeof read === 'object' && read !== null) {
    for (const [k, x] of Object.entries(input)) {
      const r = (read as Record<string, unknown>)[k];
      if (r === undefined) out.push(`${path}/${k}: not a field of the official definitions (or not a value of its type)`);
      else differences(x, r, `${path}/${k}`, out);
    }
  } else if (input !== read) out.push(`${path}: ${JSON.stringify(input)} reads back as ${JSON.stringify(read)}`);
  return out;
}

/**
 * An OTLP/JSON ExportTraceServiceRequest (an `http.encoding: json` body) read by the official
 * definitions: the problems (an id that is not hex; a field they do not know or a value of another type,
 * found by reading the message with the generated fromObject and writing it back, by JSON pointer), and
 * the request when there are none.
 */
export function officialReadTraceJson(json: unknown): { problems: string[]; request?: OfficialTraceRequest } {
  const type = message('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  const problems: string[] = [];
  const object = hexIdsToBase64(json, '', problems) as Record<string, unknown>;
  if (problems.length) return { problems };
  const read = type.fromObject(object);
  differences(object, type.toObject(read, { longs: String, bytes: String, enums: Number, defaults: false }), '', problems);
  return problems.length ? { problems } : { problems, request: type.toObject(read, OPTIONS) as unknown as OfficialTraceRequest };
}
