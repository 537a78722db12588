// Conformance of the header-map host functions (request/response headers and trailers): results,
// the bytes written into guest memory, and what the next hop finally sees.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MapType, WasmResult } from '../src/abi/constants.ts';
import { FilterHarness } from '../src/harness.ts';
import {
  type Blob, Data, MEM_END, OUT_FILL, RecordingSink, c, guestMemory, loadProbe, out, parseSerializedPairs, pl,
  probeModule, proxyImports, rec, recHeap, serializePairs, settle,
} from './support/guest.ts';
import { wat2wasm } from './support/wat.ts';

const { Ok, NotFound, BadArgument, InvalidMemoryAccess } = WasmResult;
const { HttpRequestHeaders: REQ_H, HttpRequestTrailers: REQ_T, HttpResponseHeaders: RES_H, HttpResponseTrailers: RES_T } = MapType;

const IMPORTS = proxyImports(
  'proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_replace_header_map_value', 'proxy_remove_header_map_value',
  'proxy_get_header_map_pairs', 'proxy_set_header_map_pairs', 'proxy_get_header_map_size',
);

// One wat call per map function; `slot` is the result slot, `o` the first of the out slots used.
const get = (slot: number, map: number, key: Blob, o: number) =>
  rec(slot, `(call $proxy_get_header_map_value ${c(map)} ${pl(key)} ${c(out(o))} ${c(out(o + 1))})`);
const add = (slot: number, map: number, key: Blob, value: Blob) => rec(slot, `(call $proxy_add_header_map_value ${c(map)} ${pl(key)} ${pl(value)})`);
const replace = (slot: number, map: number, key: Blob, value: Blob) =>
  rec(slot, `(call $proxy_replace_header_map_value ${c(map)} ${pl(key)} ${pl(value)})`);
const remove = (slot: number, map: number, key: Blob) => rec(slot, `(call $proxy_remove_header_map_value ${c(map)} ${pl(key)})`);
const pairs = (slot: number, map: number, o: number) => rec(slot, `(call $proxy_get_header_map_pairs ${c(map)} ${c(out(o))} ${c(out(o + 1))})`);
const setPairs = (slot: number, map: number, data: Blob) => rec(slot, `(call $proxy_set_header_map_pairs ${c(map)} ${pl(data)})`);
const size = (slot: number, map: number, o: number) => rec(slot, `(call $proxy_get_header_map_size ${c(map)} ${c(out(o))})`);

/** A module doing `code` in one callback (returning Continue); every other callback is absent. */
function onCallback(d: Data, callback: 'request_headers' | 'response_headers' | 'request_trailers' | 'response_trailers', code: string): string {
  const params = callback.endsWith('headers') ? '(param i32 i32 i32)' : '(param i32 i32)';
  return probeModule({ imports: IMPORTS, data: d, body: `(func (export "proxy_on_${callback}") ${params} (result i32)\n${code}\n(i32.const 0))` });
}

async function harness(wat: string) {
  return FilterHarness.load(await wat2wasm(wat), { name: 'maps' });
}

test('get: the value of a key; keys are matched lowercase; duplicates give the first value; a missing key is NotFound', async () => {
  const d = new Data();
  const code = [
    get(0, REQ_H, d.add(':path'), 0),
    get(1, REQ_H, d.add('X-DUP'), 2),
    get(2, REQ_H, d.add('x-missing'), 4),
    get(3, REQ_H, d.add('x-empty'), 6),
    get(4, REQ_H, d.add('x-latin1'), 8),
  ].join('\n');
  const { plugin } = await loadProbe(onCallback(d, 'request_headers', code));
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':method', 'GET', ':path', '/a?b', 'x-dup', 'first', 'x-dup', 'second', 'x-empty', '', 'x-latin1', 'caf\u00e9'], true);
  const m = guestMemory(plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.blob(0).toString(), '/a?b');
  assert.is(m.result(1), Ok);
  assert.is(m.blob(2).toString(), 'first');
  assert.is(m.result(2), NotFound);
  assert.equal([m.outU32(4), m.outU32(5)], [OUT_FILL, OUT_FILL], 'nothing written for a missing key');
  assert.is(m.result(3), Ok);
  assert.equal([m.outU32(6), m.outU32(7)], [0, 0], 'an empty value is ptr 0 / len 0');
  assert.is(m.result(4), Ok);
  assert.equal([...m.blob(8)], [0x63, 0x61, 0x66, 0xe9], 'header bytes are passed through one byte per char');
  assert.is(m.lastAllocation(), 4, 'the host allocates exactly the value length');
  stream.finish();
  await plugin.stop();
});

