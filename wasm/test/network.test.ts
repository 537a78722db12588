// The network-filter (L4) part of the ABI as a module drives it: the connection callbacks and their
// order, the DOWNSTREAM_DATA / UPSTREAM_DATA buffers (read, replace, prepend, append), pausing and
// continuing either direction, closing the connection from the filter, connection properties, and
// what a trap, a runaway loop or an oversized buffer does to the connection under each failStrategy.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ConnectionSide, FailStrategy, NetworkStreamSink, StreamInfo } from '../src/host.ts';
import type { MetricsRegistry } from '../src/metrics/registry.ts';
import { FilterHarness } from '../src/harness.ts';
import type { Plugin } from '../src/plugin.ts';
import { wat2wasm } from './support/wat.ts';
import {
  Strings, c, envImports, ev, log, out, outVal, pl, loadPlugin, pluginEvents, recordingCallbacks, recordingModule,
  type CallbackName, type CallbackSpec,
} from './support/recorder.ts';

const EMPTY = Buffer.alloc(0);
const B = (s: string): Buffer => Buffer.from(s);

/** What the proxy would do for the connection, in order: "up 'x'" (to the upstream), "down 'x' end", "close downstream wasm_close_stream". */
class NetSink implements NetworkStreamSink {
  readonly trace: string[] = [];
  toUpstream(data: Uint8Array, endOfStream: boolean): void {
    this.trace.push(`up '${Buffer.from(data).toString()}'${endOfStream ? ' end' : ''}`);
  }
  toDownstream(data: Uint8Array, endOfStream: boolean): void {
    this.trace.push(`down '${Buffer.from(data).toString()}'${endOfStream ? ' end' : ''}`);
  }
  close(side: ConnectionSide, reason: string): void {
    this.trace.push(`close ${side} ${reason}`);
  }
}

const NET_IMPORTS = [
  'proxy_log', 'proxy_http_call', 'proxy_get_buffer_bytes', 'proxy_set_buffer_bytes', 'proxy_get_buffer_status', 'proxy_continue_stream',
  'proxy_close_stream', 'proxy_set_effective_context', 'proxy_get_property',
];

/** A recording module with the network callbacks; `specs` adds behaviour after each records its arguments. */
function netModule(specs: Partial<Record<CallbackName, CallbackSpec | string | null>>, s = new Strings(), extra = '', abi?: '0_1_0' | '0_2_0' | '0_2_1'): string {
  return recordingModule({
    imports: envImports(...NET_IMPORTS),
    strings: s,
    abi,
    body: `
  (global $conn (mut i32) (i32.const 0))
  ${extra}
  ${recordingCallbacks(specs, { network: true })}`,
  });
}

/** wat: logs (info) buffer `type`'s first `len` bytes, recording the status of the read as event `name`. */
const logBuffer = (name: string, type: number, len: string): string => `
    ${ev(name, `(call $proxy_get_buffer_bytes ${c(type)} ${c(0)} ${len} ${c(out(0))} ${c(out(1))})`)}
    (if (i32.gt_u ${outVal(1)} ${c(0)}) (then (drop (call $proxy_log ${c(2)} ${outVal(0)} ${outVal(1)}))))
    (i32.store ${c(out(1))} ${c(0)})`;

/** wat: the first byte of buffer `type` (0 when empty or not readable). */
const firstByte = (type: number): string => `(block (result i32)
      (i32.store ${c(out(3))} ${c(0)})
      (drop (call $proxy_get_buffer_bytes ${c(type)} ${c(0)} ${c(1)} ${c(out(2))} ${c(out(3))}))
      (if (result i32) (i32.eqz ${outVal(3)}) (then ${c(0)}) (else (i32.load8_u ${outVal(2)}))))`;

const ch = (s: string): number => s.charCodeAt(0);

function streamEvents(plugin: Plugin): string[] {
  const all = pluginEvents(plugin);
  return all.slice(all.findIndex((e) => e.startsWith('configure(')) + 1);
}

function metric(registry: MetricsRegistry, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const m of registry.snapshot()) {
    if (m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v)) sum += m.value ?? 0;
  }
  return sum;
}

// ---- callbacks and their order ----------------------------------------------------------------

