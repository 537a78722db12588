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
/** WASI random_get refuses larger requests (cpp-host). */
export const MAX_RANDOM_BYTES = 64 * 1024;
/** Body bytes a stream buffers for a filter that stops iteration; past it the stream fails (413 / 500). */
export const DEFAULT_MAX_BUFFERED_BODY_BYTES = 1024 * 1024;
/** Shared-queue items kept per queue before enqueue reports failure. */
export const MAX_SHARED_QUEUE_ITEMS = 10000;
/** VM replacement backoff after a trap: first retry at once, then doubling up to the cap. */
export const VM_RESTART_BACKOFF_INITIAL_MS = 100;
export const VM_RESTART_BACKOFF_MAX_MS = 30_000;
/** Histogram buckets for module-defined histograms (Envoy's default buckets, in the unit the module records). */
export const DEFAULT_HISTOGRAM_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000] as const;
