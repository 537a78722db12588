// Trace context on the request: a valid W3C `traceparent` is kept as it is (with its `tracestate`).
// Without one, it is derived from B3 (`x-b3-traceid` / `x-b3-spanid` / `x-b3-sampled` / `x-b3-flags`,
// or the single `b3` header) when those are valid, and otherwise a new trace starts (random 16-byte
// trace id, 8-byte span id, sampled). A `traceparent` that does not parse is replaced, and any
// `tracestate` is dropped with it (W3C: tracestate means nothing without a valid traceparent).
// `x-request-id` is added (a random UUID v4) when the request has none.
import { isHexId, writeHex } from "./codec";
import { findHeader, getHeader, randomBytes, removeHeader, REQUEST_HEADERS, resultLen, resultPtr, setHeader, setHeaderRaw } from "./host";

const TRACEPARENT = String.UTF8.encode("traceparent");
const TRACESTATE = String.UTF8.encode("tracestate");
const B3 = String.UTF8.encode("b3");
const B3_TRACE_ID = String.UTF8.encode("x-b3-traceid");
const B3_SPAN_ID = String.UTF8.encode("x-b3-spanid");
const B3_SAMPLED = String.UTF8.encode("x-b3-sampled");
const B3_FLAGS = String.UTF8.encode("x-b3-flags");
const REQUEST_ID = String.UTF8.encode("x-request-id");
/** Where generated header values are written before the host copies them (no allocation). */
const SCRATCH: usize = memory.data(64);

/** How the request's trace context came about (for tests and the debug log). */
export enum TraceOrigin { Kept, FromB3, Created }

export class TraceInfo {
  traceId: string = "";
  spanId: string = "";
  origin: TraceOrigin = TraceOrigin.Kept;
}

/** A lowercase hex digit (uppercase is not W3C). */
function isLowerHex(c: u32): bool {
  return (c - 0x30 < 10) || (c - 0x61 < 6);
}

/** True when the `len` bytes at `p` are lowercase hex digits, not all zeros. */
function isLowerHexId(p: usize, len: usize): bool {
  let nonZero = false;
  for (let i: usize = 0; i < len; i++) {
    const c = <u32>load<u8>(p + i);
    if (!isLowerHex(c)) return false;
    if (c != 0x30) nonZero = true;
  }
  return nonZero;
}

/**
 * True for a W3C traceparent this proxy can propagate (version 00 exactly; later versions by their
 * prefix), checked on its bytes where the host put them: every position of the 55-byte prefix must be
 * an ASCII character, so bytes and decoded characters agree wherever it can be valid.
 */
export function isValidTraceparentAt(p: usize, n: usize): bool {
  if (n < 55) return false;
  const v0 = <u32>load<u8>(p);
  const v1 = <u32>load<u8>(p + 1);
  if (!isLowerHex(v0) || !isLowerHex(v1)) return false;
  if (v0 == 0x66 && v1 == 0x66) return false; // version ff is invalid
  const version00 = v0 == 0x30 && v1 == 0x30;
  if (version00 && n != 55) return false;
  if (!version00 && n > 55 && load<u8>(p + 55) != 0x2d) return false;
  if (load<u8>(p + 2) != 0x2d || load<u8>(p + 35) != 0x2d || load<u8>(p + 52) != 0x2d) return false;
  if (!isLowerHexId(p + 3, 32) || !isLowerHexId(p + 36, 16)) return false;
  return isLowerHex(<u32>load<u8>(p + 53)) && isLowerHex(<u32>load<u8>(p + 54));
}

/** -1: no decision; 0: not sampled; 1: sampled (B3 "1", "true", or debug "d"). */
function b3Sampling(v: string | null): i32 {
  if (v === null) return -1;
  if (v == "1" || v == "true" || v == "d") return 1;
  if (v == "0" || v == "false") return 0;
  return -1;
}

/** A B3 trace id (16 or 32 hex digits) as 32 lowercase digits; "" when invalid. */
function b3TraceId(v: string): string {
  if (isHexId(v, 32, false)) return v.toLowerCase();
  if (isHexId(v, 16, false)) return "0000000000000000" + v.toLowerCase();
  return "";
}

class B3Result {
  traceId: string = "";
  spanId: string = "";
  /** -1 when B3 says nothing about sampling. */
  sampled: i32 = -1;
}

