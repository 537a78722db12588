// The test harness (FilterHarness, `wasmesh/wasm`) as filter authors use it: what a stream logged
// to its very end, gRPC callouts answered from canned responses, ticks stepped by hand, the Action each
// callback returned, two harnesses sharing shared data and queues, and local replies in the form the
// client gets them. The filters are wat, so each does exactly what the test says.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness } from '../src/harness.ts';
import { localReplyWat } from './support/local-reply-filter.ts';
import { Strings, c, envImports, out, outVal, pl, recordingCallbacks, recordingModule } from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

const GET = { ':method': 'GET', ':path': '/', ':authority': 'api.local', ':scheme': 'http' };
const OK = { headers: { ':status': '200' }, body: 'from upstream' };

const messages = (logs: Array<{ message: string }>) => logs.map((l) => l.message);

/** The promise rejects with an error whose message matches. */
async function rejects(promise: () => Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await promise();
  } catch (err) {
    assert.match((err as Error).message, message);
    return;
  }
  assert.unreachable(`expected a rejection matching ${message}`);
}

/** `(drop (call $proxy_log (i32.const 2) ...))` for a constant. */
function logText(s: Strings, text: string): string {
  return `(drop (call $proxy_log ${c(2)} ${pl(s.add(text))}))`;
}

test('RunResult.logs holds what the stream logged to its end: on_log, on_done and on_delete included', async () => {
  const s = new Strings();
  const wat = recordingModule({
    imports: envImports('proxy_log'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `${logText(s, 'request headers')} ${c(0)}`,
      proxy_on_log: logText(s, 'on_log'),
      proxy_on_done: `${logText(s, 'on_done')} ${c(1)}`,
      proxy_on_delete: logText(s, 'on_delete'),
    }),
  });
  const h = await FilterHarness.load(await wat2wasm(wat));
  try {
    const r = await h.run({ request: { headers: GET }, response: OK });
    assert.equal(messages(r.logs), ['request headers', 'on_log', 'on_done', 'on_delete']);
    const second = await h.run({ request: { headers: GET } });
    assert.equal(messages(second.logs), ['request headers', 'on_log', 'on_done', 'on_delete'], 'each run reports its own stream');
  } finally {
    await h.close();
  }
});

/**
 * On request headers: a unary gRPC call authz / pkg.Authz / Check with metadata x-md: 1 and the
 * message "ping", and Pause. The answer's message is logged; on close, status OK continues the
 * request, any other status answers it 403 with the status message. A call the host refuses is
 * logged with its result and the request goes on.
 */
function grpcCheckWat(): string {
  const s = new Strings();
  const cluster = s.add('authz');
  const service = s.add('pkg.Authz');
  const method = s.add('Check');
  const metadata = s.pairs([['x-md', '1']]);
  const message = s.add('ping');
  const details = s.add('denied_by_authz');
  const refused = s.add('grpc_call refused');
  return recordingModule({
    imports: envImports('proxy_log', 'proxy_grpc_call', 'proxy_get_buffer_bytes', 'proxy_get_status', 'proxy_set_effective_context', 'proxy_continue_stream', 'proxy_send_local_response'),
    strings: s,
    body: `
  (global $stream (mut i32) (i32.const 0))
  ${recordingCallbacks({
    proxy_on_request_headers: `
    (global.set $stream (local.get 0))
    (i32.store ${c(out(9))} (call $proxy_grpc_call ${pl(cluster)} ${pl(service)} ${pl(method)} ${pl(metadata)} ${pl(message)} ${c(500)} ${c(out(0))}))
    (if (i32.eqz ${outVal(9)}) (then (return ${c(1)})))
    (drop (call $proxy_log ${c(3)} ${pl(refused)}))
    ${c(0)}`,
    proxy_on_grpc_receive: `
    (drop (call $proxy_get_buffer_bytes ${c(5)} ${c(0)} (local.get 2) ${c(out(1))} ${c(out(2))}))
    (drop (call $proxy_log ${c(2)} ${outVal(1)} ${outVal(2)}))`,
    proxy_on_grpc_close: `
    (drop (call $proxy_get_status ${c(out(3))} ${c(out(4))} ${c(out(5))}))
    (drop (call $proxy_set_effective_context (global.get $stream)))
    (if (i32.eqz (local.get 2))
      (then (drop (call $proxy_continue_stream ${c(0)})))
      (else (drop (call $proxy_send_local_response ${c(403)} ${pl(details)} ${outVal(4)} ${outVal(5)} ${c(0)} ${c(0)} ${c(-1)}))))`,
  })}`,
  });
}

