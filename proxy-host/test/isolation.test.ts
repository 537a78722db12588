// Filter isolation in a running proxy: a hostile module (endless loops in four different callbacks,
// endless recursion, endless memory growth, a 32 MiB header, a trap on one path) never stalls the
// proxy or another filter's streams. Each case runs while good traffic flows through the same proxy
// (its other listener, through another WasmPlugin of the same module): every good request gets 200,
// /ready stays 200, the bad stream gets the failStrategy's answer, /stats/prometheus names the cause,
// and the next stream through the bad plugin gets a fresh VM. The plugins are WasmPlugins in a
// standalone config file with a small spec.cpuBudget (fast tests); the last test runs the proxy as a
// child process with the default budget and checks that SIGTERM still drains after a runaway.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { BIG_HEADER_BYTES, hostileFilterWat } from './support/hostile-filter.ts';
import { APP_HOST, AUTHZ_CLUSTER, WORKLOAD, isolationMeshYaml } from './support/isolation-mesh.ts';
import { startHttp1, type TestServer } from './support/servers.ts';
import { ClosedLoopTraffic, ReadyPoller, send, type Outcome } from './support/traffic.ts';

/** Fuel units per callback for the test plugins: about a millisecond of guest time, a thousand times what they need. */
const TEST_BUDGET = 5_000_000;

let app: TestServer;
let authz: TestServer;
let dir: string;
let proxy: Proxy;

/** The mesh of support/isolation-mesh.ts with this file's app and authz servers. */
function meshYaml(opts: { failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN'; cpuBudget?: number } = {}): string {
  return isolationMeshYaml({ appPort: app.port, authzPort: authz.port, ...opts });
}

async function startMeshProxy(file: string, accessLog: string): Promise<Proxy> {
  const loaded = await loadConfigFile(file, WORKLOAD, { telemetry: false });
  if (!loaded.ok) throw new Error(loaded.error);
  return Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog }, loaded.config);
}

test.before(async () => {
  app = await startHttp1('app', (req, res, body) => {
    // /slow answers after 300 ms: a request in flight while the proxy drains.
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, filtered: req.headers['x-filtered'] ?? null, bigHeader: req.headers['x-big'] !== undefined, body }));
    };
    if (req.url === '/slow') setTimeout(answer, 300);
    else answer();
  });
  authz = await startHttp1('authz', (_req, res) => {
    res.writeHead(200);
    res.end();
  });
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-isolation-'));
  writeFileSync(join(dir, 'hostile.wasm'), await wat2wasm(hostileFilterWat(AUTHZ_CLUSTER)));
  writeFileSync(join(dir, 'mesh.yaml'), meshYaml({ cpuBudget: TEST_BUDGET }));
  proxy = await startMeshProxy(join(dir, 'mesh.yaml'), join(dir, 'access.log'));
});

