// Unit tests of template-metric in the harness. Build the filter first; then run
//   wasmesh filter test .            (from this folder: builds if needed, then runs these tests)
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness } from 'wasmesh/wasm';

const WASM = fileURLToPath(new URL('../build/template-metric.wasm', import.meta.url));

function answered(status: number) {
  return { request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'web' } }, response: { headers: { ':status': String(status) } } };
}

/** Every series of the counter, as code -> value. */
function counts(h: FilterHarness): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of h.metricsSnapshot()) if (m.name === 'template_metric_responses_total') out[m.labels.code] = m.value ?? 0;
  return out;
}

test('responses are counted by status class, one labeled series per class', async () => {
  const h = await FilterHarness.load(WASM);
  try {
    for (const status of [200, 204, 404, 503, 200]) await h.run(answered(status));
    assert.equal(counts(h), { '2xx': 3, '4xx': 1, '5xx': 1 });
  } finally {
    await h.close();
  }
});

test('each tick logs what the last period saw, then starts a new period (ticks stepped by the test)', async () => {
  // manualTicks: on_tick runs only when the test calls tick(), so nothing depends on the clock.
  const h = await FilterHarness.load(WASM, { configuration: { summarySeconds: 10 }, manualTicks: true });
  try {
    await h.run(answered(200));
    await h.run(answered(500));
    const first = await h.tick();
    assert.equal(first.logs.map((l) => l.message), ['template-metric: 2 response(s) in the last 10 s (2xx: 1, 5xx: 1)']);
    const quiet = await h.tick(2);
    assert.equal(quiet.logs.map((l) => l.message), ['template-metric: 0 response(s) in the last 10 s', 'template-metric: 0 response(s) in the last 10 s']);
    assert.equal(counts(h), { '2xx': 1, '5xx': 1 }, 'the counters keep counting across periods');
  } finally {
    await h.close();
  }
});

test('summarySeconds 0 sets no timer; a bad value is refused with the field', async () => {
  const h = await FilterHarness.load(WASM, { configuration: { summarySeconds: 0 }, manualTicks: true });
  try {
    let refused = '';
    await h.tick().catch((err: Error) => (refused = err.message));
    assert.match(refused, /set no tick period/);
  } finally {
    await h.close();
  }
  let error = '';
  await FilterHarness.load(WASM, { configuration: { summarySeconds: -1 } }).catch((err: Error) => (error = err.message));
  assert.match(error, /summarySeconds: must be an integer from 0 to 86400/);
});

test.run();
