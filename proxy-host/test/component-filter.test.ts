// A component filter in the proxy's process: add-header written in JavaScript against the filter
// world, built by componentize-js in the test (cached under the OS temp dir), transpiled by jco
// once per digest (kept on disk beside the built components), metered, called for the headers
// phases; components that are not filters or import anything are refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyFieldChanges, ComponentFilter, ComponentFilterError, DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES, transpileComponent, type Fields } from '../src/component-filter/component-filter.ts';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TranspileCache } from '../src/component-filter/transpile-cache.ts';
import { buildComponent, jsAddHeaderComponent, JS_ADD_HEADER } from '../../wasm/test/support/component.ts';

const enc = new TextEncoder();
const dec = new TextDecoder();
const fields = (...pairs: Array<[string, string]>): Fields => pairs.map(([n, v]) => [n, enc.encode(v)]);
const text = (f: Fields): Array<[string, string]> => f.map(([n, v]) => [n, dec.decode(v)]);
const CONFIG = enc.encode(JSON.stringify({ request: { 'x-wasmesh-example': 'hello' }, response: { 'x-powered-by': 'wasmesh' } }));
const ctx = (id: bigint) => ({ streamId: id, properties: [], shared: [] });
// jco's transpiles kept beside the built components: reruns skip the seconds each takes.
const cache = new TranspileCache(join(tmpdir(), 'wasmesh-test-components', 'jco'));

let bytes: Uint8Array = new Uint8Array();
test.before(async () => {
  bytes = (await jsAddHeaderComponent()).bytes;
});

test('the JavaScript add-header component sets its headers and counts requests, one call per phase', async () => {
  const f = await ComponentFilter.load(bytes, CONFIG, 'add-header.js', { cache });
  assert.equal(f.needs.phases, ['request-headers', 'response-headers']);
  assert.equal(f.needs.metrics, [{ name: 'add_header_requests_total', kind: 'counter' }]);
  const request = fields([':method', 'GET'], [':path', '/'], ['x-wasmesh-example', 'old'], ['accept', '*/*']);
  const r = f.onRequestHeaders(ctx(1n), request, true);
  assert.equal(r.action, { tag: 'continue' });
  assert.equal(text(applyFieldChanges(request, r.headers)), [[':method', 'GET'], [':path', '/'], ['accept', '*/*'], ['x-wasmesh-example', 'hello']]);
  assert.equal(r.effects.metrics, [{ name: 'add_header_requests_total', op: 'add', value: 1n }]);
  const response = fields([':status', '200']);
  const s = f.onResponseHeaders(ctx(1n), response, true);
  assert.equal(text(applyFieldChanges(response, s.headers)), [[':status', '200'], ['x-powered-by', 'wasmesh']]);
  assert.equal(f.onStreamDone(1n), { logs: [], metrics: [], sharedWrites: [] });
});

test('the transpile is done once per digest; each load is a new instance', async () => {
  const a = transpileComponent(bytes);
  assert.is(transpileComponent(bytes), a, 'the same promise');
  const one = await ComponentFilter.load(bytes, CONFIG, 'add-header.js', { cache });
  const two = await ComponentFilter.load(bytes, enc.encode('{"request":{"x-other":"1"}}'), 'add-header.js', { cache });
  const req = fields([':path', '/']);
  assert.equal(text(applyFieldChanges(req, one.onRequestHeaders(ctx(2n), req, true).headers)).at(-1), ['x-wasmesh-example', 'hello']);
  assert.equal(text(applyFieldChanges(req, two.onRequestHeaders(ctx(3n), req, true).headers)).at(-1), ['x-other', '1'], 'instances keep their own configuration');
});

test('a configuration the filter refuses is an error carrying its message', async () => {
  try {
    await ComponentFilter.load(bytes, enc.encode('not json'), 'add-header.js', { cache });
    assert.unreachable('configure accepted bad JSON');
  } catch (err) {
    assert.instance(err, ComponentFilterError);
    assert.is((err as ComponentFilterError).code, 'WASMESH_PROXY_COMPONENT_CONFIGURE');
    assert.match((err as Error).message, /^add-header\.js: configure refused the configuration: .*add-header: configuration is not JSON/);
  }
});