test('gRPC callouts are answered by cluster/service/method, recorded, and drive the stream', async () => {
  const bytes = await wat2wasm(grpcCheckWat());
  const allow = await FilterHarness.load(bytes, {
    grpcCalloutResponses: {
      'authz/pkg.Authz/Check': { message: 'allowed', initialMetadata: { 'x-init': 'i' } },
      authz: { status: 14, statusMessage: 'the least specific key loses' },
    },
  });
  try {
    const r = await allow.run({ request: { headers: GET }, response: OK });
    assert.equal(r.actions[0], { callback: 'on_request_headers', action: 'Pause', value: 1 }, 'the filter waits for the answer');
    assert.ok(r.request, 'status OK: the request went on to the upstream');
    assert.is(r.response?.headers[':status'], '200');
    assert.ok(messages(r.logs).includes('allowed'), 'on_grpc_receive read the answer');
    assert.is(r.grpcCallouts.length, 1);
    const call = r.grpcCallouts[0];
    assert.equal([call.upstream, call.service, call.method, call.timeoutMs], ['authz', 'pkg.Authz', 'Check', 500]);
    assert.equal(call.metadata, { 'x-md': '1' });
    assert.is(Buffer.from(call.message).toString(), 'ping');
    assert.is(call.response?.status, 0);
    assert.is(Buffer.from(call.response?.message ?? []).toString(), 'allowed');
  } finally {
    await allow.close();
  }

  const deny = await FilterHarness.load(bytes, { grpcCalloutResponses: { 'authz/pkg.Authz': { status: 7, statusMessage: 'not you' } } });
  try {
    const r = await deny.run({ request: { headers: GET }, response: OK });
    assert.is(r.request, undefined, 'the upstream saw nothing');
    assert.is(r.localResponse?.status, 403);
    assert.is(r.localResponse?.body, 'not you', 'the filter read the status message (proxy_get_status)');
    assert.equal(r.grpcCallouts[0].response, { status: 7, statusMessage: 'not you' });
  } finally {
    await deny.close();
  }

  const unknown = await FilterHarness.load(bytes);
  try {
    const r = await unknown.run({ request: { headers: GET }, response: OK });
    assert.ok(r.request, 'the filter went on without the call');
    assert.equal(messages(r.logs).filter((m) => m === 'grpc_call refused'), ['grpc_call refused'], 'an unlisted cluster is refused (ParseFailure)');
    assert.equal(r.grpcCallouts, []);
  } finally {
    await unknown.close();
  }
});

/** Sets a tick of `periodMs` in on_configure; each tick logs "tick" and calls the `stats` cluster; each answer is logged. */
function tickerWat(periodMs: number | undefined): string {
  const s = new Strings();
  const cluster = s.add('stats');
  const headers = s.pairs([[':method', 'GET'], [':path', '/report'], [':authority', 'stats']]);
  const setTick = periodMs === undefined ? '' : `(drop (call $proxy_set_tick_period_milliseconds ${c(periodMs)}))`;
  return recordingModule({
    imports: envImports('proxy_log', 'proxy_set_tick_period_milliseconds', 'proxy_http_call'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_configure: `${setTick} ${c(1)}`,
      proxy_on_tick: `${logText(s, 'tick')}
    (drop (call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(1000)} ${c(out(0))}))`,
      proxy_on_http_call_response: logText(s, 'answered'),
    }),
  });
}

