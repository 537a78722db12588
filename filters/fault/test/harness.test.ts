// The fault filter in the harness (no proxy): aborts, gRPC aborts, matching, delays and their timing,
// percentages, metrics, and configuration errors. Build first:
//   node scripts/wasmesh.mjs filter build filters/fault
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness, type RunResult } from '../../../wasm/src/harness.ts';
import { faultFilterConfig } from '../../../mesh/src/translate/fault-filter.ts';

const WASM = fileURLToPath(new URL('../build/fault.wasm', import.meta.url));

type Rule = Record<string, unknown>;

async function load(rules: Rule[], extra: { timeoutMs?: number } = {}): Promise<FilterHarness> {
  return FilterHarness.load(WASM, { rootId: 'fault', configuration: { rules }, ...extra });
}

const UPSTREAM = { headers: { ':status': '200' }, body: 'from upstream' };

function get(host: string, headers: Record<string, string> = {}, path = '/', method = 'GET') {
  return { request: { headers: { ':method': method, ':path': path, ':authority': host, ...headers } }, response: UPSTREAM };
}

/** The request went through untouched (reached the upstream, answer passed back). */
function passed(r: RunResult): boolean {
  return r.request !== undefined && r.localResponse === undefined && r.response?.headers[':status'] === '200';
}

function counter(h: FilterHarness, kind: string, host: string): number | undefined {
  return h.metricsSnapshot().find((m) => m.name === 'fault_injected_total' && m.labels.kind === kind && m.labels.host === host)?.value;
}

/**
 * How late a plain timer of `ms` fires: the event loop's own lateness over the same span. The
 * timing bounds below add it, so a starved machine (other processes on few CPUs) does not fail
 * them, while on an idle one they stay as strict as written.
 */
function timerLateness(ms: number): Promise<number> {
  const start = performance.now();
  return new Promise((resolve) => setTimeout(() => resolve(Math.max(0, performance.now() - start - ms)), ms));
}

async function rejects(pluginConfig: unknown): Promise<string> {
  try {
    const h = await FilterHarness.load(WASM, { rootId: 'fault', configuration: pluginConfig as Record<string, unknown> });
    await h.close();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`configuration was accepted: ${JSON.stringify(pluginConfig)}`);
}

// ---------------------------------------------------------------------------------------------
// Aborts

test('abort 100%: the local reply has the status and body; the upstream never sees the request', async () => {
  const h = await load([{ hosts: ['ratings'], abort: { httpStatus: 503, percentage: 100 } }]);
  const r = await h.run(get('ratings:9080'));
  assert.is(r.request, undefined, 'the request must not reach the upstream');
  assert.is(r.localResponse?.status, 503);
  assert.is(r.localResponse?.body, 'fault filter abort');
  assert.is(r.localResponse?.details, 'fault_filter_abort');
  assert.is(r.response?.headers[':status'], '503');
  assert.is(counter(h, 'abort', 'ratings'), 1);
  await h.close();
});

test('gRPC abort: HTTP 200 with the numeric grpc-status (by name and by number)', async () => {
  const h = await load([
    { hosts: ['greeter'], abort: { grpcStatus: 'UNAVAILABLE' } },
    { hosts: ['other'], abort: { grpcStatus: 7 } },
  ]);
  const named = await h.run(get('greeter', { 'content-type': 'application/grpc' }, '/helloworld.Greeter/SayHello', 'POST'));
  assert.is(named.request, undefined);
  assert.is(named.localResponse?.status, 200);
  assert.is(named.localResponse?.grpcStatus, 14);
  const numbered = await h.run(get('other'));
  assert.is(numbered.localResponse?.status, 200);
  assert.is(numbered.localResponse?.grpcStatus, 7);
  await h.close();
});

// ---------------------------------------------------------------------------------------------
// Matching

