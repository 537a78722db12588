// Stream control as a module drives it: pausing and resuming from a callout, body buffering and its
// bound, local responses, closing a stream, HTTP and gRPC callouts, and foreign-function events.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmResult } from '../src/abi/constants.ts';
import { FilterHarness } from '../src/harness.ts';
import type { GrpcCallRequest, GrpcCallResponse, HttpCallRequest, HttpCallResponse } from '../src/host.ts';
import type { Plugin } from '../src/plugin.ts';
import {
  GET, OK_RESPONSE, POST, Strings, TraceSink, c, envImports, ev, out, outVal, pl, loadPlugin, pluginEvents,
  recordingCallbacks, recordingModule, settle, waitFor,
} from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

/** Events after the root context was configured. */
function streamEvents(plugin: Plugin): string[] {
  const all = pluginEvents(plugin);
  return all.slice(all.findIndex((e) => e.startsWith('configure(')) + 1);
}

const CALL_HEADERS: Array<[string, string]> = [[':method', 'GET'], [':path', '/check'], [':authority', 'authz.local']];

// ---- pause and resume ----------------------------------------------------------------------------

/** Pauses on request headers with an HTTP callout; the callout's answer resumes the stream. */
function authzModule(): string {
  const s = new Strings();
  const cluster = s.add('authz');
  const headers = s.pairs(CALL_HEADERS);
  const body = s.add('q');
  const user = s.add('x-user');
  const bodyHeader = s.add('x-authz-body');
  return recordingModule({
    imports: envImports('proxy_http_call', 'proxy_set_effective_context', 'proxy_continue_stream', 'proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_get_buffer_bytes'),
    strings: s,
    body: `
  (global $stream (mut i32) (i32.const 0))
  ${recordingCallbacks({
    proxy_on_request_headers: `
    (global.set $stream (local.get 0))
    ${ev('http_call', `(call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${pl(body)} ${c(0)} ${c(0)} ${c(250)} ${c(out(0))})`, outVal(0))}
    ${c(1)}`,
    proxy_on_http_call_response: `
    ${ev('set_ctx', '(call $proxy_set_effective_context (global.get $stream))')}
    ;; the callout's header and body, copied into the paused request's headers
    (if (i32.eqz (call $proxy_get_header_map_value ${c(6)} ${pl(user)} ${c(out(1))} ${c(out(2))}))
      (then (drop (call $proxy_add_header_map_value ${c(0)} ${pl(user)} ${outVal(1)} ${outVal(2)}))))
    (if (i32.eqz (call $proxy_get_buffer_bytes ${c(4)} ${c(0)} (local.get 3) ${c(out(3))} ${c(out(4))}))
      (then (if (i32.gt_u ${outVal(4)} ${c(0)})
        (then (drop (call $proxy_add_header_map_value ${c(0)} ${pl(bodyHeader)} ${outVal(3)} ${outVal(4)}))))))
    ${ev('continue', `(call $proxy_continue_stream ${c(0)})`)}`,
  })}`,
  });
}

/** A PluginHost.httpCall whose answers the test releases by hand. */
function manualCallouts() {
  const requests: HttpCallRequest[] = [];
  const answers: Array<(r: HttpCallResponse | null) => void> = [];
  const httpCall = (req: HttpCallRequest): Promise<HttpCallResponse | null> => {
    requests.push(req);
    return new Promise((resolve) => answers.push(resolve));
  };
  return { requests, answers, httpCall };
}