test('manualTicks: on_tick runs only when the test steps it, and tick() waits for the callouts it started', async () => {
  const h = await FilterHarness.load(await wat2wasm(tickerWat(10)), { manualTicks: true, calloutResponses: { stats: { status: 204 } } });
  try {
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(messages(h.logs), [], 'six periods of wall time passed: no tick ran by itself');
    const t = await h.tick(3);
    assert.is(t.ticks, 3);
    assert.equal(messages(t.logs), ['tick', 'tick', 'tick', 'answered', 'answered', 'answered']);
    assert.equal(t.callouts.map((call) => call.response?.headers[':status']), ['204', '204', '204']);
    assert.equal(messages((await h.tick()).logs), ['tick', 'answered'], 'tick() runs one by default');
    await rejects(() => h.tick(0), /count must be a whole number of at least 1/);
  } finally {
    await h.close();
  }
});

test('without manualTicks ticks follow the period, as in a proxy; tick() refuses a filter that set none', async () => {
  const real = await FilterHarness.load(await wat2wasm(tickerWat(5)), { calloutResponses: { stats: {} } });
  try {
    const deadline = Date.now() + 5000;
    while (messages(real.logs).filter((m) => m === 'tick').length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(messages(real.logs).filter((m) => m === 'tick').length >= 2, 'the wall-clock timer ticked');
  } finally {
    await real.close();
  }
  const none = await FilterHarness.load(await wat2wasm(tickerWat(undefined)), { manualTicks: true });
  try {
    await rejects(() => none.tick(), /set no tick period \(proxy_set_tick_period_milliseconds/);
  } finally {
    await none.close();
  }
});

test('RunResult.actions: what each stream callback returned, in order', async () => {
  const s = new Strings();
  const cluster = s.add('authz');
  const headers = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', 'authz']]);
  const wat = recordingModule({
    imports: envImports('proxy_http_call', 'proxy_set_effective_context', 'proxy_continue_stream'),
    strings: s,
    body: `
  (global $stream (mut i32) (i32.const 0))
  ${recordingCallbacks({
    // Pause on the headers until a callout answers; the body then follows.
    proxy_on_request_headers: `
    (global.set $stream (local.get 0))
    (drop (call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(1000)} ${c(out(0))}))
    ${c(1)}`,
    proxy_on_http_call_response: `
    (drop (call $proxy_set_effective_context (global.get $stream)))
    (drop (call $proxy_continue_stream ${c(0)}))`,
  })}`,
  });
  const h = await FilterHarness.load(await wat2wasm(wat), { calloutResponses: { authz: {} } });
  try {
    const r = await h.run({ request: { headers: { ...GET, ':method': 'POST' }, body: 'payload' }, response: OK });
    assert.equal(r.actions, [
      { callback: 'on_request_headers', action: 'Pause', value: 1 },
      { callback: 'on_request_body', action: 'Continue', value: 0 },
      { callback: 'on_response_headers', action: 'Continue', value: 0 },
      { callback: 'on_response_body', action: 'Continue', value: 0 },
    ]);
    assert.is(r.request?.body, 'payload');
  } finally {
    await h.close();
  }
});

/** A writer: each request sets shared data greeting=hello and enqueues "enqueued" on vm "shared"'s queue "events" (if it exists). */
function writerWat(): string {
  const s = new Strings();
  const key = s.add('greeting');
  const value = s.add('hello');
  const vmId = s.add('shared');
  const queue = s.add('events');
  const item = s.add('enqueued');
  return recordingModule({
    imports: envImports('proxy_set_shared_data', 'proxy_resolve_shared_queue', 'proxy_enqueue_shared_queue'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `
    (drop (call $proxy_set_shared_data ${pl(key)} ${pl(value)} ${c(0)}))
    (if (i32.eqz (call $proxy_resolve_shared_queue ${pl(vmId)} ${pl(queue)} ${c(out(0))}))
      (then (drop (call $proxy_enqueue_shared_queue ${outVal(0)} ${pl(item)}))))
    ${c(0)}`,
    }),
  });
}

