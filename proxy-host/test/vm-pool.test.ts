// A WasmPlugin's pool of VMs (spec.vms) in a running proxy: with good requests in flight on every VM
// of a FAIL_CLOSE plugin (the app holds them until the test lets go), a trapping request fails only the good requests on its own VM (the others get
// the app's 200), the trap is counted once and the pool is refilled. The same traffic through a plugin
// with the default single VM fails every request in flight, which is what the pool is for. The module is
// the isolation tests' hostile filter (support/hostile-filter.ts), bound by a standalone config file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
import { send, type Outcome } from './support/traffic.ts';

/** Good requests held in flight (the app holds /slow until the test releases it): IN_FLIGHT / vms on each VM. */
const IN_FLIGHT = 16;
/** The longest the app holds a /slow request, should a test fail before releasing it. */
const HOLD_MAX_MS = 5000;

let app: TestServer;
let dir: string;
/** Answers of the /slow requests the app holds. */
const held: Array<() => void> = [];

/** The app answers every /slow request it holds. */
function release(): void {
  for (const answer of held.splice(0)) answer();
}

test.before(async () => {
  app = await startHttp1('app', (req, res) => {
    const answer = () => {
      if (res.writableEnded || res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`filtered=${String(req.headers['x-filtered'] ?? '')}`);
    };
    if (req.url === '/slow') {
      held.push(answer);
      setTimeout(answer, HOLD_MAX_MS).unref();
    } else answer();
  });
  dir = mkdtempSync(join(tmpdir(), 'wasmesh-vm-pool-'));
  writeFileSync(join(dir, 'hostile.wasm'), await wat2wasm(hostileFilterWat(AUTHZ_CLUSTER)));
});

test.after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startProxy(vms: number | undefined): Promise<Proxy> {
  const file = join(dir, `mesh-${vms ?? 'default'}.yaml`);
  // The callout target is never called here; the app stands in for it.
  writeFileSync(file, isolationMeshYaml({ appPort: app.port, authzPort: app.port, ...(vms !== undefined ? { vms } : {}) }));
  const loaded = await loadConfigFile(file, WORKLOAD, { telemetry: false });
  if (!loaded.ok) throw new Error(loaded.error);
  return Proxy.start({ outboundPort: 0, inboundPort: 0, adminPort: 0, appPort: app.port, accessLog: 'off' }, loaded.config);
}

const toApp = (path: string, headers: Record<string, string> = {}) => ({ path, headers: { host: APP_HOST, ...headers } });

/** A series' value in /stats/prometheus (labels in the proxy's sorted order), 0 when absent. */
async function series(adminPort: number, name: string): Promise<number> {
  const text = (await send(adminPort, { path: '/stats/prometheus' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/**
 * IN_FLIGHT good requests to /slow through the guard plugin; once the plugin holds all of them, one
 * request that traps. Returns the good outcomes and the trapping request's.
 */
async function trapWhileInFlight(proxy: Proxy): Promise<{ good: Outcome[]; bad: Outcome }> {
  const good = Promise.all(Array.from({ length: IN_FLIGHT }, () => send(proxy.outboundPort, toApp('/slow'))));
  const deadline = Date.now() + 5000;
  while ((await series(proxy.adminPort, 'wasmesh_wasm_active_streams{plugin="default.guard"}')) < IN_FLIGHT) {
    if (Date.now() > deadline) throw new Error('the good requests did not all reach the plugin');
    await new Promise((r) => setTimeout(r, 5));
  }
  const bad = await send(proxy.outboundPort, toApp('/trap'));
  release();
  return { good: await good, bad };
}

const statuses = (outcomes: Outcome[]) => {
  const by: Record<number, number> = {};
  for (const o of outcomes) by[o.status] = (by[o.status] ?? 0) + 1;
  return by;
};

test('spec.vms 4: a trap fails only the requests in flight on its VM (a quarter), the others get 200; counted once; the pool is refilled', async () => {
  const proxy = await startProxy(4);
  try {
    assert.is((await send(proxy.outboundPort, toApp('/'))).status, 200, 'the plugin serves');
    const { good, bad } = await trapWhileInFlight(proxy);
    assert.is(bad.status, 503, 'the trapping request gets FAIL_CLOSE\'s 503');
    assert.equal(statuses(good), { 200: IN_FLIGHT - IN_FLIGHT / 4, 503: IN_FLIGHT / 4 }, 'only the VM that trapped failed its streams');
    for (const o of good.filter((x) => x.status === 200)) assert.is(o.body, 'filtered=1', 'the others went through the filter, untouched');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vm_traps_total{cause="unreachable",plugin="default.guard"}'), 1, 'one trap, counted once');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_plugin_failed{plugin="default.guard"}'), 0, 'the plugin kept live VMs');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vms_live{plugin="default.guard"}'), 3, 'three live until the next stream');
    const guard = () => proxy.filters().outbound.find((f) => f.plugin === 'default.guard')!.stable;
    assert.equal(guard().vms, { size: 4, live: 3 }, 'the admin /filters page shows the pool');
    // The next request refills the pool.
    const next = await send(proxy.outboundPort, toApp('/'));
    assert.is(next.status, 200);
    assert.is(next.body, 'filtered=1');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vm_restarts_total{plugin="default.guard"}'), 1, 'the trapped VM was replaced');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vms_live{plugin="default.guard"}'), 4, 'the pool is full again');
    assert.equal(guard().vms, { size: 4, live: 4 });
    // And the pool holds again: the same scene fails a quarter again, not more.
    const again = await trapWhileInFlight(proxy);
    assert.equal(statuses(again.good), { 200: IN_FLIGHT - IN_FLIGHT / 4, 503: IN_FLIGHT / 4 });
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vm_traps_total{cause="unreachable",plugin="default.guard"}'), 2);
  } finally {
    await proxy.stop(100);
  }
});

test('the default (one VM): the same trap fails every request in flight', async () => {
  const proxy = await startProxy(undefined);
  try {
    const { good, bad } = await trapWhileInFlight(proxy);
    assert.is(bad.status, 503);
    assert.equal(statuses(good), { 503: IN_FLIGHT });
    assert.is(proxy.filters().outbound.find((f) => f.plugin === 'default.guard')!.stable.vms, undefined, 'one VM: no pool to show');
    assert.is(await series(proxy.adminPort, 'wasmesh_wasm_vm_traps_total{cause="unreachable",plugin="default.guard"}'), 1);
  } finally {
    await proxy.stop(100);
  }
});

test('stopping the proxy lets the requests in flight on every VM of the pool finish', async () => {
  const proxy = await startProxy(4);
  let stopped = false;
  try {
    const good = Promise.all(Array.from({ length: 8 }, () => send(proxy.outboundPort, toApp('/slow'))));
    const deadline = Date.now() + 5000;
    while ((await series(proxy.adminPort, 'wasmesh_wasm_active_streams{plugin="default.guard"}')) < 8) {
      if (Date.now() > deadline) throw new Error('the requests did not all reach the plugin');
      await new Promise((r) => setTimeout(r, 5));
    }
    const stopping = proxy.stop(5000).then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.not.ok(stopped, 'the proxy waits for the requests in flight');
    release();
    assert.equal(statuses(await good), { 200: 8 }, 'all eight, two per VM, finished');
    await stopping;
    assert.ok(stopped);
  } finally {
    if (!stopped) await proxy.stop(100);
  }
});

test.run();