test('pause on request headers, resume from the callout answer: nothing goes upstream before, everything after', async () => {
  const callouts = manualCallouts();
  const { plugin } = await loadPlugin(authzModule(), {}, { httpCall: callouts.httpCall });
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('abc'), false);
    s.requestData(Buffer.from('def'), true);
    await settle();
    assert.equal(sink.trace, [], 'the upstream sees nothing while the filter is paused');
    const token = Number(/^http_call\(0,(\d+)\)$/.exec(streamEvents(plugin)[2])?.[1]);
    assert.ok(token > 0, 'proxy_http_call gave a non-zero token');
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,5,0)', `http_call(0,${token})`], 'no body callback while paused');
    assert.is(callouts.requests.length, 1);
    const req = callouts.requests[0];
    assert.is(req.upstream, 'authz');
    assert.equal(req.headers, [':method', 'GET', ':path', '/check', ':authority', 'authz.local']);
    assert.is(Buffer.from(req.body).toString(), 'q');
    assert.is(req.timeoutMs, 250);

    callouts.answers[0]({ headers: [':status', '200', 'x-user', 'alice'], body: Buffer.from('allowed'), trailers: [] });
    await settle();
    assert.equal(streamEvents(plugin).slice(3), [
      `http_call_response(1,${token},2,7,0)`,
      'set_ctx(0)',
      'continue(0)',
      // The body that arrived while paused reaches the filter after the resume, as one buffer.
      'request_body(2,6,1)',
    ]);
    assert.equal(sink.trace, ['request headers', "request data 'abcdef' end"]);
    const sent = sink.requestHeadersSeen!;
    assert.equal(sent.slice(sent.indexOf('x-user'), sent.indexOf('x-user') + 2), ['x-user', 'alice'], 'headers changed while paused are sent');
    s.responseHeaders(OK_RESPONSE(), true);
    s.finish();
    assert.equal(sink.trace.slice(2), ['response headers end']);
  } finally {
    await plugin.stop();
  }
});

test('paused with body and trailers: after the resume, body then trailers callbacks, then both go upstream', async () => {
  const callouts = manualCallouts();
  const { plugin } = await loadPlugin(authzModule(), {}, { httpCall: callouts.httpCall });
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('abc'), false);
    s.requestTrailers(['x-sum', '1']);
    await settle();
    assert.equal(sink.trace, []);
    callouts.answers[0]({ headers: [':status', '200'], body: new Uint8Array(0), trailers: [] });
    await settle();
    assert.equal(streamEvents(plugin).slice(-3), ['continue(0)', 'request_body(2,3,0)', 'request_trailers(2,1)']);
    assert.equal(sink.trace, ['request headers', "request data 'abc'", 'request trailers']);
    assert.equal(sink.requestTrailersSeen, ['x-sum', '1']);
    s.finish();
  } finally {
    await plugin.stop();
  }
});

test('harness: the callout answer (headers as map 6, body as buffer 4) reaches the paused request', async () => {
  const harness = await FilterHarness.load(await wat2wasm(authzModule()), {
    calloutResponses: { authz: { status: 200, headers: { 'x-user': 'bob' }, body: 'ok by policy' } },
  });
  try {
    const result = await harness.run({
      request: { headers: { ':method': 'POST', ':path': '/x', ':authority': 'api', ':scheme': 'http' }, body: 'payload' },
      response: { headers: { ':status': '201' }, body: 'made' },
    });
    assert.is(result.stalled, undefined);
    assert.is(result.request?.headers['x-user'], 'bob');
    assert.is(result.request?.headers['x-authz-body'], 'ok by policy');
    assert.is(result.request?.body, 'payload');
    assert.is(result.response?.body, 'made');
    assert.is(result.callouts.length, 1);
    assert.is(result.callouts[0].upstream, 'authz');
    assert.is(result.callouts[0].headers[':path'], '/check');
  } finally {
    await harness.close();
  }
});

// ---- body buffering ------------------------------------------------------------------------------