test.after(async () => {
  await proxy?.stop(100);
  await Promise.all([app?.close(), authz?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

// ---- helpers ------------------------------------------------------------------------------------

const toApp = (headers: Record<string, string> = {}, path = '/') => ({ path, headers: { host: APP_HOST, ...headers } });

/** A counter's value in /stats/prometheus (labels in the proxy's sorted order), 0 when absent. */
async function counter(adminPort: number, series: string): Promise<number> {
  const text = (await send(adminPort, { path: '/stats/prometheus' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const traps = (adminPort: number, plugin: string, cause: string) => counter(adminPort, `wasmesh_wasm_vm_traps_total{cause="${cause}",plugin="${plugin}"}`);

/** The access log entries for `path` (written once per event-loop turn). */
async function logged(file: string, path: string, count = 1): Promise<Array<{ response_code: number; response_code_details: string }>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {}
    const entries = text.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.path === path);
    if (entries.length >= count || Date.now() > deadline) return entries;
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface UnderLoad<T> {
  good: Outcome[];
  ready: number[];
  bad: T;
}

/**
 * Runs `bad` while good traffic (three clients back to back, at most 1500 requests and 8 s) goes through
 * the proxy's inbound listener and /ready is polled; returns everything once the traffic has answered.
 */
async function underLoad<T>(target: Pick<Proxy, 'inboundPort' | 'adminPort'>, bad: () => Promise<T>): Promise<UnderLoad<T>> {
  const traffic = new ClosedLoopTraffic({ port: target.inboundPort, clients: 3, maxRequests: 1500, maxMs: 8000, request: { path: '/good' } });
  const poller = new ReadyPoller(target.adminPort);
  try {
    await new Promise((r) => setTimeout(r, 100));
    const result = await bad();
    await new Promise((r) => setTimeout(r, 100));
    traffic.stop();
    return { bad: result, good: await traffic.finished(), ready: await poller.stop() };
  } finally {
    traffic.stop();
    await poller.stop();
  }
}

/** Every good request got 200 and /ready answered 200 every time it was asked. */
function assertUnharmed(run: UnderLoad<unknown>): void {
  assert.ok(run.good.length >= 10, `good traffic flowed (${run.good.length} requests)`);
  const failed = run.good.filter((o) => o.status !== 200);
  assert.is(failed.length, 0, `good requests that did not get 200: ${JSON.stringify(failed.slice(0, 3).map((o) => [o.status, o.error]))}`);
  assert.ok(run.ready.length >= 3, `/ready was polled (${run.ready.length} times)`);
  assert.ok(run.ready.every((s) => s === 200), `/ready answers: ${run.ready.join(',')}`);
}

/** The guard plugin serves the next stream with a fresh, working VM: the app sees its header. */
async function guardServesAgain(target: Proxy = proxy): Promise<void> {
  const next = await send(target.outboundPort, toApp({}, '/after'));
  assert.is(next.status, 200, next.error ?? next.body);
  assert.is(JSON.parse(next.body).filtered, '1');
}

const BAD_RUNS = 3;

// ---- one runaway per callback, and the other ways a module can break ----------------------------

for (const [header, cause, what] of [
  ['x-loop', 'cpu_budget', 'an endless loop in the request headers callback'],
  ['x-deep', 'stack_overflow', 'endless recursion'],
  ['x-grow', 'memory', 'memory growth without end'],
  ['x-work', 'cpu_budget', 'bounded work past spec.cpuBudget (it passes the default budget: see the last test)'],
] as const) {
  test(`${what}: the bad stream gets 503 wasm_fail_stream, the trap is counted as ${cause}, good traffic and /ready are untouched`, async () => {
    const before = await traps(proxy.adminPort, 'default.guard', cause);
    const path = `/bad-${header}`;
    const run = await underLoad(proxy, async () => {
      const answers: Outcome[] = [];
      for (let i = 0; i < BAD_RUNS; i++) {
        answers.push(await send(proxy.outboundPort, toApp({ [header]: '1' }, path)));
        // A stream served to the end between two traps: each trap gets a fresh VM at once (without it,
        // a fresh VM that fails before serving anything would be a crash loop, and back off).
        answers.push(await send(proxy.outboundPort, toApp({}, '/between')));
      }
      return answers;
    });
    assertUnharmed(run);
    assert.equal(run.bad.map((a) => a.status), Array(BAD_RUNS).fill([503, 200]).flat(), JSON.stringify(run.bad.map((a) => a.error ?? a.body.slice(0, 80))));
    const entries = await logged(join(dir, 'access.log'), path, BAD_RUNS);
    assert.equal(entries.map((e) => e.response_code_details), Array(BAD_RUNS).fill('wasm_fail_stream'));
    assert.is((await traps(proxy.adminPort, 'default.guard', cause)) - before, BAD_RUNS);
    await guardServesAgain();
  });
}

test('an endless loop in the response body callback: the started response is reset, good traffic is untouched', async () => {
  const before = await traps(proxy.adminPort, 'default.guard', 'cpu_budget');
  const run = await underLoad(proxy, () => send(proxy.outboundPort, toApp({ 'x-body-loop': '1' }, '/bad-body')));
  assertUnharmed(run);
  // The response headers had gone out before the body: FAIL_CLOSE can only reset the stream.
  assert.ok(run.bad.error !== undefined || run.bad.status === 503, `the client got no complete answer: ${JSON.stringify([run.bad.status, run.bad.error, run.bad.body])}`);
  assert.not.match(run.bad.body, '"url"', 'no body reached the client');
  assert.equal((await logged(join(dir, 'access.log'), '/bad-body')).map((e) => e.response_code_details), ['wasm_fail_stream']);
  assert.is((await traps(proxy.adminPort, 'default.guard', 'cpu_budget')) - before, 1);
  await guardServesAgain();
});

test('an endless loop in on_tick: the VM fails with cause cpu_budget, good traffic is untouched, new streams get a fresh VM', async () => {
  const before = await traps(proxy.adminPort, 'default.guard', 'cpu_budget');
  const run = await underLoad(proxy, async () => {
    const started = await send(proxy.outboundPort, toApp({ 'x-tick': '1' }, '/bad-tick'));
    await waitUntil('the tick to run out of budget', async () => (await traps(proxy.adminPort, 'default.guard', 'cpu_budget')) > before);
    return started;
  });
  assertUnharmed(run);
  // The request that started the tick was served before the tick ran (or was in flight on the VM: 503).
  assert.ok([200, 503].includes(run.bad.status), String(run.bad.status));
  assert.is((await traps(proxy.adminPort, 'default.guard', 'cpu_budget')) - before, 1);
  await guardServesAgain();
});

test('an endless loop in on_http_call_response: the stream paused on the callout gets 503, good traffic is untouched', async () => {
  const before = await traps(proxy.adminPort, 'default.guard', 'cpu_budget');
  const seen = authz.received.length;
  const run = await underLoad(proxy, () => send(proxy.outboundPort, toApp({ 'x-callout': '1' }, '/bad-callout')));
  assertUnharmed(run);
  assert.is(run.bad.status, 503, run.bad.error ?? run.bad.body);
  assert.is(authz.received.length, seen + 1, 'the callout went out');
  assert.equal((await logged(join(dir, 'access.log'), '/bad-callout')).map((e) => e.response_code_details), ['wasm_fail_stream']);
  assert.is((await traps(proxy.adminPort, 'default.guard', 'cpu_budget')) - before, 1);
  await guardServesAgain();
});

test('a filter that adds a 32 MiB header: 500 naming the plugin, nothing oversized reaches the app, the VM lives on', async () => {
  const trapsBefore = await traps(proxy.adminPort, 'default.guard', 'cpu_budget');
  const series = 'wasmesh_wasm_output_limit_total{plugin="default.guard",what="request_headers"}';
  const before = await counter(proxy.adminPort, series);
  const seen = app.received.length;
  const run = await underLoad(proxy, () => send(proxy.outboundPort, toApp({ 'x-big-header': '1' }, '/bad-big-header')));
  assertUnharmed(run);
  assert.is(run.bad.status, 500);
  assert.is(run.bad.body, 'filter output too large\n');
  assert.equal((await logged(join(dir, 'access.log'), '/bad-big-header')).map((e) => e.response_code_details), ['wasm_output_too_large[default.guard][request_headers]']);
  assert.is((await counter(proxy.adminPort, series)) - before, 1);
  assert.not.ok(app.received.slice(seen).some((r) => r.headers['x-big'] !== undefined), 'the app never got the big header');
  assert.ok(BIG_HEADER_BYTES > 16 * 1024 * 1024);
  // Writing past a limit is refused, not a crash: the VM was not replaced.
  assert.is(await traps(proxy.adminPort, 'default.guard', 'cpu_budget'), trapsBefore);
  await guardServesAgain();
});

test('a trap on one path only: that path gets 503 (cause unreachable), every other path through the same plugin gets 200', async () => {
  const before = await traps(proxy.adminPort, 'default.guard', 'unreachable');
  const run = await underLoad(proxy, async () => {
    const answers: Array<[string, number]> = [];
    for (let i = 0; i < BAD_RUNS; i++) {
      answers.push(['/trap', (await send(proxy.outboundPort, toApp({}, '/trap'))).status]);
      answers.push(['/other', (await send(proxy.outboundPort, toApp({}, '/other'))).status]);
    }
    return answers;
  });
  assertUnharmed(run);
  assert.equal(run.bad, Array(BAD_RUNS).fill([['/trap', 503], ['/other', 200]]).flat());
  assert.is((await traps(proxy.adminPort, 'default.guard', 'unreachable')) - before, BAD_RUNS);
});

test('FAIL_OPEN: the runaway request passes without the filter (200, the app never sees its header); good traffic is untouched', async () => {
  writeFileSync(join(dir, 'open.yaml'), meshYaml({ failStrategy: 'FAIL_OPEN', cpuBudget: TEST_BUDGET }));
  const open = await startMeshProxy(join(dir, 'open.yaml'), 'off');
  try {
    const run = await underLoad(open, () => send(open.outboundPort, toApp({ 'x-loop': '1' }, '/open-loop')));
    assertUnharmed(run);
    assert.is(run.bad.status, 200, run.bad.error ?? run.bad.body);
    assert.is(JSON.parse(run.bad.body).filtered, null, 'the filter did not finish its work on this request');
    assert.is(await traps(open.adminPort, 'default.guard', 'cpu_budget'), 1);
    await guardServesAgain(open);
  } finally {
    await open.stop(100);
  }
});

test('good traffic through the trapping plugin itself: streams after the trap get a fresh VM and 200', async () => {
  // Good requests one after another (never in flight on the VM when it traps): every one is served.
  const answers: number[] = [];
  for (let i = 0; i < 5; i++) {
    answers.push((await send(proxy.outboundPort, toApp({}, '/good'))).status);
    answers.push((await send(proxy.outboundPort, toApp({ 'x-loop': '1' }, '/bad-sequential'))).status);
  }
  assert.equal(answers, Array(5).fill([200, 503]).flat());
});

// ---- the proxy as a user runs it, with the default budget ----------------------------------------

test('wasmesh proxy --config (child process, default budget): the default stops an endless loop, bounded work passes, SIGTERM drains and exits 0', async () => {
  writeFileSync(join(dir, 'default-budget.yaml'), meshYaml());
  let stderr = '';
  const child: ChildProcess = spawn(
    process.execPath,
    ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'default-budget.yaml'), '--workload', 'web', '--app-port', String(app.port), '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--no-telemetry', '--drain-timeout', '3000'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const listening = /listening: outbound [\d.]+:(\d+), inbound [\d.]+:(\d+), admin [\d.]+:(\d+)/;
    const deadline = Date.now() + 30_000;
    while (!listening.test(stderr)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the proxy did not start:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const [, outbound, inbound, admin] = listening.exec(stderr)!.map(Number);
    const run = await underLoad({ inboundPort: inbound!, adminPort: admin! }, async () => ({
      loop: await send(outbound!, toApp({ 'x-loop': '1' }, '/child-loop')),
      work: await send(outbound!, toApp({ 'x-work': '1' }, '/child-work')),
    }));
    assertUnharmed(run);
    assert.is(run.bad.loop.status, 503, 'the default budget stopped the loop');
    assert.is(run.bad.work.status, 200, 'the default budget leaves room for 10 M units of real work');
    assert.is(JSON.parse(run.bad.work.body).filtered, '1');
    assert.is(await traps(admin!, 'default.guard', 'cpu_budget'), 1);
    assert.match(stderr, /VM failed \(cpu_budget\): CPU budget exceeded: a callback ran past 1000000000 fuel units/);

    // A request in flight while SIGTERM arrives still gets its answer; then the process exits 0.
    const slow = send(inbound!, { path: '/slow' });
    await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    assert.is((await slow).status, 200, 'the in-flight request was drained');
    assert.is(await exited, 0, stderr);
    assert.match(stderr, 'SIGTERM: draining');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test.run();
