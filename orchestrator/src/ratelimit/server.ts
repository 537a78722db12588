// The rate-limit service: Envoy's RateLimitService (RLS v3, ShouldRateLimit) over gRPC, counting in
// Redis (limiter.ts). Run by `wasmesh ratelimit` and, for the demo, inside the orchestrator.
//
// Binds loopback unless told otherwise: the service has no authentication of its own (Envoy's
// protocol has none; callers are the mesh's sidecars), and anyone who can call it can spend a
// client's quota. Redis is reached with a short command timeout and no offline queue, so a Redis that
// is down fails calls at once (UNAVAILABLE, the proxies' failure mode decides) instead of queueing
// them, and the client reconnects in the background (100 ms, growing to 1 s) to recover by itself.
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import type { RateLimitServiceConfig } from '../../../mesh/src/translate/ratelimit.ts';
import { rateLimitServiceDefinition, type RateLimitRequestMessage, type RateLimitResponseMessage } from '../../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { RateLimitError, RateLimiter, type LimitStats, type LimiterOptions } from './limiter.ts';

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
  const server = new grpc.Server();
  const def = rateLimitServiceDefinition();
  server.addService(def.service, {
    ShouldRateLimit: (
      call: grpc.ServerUnaryCall<RateLimitRequestMessage, RateLimitResponseMessage>,
      callback: grpc.sendUnaryData<RateLimitResponseMessage>,
    ) => {
      limiter.shouldRateLimit(call.request).then(
        (response) => {
          calls.answered++;
          callback(null, response);
        },
        (err: unknown) => {
          calls.failed++;
          const e = err instanceof RateLimitError ? err : new RateLimitError(13, 'WASMESH_RLS_INTERNAL', String(err));
          callback({ code: e.grpcCode, details: e.message } as grpc.ServiceError);
        },
      );
    },
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot listen on ${listen}: ${(err as Error).message}`);
  }
  const address = `${host}:${port}`;
  return {
    address,
    port,
    limiter,
    calls,
    setConfig: (config) => limiter.setConfig(config),
    stats: () => limiter.stats,
    close: async (graceMs = 1000) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      redis.disconnect();
    },
  };
}