test('a connection runs context_create, new_connection, data both ways with end_of_stream, both closes with their PeerType, then done, log, delete; bytes pass untouched', async () => {
  const { plugin, logs } = await loadPlugin(netModule({
    proxy_on_downstream_data: `${logBuffer('get_down', 2, '(local.get 1)')}
    ${ev('get_up', `(call $proxy_get_buffer_bytes ${c(3)} ${c(0)} ${c(10)} ${c(out(4))} ${c(out(5))})`)}
    ${ev('status', `(call $proxy_get_buffer_status ${c(2)} ${c(out(6))} ${c(out(7))})`, outVal(6), outVal(7))}
    ${c(0)}`,
    proxy_on_upstream_data: `${logBuffer('get_up', 3, '(local.get 1)')}
    ${ev('get_down', `(call $proxy_get_buffer_bytes ${c(2)} ${c(0)} ${c(10)} ${c(out(4))} ${c(out(5))})`)}
    ${c(0)}`,
  }));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    assert.is(conn.onNewConnection(), 'continue');
    assert.is(conn.onDownstreamData(B('hello'), false), 'continue');
    assert.is(conn.onUpstreamData(B('world'), false), 'continue');
    assert.is(conn.onDownstreamData(EMPTY, true), 'continue');
    assert.is(conn.onUpstreamData(B('!'), true), 'continue');
    conn.onDownstreamClose('remote');
    conn.onUpstreamClose('local');
    conn.onDownstreamClose('remote');
    conn.finish();
    conn.finish();
    assert.equal(sink.trace, ["up 'hello'", "down 'world'", "up '' end", "down '!' end"]);
    assert.equal(streamEvents(plugin), [
      'context_create(2,1)',
      'new_connection(2)',
      'downstream_data(2,5,0)', 'get_down(0)', 'get_up(1)', 'status(0,5,0)',
      'upstream_data(2,5,0)', 'get_up(0)', 'get_down(1)',
      'downstream_data(2,0,1)', 'get_down(0)', 'get_up(1)', 'status(0,0,0)',
      'upstream_data(2,1,1)', 'get_up(0)', 'get_down(1)',
      // PeerType: REMOTE 2, LOCAL 1; each close is reported once.
      'downstream_close(2,2)',
      'upstream_close(2,1)',
      // Envoy's order for a TCP context.
      'done(2)', 'log(2)', 'delete(2)',
    ]);
    assert.equal(logs.filter((l) => l.startsWith('info: ')), ['info: hello', 'info: world', 'info: !'], 'each buffer holds the chunk of its own direction');
    assert.is(plugin.activeStreams, 0);
    // Nothing is delivered after the end: late input is refused, not given to a deleted context.
    assert.is(conn.onDownstreamData(B('late'), false), 'close');
    assert.is(streamEvents(plugin).length, 21);
  } finally {
    await plugin.stop();
  }
});

test('a module without network callbacks passes bytes both ways and still gets its context and on_done', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks() }));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    assert.is(conn.onNewConnection(), 'continue');
    conn.onDownstreamData(B('a'), false);
    conn.onUpstreamData(B('b'), true);
    conn.onDownstreamData(B('c'), true);
    conn.finish();
    assert.equal(sink.trace, ["up 'a'", "down 'b' end", "up 'c' end"]);
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'done(2)', 'log(2)', 'delete(2)']);
  } finally {
    await plugin.stop();
  }
});

test('ABI 0.1.0 modules get the same network callbacks', async () => {
  const { plugin } = await loadPlugin(netModule({}, new Strings(), '', '0_1_0'));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    conn.onDownstreamData(B('q'), true);
    conn.onDownstreamClose('unknown');
    conn.finish();
    assert.equal(sink.trace, ["up 'q' end"]);
    assert.equal(streamEvents(plugin), ['context_create(2,1)', 'new_connection(2)', 'downstream_data(2,1,1)', 'downstream_close(2,0)', 'done(2)', 'log(2)', 'delete(2)']);
  } finally {
    await plugin.stop();
  }
});

// ---- buffers -------------------------------------------------------------------------------

const EDITS = [
  { what: 'replace all (start 0, size >= length)', start: 0, size: 11, data: 'bye', expect: 'bye' },
  { what: 'replace all (size 0xffffffff)', start: 0, size: -1, data: 'bye', expect: 'bye' },
  { what: 'prepend (start 0, size 0)', start: 0, size: 0, data: '>> ', expect: '>> hello world' },
  { what: 'append (start = length)', start: 11, size: 0, data: '!', expect: 'hello world!' },
  { what: 'append (start 0x7fffffff, Go SDK)', start: 0x7fffffff, size: 0, data: '!', expect: 'hello world!' },
  { what: 'replace a range in the middle (the spec form)', start: 6, size: 5, data: 'there', expect: 'hello there' },
  { what: 'drain the start (start 0, size 6, no data)', start: 0, size: 6, data: '', expect: 'world' },
];

