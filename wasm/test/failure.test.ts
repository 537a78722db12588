// What a user sees when a module fails: traps and stack overflows in stream and root callbacks, the
// failStrategy's answer, VM replacement with backoff, metrics, bad pointers and memory growth past the bound.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmResult } from '../src/abi/constants.ts';
import { FilterHarness, type RunInput } from '../src/harness.ts';
import type { FailStrategy, HttpCallRequest } from '../src/host.ts';
import type { MetricsRegistry } from '../src/metrics/registry.ts';
import { VM_RESTART_BACKOFF_INITIAL_MS, VM_RESTARTS_PER_SECOND } from '../src/limits.ts';
import {
  GET, OK_RESPONSE, POST, Strings, TraceSink, c, envImports, ev, out, outVal, pl, loadPlugin, pluginEvents,
  recordingCallbacks, recordingModule, settle, sleep, waitFor,
} from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

// Nothing a module does may reach the test as an exception or a rejected promise.
const escaped: unknown[] = [];
process.on('unhandledRejection', (reason) => escaped.push(reason));
process.on('uncaughtException', (err) => escaped.push(err));

/** A counter of one plugin, summed over its other labels (the trap counter has one series per cause). */
function metric(registry: MetricsRegistry, name: string, plugin: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const m of registry.snapshot()) {
    if (m.name !== name || m.labels.plugin !== plugin) continue;
    if (Object.entries(labels).every(([k, v]) => m.labels[k] === v)) sum += m.value ?? 0;
  }
  return sum;
}

/**
 * Counts requests in a global (so a fresh VM is visible: the count starts over) and reports the count in
 * an x-count request header. x-trap: `unreachable` first thing; x-recurse: infinite recursion;
 * x-tick: starts a 1 ms timer whose on_tick traps.
 */
