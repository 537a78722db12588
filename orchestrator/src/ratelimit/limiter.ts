// The counting core of the rate-limit service: Envoy's RLS v3 request in, its answer out, counted in
// Redis with lyft/ratelimit's semantics, so either service can stand in for the other:
//
// - A descriptor's limit is found by walking the configured tree of its domain entry by entry: a node
//   with the entry's key and value wins over a node with the key alone (which counts each value on
//   its own); the limit is the one on the node the last entry lands on. A descriptor that carries a
//   `limit` (RateLimitOverride) uses that instead. No limit: OK, nothing counted.
// - Fixed windows: the counter of a descriptor is the Redis key
//   `<domain>_<key1>_<value1>_..._<keyN>_<valueN>_<window start, unix seconds>`, incremented by the hits
//   (the descriptor's hits_addend, else the request's, 0 meaning 1) and given the unit as its expiry
//   when the increment created it; every counter of a request is counted by one Lua script (EVALSHA:
//   INCRBY, and EXPIRE on a new counter, for each), one command and one round trip, atomic as the
//   MULTI of INCRBY + EXPIRE it replaces (which cost 4 commands and 5 replies per call).
// - Over the limit when the count after the increment passes requests_per_unit; shadow_mode limits
//   count and report but answer OK. The overall code is OVER_LIMIT when any descriptor is.
// - Answers carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (draft IETF headers, as
//   lyft's LIMIT_RESPONSE_HEADERS_ENABLED) for the descriptor with the fewest requests left.
// - Redis unreachable or failing: the call fails with UNAVAILABLE (the proxy's failure mode decides).
import type { Redis } from 'ioredis';
import type { RateLimitServiceConfig, ServiceDescriptor, ServiceRateLimit } from '../../../mesh/src/translate/ratelimit.ts';
import type {
  DescriptorStatusMessage,
  HeaderValueMessage,
  RateLimitCode,
  RateLimitRequestMessage,
  RateLimitResponseMessage,
  RateLimitUnitName,
} from '../../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';

/** Seconds per unit (lyft/ratelimit's: a month is 30 days, a year 365). */
export const UNIT_SECONDS: Readonly<Record<RateLimitUnitName, number>> = {
  UNKNOWN: 0,
  SECOND: 1,
  MINUTE: 60,
  HOUR: 3600,
  DAY: 86400,
  WEEK: 604800,
  MONTH: 2592000,
  YEAR: 31536000,
};

export class RateLimitError extends Error {
  /** gRPC status: 3 INVALID_ARGUMENT (bad request), 14 UNAVAILABLE (Redis). */
  readonly grpcCode: number;
  readonly code: string;
  constructor(grpcCode: number, code: string, message: string) {
    super(message);
    this.grpcCode = grpcCode;
    this.code = code;
  }
}

interface Node {
  limit?: ServiceRateLimit;
  shadowMode: boolean;
  /** "key\u0000value" -> child; "key" alone (any value) -> child. */
  children: Map<string, Node>;
}

/** The configuration, compiled for lookups (immutable once built). */
export class LimitIndex {
  readonly #domains = new Map<string, Node>();

  constructor(config: RateLimitServiceConfig) {
    for (const [domain, descriptors] of Object.entries(config.domains)) {
      const root: Node = { shadowMode: false, children: new Map() };
      add(root, descriptors);
      this.#domains.set(domain, root);
    }
  }

  /** The limit for one descriptor's entries, or undefined. */
  find(domain: string, entries: readonly { key: string; value: string }[]): { limit: ServiceRateLimit; shadowMode: boolean } | undefined {
    let node = this.#domains.get(domain);
    for (const e of entries) {
      if (!node) return undefined;
      node = node.children.get(`${e.key}\u0000${e.value}`) ?? node.children.get(e.key);
    }
    return node?.limit ? { limit: node.limit, shadowMode: node.shadowMode } : undefined;
  }
}