/** Holds each body until end_of_stream, logs what it saw, replaces it, and lets it go. */
function bufferingModule(): string {
  const s = new Strings();
  const reqNew = s.add('REPLACED');
  const resNew = s.add('new response body');
  const hold = (type: number, replacement: ReturnType<Strings['add']>, name: string) => `
    (if (result i32) (local.get 2)
      (then
        (drop (call $proxy_get_buffer_bytes ${c(type)} ${c(0)} (local.get 1) ${c(out(0))} ${c(out(1))}))
        (drop (call $proxy_log ${c(2)} ${outVal(0)} ${outVal(1)}))
        ${ev(name, `(call $proxy_set_buffer_bytes ${c(type)} ${c(0)} (local.get 1) ${pl(replacement)})`)}
        ${c(0)})
      (else ${c(1)}))`;
  return recordingModule({
    imports: envImports('proxy_log', 'proxy_get_buffer_bytes', 'proxy_set_buffer_bytes'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_body: hold(0, reqNew, 'replace_request'),
      proxy_on_response_body: hold(1, resNew, 'replace_response'),
    }),
  });
}

test('body buffering: returning 1 accumulates (body_size grows); 0 at end_of_stream sends the whole, modified body', async () => {
  const { plugin, logs } = await loadPlugin(bufferingModule());
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('aa'), false);
    s.requestData(Buffer.from('bbb'), false);
    assert.equal(sink.trace, ['request headers'], 'held body is not forwarded');
    s.requestData(Buffer.from('cccc'), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('x'), false);
    s.responseData(Buffer.from('yz'), true);
    s.finish();
    assert.equal(streamEvents(plugin), [
      'context_create(2,1)',
      'request_headers(2,5,0)',
      'request_body(2,2,0)',
      'request_body(2,5,0)',
      'request_body(2,9,1)',
      'replace_request(0)',
      'response_headers(2,2,0)',
      'response_body(2,1,0)',
      'response_body(2,3,1)',
      'replace_response(0)',
      'log(2)',
      'done(2)',
      'delete(2)',
    ]);
    assert.ok(logs.includes('info: aabbbcccc'), 'the filter read the whole buffered request body');
    assert.ok(logs.includes('info: xyz'), 'the filter read the whole buffered response body');
    assert.equal(sink.trace, ['request headers', "request data 'REPLACED' end", 'response headers', "response data 'new response body' end"]);
  } finally {
    await plugin.stop();
  }
});

/** A filter that holds bodies; `holdResponseHeaders` pauses the response on its headers instead. */
function holdingModule(opts: { holdRequestBody: boolean; holdResponseHeaders: boolean; holdResponseBody: boolean }): string {
  return recordingModule({
    body: recordingCallbacks({
      proxy_on_request_body: c(opts.holdRequestBody ? 1 : 0),
      proxy_on_response_headers: c(opts.holdResponseHeaders ? 1 : 0),
      proxy_on_response_body: c(opts.holdResponseBody ? 1 : 0),
    }),
  });
}

test('buffer bound: a held request body over maxBufferedBodyBytes gets 413, nothing of it goes upstream', async () => {
  const { plugin } = await loadPlugin(holdingModule({ holdRequestBody: true, holdResponseHeaders: false, holdResponseBody: false }), { maxBufferedBodyBytes: 8 });
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('12345'), false);
    s.requestData(Buffer.from('67890'), false);
    s.requestData(Buffer.from('more'), true);
    assert.equal(sink.trace, ['request headers', 'local 413']);
    assert.is(sink.locals[0].status, 413);
    assert.equal(sink.requestBody, []);
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,5,0)', 'request_body(2,5,0)']);
    s.finish();
    // One chunk over the bound that the filter holds: the filter saw it, then 413.
    const sink2 = new TraceSink();
    const s2 = plugin.createHttpStream(sink2);
    s2.requestHeaders(POST(), false);
    s2.requestData(Buffer.from('0123456789'), false);
    assert.equal(sink2.trace, ['request headers', 'local 413']);
    assert.ok(streamEvents(plugin).includes(`request_body(${s2.id},10,0)`));
    s2.finish();
  } finally {
    await plugin.stop();
  }
});

