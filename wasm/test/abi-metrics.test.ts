// Conformance of the metric host functions: define (ids carry the type), increment, record, get, and
// the Prometheus text the host then exports.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetricType, WasmResult } from '../src/abi/constants.ts';
import { MetricsRegistry } from '../src/metrics/registry.ts';
import { type Blob, Data, MEM_END, OUT_FILL, c, c64, guestMemory, load, loadProbe, out, pl, probeModule, proxyImports, rec } from './support/guest.ts';

const { Ok, NotFound, BadArgument, InvalidMemoryAccess } = WasmResult;

// parse-prometheus-text-format is CommonJS without types: every value is a string.
interface ParsedFamily {
  name: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; sum?: string; count?: string }>;
}
const parsePrometheus = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

function family(registry: MetricsRegistry, name: string): ParsedFamily {
  const text = registry.renderPrometheus();
  const f = parsePrometheus(text).find((x) => x.name === name);
  if (!f) throw new Error(`no family ${name} in:\n${text}`);
  return f;
}

const IMPORTS = proxyImports('proxy_define_metric', 'proxy_increment_metric', 'proxy_record_metric', 'proxy_get_metric');

const define = (slot: number, type: number, name: Blob, o: number) => rec(slot, `(call $proxy_define_metric ${c(type)} ${pl(name)} ${c(out(o))})`);
const increment = (slot: number, id: string, delta: bigint | number) => rec(slot, `(call $proxy_increment_metric ${id} ${c64(delta)})`);
const record = (slot: number, id: string, value: bigint | number) => rec(slot, `(call $proxy_record_metric ${id} ${c64(value)})`);
const get = (slot: number, id: string, o: number) => rec(slot, `(call $proxy_get_metric ${id} ${c(out(o))})`);

async function run(d: Data, code: string, metrics = new MetricsRegistry()) {
  const wat = probeModule({ imports: IMPORTS, data: d, body: `(func (export "proxy_on_configure") (param i32 i32) (result i32)\n${code}\n(i32.const 1))` });
  const { plugin } = await loadProbe(wat, { name: 'metrics-probe' }, { metrics });
  return { plugin, m: guestMemory(plugin), metrics };
}

test('define_metric: the three types get distinct non-zero ids with the type in the low 2 bits; a redefinition gets the same id', async () => {
  const d = new Data();
  const counter = d.add('probe.requests');
  const code = [
    define(0, MetricType.Counter, counter, 0),
    define(1, MetricType.Gauge, d.add('probe.active'), 1),
    define(2, MetricType.Histogram, d.add('probe.latency_ms'), 2),
    define(3, MetricType.Counter, counter, 3),
    define(4, MetricType.Counter, d.add('probe.other'), 4),
  ].join('\n');
  const { plugin, m } = await run(d, code);
  assert.equal([0, 1, 2, 3, 4].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok]);
  const ids = [0, 1, 2, 4].map((o) => m.outU32(o));
  assert.equal(ids.map((id) => id & 3), [MetricType.Counter, MetricType.Gauge, MetricType.Histogram, MetricType.Counter]);
  assert.ok(ids.every((id) => id !== 0));
  assert.is(new Set(ids).size, 4, 'distinct');
  assert.is(m.outU32(3), ids[0], 'same name, same id');
  await plugin.stop();
});

test('define_metric: a type above 2, a malformed name or a bad pointer is refused', async () => {
  const d = new Data();
  const name = d.add('fine');
  const code = [
    define(0, 3, name, 0),
    define(1, -1, name, 1),
    define(2, MetricType.Counter, d.add('broken{label'), 2),
    define(3, MetricType.Counter, { ptr: MEM_END - 2, len: 4 }, 3),
    rec(4, `(call $proxy_define_metric ${c(MetricType.Counter)} ${pl(name)} ${c(MEM_END - 1)})`),
  ].join('\n');
  const { plugin, m, metrics } = await run(d, code);
  assert.equal([0, 1, 2].map((i) => m.result(i)), [BadArgument, BadArgument, BadArgument]);
  assert.equal([3, 4].map((i) => m.result(i)), [InvalidMemoryAccess, InvalidMemoryAccess]);
  for (let o = 0; o < 4; o++) assert.is(m.outU32(o), OUT_FILL);
  assert.not.ok(metrics.renderPrometheus().includes('broken'));
  await plugin.stop();
});

test('counters: increment by a positive delta (i64), delta <= 0 is BadArgument; record adds; get writes a u64', async () => {
  const d = new Data();
  const id = load(out(0));
  const code = [
    define(0, MetricType.Counter, d.add('probe.bytes_total'), 0),
    increment(1, id, 5),
    increment(2, id, 0),
    increment(3, id, -1),
    increment(4, id, 2n ** 40n),
    record(5, id, 3),
    get(6, id, 1),
  ].join('\n');
  const { plugin, m, metrics } = await run(d, code);
  assert.equal([0, 1, 2, 3, 4, 5, 6].map((i) => m.result(i)), [Ok, Ok, BadArgument, BadArgument, Ok, Ok, Ok]);
  const expected = 2n ** 40n + 8n;
  assert.is(m.u64(out(1)), expected, 'get: 5 + 2^40 + 3, as a little-endian u64');
  const f = family(metrics, 'probe_bytes_total');
  assert.is(f.type, 'COUNTER');
  assert.equal(f.metrics, [{ value: expected.toString() }]);
  await plugin.stop();
});

