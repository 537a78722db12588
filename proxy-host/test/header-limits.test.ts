// One header limit for everyone: what a filter may write into a request's headers is the listener's own
// limit (--max-request-headers-kb), and what it may write into a response's is --max-response-headers-kb,
// which the proxy also applies to the app's and upstreams' responses. Past a limit a filter's stream gets
// 500 naming the plugin and what was too large; an app's response gets 502 (UPE).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { Proxy, type ProxyOptions } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { headerWriterWat } from './support/hostile-filter.ts';
import { startHttp1, type TestServer } from './support/servers.ts';

const KIB = 1024;
const FILLER = 10 * KIB;

let app: TestServer;
let dir: string;
/** Default limits (16 KiB both ways); 8 KiB both ways; 32 KiB for responses. */
const proxies: Record<'defaults' | 'tight' | 'roomy', Proxy> = {} as never;
let logFiles: Record<keyof typeof proxies, string>;

/** A request through a proxy's outbound listener; the client accepts big response heads (64 KiB). */
function get(port: number, headers: Record<string, string> = {}, path = '/'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host: 'app', ...headers }, agent: false, maxHeaderSize: 64 * KIB }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('test request timed out')));
    req.end();
  });
}

/** The access log line of the latest request to `path` (lines are written once per event-loop turn). */
async function logged(which: keyof typeof proxies, path: string): Promise<{ response_code: number; response_flags: string; response_code_details: string }> {
  const deadline = Date.now() + 2000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(logFiles[which], 'utf8');
    } catch {}
    const line = text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.path === path).pop();
    if (line) return line;
    if (Date.now() > deadline) throw new Error(`no access log line for ${path} in ${logFiles[which]}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test.before(async () => {
  // The app answers /big-head with a 20 KiB header block (Node's server writes any size).
  app = await startHttp1('app', (req, res) => {
    if (req.url === '/big-head') res.setHeader('x-app-filler', 'b'.repeat(20 * KIB));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-header-limits-'));
  const module = join(dir, 'writer.wasm');
  writeFileSync(module, await wat2wasm(headerWriterWat(FILLER, FILLER)));
  const config = proxyConfig({
    clusters: [cluster('outbound|80||app', [{ port: app.port }])],
    virtualHosts: [{ name: 'app', domains: ['app'], routes: [forward('app', 'outbound|80||app')] }],
    outboundFilters: [filterBinding('writer', module)],
  });
  logFiles = { defaults: join(dir, 'defaults.log'), tight: join(dir, 'tight.log'), roomy: join(dir, 'roomy.log') };
  const base = (which: keyof typeof proxies): ProxyOptions => ({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: logFiles[which] });
  proxies.defaults = await Proxy.start(base('defaults'), config);
  proxies.tight = await Proxy.start({ ...base('tight'), connections: { maxHeaderSize: 8 * KIB }, maxResponseHeaderBytes: 8 * KIB }, config);
  proxies.roomy = await Proxy.start({ ...base('roomy'), maxResponseHeaderBytes: 32 * KIB }, config);
});

test.after(async () => {
  await Promise.all(Object.values(proxies).map((p) => p.stop(100)));
  await app.close();
  rmSync(dir, { recursive: true, force: true });
});

function outputLimitCount(proxy: Proxy, what: string): number {
  return proxy.metrics.snapshot().find((m) => m.name === 'wasmesh_wasm_output_limit_total' && m.labels.plugin === 'default.writer' && m.labels.what === what)?.value ?? 0;
}

test("a filter's request header: 10 KiB passes the default 16 KiB limit; past the listener's 8 KiB the client gets 500 naming the plugin, and the app never sees it", async () => {
  const seen = app.received.length;
  const ok = await get(proxies.defaults.outboundPort, { 'x-write-request': '1' }, '/write-request');
  assert.is(ok.status, 200);
  assert.is(String(app.received.at(-1)!.headers['x-filler']).length, FILLER);

  const before = app.received.length;
  assert.ok(before > seen);
  const refused = await get(proxies.tight.outboundPort, { 'x-write-request': '1' }, '/write-request');
  assert.is(refused.status, 500);
  assert.is(refused.body, 'filter output too large\n');
  assert.is(app.received.length, before, 'nothing oversized went on');
  assert.is((await logged('tight', '/write-request')).response_code_details, 'wasm_output_too_large[default.writer][request_headers]');
  assert.is(outputLimitCount(proxies.tight, 'request_headers'), 1);
  // The listener's limit is the same for clients: a 10 KiB header from the client itself is refused (431).
  assert.is((await get(proxies.tight.outboundPort, { 'x-client-filler': 'c'.repeat(FILLER) })).status, 431);
});

test("a filter's response header: 10 KiB passes the default; past --max-response-headers-kb (8 KiB) the client gets 500 naming the plugin", async () => {
  const ok = await get(proxies.defaults.outboundPort, { 'x-write-response': '1' }, '/write-response');
  assert.is(ok.status, 200);
  assert.is(String(ok.headers['x-filler']).length, FILLER);
  const refused = await get(proxies.tight.outboundPort, { 'x-write-response': '1' }, '/write-response');
  assert.is(refused.status, 500);
  assert.is(refused.headers['x-filler'], undefined);
  assert.is((await logged('tight', '/write-response')).response_code_details, 'wasm_output_too_large[default.writer][response_headers]');
  assert.is(outputLimitCount(proxies.tight, 'response_headers'), 1);
});

test("the app's response headers obey the same limit: a 20 KiB block is 502 (UPE) at the default 16 KiB and passes at 32 KiB", async () => {
  const refused = await get(proxies.defaults.outboundPort, {}, '/big-head');
  assert.is(refused.status, 502);
  const entry = await logged('defaults', '/big-head');
  assert.is(entry.response_flags, 'UPE');
  assert.is(entry.response_code_details, 'upstream_reset_before_response_started{protocol_error}');
  const passed = await get(proxies.roomy.outboundPort, {}, '/big-head');
  assert.is(passed.status, 200);
  assert.is(String(passed.headers['x-app-filler']).length, 20 * KIB);
  assert.is(passed.body, 'ok');
});

test('--max-response-headers-kb must be a positive whole number: anything else is refused naming the flag', () => {
  const r = spawnSync(process.execPath, ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'none.yaml'), '--max-response-headers-kb', '0'], { encoding: 'utf8', timeout: 30_000 });
  assert.is(r.status, 2, r.stderr);
  assert.match(r.stderr, '--max-response-headers-kb must be a positive whole number, got "0"');
});

test.run();
