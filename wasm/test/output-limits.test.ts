// Bounded output: headers, trailers, bodies and local replies a filter writes obey the limits the
// proxy's listeners apply to clients. Past them nothing oversized goes on: the stream gets a 500 whose
// details name the plugin (or a reset once the response started), the plugin is counted, and the VM
// lives on (this is the filter's output, not a trap).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness } from '../src/harness.ts';
import type { MetricsRegistry } from '../src/metrics/registry.ts';
import { Strings, c, envImports, out, pl, recordingCallbacks, recordingModule } from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

/** Builds `n` bytes of 'a' at HUGE (growing memory first) for the filter to write. */
const HUGE = 8 * 65536;

/**
 * x-huge: adds one header whose value is 32 MiB; x-many: adds 600 headers of 40 bytes each (24 KB in
 * all, each small); x-resp: adds a 20 KB response header; x-body: replaces the response body with
 * 2 MiB; x-reply: answers locally with a 2 MiB body; x-count counts requests (the VM lives on).
 */
function writer(): string {
  const s = new Strings();
  const names = Object.fromEntries(['x-huge', 'x-many', 'x-resp', 'x-body', 'x-reply', 'x-count', 'x-filler'].map((n) => [n, s.add(n)]));
  const has = (name: string) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(names[name])} ${c(out(0))} ${c(out(1))}))`;
  const digit = out(90);
  return recordingModule({
    imports: envImports('proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_set_buffer_bytes', 'proxy_send_local_response'),
    strings: s,
    body: `
  (global $count (mut i32) (i32.const 0))
  (global $bodyWanted (mut i32) (i32.const 0))
  (global $respWanted (mut i32) (i32.const 0))
  (func $fill (param $n i32)
    (if (i32.lt_u (i32.mul (memory.size) (i32.const 65536)) (i32.add ${c(HUGE)} (local.get $n)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $n) (i32.const 65536)) (i32.const 8))))))
    (memory.fill ${c(HUGE)} (i32.const 97) (local.get $n)))
  ${recordingCallbacks({
    proxy_on_request_headers: {
      locals: ['i'],
      body: `
    (if ${has('x-huge')} (then
      (call $fill (i32.const 33554432))
      (drop (call $proxy_add_header_map_value ${c(0)} ${pl(names['x-filler'])} ${c(HUGE)} (i32.const 33554432)))))
    (if ${has('x-many')} (then
      (call $fill (i32.const 40))
      (loop $l
        (drop (call $proxy_add_header_map_value ${c(0)} ${pl(names['x-filler'])} ${c(HUGE)} (i32.const 40)))
        (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 600))))))
    (if ${has('x-resp')} (then (global.set $respWanted (i32.const 1))))
    (if ${has('x-body')} (then (global.set $bodyWanted (i32.const 1))))
    (if ${has('x-reply')} (then
      (call $fill (i32.const 2097152))
      (drop (call $proxy_send_local_response (i32.const 200) ${c(0)} ${c(0)} ${c(HUGE)} (i32.const 2097152) ${c(0)} ${c(0)} (i32.const -1)))
      (return ${c(1)})))
    (global.set $count (i32.add (global.get $count) ${c(1)}))
    (i32.store8 ${c(digit)} (i32.add ${c(48)} (global.get $count)))
    (drop (call $proxy_add_header_map_value ${c(0)} ${pl(names['x-count'])} ${c(digit)} ${c(1)}))
    ${c(0)}`,
    },
    proxy_on_response_headers: `
    (if (global.get $respWanted) (then
      (call $fill (i32.const 20000))
      (drop (call $proxy_add_header_map_value ${c(2)} ${pl(names['x-filler'])} ${c(HUGE)} (i32.const 20000)))))
    ${c(0)}`,
    proxy_on_response_body: `
    (if (global.get $bodyWanted) (then
      (call $fill (i32.const 2097152))
      (drop (call $proxy_set_buffer_bytes ${c(1)} ${c(0)} (i32.const -1) ${c(HUGE)} (i32.const 2097152)))))
    ${c(0)}`,
  })}`,
  });
}

function limited(metrics: MetricsRegistry, plugin: string, what: string): number {
  return metrics.snapshot().find((m) => m.name === 'wasmesh_wasm_output_limit_total' && m.labels.plugin === plugin && m.labels.what === what)?.value ?? 0;
}

const request = (headers: Record<string, string> = {}) => ({
  request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'api', ...headers } },
  response: { headers: { ':status': '200' }, body: 'upstream body' },
});

async function harness(name: string): Promise<FilterHarness> {
  return FilterHarness.load(await wat2wasm(writer()), { name, timeoutMs: 2000, memoryLimitBytes: 64 * 1024 * 1024 });
}

for (const [header, what] of [
  ['x-huge', 'request_headers'],
  ['x-many', 'request_headers'],
  ['x-reply', 'local_reply'],
  ['x-resp', 'response_headers'],
] as const) {
  test(`${header}: nothing oversized goes on; the client gets a 500 naming the plugin; the VM lives on`, async () => {
    const h = await harness(`writer-${header}`);
    try {
      const r = await h.run(request({ [header]: '1' }));
      assert.is(r.localResponse?.status, 500);
      assert.is(r.localResponse?.details, `wasm_output_too_large[writer-${header}][${what}]`);
      assert.is(r.localResponse?.body, 'filter output too large\n');
      if (what !== 'response_headers') assert.is(r.request, undefined, 'the request never went upstream');
      const size = JSON.stringify(r).length;
      assert.ok(size < 100_000, `what came out is small (${size} bytes of result)`);
      assert.is(limited(h.metrics, `writer-${header}`, what), 1);
      assert.is(h.plugin.trapCount, 0, 'not a trap');
      // The counter goes on from where it was (a local reply returns before counting): the same VM.
      assert.is((await h.run(request())).request?.headers['x-count'], what === 'local_reply' ? '1' : '2', 'the same VM serves the next stream');
    } finally {
      await h.close();
    }
  });
}

test('a response body replaced past the buffer bound after the response started: the stream is reset, nothing oversized reaches the client', async () => {
  const h = await harness('writer-body');
  try {
    const r = await h.run(request({ 'x-body': '1' }));
    assert.is(r.reset, 'wasm_output_too_large[writer-body][response_body]');
    assert.ok((r.response?.body.length ?? 0) < 1000);
    assert.is(limited(h.metrics, 'writer-body', 'response_body'), 1);
    assert.is(h.plugin.trapCount, 0);
  } finally {
    await h.close();
  }
});

test('headers within the limits pass untouched', async () => {
  const h = await harness('writer-ok');
  try {
    const r = await h.run(request());
    assert.is(r.localResponse, undefined);
    assert.is(r.request?.headers['x-count'], '1');
    assert.is(r.response?.body, 'upstream body');
  } finally {
    await h.close();
  }
});

test.run();
