// Unit tests of template-reject in the harness: the module runs in the runtime the proxy uses, with
// the requests, responses and configuration each test gives. Build the filter first; then run
//   wasmesh filter test .            (from this folder: builds if needed, then runs these tests)
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness } from 'wasmesh/wasm';

const WASM = fileURLToPath(new URL('../build/template-reject.wasm', import.meta.url));
const CONFIG = { header: 'x-api-key', keys: ['let-me-in'] };

function get(headers: Record<string, string> = {}) {
  return {
    request: { headers: { ':method': 'GET', ':path': '/orders', ':authority': 'web', ...headers } },
    response: { headers: { ':status': '200' }, body: 'from the app' },
  };
}

/** The value of the rejection counter (0 before the first one). */
function rejected(h: FilterHarness): number {
  return h.metricsSnapshot().find((m) => m.name === 'template_reject_rejected_total')?.value ?? 0;
}

test('without the key: 401 with a text body, the app never sees the request, the rejection is counted', async () => {
  const h = await FilterHarness.load(WASM, { configuration: CONFIG });
  try {
    const r = await h.run(get());
    assert.is(r.request, undefined, 'the app saw nothing');
    assert.is(r.response?.headers[':status'], '401');
    assert.is(r.response?.headers['content-type'], 'text/plain');
    assert.is(r.response?.body, 'missing or unknown x-api-key\n');
    assert.equal(r.actions[0], { callback: 'on_request_headers', action: 'Pause', value: 1 });
    assert.is(rejected(h), 1);
    assert.ok(r.logs.some((l) => l.message === 'template-reject: rejected /orders: no x-api-key'), JSON.stringify(r.logs));
  } finally {
    await h.close();
  }
});

test('with a known key: the request and the answer pass untouched, nothing is counted', async () => {
  const h = await FilterHarness.load(WASM, { configuration: CONFIG });
  try {
    const r = await h.run(get({ 'x-api-key': 'let-me-in' }));
    assert.is(r.request?.headers['x-api-key'], 'let-me-in');
    assert.is(r.response?.headers[':status'], '200');
    assert.is(r.response?.body, 'from the app');
    assert.is(rejected(h), 0);
  } finally {
    await h.close();
  }
});

test('an unknown key is rejected too; a gRPC client gets UNAUTHENTICATED', async () => {
  const h = await FilterHarness.load(WASM, { configuration: CONFIG });
  try {
    assert.is((await h.run(get({ 'x-api-key': 'guess' }))).response?.headers[':status'], '401');
    const grpc = await h.run(get({ 'content-type': 'application/grpc', 'x-api-key': 'guess' }));
    assert.is(grpc.response?.headers['grpc-status'], '16');
    assert.is(grpc.response?.headers['grpc-message'], 'missing or unknown x-api-key%0A');
    assert.is(rejected(h), 2);
  } finally {
    await h.close();
  }
});

test('without keys configured any non-empty key passes', async () => {
  const h = await FilterHarness.load(WASM, { configuration: {} });
  try {
    assert.is((await h.run(get({ 'x-api-key': 'anything' }))).response?.headers[':status'], '200');
    assert.is((await h.run(get())).response?.headers[':status'], '401');
  } finally {
    await h.close();
  }
});

test('a bad configuration is refused with the field that is wrong', async () => {
  try {
    await FilterHarness.load(WASM, { configuration: { keys: ['ok', 7] } });
  } catch (err) {
    assert.match((err as Error).message, /keys\[1\]: must be a string/);
    return;
  }
  assert.unreachable('the configuration was accepted');
});

test.run();
