import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { compileModule, headerGet, Plugin, type CompiledModule, type FailStrategy, type HeaderList, type HttpCallRequest, type HttpCallResponse, type LocalResponse, type PluginHost } from '../../wasm/src/index.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import { ChainStream, FilterChain, type ChainTerminal } from '../src/filter-chain/chain.ts';
import { createStreamInfo, ProxyStreamInfo } from '../src/filter-chain/stream-info.ts';
import type { WorkloadIdentity } from '../../mesh/src/proxy-config.ts';

// ---- guest modules -----------------------------------------------------------------------------
// One wat template, several behaviours. Every callback logs its name (the host records
// "<plugin>:<event>"), so the tests see which filter ran what, in which order. Appending a filter's
// own name (plugin_name) to `x-chain` shows the direction each header went.

type RequestMode = 'append' | 'local' | 'callout' | 'trap' | 'close' | 'property';
type ResponseMode = 'append' | 'local' | 'callout' | 'trap';

interface FilterSpec {
  request: RequestMode;
  response?: ResponseMode;
  local?: { status: number; details: string; body: string; headers: Array<[string, string]>; grpcStatus?: number };
  /** For 'property': the path read and copied into an `x-prop` request header. */
  property?: string[];
  /** The callout's answer traps (the VM fails while the stream is paused). */
  calloutTrap?: boolean;
}

function serializePairs(pairs: Array<[string, string]>): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const parts = [u32(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32(k.length), u32(v.length));
  for (const [k, v] of pairs) parts.push(Buffer.from(`${k}\0${v}\0`, 'latin1'));
  return Buffer.concat(parts);
}

class Segments {
  #at = 1024;
  readonly wat: string[] = [];
  add(data: string | Buffer): string {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    const ptr = this.#at;
    let s = '';
    for (const b of bytes) s += '\\' + b.toString(16).padStart(2, '0');
    this.wat.push(`(data (i32.const ${ptr}) "${s}")`);
    this.#at = (ptr + bytes.length + 8) & ~7;
    return `(i32.const ${ptr}) (i32.const ${bytes.length})`;
  }
}

const IMPORTS = `
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $send_local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))`;

