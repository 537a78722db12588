// Module swaps under load: new streams move to the new version once it is ready, streams in flight
// finish on the version they started on, a module that fails to start changes nothing, and a canary
// takes its share of streams by request id.
import http from 'node:http';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { FilterBinding, ProxyConfig } from '../../mesh/src/proxy-config.ts';
import { Proxy } from '../src/proxy.ts';
import { cluster, filterBinding, forward, proxyConfig } from './support/config.ts';
import { startHttp1, type TestServer } from './support/servers.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';

let dir = '';
const files = { one: '', two: '', broken: '', trap: '' };
let upstream: TestServer;
let proxy: Proxy | undefined;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-swap-'));
  for (const [key, bytes] of [
    ['one', await versionModule('one')],
    ['two', await versionModule('two')],
    ['broken', await versionModule('broken', { failStart: true })],
    ['trap', await versionModule('trap', { trap: true })],
  ] as const) {
    files[key] = join(dir, `${key}.wasm`);
    await writeFile(files[key], bytes);
  }
  upstream = await startHttp1('app', (req, res) => {
    // /slow answers after 150 ms: a stream in flight across a swap.
    const delay = req.url === '/slow' ? 150 : 0;
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    }, delay);
  });
});

test.after.each(async () => {
  await proxy?.stop(0);
  proxy = undefined;
});

test.after(async () => {
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

function config(binding: FilterBinding): ProxyConfig {
  return proxyConfig({
    virtualHosts: [{ name: 'app', domains: ['*'], routes: [forward('all', 'app')] }],
    clusters: [cluster('app', [{ port: upstream.port }])],
    outboundFilters: [binding],
  });
}

const versioned = (path: string, extra: Partial<FilterBinding> = {}) => filterBinding('versioned', path, extra);

async function start(binding: FilterBinding, moduleOverrides = false): Promise<Proxy> {
  // Admin writes from loopback allowed: these tests are about what a write does, admin-security.test.ts about who may write.
  proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', moduleOverrides, adminAccess: { loopbackWrites: true } }, config(binding));
  return proxy;
}

const WASM = { 'content-type': 'application/wasm' };

interface Answer {
  status: number;
  version: string | undefined;
  first: string | undefined;
}

function get(port: number, agent: http.Agent | false, path = '/', headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.headers['x-filter-version'] as string | undefined, first: res.headers['x-first'] as string | undefined }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.end();
  });
}

test('100 swaps between two versions under load: no request fails, each response names the version that served it', async () => {
  const p = await start(versioned(files.one));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const answers: Answer[] = [];
  const errors: unknown[] = [];
  let swapping = true;
  const deadline = Date.now() + 60_000;
  // Eight keep-alive clients, each one request after another, until the swaps are done (bounded in time).
  const clients = Array.from({ length: 8 }, async () => {
    while (swapping && Date.now() < deadline) {
      try {
        answers.push(await get(p.outboundPort, agent));
      } catch (err) {
        errors.push(err);
      }
    }
  });
  const servedBy = new Set<string>();
  try {
    for (let i = 0; i < 100; i++) {
      const path = i % 2 === 0 ? files.two : files.one;
      await p.applyConfig(config(versioned(path)));
      // Let some traffic reach this version before the next swap.
      const seen = answers.length;
      while (answers.length < seen + 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    }
  } finally {
    swapping = false;
    await Promise.all(clients);
    agent.destroy();
  }
  assert.equal(errors, [], 'no request failed');
  assert.ok(answers.length >= 300, `load ran (${answers.length} requests)`);
  for (const a of answers) {
    assert.is(a.status, 200);
    assert.ok(a.version === 'one' || a.version === 'two', `every response names its version (got ${a.version})`);
    servedBy.add(a.version!);
    // Shared data written by the first version (vm_id default.versioned) survived every swap.
    assert.is(a.first, 'one');
  }
  assert.equal([...servedBy].sort(), ['one', 'two']);
  // Old versions drain and stop: one plugin remains, nothing is left retiring.
  const deadlineDrain = Date.now() + 5000;
  while (Date.now() < deadlineDrain && p.filters().outbound.length !== 1) await new Promise((r) => setTimeout(r, 10));
  assert.is(p.filters().outbound.length, 1);
});

test('a stream in flight during a swap finishes on the version it started on; the next one gets the new version', async () => {
  const p = await start(versioned(files.one));
  const slow = get(p.outboundPort, false, '/slow');
  await new Promise((r) => setTimeout(r, 40));
  await p.applyConfig(config(versioned(files.two)));
  const fresh = await get(p.outboundPort, false);
  assert.is(fresh.version, 'two');
  const old = await slow;
  assert.is(old.status, 200);
  assert.is(old.version, 'one');
});

test('a new version that fails to start is refused and the old one keeps serving', async () => {
  const p = await start(versioned(files.one));
  let error: Error | undefined;
  try {
    await p.applyConfig(config(versioned(files.broken)));
  } catch (err) {
    error = err as Error;
  }
  assert.ok(error, 'the config was refused');
  assert.match(error!.message, /WasmPlugin default\/versioned/);
  assert.match(p.configStatus.lastError?.message ?? '', /versioned/);
  const after = await get(p.outboundPort, false);
  assert.is(after.status, 200);
  assert.is(after.version, 'one');
});

test('a canary takes its share of streams by request id, the same id always meeting the same version', async () => {
  const p = await start(versioned(files.one, { canary: { url: `file://${files.two}`, path: files.two, weight: 30 } }));
  const counts: Record<string, number> = {};
  for (let i = 0; i < 200; i++) {
    const a = await get(p.outboundPort, false, '/', { 'x-request-id': `req-${i}` });
    assert.is(a.status, 200);
    counts[a.version!] = (counts[a.version!] ?? 0) + 1;
  }
  assert.ok(counts.two > 30 && counts.two < 90, `about 30% to the canary (got ${counts.two} of 200)`);
  const again = await Promise.all([0, 1, 2].map(() => get(p.outboundPort, false, '/', { 'x-request-id': 'sticky-7' })));
  assert.is(new Set(again.map((a) => a.version)).size, 1, 'one request id, one version');
  const status = p.filters().outbound[0];
  assert.is(status.stable.streams + (status.canary?.streams ?? 0), 203);
  assert.is(status.canary?.weight, 30);
  assert.is(status.canary?.streams, counts.two + (again[0].version === 'two' ? 3 : 0));
});

test('a canary that traps fails its own streams only, and is marked bad after repeated failures', async () => {
  const p = await start(versioned(files.one, { canary: { url: `file://${files.trap}`, path: files.trap, weight: 50 } }));
  const statuses: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const a = await get(p.outboundPort, false, '/', { 'x-request-id': `t-${i}` });
    const key = a.status === 200 ? `200:${a.version}` : String(a.status);
    statuses[key] = (statuses[key] ?? 0) + 1;
  }
  const { stable, canary } = p.filters().outbound[0];
  assert.ok(canary, 'the canary is reported');
  assert.is(stable.failedStreams, 0);
  assert.is(stable.streams, statuses['200:one']);
  assert.ok(canary!.traps >= 1);
  assert.is(canary!.failedStreams, statuses['503'] ?? 0);
  assert.ok((statuses['503'] ?? 0) > 0, 'the canary failed its streams (FAIL_CLOSE: 503)');
  // Restarts back off after the first failure; by now it failed three times in a row or more.
  assert.ok(canary!.traps < 3 || canary!.bad, 'bad after repeated traps');
  const metrics = p.renderPrometheus();
  assert.match(metrics, /wasmesh_wasm_vm_traps_total\{cause="unreachable",plugin="default.versioned"\} [1-9]/);
});

