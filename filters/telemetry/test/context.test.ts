// Request context the telemetry filter keeps or creates: W3C trace context (kept, created, from B3,
// invalid replaced), x-request-id, and the peer metadata exchange headers on both sides.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FilterHarness } from '../../../wasm/src/index.ts';
import { decodePeerHeader, ensureBuilt, loadSide, peerHeader, PEER_HEADER, PRODUCTPAGE, REVIEWS } from './support/telemetry.ts';

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;
const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

let outbound: FilterHarness;
let inbound: FilterHarness;

test.before(async () => {
  await ensureBuilt();
  outbound = await loadSide('outbound', PRODUCTPAGE, { configuration: { accessLog: false } });
  inbound = await loadSide('inbound', REVIEWS, { configuration: { accessLog: false } });
});

test.after(async () => {
  await Promise.all([outbound?.close(), inbound?.close()]);
});

const BASE = { ':method': 'GET', ':path': '/', ':authority': 'reviews:9080', 'x-request-id': 'fixed-id' };

async function upstreamHeaders(h: FilterHarness, headers: Record<string, string>): Promise<Record<string, string | string[]>> {
  const result = await h.run({ request: { headers: { ...BASE, ...headers } }, response: { headers: { ':status': '200' } } });
  assert.ok(result.request, 'the request went upstream');
  return result.request.headers;
}

// ---- trace context -------------------------------------------------------------------------

test('a valid traceparent is kept, with its tracestate', async () => {
  const h = await upstreamHeaders(outbound, { traceparent: VALID, tracestate: 'vendor=abc' });
  assert.is(h.traceparent, VALID);
  assert.is(h.tracestate, 'vendor=abc');
});

test('a later traceparent version is kept when its 00 prefix parses', async () => {
  const future = '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra';
  assert.is((await upstreamHeaders(outbound, { traceparent: future })).traceparent, future);
});

test('no trace context: a new sampled traceparent (random ids), on both sides', async () => {
  const seen = new Set<string>();
  for (const h of [outbound, inbound, outbound]) {
    const headers = await upstreamHeaders(h, {});
    const m = TRACEPARENT_RE.exec(String(headers.traceparent));
    assert.ok(m, `traceparent ${headers.traceparent}`);
    assert.is(m[3], '01', 'sampled');
    assert.is.not(m[1], '0'.repeat(32));
    seen.add(m[1]);
  }
  assert.is(seen.size, 3, 'every request starts its own trace');
});

test('a tracestate without a traceparent is dropped', async () => {
  const h = await upstreamHeaders(outbound, { tracestate: 'vendor=abc' });
  assert.ok(TRACEPARENT_RE.test(String(h.traceparent)));
  assert.is(h.tracestate, undefined);
});

test('invalid traceparents are replaced (and their tracestate dropped)', async () => {
  const invalid = [
    'garbage',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // uppercase
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero span id
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x', // 00 with extra text
    '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01',
    '00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01',
  ];
  for (const value of invalid) {
    const h = await upstreamHeaders(outbound, { traceparent: value, tracestate: 'vendor=abc' });
    assert.ok(TRACEPARENT_RE.test(String(h.traceparent)), `${value} -> ${h.traceparent}`);
    assert.is.not(h.traceparent, value);
    assert.is(h.tracestate, undefined, `tracestate dropped with ${value}`);
  }
});

test('B3 multi-header: traceparent derived from x-b3-traceid / x-b3-spanid / x-b3-sampled', async () => {
  const h = await upstreamHeaders(outbound, { 'x-b3-traceid': '80f198ee56343ba864fe8b2a57d3eff7', 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '1' });
  assert.is(h.traceparent, '00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01');
  assert.is(h['x-b3-traceid'], '80f198ee56343ba864fe8b2a57d3eff7', 'B3 headers stay for apps that read them');
});

test('B3: a 64-bit trace id is left-padded; sampled=0 gives flags 00; x-b3-flags=1 (debug) samples', async () => {
  let h = await upstreamHeaders(outbound, { 'x-b3-traceid': '64fe8b2a57d3eff7', 'x-b3-spanid': 'E457B5A2E4D86BD1', 'x-b3-sampled': '0' });
  assert.is(h.traceparent, '00-000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1-00');
  h = await upstreamHeaders(outbound, { 'x-b3-traceid': '64fe8b2a57d3eff7', 'x-b3-spanid': 'e457b5a2e4d86bd1', 'x-b3-sampled': '0', 'x-b3-flags': '1' });
  assert.is(h.traceparent, '00-000000000000000064fe8b2a57d3eff7-e457b5a2e4d86bd1-01');
});

