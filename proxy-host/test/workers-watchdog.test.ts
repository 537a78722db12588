// --concurrency 2 with a stuck worker (SIGSTOP: nothing in the worker runs, not even its own
// watchdog thread): the primary's /ready fails at once with the reason, its admin keeps answering,
// the other worker keeps serving, and past the exit threshold the primary kills the stuck worker and
// forks another, after which /ready is 200 again.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mergePrometheus } from '../src/workers.ts';
import { request } from './support/servers.ts';

const HOST = 'teapot.default.svc.cluster.local';
const MESH = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: teapot, namespace: default }
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 127.0.0.1, ports: { http: 1 } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: teapot, namespace: default }
spec:
  hosts: [${HOST}]
  http:
  - directResponse: { status: 418, body: { string: "short and stout" } }
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, detail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${detail()}`);
    await sleep(50);
  }
}

/** One request on a new connection, given up after 1 s (a connection handed to the stuck worker hangs). */
function teapot(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: HOST }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.setTimeout(1000, () => req.destroy());
    req.end();
  });
}

/** The primary's worker processes (its other children: tsx's esbuild service). */
function workersOf(pid: number): number[] {
  let children: number[];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return children.filter((child) => {
    try {
      return readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('--concurrency');
    } catch {
      return false;
    }
  });
}

test('a stuck worker fails the primary /ready, the other keeps serving, and it is replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmesh-workers-'));
  writeFileSync(join(dir, 'mesh.yaml'), MESH);
  const args = ['scripts/wasmesh.mjs', 'proxy', '--config', join(dir, 'mesh.yaml'), '--workload', 'web', '--outbound-port', '0', '--inbound-port', '0', '--admin-port', '0', '--access-log', 'off', '--no-telemetry'];
  const primary: ChildProcess = spawn(process.execPath, [...args, '--concurrency', '2', '--stall-threshold', '300', '--stall-exit', '2500', '--stall-recovery', '500'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  primary.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const log = () => err;
  let stuck: number | undefined;
  try {
    const workersUp = /2 workers listening: outbound [\d.]+:(\d+)/;
    const adminUp = /admin [\d.]+:(\d+) \(primary/;
    await waitFor('two workers and the admin', () => workersUp.test(err) && adminUp.test(err), 40_000, log);
    const outbound = Number(workersUp.exec(err)![1]);
    const admin = Number(adminUp.exec(err)![1]);
    await waitFor('/ready 200', async () => (await request(admin, { path: '/ready' })).status === 200, 5000, log);
    const workers = workersOf(primary.pid!);
    assert.is(workers.length, 2, `two workers under the primary: ${workers.join(', ')}`);
    stuck = workers[0]!;
    process.kill(stuck, 'SIGSTOP');

    // Not ready within the stall threshold, promptly, naming the worker.
    await waitFor('/ready 503', async () => (await request(admin, { path: '/ready' })).status === 503, 3000, log);
    const started = Date.now();
    const ready = await request(admin, { path: '/ready' });
    assert.ok(Date.now() - started < 500, '/ready answers at once');
    assert.match(ready.body, new RegExp(`NOT READY\\nworker ${stuck} has not answered for \\d+ ms \\(killed at 2500 ms\\)`));
    const statsStarted = Date.now();
    assert.is((await request(admin, { path: '/stats/prometheus' })).status, 200);
    assert.ok(Date.now() - statsStarted < 1500, 'the admin does not wait for the stuck worker');

    // The other worker serves meanwhile (at most one connection is handed to the stuck one).
    const during: number[] = [];
    for (let i = 0; i < 10; i++) during.push(await teapot(outbound));
    assert.ok(during.filter((s) => s === 418).length >= 9, `served while a worker is stuck: ${during.join(',')}`);

    await waitFor('the stuck worker killed and replaced', () => err.includes(`worker ${stuck} silent for`) && err.includes(`worker ${stuck} exited (SIGKILL); starting another`), 8000, log);
    await waitFor('/ready 200 again', async () => (await request(admin, { path: '/ready' })).status === 200, 30_000, log);
    const replaced = workersOf(primary.pid!);
    assert.is(replaced.length, 2);
    assert.not.ok(replaced.includes(stuck), 'a new worker took its place');
    for (let i = 0; i < 10; i++) assert.is(await teapot(outbound), 418);

    const exited = new Promise<number | null>((resolve) => primary.once('exit', (code) => resolve(code)));
    primary.kill('SIGTERM');
    assert.is(await exited, 0);
  } finally {
    if (stuck !== undefined) {
      try {
        process.kill(stuck, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (primary.exitCode === null && primary.signalCode === null) primary.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the primary's stats: stalls are summed over workers, the event-loop delay is the worst worker's", () => {
  const worker = (stalls: number, p99: number) =>
    [
      '# HELP wasmesh_proxy_event_loop_stalls_total Stalls',
      '# TYPE wasmesh_proxy_event_loop_stalls_total counter',
      `wasmesh_proxy_event_loop_stalls_total ${stalls}`,
      '# HELP wasmesh_proxy_event_loop_delay_seconds Delay',
      '# TYPE wasmesh_proxy_event_loop_delay_seconds gauge',
      `wasmesh_proxy_event_loop_delay_seconds{stat="p99"} ${p99}`,
      '',
    ].join('\n');
  const merged = mergePrometheus([worker(1, 0.02), worker(2, 0.5), worker(0, 0.1)]);
  assert.match(merged, /^wasmesh_proxy_event_loop_stalls_total 3$/m);
  assert.match(merged, /^wasmesh_proxy_event_loop_delay_seconds\{stat="p99"\} 0.5$/m);
});

test.run();