function trapModule(): string {
  const s = new Strings();
  const xTrap = s.add('x-trap');
  const xRecurse = s.add('x-recurse');
  const xTick = s.add('x-tick');
  const xCount = s.add('x-count');
  const digit = out(90);
  const has = (b: typeof xTrap) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(b)} ${c(out(0))} ${c(out(1))}))`;
  return recordingModule({
    imports: envImports('proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_set_tick_period_milliseconds'),
    strings: s,
    body: `
  (global $count (mut i32) (i32.const 0))
  (func $recurse (param i32) (result i32) (call $recurse (i32.add (local.get 0) ${c(1)})))
  ${recordingCallbacks({
    proxy_on_request_headers: `
    (if ${has(xTrap)} (then unreachable))
    (if ${has(xRecurse)} (then (drop (call $recurse ${c(0)}))))
    (if ${has(xTick)} (then (drop (call $proxy_set_tick_period_milliseconds ${c(1)}))))
    (global.set $count (i32.add (global.get $count) ${c(1)}))
    (i32.store8 ${c(digit)} (i32.add ${c(48)} (global.get $count)))
    (drop (call $proxy_add_header_map_value ${c(0)} ${pl(xCount)} ${c(digit)} ${c(1)}))
    ${c(0)}`,
    proxy_on_tick: 'unreachable',
  })}`,
  });
}

async function trapHarness(name: string, failStrategy?: FailStrategy): Promise<FilterHarness> {
  return FilterHarness.load(await wat2wasm(trapModule()), { name, failStrategy, timeoutMs: 1000 });
}

const request = (extra: Record<string, string> = {}, body?: string): RunInput => ({
  request: { headers: { ':method': 'POST', ':path': '/orders', ':authority': 'shop', ':scheme': 'http', ...extra }, body },
  response: { headers: { ':status': '200' }, body: 'done' },
});

test('FAIL_CLOSE (default): a trap in on_request_headers answers 503 wasm_fail_stream; the upstream sees nothing', async () => {
  const h = await trapHarness('closed');
  try {
    const r = await h.run(request({ 'x-trap': '1' }, 'payload'));
    assert.is(r.request, undefined, 'nothing went upstream');
    assert.is(r.localResponse?.status, 503);
    assert.is(r.localResponse?.details, 'wasm_fail_stream');
    assert.is(r.localResponse?.grpcStatus, undefined, 'no gRPC status for a plain HTTP request');
    assert.is(r.response?.headers[':status'], '503', 'the client gets the 503');
    assert.is(r.stalled, undefined);
    // A gRPC request gets UNAVAILABLE as well.
    const g = await h.run({ request: { headers: { ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'svc', 'content-type': 'application/grpc', 'x-trap': '1' }, body: 'm' } });
    assert.is(g.request, undefined);
    assert.is(g.localResponse?.status, 503);
    assert.is(g.localResponse?.details, 'wasm_fail_stream');
    assert.is(g.localResponse?.grpcStatus, 14);
  } finally {
    await h.close();
  }
});

test('FAIL_OPEN: a trap lets the request and the response pass through unmodified', async () => {
  const h = await trapHarness('open', 'FAIL_OPEN');
  try {
    const input: RunInput = {
      request: { headers: [[':method', 'POST'], [':path', '/orders'], [':authority', 'shop'], ['x-trap', '1'], ['x-b', '2']], body: 'payload', trailers: { 'x-sum': '7' } },
      response: { headers: { ':status': '201', 'x-r': 'r' }, body: 'created', trailers: { 'grpc-status': '0' } },
    };
    const r = await h.run(input);
    assert.is(r.localResponse, undefined);
    assert.equal(r.request, { headers: { ':method': 'POST', ':path': '/orders', ':authority': 'shop', 'x-trap': '1', 'x-b': '2' }, body: 'payload', trailers: { 'x-sum': '7' } });
    assert.equal(r.response, { headers: { ':status': '201', 'x-r': 'r' }, body: 'created', trailers: { 'grpc-status': '0' } });
  } finally {
    await h.close();
  }
});

test('FAIL_OPEN: streams caught on the failed VM pass through exactly once', async () => {
  const { plugin } = await loadPlugin(trapModule(), { failStrategy: 'FAIL_OPEN' });
  try {
    // A stream already past its request headers when another stream kills the VM.
    const sink = new TraceSink();
    const a = plugin.createHttpStream(sink);
    a.requestHeaders(POST(), false);
    const b = plugin.createHttpStream(new TraceSink());
    b.requestHeaders([...GET(), 'x-trap', '1'], true);
    b.finish();
    assert.is(plugin.state, 'failed');
    a.requestData(Buffer.from('body'), true);
    a.responseHeaders(OK_RESPONSE(), false);
    a.responseData(Buffer.from('resp'), false);
    a.responseTrailers(['x-t', '1']);
    a.finish();
    assert.equal(sink.trace, ['request headers', "request data 'body' end", 'response headers', "response data 'resp'", 'response trailers']);
  } finally {
    await plugin.stop();
  }
});

test('a trap while the filter holds the body: FAIL_OPEN forwards what was held, FAIL_CLOSE answers 503', async () => {
  // Holds the body until end_of_stream, then traps.
  const wat = recordingModule({ body: recordingCallbacks({ proxy_on_request_body: `(if (local.get 2) (then unreachable)) ${c(1)}` }) });
  for (const failStrategy of ['FAIL_OPEN', 'FAIL_CLOSE'] as const) {
    const { plugin } = await loadPlugin(wat, { failStrategy });
    try {
      const sink = new TraceSink();
      const s = plugin.createHttpStream(sink);
      s.requestHeaders(POST(), false);
      s.requestData(Buffer.from('held '), false);
      s.requestData(Buffer.from('part'), true);
      s.responseHeaders(OK_RESPONSE(), true);
      s.finish();
      assert.is(plugin.state, 'failed');
      if (failStrategy === 'FAIL_OPEN') {
        assert.equal(sink.trace, ['request headers', "request data 'held part' end", 'response headers end']);
      } else {
        // The headers had gone upstream already; the response had not started: 503.
        assert.equal(sink.trace, ['request headers', 'local 503']);
      }
    } finally {
      await plugin.stop();
    }
  }
});

test('a trap is counted, the next stream gets a fresh VM (state starts over), and the restart is counted', async () => {
  const h = await trapHarness('counted');
  try {
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
    assert.is((await h.run(request())).request?.headers['x-count'], '2');
    const first = h.plugin.vm;
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'counted'), 0);
    assert.is((await h.run(request({ 'x-trap': '1' }))).localResponse?.status, 503);
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'counted'), 1);
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'counted', { cause: 'unreachable' }), 1, 'the cause is named');
    assert.is(h.plugin.state, 'failed');
    assert.match(h.plugin.lastFailure, /unreachable/);
    assert.ok(h.logs.some((l) => l.level === 'error' && /VM failed/.test(l.message)), 'the failure is logged');
    assert.ok(
      h.logs.some((l) => /VM failed \(unreachable\).*; 1 stream\(s\) were on it \(they fail: HTTP streams get 503, connections are closed\); new streams get a fresh VM/.test(l.message)),
      'the log says which streams the failStrategy applied to, and that new streams get a fresh VM',
    );
    // The first replacement is immediate.
    const r = await h.run(request());
    assert.is(r.request?.headers['x-count'], '1', 'a fresh VM: the counter starts over');
    assert.ok(h.plugin.vm !== first);
    assert.is(h.plugin.state, 'running');
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'counted'), 1);
    assert.equal(pluginEvents(h.plugin).slice(0, 3), ['context_create(1,0)', 'vm_start(1,0)', 'configure(1,0)'], 'the new VM was started like the first');
  } finally {
    await h.close();
  }
});

test('a trap after healthy streams is replaced at once, every time: one bad request never blocks the next', async () => {
  const h = await trapHarness('no-amplification');
  try {
    for (let round = 0; round < 5; round++) {
      assert.is((await h.run(request({ 'x-trap': '1' }))).localResponse?.status, 503, `round ${round}: the bad request fails`);
      const next = await h.run(request());
      assert.is(next.request?.headers['x-count'], '1', `round ${round}: the next request gets a fresh VM at once`);
      assert.is((await h.run(request())).request?.headers['x-count'], '2');
    }
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'no-amplification'), 5);
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'no-amplification'), 5);
  } finally {
    await h.close();
  }
});

test('a fresh VM that fails before finishing any stream backs off: during the backoff new streams get the failStrategy answer without a new VM', async () => {
  const h = await trapHarness('backoff');
  try {
    await h.run(request({ 'x-trap': '1' }));
    // The replacement traps too, before a single stream got through it.
    await h.run(request({ 'x-trap': '1' }));
    const failedAt = Date.now();
    assert.is(h.plugin.state, 'failed');
    const dead = h.plugin.vm;
    const during = await h.run(request());
    assert.is(during.localResponse?.status, 503, 'still failed during the backoff');
    assert.is(during.localResponse?.details, 'wasm_fail_stream');
    assert.ok(h.plugin.vm === dead, 'no new VM during the backoff');
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'backoff'), 1);
    await sleep(VM_RESTART_BACKOFF_INITIAL_MS + 10 - (Date.now() - failedAt));
    // The VM after the backoff fails at once again: the wait doubles.
    await h.run(request({ 'x-trap': '1' }));
    const thirdAt = Date.now();
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'backoff'), 2);
    await sleep(VM_RESTART_BACKOFF_INITIAL_MS + 20 - (Date.now() - thirdAt));
    assert.is((await h.run(request())).localResponse?.status, 503, 'still backing off after 100 ms');
    await sleep(2 * VM_RESTART_BACKOFF_INITIAL_MS + 10 - (Date.now() - thirdAt));
    assert.is((await h.run(request())).request?.headers['x-count'], '1', 'a new VM serves after the longer backoff');
    assert.is(h.plugin.state, 'running');
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'backoff'), 3);
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'backoff'), 3);
    // A stream served to the end makes the module healthy again: the next trap is replaced at once.
    await h.run(request({ 'x-trap': '1' }));
    assert.is((await h.run(request())).request?.headers['x-count'], '1');
  } finally {
    await h.close();
  }
});

test('failures faster than VM_RESTARTS_PER_SECOND back off even between healthy streams', async () => {
  const h = await trapHarness('burst');
  try {
    let refused = 0;
    for (let i = 0; i < VM_RESTARTS_PER_SECOND + 5; i++) {
      await h.run(request({ 'x-trap': '1' }));
      if ((await h.run(request())).localResponse?.status === 503) refused++;
    }
    assert.ok(refused >= 1, `some healthy requests met the backoff after a burst of traps (${refused})`);
    assert.ok(metric(h.metrics, 'wasmesh_wasm_vm_restarts_total', 'burst') <= VM_RESTARTS_PER_SECOND + 1, 'no more restarts than the cap within the second');
  } finally {
    await h.close();
  }
});

test('FAIL_OPEN during the backoff: new streams pass through without the filter, once', async () => {
  const { plugin } = await loadPlugin(trapModule(), { failStrategy: 'FAIL_OPEN' });
  try {
    const run = (extra: string[] = []) => {
      const sink = new TraceSink();
      const s = plugin.createHttpStream(sink);
      s.requestHeaders([...POST(), ...extra], false);
      s.requestData(Buffer.from('b'), true);
      s.responseHeaders(OK_RESPONSE(), true);
      s.finish();
      return sink;
    };
    run(['x-trap', '1']);
    run(['x-trap', '1']);
    assert.is(plugin.state, 'failed');
    const sink = run();
    assert.equal(sink.trace, ['request headers', "request data 'b' end", 'response headers end']);
    assert.not.ok(sink.requestHeadersSeen!.includes('x-count'), 'the filter did not run');
  } finally {
    await plugin.stop();
  }
});

test('a trap in on_tick fails the VM; the next stream gets a fresh one', async () => {
  const h = await trapHarness('ticker');
  try {
    assert.is((await h.run(request({ 'x-tick': '1' }))).request?.headers['x-count'], '1');
    assert.ok(await waitFor(() => h.plugin.state === 'failed', 1000), 'the tick trapped');
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'ticker'), 1);
    assert.match(h.plugin.lastFailure, /unreachable/);
    const r = await h.run(request());
    assert.is(r.request?.headers['x-count'], '1');
    assert.is(h.plugin.state, 'running');
    await sleep(10);
    assert.is(h.plugin.state, 'running', 'the dead VM\'s timer is gone');
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'ticker'), 1);
  } finally {
    await h.close();
  }
});

/** Pauses each request on an HTTP callout; on_http_call_response traps. */
function calloutTrapModule(): string {
  const s = new Strings();
  const authz = s.add('authz');
  const headers = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', 'authz']]);
  return recordingModule({
    imports: envImports('proxy_http_call'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `(drop (call $proxy_http_call ${pl(authz)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(out(0))})) ${c(1)}`,
      proxy_on_http_call_response: 'unreachable',
    }),
  });
}

test('a trap in on_http_call_response fails the VM; the stream paused on that callout gets the failStrategy answer', async () => {
  const closed = await FilterHarness.load(await wat2wasm(calloutTrapModule()), { name: 'callout', timeoutMs: 1000, calloutResponses: { authz: { status: 200 } } });
  try {
    const r = await closed.run(request({}, 'payload'));
    assert.is(r.stalled, undefined, 'the paused stream is not left hanging');
    assert.is(r.request, undefined);
    assert.is(r.localResponse?.status, 503);
    assert.is(r.localResponse?.details, 'wasm_fail_stream');
    assert.is(closed.plugin.state, 'failed');
    assert.is(metric(closed.metrics, 'wasmesh_wasm_vm_traps_total', 'callout'), 1);
  } finally {
    await closed.close();
  }
  const open = await FilterHarness.load(await wat2wasm(calloutTrapModule()), { failStrategy: 'FAIL_OPEN', timeoutMs: 1000, calloutResponses: { authz: { status: 200 } } });
  try {
    const r = await open.run(request({}, 'payload'));
    assert.is(r.stalled, undefined);
    assert.is(r.request?.body, 'payload', 'FAIL_OPEN: the held request goes upstream');
    assert.is(r.response?.body, 'done');
  } finally {
    await open.close();
  }
});

test('a trap after the response headers went out resets the stream instead of answering 503', async () => {
  const wat = recordingModule({ body: recordingCallbacks({ proxy_on_response_body: 'unreachable' }) });
  const { plugin } = await loadPlugin(wat);
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('partial'), true);
    s.finish();
    assert.equal(sink.trace, ['request headers end', 'response headers', 'reset wasm_fail_stream']);
    assert.equal(sink.locals, []);
  } finally {
    await plugin.stop();
  }
  // Before the response headers went out, a trap answers 503 and the rest of the upstream's response is dropped.
  const early = await loadPlugin(recordingModule({ body: recordingCallbacks({ proxy_on_response_headers: 'unreachable' }) }), { maxBufferedBodyBytes: 4 });
  try {
    const sink = new TraceSink();
    const s = early.plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('more than four bytes'), false);
    s.responseTrailers(['x-t', '1']);
    s.finish();
    assert.equal(sink.trace, ['request headers end', 'local 503']);
    assert.is(sink.locals[0].details, 'wasm_fail_stream');
  } finally {
    await early.plugin.stop();
  }
  const h = await FilterHarness.load(await wat2wasm(wat), { timeoutMs: 1000 });
  try {
    const r = await h.run(request());
    assert.is(r.reset, 'wasm_fail_stream');
    assert.is(r.localResponse, undefined);
    assert.is(r.response?.headers[':status'], '200');
  } finally {
    await h.close();
  }
});

test('stack overflow (infinite recursion) is handled like a trap', async () => {
  const h = await trapHarness('deep');
  try {
    const r = await h.run(request({ 'x-recurse': '1' }));
    assert.is(r.request, undefined);
    assert.is(r.localResponse?.status, 503);
    assert.is(r.localResponse?.details, 'wasm_fail_stream');
    assert.match(h.plugin.lastFailure, /stack/i);
    assert.is(metric(h.metrics, 'wasmesh_wasm_vm_traps_total', 'deep'), 1);
    assert.is((await h.run(request())).request?.headers['x-count'], '1', 'a fresh VM serves the next stream');
  } finally {
    await h.close();
  }
});

test('host functions given out-of-bounds pointers answer InvalidMemoryAccess and never throw into the host', async () => {
  const P = c(0xfffffff0);
  const s = new Strings();
  const path = s.add(':path');
  const calls: Array<[string, string]> = [
    ['log', `(call $proxy_log ${c(2)} ${P} ${c(32)})`],
    ['log_huge_len', `(call $proxy_log ${c(2)} ${c(0)} ${c(-1)})`],
    ['get_header_key', `(call $proxy_get_header_map_value ${c(0)} ${P} ${c(4)} ${c(out(0))} ${c(out(1))})`],
    ['get_header_out', `(call $proxy_get_header_map_value ${c(0)} ${pl(path)} ${P} ${P})`],
    ['get_pairs_out', `(call $proxy_get_header_map_pairs ${c(0)} ${P} ${P})`],
    ['set_pairs', `(call $proxy_set_header_map_pairs ${c(0)} ${P} ${c(64)})`],
    ['add_header', `(call $proxy_add_header_map_value ${c(0)} ${P} ${c(4)} ${P} ${c(4)})`],
    ['replace_header', `(call $proxy_replace_header_map_value ${c(0)} ${P} ${c(4)} ${P} ${c(4)})`],
    ['remove_header', `(call $proxy_remove_header_map_value ${c(0)} ${P} ${c(4)})`],
    ['header_size', `(call $proxy_get_header_map_size ${c(0)} ${P})`],
    ['get_property', `(call $proxy_get_property ${P} ${c(8)} ${c(out(0))} ${c(out(1))})`],
    ['set_property', `(call $proxy_set_property ${P} ${c(8)} ${P} ${c(8)})`],
    ['get_buffer_out', `(call $proxy_get_buffer_bytes ${c(7)} ${c(0)} ${c(100)} ${P} ${P})`],
    ['buffer_status', `(call $proxy_get_buffer_status ${c(7)} ${P} ${P})`],
    ['local_response', `(call $proxy_send_local_response ${c(403)} ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${c(-1)})`],
    ['http_call', `(call $proxy_http_call ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${c(0)} ${P})`],
    ['grpc_call', `(call $proxy_grpc_call ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${P} ${c(4)} ${c(0)} ${P})`],
    ['time', `(call $proxy_get_current_time_nanoseconds ${P})`],
    ['log_level', `(call $proxy_get_log_level ${P})`],
    ['status', `(call $proxy_get_status ${P} ${P} ${P})`],
    ['get_shared', `(call $proxy_get_shared_data ${P} ${c(4)} ${P} ${P} ${P})`],
    ['set_shared', `(call $proxy_set_shared_data ${P} ${c(4)} ${P} ${c(4)} ${c(0)})`],
    ['register_queue', `(call $proxy_register_shared_queue ${P} ${c(4)} ${P})`],
    ['define_metric', `(call $proxy_define_metric ${c(0)} ${P} ${c(4)} ${P})`],
    ['foreign_call', `(call $proxy_call_foreign_function ${P} ${c(8)} ${P} ${c(4)} ${P} ${P})`],
  ];
  const wat = recordingModule({
    imports: envImports(
      'proxy_log', 'proxy_get_header_map_value', 'proxy_get_header_map_pairs', 'proxy_set_header_map_pairs', 'proxy_add_header_map_value',
      'proxy_replace_header_map_value', 'proxy_remove_header_map_value', 'proxy_get_header_map_size', 'proxy_get_property', 'proxy_set_property',
      'proxy_get_buffer_bytes', 'proxy_get_buffer_status', 'proxy_send_local_response', 'proxy_http_call', 'proxy_grpc_call',
      'proxy_get_current_time_nanoseconds', 'proxy_get_log_level', 'proxy_get_status', 'proxy_get_shared_data', 'proxy_set_shared_data',
      'proxy_register_shared_queue', 'proxy_define_metric', 'proxy_call_foreign_function',
    ),
    strings: s,
    body: recordingCallbacks({ proxy_on_request_headers: `${calls.map(([name, call]) => ev(`oob_${name}`, call)).join('\n    ')} ${c(0)}` }),
  });
  const { plugin } = await loadPlugin(wat, { configuration: 'some plugin configuration' }, { httpCall: () => Promise.resolve(null), grpcCall: () => new Promise(() => {}) });
  try {
    const sink = new TraceSink();
    const st = plugin.createHttpStream(sink);
    st.requestHeaders(GET(), true);
    st.responseHeaders(OK_RESPONSE(), true);
    st.finish();
    const results = pluginEvents(plugin).filter((e) => e.startsWith('oob_'));
    assert.equal(results, calls.map(([name]) => `oob_${name}(${WasmResult.InvalidMemoryAccess})`));
    assert.equal(sink.trace, ['request headers end', 'response headers end'], 'the stream went on normally');
    assert.is(plugin.state, 'running');
  } finally {
    await plugin.stop();
  }
});

test('memory.grow past memoryLimitBytes returns -1 inside the guest; the VM keeps working', async () => {
  const s = new Strings();
  const path = s.add(':path');
  const body = recordingCallbacks({
    proxy_on_request_headers: `
    ${ev('grow', `(memory.grow ${c(1)})`)}
    ${ev('grow', `(memory.grow ${c(2)})`)}
    ${ev('grow', `(memory.grow ${c(1)})`)}
    ${ev('grow', `(memory.grow ${c(1)})`)}
    ${ev('grow', `(memory.grow ${c(65536)})`)}
    ${ev('size', '(memory.size)')}
    ;; host calls that allocate still work
    ${ev('lookup', `(call $proxy_get_header_map_value ${c(0)} ${pl(path)} ${c(out(0))} ${c(out(1))})`, outVal(1))}
    ${c(0)}`,
  });
  const unbounded = recordingModule({ imports: envImports('proxy_get_header_map_value'), strings: s, body });
  const declaredLarge = unbounded.replace('(memory (export "memory") 2)', '(memory (export "memory") 2 100)');
  const declaredSmall = unbounded.replace('(memory (export "memory") 2)', '(memory (export "memory") 2 3)');
  assert.ok(declaredLarge !== unbounded && declaredSmall !== unbounded);
  const limit = { memoryLimitBytes: 4 * 65536 };
  for (const [wat, expected] of [
    [unbounded, ['grow(2)', 'grow(-1)', 'grow(3)', 'grow(-1)', 'grow(-1)', 'size(4)', 'lookup(0,6)']],
    [declaredLarge, ['grow(2)', 'grow(-1)', 'grow(3)', 'grow(-1)', 'grow(-1)', 'size(4)', 'lookup(0,6)']],
    // The module's own smaller maximum stays.
    [declaredSmall, ['grow(2)', 'grow(-1)', 'grow(-1)', 'grow(-1)', 'grow(-1)', 'size(3)', 'lookup(0,6)']],
  ] as const) {
    const { plugin } = await loadPlugin(wat, {}, {}, limit);
    try {
      const sink = new TraceSink();
      const st = plugin.createHttpStream(sink);
      st.requestHeaders(GET(), true);
      st.finish();
      assert.equal(pluginEvents(plugin).filter((e) => /^(grow|size|lookup)\(/.test(e)), [...expected]);
      assert.equal(sink.trace, ['request headers end']);
      assert.is(plugin.state, 'running');
      assert.ok(plugin.vm.guest.memory.buffer.byteLength <= limit.memoryLimitBytes);
    } finally {
      await plugin.stop();
    }
  }
});

test('a PluginHost.httpCall that throws or rejects: the module gets InternalFailure or a failed call, nothing escapes', async () => {
  const s = new Strings();
  const cluster = s.add('svc');
  const headers = s.pairs([[':method', 'GET'], [':path', '/'], [':authority', 'svc']]);
  const wat = recordingModule({
    imports: envImports('proxy_http_call'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `${ev('call', `(call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(out(0))})`)} ${c(0)}`,
    }),
  });
  let mode: 'throw' | 'reject' = 'throw';
  const httpCall = (_req: HttpCallRequest) => {
    if (mode === 'throw') throw new Error('host bug');
    return Promise.reject(new Error('connection refused'));
  };
  const { plugin } = await loadPlugin(wat, {}, { httpCall });
  try {
    const a = plugin.createHttpStream(new TraceSink());
    a.requestHeaders(GET(), true);
    a.finish();
    mode = 'reject';
    const b = plugin.createHttpStream(new TraceSink());
    b.requestHeaders(GET(), true);
    b.finish();
    await settle();
    const evs = pluginEvents(plugin).filter((e) => /^(call|http_call_response)\(/.test(e));
    assert.is(evs[0], `call(${WasmResult.InternalFailure})`);
    assert.is(evs[1], 'call(0)');
    assert.match(evs[2], /^http_call_response\(1,\d+,0,0,0\)$/);
    assert.is(evs.length, 3);
    assert.is(plugin.state, 'running');
  } finally {
    await plugin.stop();
  }
});

test('no exception or rejection escaped from any module failure', async () => {
  await settle();
  assert.equal(escaped, []);
});

test.run();
