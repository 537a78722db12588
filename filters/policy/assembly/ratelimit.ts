// Local rate limiting: token buckets kept in proxy-wasm shared data, so every VM with the same vm_id
// (every worker of the proxy) draws from the same bucket. A bucket's state is 16 bytes, the last
// refill time (ns) and the tokens left; refills are computed lazily from the elapsed time when a
// request arrives, and the write is a compare-and-swap, retried a bounded number of times.
import { get_shared_data, set_shared_data, WasmResultValues, log, LogLevelValues } from "@solo-io/proxy-runtime";
import { Counter } from "./host";

export const enum DescriptorKind {
  /** One bucket per value of a request header; requests without it are not limited by this bucket. */
  Header = 0,
  /** One bucket per peer principal; requests without one are not limited by this bucket. */
  SourcePrincipal = 1,
  /** One bucket for requests whose (normalized) path starts with the prefix. */
  PathPrefix = 2,
  /** One bucket for every request. */
  Global = 3,
}

export class Bucket {
  name: string;
  kind: DescriptorKind;
  /** Header name (lowercase) or path prefix. */
  arg: string = "";
  /** The header name, UTF-8, for the host call. */
  argBytes: ArrayBuffer = new ArrayBuffer(0);
  maxTokens: i64 = 1;
  tokensPerFill: i64 = 1;
  fillIntervalNs: u64 = 1_000_000_000;
  ok: Counter | null = null;
  over: Counter | null = null;

  constructor(name: string, kind: DescriptorKind) {
    this.name = name;
    this.kind = kind;
  }

  /** The shared-data key of this bucket for one descriptor value. */
  key(value: string): string {
    return "wasmesh.policy.ratelimit/" + this.name + "/" + value;
  }
}

/** Compare-and-swap attempts before giving up (and letting the request through). */
const MAX_CAS_ATTEMPTS = 16;
const STATE_BYTES = 16;

export class TakeResult {
  allowed: bool = true;
  /** Tokens left after this request (0 when over the limit). */
  remaining: i64 = 0;
  /** Nanoseconds until the next refill (when over the limit). */
  resetNs: u64 = 0;
}

/** Takes one token from `bucket`'s bucket for `value`, at time `now` (ns). */
export function takeToken(bucket: Bucket, value: string, now: u64, out: TakeResult): void {
  const key = bucket.key(value);
  const max = bucket.maxTokens;
  const perFill = bucket.tokensPerFill;
  const interval = bucket.fillIntervalNs;
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const got = get_shared_data(key);
    let tokens: i64 = max;
    let last: u64 = now;
    let cas: u32 = 0;
    if (got.result == WasmResultValues.Ok) {
      cas = got.cas;
      if (got.value.byteLength == STATE_BYTES) {
        const p = changetype<usize>(got.value);
        last = load<u64>(p);
        tokens = load<i64>(p, 8);
      }
    } else if (got.result != WasmResultValues.NotFound) {
      break; // the host cannot give us shared data: do not limit
    }
    // Lazy refill: whole intervals since the last refill, each adding tokensPerFill.
    if (now > last) {
      const fills = (now - last) / interval;
      if (fills > 0) {
        const missing = max - tokens;
        if (missing <= 0 || fills >= <u64>((missing + perFill - 1) / perFill)) tokens = max;
        else tokens += <i64>fills * perFill;
        last += fills * interval;
      }
    }
    if (tokens > max) tokens = max; // maxTokens lowered by a new configuration
    if (tokens < 1) {
      out.allowed = false;
      out.remaining = 0;
      out.resetNs = now >= last ? interval - (now - last) % interval : interval;
      return;
    }
    tokens -= 1;
    const state = new ArrayBuffer(STATE_BYTES);
    const p = changetype<usize>(state);
    store<u64>(p, last);
    store<i64>(p, tokens, 8);
    const r = set_shared_data(key, state, cas);
    if (r == WasmResultValues.Ok) {
      out.allowed = true;
      out.remaining = tokens;
      return;
    }
    if (r != WasmResultValues.CasMismatch) break;
    // Another VM updated the bucket between our read and write: read it again.
  }
  log(LogLevelValues.warn, "policy: rate limit bucket \"" + bucket.name + "\": shared data unavailable or contended; request not limited");
  out.allowed = true;
  out.remaining = 0;
}