test('add appends (duplicates kept, key lowercased); the upstream sees every added entry', async () => {
  const d = new Data();
  const added = d.add('X-Added');
  const code = [
    add(0, REQ_H, added, d.add('1')),
    add(1, REQ_H, added, d.add('2')),
    add(2, REQ_H, d.add('x-dup'), d.add('third')),
    get(3, REQ_H, d.add('x-added'), 0),
    pairs(4, REQ_H, 2),
  ].join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], [':path', '/'], ['x-dup', 'one'], ['x-dup', 'two']] } });
  const m = guestMemory(h.plugin);
  assert.equal([0, 1, 2, 3, 4].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok]);
  assert.is(m.blob(0).toString(), '1', 'get sees the first added value');
  assert.equal(parseSerializedPairs(m.blob(2)), [
    [':method', 'GET'], [':path', '/'], ['x-dup', 'one'], ['x-dup', 'two'], ['x-added', '1'], ['x-added', '2'], ['x-dup', 'third'],
  ]);
  assert.equal(result.request?.headers['x-added'], ['1', '2']);
  assert.equal(result.request?.headers['x-dup'], ['one', 'two', 'third']);
  assert.is(result.request?.headers['X-Added'], undefined);
  await h.close();
});

test('replace leaves exactly one entry (adding the key when absent); the upstream sees the replacement', async () => {
  const d = new Data();
  const code = [
    replace(0, REQ_H, d.add('X-Dup'), d.add('only')),
    replace(1, REQ_H, d.add('x-new'), d.add('fresh')),
    replace(2, REQ_H, d.add(':path'), d.add('/rewritten')),
    pairs(3, REQ_H, 0),
  ].join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], [':path', '/'], ['x-dup', 'one'], ['x-other', 'o'], ['x-dup', 'two']] } });
  const m = guestMemory(h.plugin);
  assert.equal([0, 1, 2, 3].map((i) => m.result(i)), [Ok, Ok, Ok, Ok]);
  const seen = parseSerializedPairs(m.blob(0));
  assert.equal(seen.filter(([k]) => k === 'x-dup'), [['x-dup', 'only']]);
  assert.equal(seen.filter(([k]) => k === 'x-new'), [['x-new', 'fresh']]);
  assert.is(result.request?.headers['x-dup'], 'only');
  assert.is(result.request?.headers['x-new'], 'fresh');
  assert.is(result.request?.headers[':path'], '/rewritten');
  assert.is(result.request?.headers['x-other'], 'o');
  await h.close();
});

test('remove drops every entry of the key (matched lowercase) and is Ok for an absent key', async () => {
  const d = new Data();
  const code = [
    remove(0, REQ_H, d.add('X-DUP')),
    remove(1, REQ_H, d.add('x-absent')),
    get(2, REQ_H, d.add('x-dup'), 0),
    size(3, REQ_H, 2),
  ].join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], ['x-dup', 'one'], ['x-keep', 'k'], ['x-dup', 'two']] } });
  const m = guestMemory(h.plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.result(1), Ok);
  assert.is(m.result(2), NotFound);
  assert.is(m.result(3), Ok);
  assert.is(m.outU32(2), serializePairs([[':method', 'GET'], ['x-keep', 'k']]).length, 'size after removal');
  assert.equal(result.request?.headers, { ':method': 'GET', 'x-keep': 'k' });
  await h.close();
});

