// The tcp-guard example network filter, driven through the runtime's NetworkStream as a TCP proxy
// drives it: byte counts per connection, deny prefixes (in one chunk, split over chunks, cut short by
// the end of the stream) and configuration errors. Build first:
//   node scripts/wasmesh.mjs filter build filters/examples/tcp-guard
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness } from '../../../../wasm/src/harness.ts';
import type { ConnectionSide, NetworkStreamSink } from '../../../../wasm/src/host.ts';

const WASM = fileURLToPath(new URL('../build/tcp-guard.wasm', import.meta.url));
const B = (s: string): Buffer => Buffer.from(s);

class Sink implements NetworkStreamSink {
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

async function guard(denyPrefixes?: string[]): Promise<FilterHarness> {
  return FilterHarness.load(WASM, { rootId: 'tcp_guard', configuration: denyPrefixes === undefined ? {} : { denyPrefixes }, logLevel: 'info' });
}

function value(h: FilterHarness, name: string): number | undefined {
  return h.metricsSnapshot().find((m) => m.name === name)?.value;
}

function histogram(h: FilterHarness, name: string) {
  return h.metricsSnapshot().find((m) => m.name === name);
}

test('bytes are counted per connection both ways; a client that matches no prefix is never held', async () => {
  const h = await guard(['DROP ']);
  try {
    const sink = new Sink();
    const conn = h.plugin.createNetworkStream(sink, { sourceAddress: '127.0.0.1:50000' });
    assert.is(conn.onNewConnection(), 'continue');
    assert.is(conn.onDownstreamData(B('SELECT 1;'), false), 'continue');
    assert.is(conn.onUpstreamData(B('1 row'), false), 'continue');
    assert.is(conn.onDownstreamData(B('DROP later is fine'), true), 'continue', 'only the first bytes are checked');
    assert.is(conn.onUpstreamData(B('bye'), true), 'continue');
    conn.onDownstreamClose('remote');
    conn.onUpstreamClose('remote');
    conn.finish();
    assert.equal(sink.trace, ["up 'SELECT 1;'", "down '1 row'", "up 'DROP later is fine' end", "down 'bye' end"]);
    assert.is(value(h, 'tcp_guard_connections_total'), 1);
    assert.is(value(h, 'tcp_guard_downstream_bytes_total'), 9 + 18);
    assert.is(value(h, 'tcp_guard_upstream_bytes_total'), 5 + 3);
    assert.is(value(h, 'tcp_guard_connections_denied_total') ?? 0, 0);
    const perConnection = histogram(h, 'tcp_guard_connection_bytes');
    assert.is(perConnection?.count, 1);
    assert.is(perConnection?.sum, 35, 'one observation per connection: its bytes both ways');

    const second = h.plugin.createNetworkStream(new Sink());
    second.onNewConnection();
    second.onDownstreamData(B('hi'), true);
    second.finish();
    assert.is(histogram(h, 'tcp_guard_connection_bytes')?.count, 2);
    assert.is(value(h, 'tcp_guard_connections_total'), 2);
  } finally {
    await h.close();
  }
});

test('first bytes starting with a deny prefix: the connection is closed, nothing reaches the upstream, the denial is counted and logged', async () => {
  const h = await guard(['DROP ', 'SLAVEOF']);
  try {
    const sink = new Sink();
    const conn = h.plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('SLAVEOF 10.0.0.1 6379\r\n'), false), 'close');
    assert.equal(sink.trace, ['close downstream wasm_close_stream']);
    assert.is(conn.onDownstreamData(B('more'), false), 'close');
    conn.onDownstreamClose('local');
    conn.finish();
    assert.is(value(h, 'tcp_guard_connections_denied_total'), 1);
    assert.ok(h.logs.some((l) => l.level === 'info' && /closed: its first bytes match deny prefix "SLAVEOF"/.test(l.message)), JSON.stringify(h.logs));
  } finally {
    await h.close();
  }
});

test('a prefix split over reads: the filter holds the bytes until it can decide, then closes or lets them all through once', async () => {
  const h = await guard(['DROP ']);
  try {
    const denied = new Sink();
    const a = h.plugin.createNetworkStream(denied);
    a.onNewConnection();
    assert.is(a.onDownstreamData(B('DR'), false), 'pause');
    assert.is(a.onDownstreamData(B('OP'), false), 'pause');
    assert.is(a.onDownstreamData(B(' TABLE x'), false), 'close');
    assert.equal(denied.trace, ['close downstream wasm_close_stream']);
    a.finish();

    const passed = new Sink();
    const b = h.plugin.createNetworkStream(passed);
    b.onNewConnection();
    assert.is(b.onDownstreamData(B('DR'), false), 'pause');
    assert.is(b.onDownstreamData(B('AW 1'), false), 'continue');
    assert.equal(passed.trace, ["up 'DRAW 1'"]);
    b.finish();
    assert.is(value(h, 'tcp_guard_downstream_bytes_total'), 2 + 2 + 8 + 2 + 4, 'held bytes are counted once');

    const short = new Sink();
    const c = h.plugin.createNetworkStream(short);
    c.onNewConnection();
    assert.is(c.onDownstreamData(B('DRO'), false), 'pause');
    assert.is(c.onDownstreamData(Buffer.alloc(0), true), 'continue', 'the client ended before it could match');
    assert.equal(short.trace, ["up 'DRO' end"]);
    c.finish();
  } finally {
    await h.close();
  }
});

test('without deny prefixes the filter only counts', async () => {
  const h = await guard();
  try {
    const sink = new Sink();
    const conn = h.plugin.createNetworkStream(sink);
    conn.onNewConnection();
    assert.is(conn.onDownstreamData(B('DROP '), false), 'continue');
    conn.finish();
    assert.equal(sink.trace, ["up 'DROP '"]);
    assert.is(value(h, 'tcp_guard_downstream_bytes_total'), 5);
  } finally {
    await h.close();
  }
});

async function rejects(configuration: unknown): Promise<string> {
  try {
    const h = await FilterHarness.load(WASM, { rootId: 'tcp_guard', configuration: configuration as Record<string, unknown> });
    await h.close();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`configuration was accepted: ${JSON.stringify(configuration)}`);
}

test('a bad configuration is refused, naming the field', async () => {
  assert.match(await rejects({ denyPrefixes: 'DROP' }), /denyPrefixes: must be an array of strings, not a string/);
  assert.match(await rejects({ denyPrefixes: [''] }), /denyPrefixes\[0\]: must not be empty/);
  assert.match(await rejects({ denyPrefixes: ['ok', 7] }), /denyPrefixes\[1\]: must be a string, not a number/);
  assert.match(await rejects({ denyPrefixes: ['x'.repeat(1025)] }), /denyPrefixes\[0\]: must be at most 1024 bytes, not 1025/);
  assert.match(await rejects({ deny: [] }), /deny: unknown field \(expected one of "denyPrefixes"\)/);
});

test.run();