function add(parent: Node, descriptors: readonly ServiceDescriptor[]): void {
  for (const d of descriptors) {
    const key = d.value !== undefined ? `${d.key}\u0000${d.value}` : d.key;
    let node = parent.children.get(key);
    if (!node) {
      node = { shadowMode: false, children: new Map() };
      parent.children.set(key, node);
    }
    if (d.rateLimit) node.limit = d.rateLimit;
    if (d.shadowMode) node.shadowMode = true;
    if (d.descriptors) add(node, d.descriptors);
  }
}

/** Per limit (its name, or "<domain>.<key>" for overrides): hits, over the limit, over but in shadow mode. */
export interface LimitStats {
  hits: number;
  overLimit: number;
  shadowMode: number;
}

export interface LimiterOptions {
  /** Add RateLimit-* headers to answers (default true). */
  responseHeaders?: boolean;
  /** Seconds since the epoch (tests move time); default the wall clock. */
  now?: () => number;
  /** Milliseconds the Redis round trip may take before the call fails with UNAVAILABLE (default 250). */
  redisTimeoutMs?: number;
}

interface Counted {
  index: number;
  limit: ServiceRateLimit;
  shadowMode: boolean;
  hits: number;
  key: string;
  unitSeconds: number;
  name: string;
}

/**
 * KEYS: the counters; ARGV: their hits, then their expiries (seconds). Returns the counts after the
 * increments. A counter gets its expiry when the increment made it (count equal to the hits), so a
 * window's key lives one unit from its first hit, as with lyft/ratelimit's INCRBY + EXPIRE.
 */
const COUNT_SCRIPT = `
local n = #KEYS
local out = {}
for i = 1, n do
  local hits = tonumber(ARGV[i])
  local count = redis.call('INCRBY', KEYS[i], hits)
  if count == hits then redis.call('EXPIRE', KEYS[i], ARGV[n + i]) end
  out[i] = count
end
return out
`;

type CountingRedis = Redis & { wasmeshCount(numKeys: number, ...args: (string | number)[]): Promise<number[]> };

export class RateLimiter {
  readonly #redis: CountingRedis;
  #index: LimitIndex;
  readonly #headers: boolean;
  readonly #now: () => number;
  readonly #timeoutMs: number;
  readonly stats = new Map<string, LimitStats>();
  /** Calls that failed because of Redis. */
  redisErrors = 0;

  constructor(redis: Redis, config: RateLimitServiceConfig, options: LimiterOptions = {}) {
    // defineCommand: EVALSHA, with EVAL when the script is not cached (a restarted Redis).
    if (typeof (redis as unknown as { wasmeshCount?: unknown }).wasmeshCount !== 'function') redis.defineCommand('wasmeshCount', { lua: COUNT_SCRIPT });
    this.#redis = redis as unknown as CountingRedis;
    this.#index = new LimitIndex(config);
    this.#headers = options.responseHeaders ?? true;
    this.#now = options.now ?? (() => Date.now() / 1000);
    this.#timeoutMs = options.redisTimeoutMs ?? 250;
  }

  /** A new configuration for the calls that start from now on. */
  setConfig(config: RateLimitServiceConfig): void {
    this.#index = new LimitIndex(config);
  }