test('get_pairs writes the exact §3.10 bytes into memory the host allocated (exactly that size)', async () => {
  const d = new Data();
  const code = [recHeap(0), pairs(1, REQ_H, 0), size(2, REQ_H, 2)].join('\n');
  const { plugin } = await loadProbe(onCallback(d, 'request_headers', code));
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders(['a', '1', 'b', '22'], true);
  const m = guestMemory(plugin);
  assert.is(m.result(1), Ok);
  // The example of the ABI notes: {"a":"1"}, {"b":"22"}, 29 bytes.
  const expected = [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x61, 0, 0x31, 0, 0x62, 0, 0x32, 0x32, 0];
  assert.is(m.outU32(1), 29);
  assert.is(m.outU32(0), m.result(0), 'the pointer is the block the allocator handed out');
  assert.equal([...m.blob(0)], expected);
  assert.is(m.lastAllocation(), 29);
  assert.is(m.result(2), Ok);
  assert.is(m.outU32(2), 29, 'get_header_map_size is the serialized size');
  stream.finish();
  await plugin.stop();
});

test('set_pairs replaces the whole map (keys lowercased); the upstream sees exactly the new pairs', async () => {
  const d = new Data();
  const fresh = d.add(serializePairs([[':method', 'PUT'], [':path', '/new'], ['X-Set', 'A'], ['x-set', 'b']]));
  const code = [setPairs(0, REQ_H, fresh), pairs(1, REQ_H, 0)].join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], [':path', '/old'], ['x-gone', '1']] } });
  const m = guestMemory(h.plugin);
  assert.is(m.result(0), Ok);
  assert.equal(parseSerializedPairs(m.blob(0)), [[':method', 'PUT'], [':path', '/new'], ['x-set', 'A'], ['x-set', 'b']]);
  assert.equal(result.request?.headers, { ':method': 'PUT', ':path': '/new', 'x-set': ['A', 'b'] });
  await h.close();
});

test('set_pairs with zero pairs empties the map', async () => {
  const d = new Data();
  const code = [setPairs(0, REQ_H, d.add(new Uint8Array([0, 0, 0, 0]))), pairs(1, REQ_H, 0), size(2, REQ_H, 2)].join('\n');
  const { plugin } = await loadProbe(onCallback(d, 'request_headers', code));
  const sink = new RecordingSink();
  const stream = plugin.createHttpStream(sink);
  stream.requestHeaders([':method', 'GET', 'x-a', '1'], true);
  const m = guestMemory(plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.result(1), Ok);
  assert.equal([m.outU32(0), m.outU32(1)], [0, 0], 'an empty map is ptr 0 / len 0');
  assert.equal(sink.requestHeadersSeen, []);
  stream.finish();
  await plugin.stop();
});

test('set_pairs with malformed input is BadArgument and leaves the map unchanged', async () => {
  const good = serializePairs([['x-a', '1'], ['x-b', '2']]);
  const badTerminator = Buffer.from(good);
  badTerminator[4 + 16 + 3] = 0x58; // the NUL after the first key
  const malformed: Record<string, Uint8Array> = {
    'count past the data': Buffer.concat([Buffer.from([3, 0, 0, 0]), good.subarray(4)]),
    'a length past the end': good.subarray(0, good.length - 1),
    'a terminator that is not NUL': badTerminator,
    'bytes left over': Buffer.concat([good, Buffer.from([0])]),
    'zero pairs with bytes after': Buffer.from([0, 0, 0, 0, 0x61]),
    'more than 1024 pairs': Buffer.concat([Buffer.from([0x01, 0x04, 0, 0]), Buffer.alloc(1025 * 8 + 1025 * 2)]),
  };
  const d = new Data();
  const names = Object.keys(malformed);
  const code = names.map((name, i) => setPairs(i, REQ_H, d.add(malformed[name]!))).join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], ['x-orig', 'kept']] } });
  const m = guestMemory(h.plugin);
  names.forEach((name, i) => assert.is(m.result(i), BadArgument, name));
  assert.equal(result.request?.headers, { ':method': 'GET', 'x-orig': 'kept' });
  await h.close();
});

test('a map type above 7 is BadArgument for every map function', async () => {
  const d = new Data();
  const k = d.add('x-a');
  const v = d.add('1');
  const p = d.add(serializePairs([['x-a', '1']]));
  const code = [8, -1]
    .flatMap((t, j) => [
      get(j * 7 + 0, t, k, 0),
      add(j * 7 + 1, t, k, v),
      replace(j * 7 + 2, t, k, v),
      remove(j * 7 + 3, t, k),
      pairs(j * 7 + 4, t, 2),
      setPairs(j * 7 + 5, t, p),
      size(j * 7 + 6, t, 4),
    ])
    .join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET']] } });
  const m = guestMemory(h.plugin);
  for (let i = 0; i < 14; i++) assert.is(m.result(i), BadArgument, `call ${i % 7} with type ${i < 7 ? 8 : -1}`);
  for (let o = 0; o < 6; o++) assert.is(m.outU32(o), OUT_FILL);
  assert.equal(result.request?.headers, { ':method': 'GET' });
  await h.close();
});