function filterWat(spec: FilterSpec): string {
  const d = new Segments();
  const ev = (name: string) => `(drop (call $log (i32.const 2) ${d.add(name)}))`;
  const name = d.add('plugin_name');
  const xchain = d.add('x-chain');
  const local = spec.local ?? { status: 403, details: 'denied', body: 'denied', headers: [] };
  const sendLocal = `(drop (call $send_local (i32.const ${local.status}) ${d.add(local.details)} ${d.add(local.body)} ${d.add(serializePairs(local.headers))} (i32.const ${local.grpcStatus ?? -1})))`;
  const callout = `(drop (call $http_call ${d.add('auth')} ${d.add(serializePairs([[':method', 'GET'], [':path', '/check'], [':authority', 'auth']]))}
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 5000) (i32.const 32)))
      (global.set $paused (local.get $ctx))`;
  const request: Record<RequestMode, string> = {
    append: '(call $append (i32.const 0)) (i32.const 0)',
    local: `${sendLocal} (i32.const 1)`,
    callout: `(call $append (i32.const 0)) ${callout} (i32.const 1)`,
    trap: 'unreachable',
    close: '(drop (call $close (i32.const 0))) (i32.const 1)',
    property: `(if (i32.eqz (call $get_property ${d.add((spec.property ?? []).join('\0'))} (i32.const 16) (i32.const 20)))
        (then (drop (call $add_header (i32.const 0) ${d.add('x-prop')} (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
      (i32.const 0)`,
  };
  const response =
    spec.response === 'local'
      ? `(call $append (i32.const 2)) ${sendLocal} (i32.const 0)`
      : spec.response === 'callout'
        ? `(call $append (i32.const 2)) ${callout} (global.set $pausedDir (i32.const 1)) (i32.const 1)`
        : spec.response === 'trap'
          ? 'unreachable'
          : '(call $append (i32.const 2)) (i32.const 0)';
  const body = `
  (global $root (mut i32) (i32.const 0))
  (global $paused (mut i32) (i32.const 0))
  (global $pausedDir (mut i32) (i32.const 0))
  ;; Appends ",<plugin_name>" to x-chain in the map (or adds it).
  (func $append (param $map i32) (local $buf i32) (local $vlen i32) (local $nlen i32)
    (drop (call $get_property ${name} (i32.const 16) (i32.const 20)))
    (local.set $nlen (i32.load (i32.const 20)))
    (if (i32.eqz (call $get_header (local.get $map) ${xchain} (i32.const 24) (i32.const 28)))
      (then
        (local.set $vlen (i32.load (i32.const 28)))
        (local.set $buf (call $malloc (i32.add (i32.add (local.get $vlen) (local.get $nlen)) (i32.const 1))))
        (memory.copy (local.get $buf) (i32.load (i32.const 24)) (local.get $vlen))
        (i32.store8 (i32.add (local.get $buf) (local.get $vlen)) (i32.const 44))
        (memory.copy (i32.add (i32.add (local.get $buf) (local.get $vlen)) (i32.const 1)) (i32.load (i32.const 16)) (local.get $nlen))
        (drop (call $replace_header (local.get $map) ${xchain} (local.get $buf) (i32.add (i32.add (local.get $vlen) (local.get $nlen)) (i32.const 1)))))
      (else
        (drop (call $add_header (local.get $map) ${xchain} (i32.load (i32.const 16)) (local.get $nlen))))))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then (global.set $root (local.get $ctx))) (else ${ev('create')})))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    ${ev('request_headers')}
    ${request[spec.request]})
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) ${ev('request_body')} (i32.const 0))
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) ${ev('request_trailers')} (i32.const 0))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    ${ev('response_headers')}
    ${response})
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) ${ev('response_body')} (i32.const 0))
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) ${ev('response_trailers')} (i32.const 0))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    ${ev('callout_response')}
    ${spec.calloutTrap ? 'unreachable' : ''}
    (drop (call $set_effective (global.get $paused)))
    (drop (call $continue (global.get $pausedDir))))
  (func (export "proxy_on_log") (param i32) ${ev('log')})
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (if (i32.eq (local.get $ctx) (global.get $root)) (then ${ev('root_done')}) (else ${ev('done')}))
    (i32.const 1))
  (func (export "proxy_on_delete") (param $ctx i32)
    (if (i32.eq (local.get $ctx) (global.get $root)) (then ${ev('root_delete')}) (else ${ev('delete')})))
  ${d.wat.join('\n  ')}`;
  return guestModule({ imports: IMPORTS, body, memoryPages: 4 });
}

const compiledCache = new Map<string, Promise<CompiledModule>>();
function compiled(spec: FilterSpec): Promise<CompiledModule> {
  const key = JSON.stringify(spec);
  let c = compiledCache.get(key);
  if (!c) {
    c = wat2wasm(filterWat(spec)).then((bytes) => compileModule(bytes, { name: spec.request }));
    compiledCache.set(key, c);
  }
  return c;
}

// ---- host and terminal ---------------------------------------------------------------------------

/** Every filter's events as "<plugin>:<event>", in the order they happened. */
const events: string[] = [];
const callouts: HttpCallRequest[] = [];
const host: PluginHost = {
  log: (_level, message, plugin) => {
    events.push(`${plugin}:${message}`);
  },
  httpCall: (req) => {
    callouts.push(req);
    return new Promise<HttpCallResponse>((resolve) => setTimeout(() => resolve({ headers: [':status', '200'], body: Buffer.alloc(0), trailers: [] }), 20));
  },
};

const loaded: Plugin[] = [];
async function load(name: string, spec: FilterSpec, failStrategy: FailStrategy = 'FAIL_CLOSE'): Promise<Plugin> {
  const plugin = await Plugin.load(await compiled(spec), { name, failStrategy }, host);
  loaded.push(plugin);
  return plugin;
}

