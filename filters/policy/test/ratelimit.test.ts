// Local rate limiting: token buckets in shared data, refilled lazily, shared by every VM of a vm_id.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { HeaderList, HttpStreamSink, LocalResponse } from '../../../wasm/src/host.ts';
import { MetricsRegistry } from '../../../wasm/src/metrics/registry.ts';
import { compileModule } from '../../../wasm/src/module.ts';
import { Plugin } from '../../../wasm/src/plugin.ts';
import { SharedDataStore } from '../../../wasm/src/shared-data.ts';
import { SharedQueueRegistry } from '../../../wasm/src/shared-queue.ts';
import { MTLS_PEER, allow, deny, load, policyWasm, send, status } from './support.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bucket = (name: string, descriptor: object, maxTokens: number, fillIntervalMs: number, tokensPerFill?: number) => ({
  name, descriptor, maxTokens, fillIntervalMs, ...(tokensPerFill ? { tokensPerFill } : {}),
});

test.before(async () => {
  await policyWasm();
});

test('N requests pass, the next gets 429 with retry-after and x-ratelimit-* headers, and it is counted', async () => {
  const h = await load({ rateLimits: [bucket('api', { global: true }, 3, 60_000)] });
  for (let i = 0; i < 3; i++) assert.is(status(await send(h)), 200, `request ${i + 1}`);
  const r = await send(h);
  assert.is(r.localResponse?.status, 429);
  assert.is(r.localResponse?.body, 'local_rate_limited');
  assert.is(r.localResponse?.details, 'local_rate_limited');
  const headers = r.localResponse!.headers;
  assert.is(headers['x-ratelimit-limit'], '3');
  assert.is(headers['x-ratelimit-remaining'], '0');
  const retry = Number(headers['retry-after']);
  assert.ok(retry >= 59 && retry <= 60, `retry-after ${headers['retry-after']}`);
  assert.is(headers['x-ratelimit-reset'], headers['retry-after']);
  assert.is(r.request, undefined, 'nothing went upstream');
  const snap = h.metricsSnapshot().filter((s) => s.name === 'policy_ratelimit_total');
  assert.is(snap.find((s) => s.labels.result === 'ok')?.value, 3);
  assert.equal(snap.find((s) => s.labels.result === 'over')?.labels, { bucket: 'api', result: 'over' });
  assert.is(snap.find((s) => s.labels.result === 'over')?.value, 1);
  await h.close();
});

test('the bucket refills after the interval (tokensPerFill per interval, capped at maxTokens)', async () => {
  const h = await load({ rateLimits: [bucket('fast', { global: true }, 2, 300, 1)] });
  assert.is(status(await send(h)), 200);
  assert.is(status(await send(h)), 200);
  const over = await send(h);
  assert.is(status(over), 429);
  assert.is(over.localResponse?.headers['retry-after'], '1', 'rounded up to whole seconds');
  await sleep(350);
  assert.is(status(await send(h)), 200, 'one token back after one interval');
  assert.is(status(await send(h)), 429, 'only tokensPerFill (1) came back');
  await sleep(1000);
  assert.is(status(await send(h)), 200);
  assert.is(status(await send(h)), 200);
  assert.is(status(await send(h)), 429, 'never more than maxTokens');
  await h.close();
});