for (const [type, callback, dir] of [[2, 'proxy_on_downstream_data', 'downstream'], [3, 'proxy_on_upstream_data', 'upstream']] as const) {
  for (const e of EDITS) {
    test(`set_buffer_bytes on ${dir} data: ${e.what}`, async () => {
      const s = new Strings();
      const data = s.add(e.data);
      const { plugin } = await loadPlugin(netModule({
        [callback]: `${ev('set', `(call $proxy_set_buffer_bytes ${c(type)} ${c(e.start)} ${c(e.size)} ${pl(data)})`)}
    ${logBuffer('get', type, c(100))}
    ${c(0)}`,
      }, s));
      try {
        const sink = new NetSink();
        const conn = plugin.createNetworkStream(sink);
        conn.onNewConnection();
        const send = (b: Buffer) => (type === 2 ? conn.onDownstreamData(b, false) : conn.onUpstreamData(b, false));
        assert.is(send(B('hello world')), 'continue');
        assert.equal(streamEvents(plugin).filter((x) => x.startsWith('set') || x.startsWith('get')), ['set(0)', 'get(0)']);
        assert.equal(sink.trace, [`${type === 2 ? 'up' : 'down'} '${e.expect}'`], 'the changed bytes go on, and the filter read them back');
        conn.finish();
      } finally {
        await plugin.stop();
      }
    });
  }
}

test('a buffer is only writable in its own direction: the other answers NotFound, an emptied buffer sends nothing', async () => {
  const s = new Strings();
  const x = s.add('x');
  const { plugin } = await loadPlugin(netModule({
    proxy_on_downstream_data: `${ev('set_other', `(call $proxy_set_buffer_bytes ${c(3)} ${c(0)} ${c(0)} ${pl(x)})`)}
    ${ev('drain', `(call $proxy_set_buffer_bytes ${c(2)} ${c(0)} ${c(-1)} ${c(0)} ${c(0)})`)}
    ${c(0)}`,
  }, s));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('secret'), false), 'continue');
    assert.equal(streamEvents(plugin).slice(-2), ['set_other(1)', 'drain(0)']);
    assert.equal(sink.trace, [], 'the filter swallowed the chunk');
    conn.onUpstreamData(B('ok'), false);
    assert.equal(sink.trace, ["down 'ok'"]);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

// ---- pause and continue --------------------------------------------------------------------

test('StopIteration holds client bytes; each chunk calls back with the total; Continue sends them once, in order, end_of_stream included', async () => {
  const { plugin, logs } = await loadPlugin(netModule({
    // Waits for 6 bytes (or the end of the stream), then lets everything through.
    proxy_on_downstream_data: `${logBuffer('get', 2, '(local.get 1)')}
    (if (result i32) (i32.and (i32.lt_u (local.get 1) ${c(6)}) (i32.eqz (local.get 2))) (then ${c(1)}) (else ${c(0)}))`,
  }));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('ab'), false), 'pause');
    assert.is(conn.onDownstreamData(B('cd'), false), 'pause');
    assert.is(conn.heldDownstreamBytes, 4);
    assert.equal(sink.trace, []);
    assert.is(conn.onDownstreamData(B('ef'), false), 'continue');
    assert.equal(sink.trace, ["up 'abcdef'"]);
    assert.is(conn.heldDownstreamBytes, 0);
    assert.is(conn.onDownstreamData(B('gh'), false), 'pause');
    assert.is(conn.onUpstreamData(B('pong'), false), 'continue', 'the other direction flows while one is paused');
    assert.is(conn.onDownstreamData(EMPTY, true), 'continue');
    assert.equal(sink.trace, ["up 'abcdef'", "down 'pong'", "up 'gh' end"]);
    assert.equal(streamEvents(plugin).filter((e) => e.startsWith('downstream_data')), [
      'downstream_data(2,2,0)', 'downstream_data(2,4,0)', 'downstream_data(2,6,0)', 'downstream_data(2,2,0)', 'downstream_data(2,2,1)',
    ]);
    assert.equal(logs.filter((l) => l.startsWith('info: ')), ['info: ab', 'info: abcd', 'info: abcdef', 'info: gh', 'info: gh']);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

/** Pauses both directions; on_upstream_data resumes the client's direction, on_tick resumes the upstream's. */
function resumeModule(): string {
  return netModule({
    proxy_on_new_connection: `(global.set $conn (local.get 0)) ${c(0)}`,
    proxy_on_downstream_data: c(1),
    proxy_on_upstream_data: `${ev('continue_down', `(call $proxy_continue_stream ${c(2)})`)} ${c(1)}`,
    proxy_on_tick: `${ev('set_ctx', '(call $proxy_set_effective_context (global.get $conn))')}
    ${logBuffer('get_up', 3, c(100))}
    ${ev('continue_up', `(call $proxy_continue_stream ${c(3)})`)}`,
  });
}

