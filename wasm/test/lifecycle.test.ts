// The order of callbacks a module sees: startup, the root context, each stream, shutdown and ticks.
// Each guest records every callback and its arguments in its own memory (support/recorder.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, WasmeshWasmError } from '../src/errors.ts';
import { Plugin } from '../src/plugin.ts';
import {
  GET, OK_RESPONSE, POST, Strings, TraceSink, c, envImports, ev, log, out, outVal, pl, loadPlugin, pluginEvents,
  recordingCallbacks, recordingModule, sleep, waitFor,
} from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

const STARTUP = ['context_create(1,0)'];

/** Events after the root context was configured (startup is checked on its own). */
function streamEvents(plugin: Plugin): string[] {
  const all = pluginEvents(plugin);
  const i = all.findIndex((e) => e.startsWith('configure('));
  return all.slice(i + 1);
}

test('startup: _initialize, main(0,0), then on_context_create(root, 0), on_vm_start, on_configure', async () => {
  const wat = recordingModule({
    body: `
  (func (export "_initialize") ${ev('initialize')})
  (func (export "main") (param i32 i32) (result i32) ${ev('main', '(local.get 0)', '(local.get 1)')} ${c(0)})
  (func (export "_start") ${ev('start')})
  ${recordingCallbacks()}`,
  });
  const { plugin } = await loadPlugin(wat, { configuration: 'abc', vmConfiguration: 'hello' });
  try {
    assert.equal(pluginEvents(plugin), ['initialize()', 'main(0,0)', ...STARTUP, 'vm_start(1,5)', 'configure(1,3)']);
  } finally {
    await plugin.stop();
  }
});

test('startup: _start runs only when there is no _initialize (and main is then not called)', async () => {
  const command = recordingModule({
    body: `
  (func (export "_start") ${ev('start')})
  (func (export "main") (param i32 i32) (result i32) ${ev('main', '(local.get 0)', '(local.get 1)')} ${c(0)})
  ${recordingCallbacks()}`,
  });
  const a = await loadPlugin(command, { configuration: '{}' });
  try {
    assert.equal(pluginEvents(a.plugin), ['start()', ...STARTUP, 'vm_start(1,0)', 'configure(1,2)']);
  } finally {
    await a.plugin.stop();
  }
  // A reactor without main falls back to __main_void.
  const reactor = recordingModule({
    body: `
  (func (export "_initialize") ${ev('initialize')})
  (func (export "__main_void") (result i32) ${ev('main_void')} ${c(0)})
  ${recordingCallbacks()}`,
  });
  const b = await loadPlugin(reactor);
  try {
    assert.equal(pluginEvents(b.plugin), ['initialize()', 'main_void()', ...STARTUP, 'vm_start(1,0)', 'configure(1,0)']);
  } finally {
    await b.plugin.stop();
  }
});

test('a stream: headers, body, trailers each way, then on_log, on_done, on_delete', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks() }));
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('hello'), false);
    s.requestData(Buffer.from(' world'), false);
    s.requestTrailers(['x-checksum', 'abc']);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('ok'), false);
    s.responseData(Buffer.from('!'), true);
    s.finish();
    assert.equal(streamEvents(plugin), [
      'context_create(2,1)',
      'request_headers(2,5,0)',
      // A filter that continues gets each chunk on its own: nothing is held, so the size is the chunk's.
      'request_body(2,5,0)',
      'request_body(2,6,0)',
      // With trailers, the last body call did not say end_of_stream; the trailers did.
      'request_trailers(2,1)',
      'response_headers(2,2,0)',
      'response_body(2,2,0)',
      'response_body(2,1,1)',
      'log(2)',
      'done(2)',
      'delete(2)',
    ]);
    assert.equal(sink.trace, [
      'request headers',
      "request data 'hello'",
      "request data ' world'",
      'request trailers',
      'response headers',
      "response data 'ok'",
      "response data '!' end",
    ]);
    // finish() twice changes nothing.
    s.finish();
    assert.is(streamEvents(plugin).length, 11);
  } finally {
    await plugin.stop();
  }
});

test('headers carrying end_of_stream: no body callbacks', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks() }));
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders([':status', '204'], true);
    s.finish();
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,4,1)', 'response_headers(2,1,1)', 'log(2)', 'done(2)', 'delete(2)']);
    assert.equal(sink.trace, ['request headers end', 'response headers end']);
  } finally {
    await plugin.stop();
  }
});