test('buffer bound: a held response over the bound gets 500 before its headers went out, a reset after', async () => {
  const held = await loadPlugin(holdingModule({ holdRequestBody: false, holdResponseHeaders: true, holdResponseBody: false }), { maxBufferedBodyBytes: 8 });
  try {
    const sink = new TraceSink();
    const s = held.plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('123456789'), true);
    assert.equal(sink.trace, ['request headers end', 'local 500']);
    assert.is(sink.locals[0].status, 500);
    s.finish();
  } finally {
    await held.plugin.stop();
  }
  const streaming = await loadPlugin(holdingModule({ holdRequestBody: false, holdResponseHeaders: false, holdResponseBody: true }), { maxBufferedBodyBytes: 8 });
  try {
    const sink = new TraceSink();
    const s = streaming.plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('12345'), false);
    s.responseData(Buffer.from('6789'), true);
    assert.equal(sink.trace, ['request headers end', 'response headers', 'reset response_payload_too_large']);
    s.finish();
  } finally {
    await streaming.plugin.stop();
  }
});

test('buffer bound: it bounds held bytes only; chunks a filter lets through are not limited', async () => {
  const { plugin } = await loadPlugin(holdingModule({ holdRequestBody: false, holdResponseHeaders: false, holdResponseBody: false }), { maxBufferedBodyBytes: 8 });
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('a chunk longer than eight bytes'), false);
    s.requestData(Buffer.from('and another one'), true);
    s.responseHeaders(OK_RESPONSE(), false);
    s.responseData(Buffer.from('a response chunk over the bound'), true);
    assert.equal(sink.trace, [
      'request headers',
      "request data 'a chunk longer than eight bytes'",
      "request data 'and another one' end",
      'response headers',
      "response data 'a response chunk over the bound' end",
    ]);
    s.finish();
  } finally {
    await plugin.stop();
  }
});

// ---- local responses and closing ---------------------------------------------------------------

function denyModule(): string {
  const s = new Strings();
  const details = s.add('access denied\tby  policy\n');
  const body = s.add('denied');
  const headers = s.pairs([['x-reason', 'policy']]);
  const details2 = s.add('second');
  const body2 = s.add('oops');
  return recordingModule({
    imports: envImports('proxy_send_local_response'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `
    ${ev('local', `(call $proxy_send_local_response ${c(403)} ${pl(details)} ${pl(body)} ${pl(headers)} ${c(7)})`)}
    ${ev('local_again', `(call $proxy_send_local_response ${c(500)} ${pl(details2)} ${pl(body2)} ${c(0)} ${c(0)} ${c(-1)})`)}
    ;; "continue": forced to a stop by the local response
    ${c(0)}`,
    }),
  });
}

test('send_local_response from on_request_headers: the client gets it, the upstream nothing; a second one is a no-op', async () => {
  const { plugin } = await loadPlugin(denyModule());
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('payload'), true);
    assert.equal(sink.trace, ['local 403'], 'the callback returned 0, but the request stops');
    const reply = sink.locals[0];
    assert.is(reply.status, 403);
    assert.is(Buffer.from(reply.body).toString(), 'denied');
    assert.equal(reply.headers, ['x-reason', 'policy']);
    assert.is(reply.details, 'access_denied_by__policy_');
    assert.is(reply.grpcStatus, 7);
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,5,0)', 'local(0)', 'local_again(0)'], 'no body callback after a local response');
    s.finish();
  } finally {
    await plugin.stop();
  }
});

test('send_local_response from on_response_headers replaces the upstream response: the client gets only the local one', async () => {
  const s = new Strings();
  const details = s.add('upstream said no');
  const body = s.add('replaced');
  const wat = recordingModule({
    imports: envImports('proxy_send_local_response'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_response_headers: `${ev('local', `(call $proxy_send_local_response ${c(502)} ${pl(details)} ${pl(body)} ${c(0)} ${c(0)} ${c(-1)})`)} ${c(0)}`,
    }),
  });
  const { plugin } = await loadPlugin(wat);
  try {
    const sink = new TraceSink();
    const st = plugin.createHttpStream(sink);
    st.requestHeaders(GET(), true);
    st.responseHeaders(OK_RESPONSE(), false);
    st.responseData(Buffer.from('upstream body'), false);
    st.responseTrailers(['x-t', '1']);
    st.finish();
    assert.equal(sink.trace, ['request headers end', 'local 502'], 'the upstream response headers, body and trailers are dropped');
    assert.is(sink.locals[0].details, 'upstream_said_no');
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,4,1)', 'response_headers(2,2,0)', 'local(0)', 'log(2)', 'done(2)', 'delete(2)']);
  } finally {
    await plugin.stop();
  }
});