test('proxy_continue_stream(DOWNSTREAM) from the other direction and (UPSTREAM) from a root callback release what each holds, after the call returns', async () => {
  const { plugin, logs } = await loadPlugin(resumeModule(), {}, { manualTicks: true });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('request'), false), 'pause');
    assert.is(conn.onUpstreamData(B('resp'), false), 'pause');
    assert.equal(sink.trace, ["up 'request'"], 'the client direction went on once on_upstream_data returned');
    assert.is(conn.onUpstreamData(B('onse'), true), 'pause');
    assert.equal(sink.trace, ["up 'request'"]);
    // The paused upstream bytes stay readable from another callback (with the effective context set).
    assert.ok(plugin.vm.runTick(plugin.vm.root));
    assert.equal(streamEvents(plugin).slice(-4), ['tick(1)', 'set_ctx(0)', 'get_up(0)', 'continue_up(0)']);
    assert.equal(logs.filter((l) => l.startsWith('info: ')), ['info: response']);
    assert.equal(sink.trace, ["up 'request'", "down 'response' end"]);
    // Continue on a direction that holds nothing is a no-op.
    assert.ok(plugin.vm.runTick(plugin.vm.root));
    assert.equal(sink.trace.length, 2);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

test('continue_stream within the callback that returns StopIteration lets the bytes through; UPSTREAM continue is Unimplemented in an HTTP stream', async () => {
  const { plugin } = await loadPlugin(netModule({
    proxy_on_downstream_data: `${ev('continue', `(call $proxy_continue_stream ${c(2)})`)} ${c(1)}`,
    proxy_on_request_headers: `${ev('continue_up', `(call $proxy_continue_stream ${c(3)})`)} ${c(0)}`,
  }));
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('x'), false), 'continue');
    assert.equal(sink.trace, ["up 'x'"]);
    conn.finish();
    const http = plugin.createHttpStream({ requestHeaders() {}, requestData() {}, requestTrailers() {}, responseHeaders() {}, responseData() {}, responseTrailers() {}, localResponse() {}, reset() {} });
    http.requestHeaders([':method', 'GET', ':path', '/', ':authority', 'a'], true);
    http.finish();
    assert.ok(streamEvents(plugin).includes('continue_up(12)'), 'Envoy answers UNIMPLEMENTED (12) there');
  } finally {
    await plugin.stop();
  }
});

test('StopIteration from on_new_connection holds the client bytes without callbacks until the filter continues; then they arrive as one buffer', async () => {
  const { plugin } = await loadPlugin(netModule({
    proxy_on_new_connection: `(global.set $conn (local.get 0)) ${c(1)}`,
    proxy_on_tick: `${ev('set_ctx', '(call $proxy_set_effective_context (global.get $conn))')}
    ${ev('continue', `(call $proxy_continue_stream ${c(2)})`)}`,
  }), {}, { manualTicks: true });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    assert.is(conn.onNewConnection(), 'pause');
    assert.is(conn.onDownstreamData(B('ab'), false), 'pause');
    assert.is(conn.onDownstreamData(B('cd'), false), 'pause');
    assert.is(conn.onUpstreamData(B('220 banner'), false), 'continue', 'the server may greet the client meanwhile');
    assert.equal(sink.trace, ["down '220 banner'"]);
    assert.not.ok(streamEvents(plugin).some((e) => e.startsWith('downstream_data')));
    plugin.vm.runTick(plugin.vm.root);
    assert.equal(streamEvents(plugin).slice(-3), ['set_ctx(0)', 'continue(0)', 'downstream_data(2,4,0)']);
    assert.equal(sink.trace, ["down '220 banner'", "up 'abcd'"]);
    assert.is(conn.onDownstreamData(B('ef'), true), 'continue');
    assert.equal(sink.trace.at(-1), "up 'ef' end");
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

// ---- closing from the filter ---------------------------------------------------------------

function closeModule(): string {
  return netModule({
    // 'Q' from the client closes the client side; 'Q' from the upstream closes the upstream side.
    proxy_on_downstream_data: `(if (i32.eq ${firstByte(2)} ${c(ch('Q'))}) (then ${ev('close', `(call $proxy_close_stream ${c(2)})`)})) ${c(0)}`,
    proxy_on_upstream_data: `(if (i32.eq ${firstByte(3)} ${c(ch('Q'))}) (then ${ev('close', `(call $proxy_close_stream ${c(3)})`)})) ${c(0)}`,
  });
}

test('proxy_close_stream(DOWNSTREAM) closes the connection: nothing of that chunk or later goes on, the close callbacks and on_done still run', async () => {
  const { plugin } = await loadPlugin(closeModule());
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('hi'), false), 'continue');
    assert.is(conn.onDownstreamData(B('QUIT'), false), 'close');
    assert.equal(sink.trace, ["up 'hi'", 'close downstream wasm_close_stream']);
    assert.is(conn.onDownstreamData(B('more'), false), 'close');
    assert.is(conn.onUpstreamData(B('late'), false), 'close');
    assert.equal(sink.trace.length, 2, 'nothing after the close');
    conn.onDownstreamClose('local');
    conn.onUpstreamClose('local');
    conn.finish();
    assert.equal(streamEvents(plugin).slice(-8), [
      'downstream_data(2,2,0)', 'downstream_data(2,4,0)', 'close(0)',
      'downstream_close(2,1)', 'upstream_close(2,1)', 'done(2)', 'log(2)', 'delete(2)',
    ]);
  } finally {
    await plugin.stop();
  }
});