test('context ids are unique: one per stream, never the root id, never reused', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks() }));
  try {
    const a = plugin.createHttpStream(new TraceSink());
    const b = plugin.createHttpStream(new TraceSink());
    a.requestHeaders(GET(), true);
    const c3 = plugin.createHttpStream(new TraceSink());
    b.requestHeaders(GET(), true);
    c3.requestHeaders(GET(), true);
    b.finish();
    a.finish();
    const d = plugin.createHttpStream(new TraceSink());
    d.requestHeaders(GET(), true);
    c3.finish();
    d.finish();
    const created = streamEvents(plugin).filter((e) => e.startsWith('context_create'));
    assert.equal(created, ['context_create(2,1)', 'context_create(3,1)', 'context_create(4,1)', 'context_create(5,1)']);
    assert.equal([a.id, b.id, c3.id, d.id], [2, 3, 4, 5]);
    // Each stream's callbacks carry its own id.
    const headers = streamEvents(plugin).filter((e) => e.startsWith('request_headers'));
    assert.equal(headers, ['request_headers(2,4,1)', 'request_headers(3,4,1)', 'request_headers(4,4,1)', 'request_headers(5,4,1)']);
    const deleted = streamEvents(plugin).filter((e) => e.startsWith('delete'));
    assert.equal(deleted, ['delete(3)', 'delete(2)', 'delete(4)', 'delete(5)']);
  } finally {
    await plugin.stop();
  }
});

/** Awaits a promise that must reject with a WasmeshWasmError. */
async function refusal(p: Promise<unknown>): Promise<WasmeshWasmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, WasmeshWasmError, err === undefined ? 'expected Plugin.load to fail' : `expected a WasmeshWasmError, got ${String(err)}`);
  return err as WasmeshWasmError;
}

test('on_vm_start returning 0 fails the load with the module\'s error line', async () => {
  const s = new Strings();
  const why = s.add('vm config rejected: missing "zone"');
  const configured = s.add('configure was called');
  const wat = recordingModule({
    imports: envImports('proxy_log'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_vm_start: `${log(4, why)} ${c(0)}`,
      proxy_on_configure: `${log(2, configured)} ${c(1)}`,
    }),
  });
  const logs: string[] = [];
  const err = await refusal(Plugin.load(await wat2wasm(wat), { name: 'vmstart' }, { log: (_l, m) => logs.push(m) }));
  assert.is(err.code, ErrorCode.StartFailed);
  assert.match(err.message, 'vm config rejected: missing "zone"');
  assert.match(err.message, 'vmstart');
  assert.not.ok(logs.includes('configure was called'), 'on_configure is not called after a failed on_vm_start');
});

test('on_configure returning 0 fails the load with the module\'s error line; nothing keeps running', async () => {
  const s = new Strings();
  const why = s.add('bad plugin config: "limit" must be a number');
  const tick = s.add('tick');
  const wat = recordingModule({
    imports: envImports('proxy_log', 'proxy_set_tick_period_milliseconds'),
    strings: s,
    body: recordingCallbacks({
      // Timers started before the failure must not outlive the plugin that never started.
      proxy_on_vm_start: `(drop (call $proxy_set_tick_period_milliseconds ${c(1)})) ${c(1)}`,
      proxy_on_configure: `${log(4, why)} ${c(0)}`,
      proxy_on_tick: log(2, tick),
    }),
  });
  const logs: string[] = [];
  const err = await refusal(Plugin.load(await wat2wasm(wat), { name: 'conf' }, { log: (_l, m) => logs.push(m) }));
  assert.is(err.code, ErrorCode.ConfigureFailed);
  assert.match(err.message, 'bad plugin config: "limit" must be a number');
  await sleep(25);
  assert.not.ok(logs.includes('tick'), 'on_tick was called on a plugin that failed to configure');
});

test('plugin.stop(): on_done(root) then on_delete(root); then no new streams', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks() }));
  await plugin.stop();
  assert.equal(pluginEvents(plugin), [...STARTUP, 'vm_start(1,0)', 'configure(1,0)', 'done(1)', 'delete(1)']);
  assert.is(plugin.state, 'stopped');
  assert.throws(() => plugin.createHttpStream(new TraceSink()));
  await plugin.stop();
  assert.is(pluginEvents(plugin).length, 5, 'a second stop() calls nothing');
});

test('on_done returning 0: on_delete waits for proxy_done, called from a later tick', async () => {
  const wat = recordingModule({
    imports: envImports('proxy_set_tick_period_milliseconds', 'proxy_done'),
    body: `
  (global $stopping (mut i32) (i32.const 0))
  ${recordingCallbacks({
    proxy_on_configure: `(drop (call $proxy_set_tick_period_milliseconds ${c(3)})) ${c(1)}`,
    // proxy_done before on_done asked to wait is NotFound; after, OK.
    proxy_on_tick: ev('proxy_done', '(call $proxy_done)'),
    proxy_on_done: `(global.set $stopping ${c(1)}) ${c(0)}`,
  })}`,
  });
  const { plugin } = await loadPlugin(wat);
  try {
    assert.ok(await waitFor(() => pluginEvents(plugin).includes('proxy_done(1)'), 1000), 'ticks run');
  } finally {
    const started = Date.now();
    await plugin.stop();
    assert.ok(Date.now() - started < 1000, `stop() waited ${Date.now() - started} ms for proxy_done`);
  }
  const all = pluginEvents(plugin);
  const after = all.slice(all.indexOf('done(1)'));
  assert.equal(after, ['done(1)', 'tick(1)', 'proxy_done(0)', 'delete(1)']);
  const count = all.length;
  await sleep(15);
  assert.is(pluginEvents(plugin).length, count, 'no tick after on_delete');
});

