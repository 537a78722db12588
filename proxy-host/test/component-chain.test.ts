// Component filters in a real proxy's filter chain, beside a proxy-wasm filter: every phase of the
// world (headers, bodies, trailers, local replies), its effects applied by the host (logs, metrics,
// shared data with CAS), properties, failStrategy on a throw and on the CPU budget, a new instance
// after a trap, and hot swaps between a component and a core module under traffic. The components
// are JavaScript built by componentize-js (cached under the OS temp dir by source hash, so only the
// first run builds them); one proxy serves every test, changing config between them.
import http from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FilterBinding, ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { request, startHttp1, type TestServer } from './support/servers.ts';
import { jsAddHeaderComponent, jsEverythingComponent } from '../../wasm/test/support/component.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';

let dir = '';
const files = { everything: '', addHeader: '', core: '' };
let upstream: TestServer;
let proxy: Proxy;
const logs: string[] = [];
let startMs = 0;
const CONFIG = { request: { 'x-js': 'yes' }, response: { 'x-powered-by': 'wasmesh-js' } };

function config(bindings: FilterBinding[]): ProxyConfig {
  return proxyConfig({
    virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
    clusters: [cluster('app', [{ port: upstream.port }])],
    outboundFilters: bindings,
  });
}

const everything = (extra: Partial<FilterBinding> = {}) => filterBinding('js', files.everything, { pluginConfig: CONFIG, ...extra });
const core = () => filterBinding('versioned', files.core);

function metric(name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of proxy.renderPrometheus().split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-component-chain-'));
  const [all, add] = await Promise.all([jsEverythingComponent(), jsAddHeaderComponent()]);
  files.everything = join(dir, 'everything.wasm');
  files.addHeader = join(dir, 'add-header.wasm');
  files.core = join(dir, 'core.wasm');
  await writeFile(files.everything, all.bytes);
  await writeFile(files.addHeader, add.bytes);
  await writeFile(files.core, await versionModule('core'));
  upstream = await startHttp1('app', (req, res, body) => {
    if (req.url === '/text') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('hello component');
    }
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-upstream-trailer' });
      res.write('with trailers');
      res.addTrailers({ 'x-upstream-trailer': 'yes' });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ headers: req.headers, body }));
  });
  // The proxy logs a filter's lines on stderr: keep them to find the component's own.
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    logs.push(String(chunk));
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  // jco's transpiles kept beside the built components: a rerun skips the seconds each takes.
  const componentCache = { dir: join(tmpdir(), 'wasmesh-test-components', 'jco') };
  const started = Date.now();
  proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', componentCache }, config([everything(), core()]));
  startMs = Date.now() - started;
});

test.after(async () => {
  await proxy?.stop(0);
  await upstream?.close();
  await rm(dir, { recursive: true, force: true });
});

const echo = (body: string) => JSON.parse(body) as { headers: Record<string, string>; body: string };

test('a component runs in the chain beside a proxy-wasm filter: header changes, properties, shared data, metrics, logs', async () => {
  const status = proxy.filters().outbound;
  assert.equal(status.map((f) => [f.plugin, f.stable.kind ?? 'core', f.stable.state]), [['default.js', 'component', 'running'], ['default.versioned', 'core', 'running']]);
  assert.is(status[0].stable.producers?.language?.startsWith('JavaScript'), true, 'the component says it is JavaScript');
  console.log(`proxy start with the component: ${startMs} ms`);
  const hitsBefore = metric('js_requests_total', {}) ?? 0;
  const first = await request(proxy.outboundPort, { path: '/some/path?q=1', headers: { 'x-remove-me': '1' } });
  assert.is(first.status, 200);
  const seen = echo(first.body).headers;
  assert.is(seen['x-js'], 'yes', 'configured request header set');
  assert.is(seen['x-seen-path'], '/some/path?q=1', 'request.path property passed to the call');
  assert.is(seen['x-plugin-name'], 'default.js', 'plugin_name property');
  assert.is(seen['x-remove-me'], undefined, 'header removed');
  assert.is(first.headers['x-powered-by'], 'wasmesh-js');
  assert.is(first.headers['x-filter-version'], 'core', 'the proxy-wasm filter after it ran too');
  const second = await request(proxy.outboundPort, { path: '/' });
  // Each request adds one to `hits` (a CAS write); the response phase reads it back.
  assert.is(Number(second.headers['x-hits']), Number(first.headers['x-hits']) + 1);
  assert.is(metric('js_requests_total', {}), hitsBefore + 2, 'counter declared in configure, updated from effects');
  assert.ok(logs.some((l) => l.includes('request /some/path?q=1')), 'the log line from the effects');
});

