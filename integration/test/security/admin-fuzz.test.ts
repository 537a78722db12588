// Bounded fuzzing of the proxy's admin endpoint over real HTTP on loopback: a standalone proxy that
// takes module overrides, sent random methods, paths, query strings, headers and bodies (module
// bytes real, mangled and random among them). No answer may be 5xx, the proxy must keep serving,
// every refusal must say why, and a refused request must leave the log level, the module overrides
// and the running config as they were (whatever authentication the admin port asks for).
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { logLevelName, setLogLevel } from '../../../proxy-host/src/log.ts';
import { Proxy } from '../../../proxy-host/src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from '../../../proxy-host/test/support/config.ts';
import { request, startHttp1, type TestServer } from '../../../proxy-host/test/support/servers.ts';
import { versionModule } from '../../../wasm/test/support/version-module.ts';
import { clip, fuzz, type Random } from './support/fuzz.ts';
import { ODD_STRINGS, randomString } from './support/mutate.ts';

interface Ctx {
  dir: string;
  upstream: TestServer;
  proxy: Proxy;
  modules: { good: Uint8Array; broken: Uint8Array };
  level: ReturnType<typeof logLevelName>;
}

const test = suite<Ctx>('admin fuzz', {} as Ctx);

test.before(async (ctx) => {
  ctx.level = logLevelName();
  // Quiet: module swaps log at info; a level the fuzz sets is put back after each case.
  setLogLevel('error');
  ctx.dir = mkdtempSync(join(tmpdir(), 'wasmesh-admin-fuzz-'));
  ctx.modules = { good: await versionModule('override'), broken: await versionModule('broken', { failStart: true }) };
  const file = join(ctx.dir, 'filter.wasm');
  writeFileSync(file, await versionModule('base'));
  ctx.upstream = await startHttp1('app');
  ctx.proxy = await Proxy.start(
    { outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', moduleOverrides: true },
    proxyConfig({
      virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
      clusters: [cluster('app', [{ port: ctx.upstream.port }])],
      outboundFilters: [filterBinding('versioned', file)],
    }),
  );
});

test.after(async (ctx) => {
  await ctx.proxy.stop(0);
  await ctx.upstream.close();
  rmSync(ctx.dir, { recursive: true, force: true });
  setLogLevel(ctx.level);
});

const METHODS = ['GET', 'GET', 'POST', 'PUT', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'PURGE'];
const ENDPOINTS = ['/', '/stats/prometheus', '/metrics', '/filters', '/filters/module', '/config_dump', '/clusters', '/server_info', '/ready', '/healthz', '/logging', '/quitquitquit', '/reset_counters', '/runtime_modify', '/drain_listeners'];
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical', 'off'];

function enc(text: string): string {
  return encodeURIComponent(text.replace(/[\ud800-\udfff]/g, '\ufffd'));
}

function path(r: Random): string {
  let p = r.chance(0.8) ? r.pick(ENDPOINTS) : r.pick(['//', '///x', '/%', '/%zz', '/..', '/../../etc/passwd', `/${'a'.repeat(4000)}`, `/${enc(randomString(r, 1 + r.int(20)))}`, '/filters/module/x', '/logging/']);
  if (r.chance(0.1)) p += '/';
  const params: string[] = [];
  if (r.chance(0.5)) params.push(`level=${r.chance(0.5) ? r.pick(LEVELS) : enc(r.pick(ODD_STRINGS))}`);
  if (r.chance(0.5)) params.push(`plugin=${r.chance(0.5) ? r.pick(['default/versioned', 'versioned', 'default%2Fversioned']) : enc(r.chance(0.5) ? r.pick(ODD_STRINGS) : randomString(r, r.int(20)))}`);
  if (r.chance(0.2)) params.push(`${enc(randomString(r, 1 + r.int(8)))}=${enc(randomString(r, r.int(8)))}`);
  if (r.chance(0.05)) params.push('level=info&level=off');
  return params.length > 0 ? `${p}?${params.join('&')}` : p;
}

function headers(r: Random): Record<string, string> {
  const h: Record<string, string> = {};
  const token = () => randomString(r, 1 + r.int(30)).replace(/[^\x21-\x7e]/g, 'x');
  if (r.chance(0.3)) h.authorization = r.pick([`Bearer ${token()}`, 'Bearer', 'Basic YWRtaW46YWRtaW4=', token()]);
  if (r.chance(0.3)) h['content-type'] = r.pick(['application/wasm', 'application/octet-stream', 'application/json', 'text/plain', 'multipart/form-data; boundary=x', token()]);
  if (r.chance(0.2)) h['x-request-id'] = token();
  if (r.chance(0.2)) h.host = r.pick(['evil.example', 'localhost', '127.0.0.1:1', token()]);
  if (r.chance(0.1)) h.origin = 'http://evil.example';
  if (r.chance(0.1)) h['x-forwarded-for'] = '10.0.0.1';
  for (let n = r.int(3); n > 0; n--) h[`x-fuzz-${n}`] = token();
  return h;
}

function body(r: Random, ctx: Ctx): Buffer | undefined {
  switch (r.int(6)) {
    case 0:
      return undefined;
    case 1:
      return Buffer.from(ctx.modules.good);
    case 2:
      return Buffer.from(ctx.modules.broken);
    case 3: {
      const mangled = Buffer.from(ctx.modules.good);
      for (let n = 1 + r.int(8); n > 0; n--) mangled[r.int(mangled.length)] = r.int(256);
      return r.chance(0.3) ? mangled.subarray(0, r.int(mangled.length)) : mangled;
    }
    case 4:
      return Buffer.from(randomString(r, r.int(500)));
    default:
      return Buffer.from(JSON.stringify({ plugin: 'default/versioned', level: 'trace' }));
  }
}

function send(port: number, method: string, target: string, head: Record<string, string>, payload: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path: target, headers: { ...head, ...(payload ? { 'content-length': String(payload.length) } : {}) }, agent: false, timeout: 15_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

function state(ctx: Ctx): string {
  return JSON.stringify({ level: logLevelName(), overrides: ctx.proxy.filters().overrides, config: ctx.proxy.config.version });
}

test('random requests: never 5xx, never a crash, refusals say why and change nothing', async (ctx) => {
  const run = await fuzz('proxy admin', { seed: 0x14_0b, cases: 300, budgetMs: 20_000, minCases: 60 }, async (r, _i, note) => {
    const method = r.pick(METHODS);
    const target = path(r);
    const head = headers(r);
    const payload = method === 'GET' || method === 'HEAD' ? undefined : body(r, ctx);
    note(`${method} ${target} ${JSON.stringify(head)} ${payload ? `<${payload.length} bytes>` : ''}`);
    const before = state(ctx);
    const res = await send(ctx.proxy.adminPort, method, target, head, payload);
    const where = `${res.status} ${clip(res.body)}`;
    assert.ok(res.status >= 200 && res.status < 500, `answered ${where}`);
    if (res.status >= 400) {
      if (method !== 'HEAD') assert.ok(res.body.trim() !== '', `a refusal without a reason: ${where}`);
      assert.is(state(ctx), before, `a refused request changed the proxy: ${where}`);
    }
    // A level the fuzz set legitimately goes back to quiet (the check above compares to this).
    if (logLevelName() !== 'error') setLogLevel('error');
  });
  assert.ok(run.ran >= 60, `only ${run.ran} cases ran`);
  // The proxy still serves: the admin and the data path.
  assert.is((await request(ctx.proxy.adminPort, { path: '/healthz' })).status, 200);
  assert.is((await request(ctx.proxy.outboundPort, { headers: { host: 'app' } })).status, 200);
});

test.run();
