// The demo's trace receiver (scripts/demo/traces.ts) on its own: real span exporters of the proxy
// (OTLP/HTTP protobuf) send to it; its endpoints list the traces and print a trace as a tree; the
// three-hop check says what is missing; it keeps a bounded number of traces and refuses what it does
// not read.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetricsRegistry } from '../../wasm/src/index.ts';
import { SpanExporter, type FinishedSpan } from '../../proxy-host/src/telemetry/span-exporter.ts';
import { checkThreeHops, DemoTraceReceiver } from '../demo/traces.ts';

let receiver: DemoTraceReceiver;
const exporters: SpanExporter[] = [];

test.before(async () => {
  receiver = await new DemoTraceReceiver().start();
});

test.after(async () => {
  await Promise.all(exporters.map((e) => e.close()));
  await receiver.close();
});

/** An exporter per workload, as each sidecar has one (service.name is the resource). */
function exporter(service: string): SpanExporter {
  const e = new SpanExporter({ name: 'demo-traces', kind: 'opentelemetry', protocol: 'otlp-http-protobuf', host: '127.0.0.1', port: receiver.port, path: '/v1/traces', timeoutMs: 2000, headers: [], maxTagLength: 256 }, new MetricsRegistry(), service);
  exporters.push(e);
  return e;
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
let at = Date.now();
const span = (spanId: string, parentSpanId: string, kind: 'CLIENT' | 'SERVER', host: string): FinishedSpan => ({
  traceId: TRACE, spanId, parentSpanId, name: `${host}/*`, kind, startMs: at++, durationMs: 2, tags: { 'http.status_code': '200' }, error: false, localEndpoint: { serviceName: host },
});

test('spans from four sidecars make one trace; /traces lists it, /traces/<id> prints the tree, the three-hop check passes', async () => {
  const hops: [string, FinishedSpan[]][] = [
    ['traffic.default', [span('a000000000000001', 'f000000000000000', 'CLIENT', 'productpage')]],
    ['productpage.default', [span('a000000000000002', 'a000000000000001', 'SERVER', 'productpage'), span('a000000000000003', 'a000000000000002', 'CLIENT', 'reviews')]],
    ['reviews.default', [span('a000000000000004', 'a000000000000003', 'SERVER', 'reviews')]],
  ];
  for (const [service, spans] of hops) {
    const e = exporter(service);
    for (const s of spans) e.push(s);
    await e.flush();
  }
  assert.is(checkThreeHops(receiver.spans(TRACE)), 'no SERVER span of ratings');
  const reviews = exporter('reviews.default');
  reviews.push(span('a000000000000005', 'a000000000000004', 'CLIENT', 'ratings'));
  await reviews.flush();
  const ratings = exporter('ratings.default');
  ratings.push(span('a000000000000006', 'a000000000000005', 'SERVER', 'ratings'));
  await ratings.flush();
  assert.is(checkThreeHops(receiver.spans(TRACE)), undefined);

  const list = (await (await fetch(`${receiver.url}/traces`)).json()) as { traceId: string; spans: number; services: string[]; root: string }[];
  assert.is(list[0]!.traceId, TRACE);
  assert.is(list[0]!.spans, 6);
  assert.equal(list[0]!.services.sort(), ['productpage.default', 'ratings.default', 'reviews.default', 'traffic.default']);
  assert.is(list[0]!.root, 'traffic.default CLIENT productpage/*');
  const tree = await (await fetch(`${receiver.url}/traces/${TRACE}`)).text();
  const lines = tree.trimEnd().split('\n');
  assert.is(lines[0], `trace ${TRACE} (6 spans)`);
  assert.match(lines[1]!, /^ {2}traffic\.default CLIENT productpage\/\* 200 2\.0 ms {2}span a000000000000001 parent f000000000000000$/);
  assert.match(lines[6]!, /^ {12}ratings\.default SERVER ratings\/\* 200 /, tree);
  const json = (await (await fetch(`${receiver.url}/traces/${TRACE}?format=json`)).json()) as { spanId: string }[];
  assert.is(json.length, 6);
  assert.is((await fetch(`${receiver.url}/traces/${'0'.repeat(32)}`)).status, 404);
});

test('a broken parent link fails the three-hop check; JSON and garbage are refused; the trace count is bounded', async () => {
  const spans = receiver.spans(TRACE).map((s) => (s.service === 'reviews.default' && s.kind === 'SERVER' ? { ...s, parentSpanId: 'dead000000000000' } : s));
  assert.match(checkThreeHops(spans)!, /reviews is not the child of a CLIENT span/);
  const json = await fetch(`${receiver.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.is(json.status, 415);
  const garbage = await fetch(`${receiver.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from([0x0a, 0xff]) });
  assert.is(garbage.status, 400);
  const e = exporter('load.default');
  for (let i = 0; i < 260; i++) e.push({ ...span('b000000000000001', '', 'SERVER', 'load'), traceId: (i + 1).toString(16).padStart(32, 'c') });
  await e.flush();
  const list = (await (await fetch(`${receiver.url}/traces`)).json()) as { traceId: string }[];
  assert.is(list.length, 200, 'the oldest traces are dropped past 200');
  assert.not.ok(list.some((t) => t.traceId === TRACE), 'the first trace went first');
});

test.run();
