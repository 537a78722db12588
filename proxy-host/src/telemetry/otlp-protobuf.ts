// OTLP in the protobuf binary encoding, written by hand: the few messages the proxy sends
// (ExportTraceServiceRequest, ExportLogsServiceRequest) and the one field it reads back
// (partial_success). Field numbers are those of schemas/proto/opentelemetry/ (the subset of
// opentelemetry-proto wasmesh uses); the tests decode what this writes with those definitions through
// protobufjs, so the two cannot drift apart unnoticed. No dependency is loaded on the proxy's path for
// this: a span batch is a few nested length-delimited records.
import type { FinishedSpan } from './span-exporter.ts';

/** A growable byte buffer with protobuf's primitive writers. Nested messages are written into a fresh
 * Writer and copied in with their length (simple, and batches are at most a few hundred KiB). */
class Writer {
  #buf = Buffer.allocUnsafe(256);
  #len = 0;

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  varint(v: number): this {
    this.#room(10);
    // Values here are non-negative and below 2^53 (lengths, enums, counts).
    while (v >= 0x80) {
      this.#buf[this.#len++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.#buf[this.#len++] = v;
    return this;
  }

  /** A 64-bit varint (int64 in two's complement, as protobuf writes negative int64s). */
  varint64(v: bigint): this {
    this.#room(10);
    while (v >= 0x80n) {
      this.#buf[this.#len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.#buf[this.#len++] = Number(v);
    return this;
  }

  /** Bytes as they are (a fixed-width value after its tag). */
  raw(data: Uint8Array): this {
    this.#room(data.length);
    this.#buf.set(data, this.#len);
    this.#len += data.length;
    return this;
  }

  tag(field: number, wire: 0 | 1 | 2 | 5): this {
    return this.varint(field * 8 + wire);
  }

  bytes(field: number, data: Uint8Array): this {
    return this.tag(field, 2).varint(data.length).raw(data);
  }

  string(field: number, s: string): this {
    if (s.length === 0) return this; // proto3: the default is not written
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }

  uint(field: number, v: number): this {
    if (v === 0) return this;
    return this.tag(field, 0).varint(v);
  }

  fixed64(field: number, v: bigint): this {
    this.tag(field, 1);
    this.#room(8);
    this.#buf.writeBigUInt64LE(v, this.#len);
    this.#len += 8;
    return this;
  }

  fixed32(field: number, v: number): this {
    this.tag(field, 5);
    this.#room(4);
    this.#buf.writeUInt32LE(v >>> 0, this.#len);
    this.#len += 4;
    return this;
  }

  message(field: number, m: Writer): this {
    return this.bytes(field, m.finish());
  }

  finish(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }
}

const hexBytes = (hex: string): Buffer => Buffer.from(hex, 'hex');
const msToNanos = (ms: number): bigint => BigInt(Math.round(ms * 1000)) * 1000n;
const cut = (v: string, n: number): string => (v.length > n ? v.slice(0, n) : v);

/** AnyValue: string_value = 1, int_value = 3 (a safe integer), double_value = 4. */
function anyValue(v: string | number): Writer {
  const w = new Writer();
  if (typeof v === 'string') return w.bytes(1, Buffer.from(v, 'utf8'));
  if (Number.isSafeInteger(v)) return w.tag(3, 0).varint64(BigInt.asUintN(64, BigInt(v)));
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleLE(v);
  return w.tag(4, 1).raw(b);
}

/** KeyValue: key = 1, value = 2. */
function keyValue(key: string, value: string | number): Writer {
  return new Writer().string(1, key).message(2, anyValue(value));
}

/** Resource: attributes = 1. */
function resource(attributes: readonly (readonly [string, string])[]): Writer {
  const w = new Writer();
  for (const [k, v] of attributes) w.message(1, keyValue(k, v));
  return w;
}

/** InstrumentationScope: name = 1. */
const scope = (name: string): Writer => new Writer().string(1, name);

/** ExportTraceServiceRequest with one ResourceSpans (the workload) and one ScopeSpans. */
export function encodeTraceRequest(spans: readonly FinishedSpan[], serviceName: string, maxTag: number): Buffer {
  const scopeSpans = new Writer().message(1, scope('wasmesh-proxy'));
  for (const s of spans) {
    const span = new Writer()
      .bytes(1, hexBytes(s.traceId))
      .bytes(2, hexBytes(s.spanId));
    if (s.parentSpanId) span.bytes(4, hexBytes(s.parentSpanId));
    span
      .string(5, s.name)
      .uint(6, s.kind === 'SERVER' ? 2 : 3)
      .fixed64(7, msToNanos(s.startMs))
      .fixed64(8, msToNanos(s.startMs + s.durationMs));
    for (const [k, v] of Object.entries(s.tags)) span.message(9, keyValue(k, cut(v, maxTag)));
    // Status: code = 3 (ERROR = 2); UNSET is the absent message.
    if (s.error) span.message(15, new Writer().uint(3, 2));
    // flags = 16: the W3C trace flags (sampled: every exported span was).
    span.fixed32(16, 1);
    scopeSpans.message(2, span);
  }
  const resourceSpans = new Writer().message(1, resource([['service.name', serviceName]])).message(2, scopeSpans);
  return new Writer().message(1, resourceSpans).finish();
}

/** One access-log record for OTLP logs. */
export interface OtelLogRecord {
  startMs: number;
  body: string;
  attributes: readonly (readonly [string, string | number])[];
  traceId: string;
  spanId: string;
}

/** ExportLogsServiceRequest with one ResourceLogs (resource attributes as Envoy sets them) and one ScopeLogs. */
export function encodeLogsRequest(records: readonly OtelLogRecord[], resourceAttributes: readonly (readonly [string, string])[], nowMs: number): Buffer {
  const scopeLogs = new Writer().message(1, scope('wasmesh-proxy'));
  const observed = msToNanos(nowMs);
  for (const r of records) {
    const rec = new Writer().fixed64(1, msToNanos(r.startMs)).message(5, anyValue(r.body));
    for (const [k, v] of r.attributes) rec.message(6, keyValue(k, v));
    if (r.traceId && /^[0-9a-f]{32}$/.test(r.traceId) && !/^0+$/.test(r.traceId)) rec.bytes(9, hexBytes(r.traceId));
    if (r.spanId && /^[0-9a-f]{16}$/.test(r.spanId) && !/^0+$/.test(r.spanId)) rec.bytes(10, hexBytes(r.spanId));
    rec.fixed64(11, observed);
    scopeLogs.message(2, rec);
  }
  const resourceLogs = new Writer().message(1, resource(resourceAttributes)).message(2, scopeLogs);
  return new Writer().message(1, resourceLogs).finish();
}

/**
 * Export*ServiceResponse.partial_success (field 1): { rejected = 1 (int64), error_message = 2 }.
 * Undefined when absent or unreadable (a response the proxy cannot read is not a failure: the
 * transport said OK).
 */
export function readPartialSuccess(bytes: Uint8Array): { rejected: number; message: string } | undefined {
  const outer = fields(bytes);
  const ps = outer?.get(1);
  if (!(ps instanceof Uint8Array)) return undefined;
  const inner = fields(ps);
  if (inner === undefined) return undefined;
  const rejected = inner.get(1);
  const message = inner.get(2);
  return { rejected: typeof rejected === 'number' ? rejected : 0, message: message instanceof Uint8Array ? Buffer.from(message).toString('utf8') : '' };
}

/** The last value of each field of a message: varints as numbers, length-delimited as bytes. */
function fields(b: Uint8Array): Map<number, number | Uint8Array> | undefined {
  const out = new Map<number, number | Uint8Array>();
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    let mul = 1;
    for (let n = 0; n < 10; n++) {
      if (i >= b.length) return undefined;
      const byte = b[i++]!;
      v += (byte & 0x7f) * mul;
      mul *= 128;
      if (byte < 0x80) return v;
    }
    return undefined;
  };
  while (i < b.length) {
    const key = varint();
    if (key === undefined) return undefined;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      const v = varint();
      if (v === undefined) return undefined;
      out.set(field, v);
    } else if (wire === 2) {
      const n = varint();
      if (n === undefined || i + n > b.length) return undefined;
      out.set(field, b.subarray(i, i + n));
      i += n;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else return undefined;
  }
  return i === b.length ? out : undefined;
}