test('a header-restricted rule only hits matching requests; the first matching rule applies', async () => {
  const h = await load([
    // Istio's Bookinfo "ratings-test-abort": only user jason is aborted.
    { hosts: ['ratings.default.svc.cluster.local', 'ratings'], match: [{ headers: { 'end-user': { exact: 'jason' } } }], abort: { httpStatus: 500 } },
    // A rule without faults shadows later rules (a route without fault in the VirtualService).
    { hosts: ['ratings'], match: [{ uri: { prefix: '/health' } }] },
    { hosts: ['ratings'], match: [{ method: { exact: 'DELETE' } }, { headers: { 'x-chaos': {} } }], abort: { httpStatus: 418 } },
  ]);
  assert.is((await h.run(get('ratings', { 'end-user': 'jason' }))).localResponse?.status, 500);
  assert.is((await h.run(get('ratings.default.svc.cluster.local:9080', { 'end-user': 'jason' }))).localResponse?.status, 500);
  assert.ok(passed(await h.run(get('ratings', { 'end-user': 'jasonx' }))), 'exact means exact');
  assert.ok(passed(await h.run(get('ratings'))), 'no header, no fault');
  assert.ok(passed(await h.run(get('reviews', { 'end-user': 'jason' }))), 'another host');
  // Second match alternative: header presence, whatever the value (even empty).
  assert.is((await h.run(get('ratings', { 'x-chaos': '' }))).localResponse?.status, 418);
  assert.is((await h.run(get('ratings', {}, '/', 'DELETE'))).localResponse?.status, 418);
  // /health matches the fault-free rule first.
  assert.ok(passed(await h.run(get('ratings', { 'x-chaos': '1' }, '/health?probe=1'))));
  await h.close();
});

test('hosts: wildcards, ports, case; uri exact ignores the query string; withoutHeaders; ignoreUriCase', async () => {
  const h = await load([
    { hosts: ['*.example.com'], abort: { httpStatus: 502 } },
    { hosts: ['api'], match: [{ uri: { exact: '/v1/items' }, withoutHeaders: { 'x-canary': {} } }], abort: { httpStatus: 503 } },
    { hosts: ['api'], match: [{ uri: { prefix: '/admin' }, ignoreUriCase: true }], abort: { httpStatus: 403 } },
  ]);
  assert.is((await h.run(get('shop.example.com:8443'))).localResponse?.status, 502);
  assert.is((await h.run(get('A.B.Example.COM'))).localResponse?.status, 502);
  assert.ok(passed(await h.run(get('example.com'))), '*.example.com does not cover example.com');
  assert.is((await h.run(get('api', {}, '/v1/items?page=2'))).localResponse?.status, 503);
  assert.ok(passed(await h.run(get('api', {}, '/v1/items/3'))));
  assert.ok(passed(await h.run(get('api', { 'x-canary': '1' }, '/v1/items'))), 'withoutHeaders {} wants the header absent');
  assert.is((await h.run(get('api', {}, '/ADMIN/users'))).localResponse?.status, 403);
  await h.close();
});

test('odd request input never traps: missing pseudo-headers, non-UTF-8 bytes, odd authorities', async () => {
  const h = await load([
    { hosts: ['[::1]'], abort: { httpStatus: 503 } },
    { match: [{ headers: { 'x-bin': { prefix: 'a' } }, uri: { prefix: '/' } }], abort: { httpStatus: 500 } },
  ]);
  assert.is((await h.run({ request: { headers: { ':authority': '[::1]:8080', ':path': '/' } } })).localResponse?.status, 503);
  assert.is((await h.run({ request: { headers: { ':authority': 'x', ':path': '/', 'x-bin': 'a\xff\xfe\x80' } } })).localResponse?.status, 500);
  const odd: Array<Record<string, string>> = [{}, { ':authority': ':' }, { ':authority': 'a:b:c' }, { ':authority': 'x'.repeat(10000), 'x-bin': 'b' }, { 'x-bin': '' }];
  for (const headers of odd) {
    const r = await h.run({ request: { headers }, response: UPSTREAM });
    assert.ok(r.localResponse?.status !== 503 || r.localResponse.details !== 'wasm_fail_stream', 'no VM failure');
  }
  assert.is(h.plugin.state, 'running');
  assert.equal(h.logs.filter((l) => l.level === 'critical'), []);
  await h.close();
});

test('no rules, or an empty configuration: everything passes', async () => {
  const empty = await FilterHarness.load(WASM, { rootId: 'fault' });
  assert.ok(passed(await empty.run(get('ratings'))));
  await empty.close();
  const none = await load([]);
  assert.ok(passed(await none.run(get('ratings'))));
  await none.close();
});

// ---------------------------------------------------------------------------------------------
// Delays

