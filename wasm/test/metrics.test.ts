import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetricType } from '../src/abi/constants.ts';
import { DEFAULT_HISTOGRAM_BUCKETS } from '../src/limits.ts';
import { MODULE_METRIC_HELP, MetricsRegistry, parseMetricName } from '../src/metrics/registry.ts';
import { formatNumber } from '../src/metrics/prometheus.ts';

// parse-prometheus-text-format is CommonJS without type declarations; load it through require with the
// shape it returns (all values are strings, as in prom2json).
interface ParsedSample {
  value?: string;
  labels?: Record<string, string>;
  buckets?: Record<string, string>;
  sum?: string;
  count?: string;
}
interface ParsedFamily {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: ParsedSample[];
}
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

function family(text: string, name: string): ParsedFamily {
  const f = parse(text).find((x) => x.name === name);
  if (f === undefined) throw new Error(`family ${name} missing from:\n${text}`);
  return f;
}

/** Value of the sample with exactly these labels. */
function sampleValue(f: ParsedFamily, labels: Record<string, string>): string | undefined {
  return f.metrics.find((m) => JSON.stringify(sorted(m.labels ?? {})) === JSON.stringify(sorted(labels)))?.value;
}

function sorted(labels: Record<string, string>): Array<[string, string]> {
  return Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The parser only folds unlabelled histograms into buckets/sum/count; for labelled ones, drop the metadata so
 * every sample line parses as an untyped family of its own (`x_bucket`, `x_sum`, `x_count`) with its labels.
 * The parser starts a new family whenever the sample name changes, so merge families of one name.
 */
function parseSamples(text: string): ParsedFamily[] {
  const merged = new Map<string, ParsedFamily>();
  for (const f of parse(text.replace(/^#.*\n/gm, ''))) {
    const seen = merged.get(f.name);
    if (seen === undefined) merged.set(f.name, f);
    else seen.metrics.push(...f.metrics);
  }
  return [...merged.values()];
}

test('module counters and gauges with labels render and parse back', () => {
  const r = new MetricsRegistry();
  const get200 = r.define(MetricType.Counter, 'my_filter.requests_total{method="GET",code="200"}');
  const post500 = r.define(MetricType.Counter, 'my_filter.requests_total{method="POST",code="500"}');
  const active = r.define(MetricType.Gauge, 'my_filter.active_streams');
  assert.ok(get200 && post500 && active);
  assert.is(get200.name, 'my_filter_requests_total');
  assert.equal(get200.labels, { code: '200', method: 'GET' });
  assert.ok(get200.increment(3));
  assert.ok(get200.increment(2));
  assert.ok(post500.increment(1));
  assert.ok(active.record(7));
  assert.ok(active.increment(-2));

  const text = r.renderPrometheus();
  const counter = family(text, 'my_filter_requests_total');
  assert.is(counter.type, 'COUNTER');
  assert.is(counter.help, MODULE_METRIC_HELP);
  assert.is(counter.metrics.length, 2);
  assert.is(sampleValue(counter, { method: 'GET', code: '200' }), '5');
  assert.is(sampleValue(counter, { method: 'POST', code: '500' }), '1');
  const gauge = family(text, 'my_filter_active_streams');
  assert.is(gauge.type, 'GAUGE');
  assert.equal(gauge.metrics, [{ value: '5' }]);
  assert.is(get200.get(), 5);
  assert.is(active.get(), 5);
});

test('host metrics carry their help text; HELP and TYPE appear once per family, families sorted', () => {
  const r = new MetricsRegistry();
  r.counter('wasmesh_wasm_vm_traps_total', 'VM traps, by plugin', { plugin: 'b' }).increment(1);
  r.counter('wasmesh_wasm_vm_traps_total', 'VM traps, by plugin', { plugin: 'a' }).increment(2);
  r.gauge('wasmesh_wasm_vms', 'Live VMs\nper plugin, C:\\path').record(4);
  r.define(MetricType.Counter, 'alpha.count')!.increment(1);
  const text = r.renderPrometheus();

  const names = parse(text).map((f) => f.name);
  assert.equal(names, ['alpha_count', 'wasmesh_wasm_vm_traps_total', 'wasmesh_wasm_vms']);
  assert.is(text.match(/^# TYPE wasmesh_wasm_vm_traps_total counter$/gm)?.length, 1);
  assert.is(text.match(/^# HELP wasmesh_wasm_vm_traps_total /gm)?.length, 1);
  const traps = family(text, 'wasmesh_wasm_vm_traps_total');
  assert.is(traps.help, 'VM traps, by plugin');
  assert.is(sampleValue(traps, { plugin: 'a' }), '2');
  assert.is(sampleValue(traps, { plugin: 'b' }), '1');
  // Help text with a newline and a backslash is escaped and survives the parser.
  assert.is(family(text, 'wasmesh_wasm_vms').help, 'Live VMs\nper plugin, C:\\path');
  // Host help replaces the generic module help of a family a module created first.
  r.counter('alpha_count', 'Alphas seen');
  assert.is(family(r.renderPrometheus(), 'alpha_count').help, 'Alphas seen');
});

test('a counter name without _total is kept as given', () => {
  const r = new MetricsRegistry();
  r.define(MetricType.Counter, 'my_filter.hits')!.increment(1);
  const text = r.renderPrometheus();
  assert.ok(text.includes('\nmy_filter_hits 1\n'));
  assert.not.ok(text.includes('my_filter_hits_total'));
  assert.is(family(text, 'my_filter_hits').type, 'COUNTER');
});

test('label values with quotes, backslashes and newlines round-trip through the parser', () => {
  const r = new MetricsRegistry();
  const path = 'C:\\DIR\\FILE.TXT';
  const error = 'Cannot find file:\n"FILE.TXT"';
  // Module syntax: escaped as in the exposition format, unescaped into the label value.
  const m = r.define(MetricType.Gauge, 'files{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""}');
  assert.ok(m);
  assert.equal(m.labels, { error, path });
  m.record(1);
  // Host API: raw values.
  r.counter('wasmesh_odd_total', 'odd labels', { v: 'a"b\\c\nd}e,f=g' }).increment(1);

  const text = r.renderPrometheus();
  assert.equal(family(text, 'files').metrics, [{ value: '1', labels: { error, path } }]);
  assert.equal(family(text, 'wasmesh_odd_total').metrics, [{ value: '1', labels: { v: 'a"b\\c\nd}e,f=g' } }]);
  // Every sample stays on one line.
  for (const line of text.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) {
    assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$/);
  }
});

test('module names are sanitized; malformed names and labels are refused', () => {
  const r = new MetricsRegistry();
  assert.is(r.define(MetricType.Counter, 'my-filter.requests/s')?.name, 'my_filter_requests_s');
  assert.is(r.define(MetricType.Counter, '9lives')?.name, '_9lives');
  assert.is(r.define(MetricType.Gauge, 'spaced{ a = "1" , b="2", }')?.key, 'spaced{a="1",b="2"}');
  assert.is(r.define(MetricType.Gauge, 'none{}')?.key, 'none');

  const bad = [
    '',
    '{a="b"}', // no base name
    'x{a="b"', // unterminated
    'x{a="b}',
    'x{1a="b"}', // label name starts with a digit
    'x{a-b="c"}',
    'x{__name__="y"}', // reserved label name
    'x{a=b}', // unquoted value
    'x{a}',
    'x{a="b"}junk', // trailing text
    'x{a="b"}{c="d"}',
    'x{a="b",a="c"}', // duplicate label
    'x{a="b" c="d"}', // missing comma
    'x{a="\\q"}', // unknown escape
    'wasmesh_wasm_vm_traps_total', // the runtime's own namespace
    'wasmesh.fake{plugin="x"}',
    'y'.repeat(5000),
  ];
  for (const name of bad) assert.is(r.define(MetricType.Gauge, name), undefined, `accepted ${JSON.stringify(name)}`);
  assert.is(r.define(MetricType.Histogram, 'h{le="1"}'), undefined, 'le is reserved on histograms');
  assert.is(r.define(7 as MetricType, 'fine'), undefined, 'unknown metric type');
  // Nothing refused leaks into the output.
  assert.not.ok(r.renderPrometheus().includes('x{'));

  assert.throws(() => r.counter('bad name', 'h'), /invalid metric name/);
  assert.throws(() => r.counter('0bad', 'h'), /invalid metric name/);
  assert.throws(() => r.gauge('ok', 'h', { 'bad-label': 'v' }), /invalid label name/);
  assert.throws(() => r.gauge('ok', 'h', { __x: 'v' }), /invalid label name/);
  assert.throws(() => r.histogram('ok_h', 'h', {}, [1, 1]), /increasing/);
  assert.throws(() => r.histogram('ok_h', 'h', {}, [1, NaN]), /finite/);
});

test('parseMetricName splits base name and labels', () => {
  assert.equal(parseMetricName('my_filter.requests_total{method="GET",code="200"}'), {
    name: 'my_filter_requests_total',
    labels: [
      ['method', 'GET'],
      ['code', '200'],
    ],
  });
  assert.equal(parseMetricName('a:b.c'), { name: 'a:b_c', labels: [] });
});

test('redefining a name with a different type is refused', () => {
  const r = new MetricsRegistry();
  const c = r.define(MetricType.Counter, 'conflict{a="1"}');
  assert.ok(c);
  assert.is(r.define(MetricType.Gauge, 'conflict{a="1"}'), undefined);
  assert.is(r.define(MetricType.Gauge, 'conflict{a="2"}'), undefined, 'the family shares one type');
  assert.is(r.define(MetricType.Histogram, 'conflict'), undefined);
  assert.throws(() => r.gauge('conflict', 'h'), /already defined as a counter/);
  // A histogram's _bucket/_sum/_count names are taken too.
  assert.ok(r.define(MetricType.Histogram, 'lat'));
  assert.is(r.define(MetricType.Counter, 'lat_count'), undefined);
  assert.is(r.define(MetricType.Gauge, 'lat_sum'), undefined);
  assert.ok(r.define(MetricType.Counter, 'other_count'));
  assert.is(r.define(MetricType.Histogram, 'other'), undefined);
  // The original still works and renders with its type.
  assert.ok(c.increment(1));
  assert.is(family(r.renderPrometheus(), 'conflict').type, 'COUNTER');
});

test('counter refuses a negative or zero increment without changing its value', () => {
  const r = new MetricsRegistry();
  const c = r.define(MetricType.Counter, 'c_total')!;
  assert.ok(c.increment(5));
  assert.is(c.increment(-1), false);
  assert.is(c.increment(0), false);
  assert.is(c.increment(NaN), false);
  assert.is(c.increment(Infinity), false);
  assert.is(c.get(), 5);
  // record adds, as Envoy does; a negative record is refused.
  assert.ok(c.record(10));
  assert.is(c.record(-3), false);
  assert.is(c.get(), 15);
  assert.is(family(r.renderPrometheus(), 'c_total').metrics[0]?.value, '15');

  const g = r.define(MetricType.Gauge, 'g')!;
  assert.ok(g.record(10));
  assert.ok(g.increment(-15));
  assert.is(g.get(), -5);
  assert.is(g.record(NaN), false);
  assert.is(g.increment(NaN), false);
  assert.is(g.get(), -5);
  assert.is(family(r.renderPrometheus(), 'g').metrics[0]?.value, '-5');

  const h = r.define(MetricType.Histogram, 'h')!;
  assert.is(h.increment(1), false);
  assert.is(h.get(), undefined);
  assert.is(h.record(NaN), false);
});

test('histogram buckets are cumulative and +Inf equals the count', () => {
  const r = new MetricsRegistry();
  const h = r.define(MetricType.Histogram, 'my_filter.latency_ms')!;
  const values = [0.3, 1, 7, 7, 120, 1e7];
  for (const v of values) assert.ok(h.record(v));

  const text = r.renderPrometheus();
  const f = family(text, 'my_filter_latency_ms');
  assert.is(f.type, 'HISTOGRAM');
  const sample = f.metrics[0]!;
  const buckets = sample.buckets!;
  assert.is(Object.keys(buckets).length, DEFAULT_HISTOGRAM_BUCKETS.length + 1);
  for (const bound of DEFAULT_HISTOGRAM_BUCKETS) {
    assert.is(buckets[formatNumber(bound)], String(values.filter((v) => v <= bound).length), `le=${bound}`);
  }
  assert.is(buckets['+Inf'], String(values.length));
  assert.is(sample.count, String(values.length));
  assert.is(Number(sample.sum), values.reduce((a, b) => a + b, 0));
  // Bucket lines are in increasing order and never decrease.
  const counts = [...text.matchAll(/^my_filter_latency_ms_bucket\{le="([^"]+)"\} (\d+)$/gm)].map((m) => Number(m[2]));
  assert.is(counts.length, DEFAULT_HISTOGRAM_BUCKETS.length + 1);
  for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!);
});

test('labelled host histogram with custom buckets renders every series', () => {
  const r = new MetricsRegistry();
  const a = r.histogram('wasmesh_callout_duration_seconds', 'Callout latency', { plugin: 'a' }, [0.1, 1, 10]);
  const b = r.histogram('wasmesh_callout_duration_seconds', 'Callout latency', { plugin: 'b' });
  for (const v of [0.05, 0.5, 0.5, 20]) a.record(v);
  b.record(2);
  assert.throws(() => r.histogram('wasmesh_callout_duration_seconds', 'x', { plugin: 'c' }, [1, 2]), /buckets/);

  const text = r.renderPrometheus();
  assert.is(family(text, 'wasmesh_callout_duration_seconds').type, 'HISTOGRAM');
  const samples = parseSamples(text);
  const bucket = samples.find((f) => f.name === 'wasmesh_callout_duration_seconds_bucket')!;
  const expectA: Record<string, string> = { '0.1': '1', '1': '3', '10': '3', '+Inf': '4' };
  const expectB: Record<string, string> = { '0.1': '0', '1': '0', '10': '1', '+Inf': '1' };
  for (const [le, v] of Object.entries(expectA)) assert.is(sampleValue(bucket, { plugin: 'a', le }), v, `a le=${le}`);
  for (const [le, v] of Object.entries(expectB)) assert.is(sampleValue(bucket, { plugin: 'b', le }), v, `b le=${le}`);
  assert.is(bucket.metrics.length, 8);
  const sum = samples.find((f) => f.name === 'wasmesh_callout_duration_seconds_sum')!;
  const count = samples.find((f) => f.name === 'wasmesh_callout_duration_seconds_count')!;
  assert.is(Number(sampleValue(sum, { plugin: 'a' })), 21.05);
  assert.is(sampleValue(count, { plugin: 'a' }), '4');
  assert.is(sampleValue(sum, { plugin: 'b' }), '2');
  assert.is(sampleValue(count, { plugin: 'b' }), '1');

  // A module defining a series of the same family uses the family's buckets.
  const m = r.define(MetricType.Histogram, 'callout_duration_seconds');
  assert.ok(m);
  const snap = r.snapshot().find((s) => s.labels.plugin === 'a')!;
  assert.equal(snap, {
    name: 'wasmesh_callout_duration_seconds',
    type: 'histogram',
    labels: { plugin: 'a' },
    sum: 21.05,
    count: 4,
    buckets: [
      [0.1, 1],
      [1, 3],
      [10, 3],
    ],
  });
});

test('two defines of the same series share one value', () => {
  const r1 = new MetricsRegistry();
  const a = r1.define(MetricType.Counter, 'shared.requests{method="GET",code="200"}')!;
  const b = r1.define(MetricType.Counter, 'shared.requests{method="GET",code="200"}')!;
  const c = r1.define(MetricType.Counter, 'shared_requests{ code="200", method="GET" }')!; // same series, other spelling
  assert.ok(a === b && b === c);
  a.increment(2);
  b.increment(3);
  c.record(1);
  assert.is(a.get(), 6);
  const f = family(r1.renderPrometheus(), 'shared_requests');
  assert.equal(f.metrics, [{ value: '6', labels: { code: '200', method: 'GET' } }]);
  // An empty label value is the same as no label (as Prometheus sees it).
  assert.ok(r1.define(MetricType.Gauge, 'e{a=""}') === r1.define(MetricType.Gauge, 'e'));
  // Host and module reach the same series.
  assert.ok(r1.counter('shared_requests', 'Requests', { method: 'GET', code: '200' }) === a);
});

test('numbers are formatted as Prometheus expects', () => {
  assert.is(formatNumber(1800000), '1800000');
  assert.is(formatNumber(1e21), '1000000000000000000000');
  assert.is(formatNumber(2 ** 64), '18446744073709551616');
  assert.is(formatNumber(0.5), '0.5');
  assert.is(formatNumber(-0), '0');
  assert.is(formatNumber(Infinity), '+Inf');
  assert.is(formatNumber(-Infinity), '-Inf');
  const r = new MetricsRegistry();
  r.define(MetricType.Gauge, 'big')!.record(1e21);
  r.define(MetricType.Gauge, 'nan')!.record(NaN); // refused: stays 0
  const text = r.renderPrometheus();
  assert.ok(text.includes('\nbig 1000000000000000000000\n'));
  assert.not.ok(/NaN/.test(text));
  assert.is(family(text, 'big').metrics[0]?.value, '1000000000000000000000');
});

test('module series are bounded', () => {
  const r = new MetricsRegistry({ maxModuleSeries: 2 });
  const a = r.define(MetricType.Counter, 'n{i="1"}');
  assert.ok(a);
  assert.ok(r.define(MetricType.Counter, 'n{i="2"}'));
  assert.is(r.define(MetricType.Counter, 'n{i="3"}'), undefined);
  assert.is(r.define(MetricType.Counter, 'n{i="1"}'), a, 'existing series are still found');
  assert.ok(r.counter('wasmesh_x_total', 'host metrics are not bounded'));
});

test('snapshot lists every series as JSON-friendly objects', () => {
  const r = new MetricsRegistry();
  r.define(MetricType.Counter, 'b{x="1"}')!.increment(2);
  r.define(MetricType.Gauge, 'a')!.record(3);
  const snap = r.snapshot();
  assert.equal(snap, [
    { name: 'a', type: 'gauge', labels: {}, value: 3 },
    { name: 'b', type: 'counter', labels: { x: '1' }, value: 2 },
  ]);
  assert.equal(JSON.parse(JSON.stringify(snap)), snap);
});

test.run();