test('descriptors: one bucket per header value, per principal; path prefix; requests without the value pass', async () => {
  const h = await load({
    rateLimits: [
      bucket('per-user', { header: 'X-User' }, 1, 60_000),
      bucket('per-peer', { sourcePrincipal: true }, 2, 60_000),
      bucket('api', { pathPrefix: '/api' }, 5, 60_000),
    ],
  });
  const plaintext = { sourceAddress: '10.0.0.1:1' };
  assert.is(status(await send(h, { headers: { 'x-user': 'alice' }, streamInfo: plaintext })), 200);
  assert.is(status(await send(h, { headers: { 'x-user': 'alice' }, streamInfo: plaintext })), 429, 'alice used her token');
  assert.is(status(await send(h, { headers: { 'x-user': 'bob' }, streamInfo: plaintext })), 200, 'bob has his own bucket');
  for (let i = 0; i < 5; i++) assert.is(status(await send(h, { streamInfo: plaintext })), 200, 'no header, no principal: not limited');
  assert.is(status(await send(h)), 200, 'productpage: token 1 of 2');
  assert.is(status(await send(h)), 200, 'productpage: token 2 of 2');
  const r = await send(h);
  assert.is(status(r), 429);
  assert.is(r.localResponse?.headers['x-ratelimit-limit'], '2');
  const reviews = { ...MTLS_PEER, peerPrincipal: 'spiffe://cluster.local/ns/default/sa/reviews' };
  assert.is(status(await send(h, { streamInfo: reviews })), 200, 'another principal, another bucket');
  for (let i = 0; i < 5; i++) assert.is(status(await send(h, { path: `/api/${i}`, streamInfo: plaintext })), 200);
  assert.is(status(await send(h, { path: '/api/x', streamInfo: plaintext })), 429);
  assert.is(status(await send(h, { path: '//api/x', streamInfo: plaintext })), 429, 'the prefix sees the normalized path');
  assert.is(status(await send(h, { path: '/apix', streamInfo: plaintext })), 429, 'a plain string prefix, like Envoy');
  assert.is(status(await send(h, { path: '/other', streamInfo: plaintext })), 200);
  await h.close();
});

test('a request consumes from every matching bucket; denied requests consume nothing', async () => {
  const h = await load({
    policies: [deny([{ to: [{ operation: { paths: ['/blocked'] } }] }])],
    rateLimits: [bucket('a', { global: true }, 3, 60_000), bucket('b', { pathPrefix: '/b' }, 1, 60_000)],
  });
  for (let i = 0; i < 5; i++) assert.is(status(await send(h, { path: '/blocked' })), 403);
  assert.is(status(await send(h, { path: '/b' })), 200, 'a: 2 left, b: 0 left');
  assert.is(status(await send(h, { path: '/b' })), 429, 'b is empty (a gave a token first)');
  assert.is(status(await send(h, { path: '/x' })), 200, 'a: last token');
  const r = await send(h, { path: '/x' });
  assert.is(status(r), 429);
  assert.is(r.localResponse?.headers['x-ratelimit-limit'], '3');
  await h.close();
});

test('authorization and rate limiting together: an allowed request is limited, a denied one gets 403', async () => {
  const h = await load({ policies: [allow([{ to: [{ operation: { methods: ['GET'] } }] }])], rateLimits: [bucket('g', { global: true }, 1, 60_000)] });
  assert.is(status(await send(h, { method: 'POST' })), 403);
  assert.is(status(await send(h)), 200);
  assert.is(status(await send(h)), 429);
  await h.close();
});

class Sink implements HttpStreamSink {
  local?: LocalResponse;
  forwarded = false;
  requestHeaders(_h: HeaderList, _e: boolean): void {
    this.forwarded = true;
  }
  requestData(): void {}
  requestTrailers(): void {}
  responseHeaders(): void {}
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(r: LocalResponse): void {
    this.local = r;
  }
  reset(): void {}
}

function run(plugin: Plugin): number {
  const sink = new Sink();
  const stream = plugin.createHttpStream(sink, MTLS_PEER);
  stream.requestHeaders([':method', 'GET', ':path', '/', ':authority', 'app'], true);
  stream.finish();
  return sink.local?.status ?? (sink.forwarded ? 200 : 0);
}