test('bodies: held request headers get the whole body and may still change; a response body is buffered and replaced', async () => {
  const held = await request(proxy.outboundPort, { method: 'POST', path: '/', headers: { 'x-component': 'hold', 'content-type': 'text/plain' }, body: 'make me loud' });
  assert.is(held.status, 200);
  const seen = echo(held.body);
  assert.is(seen.body, 'MAKE ME LOUD');
  assert.is(seen.headers['x-body-length'], '12', 'set on the held headers from the body phase');
  const shout = await request(proxy.outboundPort, { path: '/text', headers: { 'x-component': 'shout-response' } });
  assert.is(shout.body, 'HELLO COMPONENT');
  assert.ok((metric('js_body_bytes_count', {}) ?? 0) >= 1, 'histogram observed from a body call');
});

test('trailers: the response trailers phase adds one', async () => {
  const r = await request(proxy.outboundPort, { path: '/trailers' });
  assert.is(r.status, 200);
  assert.is(r.body, 'with trailers');
  assert.is(r.trailers['x-upstream-trailer'], 'yes');
  assert.is(r.trailers['x-filter-trailer'], '1');
});

test('local replies: from the request phase, from the response phase, and as gRPC', async () => {
  const before = upstream.received.length;
  const teapot = await request(proxy.outboundPort, { path: '/', headers: { 'x-component': 'reply' } });
  assert.is(teapot.status, 418);
  assert.is(teapot.body, 'short and stout');
  assert.is(teapot.headers['x-replied'], 'yes');
  assert.is(upstream.received.length, before, 'nothing went upstream');
  const late = await request(proxy.outboundPort, { path: '/', headers: { 'x-component': 'reply-on-response' } });
  assert.is(late.status, 502);
  assert.is(late.body, 'upstream said 200');
  const grpc = await request(proxy.outboundPort, { method: 'POST', path: '/pkg.Svc/Call', headers: { 'x-component': 'grpc-reply', 'content-type': 'application/grpc' }, body: '' });
  assert.is(grpc.status, 200);
  assert.is(grpc.headers['grpc-status'], '7');
  assert.is(grpc.headers['grpc-message'], 'denied by js');
});

