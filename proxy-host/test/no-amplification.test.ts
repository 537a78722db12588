// No amplification: one trapping request costs the good traffic through the same FAIL_CLOSE plugin no
// more than the streams that were on the trapped VM at that moment (FAIL_CLOSE answers those 503 by
// design); the VM is replaced at once, with no backoff. One trap a second while good requests flow at a
// steady rate through the same plugin; the 60 s version is npm run bench:isolation.
//
// The share of good requests that fail is about (traps per second) x (mean latency): the requests in
// flight when a trap comes. 1 trap/s at 2 ms is 0.2 %, but on a shared machine busy enough to take the
// latency to 15 ms it is 1.5 %, so no fixed share is asserted. What is asserted holds on any machine:
// every trapping request met a live VM (no backoff), each trap cost at most the requests that can be in
// flight, and every failed good request was FAIL_CLOSE's answer to a stream in flight at a trap.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { wat2wasm } from '../../wasm/test/support/wat.ts';
import { loadConfigFile } from '../src/config/file-source.ts';
import { Proxy } from '../src/proxy.ts';
import { hostileFilterWat } from './support/hostile-filter.ts';
import { APP_HOST, AUTHZ_CLUSTER, WORKLOAD, isolationMeshYaml } from './support/isolation-mesh.ts';
import { startHttp1, type TestServer } from './support/servers.ts';
import { SteadyTraffic, percentile, send, type Outcome } from './support/traffic.ts';

const GOOD_RATE = 150;
const SECONDS = 8;
/** Good requests in flight at most: a busy machine gets a lower rate rather than a growing queue. */
const MAX_IN_FLIGHT = 4;

let app: TestServer;
let authz: TestServer;
let dir: string;
let proxy: Proxy;

test.before(async () => {
  app = await startHttp1('app', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  authz = await startHttp1('authz');
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-amplification-'));
  writeFileSync(join(dir, 'hostile.wasm'), await wat2wasm(hostileFilterWat(AUTHZ_CLUSTER)));
  writeFileSync(join(dir, 'mesh.yaml'), isolationMeshYaml({ appPort: app.port, authzPort: authz.port, cpuBudget: 5_000_000 }));
  const loaded = await loadConfigFile(join(dir, 'mesh.yaml'), WORKLOAD, { telemetry: false });
  if (!loaded.ok) throw new Error(loaded.error);
  proxy = await Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: join(dir, 'access.log') }, loaded.config);
});

test.after(async () => {
  await proxy?.stop(100);
  await Promise.all([app?.close(), authz?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Did `good` overlap `trap` in time: was it in flight through the plugin when the VM trapped? */
const overlaps = (good: Outcome, trap: Outcome): boolean => good.startMs <= trap.startMs + trap.latencyMs && good.startMs + good.latencyMs >= trap.startMs;

async function counter(series: string): Promise<number> {
  const text = (await send(proxy.adminPort, { path: '/stats/prometheus' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

test(`one trap a second amid ${GOOD_RATE} good requests a second through the same FAIL_CLOSE plugin: only streams in flight on the trapped VM fail, each VM is replaced at once`, async () => {
  const good = new SteadyTraffic({
    port: proxy.outboundPort,
    rate: GOOD_RATE,
    maxRequests: GOOD_RATE * SECONDS,
    maxMs: SECONDS * 1000,
    maxInFlight: MAX_IN_FLIGHT,
    request: { path: '/good', headers: { host: APP_HOST } },
  });
  const traps: Outcome[] = [];
  for (let i = 0; i < SECONDS; i++) {
    await new Promise((r) => setTimeout(r, i === 0 ? 500 : 1000));
    traps.push(await send(proxy.outboundPort, { path: '/trap', headers: { host: APP_HOST } }));
  }
  const outcomes = await good.finished();
  const failed = outcomes.filter((o) => o.status !== 200);
  const share = (outcomes.length - failed.length) / Math.max(1, outcomes.length);
  const latencies = outcomes.map((o) => o.latencyMs);
  const inFlightAtTraps = traps.map((t) => outcomes.filter((o) => overlaps(o, t)).length);
  const summary = `${outcomes.length} good requests (${good.skipped} not sent: ${MAX_IN_FLIGHT} in flight), ${failed.length} failed: ${(100 * share).toFixed(2)} % got 200; p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms; good requests in flight during each trap: ${inFlightAtTraps.join(',')}`;

  assert.equal(traps.map((t) => t.status), Array(SECONDS).fill(503), 'every trapping request got 503');
  assert.ok(outcomes.length >= GOOD_RATE * 2, `good traffic flowed: ${summary}`);
  // Each trap cost one VM, replaced at once: no crash loop, no backoff, no start failure.
  assert.is(await counter('wasmesh_wasm_vm_traps_total{cause="unreachable",plugin="default.guard"}'), SECONDS);
  assert.is(await counter('wasmesh_wasm_vm_restarts_total{plugin="default.guard"}'), SECONDS);
  assert.is(await counter('wasmesh_wasm_vm_start_failures_total{plugin="default.guard"}'), 0);
  // Every failed good request is FAIL_CLOSE's answer to a stream that was in flight when a VM trapped.
  const unexplained = failed.filter((o) => o.status !== 503 || !traps.some((t) => overlaps(o, t)));
  assert.equal(unexplained.map((o) => [o.status, o.error]), [], summary);
  const details = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.path === '/good' && e.response_code !== 200).map((e) => e.response_code_details);
  assert.equal(details, Array(failed.length).fill('wasm_fail_stream'), summary);
  for (const [i, t] of traps.entries()) {
    const cost = failed.filter((o) => overlaps(o, t)).length;
    assert.ok(cost <= MAX_IN_FLIGHT, `trap ${i} cost ${cost} good requests, more than can be in flight: ${summary}`);
  }
  process.stderr.write(`no-amplification: ${summary}\n`);
});

test.run();
