// Every bound the runtime enforces, in one place.

export const WASM_PAGE_BYTES = 65536;
/** Default bound on one VM's linear memory. */
export const DEFAULT_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;
/** A module larger than this is refused before compiling. */
export const MAX_MODULE_BYTES = 64 * 1024 * 1024;
/** Serialized header maps: cpp-host's limits (pairs_util). */
export const MAX_PAIRS = 1024;
export const MAX_PAIRS_BYTES = 1024 * 1024;
/** A log line longer than this is truncated. */
export const MAX_LOG_MESSAGE_BYTES = 64 * 1024;
/** Arguments of one proxy_call_foreign_function; larger ones are refused (BadArgument) before they are copied. */
export const MAX_FOREIGN_ARGS_BYTES = 1024 * 1024;
/** Distinct keys one stream's filter state (proxy_set_property) may hold. */
export const MAX_FILTER_STATE_ENTRIES = 256;
/** WASI random_get refuses larger requests (cpp-host). */
export const MAX_RANDOM_BYTES = 64 * 1024;
/**
 * What a filter may write, by default: the header block of a request or a response (names, values and
 * 4 bytes of framing per header, as on the wire; the proxy passes its listener's limits) and the number
 * of headers. Bodies a filter writes obey the plugin's buffer bound (maxBufferedBodyBytes).
 */
export const DEFAULT_MAX_REQUEST_HEADER_BYTES = 16 * 1024;
export const DEFAULT_MAX_RESPONSE_HEADER_BYTES = 16 * 1024;
export const DEFAULT_MAX_HEADER_COUNT = 1024;
/** Body bytes a stream buffers for a filter that stops iteration; past it the stream fails (413 / 500). */
export const DEFAULT_MAX_BUFFERED_BODY_BYTES = 1024 * 1024;
/** Shared-queue items kept per queue before enqueue reports failure. */
export const MAX_SHARED_QUEUE_ITEMS = 10000;
/**
 * CPU budget per guest callback, in fuel units (about one wasm instruction each, counted statically, so
 * a branch not taken counts too; a host call costs 300 more). On the bench machine a unit is about
 * 0.15-0.3 ns of guest time, so this stops an endless loop after 150-300 ms (longer on a loaded machine); the built-in filters'
 * worst callback uses about a thousandth of it (bench/RESULTS.md).
 */
export const DEFAULT_CPU_BUDGET = 1_000_000_000;
/**
 * Budget for module startup (_initialize/_start, on_vm_start, on_configure): parsing a large config is
 * heavy (the policy filter with 1000 policies uses about 1.9 G units).
 */
export const DEFAULT_STARTUP_CPU_BUDGET = 20_000_000_000;
/** Largest budget (the counter is an i64, set from a JS number). */
export const MAX_CPU_BUDGET = Number.MAX_SAFE_INTEGER;
/**
 * Wall-clock limit on host functions within one callback, per fuel unit of its budget: host work
 * (copies, I/O, callouts) is not counted in fuel beyond a call's fixed price, so a loop of host calls
 * is stopped by time instead (1 G units: 500 ms).
 */
export const HOST_TIME_NS_PER_FUEL = 0.5;
/**
 * VM replacement after a trap: at once, unless a fresh VM failed before finishing a stream or more than
 * VM_RESTARTS_PER_SECOND VMs failed within a second; then a backoff from the initial value, doubling up
 * to the cap.
 */
export const VM_RESTARTS_PER_SECOND = 20;
export const VM_RESTART_BACKOFF_INITIAL_MS = 100;
export const VM_RESTART_BACKOFF_MAX_MS = 30_000;
/**
 * VMs one plugin may run in its pool (PluginConfig.vms, WasmPlugin spec.vms). Each is a whole instance of
 * the module (its own linear memory, root context and timers), so the bound keeps a config from asking
 * for gigabytes; Envoy runs one per worker thread, and few proxies run more than 16 workers.
 */
export const MAX_PLUGIN_VMS = 16;
/** Histogram buckets for module-defined histograms (Envoy's default buckets, in the unit the module records). */
export const DEFAULT_HISTOGRAM_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000] as const;