function eventsOf(plugin: string): string[] {
  return events.filter((e) => e.startsWith(`${plugin}:`)).map((e) => e.slice(plugin.length + 1));
}

interface Message {
  headers: HeaderList;
  body: Buffer[];
  trailers?: HeaderList;
  ended: boolean;
}

class Terminal implements ChainTerminal {
  /** The order of calls: request_headers, local:<status>, response_headers, reset:<reason>, ... */
  readonly calls: string[] = [];
  request: Message | undefined;
  response: Message | undefined;
  locals: LocalResponse[] = [];
  resetReason: string | undefined;

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.calls.push('request_headers');
    this.request = { headers: [...headers], body: [], ended: endOfStream };
  }
  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.calls.push('request_data');
    this.request!.body.push(Buffer.from(data));
    this.request!.ended ||= endOfStream;
  }
  requestTrailers(trailers: HeaderList): void {
    this.calls.push('request_trailers');
    this.request!.trailers = [...trailers];
    this.request!.ended = true;
  }
  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.calls.push('response_headers');
    this.response = { headers: [...headers], body: [], ended: endOfStream };
  }
  responseData(data: Uint8Array, endOfStream: boolean): void {
    this.calls.push('response_data');
    this.response!.body.push(Buffer.from(data));
    this.response!.ended ||= endOfStream;
  }
  responseTrailers(trailers: HeaderList): void {
    this.calls.push('response_trailers');
    this.response!.trailers = [...trailers];
    this.response!.ended = true;
  }
  localResponse(response: LocalResponse): void {
    this.calls.push(`local:${response.status}`);
    this.locals.push(response);
  }
  reset(reason: string): void {
    this.calls.push(`reset:${reason}`);
    this.resetReason = reason;
  }
}

const workload: WorkloadIdentity = { name: 'reviews-v1', namespace: 'bookinfo', labels: { app: 'reviews', version: 'v1' }, serviceAccount: 'bookinfo-reviews' };
const info = createStreamInfo({
  sourceAddress: '10.0.0.1:40000',
  destinationAddress: '10.0.0.2:9080',
  protocol: 'HTTP/1.1',
  connectionId: 7,
  mtls: true,
  peerPrincipal: 'spiffe://cluster.local/ns/bookinfo/sa/productpage',
  direction: 'inbound',
  workload,
});

const REQUEST: HeaderList = [':method', 'GET', ':path', '/reviews/1', ':authority', 'reviews', ':scheme', 'http'];
const RESPONSE: HeaderList = [':status', '200', 'content-type', 'text/plain'];

async function until(done: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const text = (m: Message | undefined) => Buffer.concat(m?.body ?? []).toString();

test.before.each(() => {
  events.length = 0;
  callouts.length = 0;
});

test.after.each(async () => {
  await Promise.all(loaded.splice(0).map((p) => p.stop()));
});

// ---- tests ---------------------------------------------------------------------------------------

test('an empty chain says so, and a stream through it passes everything straight on', () => {
  const chain = new FilterChain([]);
  assert.ok(chain.isEmpty);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  s.responseHeaders([...RESPONSE], false);
  s.responseData(Buffer.from('ok'), true);
  s.finish();
  assert.equal(t.calls, ['request_headers', 'response_headers', 'response_data']);
  assert.is(text(t.response), 'ok');
});

test('the request runs a, b, c to the upstream and the response c, b, a to the client', async () => {
  const chain = new FilterChain([await load('a', { request: 'append' }), await load('b', { request: 'append' }), await load('c', { request: 'append' })]);
  assert.not.ok(chain.isEmpty);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], false);
  s.requestData(Buffer.from('hello'), false);
  s.requestTrailers(['x-trailer', '1']);
  assert.is(headerGet(t.request!.headers, 'x-chain'), 'a,b,c');
  assert.is(text(t.request), 'hello');
  assert.equal(t.request!.trailers, ['x-trailer', '1']);
  s.responseHeaders([...RESPONSE], false);
  s.responseData(Buffer.from('world'), true);
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'c,b,a');
  assert.is(text(t.response), 'world');
  assert.ok(t.response!.ended);
  assert.equal(t.locals, []);
  // Decoder order on the way in, encoder order on the way out.
  const order = (event: string) => events.filter((e) => e.endsWith(`:${event}`)).map((e) => e.split(':')[0]);
  assert.equal(order('request_headers'), ['a', 'b', 'c']);
  assert.equal(order('request_body'), ['a', 'b', 'c']);
  assert.equal(order('request_trailers'), ['a', 'b', 'c']);
  assert.equal(order('response_headers'), ['c', 'b', 'a']);
  assert.equal(order('response_body'), ['c', 'b', 'a']);
  s.finish();
});