async function waitRunning(name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const f = proxy.filters().outbound.find((x) => x.plugin === name);
    if (f?.stable.state === 'running') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${name} did not get a new instance within 10 s`);
}

test('a throw is a trap: FAIL_CLOSE answers 503, the trap is counted by cause, a new instance serves the next streams', async () => {
  const r = await request(proxy.outboundPort, { path: '/', headers: { 'x-component': 'throw' } });
  assert.is(r.status, 503);
  const status = proxy.filters().outbound[0].stable;
  assert.is(status.traps, 1);
  assert.ok((metric('wasmesh_wasm_vm_traps_total', { plugin: 'default.js' }) ?? 0) >= 1);
  await waitRunning('default.js');
  const after = await request(proxy.outboundPort, { path: '/' });
  assert.is(after.status, 200);
  assert.is(echo(after.body).headers['x-js'], 'yes', 'the new instance is configured');
  assert.is(metric('wasmesh_wasm_vm_restarts_total', { plugin: 'default.js' }), 1);
});

test('an endless loop is stopped by the CPU budget (cause cpu_budget), in bounded time', async () => {
  // 10 G units: an endless JavaScript loop is stopped within milliseconds; a normal call needs about 0.15 G.
  await proxy.applyConfig(config([everything({ cpuBudget: 10_000_000_000 }), core()]));
  const started = Date.now();
  const r = await request(proxy.outboundPort, { path: '/', headers: { 'x-component': 'spin' } });
  const ms = Date.now() - started;
  assert.is(r.status, 503);
  assert.ok(ms < 2000, `answered in ${ms} ms`);
  assert.is(metric('wasmesh_wasm_vm_traps_total', { plugin: 'default.js', cause: 'cpu_budget' }), 1);
  await waitRunning('default.js');
  assert.is((await request(proxy.outboundPort, { path: '/' })).status, 200, 'normal calls fit the budget');
});

test('FAIL_OPEN: a stream whose call trapped passes through without the filter', async () => {
  await proxy.applyConfig(config([everything({ failStrategy: 'FAIL_OPEN' }), core()]));
  const r = await request(proxy.outboundPort, { path: '/', headers: { 'x-component': 'throw' } });
  assert.is(r.status, 200);
  assert.is(echo(r.body).headers['x-js'], undefined, 'the component did not change it');
  assert.is(r.headers['x-filter-version'], 'core', 'the rest of the chain ran');
  await waitRunning('default.js');
});

test('a configuration the component refuses is refused whole, naming the WasmPlugin and its message; the running version stays', async () => {
  const before = proxy.config.version;
  try {
    await proxy.applyConfig(config([everything({ pluginConfig: 'not json' }), core()]));
    assert.unreachable('applied');
  } catch (err) {
    assert.match((err as Error).message, /WasmPlugin default\/js: .*configure refused the configuration: everything: configuration is not JSON/);
  }
  assert.is(proxy.config.version, before);
  assert.is((await request(proxy.outboundPort, { path: '/' })).status, 200);
});

test('a component canary beside a core module: streams split by request id, each version reported with its traps', async () => {
  await proxy.applyConfig(config([filterBinding('versioned', files.core, { pluginConfig: CONFIG, canary: { url: `file://${files.everything}`, path: files.everything, weight: 50 } })]));
  const served = { js: 0, core: 0 };
  for (let i = 0; i < 40; i++) {
    const r = await request(proxy.outboundPort, { path: '/', headers: { 'x-request-id': `req-${i}` } });
    assert.is(r.status, 200);
    if (r.headers['x-filter-version'] === 'core') served.core++;
    else if (echo(r.body).headers['x-js'] === 'yes') served.js++;
  }
  assert.ok(served.js > 5 && served.core > 5, `both versions served (${JSON.stringify(served)})`);
  assert.is(served.js + served.core, 40);
  // The same request id meets the same version every time.
  const again = await request(proxy.outboundPort, { path: '/', headers: { 'x-request-id': 'req-0' } });
  const first = await request(proxy.outboundPort, { path: '/', headers: { 'x-request-id': 'req-0' } });
  assert.is(again.headers['x-filter-version'], first.headers['x-filter-version']);
  // A trap in the canary (a request id that picks it, throwing) is reported against the canary version.
  let trapped = false;
  for (let i = 0; i < 40 && !trapped; i++) {
    const r = await request(proxy.outboundPort, { path: '/', headers: { 'x-request-id': `req-${i}`, 'x-component': 'throw' } });
    if (r.status === 503) trapped = true;
  }
  assert.ok(trapped, 'a stream on the canary trapped');
  const stats = proxy.canaryStats();
  const canary = stats.find((v) => v.canary);
  assert.ok(canary, JSON.stringify(stats));
  assert.is(canary!.traps, 1);
  assert.equal(canary!.traps_by_cause, { unreachable: 1 });
  assert.is(stats.find((v) => !v.canary)!.traps, 0);
});

test('hot swaps under traffic between a component, another component and a core module: no request fails', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const statuses: number[] = [];
  const errors: unknown[] = [];
  let running = true;
  const deadline = Date.now() + 60_000;
  const get = () =>
    new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.outboundPort, path: '/', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      req.end();
    });
  const clients = Array.from({ length: 4 }, async () => {
    while (running && Date.now() < deadline) {
      try {
        statuses.push(await get());
      } catch (err) {
        errors.push(err);
      }
    }
  });
  const versions = [
    [filterBinding('js', files.addHeader, { pluginConfig: CONFIG })],
    [core()],
    [everything(), core()],
  ];
  try {
    for (let i = 0; i < 9; i++) {
      await proxy.applyConfig(config(versions[i % versions.length]));
      const seen = statuses.length;
      while (statuses.length < seen + 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    running = false;
    await Promise.all(clients);
    agent.destroy();
  }
  assert.equal(errors, []);
  assert.ok(statuses.length >= 45, `${statuses.length} requests`);
  assert.ok(statuses.every((s) => s === 200), `every answer 200 (${[...new Set(statuses)].join(', ')})`);
  const last = await request(proxy.outboundPort, { path: '/' });
  assert.is(echo(last.body).headers['x-js'], 'yes');
});

test.run();