test('key, value and pairs pointers outside memory are InvalidMemoryAccess and change nothing', async () => {
  const d = new Data();
  const k = d.add('x-a');
  const v = d.add('1');
  const badKey: Blob = { ptr: MEM_END - 2, len: 3 };
  const badValue: Blob = { ptr: MEM_END, len: 1 };
  const code = [
    get(0, REQ_H, badKey, 0),
    add(1, REQ_H, badKey, v),
    add(2, REQ_H, k, badValue),
    replace(3, REQ_H, badKey, v),
    replace(4, REQ_H, k, badValue),
    remove(5, REQ_H, badKey),
    setPairs(6, REQ_H, { ptr: MEM_END - 8, len: 16 }),
    rec(7, `(call $proxy_get_header_map_size ${c(REQ_H)} ${c(MEM_END - 3)})`),
  ].join('\n');
  const h = await harness(onCallback(d, 'request_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], ['x-a', 'orig']] } });
  const m = guestMemory(h.plugin);
  for (let i = 0; i < 8; i++) assert.is(m.result(i), InvalidMemoryAccess, `call ${i}`);
  assert.equal(result.request?.headers, { ':method': 'GET', 'x-a': 'orig' });
  await h.close();
});

test('return pointers outside memory are InvalidMemoryAccess; nothing is allocated or written', async () => {
  const d = new Data();
  const k = d.add('x-a');
  const code = [
    rec(0, `(call $proxy_get_header_map_value ${c(REQ_H)} ${pl(k)} ${c(MEM_END - 2)} ${c(out(0))})`),
    rec(1, `(call $proxy_get_header_map_value ${c(REQ_H)} ${pl(k)} ${c(out(1))} ${c(MEM_END)})`),
    rec(2, `(call $proxy_get_header_map_pairs ${c(REQ_H)} ${c(-4)} ${c(out(2))})`),
    rec(3, `(call $proxy_get_header_map_pairs ${c(REQ_H)} ${c(out(3))} ${c(MEM_END - 1)})`),
  ].join('\n');
  const { plugin } = await loadProbe(onCallback(d, 'request_headers', code));
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':method', 'GET', 'x-a', 'value'], true);
  const m = guestMemory(plugin);
  for (let i = 0; i < 4; i++) assert.is(m.result(i), InvalidMemoryAccess, `call ${i}`);
  // BUG (vm.ts returnLatin1/returnPairs/#writePtrLen): the host allocates and copies before checking the
  // out-pointers, and writes ret_ptr before finding ret_len out of bounds: the guest leaks the block and
  // finds a pointer written although the call failed.
  assert.is(m.allocations(), 0, 'nothing allocated');
  for (let o = 0; o < 4; o++) assert.is(m.outU32(o), OUT_FILL, `out slot ${o} untouched`);
  stream.finish();
  await plugin.stop();
});

test('maps not available in the callback: reads are NotFound (pairs: Ok, empty), writes are BadArgument', async () => {
  const d = new Data();
  const k = d.add('x-a');
  const v = d.add('1');
  const p = d.add(serializePairs([['x-a', '1']]));
  const unavailable = [RES_H, RES_T, REQ_T, MapType.HttpCallResponseHeaders, MapType.GrpcReceiveInitialMetadata];
  const code = unavailable
    .flatMap((t, j) => [
      get(j * 7 + 0, t, k, j * 4),
      pairs(j * 7 + 1, t, j * 4 + 2),
      add(j * 7 + 2, t, k, v),
      replace(j * 7 + 3, t, k, v),
      remove(j * 7 + 4, t, k),
      setPairs(j * 7 + 5, t, p),
      size(j * 7 + 6, t, 40 + j),
    ])
    .join('\n');
  const { plugin } = await loadProbe(onCallback(d, 'request_headers', code));
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':method', 'GET', 'x-a', 'req'], true);
  const m = guestMemory(plugin);
  unavailable.forEach((t, j) => {
    assert.is(m.result(j * 7 + 0), NotFound, `get, map ${t}`);
    assert.is(m.outU32(j * 4), OUT_FILL);
    assert.is(m.result(j * 7 + 1), Ok, `get_pairs, map ${t}`);
    assert.equal([m.outU32(j * 4 + 2), m.outU32(j * 4 + 3)], [0, 0], `get_pairs, map ${t}: ptr 0 / len 0`);
    for (const [i, name] of [[2, 'add'], [3, 'replace'], [4, 'remove'], [5, 'set_pairs'], [6, 'size']] as const) {
      assert.is(m.result(j * 7 + i), BadArgument, `${name}, map ${t}`);
    }
  });
  assert.is(m.allocations(), 0);
  stream.finish();
  await plugin.stop();
});