/** Reads B3 (single header first, then the multi-header form). traceId is "" when no usable ids. */
function readB3(): B3Result {
  const r = new B3Result();
  const single = getHeader(REQUEST_HEADERS, B3);
  if (single !== null) {
    const parts = single.trim().split("-");
    if (parts.length == 1) {
      r.sampled = b3Sampling(parts[0]);
      return r; // a sampling decision alone: ids come from elsewhere (or a new trace)
    }
    const traceId = b3TraceId(parts[0]);
    if (traceId.length > 0 && isHexId(parts[1], 16, false)) {
      r.traceId = traceId;
      r.spanId = parts[1].toLowerCase();
      if (parts.length > 2) r.sampled = b3Sampling(parts[2]);
      return r;
    }
  }
  const rawTrace = getHeader(REQUEST_HEADERS, B3_TRACE_ID);
  if (rawTrace === null) return r;
  const rawSpan = getHeader(REQUEST_HEADERS, B3_SPAN_ID);
  const traceId = b3TraceId(rawTrace.trim());
  if (rawSpan === null || traceId.length == 0 || !isHexId(rawSpan.trim(), 16, false)) return r;
  r.traceId = traceId;
  r.spanId = rawSpan.trim().toLowerCase();
  const flags = getHeader(REQUEST_HEADERS, B3_FLAGS);
  if (flags !== null && flags.trim() == "1") r.sampled = 1;
  else {
    const s = b3Sampling(getHeader(REQUEST_HEADERS, B3_SAMPLED));
    if (s >= 0) r.sampled = s;
  }
  return r;
}

/**
 * Makes sure the request carries a valid traceparent; returns how, and (when `wantIds`: the access log
 * or a debug log line needs them) the trace and span ids it carries.
 */
export function ensureTraceContext(wantIds: bool): TraceInfo {
  const info = new TraceInfo();
  if (findHeader(REQUEST_HEADERS, TRACEPARENT) && isValidTraceparentAt(resultPtr, resultLen)) {
    if (wantIds) {
      info.traceId = String.UTF8.decodeUnsafe(resultPtr + 3, 32);
      info.spanId = String.UTF8.decodeUnsafe(resultPtr + 36, 16);
    }
    info.origin = TraceOrigin.Kept;
    return info;
  }
  const b3 = readB3();
  const flags = b3.sampled == 0 ? "-00" : "-01";
  removeHeader(REQUEST_HEADERS, TRACESTATE);
  if (b3.traceId.length > 0) {
    info.traceId = b3.traceId;
    info.spanId = b3.spanId;
    info.origin = TraceOrigin.FromB3;
    setHeader(REQUEST_HEADERS, TRACEPARENT, "00-" + info.traceId + "-" + info.spanId + flags);
    return info;
  }
  // A new trace, written straight into scratch memory: "00-" trace id "-" span id "-" flags (55 bytes).
  const ids = randomBytes(24);
  if (load<u64>(ids) == 0 && load<u64>(ids + 8) == 0) store<u8>(ids + 15, 1);
  if (load<u64>(ids + 16) == 0) store<u8>(ids + 23, 1);
  const out = SCRATCH;
  store<u8>(out, 0x30);
  store<u8>(out + 1, 0x30);
  store<u8>(out + 2, 0x2d);
  writeHex(out + 3, ids, 16);
  store<u8>(out + 35, 0x2d);
  writeHex(out + 36, ids + 16, 8);
  store<u8>(out + 52, 0x2d);
  store<u8>(out + 53, 0x30);
  store<u8>(out + 54, b3.sampled == 0 ? 0x30 : 0x31);
  setHeaderRaw(REQUEST_HEADERS, TRACEPARENT, out, 55);
  if (wantIds) {
    info.traceId = String.UTF8.decodeUnsafe(out + 3, 32);
    info.spanId = String.UTF8.decodeUnsafe(out + 36, 16);
  }
  info.origin = TraceOrigin.Created;
  return info;
}

/** Adds x-request-id (a random UUID v4) when absent; returns true when it added one. */
export function ensureRequestId(): bool {
  if (findHeader(REQUEST_HEADERS, REQUEST_ID) && resultLen > 0) return false;
  const ptr = randomBytes(16);
  store<u8>(ptr + 6, (load<u8>(ptr + 6) & 0x0f) | 0x40); // version 4
  store<u8>(ptr + 8, (load<u8>(ptr + 8) & 0x3f) | 0x80); // RFC 4122 variant
  // 8-4-4-4-12 hex digits (36 bytes).
  let out = writeHex(SCRATCH, ptr, 4);
  store<u8>(out, 0x2d);
  out = writeHex(out + 1, ptr + 4, 2);
  store<u8>(out, 0x2d);
  out = writeHex(out + 1, ptr + 6, 2);
  store<u8>(out, 0x2d);
  out = writeHex(out + 1, ptr + 8, 2);
  store<u8>(out, 0x2d);
  writeHex(out + 1, ptr + 10, 6);
  setHeaderRaw(REQUEST_HEADERS, REQUEST_ID, SCRATCH, 36);
  return true;
}
