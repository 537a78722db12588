// The event-loop watchdog: a loop blocked past the stall threshold is noticed from another thread
// (counted, /ready 503 with the reason until the loop has run a while), and past the exit threshold
// the process is killed so that its supervisor replaces it. In this process (short blocks, no exit)
// and in a real proxy process (tests/fixtures/blocking-proxy.ts) blocked through IPC.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MetricsRegistry } from '../../wasm/src/index.ts';
import { EventLoopWatchdog } from '../src/watchdog/event-loop-watchdog.ts';
import { LoopDelayGauges } from '../src/watchdog/loop-delay.ts';
import { Proxy } from '../src/proxy.ts';
import { versionModule } from '../../wasm/test/support/version-module.ts';
import { filterBinding, proxyConfig } from './support/config.ts';
import { request } from './support/servers.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/blocking-proxy.ts', import.meta.url));

/** Blocks this thread's event loop for `ms` (Atomics.wait: no CPU burnt). */
const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a block past the threshold is a stall: counted, not ready until the loop ran a while; a short one is not', async () => {
  const metrics = new MetricsRegistry();
  const watchdog = await EventLoopWatchdog.start({ stallMs: 150, exitMs: 0, recoveryMs: 600 }, metrics);
  try {
    await sleep(100);
    block(60);
    await sleep(100);
    assert.is(watchdog.stalls(), 0, 'a 60 ms block is under the threshold');
    assert.is(watchdog.notReadyReason(), undefined);
    block(450);
    const reason = watchdog.notReadyReason();
    assert.is(watchdog.stalls(), 1);
    assert.match(reason ?? '', /^event loop blocked for \d+ ms \(1 stall since start\); ready again after 600 ms without a stall/);
    assert.match(metrics.renderPrometheus(), /wasmesh_proxy_event_loop_stalls_total 1\n/);
    await sleep(300);
    assert.ok(watchdog.notReadyReason() !== undefined, 'still recovering');
    await sleep(500);
    assert.is(watchdog.notReadyReason(), undefined, 'ready again after the recovery time');
  } finally {
    await watchdog.stop();
  }
});

test('the loop delay gauges show the worst delay of the last window', async () => {
  const metrics = new MetricsRegistry();
  const gauges = new LoopDelayGauges(metrics, 400);
  try {
    await sleep(100);
    block(200);
    await sleep(450);
    const text = metrics.renderPrometheus();
    const max = Number(/wasmesh_proxy_event_loop_delay_seconds\{stat="max"\} ([\d.e-]+)/.exec(text)?.[1]);
    const p50 = Number(/wasmesh_proxy_event_loop_delay_seconds\{stat="p50"\} ([\d.e-]+)/.exec(text)?.[1]);
    assert.ok(max >= 0.15 && max < 5, `max ${max} s after a 200 ms block`);
    assert.ok(p50 < max, `p50 ${p50} s below the max`);
  } finally {
    gauges.stop();
  }
});

test('canary reports count the stalls since each version was loaded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wasmesh-watchdog-'));
  const files = { one: join(dir, 'one.wasm'), two: join(dir, 'two.wasm'), three: join(dir, 'three.wasm') };
  for (const [tag, file] of Object.entries(files)) await writeFile(file, await versionModule(tag));
  const config = (canary: string) => proxyConfig({ inboundFilters: [filterBinding('versioned', files.one, { canary: { url: `file://${canary}`, path: canary, weight: 50 } })] });
  const proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, accessLog: 'off', watchdog: { stallMs: 150, exitMs: 0, recoveryMs: 300 } }, config(files.two));
  try {
    assert.equal(proxy.canaryStats().map((r) => [r.canary, r.stalls]), [[false, 0], [true, 0]]);
    block(450);
    assert.equal(proxy.canaryStats().map((r) => [r.canary, r.stalls]), [[false, 1], [true, 1]]);
    assert.equal(proxy.canaryStats()[1]!.traps_by_cause, {});
    assert.is(proxy.ready(), false, 'not ready right after the stall');
    // A new canary version loaded after the stall starts from zero; the stable one keeps its count.
    await proxy.applyConfig(config(files.three));
    assert.equal(proxy.canaryStats().map((r) => [r.canary, r.stalls]), [[false, 1], [true, 0]]);
    await sleep(400);
    assert.is(proxy.ready(), true);
  } finally {
    await proxy.stop(0);
    await rm(dir, { recursive: true, force: true });
  }
});

interface Child {
  proc: ChildProcess;
  admin: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startBlockingProxy(limits: { stallMs: number; exitMs: number; recoveryMs: number }): Promise<Child> {
  const proc = fork(FIXTURE, [JSON.stringify(limits)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 20_000;
  while (!/admin (\d+)/.test(out)) {
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`the fixture proxy did not start:\n${err}`);
    await sleep(50);
  }
  return { proc, admin: Number(/admin (\d+)/.exec(out)![1]), stderr: () => err, exited };
}

test('a proxy process blocked past the stall threshold answers /ready 503 with the reason, counts it, and is ready again later', async () => {
  const child = await startBlockingProxy({ stallMs: 200, exitMs: 5000, recoveryMs: 1500 });
  try {
    assert.is((await request(child.admin, { path: '/ready' })).status, 200);
    const unblocked = new Promise((r) => child.proc.once('message', r));
    child.proc.send({ block: 700 });
    await unblocked;
    const ready = await request(child.admin, { path: '/ready' });
    assert.is(ready.status, 503);
    assert.match(ready.body, /^NOT READY\nevent loop blocked for \d+ ms \(1 stall since start\)/);
    const stats = (await request(child.admin, { path: '/stats/prometheus' })).body;
    assert.match(stats, /wasmesh_proxy_event_loop_stalls_total 1\n/);
    assert.match(stats, /wasmesh_proxy_event_loop_delay_seconds\{stat="p99"\}/);
    assert.match(child.stderr(), /\[watchdog\] event loop blocked for more than 200 ms: not ready; killing the process at 5000 ms/);
    const deadline = Date.now() + 5000;
    while ((await request(child.admin, { path: '/ready' })).status !== 200) {
      if (Date.now() > deadline) throw new Error('not ready again within 5 s of a 1.5 s recovery time');
      await sleep(100);
    }
  } finally {
    child.proc.kill('SIGKILL');
    await child.exited;
  }
});

test('a proxy process blocked past the exit threshold is killed from the watchdog thread, with a line on stderr', async () => {
  const child = await startBlockingProxy({ stallMs: 200, exitMs: 1200, recoveryMs: 1000 });
  try {
    const started = Date.now();
    child.proc.send({ block: 60_000 });
    // SIGTERM is not handled while the loop is blocked: it takes the watchdog.
    child.proc.kill('SIGTERM');
    const exit = await Promise.race([child.exited, sleep(15_000).then(() => undefined)]);
    assert.ok(exit, `still running 15 s later:\n${child.stderr()}`);
    assert.is(exit!.signal, 'SIGKILL');
    assert.ok(Date.now() - started < 10_000);
    assert.match(child.stderr(), /critical \[watchdog\] event loop blocked for \d+ ms \(limit 1200 ms\): killing process \d+ \(SIGKILL\) so that its supervisor replaces it/);
  } finally {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await child.exited;
  }
});

test.run();