  async shouldRateLimit(request: RateLimitRequestMessage): Promise<RateLimitResponseMessage> {
    if (!request.domain) throw new RateLimitError(3, 'WASMESH_RLS_BAD_REQUEST', 'rate limit domain must not be empty');
    if (!request.descriptors || request.descriptors.length === 0) throw new RateLimitError(3, 'WASMESH_RLS_BAD_REQUEST', 'rate limit descriptor list must not be empty');
    const now = Math.floor(this.#now());
    const index = this.#index;
    const requestHits = Math.max(1, request.hits_addend || 0);
    const statuses: DescriptorStatusMessage[] = request.descriptors.map(() => ({ code: 'OK', current_limit: null, limit_remaining: 0, duration_until_reset: null }));
    const counted: Counted[] = [];
    request.descriptors.forEach((d, i) => {
      const entries = d.entries ?? [];
      let found: { limit: ServiceRateLimit; shadowMode: boolean } | undefined;
      if (d.limit && d.limit.requests_per_unit > 0 && UNIT_SECONDS[d.limit.unit] > 0) {
        found = { limit: { requestsPerUnit: d.limit.requests_per_unit, unit: d.limit.unit as ServiceRateLimit['unit'] }, shadowMode: false };
      } else {
        found = index.find(request.domain, entries);
      }
      if (!found) return;
      const unitSeconds = UNIT_SECONDS[found.limit.unit as RateLimitUnitName];
      const window = Math.floor(now / unitSeconds) * unitSeconds;
      let key = request.domain;
      for (const e of entries) key += `_${e.key}_${e.value}`;
      key += `_${window}`;
      const hits = d.hits_addend ? d.hits_addend.value : requestHits;
      const name = found.limit.name ?? `${request.domain}.${entries.map((e) => e.key).join('.')}`;
      counted.push({ index: i, limit: found.limit, shadowMode: found.shadowMode, hits, key, unitSeconds, name });
    });
    let overall: RateLimitCode = 'OK';
    if (counted.length > 0) {
      const args: (string | number)[] = counted.map((c) => c.key);
      for (const c of counted) args.push(c.hits);
      for (const c of counted) args.push(c.unitSeconds);
      let results: number[];
      try {
        // Not ready (down, reconnecting): fail now. Otherwise bounded by our own timer: a command in
        // flight when the connection drops is not always settled by the client.
        if (this.#redis.status !== 'ready') throw new Error(`not connected (${this.#redis.status})`);
        results = await withTimeout(this.#redis.wasmeshCount(counted.length, ...args), this.#timeoutMs);
      } catch (err) {
        this.redisErrors++;
        throw new RateLimitError(14, 'WASMESH_RLS_REDIS', `redis: ${(err as Error).message}`);
      }
      if (!Array.isArray(results) || results.length !== counted.length) {
        this.redisErrors++;
        throw new RateLimitError(14, 'WASMESH_RLS_REDIS', 'redis: the counting script answered without a count per descriptor');
      }
      counted.forEach((c, j) => {
        const after = Number(results[j]);
        const limit = c.limit.requestsPerUnit;
        const over = after > limit;
        const stats = this.#statsFor(c.name);
        stats.hits += c.hits;
        const status = statuses[c.index]!;
        status.current_limit = { name: c.limit.name ?? '', requests_per_unit: limit, unit: c.limit.unit };
        status.limit_remaining = over ? 0 : limit - after;
        status.duration_until_reset = { seconds: c.unitSeconds - (now % c.unitSeconds), nanos: 0 };
        if (over && c.shadowMode) {
          stats.shadowMode += c.hits;
        } else if (over) {
          stats.overLimit += c.hits;
          status.code = 'OVER_LIMIT';
          overall = 'OVER_LIMIT';
        }
      });
    }
    return { overall_code: overall, statuses, response_headers_to_add: this.#headers ? rateLimitHeaders(statuses) : [], request_headers_to_add: [] };
  }

  #statsFor(name: string): LimitStats {
    let s = this.stats.get(name);
    if (!s) {
      s = { hits: 0, overLimit: 0, shadowMode: 0 };
      this.stats.set(name, s);
    }
    return s;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** RateLimit-Limit/-Remaining/-Reset for the status with a limit and the fewest requests left; none without limits. */
export function rateLimitHeaders(statuses: readonly DescriptorStatusMessage[]): HeaderValueMessage[] {
  let min: DescriptorStatusMessage | undefined;
  for (const s of statuses) {
    if (!s.current_limit) continue;
    if (!min || s.limit_remaining < min.limit_remaining) min = s;
  }
  if (!min) return [];
  return [
    { key: 'RateLimit-Limit', value: String(min.current_limit!.requests_per_unit) },
    { key: 'RateLimit-Remaining', value: String(min.limit_remaining) },
    { key: 'RateLimit-Reset', value: String(min.duration_until_reset?.seconds ?? 0) },
  ];
}
