// Unit tests of template-ts-headers in the component harness (the proxy's own component host, no
// network). Build the filter first; then run
//   wasmesh filter test .            (from this folder: builds if needed, then runs these tests)
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ComponentHarness } from 'wasmesh/component';

const WASM = fileURLToPath(new URL('../build/template-ts-headers.wasm', import.meta.url));
const CONFIG = {
  request: { 'x-hello': 'world' },
  response: { 'x-served-by': 'wasmesh' },
  removeResponse: ['server'],
  replaceInResponseBody: { from: 'hello', to: 'HELLO' },
};

const exchange = (body: string | string[]) => ({
  request: { headers: { ':method': 'GET', ':path': '/', ':authority': 'web', 'x-hello': 'client' } },
  response: { headers: { ':status': '200', server: 'app/1.0', 'content-length': String(([] as string[]).concat(body).join('').length) }, body: ([] as string[]).concat(body).join('') },
});

test('request and response headers are set and removed as configured', async () => {
  const h = await ComponentHarness.load(WASM, { configuration: CONFIG });
  try {
    const r = await h.run(exchange('nothing to replace'));
    assert.is(r.request?.headers['x-hello'], 'world', 'replaced, not added');
    assert.is(r.response?.headers['x-served-by'], 'wasmesh');
    assert.is(r.response?.headers.server, undefined);
    assert.is(r.response?.body, 'nothing to replace');
  } finally {
    await h.close();
  }
});

test('text in the response body is replaced; the old content-length goes', async () => {
  const h = await ComponentHarness.load(WASM, { configuration: CONFIG });
  try {
    const r = await h.run(exchange('say hello, hello'));
    assert.is(r.response?.body, 'say HELLO, HELLO');
    assert.is(r.response?.headers['content-length'], undefined);
    assert.equal(r.actions.map((a) => `${a.callback}:${a.action}`), ['on_request_headers:Continue', 'on_response_headers:Continue', 'on_response_body:Continue']);
  } finally {
    await h.close();
  }
});

test('an empty configuration changes nothing; a bad one is refused with the field', async () => {
  const h = await ComponentHarness.load(WASM);
  try {
    const r = await h.run(exchange('hello'));
    assert.is(r.response?.body, 'hello');
    assert.is(r.response?.headers.server, 'app/1.0');
  } finally {
    await h.close();
  }
  let error = '';
  await ComponentHarness.load(WASM, { configuration: { response: { 'x-a': 1 } } }).catch((err: Error) => (error = err.message));
  assert.match(error, /response\["x-a"\]: must be a string/);
});

test.run();