test('proxy_close_stream(UPSTREAM) closes the connection naming the upstream side', async () => {
  const { plugin } = await loadPlugin(closeModule());
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onUpstreamData(B('Quit now'), false), 'close');
    assert.equal(sink.trace, ['close upstream wasm_close_stream']);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

// ---- properties ------------------------------------------------------------------------------

test('connection properties: source/destination address and port, connection.mtls and id, upstream.address once the proxy knows it', async () => {
  const s = new Strings();
  const path = (...p: string[]) => s.add(p.join('\0'));
  const srcAddr = path('source', 'address');
  const dstAddr = path('destination', 'address');
  const srcPort = path('source', 'port');
  const mtls = path('connection', 'mtls');
  const upAddr = path('upstream', 'address');
  const sni = path('connection', 'requested_server_name');
  const get = (name: string, b: typeof srcAddr, value: string) =>
    `(i32.store ${c(out(11))} ${c(0)})
    ${ev(name, `(call $proxy_get_property ${pl(b)} ${c(out(10))} ${c(out(11))})`, `(if (result i32) (i32.eqz ${outVal(11)}) (then ${c(-1)}) (else ${value}))`)}`;
  const logIt = `(if (i32.gt_u ${outVal(11)} ${c(0)}) (then (drop (call $proxy_log ${c(2)} ${outVal(10)} ${outVal(11)}))))`;
  const { plugin, logs } = await loadPlugin(netModule({
    proxy_on_new_connection: `${get('src', srcAddr, outVal(11))} ${logIt}
    ${get('dst', dstAddr, outVal(11))} ${logIt}
    ${get('sni', sni, outVal(11))} ${logIt}
    ${get('src_port', srcPort, `(i32.load ${outVal(10)})`)}
    ${get('mtls', mtls, `(i32.load8_u ${outVal(10)})`)}
    ${get('upstream', upAddr, outVal(11))}
    ${c(0)}`,
    proxy_on_upstream_data: `${get('upstream', upAddr, outVal(11))} ${logIt} ${c(0)}`,
  }, s));
  try {
    const info: StreamInfo = { sourceAddress: '10.1.2.3:40001', destinationAddress: '10.1.2.4:5432', mtls: true, connectionId: 9, requestedServerName: 'db.local' };
    const conn = plugin.createNetworkStream(new NetSink(), info);
    conn.onNewConnection();
    info.upstreamAddress = '10.9.9.9:5432';
    conn.onUpstreamData(B('R'), false);
    conn.finish();
    assert.equal(streamEvents(plugin).filter((e) => /^(src|dst|sni|src_port|mtls|upstream)\(/.test(e)), [
      'src(0,14)', 'dst(0,13)', 'sni(0,8)', 'src_port(0,40001)', 'mtls(0,1)',
      'upstream(1,-1)', // NotFound before the proxy connected upstream
      'upstream(0,13)',
    ]);
    assert.equal(logs.filter((l) => l.startsWith('info: ')), ['info: 10.1.2.3:40001', 'info: 10.1.2.4:5432', 'info: db.local', 'info: 10.9.9.9:5432']);
  } finally {
    await plugin.stop();
  }
});

// ---- failures ------------------------------------------------------------------------------

/**
 * Prepends '>' to client bytes. A chunk starting 'T' rewrites the buffer to MODIFIED and traps; 'L'
 * loops forever; 'P' pauses; 'R' passes unchanged. Upstream bytes starting 'T' trap.
 */
function trapModule(): string {
  const s = new Strings();
  const gt = s.add('>');
  const modified = s.add('MODIFIED');
  return netModule({
    proxy_on_downstream_data: { locals: ['b'], body: `(local.set $b ${firstByte(2)})
    (if (i32.eq (local.get $b) ${c(ch('T'))}) (then
      (drop (call $proxy_set_buffer_bytes ${c(2)} ${c(0)} ${c(-1)} ${pl(modified)}))
      unreachable))
    (if (i32.eq (local.get $b) ${c(ch('L'))}) (then (loop $l (br $l))))
    (if (i32.eq (local.get $b) ${c(ch('P'))}) (then (return ${c(1)})))
    (if (i32.eq (local.get $b) ${c(ch('R'))}) (then (return ${c(0)})))
    (drop (call $proxy_set_buffer_bytes ${c(2)} ${c(0)} ${c(0)} ${pl(gt)}))
    ${c(0)}` },
    proxy_on_upstream_data: `(if (i32.eq ${firstByte(3)} ${c(ch('T'))}) (then unreachable)) ${c(0)}`,
  }, s);
}

async function trapPlugin(failStrategy: FailStrategy, name: string) {
  return loadPlugin(trapModule(), { name, failStrategy, cpuBudget: 20_000_000 });
}

for (const [input, side, cause] of [['Trap', 'downstream', 'unreachable'], ['Loop', 'downstream', 'cpu_budget'], ['Trap', 'upstream', 'unreachable']] as const) {
  test(`FAIL_CLOSE: ${cause} in on_${side}_data closes the connection (wasm_fail_stream), is counted by cause, the next connection gets a fresh VM`, async () => {
    const { plugin } = await trapPlugin('FAIL_CLOSE', `close-${side}-${cause}`);
    try {
      const sink = new NetSink();
      const conn = plugin.createNetworkStream(sink);
      conn.onNewConnection();
      assert.is(conn.onDownstreamData(B('ok'), false), 'continue');
      const started = performance.now();
      const action = side === 'downstream' ? conn.onDownstreamData(B(input), false) : conn.onUpstreamData(B(input), false);
      assert.ok(performance.now() - started < 2000, 'a runaway is stopped within the budget');
      assert.is(action, 'close');
      assert.equal(sink.trace, ["up '>ok'", 'close downstream wasm_fail_stream']);
      assert.is(conn.onDownstreamData(B('more'), false), 'close');
      conn.onDownstreamClose('local');
      conn.finish();
      assert.is(metric(plugin.settings.host.metrics, 'wasmesh_wasm_vm_traps_total', { plugin: plugin.settings.name, cause }), 1);
      const next = new NetSink();
      const fresh = plugin.createNetworkStream(next);
      assert.is(fresh.onNewConnection(), 'continue');
      fresh.onDownstreamData(B('again'), false);
      fresh.finish();
      assert.equal(next.trace, ["up '>again'"]);
      assert.is(plugin.state, 'running');
    } finally {
      await plugin.stop();
    }
  });

  test(`FAIL_OPEN: ${cause} in on_${side}_data passes the bytes through untouched, and every later byte of the connection`, async () => {
    const { plugin } = await trapPlugin('FAIL_OPEN', `open-${side}-${cause}`);
    try {
      const sink = new NetSink();
      const conn = plugin.createNetworkStream(sink);
      conn.onNewConnection();
      const action = side === 'downstream' ? conn.onDownstreamData(B(input), false) : conn.onUpstreamData(B(input), false);
      assert.is(action, 'continue');
      assert.is(conn.onDownstreamData(B('x'), false), 'continue');
      assert.is(conn.onUpstreamData(B('Tz'), true), 'continue');
      assert.is(conn.onDownstreamData(EMPTY, true), 'continue');
      conn.onDownstreamClose('remote');
      conn.finish();
      const first = side === 'downstream' ? `up '${input}'` : `down '${input}'`;
      assert.equal(sink.trace, [first, "up 'x'", "down 'Tz' end", "up '' end"], 'no MODIFIED, no ">": the filter is out of the path');
      assert.is(metric(plugin.settings.host.metrics, 'wasmesh_wasm_vm_traps_total', { plugin: plugin.settings.name, cause }), 1);
      const next = new NetSink();
      const fresh = plugin.createNetworkStream(next);
      fresh.onNewConnection();
      fresh.onDownstreamData(B('y'), false);
      fresh.finish();
      assert.equal(next.trace, ["up '>y'"], 'the next connection is filtered again');
    } finally {
      await plugin.stop();
    }
  });
}

test('a VM failing on another connection: bytes a paused connection holds are sent (FAIL_OPEN) or the connection is closed (FAIL_CLOSE)', async () => {
  for (const failStrategy of ['FAIL_OPEN', 'FAIL_CLOSE'] as const) {
    const { plugin } = await trapPlugin(failStrategy, `held-${failStrategy}`);
    try {
      const held = new NetSink();
      const a = plugin.createNetworkStream(held);
      a.onNewConnection();
      assert.is(a.onDownstreamData(B('Pending'), false), 'pause');
      const b = plugin.createNetworkStream(new NetSink());
      b.onNewConnection();
      b.onDownstreamData(B('Trap'), false);
      assert.equal(held.trace, [failStrategy === 'FAIL_OPEN' ? "up 'Pending'" : 'close downstream wasm_fail_stream'], failStrategy);
      a.finish();
      b.finish();
    } finally {
      await plugin.stop();
    }
  }
});

test('FAIL_OPEN: a trap while a direction is paused sends what the filter held, as it arrived, not what the failing callback wrote', async () => {
  const s = new Strings();
  const modified = s.add('MODIFIED');
  const { plugin } = await loadPlugin(netModule({
    proxy_on_downstream_data: `(if (local.get 2) (then
      (drop (call $proxy_set_buffer_bytes ${c(2)} ${c(0)} ${c(-1)} ${pl(modified)}))
      unreachable))
    ${c(1)}`,
  }, s), { name: 'paused-trap', failStrategy: 'FAIL_OPEN' });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('ab'), false), 'pause');
    assert.is(conn.onDownstreamData(B('cd'), true), 'continue');
    assert.equal(sink.trace, ["up 'abcd' end"]);
    assert.is(conn.heldDownstreamBytes, 0);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

test('a trap in a close callback is counted; the connection that is closing anyway is closed once', async () => {
  const { plugin } = await loadPlugin(netModule({ proxy_on_downstream_connection_close: 'unreachable' }), { name: 'close-trap' });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    conn.onDownstreamData(B('a'), true);
    conn.onDownstreamClose('remote');
    conn.onUpstreamClose('remote');
    conn.finish();
    assert.equal(sink.trace, ["up 'a' end", 'close downstream wasm_fail_stream']);
    assert.is(metric(plugin.settings.host.metrics, 'wasmesh_wasm_vm_traps_total', { plugin: 'close-trap', cause: 'unreachable' }), 1);
  } finally {
    await plugin.stop();
  }
});

test('a new connection while the VM is failed and backing off: FAIL_CLOSE refuses it, FAIL_OPEN passes it without the filter', async () => {
  // A VM that fails before serving any connection backs off (plugin.ts): the next connection meets the failed VM.
  for (const failStrategy of ['FAIL_CLOSE', 'FAIL_OPEN'] as const) {
    const { plugin } = await loadPlugin(netModule({ proxy_on_new_connection: 'unreachable' }), { name: `backoff-${failStrategy}`, failStrategy });
    try {
      const first = plugin.createNetworkStream(new NetSink());
      first.onNewConnection();
      first.finish();
      const again = plugin.createNetworkStream(new NetSink());
      again.onNewConnection();
      again.finish();
      assert.is(plugin.state, 'failed', 'in backoff');
      const sink = new NetSink();
      const conn = plugin.createNetworkStream(sink);
      const action = conn.onNewConnection();
      conn.onDownstreamData(B('z'), false);
      conn.finish();
      if (failStrategy === 'FAIL_CLOSE') {
        assert.is(action, 'close');
        assert.equal(sink.trace, ['close downstream wasm_fail_stream']);
      } else {
        assert.is(action, 'continue');
        assert.equal(sink.trace, ["up 'z'"]);
      }
    } finally {
      await plugin.stop();
    }
  }
});

// ---- bounds ------------------------------------------------------------------------------------

test('bounds: held bytes past maxBufferedBodyBytes close the connection; a chunk passing through does not count', async () => {
  const { plugin } = await loadPlugin(trapModule(), { name: 'bound', maxBufferedBodyBytes: 16 });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('R'.repeat(100)), false), 'continue');
    assert.is(conn.onDownstreamData(B('P123456789'), false), 'pause');
    assert.is(conn.onDownstreamData(B('0123456789'), false), 'close');
    assert.equal(sink.trace, [`up '${'R'.repeat(100)}'`, 'close downstream downstream_buffer_overflow']);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

test('bounds: a filter growing a buffer past the bound gets BadArgument, nothing oversized goes on, the connection closes naming plugin and buffer', async () => {
  const s = new Strings();
  const big = s.add('y'.repeat(64));
  const { plugin } = await loadPlugin(netModule({
    proxy_on_upstream_data: `${ev('append', `(call $proxy_set_buffer_bytes ${c(3)} ${c(-1)} ${c(0)} ${pl(big)})`)} ${c(0)}`,
  }, s), { name: 'grow', maxBufferedBodyBytes: 32 });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onUpstreamData(B('small'), false), 'close');
    assert.ok(streamEvents(plugin).includes('append(2)'), 'BadArgument');
    assert.equal(sink.trace, ['close downstream wasm_output_too_large[grow][upstream_data]']);
    assert.is(metric(plugin.settings.host.metrics, 'wasmesh_wasm_output_limit_total', { plugin: 'grow', what: 'upstream_data' }), 1);
    conn.finish();
    assert.is(plugin.state, 'running', 'not a trap: the VM keeps serving');
  } finally {
    await plugin.stop();
  }
});