test('request headers stay readable in on_response_headers but can no longer be changed', async () => {
  const d = new Data();
  const path = d.add(':path');
  const code = [get(0, REQ_H, path, 0), add(1, REQ_H, d.add('x-late'), d.add('1')), replace(2, REQ_H, path, d.add('/late')), remove(3, REQ_H, path)].join('\n');
  const h = await harness(onCallback(d, 'response_headers', code));
  const result = await h.run({ request: { headers: [[':method', 'GET'], [':path', '/orig']] }, response: { headers: [[':status', '200']] } });
  const m = guestMemory(h.plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.blob(0).toString(), '/orig');
  assert.equal([m.result(1), m.result(2), m.result(3)], [BadArgument, BadArgument, BadArgument]);
  assert.equal(result.request?.headers, { ':method': 'GET', ':path': '/orig' });
  await h.close();
});

test('response headers, request trailers and response trailers: changes made in their callbacks reach the next hop', async () => {
  const d = new Data();
  const grpcStatus = d.add('grpc-status');
  const reqTrailers = [add(0, REQ_T, d.add('X-Trailer-Added'), d.add('yes')), get(1, REQ_T, d.add('X-Checksum'), 0), size(2, REQ_T, 2)].join('\n');
  const resHeaders = [replace(3, RES_H, d.add(':status'), d.add('203')), add(4, RES_H, d.add('x-resp'), d.add('r')), remove(5, RES_H, d.add('server'))].join('\n');
  const resTrailers = [remove(6, RES_T, d.add('x-secret')), replace(7, RES_T, grpcStatus, d.add('0')), pairs(8, RES_T, 4)].join('\n');
  const wat = probeModule({
    imports: IMPORTS,
    data: d,
    body: `(func (export "proxy_on_request_trailers") (param i32 i32) (result i32) ${reqTrailers} (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) ${resHeaders} (i32.const 0))
    (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) ${resTrailers} (i32.const 0))`,
  });
  const h = await harness(wat);
  const result = await h.run({
    request: { headers: [[':method', 'POST'], [':path', '/up']], body: 'payload', trailers: [['x-checksum', 'abc']] },
    response: { headers: [[':status', '200'], ['server', 'upstream']], body: 'answer', trailers: [['grpc-status', '13'], ['x-secret', 's']] },
  });
  const m = guestMemory(h.plugin);
  assert.equal([0, 1, 2, 3, 4, 5, 6, 7, 8].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok, Ok]);
  assert.is(m.blob(0).toString(), 'abc');
  assert.is(m.outU32(2), serializePairs([['x-checksum', 'abc'], ['x-trailer-added', 'yes']]).length);
  assert.equal(parseSerializedPairs(m.blob(4)), [['grpc-status', '0']]);
  assert.equal(result.request?.trailers, { 'x-checksum': 'abc', 'x-trailer-added': 'yes' });
  assert.equal(result.response?.headers, { ':status': '203', 'x-resp': 'r' });
  assert.equal(result.response?.trailers, { 'grpc-status': '0' });
  assert.is(result.request?.body, 'payload');
  assert.is(result.response?.body, 'answer');
  await h.close();
});

