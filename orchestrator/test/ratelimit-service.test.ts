// The rate-limit service over real gRPC, counting in a real redis-server: units and windows,
// shadow_mode, hits_addend, RateLimit-* headers, the descriptor tree, overrides, bad requests, and
// Redis going away and coming back.
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { RateLimitServiceConfig } from '../../mesh/src/translate/ratelimit.ts';
import { rateLimitServiceDefinition, type RateLimitRequestMessage, type RateLimitResponseMessage, type RateLimitServiceClient } from '../../schemas/proto/envoy/service/ratelimit/v3/rls.ts';
import { startRateLimitServer, type RateLimitServer } from '../src/ratelimit/server.ts';
import { TestRedis, ensureRedis, reportRedisSkip } from './support/redis.ts';

const redisBin = ensureRedis();

const CONFIG: RateLimitServiceConfig = {
  domains: {
    edge: [
      { key: 'per_second', rateLimit: { requestsPerUnit: 3, unit: 'SECOND', name: 'per-second' } },
      { key: 'per_minute', rateLimit: { requestsPerUnit: 3, unit: 'MINUTE' } },
      { key: 'per_hour', rateLimit: { requestsPerUnit: 3, unit: 'HOUR' } },
      { key: 'per_day', rateLimit: { requestsPerUnit: 3, unit: 'DAY' } },
      { key: 'shadow', rateLimit: { requestsPerUnit: 1, unit: 'MINUTE', name: 'shadow' }, shadowMode: true },
      { key: 'big', rateLimit: { requestsPerUnit: 10, unit: 'MINUTE' } },
      {
        key: 'user',
        rateLimit: { requestsPerUnit: 2, unit: 'MINUTE', name: 'any-user' },
        descriptors: [{ key: 'path', value: '/cheap', rateLimit: { requestsPerUnit: 100, unit: 'MINUTE', name: 'cheap' } }],
      },
      { key: 'user', value: 'vip', rateLimit: { requestsPerUnit: 5, unit: 'MINUTE', name: 'vip' } },
    ],
  },
};

let redis: TestRedis;
let server: RateLimitServer;
let client: RateLimitServiceClient;
let direct: Redis;
/** The service's clock (seconds); tests move it to cross windows. */
let clock = 1_700_000_000;

