// Retry decisions for one route (Envoy's retry_policy as Istio renders VirtualService `retries`):
// which responses and failures are retried, how long to back off, and the request-body bound past
// which a request can no longer be replayed.
import type { HeaderList } from '../../../wasm/src/index.ts';
import type { RetryPolicy } from '../../../mesh/src/proxy-config.ts';

/** Request body kept for replay (and mirroring); a body past this is not retried. */
export const RETRY_BODY_LIMIT = 64 * 1024;
/** Envoy's default jittered exponential backoff. */
export const BACKOFF_BASE_MS = 25;
export const BACKOFF_MAX_MS = 250;
/** Envoy host_selection_retry_max_attempts as Istio sets it: picks tried to find a host not tried before. */
export const HOST_SELECTION_ATTEMPTS = 5;

const ON_5XX = 1;
const ON_GATEWAY_ERROR = 2;
const ON_RESET = 4;
const ON_CONNECT_FAILURE = 8;
const ON_REFUSED_STREAM = 16;
const ON_RETRIABLE_4XX = 32;
const ON_STATUS_CODES = 64;
const ON_GRPC_CANCELLED = 128;
const ON_GRPC_DEADLINE = 256;
const ON_GRPC_RESOURCE = 512;
const ON_GRPC_UNAVAILABLE = 1024;

const BITS: Readonly<Record<string, number>> = {
  '5xx': ON_5XX,
  'gateway-error': ON_GATEWAY_ERROR,
  reset: ON_RESET,
  'connect-failure': ON_CONNECT_FAILURE,
  'refused-stream': ON_REFUSED_STREAM,
  'retriable-4xx': ON_RETRIABLE_4XX,
  'retriable-status-codes': ON_STATUS_CODES,
  cancelled: ON_GRPC_CANCELLED,
  'deadline-exceeded': ON_GRPC_DEADLINE,
  'resource-exhausted': ON_GRPC_RESOURCE,
  unavailable: ON_GRPC_UNAVAILABLE,
};

/** The retry_on names this proxy understands (others are ignored, as Envoy ignores unknown ones). */
export const RETRY_ON_NAMES: readonly string[] = Object.keys(BITS);

/** A RetryPolicy turned into bit tests, built once per policy object. */
export class CompiledRetryPolicy {
  readonly numRetries: number;
  readonly perTryTimeoutMs: number;
  readonly #on: number;
  readonly #codes: ReadonlySet<number>;

  constructor(policy: RetryPolicy) {
    this.numRetries = Math.max(0, Math.floor(policy.attempts));
    this.perTryTimeoutMs = Math.max(0, policy.perTryTimeoutMs);
    let on = 0;
    for (const name of policy.retryOn) on |= BITS[name.trim()] ?? 0;
    this.#on = on;
    this.#codes = new Set(policy.retriableStatusCodes);
  }

  /** Whether a response with these headers is retried (decided on headers, as Envoy does). */
  retriableResponse(status: number, headers: HeaderList): boolean {
    const on = this.#on;
    if (status >= 500 && (on & ON_5XX) !== 0) return true;
    if ((status === 502 || status === 503 || status === 504) && (on & ON_GATEWAY_ERROR) !== 0) return true;
    if (status === 409 && (on & ON_RETRIABLE_4XX) !== 0) return true;
    if ((on & ON_STATUS_CODES) !== 0 && this.#codes.has(status)) return true;
    if ((on & (ON_GRPC_CANCELLED | ON_GRPC_DEADLINE | ON_GRPC_RESOURCE | ON_GRPC_UNAVAILABLE)) !== 0) {
      // gRPC errors before any message come as a trailers-only response: grpc-status in the headers.
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i] !== 'grpc-status') continue;
        switch (Number(headers[i + 1])) {
          case 1: return (on & ON_GRPC_CANCELLED) !== 0;
          case 4: return (on & ON_GRPC_DEADLINE) !== 0;
          case 8: return (on & ON_GRPC_RESOURCE) !== 0;
          case 14: return (on & ON_GRPC_UNAVAILABLE) !== 0;
          default: return false;
        }
      }
    }
    return false;
  }

  /**
   * Whether a failure before response headers is retried. `flag` is the upstream client's response
   * flag (UF: connect failure, UC: reset/disconnect); `refusedStream` for an HTTP/2 REFUSED_STREAM.
   * As in Envoy, 5xx, gateway-error and reset cover every reset, connect failures included.
   */
  retriableFailure(flag: string, refusedStream: boolean): boolean {
    const on = this.#on;
    if ((on & (ON_5XX | ON_GATEWAY_ERROR | ON_RESET)) !== 0) return true;
    if (flag === 'UF' && (on & ON_CONNECT_FAILURE) !== 0) return true;
    if (refusedStream && (on & ON_REFUSED_STREAM) !== 0) return true;
    return false;
  }

  /** Whether a per-try timeout is retried (Envoy: under 5xx, gateway-error or reset). */
  retriableTimeout(): boolean {
    return (this.#on & (ON_5XX | ON_GATEWAY_ERROR | ON_RESET)) !== 0;
  }
}

const compiled = new WeakMap<RetryPolicy, CompiledRetryPolicy>();

/** The compiled policy (cached per config object); undefined when the route does not retry at all. */
export function compileRetryPolicy(policy: RetryPolicy | undefined): CompiledRetryPolicy | undefined {
  if (policy === undefined) return undefined;
  let c = compiled.get(policy);
  if (c === undefined) {
    c = new CompiledRetryPolicy(policy);
    compiled.set(policy, c);
  }
  return c.numRetries > 0 || c.perTryTimeoutMs > 0 ? c : undefined;
}

/**
 * Envoy's jittered exponential backoff: retry `n` (1-based) waits a random time in
 * [0, min((2^n - 1) * base, max)).
 */
export function backoffMs(n: number, random = Math.random()): number {
  const upper = Math.min((2 ** Math.min(n, 20) - 1) * BACKOFF_BASE_MS, BACKOFF_MAX_MS);
  return Math.floor(random * upper);
}

/** True for an HTTP/2 stream reset with REFUSED_STREAM (safe to retry: the server did not process it). */
export function isRefusedStream(err: Error): boolean {
  const e = err as Error & { rstCode?: number };
  return e.rstCode === 7 || err.message.includes('NGHTTP2_REFUSED_STREAM');
}