test('harness: a local response runs through the response path and is what the client sees', async () => {
  const bytes = await wat2wasm(denyModule());
  const harness = await FilterHarness.load(bytes, { timeoutMs: 1000 });
  try {
    const result = await harness.run({
      request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'a', ':scheme': 'http' } },
      response: { headers: { ':status': '200' }, body: 'from upstream' },
    });
    assert.is(result.request, undefined, 'the upstream saw nothing');
    assert.equal(result.localResponse, { status: 403, details: 'access_denied_by__policy_', headers: { 'x-reason': 'policy' }, body: 'denied', grpcStatus: 7 });
    assert.is(result.response?.headers[':status'], '403');
    assert.is(result.response?.body, 'denied');
    // A plain HTTP request: the gRPC status the filter gave is left out, the text body gets a content-type.
    assert.is(result.response?.headers['content-type'], 'text/plain');
    assert.is(result.response?.headers['grpc-status'], undefined);
    assert.is(result.stalled, undefined);
    assert.ok(pluginEvents(harness.plugin).includes('response_headers(2,3,0)'), 'on_response_headers saw the local reply');
  } finally {
    await harness.close();
  }
});

test('proxy_close_stream resets the stream: the upstream sees nothing, later input is dropped', async () => {
  const wat = recordingModule({
    imports: envImports('proxy_close_stream'),
    body: recordingCallbacks({ proxy_on_request_headers: `${ev('close', `(call $proxy_close_stream ${c(0)})`)} ${c(0)}` }),
  });
  const { plugin } = await loadPlugin(wat);
  try {
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(POST(), false);
    s.requestData(Buffer.from('payload'), true);
    s.responseHeaders(OK_RESPONSE(), true);
    s.finish();
    assert.equal(sink.trace, ['reset wasm_close_stream']);
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'request_headers(2,5,0)', 'close(0)', 'log(2)', 'done(2)', 'delete(2)']);
  } finally {
    await plugin.stop();
  }
  const harness = await FilterHarness.load(await wat2wasm(wat), { timeoutMs: 1000 });
  try {
    const result = await harness.run({ request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'a' } }, response: { headers: { ':status': '200' } } });
    assert.is(result.reset, 'wasm_close_stream');
    assert.is(result.request, undefined);
    assert.is(result.response, undefined);
  } finally {
    await harness.close();
  }
});

// ---- HTTP callouts -------------------------------------------------------------------------------