test('a component that is not a filter is refused, naming what it exports', async () => {
  const greeter = await buildComponent({
    source: 'export function greet(name) { return "hello " + name; }\n',
    wit: 'package test:greeter@1.0.0;\n\nworld greeter {\n  export greet: func(name: string) -> string;\n}\n',
    world: 'greeter',
  });
  try {
    await ComponentFilter.load(greeter.bytes, CONFIG, 'greeter', { cache });
    assert.unreachable('a greeter ran as a filter');
  } catch (err) {
    assert.instance(err, ComponentFilterError);
    assert.match((err as Error).message, /^greeter: the component exports greet, not wasmesh:filter\/handler@0\.1\.0/);
  }
});

test('a component that imports anything is refused, naming the imports: its calls would leave the metered wasm', async () => {
  // add-header built with the clocks feature left on: it imports WASI clocks (and what they need).
  const wit = await readFile(new URL('../../schemas/wit/filter.wit', import.meta.url), 'utf8');
  const clocks = await buildComponent({ source: JS_ADD_HEADER, wit, world: 'http-filter', features: ['clocks'] });
  try {
    await ComponentFilter.load(clocks.bytes, CONFIG, 'clocks.wasm', { cache });
    assert.unreachable('a component with imports loaded');
  } catch (err) {
    assert.instance(err, ComponentFilterError);
    assert.is((err as ComponentFilterError).code, 'WASMESH_PROXY_COMPONENT_IMPORT');
    assert.match((err as Error).message, /^clocks\.wasm: the component imports .*wasi:clocks\/.*; a filter component may import nothing/);
  }
});

test('a call past its CPU budget traps (cause cpu_budget); the instance is never entered again', async () => {
  const f = await ComponentFilter.load(bytes, CONFIG, 'add-header.js', { cache });
  f.budget = 1000;
  try {
    f.onRequestHeaders(ctx(9n), [], true);
    assert.unreachable('a call ran within 1000 units');
  } catch (err) {
    assert.match((err as Error).message, /trapped \(cpu_budget\)/);
  }
  assert.is(f.instance.failed?.cause, 'cpu_budget');
  f.budget = 1e12;
  assert.throws(() => f.onRequestHeaders(ctx(10n), [], true), /cpu_budget/, 'never entered again');
});

test('a JavaScript component keeps serving once its engine has to collect garbage: its memory levels off under the bound', async () => {
  // The engine inside collects only once its heap is near 70 MiB. Under a 64 MiB bound it aborted
  // instead (a `memory` trap every 14,000-20,000 add-header streams, ~960 with the 60 KB header
  // here); the component bound leaves room for the collection, after which the heap stays level.
  const f = await ComponentFilter.load(bytes, CONFIG, 'add-header.js', { cache });
  const MiB = 1024 * 1024;
  const start = f.instance.memoryBytes();
  const request = fields([':method', 'GET'], [':path', '/'], ['x-big', 'v'.repeat(60_000)]);
  const response = fields([':status', '200']);
  const started = Date.now();
  let streams = 0;
  let at1500 = 0;
  let peak = 0;
  // Bounded in count and in time (30 s); 1,500 streams pass the point where the engine first collects.
  while (streams < 3000 && Date.now() - started < 30_000) {
    const id = BigInt(++streams);
    const r = f.onRequestHeaders(ctx(id), request, true);
    assert.equal(text(r.headers.set), [['x-wasmesh-example', 'hello']]);
    f.onResponseHeaders(ctx(id), response, true);
    f.onStreamDone(id);
    peak = Math.max(peak, f.instance.memoryBytes());
    if (streams === 1500) at1500 = f.instance.memoryBytes();
  }
  const end = f.instance.memoryBytes();
  assert.ok(streams >= 2000, `only ${streams} streams in 30 s`);
  assert.is(f.instance.failed, undefined);
  assert.ok(peak > 64 * MiB, `the heap grew past the old 64 MiB bound (peak ${(peak / MiB).toFixed(1)} MiB, from ${(start / MiB).toFixed(1)})`);
  assert.ok(peak < DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES - 32 * MiB, `and stayed well under the bound (peak ${(peak / MiB).toFixed(1)} MiB)`);
  // Without collection each stream would add about 60 KB: 1,500 streams, about 88 MiB.
  assert.ok(end - at1500 < 12 * MiB, `level after the first collection: ${(at1500 / MiB).toFixed(1)} MiB at stream 1,500, ${(end / MiB).toFixed(1)} at ${streams}`);
});

test.run();
