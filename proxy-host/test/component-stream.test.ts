// One component plugin's streams, driven directly (no sockets): what the host does when the instance
// dies under a stream that holds its request, and when the filter's output is not valid HTTP or is
// too large. The component is JS_EVERYTHING (wasm/test/support/component.ts), built once and cached.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { HeaderList, HttpStreamSink, LocalResponse } from '../../wasm/src/host.ts';
import { MetricsRegistry } from '../../wasm/src/metrics/registry.ts';
import { compileComponent, type CompiledComponent } from '../src/component-filter/component-filter.ts';
import { ComponentPlugin } from '../src/component-filter/component-plugin.ts';
import { TranspileCache } from '../src/component-filter/transpile-cache.ts';
import { jsEverythingComponent } from '../../wasm/test/support/component.ts';

let compiled: CompiledComponent;

test.before(async () => {
  const { bytes } = await jsEverythingComponent();
  compiled = await compileComponent(bytes, { name: 'everything', cache: new TranspileCache(join(tmpdir(), 'wasmesh-test-components', 'jco')) });
});

class Sink implements HttpStreamSink {
  request: { headers?: HeaderList; body: string; ended: boolean } = { body: '', ended: false };
  local: LocalResponse | undefined;
  resetReason: string | undefined;
  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.request.headers = headers;
    this.request.ended = endOfStream;
  }
  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.request.body += Buffer.from(data).toString();
    this.request.ended ||= endOfStream;
  }
  requestTrailers(): void {
    this.request.ended = true;
  }
  responseHeaders(): void {}
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(r: LocalResponse): void {
    this.local = r;
  }
  reset(reason: string): void {
    this.resetReason = reason;
  }
}

const get = (list: HeaderList | undefined, name: string) => {
  const i = list?.indexOf(name) ?? -1;
  return i >= 0 && i % 2 === 0 ? list![i + 1] : undefined;
};

async function load(extra: { failStrategy?: 'FAIL_OPEN' | 'FAIL_CLOSE'; configuration?: object } = {}) {
  const metrics = new MetricsRegistry();
  const plugin = await ComponentPlugin.load(compiled, { name: 'js', configuration: extra.configuration ?? {}, failStrategy: extra.failStrategy }, { metrics, log: () => {} });
  return { plugin, metrics };
}

test('FAIL_OPEN: a stream holding its request when another stream kills the instance passes through whole, untouched', async () => {
  const { plugin } = await load({ failStrategy: 'FAIL_OPEN' });
  const held = new Sink();
  const a = plugin.createHttpStream(held);
  a.requestHeaders([':method', 'POST', ':path', '/', 'x-component', 'hold'], false);
  assert.is(held.request.headers, undefined, 'held by the filter');
  a.requestData(Buffer.from('first '), false);
  const other = new Sink();
  const b = plugin.createHttpStream(other);
  b.requestHeaders([':path', '/', 'x-component', 'throw'], true);
  assert.is(plugin.trapCount, 1);
  assert.ok(other.request.headers, 'the stream that trapped went on without the filter');
  a.requestData(Buffer.from('second'), true);
  assert.is(get(held.request.headers, 'x-body-length'), undefined, 'no change from the dead filter');
  assert.is(held.request.body, 'first second', 'what was held and what came after, in order');
  assert.is(held.request.ended, true);
  a.finish();
  b.finish();
  await plugin.replaced();
  assert.is(plugin.state, 'running', 'a new instance');
  await plugin.stop();
});

test('FAIL_CLOSE: the held stream gets 503 when its body arrives after the instance died', async () => {
  const { plugin } = await load();
  const held = new Sink();
  const a = plugin.createHttpStream(held);
  a.requestHeaders([':method', 'POST', ':path', '/', 'x-component', 'hold'], false);
  const b = plugin.createHttpStream(new Sink());
  b.requestHeaders([':path', '/', 'x-component', 'throw'], true);
  a.requestData(Buffer.from('late'), true);
  assert.is(held.local?.status, 503);
  assert.is(held.local?.details, 'wasm_fail_stream');
  assert.is(held.request.headers, undefined, 'nothing went upstream');
  a.finish();
  b.finish();
  await plugin.stop();
});

test('a header value with CR LF from the filter fails the stream with 500, never reaching the upstream', async () => {
  const { plugin, metrics } = await load({ configuration: { request: { 'x-bad': 'a\r\nx-injected: 1' } } });
  const sink = new Sink();
  const s = plugin.createHttpStream(sink);
  s.requestHeaders([':path', '/'], true);
  assert.is(sink.local?.status, 500);
  assert.is(sink.local?.details, 'wasm_invalid_output[js][request_headers]');
  assert.is(sink.request.headers, undefined);
  assert.match(metrics.renderPrometheus(), /wasmesh_wasm_invalid_output_total\{plugin="js",what="request_headers"\} 1/);
  s.finish();
  await plugin.stop();
});

test('headers past the output limit fail the stream with 500 wasm_output_too_large, as for proxy-wasm', async () => {
  const { plugin } = await load({ configuration: { request: { 'x-big': 'x'.repeat(70_000) } } });
  const sink = new Sink();
  const s = plugin.createHttpStream(sink);
  s.requestHeaders([':path', '/'], true);
  assert.is(sink.local?.status, 500);
  assert.is(sink.local?.details, 'wasm_output_too_large[js][request_headers]');
  s.finish();
  await plugin.stop();
});

test.run();
