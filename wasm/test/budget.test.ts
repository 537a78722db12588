// The CPU budget: no callback of any module runs unbounded. Each runaway ends as a trap with its cause
// named in the metric, the stream gets the failStrategy's answer, the next stream a fresh VM, and the
// caller gets control back in bounded time.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, WasmeshWasmError } from '../src/errors.ts';
import { FilterHarness } from '../src/harness.ts';
import type { MetricsRegistry } from '../src/metrics/registry.ts';
import { compileModule } from '../src/module.ts';
import { Plugin } from '../src/plugin.ts';
import { GET, OK_RESPONSE, Strings, TraceSink, c, envImports, out, pl, recordingCallbacks, recordingModule, waitFor } from './support/recorder.ts';
import { guestModule, wat2wasm } from './support/wat.ts';

/** A small budget keeps these tests fast; the default is the same mechanism with a bigger number. */
const BUDGET = 20_000_000;

function traps(metrics: MetricsRegistry, plugin: string, cause: string): number {
  return metrics.snapshot().find((m) => m.name === 'wasmesh_wasm_vm_traps_total' && m.labels.plugin === plugin && m.labels.cause === cause)?.value ?? 0;
}

/**
 * A filter that misbehaves on request when asked by header: x-loop (endless loop), x-fib (exponential
 * recursion, no loop), x-deep (unbounded recursion), x-grow (memory growth without end), x-hostloop
 * (an endless loop of host calls), x-tick (an endless loop in on_tick), x-callout (an endless loop in
 * on_http_call_response), x-body (an endless loop in the response body callback). Otherwise it counts
 * requests in x-count, so a fresh VM shows as a count that starts over.
 */
