// Unit tests of template-callout in the harness: the authorization service's answers are canned
// (calloutResponses, by cluster). Build the filter first; then run
//   wasmesh filter test .            (from this folder: builds if needed, then runs these tests)
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FilterHarness, type CalloutAnswer } from 'wasmesh/wasm';

const WASM = fileURLToPath(new URL('../build/template-callout.wasm', import.meta.url));
const CLUSTER = 'outbound|8080||authz.local';

function load(answer?: CalloutAnswer): Promise<FilterHarness> {
  return FilterHarness.load(WASM, { configuration: { cluster: CLUSTER }, calloutResponses: answer ? { [CLUSTER]: answer } : {} });
}

const request = {
  request: { headers: { ':method': 'GET', ':path': '/orders', ':authority': 'web', 'x-user': 'alice' } },
  response: { headers: { ':status': '200' }, body: 'orders' },
};

test('the service says 200: the request goes on with x-user-id; the service was asked with x-user', async () => {
  const h = await load({ status: 200, headers: { 'x-user-id': '42' } });
  try {
    const r = await h.run(request);
    assert.is(r.request?.headers['x-user-id'], '42');
    assert.is(r.response?.body, 'orders');
    assert.is(r.callouts.length, 1);
    assert.is(r.callouts[0].headers[':path'], '/check');
    assert.is(r.callouts[0].headers['x-user'], 'alice');
    assert.is(r.callouts[0].timeoutMs, 1000);
    assert.equal(r.actions[0], { callback: 'on_request_headers', action: 'Pause', value: 1 }, 'held while the service answers');
  } finally {
    await h.close();
  }
});

test('the service says no: 403 with its answer, the app never sees the request', async () => {
  const h = await load({ status: 403, body: 'unknown user\n' });
  try {
    const r = await h.run(request);
    assert.is(r.request, undefined);
    assert.is(r.response?.headers[':status'], '403');
    assert.is(r.response?.body, 'unknown user\n');
  } finally {
    await h.close();
  }
});

test('no answer (the call failed) or no such cluster: 503', async () => {
  const failed = await load({ fail: true });
  const unknown = await load();
  try {
    assert.is((await failed.run(request)).response?.headers[':status'], '503');
    const r = await unknown.run(request);
    assert.is(r.response?.headers[':status'], '503');
    assert.ok(r.logs.some((l) => l.level === 'error' && l.message.includes('cannot call outbound|8080||authz.local')), JSON.stringify(r.logs));
  } finally {
    await failed.close();
    await unknown.close();
  }
});

test('the cluster is required', async () => {
  let error = '';
  await FilterHarness.load(WASM, { configuration: {} }).catch((err: Error) => (error = err.message));
  assert.match(error, /cluster: is required/);
});

test.run();