test('B3 single header: ids and sampling; a bare sampling decision starts a trace with it', async () => {
  let h = await upstreamHeaders(outbound, { b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90' });
  assert.is(h.traceparent, '00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-00');
  h = await upstreamHeaders(outbound, { b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1' });
  assert.is(h.traceparent, '00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01');
  h = await upstreamHeaders(outbound, { b3: '0' });
  const m = TRACEPARENT_RE.exec(String(h.traceparent));
  assert.ok(m);
  assert.is(m[3], '00');
});

test('invalid B3 is ignored: a new trace starts', async () => {
  const h = await upstreamHeaders(outbound, { 'x-b3-traceid': 'not-hex', 'x-b3-spanid': 'e457b5a2e4d86bd1' });
  const m = TRACEPARENT_RE.exec(String(h.traceparent));
  assert.ok(m);
  assert.is.not(m[1], '0000000000000000not-hex');
});

test('a valid traceparent wins over B3', async () => {
  const h = await upstreamHeaders(outbound, { traceparent: VALID, 'x-b3-traceid': '80f198ee56343ba864fe8b2a57d3eff7', 'x-b3-spanid': 'e457b5a2e4d86bd1' });
  assert.is(h.traceparent, VALID);
});

test('x-request-id: kept when present, a UUID v4 when absent', async () => {
  assert.is((await upstreamHeaders(outbound, {}))['x-request-id'], 'fixed-id');
  const result = await outbound.run({ request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'reviews' } }, response: { headers: { ':status': '200' } } });
  assert.match(String(result.request?.headers['x-request-id']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

// ---- metadata exchange -----------------------------------------------------------------------

test('outbound adds the local workload to requests (replacing what the app sent)', async () => {
  const h = await upstreamHeaders(outbound, { [PEER_HEADER]: peerHeader({ name: 'spoofed', namespace: 'evil' }) });
  assert.is(h[PEER_HEADER], peerHeader(PRODUCTPAGE));
  assert.equal(decodePeerHeader(String(h[PEER_HEADER])), { name: 'productpage', namespace: 'default', app: 'productpage', version: 'v1', sa: 'bookinfo-productpage' });
});

test('inbound reads and strips the request header, and answers with its own', async () => {
  const result = await inbound.run({
    request: { headers: { ...BASE, [PEER_HEADER]: peerHeader(PRODUCTPAGE) } },
    response: { headers: { ':status': '200', [PEER_HEADER]: 'from-the-app' } },
  });
  assert.is(result.request?.headers[PEER_HEADER], undefined, 'the app never sees it');
  assert.is(result.response?.headers[PEER_HEADER], peerHeader(REVIEWS), "the app's value is replaced");
});

test('outbound reads and strips the response header', async () => {
  const result = await outbound.run({ request: { headers: BASE }, response: { headers: { ':status': '200', [PEER_HEADER]: peerHeader(REVIEWS) } } });
  assert.is(result.response?.headers[PEER_HEADER], undefined);
});

test('a full exchange through both sides: each learns the other', async () => {
  const out = await loadSide('outbound', PRODUCTPAGE, { configuration: { accessLog: false } });
  const inn = await loadSide('inbound', REVIEWS, { configuration: { accessLog: false } });
  try {
    // What the outbound side sends is what the inbound side gets; its answer goes back through the outbound side.
    const first = await out.run({ request: { headers: BASE } });
    const hop = await inn.run({ request: { headers: first.request!.headers as Record<string, string> }, response: { headers: { ':status': '200' } } });
    await out.run({ request: { headers: BASE }, response: { headers: hop.response!.headers as Record<string, string> } });
    const server = inn.metricsSnapshot().find((m) => m.name === 'istio_requests_total');
    assert.is(server?.labels.source_workload, 'productpage');
    assert.is(server?.labels.destination_workload, 'reviews');
    const client = out.metricsSnapshot().find((m) => m.name === 'istio_requests_total' && m.labels.response_code === '200');
    assert.is(client?.labels.source_workload, 'productpage');
    assert.is(client?.labels.destination_workload, 'reviews');
    assert.is(client?.labels.destination_version, 'v2');
  } finally {
    await Promise.all([out.close(), inn.close()]);
  }
});

test('malformed exchange headers never fail the request: the peer stays unknown', async () => {
  const h = await loadSide('inbound', REVIEWS, { configuration: { accessLog: false } });
  try {
    const bad = ['!!!', '', 'A', Buffer.from('no fields here').toString('base64'), Buffer.from('name=' + 'x'.repeat(300)).toString('base64'), 'x'.repeat(5000)];
    for (const value of bad) {
      const result = await h.run({ request: { headers: { ...BASE, [PEER_HEADER]: value } }, response: { headers: { ':status': '200' } } });
      assert.is(result.response?.headers[':status'], '200', `request with ${value.slice(0, 20)} passed`);
      assert.is(result.request?.headers[PEER_HEADER], undefined);
    }
    assert.equal(h.plugin.state, 'running');
    const series = h.metricsSnapshot().filter((m) => m.name === 'istio_requests_total');
    assert.equal(series.map((m) => m.labels.source_workload), ['unknown']);
    assert.is(series[0].value, bad.length);
  } finally {
    await h.close();
  }
});

test('missing node metadata: the local workload is "unknown", nothing traps', async () => {
  const h = await loadSide('outbound', { name: '', namespace: '' }, { configuration: { accessLog: false }, properties: { 'node.metadata.NAME': '', 'node.metadata.NAMESPACE': '' } });
  try {
    const result = await h.run({ request: { headers: { ':method': 'GET', ':path': '/' } }, response: { headers: { ':status': '200' } } });
    assert.ok(result.request);
    assert.equal(decodePeerHeader(String(result.request.headers[PEER_HEADER])), { name: 'unknown', namespace: 'unknown', app: 'unknown', version: 'unknown', sa: 'unknown' });
    const [m] = h.metricsSnapshot().filter((s) => s.name === 'istio_requests_total');
    assert.is(m.labels.source_workload, 'unknown');
    assert.is(m.labels.destination_service, 'unknown');
  } finally {
    await h.close();
  }
});

test.run();