function misbehaving(): string {
  const s = new Strings();
  const names = ['x-loop', 'x-fib', 'x-deep', 'x-grow', 'x-hostloop', 'x-tick', 'x-callout', 'x-body'];
  const blobs = Object.fromEntries(names.map((n) => [n, s.add(n)]));
  const xCount = s.add('x-count');
  const authz = s.add('authz');
  const callHeaders = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', 'authz']]);
  const digit = out(90);
  const has = (name: string) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(blobs[name])} ${c(out(0))} ${c(out(1))}))`;
  return recordingModule({
    imports: envImports('proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_set_tick_period_milliseconds', 'proxy_http_call', 'proxy_get_header_map_pairs'),
    strings: s,
    body: `
  (global $count (mut i32) (i32.const 0))
  (global $bodyLoop (mut i32) (i32.const 0))
  (func $spin (loop $l (br $l)))
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2)) (then (local.get 0))
      (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func $deep (param i32) (result i32) (i32.add (call $deep (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func $grow (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable)
  (func $hostloop (loop $l (drop (call $proxy_get_header_map_pairs ${c(0)} ${c(out(2))} ${c(out(3))})) (br $l)))
  ${recordingCallbacks({
    proxy_on_request_headers: `
    (if ${has('x-loop')} (then (call $spin)))
    (if ${has('x-fib')} (then (drop (call $fib ${c(64)}))))
    (if ${has('x-deep')} (then (drop (call $deep ${c(0)}))))
    (if ${has('x-grow')} (then (call $grow)))
    (if ${has('x-hostloop')} (then (call $hostloop)))
    (if ${has('x-tick')} (then (drop (call $proxy_set_tick_period_milliseconds ${c(1)}))))
    (if ${has('x-body')} (then (global.set $bodyLoop (i32.const 1))))
    (if ${has('x-callout')} (then
      (drop (call $proxy_http_call ${pl(authz)} ${pl(callHeaders)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(out(4))}))
      (return ${c(1)})))
    (global.set $count (i32.add (global.get $count) ${c(1)}))
    (i32.store8 ${c(digit)} (i32.add ${c(48)} (global.get $count)))
    (drop (call $proxy_add_header_map_value ${c(0)} ${pl(xCount)} ${c(digit)} ${c(1)}))
    ${c(0)}`,
    proxy_on_response_body: `(if (global.get $bodyLoop) (then (call $spin))) ${c(0)}`,
    proxy_on_tick: '(call $spin)',
    proxy_on_http_call_response: '(call $spin)',
  })}`,
  });
}

async function harness(name: string, extra: Partial<Parameters<typeof FilterHarness.load>[1]> = {}): Promise<FilterHarness> {
  return FilterHarness.load(await wat2wasm(misbehaving()), {
    name,
    cpuBudget: BUDGET,
    memoryLimitBytes: 4 * 1024 * 1024,
    calloutResponses: { authz: { status: 200 } },
    timeoutMs: 2000,
    ...extra,
  });
}

const request = (headers: Record<string, string> = {}) => ({ request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'api', ...headers } }, response: { headers: { ':status': '200' }, body: 'ok' } });

for (const [header, cause] of [
  ['x-loop', 'cpu_budget'],
  ['x-fib', 'cpu_budget'],
  ['x-hostloop', 'cpu_budget'],
  ['x-deep', 'stack_overflow'],
  ['x-grow', 'memory'],
] as const) {
  test(`${header} in request headers: the stream gets 503, the trap is counted as ${cause}, the next stream gets a fresh VM`, async () => {
    const h = await harness(`runaway-${header}`);
    try {
      assert.is((await h.run(request())).request?.headers['x-count'], '1');
      const started = performance.now();
      const bad = await h.run(request({ [header]: '1' }));
      const took = performance.now() - started;
      assert.is(bad.localResponse?.status, 503);
      assert.is(bad.localResponse?.details, 'wasm_fail_stream');
      assert.ok(took < 2000, `the runaway was stopped in ${took.toFixed(0)} ms`);
      assert.is(traps(h.metrics, `runaway-${header}`, cause), 1, `cause ${cause}: ${h.plugin.lastFailure}`);
      if (cause === 'cpu_budget') assert.match(h.plugin.lastFailure, /CPU budget/);
      const next = await h.run(request());
      assert.is(next.request?.headers['x-count'], '1', 'a fresh VM serves the next stream at once');
      assert.is(h.plugin.state, 'running');
    } finally {
      await h.close();
    }
  });
}

test('FAIL_OPEN: a runaway request passes through without the filter; the next one is filtered again', async () => {
  const h = await harness('runaway-open', { failStrategy: 'FAIL_OPEN' });
  try {
    const bad = await h.run(request({ 'x-loop': '1' }));
    assert.is(bad.localResponse, undefined);
    assert.is(bad.response?.headers[':status'], '200');
    assert.is(bad.request?.headers['x-count'], undefined, 'the filter did not finish its work');
    assert.is(traps(h.metrics, 'runaway-open', 'cpu_budget'), 1);
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
  } finally {
    await h.close();
  }
});

test('an endless loop in the response body callback: the stream fails, the trap says cpu_budget', async () => {
  const h = await harness('runaway-body');
  try {
    const r = await h.run(request({ 'x-body': '1' }));
    // The response headers had gone out before the body: FAIL_CLOSE resets the stream.
    assert.is(r.reset, 'wasm_fail_stream');
    assert.not.ok(r.response?.body, 'no body reached the client');
    assert.is(traps(h.metrics, 'runaway-body', 'cpu_budget'), 1);
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
  } finally {
    await h.close();
  }
});

test('an endless loop in on_http_call_response: the paused stream gets 503, the VM is replaced', async () => {
  const h = await harness('runaway-callout');
  try {
    const r = await h.run(request({ 'x-callout': '1' }));
    assert.is(r.localResponse?.status, 503);
    assert.is(traps(h.metrics, 'runaway-callout', 'cpu_budget'), 1);
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
  } finally {
    await h.close();
  }
});

test('an endless loop in on_tick: the VM fails with cause cpu_budget, the process keeps its event loop', async () => {
  const h = await harness('runaway-tick');
  try {
    await h.run(request({ 'x-tick': '1' }));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    assert.ok(await waitFor(() => h.plugin.state === 'failed', 2000), 'the tick ran out of budget');
    await new Promise((r) => setTimeout(r, 50));
    clearInterval(timer);
    assert.ok(ticks >= 3, `the event loop kept running (${ticks} timer ticks)`);
    assert.is(traps(h.metrics, 'runaway-tick', 'cpu_budget'), 1);
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
  } finally {
    await h.close();
  }
});

test('the budget is per callback: a filter doing real work in every callback never meets it', async () => {
  // Each request costs about 100k units (a loop of 10k iterations); 50 requests are 5M in all, a
  // quarter of the budget, but no single callback comes near it.
  const wat = guestModule({
    body: `
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))
    (i32.const 0))`,
  });
  const plugin = await Plugin.load(await wat2wasm(wat), { name: 'steady', cpuBudget: 2_000_000 });
  try {
    for (let i = 0; i < 50; i++) {
      const sink = new TraceSink();
      const s = plugin.createHttpStream(sink);
      s.requestHeaders(GET(), true);
      s.responseHeaders(OK_RESPONSE(), true);
      s.finish();
      assert.equal(sink.trace, ['request headers end', 'response headers end']);
    }
    assert.is(plugin.state, 'running');
    assert.is(plugin.trapCount, 0);
  } finally {
    await plugin.stop();
  }
});

test('a WasmPlugin-level budget is honoured: the same work passes a big budget and fails a small one', async () => {
  const wat = guestModule({
    body: `
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))
    (i32.const 0))`,
  });
  const bytes = await wat2wasm(wat);
  for (const [budget, passes] of [[10_000_000, true], [100_000, false]] as const) {
    const plugin = await Plugin.load(bytes, { name: `budget-${budget}`, cpuBudget: budget, logLevel: 'off' });
    const sink = new TraceSink();
    plugin.createHttpStream(sink).requestHeaders(GET(), true);
    assert.is(plugin.state === 'running', passes, `budget ${budget}`);
    if (!passes) assert.is(plugin.lastFailureCause, 'cpu_budget');
    await plugin.stop();
  }
});

test('a module that loops forever in on_configure is refused at load, naming the budget; the caller gets control back', async () => {
  const wat = guestModule({
    body: `
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 1))`,
  });
  const started = performance.now();
  const err = await Plugin.load(await wat2wasm(wat), { name: 'configure-loop', startupCpuBudget: BUDGET, logLevel: 'off' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, WasmeshWasmError);
  assert.is((err as WasmeshWasmError).code, ErrorCode.ConfigureFailed);
  assert.match((err as WasmeshWasmError).message, /CPU budget/);
  assert.ok(performance.now() - started < 2000);
});

test('a loop in the module start function or _initialize is bounded too', async () => {
  const wat = `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "_initialize") (loop $l (br $l))))`;
  const err = await Plugin.load(await wat2wasm(wat), { name: 'init-loop', startupCpuBudget: BUDGET, logLevel: 'off' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, WasmeshWasmError);
  assert.is((err as WasmeshWasmError).code, ErrorCode.InitFailed);
  assert.match((err as WasmeshWasmError).message, /CPU budget/);
});

test('a budget out of range is a config error naming the field', async () => {
  const bytes = await wat2wasm(guestModule({ body: '' }));
  for (const bad of [0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2]) {
    const err = await Plugin.load(bytes, { name: 'bad-budget', cpuBudget: bad }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.instance(err, WasmeshWasmError, `cpuBudget ${bad}`);
    assert.is((err as WasmeshWasmError).code, ErrorCode.BadConfig);
    assert.match((err as WasmeshWasmError).message, /cpuBudget/);
  }
});

test('a module that exports a name the budget reserves is refused with its own code', async () => {
  const wat = guestModule({ body: '(func (export "__wasmesh_fuel_set") (param f64))' });
  const err = await compileModule(await wat2wasm(wat), { name: 'squatter.wasm' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, WasmeshWasmError);
  assert.is((err as WasmeshWasmError).code, ErrorCode.MeteringFailed);
  assert.match((err as WasmeshWasmError).message, /squatter\.wasm/);
  assert.match((err as WasmeshWasmError).message, /__wasmesh_fuel_set/);
});

test.run();