test('on_done returning 0 without a later proxy_done: stop(timeoutMs) deletes the root when the time is up', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks({ proxy_on_done: c(0) }) }));
  const started = Date.now();
  await plugin.stop(40);
  const waited = Date.now() - started;
  assert.ok(waited >= 35 && waited < 1000, `waited ${waited} ms`);
  assert.equal(pluginEvents(plugin).slice(-2), ['done(1)', 'delete(1)']);
});

test('ticks: proxy_on_tick(root) fires repeatedly; period 0 stops it; a stream context sets its root\'s timer', async () => {
  const wat = recordingModule({
    imports: envImports('proxy_set_tick_period_milliseconds'),
    body: `
  (global $ticks (mut i32) (i32.const 0))
  ${recordingCallbacks({
    proxy_on_configure: `(drop (call $proxy_set_tick_period_milliseconds ${c(2)})) ${c(1)}`,
    proxy_on_tick: `
    (global.set $ticks (i32.add (global.get $ticks) ${c(1)}))
    (if (i32.eq (global.get $ticks) ${c(3)}) (then ${ev('stop_ticks', '(call $proxy_set_tick_period_milliseconds (i32.const 0))')}))
    (if (i32.eq (global.get $ticks) ${c(5)}) (then ${ev('stop_ticks', '(call $proxy_set_tick_period_milliseconds (i32.const 0))')}))`,
    proxy_on_request_headers: `${ev('start_ticks', '(call $proxy_set_tick_period_milliseconds (i32.const 2))')} ${c(0)}`,
  })}`,
  });
  const { plugin } = await loadPlugin(wat);
  try {
    const ticks = () => pluginEvents(plugin).filter((e) => e.startsWith('tick'));
    assert.ok(await waitFor(() => ticks().length >= 3, 1000));
    await sleep(20);
    assert.equal(ticks(), ['tick(1)', 'tick(1)', 'tick(1)']);
    assert.ok(pluginEvents(plugin).includes('stop_ticks(0)'));
    const s = plugin.createHttpStream(new TraceSink());
    s.requestHeaders(GET(), true);
    s.finish();
    assert.ok(await waitFor(() => ticks().length >= 5, 1000));
    await sleep(20);
    assert.equal(ticks(), Array(5).fill('tick(1)'), 'ticks go to the root (id 1), and stop again at 0');
    const ev1 = pluginEvents(plugin);
    assert.ok(ev1.indexOf('start_ticks(0)') < ev1.lastIndexOf('tick(1)'));
  } finally {
    await plugin.stop();
  }
});

test('ABI 0.1.0: 2-argument header callbacks; a missing header is OK with an empty value', async () => {
  const module = (abi: '0_1_0' | '0_2_1', params: number) => {
    const s = new Strings();
    const missing = s.add('x-missing');
    const present = s.add(':path');
    const lookup = (b: typeof missing, name: string) =>
      `${ev(name, `(call $proxy_get_header_map_value ${c(0)} ${pl(b)} ${c(out(0))} ${c(out(1))})`, outVal(1))}`;
    return recordingModule({
      abi,
      imports: envImports('proxy_get_header_map_value'),
      strings: s,
      body: recordingCallbacks({
        proxy_on_request_headers: {
          params,
          body: `(i32.store ${c(out(1))} ${c(-1)}) ${lookup(missing, 'missing')} ${lookup(present, 'path')} ${c(0)}`,
        },
        proxy_on_response_headers: { params, body: c(0) },
      }),
    });
  };
  const legacy = await loadPlugin(module('0_1_0', 2));
  try {
    assert.is(legacy.plugin.compiled.abiVersion, '0.1.0');
    const sink = new TraceSink();
    const s = legacy.plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders(OK_RESPONSE(), true);
    s.finish();
    assert.equal(streamEvents(legacy.plugin).slice(0, 5), [
      'context_create(2,1)',
      'request_headers(2,4)',
      'missing(0,0)',
      'path(0,6)',
      'response_headers(2,2)',
    ]);
    assert.equal(sink.trace, ['request headers end', 'response headers end']);
  } finally {
    await legacy.plugin.stop();
  }
  const current = await loadPlugin(module('0_2_1', 3));
  try {
    const s = current.plugin.createHttpStream(new TraceSink());
    s.requestHeaders(GET(), true);
    s.finish();
    // 0.2.x: NotFound, and the host wrote nothing.
    assert.equal(streamEvents(current.plugin).slice(0, 4), ['context_create(2,1)', 'request_headers(2,4,1)', 'missing(1,-1)', 'path(0,6)']);
  } finally {
    await current.plugin.stop();
  }
});

test.run();