test('delay 100% of 150 ms: the request reaches the upstream at least 150 ms and under 180 ms after it was sent', async () => {
  const h = await load([{ hosts: ['ratings'], delay: { fixedDelayMs: 150, percentage: 100 } }]);
  const late: number[] = [];
  for (let i = 0; i < 3; i++) {
    const loop = timerLateness(150);
    const start = performance.now();
    const r = await h.run(get('ratings'));
    const elapsed = performance.now() - start;
    const loopLate = await loop;
    assert.ok(passed(r), 'the delayed request goes through');
    assert.ok(elapsed >= 150, `took ${elapsed.toFixed(1)} ms`);
    assert.ok(elapsed < 180 + loopLate, `took ${elapsed.toFixed(1)} ms (event loop ${loopLate.toFixed(1)} ms late)`);
    late.push(elapsed - 150);
  }
  assert.is(counter(h, 'delay', 'ratings'), 3);
  process.stdout.write(`\n  delay 150 ms, lateness: ${late.map((l) => l.toFixed(1)).join(', ')} ms\n`);
  await h.close();
});

test('delays do not block: concurrent delayed requests resume on their own due times, others pass at once', async () => {
  const h = await load([
    { hosts: ['slow'], match: [{ headers: { 'x-delay': { exact: '60' } } }], delay: { fixedDelayMs: 60 } },
    { hosts: ['slow'], match: [{ headers: { 'x-delay': { exact: '120' } } }], delay: { fixedDelayMs: 120 } },
  ]);
  const loop = timerLateness(120);
  const start = performance.now();
  const timed = (p: Promise<RunResult>) => p.then((r) => ({ r, ms: performance.now() - start }));
  const [a, b, fast] = await Promise.all([
    timed(h.run(get('slow', { 'x-delay': '120' }))),
    timed(h.run(get('slow', { 'x-delay': '60' }))),
    timed(h.run(get('fast'))),
  ]);
  const slack = await loop;
  assert.ok(passed(a.r) && passed(b.r) && passed(fast.r));
  assert.ok(fast.ms < 30 + slack, `undelayed request took ${fast.ms.toFixed(1)} ms`);
  assert.ok(b.ms >= 60 && b.ms < 90 + slack, `60 ms delay took ${b.ms.toFixed(1)} ms`);
  assert.ok(a.ms >= 120 && a.ms < 150 + slack, `120 ms delay took ${a.ms.toFixed(1)} ms`);
  await h.close();
});

test('delay and abort combine: delayed first, then aborted', async () => {
  const h = await load([{ hosts: ['ratings'], delay: { fixedDelayMs: 50 }, abort: { httpStatus: 504 } }]);
  const loop = timerLateness(50);
  const start = performance.now();
  const r = await h.run(get('ratings'));
  const elapsed = performance.now() - start;
  const slack = await loop;
  assert.is(r.request, undefined);
  assert.is(r.localResponse?.status, 504);
  assert.ok(elapsed >= 50 && elapsed < 80 + slack, `took ${elapsed.toFixed(1)} ms`);
  assert.is(counter(h, 'delay', 'ratings'), 1);
  assert.is(counter(h, 'abort', 'ratings'), 1);
  await h.close();
});

test('the tick runs only while delays are pending; a stream that ends while delayed is forgotten', async () => {
  const h = await load([{ hosts: ['slow'], delay: { fixedDelayMs: 1000 } }], { timeoutMs: 30 });
  const root = h.plugin.vm.root;
  assert.is(root.tickTimer, undefined, 'no tick before any delay');
  // The harness gives up after 30 ms and ends the stream (on_delete) while it is still delayed.
  const r = await h.run(get('slow'));
  assert.is(r.stalled, 'request');
  await new Promise((res) => setTimeout(res, 20));
  assert.is(root.tickTimer, undefined, 'the tick stopped once the delayed stream was gone (not after 1000 ms)');
  // A later delayed request still works and stops the tick again when done.
  const h2 = await load([{ hosts: ['slow'], delay: { fixedDelayMs: 20 } }]);
  assert.ok(passed(await h2.run(get('slow'))));
  await new Promise((res) => setTimeout(res, 10));
  assert.is(h2.plugin.vm.root.tickTimer, undefined);
  assert.equal(h.logs.filter((l) => l.level === 'error' || l.level === 'critical'), []);
  await h.close();
  await h2.close();
});

// ---------------------------------------------------------------------------------------------
// Percentages

test('abort 30% over 2000 requests: the aborted share is within 4 points of 30%', async () => {
  const h = await load([{ hosts: ['ratings'], abort: { httpStatus: 503, percentage: 30 } }]);
  const n = 2000;
  let aborted = 0;
  for (let i = 0; i < n; i++) {
    const r = await h.run(get('ratings'));
    if (r.localResponse?.status === 503) aborted++;
    else assert.ok(passed(r));
  }
  const share = (aborted / n) * 100;
  process.stdout.write(`\n  abort 30%: ${share.toFixed(1)}% of ${n} aborted\n`);
  assert.ok(Math.abs(share - 30) <= 4, `aborted ${share.toFixed(1)}%`);
  assert.is(counter(h, 'abort', 'ratings'), aborted);
  await h.close();
});