test('http callouts: BadArgument for an unknown cluster or missing pseudo-headers; unique tokens; answers reach the root', async () => {
  const s = new Strings();
  const authz = s.add('authz');
  const flaky = s.add('flaky');
  const nowhere = s.add('nowhere');
  const good = s.pairs(CALL_HEADERS);
  const noPath = s.pairs([[':method', 'GET'], [':authority', 'authz.local']]);
  const noMethod = s.pairs([[':path', '/'], [':authority', 'authz.local']]);
  const call = (cluster: typeof authz, headers: typeof good, slot: number) =>
    `(call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(1000)} ${c(out(slot))})`;
  const wat = recordingModule({
    imports: envImports('proxy_http_call', 'proxy_get_status', 'proxy_log', 'proxy_get_buffer_bytes'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `
    ${ev('unknown_cluster', call(nowhere, good, 9))}
    ${ev('no_path', call(authz, noPath, 9))}
    ${ev('no_method', call(authz, noMethod, 9))}
    ${ev('call', call(authz, good, 0), outVal(0))}
    ${ev('call', call(authz, good, 1), outVal(1))}
    ${ev('call', call(flaky, good, 2), outVal(2))}
    ${c(0)}`,
      proxy_on_http_call_response: `
    (i32.store ${c(out(5))} ${c(0)})
    ${ev('status', `(call $proxy_get_status ${c(out(3))} ${c(out(4))} ${c(out(5))})`, outVal(3), outVal(5))}
    (if (i32.gt_u ${outVal(5)} ${c(0)}) (then (drop (call $proxy_log ${c(2)} ${outVal(4)} ${outVal(5)}))))
    ;; the body, read as buffer 4
    (if (i32.gt_u (local.get 3) ${c(0)}) (then
      (drop (call $proxy_get_buffer_bytes ${c(4)} ${c(0)} (local.get 3) ${c(out(6))} ${c(out(7))}))
      (drop (call $proxy_log ${c(2)} ${outVal(6)} ${outVal(7)}))))`,
    }),
  });
  const harness = await FilterHarness.load(await wat2wasm(wat), {
    logLevel: 'trace',
    calloutResponses: { authz: { status: 200, headers: { 'x-a': '1' }, body: 'hello', trailers: { 'x-t': 'v' } }, flaky: { fail: true } },
  });
  try {
    await harness.run({ request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'a' } } });
    const plugin = harness.plugin;
    assert.ok(await waitFor(() => pluginEvents(plugin).filter((e) => e.startsWith('status')).length === 3, 1000), 'three answers');
    const evs = streamEvents(plugin);
    assert.equal(evs.slice(1, 5), ['request_headers(2,3,1)', `unknown_cluster(${WasmResult.BadArgument})`, `no_path(${WasmResult.BadArgument})`, `no_method(${WasmResult.BadArgument})`]);
    const tokens = evs.filter((e) => e.startsWith('call(')).map((e) => {
      const m = /^call\((\d+),(\d+)\)$/.exec(e)!;
      assert.is(m[1], '0', 'proxy_http_call OK');
      return Number(m[2]);
    });
    assert.is(tokens.length, 3);
    assert.ok(tokens.every((t) => t !== 0), `tokens non-zero: ${tokens}`);
    assert.is(new Set(tokens).size, 3, `tokens unique: ${tokens}`);
    const answers = evs.filter((e) => e.startsWith('http_call_response') || e.startsWith('status'));
    // The root context (1) gets the answers, though a stream made the calls; the stream is gone by now.
    assert.equal(answers, [
      `http_call_response(1,${tokens[0]},2,5,1)`,
      'status(0,0,0)',
      `http_call_response(1,${tokens[1]},2,5,1)`,
      'status(0,0,0)',
      `http_call_response(1,${tokens[2]},0,0,0)`,
      `status(0,${WasmResult.BrokenConnection},5)`,
    ]);
    assert.equal(harness.logs.map((l) => l.message), ['hello', 'hello', 'reset']);
    assert.equal(harness.callouts.map((r) => r.upstream), ['authz', 'authz', 'flaky']);
  } finally {
    await harness.close();
  }
});

