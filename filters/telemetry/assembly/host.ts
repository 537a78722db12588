// The host calls the filter makes, declared here rather than through the SDK wrappers: those abort
// (CHECK_RESULT) on NotFound, and a missing property or header is normal request input here. Nothing
// in this file traps: every call reports failure by its return value.
//
// Results the host returns come in a buffer it allocated through the module's `malloc`: the scratch
// area below for results read in place, else a pinned buffer (see patches/README.md) that takeResult()
// unpins, after which the returned ArrayBuffer owns it.
import { malloc as sdkMalloc } from "@solo-io/proxy-runtime/proxy";

// @ts-ignore: decorator
@external("env", "proxy_get_property")
declare function proxy_get_property(pathPtr: usize, pathLen: usize, retPtr: usize, retLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize, retPtr: usize, retLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_header_map_pairs")
declare function proxy_get_header_map_pairs(mapType: u32, retPtr: usize, retLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_replace_header_map_value")
declare function proxy_replace_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize, valuePtr: usize, valueLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_remove_header_map_value")
declare function proxy_remove_header_map_value(mapType: u32, keyPtr: usize, keyLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_define_metric")
declare function proxy_define_metric(metricType: u32, namePtr: usize, nameLen: usize, idPtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_increment_metric")
declare function proxy_increment_metric(id: u32, delta: i64): u32;
// @ts-ignore: decorator
@external("env", "proxy_record_metric")
declare function proxy_record_metric(id: u32, value: u64): u32;
// @ts-ignore: decorator
@external("env", "proxy_call_foreign_function")
declare function proxy_call_foreign_function(namePtr: usize, nameLen: usize, argsPtr: usize, argsLen: usize, retPtr: usize, retLen: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_current_time_nanoseconds")
declare function proxy_get_current_time_nanoseconds(retPtr: usize): u32;
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
declare function random_get(ptr: usize, len: usize): u16;

export const OK: u32 = 0;
export const NOT_FOUND: u32 = 1;

export const REQUEST_HEADERS: u32 = 0;
export const RESPONSE_HEADERS: u32 = 2;

export const COUNTER: u32 = 0;
export const HISTOGRAM: u32 = 2;

// Out-parameters of host calls (static memory, no allocation).
const RET_PTR: usize = memory.data(8);
const RET_LEN: usize = memory.data(8);
const RET_U64: usize = memory.data(8);

const EMPTY = new ArrayBuffer(0);

// Results read in place. The ABI returns data only through the module's allocator: the host calls
// malloc, writes the bytes there and hands back the address. The SDK's malloc makes a pinned
// ArrayBuffer each time, which the GC must later unpin, trace and free; for results the filter reads
// once (an integer, a flag, a header value it compares or decodes) that is most of what a property or
// header read costs inside the module. So before such a call the filter arms a static scratch area,
// and malloc answers the call's one allocation with it when the result fits. A larger result still
// gets a buffer of its own, kept alive until the next call. Either way the bytes are at
// resultPtr / resultLen until the next host call that returns data.
const RESULT_SCRATCH_BYTES: usize = 4096;
const RESULT_SCRATCH: usize = memory.data(<i32>RESULT_SCRATCH_BYTES);
let scratchArmed = false;
let heldResult: ArrayBuffer = EMPTY;
export let resultPtr: usize = 0;
export let resultLen: usize = 0;

/**
 * The module's allocator, as the host sees it (exported in place of the SDK's): the armed scratch
 * area for the one result of an armed call, else the SDK's pinned buffer.
 */
export function malloc(size: i32): usize {
  if (scratchArmed && size >= 0 && <usize>size <= RESULT_SCRATCH_BYTES) {
    scratchArmed = false;
    return RESULT_SCRATCH;
  }
  return sdkMalloc(size);
}

function beginResult(): void {
  store<u32>(RET_PTR, 0);
  store<u32>(RET_LEN, 0);
  heldResult = EMPTY;
  scratchArmed = true;
}

/** Ends an armed call: true when it succeeded; its bytes are then at resultPtr / resultLen. */
function endResult(status: u32): bool {
  scratchArmed = false;
  const ptr = <usize>load<u32>(RET_PTR);
  if (ptr != 0 && ptr != RESULT_SCRATCH) {
    // Too large for the scratch area: a buffer from the SDK's malloc, unpinned and kept until the next call.
    heldResult = changetype<ArrayBuffer>(ptr);
    __unpin(ptr);
  }
  resultPtr = ptr;
  resultLen = ptr == 0 ? 0 : <usize>load<u32>(RET_LEN);
  return status == OK;
}

/** The result buffer of the last (unarmed) call, unpinned (now owned by the returned reference). */
function takeResult(): ArrayBuffer {
  const ptr = load<u32>(RET_PTR);
  const len = load<u32>(RET_LEN);
  if (ptr == 0 || len == 0) return EMPTY;
  const buffer = changetype<ArrayBuffer>(<usize>ptr);
  __unpin(<usize>ptr);
  return buffer;
}

function clearResult(): void {
  store<u32>(RET_PTR, 0);
  store<u32>(RET_LEN, 0);
}

/** UTF-8 bytes of a property path: segments joined with NUL, as the ABI wants them. */
export function propertyPath(segments: string[]): ArrayBuffer {
  return String.UTF8.encode(segments.join("\0"));
}

/** Reads a property into resultPtr / resultLen; false when the host has none (NotFound, or any other failure). */
export function findProperty(path: ArrayBuffer): bool {
  beginResult();
  const p = __pin(changetype<usize>(path));
  const status = proxy_get_property(p, path.byteLength, RET_PTR, RET_LEN);
  __unpin(p);
  return endResult(status);
}

export function getPropertyString(path: ArrayBuffer): string | null {
  return findProperty(path) ? String.UTF8.decodeUnsafe(resultPtr, resultLen) : null;
}

/** An int/uint property (8 bytes LE); `fallback` when missing or not 8 bytes. */
export function getPropertyInt(path: ArrayBuffer, fallback: i64): i64 {
  if (!findProperty(path) || resultLen != 8) return fallback;
  return load<i64>(resultPtr);
}

/** A bool property (1 byte); false when missing. */
export function getPropertyBool(path: ArrayBuffer): bool {
  if (!findProperty(path) || resultLen < 1) return false;
  return load<u8>(resultPtr) != 0;
}

/**
 * A map property (pairs: u32 count, then count x (u32 key length, u32 value length), then each key and
 * value followed by a NUL). Returns [k0, v0, k1, v1, ...]; empty when missing or malformed.
 */
export function getPropertyPairs(path: ArrayBuffer): string[] {
  const out: string[] = [];
  if (!findProperty(path) || resultLen < 4) return out;
  const base = resultPtr;
  const size = resultLen;
  const count = <usize>load<u32>(base);
  if (count > (size - 4) / 8) return out;
  let data = base + 4 + count * 8;
  const end = base + size;
  for (let i: usize = 0; i < count; i++) {
    const keyLen = <usize>load<u32>(base + 4 + i * 8);
    const valueLen = <usize>load<u32>(base + 8 + i * 8);
    if (data + keyLen + 1 + valueLen + 1 > end) return [];
    out.push(String.UTF8.decodeUnsafe(data, keyLen));
    data += keyLen + 1;
    out.push(String.UTF8.decodeUnsafe(data, valueLen));
    data += valueLen + 1;
  }
  return out;
}

/** Reads a header value into resultPtr / resultLen; false when the header is absent. */
export function findHeader(mapType: u32, key: ArrayBuffer): bool {
  beginResult();
  return endResult(proxy_get_header_map_value(mapType, changetype<usize>(key), key.byteLength, RET_PTR, RET_LEN));
}

/** A header value; null when the header is absent. */
export function getHeader(mapType: u32, key: ArrayBuffer): string | null {
  return findHeader(mapType, key) ? String.UTF8.decodeUnsafe(resultPtr, resultLen) : null;
}

/** True when the last found result's bytes begin with `prefix`. */
export function resultStartsWith(prefix: ArrayBuffer): bool {
  const n = <usize>prefix.byteLength;
  return resultLen >= n && memory.compare(resultPtr, changetype<usize>(prefix), n) == 0;
}

/** A whole header map, serialized as pairs (see getPropertyPairs); null when unavailable. */
export function getHeaderPairs(mapType: u32): ArrayBuffer | null {
  clearResult();
  if (proxy_get_header_map_pairs(mapType, RET_PTR, RET_LEN) != OK) {
    takeResult();
    return null;
  }
  return takeResult();
}

/** Sets a header (replacing any value); the result is ignored (a map no longer writable is not an error here). */
export function setHeader(mapType: u32, key: ArrayBuffer, value: string): void {
  setHeaderBytes(mapType, key, String.UTF8.encode(value));
}

export function setHeaderBytes(mapType: u32, key: ArrayBuffer, value: ArrayBuffer): void {
  setHeaderRaw(mapType, key, changetype<usize>(value), <usize>value.byteLength);
}

/** Sets a header from `len` bytes at `ptr` (static scratch memory: no allocation). */
export function setHeaderRaw(mapType: u32, key: ArrayBuffer, ptr: usize, len: usize): void {
  proxy_replace_header_map_value(mapType, changetype<usize>(key), key.byteLength, ptr, len);
}

export function removeHeader(mapType: u32, key: ArrayBuffer): void {
  proxy_remove_header_map_value(mapType, changetype<usize>(key), key.byteLength);
}

/** Defines (or finds) a metric series; 0 when the host refuses the name (ids are never 0). */
export function defineMetric(metricType: u32, name: string): u32 {
  const bytes = String.UTF8.encode(name);
  store<u32>(RET_U64, 0);
  if (proxy_define_metric(metricType, changetype<usize>(bytes), bytes.byteLength, RET_U64) != OK) return 0;
  return load<u32>(RET_U64);
}

export function incrementMetric(id: u32, delta: i64): void {
  if (id != 0) proxy_increment_metric(id, delta);
}

/** proxy_record_metric called directly (the SDK's Histogram.record takes the id as an argument). */
export function recordMetric(id: u32, value: u64): void {
  if (id != 0) proxy_record_metric(id, value);
}

/**
 * Calls a host foreign function with `len` argument bytes at `ptr` (memory the caller keeps alive);
 * returns its status (NOT_FOUND when the host has no such function). The result, if any, is dropped.
 */
export function callForeignFunction(name: ArrayBuffer, ptr: usize, len: usize): u32 {
  clearResult();
  const status = proxy_call_foreign_function(changetype<usize>(name), name.byteLength, ptr, len, RET_PTR, RET_LEN);
  takeResult();
  return status;
}

/** Wall-clock nanoseconds since the epoch; 0 if the host cannot say. */
export function nowNanos(): u64 {
  store<u64>(RET_U64, 0);
  if (proxy_get_current_time_nanoseconds(RET_U64) != OK) return 0;
  return load<u64>(RET_U64);
}

// Random bytes come from a pool refilled by one random_get per RANDOM_POOL bytes: the host call has a
// fixed cost (microseconds in Node's randomFillSync) that would otherwise be paid twice per request.
const RANDOM_POOL: usize = 4096;
const RANDOM: usize = memory.data(<i32>RANDOM_POOL);
let randomUsed: usize = RANDOM_POOL;
// xorshift64* state: the fallback when the host has no random_get (never expected in wasmesh or Envoy).
let fallbackState: u64 = 0;

function refillRandom(): void {
  randomUsed = 0;
  if (random_get(RANDOM, RANDOM_POOL) == 0) return;
  if (fallbackState == 0) fallbackState = nowNanos() | 1;
  for (let i: usize = 0; i < RANDOM_POOL; i += 8) {
    let x = fallbackState;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    fallbackState = x;
    store<u64>(RANDOM + i, x * 0x2545F4914F6CDD1D);
  }
}

/** The address of `len` (<= 64) fresh random bytes, valid until the next call. */
export function randomBytes(len: usize): usize {
  if (randomUsed + len > RANDOM_POOL) refillRandom();
  const ptr = RANDOM + randomUsed;
  randomUsed += len;
  return ptr;
}