test('a local reply from b reaches the client through b and a only; c never sees the request', async () => {
  const local = { status: 403, details: 'denied by b', body: 'go away', headers: [['x-local', 'b']] as Array<[string, string]> };
  const chain = new FilterChain([await load('a', { request: 'append' }), await load('b', { request: 'local', local }), await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], false);
  // The notification comes first, then the reply as a response.
  assert.equal(t.calls, ['local:403', 'response_headers', 'response_data']);
  assert.is(t.request, undefined);
  assert.is(t.locals[0].details, 'denied_by_b');
  assert.is(headerGet(t.response!.headers, ':status'), '403');
  assert.is(headerGet(t.response!.headers, 'x-local'), 'b');
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'b,a', 'b sees its own reply, then a');
  assert.is(text(t.response), 'go away');
  assert.ok(t.response!.ended);
  assert.equal(eventsOf('c'), ['create']);
  assert.is(s.localResponse?.status, 403);
  // The rest of the request, and any upstream response, no longer go anywhere.
  s.requestData(Buffer.from('more'), true);
  s.responseHeaders([...RESPONSE], true);
  assert.equal(t.calls, ['local:403', 'response_headers', 'response_data']);
  assert.not.ok(eventsOf('a').includes('request_body'));
  s.finish();
  assert.equal(eventsOf('c'), ['create', 'log', 'done', 'delete']);
});

test('a local reply with a gRPC status is a trailers-only gRPC response (grpc-status, grpc-message)', async () => {
  const local = { status: 403, details: 'denied', body: 'no entry: 100%', headers: [] as Array<[string, string]>, grpcStatus: 7 };
  const chain = new FilterChain([await load('a', { request: 'local', local })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST, 'content-type', 'application/grpc'], false);
  assert.equal(t.calls, ['local:403', 'response_headers']);
  assert.ok(t.response!.ended);
  assert.is(headerGet(t.response!.headers, ':status'), '403');
  assert.is(headerGet(t.response!.headers, 'grpc-status'), '7');
  assert.is(headerGet(t.response!.headers, 'grpc-message'), 'no entry: 100%25');
  assert.is(headerGet(t.response!.headers, 'content-type'), 'application/grpc');
  s.finish();
});