test('two plugins (two VMs) with the same vm_id share a bucket through the shared data store', async () => {
  const compiled = await compileModule((await policyWasm()).bytes, { name: 'policy' });
  const sharedData = new SharedDataStore();
  const host = { sharedData, sharedQueues: new SharedQueueRegistry(), metrics: new MetricsRegistry(), log: () => {} };
  const configuration = { rateLimits: [bucket('shared', { global: true }, 4, 60_000)] };
  const a = await Plugin.load(compiled, { name: 'policy-a', rootId: 'policy', vmId: 'policy', configuration }, host);
  const b = await Plugin.load(compiled, { name: 'policy-b', rootId: 'policy', vmId: 'policy', configuration }, host);
  const other = await Plugin.load(compiled, { name: 'policy-c', rootId: 'policy', vmId: 'other', configuration }, host);
  assert.ok(a.vm !== b.vm);
  assert.equal([run(a), run(b), run(a), run(b)], [200, 200, 200, 200]);
  assert.is(run(a), 429, 'the four tokens were shared');
  assert.is(run(b), 429);
  assert.is(run(other), 200, 'another vm_id has its own data');
  assert.equal(sharedData.keys('policy'), ['wasmesh.policy.ratelimit/shared/']);
  const state = sharedData.get('policy', 'wasmesh.policy.ratelimit/shared/')!.value;
  assert.is(state.length, 16);
  assert.is(Buffer.from(state).readBigInt64LE(8), 0n, 'no tokens left');
  await Promise.all([a.stop(), b.stop(), other.stop()]);
});

test('one plugin with a pool of 4 VMs (spec.vms): its VMs share the bucket, so the limit holds for the plugin, not per VM', async () => {
  const compiled = await compileModule((await policyWasm()).bytes, { name: 'policy' });
  const host = { sharedData: new SharedDataStore(), sharedQueues: new SharedQueueRegistry(), metrics: new MetricsRegistry(), log: () => {} };
  const plugin = await Plugin.load(compiled, { name: 'policy-pool', rootId: 'policy', vmId: 'policy-pool', vms: 4, configuration: { rateLimits: [bucket('pooled', { global: true }, 6, 60_000)] } }, host);
  try {
    const seen = new Set<unknown>();
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const sink = new Sink();
      const stream = plugin.createHttpStream(sink, MTLS_PEER);
      seen.add(stream.vm);
      stream.requestHeaders([':method', 'GET', ':path', '/', ':authority', 'app'], true);
      stream.finish();
      statuses.push(sink.local?.status ?? (sink.forwarded ? 200 : 0));
    }
    assert.is(seen.size, 4, 'the requests went to all four VMs');
    assert.equal(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'six tokens for the plugin, not six per VM');
  } finally {
    await plugin.stop();
  }
});

test('a bucket written by another VM in between (CAS mismatch) is read again, not overwritten', async () => {
  // Wrap the store so that, when armed, our next write loses a race against a concurrent writer.
  const compiled = await compileModule((await policyWasm()).bytes, { name: 'policy' });
  class RacyStore extends SharedDataStore {
    armed = false;
    races = 0;
    override set(vmId: string, key: string, value: Uint8Array, cas: number) {
      if (this.armed && cas !== 0) {
        this.armed = false;
        this.races++;
        const stolen = Buffer.from(super.get(vmId, key)!.value);
        stolen.writeBigInt64LE(stolen.readBigInt64LE(8) - 1n, 8); // another VM took a token
        super.set(vmId, key, stolen, 0);
      }
      return super.set(vmId, key, value, cas);
    }
  }
  const sharedData = new RacyStore();
  const host = { sharedData, sharedQueues: new SharedQueueRegistry(), metrics: new MetricsRegistry(), log: () => {} };
  const p = await Plugin.load(compiled, { name: 'racy', rootId: 'policy', configuration: { rateLimits: [bucket('r', { global: true }, 5, 60_000)] } }, host);
  const tokens = () => Buffer.from(sharedData.get('racy', 'wasmesh.policy.ratelimit/r/')!.value).readBigInt64LE(8);
  assert.is(run(p), 200);
  assert.is(tokens(), 4n, 'created full, one taken');
  sharedData.armed = true;
  assert.is(run(p), 200);
  assert.is(sharedData.races, 1);
  assert.is(tokens(), 2n, 'the other VM took one, we took one after reading again');
  sharedData.armed = true;
  assert.is(run(p), 200);
  assert.is(tokens(), 0n);
  assert.is(run(p), 429, 'every token was counted once');
  await p.stop();
});

test.run();