/** A reader: registers queue "events" and logs each item; each request gets x-greeting from shared data greeting, if set. */
function readerWat(): string {
  const s = new Strings();
  const key = s.add('greeting');
  const header = s.add('x-greeting');
  const queue = s.add('events');
  return recordingModule({
    imports: envImports('proxy_log', 'proxy_get_shared_data', 'proxy_add_header_map_value', 'proxy_register_shared_queue', 'proxy_dequeue_shared_queue'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_configure: `(drop (call $proxy_register_shared_queue ${pl(queue)} ${c(out(5))})) ${c(1)}`,
      proxy_on_request_headers: `
    (if (i32.eqz (call $proxy_get_shared_data ${pl(key)} ${c(out(1))} ${c(out(2))} ${c(out(3))}))
      (then (drop (call $proxy_add_header_map_value ${c(0)} ${pl(header)} ${outVal(1)} ${outVal(2)}))))
    ${c(0)}`,
      proxy_on_queue_ready: `
    (if (i32.eqz (call $proxy_dequeue_shared_queue (local.get 1) ${c(out(6))} ${c(out(7))}))
      (then (drop (call $proxy_log ${c(2)} ${outVal(6)} ${outVal(7)}))))`,
    }),
  });
}

test('two harnesses given the same stores (and vm id) share data and queues as two plugins of one proxy', async () => {
  const reader = await FilterHarness.load(await wat2wasm(readerWat()), { vmId: 'shared' });
  const writer = await FilterHarness.load(await wat2wasm(writerWat()), { vmId: 'shared', sharedData: reader.sharedData, sharedQueues: reader.sharedQueues });
  const alone = await FilterHarness.load(await wat2wasm(readerWat()), { vmId: 'shared' });
  try {
    await writer.run({ request: { headers: GET } });
    await reader.settle();
    assert.equal(messages(reader.logs), ['enqueued'], 'on_queue_ready got the writer’s item');
    const r = await reader.run({ request: { headers: GET } });
    assert.is(r.request?.headers['x-greeting'], 'hello', 'the reader saw the writer’s shared data');
    const separate = await alone.run({ request: { headers: GET } });
    assert.is(separate.request?.headers['x-greeting'], undefined, 'a harness with its own stores sees nothing of it');
    assert.equal(messages(alone.logs), []);
  } finally {
    await Promise.all([reader.close(), writer.close(), alone.close()]);
  }
});

test('local replies as the client gets them: HTTP with text/plain for a plain request, trailers-only gRPC for a gRPC one', async () => {
  const h = await FilterHarness.load(await wat2wasm(localReplyWat({ status: 401, body: 'missing x-api-key', grpcStatus: 16 })));
  try {
    const plain = await h.run({ request: { headers: GET }, response: OK });
    assert.equal(plain.response, { headers: { ':status': '401', 'content-type': 'text/plain' }, body: 'missing x-api-key' });
    assert.is(plain.localResponse?.grpcStatus, 16, 'localResponse is what the filter asked for');
    const grpc = await h.run({ request: { headers: { ...GET, ':method': 'POST', 'content-type': 'application/grpc+proto' } }, response: OK });
    assert.equal(grpc.response, {
      headers: { ':status': '401', 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'missing x-api-key' },
      body: '',
    });
  } finally {
    await h.close();
  }
  const own = await FilterHarness.load(await wat2wasm(localReplyWat({ status: 429, body: '{"retry":true}', grpcStatus: -1, headers: [['content-type', 'application/json']] })));
  const empty = await FilterHarness.load(await wat2wasm(localReplyWat({ status: 204, body: '', grpcStatus: 16 })));
  try {
    assert.equal((await own.run({ request: { headers: GET } })).response?.headers, { ':status': '429', 'content-type': 'application/json' }, 'the filter’s own content-type stays');
    assert.equal((await empty.run({ request: { headers: GET } })).response, { headers: { ':status': '204' }, body: '' }, 'no body, no content-type');
  } finally {
    await Promise.all([own.close(), empty.close()]);
  }
});

test.run();