if (!redisBin.bin) {
  reportRedisSkip('the rate-limit service tests', redisBin.reason);
} else {
  test.before(async () => {
    redis = await TestRedis.start(redisBin.bin!);
    server = await startRateLimitServer({ redisUrl: redis.url, config: CONFIG, now: () => clock, log: () => {} });
    const def = rateLimitServiceDefinition();
    client = new def.Client(server.address, grpc.credentials.createInsecure());
    direct = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    direct.on('error', () => {}); // Redis is killed on purpose below
    await direct.connect();
  });

  test.after(async () => {
    client?.close();
    direct?.disconnect();
    await server?.close();
    await redis?.stop();
  });

  test.before.each(async () => {
    if (redis.running) await direct.flushall();
  });

  test('SECOND: requests_per_unit pass in a window, the next is OVER_LIMIT; the next window starts over', async () => {
    clock = 1_700_000_000.2;
    for (let i = 1; i <= 3; i++) {
      const r = await call('edge', [[['per_second', 'x']]]);
      assert.is(r.overall_code, 'OK', `request ${i}`);
      assert.is(r.statuses[0]!.limit_remaining, 3 - i);
      assert.equal(r.statuses[0]!.current_limit, { name: 'per-second', requests_per_unit: 3, unit: 'SECOND' });
      assert.equal(r.statuses[0]!.duration_until_reset, { seconds: 1, nanos: 0 });
    }
    const over = await call('edge', [[['per_second', 'x']]]);
    assert.is(over.overall_code, 'OVER_LIMIT');
    assert.is(over.statuses[0]!.code, 'OVER_LIMIT');
    assert.is(over.statuses[0]!.limit_remaining, 0);
    clock += 1;
    assert.is((await call('edge', [[['per_second', 'x']]])).overall_code, 'OK', 'a new window');
  });

  test('MINUTE, HOUR, DAY: fixed windows keyed by descriptor and window start, expiring with the unit', async () => {
    // 1_700_000_000 is 22:13:20 UTC: 40 s left in its minute, 2800 s in its hour, 6400 s in its day.
    clock = 1_700_000_000;
    const cases: [string, number, number][] = [['per_minute', 60, 40], ['per_hour', 3600, 2800], ['per_day', 86400, 6400]];
    for (const [key, unit, left] of cases) {
      for (let i = 0; i < 3; i++) assert.is((await call('edge', [[[key, 'a']]])).overall_code, 'OK', key);
      const over = await call('edge', [[[key, 'a']]]);
      assert.is(over.overall_code, 'OVER_LIMIT', key);
      assert.is(over.statuses[0]!.duration_until_reset?.seconds, left, key);
      const start = Math.floor(clock / unit) * unit;
      const redisKey = `edge_${key}_a_${start}`;
      assert.is(await direct.get(redisKey), '4', `${redisKey} counts every hit`);
      const ttl = await direct.ttl(redisKey);
      assert.ok(ttl > unit - 5 && ttl <= unit, `${redisKey} expires with its unit (ttl ${ttl})`);
      assert.is((await call('edge', [[[key, 'b']]])).overall_code, 'OK', 'another value has its own counter');
    }
    clock += 40; // the next minute, same hour and day
    assert.is((await call('edge', [[['per_minute', 'a']]])).overall_code, 'OK');
    assert.is((await call('edge', [[['per_hour', 'a']]])).overall_code, 'OVER_LIMIT');
    assert.is((await call('edge', [[['per_day', 'a']]])).overall_code, 'OVER_LIMIT');
  });

  test('shadow_mode: counted and reported, never OVER_LIMIT', async () => {
    clock = 1_700_000_000;
    assert.is((await call('edge', [[['shadow', 'u']]])).overall_code, 'OK');
    const r = await call('edge', [[['shadow', 'u']]]);
    assert.is(r.overall_code, 'OK');
    assert.is(r.statuses[0]!.code, 'OK');
    assert.is(r.statuses[0]!.limit_remaining, 0);
    assert.is(server.stats().get('shadow')?.shadowMode, 1);
    assert.is(server.stats().get('shadow')?.overLimit, 0);
  });

  test('hits_addend: the request adds N (0 counts as 1); a descriptor hits_addend wins over the request', async () => {
    clock = 1_700_000_000;
    let r = await call('edge', [[['big', 'h']]], 4);
    assert.is(r.statuses[0]!.limit_remaining, 6);
    r = await call('edge', [[['big', 'h']]], 6);
    assert.is(r.overall_code, 'OK');
    assert.is(r.statuses[0]!.limit_remaining, 0);
    r = await call('edge', [[['big', 'h']]], 0);
    assert.is(r.overall_code, 'OVER_LIMIT', '0 counts as 1');
    const req: Partial<RateLimitRequestMessage> = {
      domain: 'edge',
      hits_addend: 7,
      descriptors: [{ entries: [{ key: 'big', value: 'd' }], limit: null, hits_addend: { value: 2 } }],
    };
    r = await raw(req);
    assert.is(r.statuses[0]!.limit_remaining, 8, 'the descriptor adds 2, not 7');
    assert.is(await direct.get(`edge_big_d_${Math.floor(clock / 60) * 60}`), '2');
  });

  test('RateLimit-* headers name the descriptor with the fewest requests left; none without a limit', async () => {
    clock = 1_700_000_000;
    const r = await call('edge', [[['big', 'z']], [['per_minute', 'z']], [['unknown', 'z']]]);
    assert.equal(
      r.response_headers_to_add.map((h) => [h.key, h.value]),
      [['RateLimit-Limit', '3'], ['RateLimit-Remaining', '2'], ['RateLimit-Reset', '40']],
    );
    assert.is(r.statuses[2]!.current_limit, null, 'no limit for an unknown descriptor');
    assert.is(r.statuses[2]!.code, 'OK');
    assert.equal((await call('edge', [[['unknown', 'z']]])).response_headers_to_add, []);
  });

  test('the descriptor tree: key and value win over the key alone; nested entries; overrides; unknown domains pass', async () => {
    clock = 1_700_000_000;
    assert.is((await call('edge', [[['user', 'vip']]])).statuses[0]!.current_limit?.name, 'vip');
    assert.is((await call('edge', [[['user', 'bob']]])).statuses[0]!.current_limit?.name, 'any-user');
    assert.is((await call('edge', [[['user', 'bob'], ['path', '/cheap']]])).statuses[0]!.current_limit?.name, 'cheap');
    assert.is((await call('edge', [[['user', 'bob'], ['path', '/other']]])).statuses[0]!.current_limit, null, 'no node for the second entry');
    const overridden = await raw({ domain: 'edge', descriptors: [{ entries: [{ key: 'user', value: 'carol' }], limit: { requests_per_unit: 1, unit: 'HOUR' }, hits_addend: null }] });
    assert.equal(overridden.statuses[0]!.current_limit, { name: '', requests_per_unit: 1, unit: 'HOUR' });
    const r = await call('nowhere', [[['user', 'bob']]]);
    assert.is(r.overall_code, 'OK');
    assert.is(r.statuses.length, 1);
  });

  test('limits change at run time (setConfig) for the next call', async () => {
    clock = 1_700_000_000;
    assert.is((await call('edge', [[['per_minute', 'c']]])).statuses[0]!.current_limit?.requests_per_unit, 3);
    server.setConfig({ domains: { edge: [{ key: 'per_minute', rateLimit: { requestsPerUnit: 1, unit: 'MINUTE' } }] } });
    try {
      assert.is((await call('edge', [[['per_minute', 'c']]])).overall_code, 'OVER_LIMIT', 'the second hit passes a limit of 1');
    } finally {
      server.setConfig(CONFIG);
    }
  });

  test('bad requests: INVALID_ARGUMENT naming what is missing', async () => {
    const e1 = await rawError({ domain: '', descriptors: [{ entries: [{ key: 'a', value: 'b' }], limit: null, hits_addend: null }] });
    assert.is(e1.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e1.details, /domain must not be empty/);
    const e2 = await rawError({ domain: 'edge', descriptors: [] });
    assert.is(e2.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e2.details, /descriptor list must not be empty/);
  });

  test('Redis killed: UNAVAILABLE at once; Redis back on its port: answers again without a restart', async () => {
    clock = 1_700_000_000;
    assert.is((await call('edge', [[['per_minute', 'r']]])).overall_code, 'OK');
    await redis.kill();
    const started = Date.now();
    const e = await rawError({ domain: 'edge', descriptors: [{ entries: [{ key: 'per_minute', value: 'r' }], limit: null, hits_addend: null }] });
    assert.is(e.code, grpc.status.UNAVAILABLE);
    assert.match(e.details, /redis/);
    assert.ok(Date.now() - started < 1000, `failed fast (${Date.now() - started} ms)`);
    await redis.restart();
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      try {
        ok = (await call('edge', [[['per_minute', 'r']]])).overall_code === 'OK';
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.ok(ok, 'answers again within 5 s of Redis coming back');
    assert.ok(server.limiter.redisErrors >= 1);
  });

  test.run();
}

function call(domain: string, descriptors: [string, string][][], hits = 0): Promise<RateLimitResponseMessage> {
  return raw({ domain, hits_addend: hits, descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })), limit: null, hits_addend: null })) });
}

function raw(request: Partial<RateLimitRequestMessage>): Promise<RateLimitResponseMessage> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(request, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, response) => (err ? reject(err) : resolve(response!))),
  );
}

async function rawError(request: Partial<RateLimitRequestMessage>): Promise<grpc.ServiceError> {
  try {
    await raw(request);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}