test('http callout headers are readable as map 6 only while the answer is delivered', async () => {
  const s = new Strings();
  const authz = s.add('authz');
  const good = s.pairs(CALL_HEADERS);
  const xa = s.add('x-a');
  const status = s.add(':status');
  const get = (key: typeof xa, name: string) =>
    `(i32.store ${c(out(2))} ${c(-1)}) ${ev(name, `(call $proxy_get_header_map_value ${c(6)} ${pl(key)} ${c(out(1))} ${c(out(2))})`, outVal(2))}`;
  const wat = recordingModule({
    imports: envImports('proxy_http_call', 'proxy_get_header_map_value'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `
    ${get(xa, 'before')}
    (drop (call $proxy_http_call ${pl(authz)} ${pl(good)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(out(0))}))
    ${c(0)}`,
      proxy_on_http_call_response: `${get(xa, 'during')} ${get(status, 'status')}`,
      proxy_on_response_headers: `${get(xa, 'after')} ${c(0)}`,
    }),
  });
  const httpCall = async (): Promise<HttpCallResponse> => ({ headers: [':status', '204', 'x-a', 'value-a'], body: new Uint8Array(0), trailers: [] });
  const { plugin } = await loadPlugin(wat, {}, { httpCall });
  try {
    const st = plugin.createHttpStream(new TraceSink());
    st.requestHeaders(GET(), true);
    await settle();
    st.responseHeaders(OK_RESPONSE(), true);
    st.finish();
    const evs = streamEvents(plugin).filter((e) => /^(before|during|status|after)\(/.test(e));
    assert.equal(evs, [`before(${WasmResult.NotFound},-1)`, 'during(0,7)', 'status(0,3)', `after(${WasmResult.NotFound},-1)`]);
  } finally {
    await plugin.stop();
  }
});

// ---- gRPC callouts -------------------------------------------------------------------------------

test('gRPC unary callouts: on_grpc_receive with the message (buffer 5), on_grpc_close with the status and its message', async () => {
  const s = new Strings();
  const cluster = s.add('grpc-cluster');
  const unknown = s.add('no-such-cluster');
  const service = s.add('pkg.Authz');
  const check = s.add('Check');
  const failing = s.add('Fail');
  const md = s.pairs([['x-md', '1']]);
  const ping = s.add('ping');
  const init = s.add('x-init');
  const trail = s.add('x-trail');
  const grpc = (clusterBlob: typeof cluster, method: typeof check, slot: number) =>
    `(call $proxy_grpc_call ${pl(clusterBlob)} ${pl(service)} ${pl(method)} ${pl(md)} ${pl(ping)} ${c(500)} ${c(out(slot))})`;
  const logMap = (type: number, key: typeof init) => `
    (if (i32.eqz (call $proxy_get_header_map_value ${c(type)} ${pl(key)} ${c(out(3))} ${c(out(4))}))
      (then (drop (call $proxy_log ${c(2)} ${outVal(3)} ${outVal(4)}))))`;
  const wat = recordingModule({
    imports: envImports('proxy_grpc_call', 'proxy_get_status', 'proxy_log', 'proxy_get_buffer_bytes', 'proxy_get_header_map_value'),
    strings: s,
    body: recordingCallbacks({
      proxy_on_request_headers: `
    ${ev('grpc_call', grpc(cluster, check, 0), outVal(0))}
    ${ev('grpc_call', grpc(cluster, failing, 1), outVal(1))}
    ${ev('grpc_unknown', grpc(unknown, check, 2))}
    ${c(0)}`,
      proxy_on_grpc_receive_initial_metadata: logMap(4, init),
      proxy_on_grpc_receive_trailing_metadata: logMap(5, trail),
      proxy_on_grpc_receive: `
    (drop (call $proxy_get_buffer_bytes ${c(5)} ${c(0)} (local.get 2) ${c(out(3))} ${c(out(4))}))
    (drop (call $proxy_log ${c(2)} ${outVal(3)} ${outVal(4)}))`,
      proxy_on_grpc_close: `
    (i32.store ${c(out(4))} ${c(0)})
    ${ev('grpc_status', `(call $proxy_get_status ${c(out(5))} ${c(out(3))} ${c(out(4))})`, outVal(5))}
    (if (i32.gt_u ${outVal(4)} ${c(0)}) (then (drop (call $proxy_log ${c(4)} ${outVal(3)} ${outVal(4)}))))`,
    }),
  });
  const requests: GrpcCallRequest[] = [];
  const grpcCall = (req: GrpcCallRequest): Promise<GrpcCallResponse> | WasmResult => {
    requests.push(req);
    if (req.upstream !== 'grpc-cluster') return WasmResult.ParseFailure;
    if (req.method === 'Check') {
      return Promise.resolve({ initialMetadata: ['x-init', 'i'], message: Buffer.from('pong'), trailingMetadata: ['x-trail', 't'], status: 0, statusMessage: '' });
    }
    return Promise.resolve({ initialMetadata: [], trailingMetadata: [], status: 14, statusMessage: 'no healthy upstream' });
  };
  const { plugin, logs } = await loadPlugin(wat, {}, { grpcCall });
  try {
    const st = plugin.createHttpStream(new TraceSink());
    st.requestHeaders(GET(), true);
    st.finish();
    await settle();
    const evs = streamEvents(plugin);
    const calls = evs.filter((e) => e.startsWith('grpc_call')).map((e) => /^grpc_call\((\d+),(\d+)\)$/.exec(e)!);
    assert.equal(calls.map((m) => m[1]), ['0', '0']);
    const [t1, t2] = calls.map((m) => Number(m[2]));
    assert.ok(t1 !== 0 && t2 !== 0 && t1 !== t2, `tokens ${t1} ${t2}`);
    assert.ok(evs.includes(`grpc_unknown(${WasmResult.ParseFailure})`));
    assert.equal(evs.slice(evs.findIndex((e) => e.startsWith('grpc_initial'))), [
      `grpc_initial_metadata(1,${t1},1)`,
      `grpc_receive(1,${t1},4)`,
      `grpc_trailing_metadata(1,${t1},1)`,
      `grpc_close(1,${t1},0)`,
      'grpc_status(0,0)',
      `grpc_close(1,${t2},14)`,
      'grpc_status(0,14)',
    ]);
    assert.equal(logs, ['info: i', 'info: pong', 'info: t', 'error: no healthy upstream']);
    assert.is(requests[0].service, 'pkg.Authz');
    assert.is(requests[0].method, 'Check');
    assert.equal(requests[0].initialMetadata, ['x-md', '1']);
    assert.is(Buffer.from(requests[0].message).toString(), 'ping');
    assert.is(requests[0].timeoutMs, 500);
  } finally {
    await plugin.stop();
  }
});

