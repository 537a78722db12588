// Host functions the filter calls directly. The SDK wraps these too, but its wrappers either abort on a
// non-OK result (get_current_time_nanoseconds, set_tick_period_milliseconds, the metric classes) or log
// at critical level (proxy_set_effective_context). A stream that went away while delayed is normal
// here, so the filter checks results itself. Declaring an import the SDK also declares is fine: both
// name the same env function.

// @ts-ignore: decorator
@external("env", "proxy_get_current_time_nanoseconds")
declare function proxy_get_current_time_nanoseconds(result: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_set_tick_period_milliseconds")
declare function proxy_set_tick_period_milliseconds(period: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_set_effective_context")
declare function proxy_set_effective_context(context_id: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_continue_stream")
declare function proxy_continue_stream(stream_type: u32): u32;

// @ts-ignore: decorator
@external("env", "proxy_define_metric")
declare function proxy_define_metric(metric_type: u32, name: usize, name_size: usize, result: usize): u32;

// @ts-ignore: decorator
@external("env", "proxy_increment_metric")
declare function proxy_increment_metric(metric_id: u32, offset: i64): u32;

const OK: u32 = 0;
const STREAM_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;

/** Scratch for host calls that write a result: 8 bytes, outside the GC heap. */
const SCRATCH: usize = memory.data(8);

/** Host clock in nanoseconds (0 if the host refuses, which only a broken host does). */
export function nowNs(): u64 {
  if (proxy_get_current_time_nanoseconds(SCRATCH) != OK) return 0;
  return load<u64>(SCRATCH);
}

export function setTickPeriod(ms: u32): bool {
  return proxy_set_tick_period_milliseconds(ms) == OK;
}

/** Makes `contextId` the context later host calls act on; false when the stream is gone. */
export function enterContext(contextId: u32): bool {
  return proxy_set_effective_context(contextId) == OK;
}

/** Resumes the request of the effective context. */
export function continueRequest(): bool {
  return proxy_continue_stream(STREAM_REQUEST) == OK;
}

/** Defines (or finds) a counter; -1 when the host refuses the name. */
export function defineCounter(name: string): i64 {
  const bytes = String.UTF8.encode(name);
  // Pinned for the call, as the SDK does (patches/README.md §3): the host reads the buffer.
  const ptr = __pin(changetype<usize>(bytes));
  const result = proxy_define_metric(METRIC_COUNTER, ptr, <usize>bytes.byteLength, SCRATCH);
  __unpin(ptr);
  if (result != OK) return -1;
  return <i64>load<u32>(SCRATCH);
}

export function incrementCounter(id: u32): void {
  proxy_increment_metric(id, 1);
}