test('percentage 0 never faults; fractions are allowed', async () => {
  const h = await load([
    { hosts: ['never'], delay: { fixedDelayMs: 500, percentage: 0 }, abort: { httpStatus: 503, percentage: 0 } },
    { hosts: ['rare'], abort: { httpStatus: 503, percentage: 0.001 } },
  ]);
  for (let i = 0; i < 50; i++) assert.ok(passed(await h.run(get('never'))));
  const rare = await h.run(get('rare'));
  assert.ok(passed(rare) || rare.localResponse?.status === 503, 'a fractional percentage is accepted');
  await h.close();
});

test('the orchestrator translation of a VirtualService drives the filter (Bookinfo ratings-test-abort)', async () => {
  const config = faultFilterConfig([
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'ratings', namespace: 'default' },
      spec: {
        hosts: ['ratings'],
        http: [
          { match: [{ headers: { 'end-user': { exact: 'jason' } } }], fault: { abort: { httpStatus: 500, percentage: { value: 100 } } }, route: [{ destination: { host: 'ratings', subset: 'v1' } }] },
          { route: [{ destination: { host: 'ratings', subset: 'v1' } }] },
        ],
      },
    },
  ]);
  const h = await FilterHarness.load(WASM, { rootId: 'fault', configuration: { ...config } });
  assert.is((await h.run(get('ratings:9080', { 'end-user': 'jason' }))).localResponse?.status, 500);
  assert.is((await h.run(get('ratings.default.svc.cluster.local', { 'end-user': 'jason' }))).localResponse?.status, 500);
  assert.ok(passed(await h.run(get('ratings', { 'end-user': 'alice' }))));
  await h.close();
});

// ---------------------------------------------------------------------------------------------
// Configuration errors

test('bad configurations are rejected with the field path', async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ rules: [{ abort: { httpStatus: 99 } }] }, /rules\[0\]\.abort\.httpStatus: must be an integer from 200 to 599, not 99/],
    [{ rules: [{}, { abort: { httpStatus: 503, grpcStatus: 'UNAVAILABLE' } }] }, /rules\[1\]\.abort: give exactly one of "httpStatus" or "grpcStatus"/],
    [{ rules: [{ abort: { grpcStatus: 'NOPE' } }] }, /rules\[0\]\.abort\.grpcStatus: must be a gRPC status name/],
    [{ rules: [{ delay: { fixedDelayMs: 1.5 } }] }, /rules\[0\]\.delay\.fixedDelayMs: must be an integer/],
    [{ rules: [{ delay: {} }] }, /rules\[0\]\.delay\.fixedDelayMs: is required/],
    [{ rules: [{ delay: { fixedDelayMs: 10, percentage: 101 } }] }, /rules\[0\]\.delay\.percentage: must be a number from 0 to 100/],
    [{ rules: [{ match: [{ uri: { regex: '/v[0-9]+' } }] }] }, /rules\[0\]\.match\[0\]\.uri\.regex: regex conditions are not supported/],
    [{ rules: [{ match: [{ headers: { 'end-user': { exact: 1 } } }] }] }, /rules\[0\]\.match\[0\]\.headers\["end-user"\]\.exact: must be a string/],
    [{ rules: [{ hosts: [] }] }, /rules\[0\]\.hosts: must not be empty/],
    [{ rules: [{ hosts: ['a:80'] }] }, /rules\[0\]\.hosts\[0\]: invalid host "a:80": give the host without a port/],
    [{ rules: [{ fixedDelay: '2s' }] }, /rules\[0\]\.fixedDelay: unknown field/],
    [{ rules: {} }, /rules: must be an array of rules/],
    [{ rule: [] }, /rule: unknown field/],
  ];
  for (const [config, expected] of cases) {
    const message = await rejects(config);
    assert.match(message, /fault: invalid plugin configuration/);
    assert.match(message, expected);
  }
});

test('invalid JSON is rejected with its line and column, without trapping', async () => {
  const message = await rejects('{"rules": [\n  {"abort": {"httpStatus": 503,}}\n]}');
  assert.match(message, /invalid JSON: expected a member name in double quotes \(at line 2, column 32\)/);
  assert.not.match(message, /trapped/);
});

test.run();