// ---- foreign functions ---------------------------------------------------------------------------

test('proxy_on_foreign_function via plugin.callForeignFunction: arguments readable as buffer 8 during the call only', async () => {
  const wat = recordingModule({
    imports: envImports('proxy_get_buffer_bytes', 'proxy_log'),
    body: recordingCallbacks({
      proxy_on_foreign_function: `
    (drop (call $proxy_get_buffer_bytes ${c(8)} ${c(0)} (local.get 2) ${c(out(0))} ${c(out(1))}))
    (drop (call $proxy_log ${c(2)} ${outVal(0)} ${outVal(1)}))`,
      proxy_on_request_headers: `${ev('args_outside', `(call $proxy_get_buffer_bytes ${c(8)} ${c(0)} ${c(16)} ${c(out(0))} ${c(out(1))})`)} ${c(0)}`,
    }),
  });
  const { plugin, logs } = await loadPlugin(wat);
  try {
    assert.ok(plugin.callForeignFunction(7, Buffer.from('hello ffi')));
    assert.equal(streamEvents(plugin), ['foreign_function(1,7,9)']);
    assert.equal(logs, ['info: hello ffi']);
    const s = plugin.createHttpStream(new TraceSink());
    s.requestHeaders(GET(), true);
    s.finish();
    assert.ok(streamEvents(plugin).includes(`args_outside(${WasmResult.NotFound})`));
  } finally {
    await plugin.stop();
  }
  const without = await loadPlugin(recordingModule({ body: recordingCallbacks({ proxy_on_foreign_function: null }) }));
  try {
    assert.not.ok(without.plugin.callForeignFunction(1, Buffer.from('x')), 'a module without the callback: false');
  } finally {
    await without.plugin.stop();
  }
});

test.run();