test('request trailers can be added in on_request_body at end of stream when the request has none', async () => {
  const d = new Data();
  const wat = probeModule({
    imports: IMPORTS,
    data: d,
    body: `(func (export "proxy_on_request_body") (param i32 i32) (param $eos i32) (result i32)
      (if (local.get $eos) (then ${add(0, REQ_T, d.add('x-checksum'), d.add('abc'))}))
      (i32.const 0))`,
  });
  const h = await harness(wat);
  const result = await h.run({ request: { headers: [[':method', 'POST'], [':path', '/']], body: 'payload' } });
  const m = guestMemory(h.plugin);
  // BUG (http-stream.ts writableMap, `case MapType.HttpRequestTrailers: ... ? this.request.trailers : undefined`):
  // with no trailers yet the map is undefined, so the add is refused (BadArgument; the Rust SDK panics on it),
  // where the spec and Envoy (addDecodedTrailers) let on_request_body at end_of_stream create them.
  assert.is(m.result(0), Ok);
  assert.is(result.request?.body, 'payload');
  assert.equal(result.request?.trailers, { 'x-checksum': 'abc' });
  await h.close();
});

test('HTTP-call response headers and trailers are readable only inside on_http_call_response, and read-only there', async () => {
  const d = new Data();
  const cluster = d.add('auth');
  const callHeaders = d.add(serializePairs([[':method', 'GET'], [':path', '/check'], [':authority', 'auth']]));
  const k = d.add('X-Verdict');
  const v = d.add('1');
  const p = d.add(serializePairs([['x-a', '1']]));
  const H = MapType.HttpCallResponseHeaders;
  const T = MapType.HttpCallResponseTrailers;
  const { plugin } = await loadProbe(
    probeModule({
      imports: `${IMPORTS}\n  ${proxyImports('proxy_http_call')}`,
      data: d,
      body: `(func (export "proxy_on_configure") (param i32 i32) (result i32)
        ${rec(0, `(call $proxy_http_call ${pl(cluster)} ${pl(callHeaders)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(1000)} ${c(out(0))})`)}
        ${get(1, H, k, 1)}
        (i32.const 1))
      (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
        ${get(2, H, k, 2)}
        ${pairs(3, T, 4)}
        ${size(4, H, 6)}
        ${add(5, H, k, v)}
        ${replace(6, H, k, v)}
        ${remove(7, T, k)}
        ${setPairs(8, H, p)}
        ${pairs(9, H, 7)})`,
    }),
    {},
    {
      httpCall: () =>
        Promise.resolve({ headers: [':status', '200', 'x-verdict', 'allow'], body: new Uint8Array(0), trailers: ['x-t', 'done'] }),
    },
  );
  const m = guestMemory(plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.result(1), NotFound, 'no callout response in on_configure');
  await settle();
  assert.is(m.result(2), Ok);
  assert.is(m.blob(2).toString(), 'allow');
  assert.is(m.result(3), Ok);
  assert.equal(parseSerializedPairs(m.blob(4)), [['x-t', 'done']]);
  assert.is(m.result(4), Ok);
  assert.is(m.outU32(6), serializePairs([[':status', '200'], ['x-verdict', 'allow']]).length);
  assert.equal([5, 6, 7, 8].map((i) => m.result(i)), [BadArgument, BadArgument, BadArgument, BadArgument], 'read-only');
  assert.equal(parseSerializedPairs(m.blob(7)), [[':status', '200'], ['x-verdict', 'allow']], 'unchanged');
  await plugin.stop();
});

test('ABI 0.1.0: a missing key is Ok with an empty value', async () => {
  const d = new Data();
  const code = [get(0, REQ_H, d.add('x-missing'), 0), get(1, REQ_H, d.add('x-a'), 2)].join('\n');
  const { plugin } = await loadProbe(
    probeModule({ imports: IMPORTS, data: d, abi: '0_1_0', body: `(func (export "proxy_on_request_headers") (param i32 i32) (result i32) ${code} (i32.const 0))` }),
  );
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':method', 'GET', 'x-a', 'v'], true);
  const m = guestMemory(plugin);
  assert.is(m.result(0), Ok);
  assert.equal([m.outU32(0), m.outU32(1)], [0, 0]);
  assert.is(m.result(1), Ok);
  assert.is(m.blob(2).toString(), 'v');
  stream.finish();
  await plugin.stop();
});

test.run();