test('bounds: an oversized write from a root callback (effective context) fails the connection before the continue queued after it', async () => {
  const s = new Strings();
  const big = s.add('z'.repeat(64));
  const { plugin } = await loadPlugin(netModule({
    proxy_on_new_connection: `(global.set $conn (local.get 0)) ${c(0)}`,
    proxy_on_downstream_data: c(1),
    proxy_on_tick: `(drop (call $proxy_set_effective_context (global.get $conn)))
    ${ev('grow', `(call $proxy_set_buffer_bytes ${c(2)} ${c(0)} ${c(0)} ${pl(big)})`)}
    ${ev('continue', `(call $proxy_continue_stream ${c(2)})`)}`,
  }, s), { name: 'tick-grow', maxBufferedBodyBytes: 32 }, { manualTicks: true });
  try {
    const sink = new NetSink();
    const conn = plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('held'), false), 'pause');
    plugin.vm.runTick(plugin.vm.root);
    assert.equal(streamEvents(plugin).slice(-2), ['grow(2)', 'continue(0)']);
    assert.equal(sink.trace, ['close downstream wasm_output_too_large[tick-grow][downstream_data]']);
    conn.finish();
  } finally {
    await plugin.stop();
  }
});

test('active connections are counted while open', async () => {
  const { plugin } = await loadPlugin(netModule({}), { name: 'gauge' });
  try {
    const a = plugin.createNetworkStream(new NetSink());
    const b = plugin.createNetworkStream(new NetSink());
    assert.is(plugin.activeStreams, 2);
    assert.is(metric(plugin.settings.host.metrics, 'wasmesh_wasm_active_streams', { plugin: 'gauge' }), 2);
    a.finish();
    b.finish();
    assert.is(plugin.activeStreams, 0);
    await plugin.drained();
  } finally {
    await plugin.stop();
  }
});