test('admin /filters/module swaps a module in a standalone proxy and reports compile errors without losing the running one', async () => {
  const devDirs = async () => (await readdir(tmpdir())).filter((f) => f.startsWith('wasmesh-dev-'));
  const existing = new Set(await devDirs());
  const p = await start(versioned(files.one), true);
  const admin = `http://127.0.0.1:${p.adminPort}`;
  const two = Buffer.from(await versionModule('two'));
  const put = await fetch(`${admin}/filters/module?plugin=versioned`, { method: 'PUT', body: two, headers: WASM });
  const body = (await put.json()) as { plugin: string; sha256: string; loadMs: number };
  assert.is(put.status, 200);
  assert.is(body.plugin, 'default/versioned');
  assert.ok(body.loadMs < 1000, `swapped in ${body.loadMs} ms`);
  assert.is((await get(p.outboundPort, false)).version, 'two');

  const bad = await fetch(`${admin}/filters/module?plugin=versioned`, { method: 'PUT', body: Buffer.from('not wasm at all'), headers: WASM });
  const badBody = (await bad.json()) as { error: string };
  assert.is(bad.status, 400);
  assert.match(badBody.error, /WasmPlugin default\/versioned/);
  assert.is((await get(p.outboundPort, false)).version, 'two', 'the running module stays');

  const unknown = await fetch(`${admin}/filters/module?plugin=nope`, { method: 'PUT', body: two, headers: WASM });
  assert.is(unknown.status, 404);
  assert.match(((await unknown.json()) as { error: string }).error, /no WasmPlugin "nope".*default\/versioned/);

  // A config change keeps the override; clearing it brings the WasmPlugin's own module back.
  await p.applyConfig(config(versioned(files.one, { pluginConfig: { changed: true } })));
  assert.is((await get(p.outboundPort, false)).version, 'two');
  const del = await fetch(`${admin}/filters/module?plugin=default/versioned`, { method: 'DELETE' });
  assert.is(del.status, 200);
  assert.is((await get(p.outboundPort, false)).version, 'one');
  // The uploaded modules live in the proxy's own temporary folder, removed when it stops.
  const mine = (await devDirs()).filter((d) => !existing.has(d));
  assert.is(mine.length, 1, 'one folder of its own');
  assert.ok((await readdir(join(tmpdir(), mine[0]!))).includes(`${body.sha256}.wasm`));
  await p.stop(0);
  proxy = undefined;
  assert.not.ok((await readdir(tmpdir())).includes(mine[0]!), 'the temporary folder is gone');
});

test('a managed proxy (no overrides) refuses module uploads on admin', async () => {
  const p = await start(versioned(files.one));
  const res = await fetch(`http://127.0.0.1:${p.adminPort}/filters/module?plugin=versioned`, { method: 'PUT', body: Buffer.from(await versionModule('two')), headers: WASM });
  assert.is(res.status, 403);
  assert.is((await get(p.outboundPort, false)).version, 'one');
});

test.run();
