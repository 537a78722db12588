// Host calls the filter makes directly, written so that nothing a request (or a JWKS server) sends can
// abort the VM: the SDK's wrappers abort on any non-OK result, which is normal here (a header that is
// absent, a stream that went away while it waited for keys). Blobs the host returns were allocated
// through the SDK's malloc, which pins them; taking one back unpins it, as the SDK's wrappers do.
import * as imports from "@solo-io/proxy-runtime/assembly/imports";
import { free } from "@solo-io/proxy-runtime/assembly/malloc";
import { define_metric, MetricTypeValues } from "@solo-io/proxy-runtime/assembly/runtime";
import { WasmResultValues } from "@solo-io/proxy-runtime";

// @ts-ignore: decorator
@external("env", "proxy_set_tick_period_milliseconds")
declare function proxy_set_tick_period_milliseconds(period: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_set_effective_context")
declare function proxy_set_effective_context(context_id: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_continue_stream")
declare function proxy_continue_stream(stream_type: u32): u32;

const RET = memory.data(8, 4);
const TIME = memory.data(8, 8);
const TOKEN = memory.data(4, 4);

export const REQUEST_HEADERS: i32 = 0;
export const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
const HTTP_CALL_RESPONSE_BODY: i32 = 4;

function takeReturned(): ArrayBuffer {
  const ptr = load<usize>(RET);
  const len = load<u32>(RET, 4);
  if (ptr == 0 || len == 0) return new ArrayBuffer(0);
  const buffer = changetype<ArrayBuffer>(ptr);
  free(ptr);
  return buffer;
}

/** A header of `map` (name lowercase, UTF-8), or null when absent. */
export function getHeader(map: i32, name: ArrayBuffer): string | null {
  store<u64>(RET, 0);
  const r = imports.proxy_get_header_map_value(map, changetype<usize>(name), name.byteLength, RET, RET + 4);
  if (r != WasmResultValues.Ok) return null;
  return String.UTF8.decode(takeReturned());
}

export function removeRequestHeader(name: ArrayBuffer): void {
  imports.proxy_remove_header_map_value(REQUEST_HEADERS, changetype<usize>(name), name.byteLength);
}

export function replaceRequestHeader(name: ArrayBuffer, value: string): void {
  const v = String.UTF8.encode(value);
  imports.proxy_replace_header_map_value(REQUEST_HEADERS, changetype<usize>(name), name.byteLength, changetype<usize>(v), v.byteLength);
}

/** Sets a property (the stream's filter state when called in a stream). */
export function setProperty(path: ArrayBuffer, value: ArrayBuffer): bool {
  return imports.proxy_set_property(changetype<usize>(path), path.byteLength, changetype<usize>(value), value.byteLength) == WasmResultValues.Ok;
}

/** The body of the HTTP call response being delivered, at most `max` bytes (null past it). */
export function callResponseBody(size: u32, max: u32): ArrayBuffer | null {
  if (size > max) return null;
  if (size == 0) return new ArrayBuffer(0);
  store<u64>(RET, 0);
  const r = imports.proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, RET, RET + 4);
  if (r != WasmResultValues.Ok) return null;
  return takeReturned();
}

/**
 * proxy_http_call: returns the token, or 0 when the host refused the call (unknown cluster, bad
 * headers). `pairs` are serialized header pairs (see encodePairs).
 */
export function httpCall(cluster: string, pairs: ArrayBuffer, timeoutMs: u32): u32 {
  const c = String.UTF8.encode(cluster);
  store<u32>(TOKEN, 0);
  const empty = new ArrayBuffer(0);
  const r = imports.proxy_http_call(changetype<usize>(c), c.byteLength, changetype<usize>(pairs), pairs.byteLength,
    changetype<usize>(empty), 0, changetype<usize>(empty), 0, timeoutMs, TOKEN);
  if (r != WasmResultValues.Ok) return 0;
  return load<u32>(TOKEN);
}

/** Header pairs in the ABI's serialized form. */
export function encodePairs(list: string[]): ArrayBuffer {
  const n = list.length >> 1;
  const encoded: ArrayBuffer[] = [];
  let size = 4 + 8 * n;
  for (let i = 0; i < list.length; i++) {
    const b = String.UTF8.encode(list[i]);
    encoded.push(b);
    size += b.byteLength + 1;
  }
  const out = new ArrayBuffer(size);
  const base = changetype<usize>(out);
  store<u32>(base, n);
  let at = base + 4 + 8 * n;
  for (let i = 0; i < encoded.length; i++) {
    const b = encoded[i];
    store<u32>(base + 4 + 4 * i, b.byteLength);
    memory.copy(at, changetype<usize>(b), b.byteLength);
    at += b.byteLength;
    store<u8>(at, 0);
    at += 1;
  }
  return out;
}

/**
 * Calls a foreign function; the result bytes, or null with the status in `lastForeignStatus`.
 */
export let lastForeignStatus: i32 = 0;
export function callForeign(name: ArrayBuffer, args: ArrayBuffer): ArrayBuffer | null {
  store<u64>(RET, 0);
  const r = imports.proxy_call_foreign_function(changetype<usize>(name), name.byteLength, changetype<usize>(args), args.byteLength, RET, RET + 4);
  lastForeignStatus = r;
  if (r != WasmResultValues.Ok) return null;
  return takeReturned();
}

/** Wall-clock nanoseconds; 0 if the host refuses. */
export function nowNanos(): u64 {
  if (imports.proxy_get_current_time_nanoseconds(TIME) != WasmResultValues.Ok) return 0;
  return load<u64>(TIME);
}

export function setTickPeriod(ms: u32): bool {
  return proxy_set_tick_period_milliseconds(ms) == 0;
}

/** Makes `contextId` the context later host calls act on; false when that stream is gone. */
export function enterContext(contextId: u32): bool {
  return proxy_set_effective_context(contextId) == 0;
}

/** Resumes the request of the effective context. */
export function continueRequest(): bool {
  return proxy_continue_stream(0) == 0;
}

/** A counter defined once; a name the host refuses leaves it inert instead of aborting. */
export class Counter {
  id: u32 = 0;

  constructor(name: string) {
    const r = define_metric(MetricTypeValues.Counter, name);
    if (r.result == WasmResultValues.Ok) this.id = r.metric_id;
  }

  inc(): void {
    if (this.id != 0) imports.proxy_increment_metric(this.id, 1);
  }
}