test('a plain local reply without a body ends the stream on its headers', async () => {
  const local = { status: 204, details: 'nothing', body: '', headers: [['x-why', 'because']] as Array<[string, string]> };
  const chain = new FilterChain([await load('a', { request: 'local', local })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  assert.equal(t.calls, ['local:204', 'response_headers']);
  assert.ok(t.response!.ended);
  assert.equal(t.response!.headers, [':status', '204', 'x-why', 'because', 'x-chain', 'a']);
  s.finish();
});

test('a paused filter holds the request (the terminal sees nothing) until its callout answers', async () => {
  const chain = new FilterChain([await load('a', { request: 'append' }), await load('b', { request: 'callout' }), await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], false);
  s.requestData(Buffer.from('held'), true);
  assert.equal(t.calls, []);
  assert.equal(eventsOf('c'), ['create']);
  assert.is(callouts.length, 1);
  assert.is(callouts[0].upstream, 'auth');
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(t.calls, [], 'still held before the callout answers');
  await until(() => t.request?.ended === true, 'the request to reach the terminal');
  assert.is(headerGet(t.request!.headers, 'x-chain'), 'a,b,c');
  assert.is(text(t.request), 'held');
  assert.equal(eventsOf('b'), ['create', 'request_headers', 'callout_response', 'request_body']);
  assert.equal(eventsOf('c'), ['create', 'request_headers', 'request_body']);
  s.responseHeaders([...RESPONSE], true);
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'c,b,a');
  s.finish();
});

for (const failStrategy of ['FAIL_CLOSE', 'FAIL_OPEN'] as const) {
  test(`${failStrategy}: a filter whose VM fails while it holds the request (callout answer traps)`, async () => {
    const chain = new FilterChain([
      await load('a', { request: 'append' }),
      await load('b', { request: 'callout', calloutTrap: true }, failStrategy),
      await load('c', { request: 'append' }),
    ]);
    const t = new Terminal();
    const s = chain.createStream(t, info);
    s.requestHeaders([...REQUEST], true);
    assert.equal(t.calls, []);
    await until(() => t.calls.length > 0, 'the held stream to be settled');
    if (failStrategy === 'FAIL_CLOSE') {
      assert.equal(t.calls, ['local:503', 'response_headers']);
      assert.is(headerGet(t.response!.headers, 'x-chain'), 'a');
      assert.equal(eventsOf('c'), ['create']);
    } else {
      assert.equal(t.calls, ['request_headers']);
      assert.is(headerGet(t.request!.headers, 'x-chain'), 'a,b,c');
      s.responseHeaders([...RESPONSE], true);
      assert.is(headerGet(t.response!.headers, 'x-chain'), 'c,a');
    }
    s.finish();
  });
}

test('FAIL_OPEN: a trap in the middle of the chain lets the stream pass without that filter', async () => {
  const chain = new FilterChain([await load('a', { request: 'append' }), await load('t', { request: 'trap' }, 'FAIL_OPEN'), await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  assert.is(headerGet(t.request!.headers, 'x-chain'), 'a,c');
  s.responseHeaders([...RESPONSE], false);
  s.responseData(Buffer.from('ok'), true);
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'c,a');
  assert.is(text(t.response), 'ok');
  assert.equal(t.locals, []);
  s.finish();
});

test('FAIL_CLOSE: a trap in the middle answers 503 through the filters before it', async () => {
  const trapper = await load('t', { request: 'trap' }, 'FAIL_CLOSE');
  const chain = new FilterChain([await load('a', { request: 'append' }), trapper, await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  assert.is(t.request, undefined);
  assert.equal(t.calls, ['local:503', 'response_headers']);
  assert.is(t.locals[0].details, 'wasm_fail_stream');
  assert.is(headerGet(t.response!.headers, ':status'), '503');
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'a', 'the failed filter is skipped, a sees the reply');
  assert.is(headerGet(t.response!.headers, 'grpc-status'), undefined);
  assert.equal(eventsOf('c'), ['create']);
  s.finish();
  // The next stream gets a fresh VM for t (which traps again: same answer).
  const t2 = new Terminal();
  const s2 = chain.createStream(t2, info);
  s2.requestHeaders([...REQUEST, 'content-type', 'application/grpc'], true);
  assert.is(headerGet(t2.response!.headers, ':status'), '503');
  assert.is(headerGet(t2.response!.headers, 'grpc-status'), '14', 'gRPC callers get UNAVAILABLE');
  s2.finish();
});

test('finish() runs on_log, on_done and on_delete for every filter, in chain order, once', async () => {
  const plugins = [await load('a', { request: 'append' }), await load('b', { request: 'append' }), await load('c', { request: 'append' })];
  const chain = new FilterChain(plugins);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  s.responseHeaders([...RESPONSE], true);
  assert.equal(plugins.map((p) => p.activeStreams), [1, 1, 1]);
  events.length = 0;
  s.finish();
  s.finish();
  assert.equal(events, ['a:log', 'a:done', 'a:delete', 'b:log', 'b:done', 'b:delete', 'c:log', 'c:done', 'c:delete']);
  assert.equal(plugins.map((p) => p.activeStreams), [0, 0, 0]);
  s.responseData(Buffer.from('late'), true);
  assert.equal(t.calls, ['request_headers', 'response_headers']);
});

test('a filter resetting the stream resets the terminal; filters after it never see the request', async () => {
  const chain = new FilterChain([await load('a', { request: 'append' }), await load('b', { request: 'close' }), await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], false);
  assert.equal(t.calls, ['reset:wasm_close_stream']);
  assert.is(s.resetReason, 'wasm_close_stream');
  assert.equal(eventsOf('c'), ['create']);
  s.requestData(Buffer.from('x'), true);
  s.responseHeaders([...RESPONSE], true);
  assert.equal(t.calls, ['reset:wasm_close_stream']);
  s.finish();
});

test('a local reply on the response path replaces the upstream response: the client gets one response', async () => {
  const local = { status: 500, details: 'bad upstream', body: 'replaced', headers: [] as Array<[string, string]> };
  const chain = new FilterChain([
    await load('a', { request: 'append' }),
    await load('b', { request: 'append', response: 'local', local }),
    await load('c', { request: 'append' }),
  ]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  s.responseHeaders([...RESPONSE], false);
  s.responseData(Buffer.from('upstream body'), true);
  assert.equal(t.calls, ['request_headers', 'local:500', 'response_headers', 'response_data']);
  assert.is(headerGet(t.response!.headers, ':status'), '500');
  // b had already seen the upstream's headers, so the reply starts at a.
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'a');
  assert.is(text(t.response), 'replaced');
  s.finish();
});

test('a reply from the first filter on the response path reaches the client alone (no upstream headers after it)', async () => {
  const local = { status: 502, details: 'rejected', body: '', headers: [] as Array<[string, string]> };
  const chain = new FilterChain([await load('b', { request: 'append', response: 'local', local }), await load('c', { request: 'append' })]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  s.responseHeaders([...RESPONSE], true);
  assert.equal(t.calls, ['request_headers', 'local:502', 'response_headers']);
  assert.is(headerGet(t.response!.headers, ':status'), '502');
  assert.is(headerGet(t.response!.headers, 'x-chain'), undefined);
  s.finish();
});

test('a filter that pauses the response holds a local reply too, until it resumes', async () => {
  const local = { status: 429, details: 'slow down', body: 'later', headers: [] as Array<[string, string]> };
  const chain = new FilterChain([
    await load('a', { request: 'append', response: 'callout' }),
    await load('b', { request: 'local', local }),
    await load('c', { request: 'append' }),
  ]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  assert.equal(t.calls, ['local:429']);
  await until(() => t.response?.ended === true, 'the reply to reach the client');
  assert.equal(t.calls, ['local:429', 'response_headers', 'response_data']);
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'b,a');
  assert.is(text(t.response), 'later');
  s.finish();
});

test('a filter failing (FAIL_CLOSE) on a local reply replaces it with its 503', async () => {
  const local = { status: 403, details: 'denied', body: 'no', headers: [] as Array<[string, string]> };
  const chain = new FilterChain([
    await load('z', { request: 'append' }),
    await load('a', { request: 'append', response: 'trap' }),
    await load('b', { request: 'local', local }),
  ]);
  const t = new Terminal();
  const s = chain.createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  assert.equal(t.calls, ['local:403', 'local:503', 'response_headers']);
  assert.is(headerGet(t.response!.headers, ':status'), '503');
  assert.is(headerGet(t.response!.headers, 'x-chain'), 'z');
  assert.ok(t.response!.ended);
  assert.is(s.localResponse?.status, 503);
  s.finish();
});

test('a chain over a stopped plugin refuses new streams and leaves no stream open', async () => {
  const a = await load('a', { request: 'append' });
  const b = await load('b', { request: 'append' });
  await b.stop();
  const chain = new FilterChain([a, b]);
  assert.throws(() => chain.createStream(new Terminal(), info), /stopped/);
  assert.is(a.activeStreams, 0);
});

test('StreamInfo answers xds.*, the legacy node/cluster_name/listener_direction names, and upstream.*', () => {
  let picked: { address?: string; cluster?: string } = {};
  const si = createStreamInfo({
    sourceAddress: '10.0.0.1:40000',
    destinationAddress: '10.0.0.2:9080',
    protocol: 'HTTP/2',
    connectionId: 3,
    mtls: false,
    direction: 'outbound',
    workload,
    upstream: () => picked,
  });
  assert.instance(si, ProxyStreamInfo);
  assert.is(si.getProperty(['xds', 'listener_direction']), 2);
  assert.is(si.getProperty(['listener_direction']), 2);
  assert.is(info.getProperty(['xds', 'listener_direction']), 1);
  assert.is(si.getProperty(['xds', 'node', 'metadata', 'NAME']), 'reviews-v1');
  assert.is(si.getProperty(['xds', 'node', 'metadata', 'WORKLOAD_NAME']), 'reviews-v1');
  assert.is(si.getProperty(['node', 'metadata', 'NAMESPACE']), 'bookinfo');
  assert.is(si.getProperty(['node', 'metadata', 'SERVICE_ACCOUNT']), 'bookinfo-reviews');
  assert.equal(si.getProperty(['node', 'metadata', 'LABELS']), new Map([['app', 'reviews'], ['version', 'v1']]));
  assert.is(si.getProperty(['xds', 'node', 'metadata', 'LABELS', 'version']), 'v1');
  assert.is(si.getProperty(['xds', 'node', 'metadata', 'LABELS', 'constructor']), undefined);
  assert.is(si.getProperty(['xds', 'node', 'cluster']), 'reviews-v1.bookinfo');
  assert.is(si.getProperty(['xds', 'node', 'metadata', 'NOPE']), undefined);
  assert.is(si.getProperty(['xds', 'node']), undefined);
  // No upstream picked yet: NOT_FOUND.
  assert.is(si.getProperty(['upstream', 'address']), undefined);
  assert.is(si.getProperty(['xds', 'cluster_name']), undefined);
  picked = { address: '10.0.0.9:8080', cluster: 'outbound|8080||ratings.bookinfo.svc.cluster.local' };
  assert.is(si.getProperty(['upstream', 'address']), '10.0.0.9:8080');
  assert.is(si.getProperty(['upstream', 'port']), 8080);
  assert.is(si.getProperty(['xds', 'cluster_name']), 'outbound|8080||ratings.bookinfo.svc.cluster.local');
  assert.is(si.getProperty(['cluster_name']), 'outbound|8080||ratings.bookinfo.svc.cluster.local');
  // The router may set the fields instead of passing a callback.
  si.upstreamAddress = '[fd00::1]:9090';
  assert.is(si.getProperty(['upstream', 'port']), 9090);
  assert.is(si.getProperty(['something', 'else']), undefined);
});

test('a filter reads StreamInfo attributes through proxy_get_property', async () => {
  const plugins = [
    await load('ns', { request: 'property', property: ['xds', 'node', 'metadata', 'NAMESPACE'] }),
    await load('peer', { request: 'property', property: ['connection', 'uri_san_peer_certificate'] }),
  ];
  const t = new Terminal();
  const s = new FilterChain(plugins).createStream(t, info);
  s.requestHeaders([...REQUEST], true);
  const props = t.request!.headers.filter((_, i, l) => i % 2 === 1 && l[i - 1] === 'x-prop');
  assert.equal(props, ['bookinfo', 'spiffe://cluster.local/ns/bookinfo/sa/productpage']);
  s.finish();
});

test('ChainStream is exported for the connection manager', () => {
  assert.type(ChainStream, 'function');
});

test.run();
