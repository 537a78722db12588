// Filters in a running proxy: the example AssemblyScript filter changes what the upstream and the
// client see; a filter pauses a request until its HTTP callout to a named cluster answers; a filter's
// local response never reaches the upstream; a trapping filter answers 503 and is replaced.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import type { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { startProxy } from './support/proxy.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';

const ADD_HEADER = 'filters/examples/add-header/build/add-header.wasm';

// Pauses every request, asks the "authz" cluster, and resumes (allowed) or answers 403 (denied),
// depending on the callout's status. Pure WebAssembly text so the test does not depend on an SDK.
const calloutWat = guestModule({
  imports: `
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_ctx (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))`,
  body: `
  ;; serialized headers: :method GET, :path /check, :authority authz
  (data (i32.const 256) "\\03\\00\\00\\00\\07\\00\\00\\00\\03\\00\\00\\00\\05\\00\\00\\00\\06\\00\\00\\00\\0a\\00\\00\\00\\05\\00\\00\\00:method\\00GET\\00:path\\00/check\\00:authority\\00authz\\00")
  (data (i32.const 512) "authz")
  (data (i32.const 528) ":status")
  (data (i32.const 544) "denied by authz")
  (global $pending (mut i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (drop (call $http_call (i32.const 512) (i32.const 5) (i32.const 256) (i32.const 70) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1024)))
    (global.set $pending (local.get $ctx))
    i32.const 1)
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $set_ctx (global.get $pending)))
    (drop (call $get (i32.const 6) (i32.const 528) (i32.const 7) (i32.const 1032) (i32.const 1036)))
    ;; status "200" starts with '2'
    (if (i32.eq (i32.load8_u (i32.load (i32.const 1032))) (i32.const 50))
      (then (drop (call $continue (i32.const 0))))
      (else (drop (call $reply (i32.const 403) (i32.const 0) (i32.const 0) (i32.const 544) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1))))))
  (func (export "proxy_on_delete") (param i32))`,
});

const trapWat = guestModule({
  body: `
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)`,
});

let app: TestServer;
let authz: TestServer;
let allow = true;
let dir: string;
let proxy: Proxy;

test.before(async () => {
  app = await startHttp1('app');
  authz = await startHttp1('authz', (_req, res) => {
    res.writeHead(allow ? 200 : 403);
    res.end();
  });
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-filters-'));
  writeFileSync(join(dir, 'callout.wasm'), await wat2wasm(calloutWat));
  writeFileSync(join(dir, 'trap.wasm'), await wat2wasm(trapWat));
  const outboundFilters = [];
  if (existsSync(ADD_HEADER)) {
    outboundFilters.push(filterBinding('add-header', ADD_HEADER, { rootId: 'add_header', pluginConfig: { request: { 'x-wasmesh-example': 'hello' }, response: { 'x-powered-by': 'wasmesh' } } }));
  }
  proxy = await startProxy(
    proxyConfig({
      clusters: [cluster('outbound|80||app', [{ port: app.port }]), cluster('authz', [{ port: authz.port }]), cluster('inbound-trap', [{ port: app.port }])],
      virtualHosts: [{ name: 'app', domains: ['app'], routes: [forward('app', 'outbound|80||app')] }],
      outboundFilters,
      inboundFilters: [filterBinding('callout', join(dir, 'callout.wasm'))],
    }),
    app.port,
  );
});

test.after(async () => {
  await proxy.stop(100);
  await Promise.all([app.close(), authz.close()]);
  rmSync(dir, { recursive: true, force: true });
});

test('the example filter adds its headers on the way up and on the way back', async () => {
  if (!existsSync(ADD_HEADER)) throw new Error(`${ADD_HEADER} is not built: npm test builds it first (pretest)`);
  const r = await request(proxy.outboundPort, { headers: { host: 'app' } });
  assert.is(r.status, 200);
  assert.is(JSON.parse(r.body).headers['x-wasmesh-example'], 'hello');
  assert.is(r.headers['x-powered-by'], 'wasmesh');
  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.match(stats.body, /add_header_requests_total \d+/);
});

test('a filter pauses a request until its callout to a named cluster answers, then resumes it', async () => {
  allow = true;
  const before = app.received.length;
  const r = await request(proxy.inboundPort, { method: 'POST', path: '/orders', headers: { host: 'test', 'content-type': 'text/plain' }, body: 'held body' });
  assert.is(r.status, 200);
  const seen = JSON.parse(r.body);
  assert.is(seen.url, '/orders');
  assert.is(seen.body, 'held body', 'the body that arrived while paused was delivered after the resume');
  assert.is(app.received.length, before + 1);
  assert.is(authz.received.at(-1)?.url, '/check');
});

test("a filter's local response answers the client and the upstream never sees the request", async () => {
  allow = false;
  const before = app.received.length;
  const r = await request(proxy.inboundPort, { path: '/secret', headers: { host: 'test' } });
  assert.is(r.status, 403);
  assert.is(r.body, 'denied by authz');
  assert.is(app.received.length, before);
  allow = true;
});

test('a trapping filter answers 503 (FAIL_CLOSE), is counted, and a bad new config keeps the last good one', async () => {
  const good = proxy.config;
  const trapConfig = proxyConfig({
    clusters: Object.values(good.clusters),
    virtualHosts: [...good.virtualHosts],
    outboundFilters: [filterBinding('trap', join(dir, 'trap.wasm'))],
  });
  await proxy.applyConfig(trapConfig);
  const r = await request(proxy.outboundPort, { headers: { host: 'app' } });
  assert.is(r.status, 503);
  const stats = await request(proxy.adminPort, { path: '/stats/prometheus' });
  assert.match(stats.body, /wasmesh_wasm_vm_traps_total\{cause="unreachable",plugin="default\.trap"\} [1-9]/);
  // A config whose module does not exist is rejected whole; the running one stays.
  const broken = proxyConfig({ clusters: Object.values(good.clusters), virtualHosts: [...good.virtualHosts], outboundFilters: [filterBinding('missing', join(dir, 'nope.wasm'))] });
  let error: Error | undefined;
  await proxy.applyConfig(broken).catch((e: Error) => (error = e));
  assert.ok(error, 'the broken config was rejected');
  assert.match(error!.message, 'default/missing');
  assert.is(proxy.config.version, trapConfig.version);
  assert.is(proxy.configStatus.lastError?.version, broken.version);
  await proxy.applyConfig(good);
  const ok = await request(proxy.outboundPort, { headers: { host: 'app' } });
  assert.is(ok.status, 200);
});

test.run();
