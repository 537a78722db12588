// The rate-limit service: Envoy's RateLimitService (RLS v3, ShouldRateLimit) over gRPC, counting in
// Redis (limiter.ts). Run by `wasmesh ratelimit` and, for the demo, inside the orchestrator. gRPC is
// served by grpc-unary-server.ts (node:http2), not @grpc/grpc-js's server: it is on every request's path.
//
// Binds loopback unless told otherwise: the service has no authentication of its own (Envoy's
// protocol has none; callers are the mesh's sidecars), and anyone who can call it can spend a
// client's quota. Redis is reached with a short command timeout and no offline queue, so a Redis that
// is down fails calls at once (UNAVAILABLE, the proxies' failure mode decides) instead of queueing
// them, and the client reconnects in the background (100 ms, growing to 1 s) to recover by itself.
import { Redis } from 'ioredis';
import type { RateLimitServiceConfig } from '../../../mesh/src/translate/ratelimit.ts';
import { RLS_METHOD, RLS_SERVICE, rateLimitServiceDefinition } from '../../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { RateLimitError, RateLimiter, type LimitStats, type LimiterOptions } from './limiter.ts';
import { GRPC_STATUS, GrpcError, startUnaryServer, type UnaryServer } from './grpc-unary-server.ts';

export interface RateLimitServerOptions extends LimiterOptions {
  /** host:port to listen on; default 127.0.0.1:0 (a free port). */
  listen?: string;
  /** redis://host:port[/db] */
  redisUrl: string;
  /** Limits to start with (setConfig replaces them). */
  config?: RateLimitServiceConfig;
  /** Milliseconds a Redis command may take before the call fails (default 250). */
  redisTimeoutMs?: number;
  /** Warnings (non-loopback listen address, Redis down/up). Default: stderr. */
  log?: (message: string) => void;
}

export interface RateLimitServer {
  readonly address: string;
  readonly port: number;
  readonly limiter: RateLimiter;
  /** New limits for calls that start from now on. */
  setConfig(config: RateLimitServiceConfig): void;
  /** Calls answered (any code) and failed. */
  readonly calls: { answered: number; failed: number };
  stats(): ReadonlyMap<string, LimitStats>;
  /** Stops taking calls, waits for those in flight (at most graceMs), closes Redis. */
  close(graceMs?: number): Promise<void>;
}

const LOOPBACK = /^(127\.[0-9.]+|localhost|\[?::1\]?)$/;

export async function startRateLimitServer(options: RateLimitServerOptions): Promise<RateLimitServer> {
  const log = options.log ?? ((m: string) => process.stderr.write(`wasmesh ratelimit: ${m}\n`));
  const listen = options.listen ?? '127.0.0.1:0';
  const host = listen.slice(0, listen.lastIndexOf(':'));
  if (!LOOPBACK.test(host)) log(`listening on ${listen}, beyond loopback: the service has no authentication, so anyone who reaches it can spend quota`);
  const redis = new Redis(options.redisUrl, {
    enableOfflineQueue: false,
    // The ready check (INFO) would itself be refused without the offline queue while reconnecting.
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.redisTimeoutMs ?? 250,
    connectTimeout: 1000,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    lazyConnect: true,
  });
  let redisDown = false;
  redis.on('error', (err: Error) => {
    if (!redisDown) log(`redis ${options.redisUrl}: ${err.message}; calls fail with UNAVAILABLE until it is back`);
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) log(`redis ${options.redisUrl}: connected again`);
    redisDown = false;
  });
  // Start even when Redis is down: calls fail (the proxies' failure mode decides) until it comes up.
  await redis.connect().catch(() => {});
  const limiter = new RateLimiter(redis, options.config ?? { domains: {} }, options);
  const calls = { answered: 0, failed: 0 };
  const def = rateLimitServiceDefinition();
  // gRPC over node:http2 (grpc-unary-server.ts): the one unary method, without @grpc/grpc-js's
  // server machinery, which cost about 0.3 ms of CPU per call here.
  const shouldRateLimit = async (message: Buffer): Promise<Buffer> => {
    let request;
    try {
      request = def.decodeRequest(message);
    } catch (err) {
      calls.failed++;
      throw new GrpcError(GRPC_STATUS.INTERNAL, `cannot decode the RateLimitRequest: ${(err as Error).message}`);
    }
    try {
      const response = await limiter.shouldRateLimit(request);
      calls.answered++;
      return def.encodeResponse(response);
    } catch (err) {
      calls.failed++;
      const e = err instanceof RateLimitError ? err : new RateLimitError(13, 'WASMESH_RLS_INTERNAL', String(err));
      throw new GrpcError(e.grpcCode, e.message);
    }
  };
  let server: UnaryServer;
  try {
    const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
    server = await startUnaryServer(host.replace(/^\[|\]$/g, ''), port, { methods: new Map([[`/${RLS_SERVICE}/${RLS_METHOD}`, shouldRateLimit]]) });
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot listen on ${listen}: ${(err as Error).message}`);
  }
  const port = server.port;
  const address = `${host}:${port}`;
  return {
    address,
    port,
    limiter,
    calls,
    setConfig: (config) => limiter.setConfig(config),
    stats: () => limiter.stats,
    close: async (graceMs = 1000) => {
      await server.close(graceMs);
      redis.disconnect();
    },
  };
}