// ---- the harness -------------------------------------------------------------------------------

/** Holds the client's first bytes while an HTTP callout decides: a 200 lets them through, anything else closes. */
function authzModule(): string {
  const s = new Strings();
  const cluster = s.add('authz');
  const headers = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', 'authz']]);
  return netModule({
    proxy_on_downstream_data: `(if (i32.eqz (global.get $conn)) (then
      (global.set $conn (local.get 0))
      ${ev('http_call', `(call $proxy_http_call ${pl(cluster)} ${pl(headers)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(100)} ${c(out(9))})`)}
      (return ${c(1)})))
    ${c(0)}`,
    proxy_on_http_call_response: `${ev('set_ctx', '(call $proxy_set_effective_context (global.get $conn))')}
    (if (i32.gt_u (local.get 2) ${c(0)})
      (then ${ev('continue', `(call $proxy_continue_stream ${c(2)})`)})
      (else ${ev('close', `(call $proxy_close_stream ${c(2)})`)}))`,
  }, s);
}

test('harness runConnection: a callout answer resumes (or closes) the paused connection between steps; outputs, actions and callouts are reported', async () => {
  const allow = await FilterHarness.load(await wat2wasm(authzModule()), { calloutResponses: { authz: { status: 200 } } });
  try {
    const r = await allow.runConnection({
      steps: [{ downstream: 'HELLO' }, { upstream: 'WELCOME' }, { downstream: ' again', end: true }, { upstream: 'BYE', end: true }, { close: 'downstream' }],
    });
    assert.is(r.newConnection, 'continue');
    assert.equal(r.actions, ['pause', 'continue', 'continue', 'continue']);
    assert.equal(r.upstream, { data: 'HELLO again', bytes: B('HELLO again'), ended: true });
    assert.equal(r.downstream, { data: 'WELCOMEBYE', bytes: B('WELCOMEBYE'), ended: true });
    assert.is(r.closed, undefined);
    assert.is(r.callouts.length, 1);
    assert.is(r.callouts[0].upstream, 'authz');
  } finally {
    await allow.close();
  }
  const deny = await FilterHarness.load(await wat2wasm(authzModule()), { calloutResponses: { authz: { fail: true } } });
  try {
    const r = await deny.runConnection({ steps: [{ downstream: 'HELLO' }, { upstream: 'never delivered' }] });
    assert.equal(r.actions, ['pause'], 'steps after the close are not delivered');
    assert.equal(r.closed, { side: 'downstream', reason: 'wasm_close_stream' });
    assert.is(r.upstream.data, '');
  } finally {
    await deny.close();
  }
});

test.run();