test('gauges: increment goes up and down, record sets the value', async () => {
  const d = new Data();
  const id = load(out(0));
  const code = [
    define(0, MetricType.Gauge, d.add('probe.in_flight'), 0),
    increment(1, id, 10),
    increment(2, id, -3),
    get(3, id, 1),
    record(4, id, 42),
    increment(5, id, -2),
    get(6, id, 2),
  ].join('\n');
  const { plugin, m, metrics } = await run(d, code);
  assert.equal([0, 1, 2, 3, 4, 5, 6].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok, Ok, Ok]);
  assert.is(m.u64(out(1)), 7n);
  assert.is(m.u64(out(2)), 40n);
  const f = family(metrics, 'probe_in_flight');
  assert.is(f.type, 'GAUGE');
  assert.equal(f.metrics, [{ value: '40' }]);
  await plugin.stop();
});

test('histograms: record observes; increment and get are BadArgument', async () => {
  const d = new Data();
  const id = load(out(0));
  const code = [
    define(0, MetricType.Histogram, d.add('probe.latency_ms'), 0),
    record(1, id, 3),
    record(2, id, 70),
    record(3, id, 700),
    increment(4, id, 1),
    get(5, id, 1),
  ].join('\n');
  const { plugin, m, metrics } = await run(d, code);
  assert.equal([0, 1, 2, 3].map((i) => m.result(i)), [Ok, Ok, Ok, Ok]);
  assert.is(m.result(4), BadArgument);
  assert.is(m.result(5), BadArgument);
  assert.is(m.outU32(1), OUT_FILL, 'get wrote nothing');
  const f = family(metrics, 'probe_latency_ms');
  assert.is(f.type, 'HISTOGRAM');
  const h = f.metrics[0]!;
  assert.is(h.count, '3');
  assert.is(h.sum, '773');
  assert.is(h.buckets?.['5'], '1');
  assert.is(h.buckets?.['100'], '2');
  assert.is(h.buckets?.['1000'], '3');
  await plugin.stop();
});

test('unknown ids, and ids whose type bits do not match, are NotFound for increment, record and get', async () => {
  const d = new Data();
  const counterId = load(out(0));
  const code = [
    define(0, MetricType.Counter, d.add('probe.known'), 0),
    increment(1, c(0x1000), 1),
    record(2, c(0x1001), 1),
    get(3, c(0x1000), 1),
    increment(4, `(i32.or ${counterId} (i32.const 1))`, 1),
    get(5, `(i32.or ${counterId} (i32.const 2))`, 2),
    get(6, c(0), 3),
    rec(7, `(call $proxy_get_metric ${counterId} ${c(MEM_END - 4)})`),
  ].join('\n');
  const { plugin, m, metrics } = await run(d, code);
  assert.is(m.result(0), Ok);
  assert.equal([1, 2, 3, 4, 5, 6].map((i) => m.result(i)), [NotFound, NotFound, NotFound, NotFound, NotFound, NotFound]);
  assert.is(m.result(7), InvalidMemoryAccess, 'a u64 does not fit in the last 4 bytes');
  assert.equal(family(metrics, 'probe_known').metrics, [{ value: '0' }]);
  await plugin.stop();
});

test('metric names with labels become labelled series of one family in the Prometheus output', async () => {
  const d = new Data();
  const code = [
    define(0, MetricType.Counter, d.add('probe.responses{code="200",method="GET"}'), 0),
    define(1, MetricType.Counter, d.add('probe.responses{code="503",method="GET"}'), 1),
    increment(2, load(out(0)), 7),
    increment(3, load(out(1)), 2),
    define(4, MetricType.Gauge, d.add('probe.queue{name="jobs"}'), 2),
    record(5, load(out(2)), 12),
  ].join('\n');
  const metrics = new MetricsRegistry();
  // Two plugins sharing the registry define the same series: they share the value.
  const first = await run(d, code, metrics);
  const second = await run(d, code, metrics);
  for (const { m } of [first, second]) assert.equal([0, 1, 2, 3, 4, 5].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok, Ok]);
  assert.ok(first.m.outU32(0) !== first.m.outU32(1), 'each label set has its own id');
  const responses = family(metrics, 'probe_responses');
  assert.is(responses.type, 'COUNTER');
  const byCode = Object.fromEntries(responses.metrics.map((s) => [s.labels?.code, s]));
  assert.equal(byCode['200'], { value: '14', labels: { code: '200', method: 'GET' } });
  assert.equal(byCode['503'], { value: '4', labels: { code: '503', method: 'GET' } });
  assert.equal(family(metrics, 'probe_queue').metrics, [{ value: '12', labels: { name: 'jobs' } }]);
  await first.plugin.stop();
  await second.plugin.stop();
});

test.run();
