// A plugin's pool of VMs (PluginConfig.vms): streams spread over the VMs, a trap fails only the streams
// of the VM that trapped and is counted once, the pool is refilled, a VM in backoff is skipped, and what
// is per VM (root context, on_tick, callouts, foreign function events, shutdown) or per plugin (metrics,
// shared queues) stays right. Real modules (wat), real timers, no mocks.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConnectionRecorder, FilterHarness } from '../src/harness.ts';
import type { HttpCallRequest, HttpCallResponse } from '../src/host.ts';
import { MetricsRegistry } from '../src/metrics/registry.ts';
import { SharedQueueRegistry } from '../src/shared-queue.ts';
import { MAX_PLUGIN_VMS } from '../src/limits.ts';
import type { Vm } from '../src/vm.ts';
import type { HttpStream } from '../src/http-stream.ts';
import {
  GET, OK_RESPONSE, Strings, TraceSink, c, envImports, events, loadPlugin, out, pl, recordingCallbacks, recordingModule, settle, waitFor,
} from './support/recorder.ts';
import { wat2wasm } from './support/wat.ts';

/** The cluster the module's callouts name. */
const CLUSTER = 'authz';

/**
 * Defines the counter `pool_requests` and registers the shared queue `jobs` in on_configure, and sets
 * a 5 ms tick that turns itself off after the first on_tick (so each VM ticks once). On request headers:
 * x-trap traps; otherwise the counter is incremented; x-callout calls CLUSTER and pauses the stream.
 */
function poolModule(): string {
  const s = new Strings();
  const xTrap = s.add('x-trap');
  const xCallout = s.add('x-callout');
  const metricName = s.add('pool_requests');
  const queueName = s.add('jobs');
  const cluster = s.add(CLUSTER);
  const calloutHeaders = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', CLUSTER]]);
  const has = (b: typeof xTrap) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(b)} ${c(out(0))} ${c(out(1))}))`;
  return recordingModule({
    imports: `${envImports('proxy_get_header_map_value', 'proxy_set_tick_period_milliseconds', 'proxy_define_metric', 'proxy_register_shared_queue', 'proxy_http_call')}
  (import "env" "proxy_increment_metric" (func $proxy_increment_metric (param i32 i64) (result i32)))`,
    strings: s,
    body: `
  (global $metric (mut i32) (i32.const 0))
  ${recordingCallbacks({
    proxy_on_configure: `
    (drop (call $proxy_define_metric ${c(0)} ${pl(metricName)} ${c(out(10))}))
    (global.set $metric (i32.load ${c(out(10))}))
    (drop (call $proxy_register_shared_queue ${pl(queueName)} ${c(out(11))}))
    (drop (call $proxy_set_tick_period_milliseconds ${c(5)}))
    ${c(1)}`,
    proxy_on_tick: `(drop (call $proxy_set_tick_period_milliseconds ${c(0)}))`,
    proxy_on_request_headers: `
    (if ${has(xTrap)} (then unreachable))
    (drop (call $proxy_increment_metric (global.get $metric) (i64.const 1)))
    (if ${has(xCallout)} (then
      (drop (call $proxy_http_call ${pl(cluster)} ${pl(calloutHeaders)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(5000)} ${c(out(12))}))
      (return ${c(1)})))
    ${c(0)}`,
  })}`,
  });
}

/** A counter's value in `registry`, 0 when absent. */
function value(registry: MetricsRegistry, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const m of registry.snapshot()) if (m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v)) sum += m.value ?? 0;
  return sum;
}

const count = (vm: Vm, event: string): number => events(vm.guest.memory).filter((e) => e.startsWith(`${event}(`)).length;

test('settings: vms defaults to 1 and must be a whole number from 1 to MAX_PLUGIN_VMS; a pool of 4 starts 4 VMs, each with its own root context', async () => {
  const wat = poolModule();
  const one = await loadPlugin(wat);
  assert.is(one.plugin.settings.vms, 1);
  assert.is(one.plugin.vms.length, 1);
  assert.ok(one.plugin.vm === one.plugin.vms[0]);
  await one.plugin.stop();
  for (const bad of [0, MAX_PLUGIN_VMS + 1, 2.5]) {
    try {
      await loadPlugin(wat, { vms: bad });
      assert.unreachable(`vms ${bad} was accepted`);
    } catch (err) {
      assert.match((err as Error).message, `plugin test: vms must be a whole number from 1 to ${MAX_PLUGIN_VMS}, got ${bad}`);
    }
  }
  const { plugin } = await loadPlugin(wat, { vms: 4 });
  try {
    assert.is(plugin.vms.length, 4);
    assert.is(new Set(plugin.vms).size, 4, 'four distinct VMs');
    assert.is(new Set(plugin.vms.map((vm) => vm.guest.memory)).size, 4, 'each with its own memory');
    for (const vm of plugin.vms) {
      assert.equal(events(vm.guest.memory).slice(0, 3), ['context_create(1,0)', 'vm_start(1,0)', 'configure(1,0)'], 'each VM started its root like a single VM does');
    }
    assert.is(plugin.state, 'running');
  } finally {
    await plugin.stop();
  }
});

test('a pool of 4 with 20 streams in flight: a trap fails only the streams of the VM that trapped, is counted once, and the pool is refilled', async () => {
  const metrics = new MetricsRegistry();
  const { plugin, logs } = await loadPlugin(poolModule(), { vms: 4 }, { metrics });
  try {
    // 20 streams past their request headers, waiting for the response: spread 5 per VM.
    const streams: Array<{ stream: HttpStream; sink: TraceSink; vm: Vm }> = [];
    for (let i = 0; i < 20; i++) {
      const sink = new TraceSink();
      const stream = plugin.createHttpStream(sink);
      stream.requestHeaders(GET(), true);
      streams.push({ stream, sink, vm: stream.vm });
    }
    for (const vm of plugin.vms) assert.is(streams.filter((s) => s.vm === vm).length, 5, 'least loaded: 5 streams on each VM');
    assert.is(value(metrics, 'wasmesh_wasm_vms_live', { plugin: 'test' }), 4);
    assert.is(value(metrics, 'pool_requests'), 20, 'the four VMs define the same counter and share its series');

    // A bad request: it lands on one VM, which traps.
    const badSink = new TraceSink();
    const bad = plugin.createHttpStream(badSink);
    const trapped = bad.vm;
    bad.requestHeaders([...GET(), 'x-trap', '1'], true);
    await settle();
    assert.ok(trapped.failed, 'the VM that ran the bad request failed');
    assert.equal(badSink.locals.map((l) => l.status), [503]);
    bad.finish();
    assert.is(plugin.vms.filter((vm) => vm.failed).length, 1, 'only that VM');
    assert.is(plugin.state, 'running', 'the plugin still has live VMs');

    // The streams on the trapped VM get FAIL_CLOSE's 503; the other 15 finish with the upstream's 200.
    let failed = 0;
    let ok = 0;
    for (const s of streams) {
      s.stream.responseHeaders(OK_RESPONSE(), true);
      s.stream.finish();
      if (s.vm === trapped) {
        assert.equal(s.sink.locals.map((l) => l.status), [503], 'a stream on the trapped VM fails');
        failed++;
      } else {
        assert.equal(s.sink.trace, ['request headers end', 'response headers end'], 'a stream on another VM is untouched');
        ok++;
      }
    }
    assert.equal([failed, ok], [5, 15]);
    assert.is(value(metrics, 'wasmesh_wasm_vm_traps_total', { plugin: 'test' }), 1, 'the trap is counted once');
    assert.is(value(metrics, 'wasmesh_wasm_vm_traps_total', { plugin: 'test', cause: 'unreachable' }), 1);
    assert.is(plugin.trapCount, 1);
    assert.is(value(metrics, 'wasmesh_wasm_plugin_failed', { plugin: 'test' }), 0, 'the plugin had live VMs throughout');
    assert.is(value(metrics, 'wasmesh_wasm_vms_live', { plugin: 'test' }), 3);
    assert.ok(logs.some((l) => /VM \d of 4 failed \(unreachable\).*6 stream\(s\) were on it.*new streams go to the pool's other VMs and a fresh one \(3 of 4 live\)/.test(l)), `the log says which VM and what happens:\n${logs.join('\n')}`);

    // The next stream refills the pool: a fresh VM in the trapped one's slot, started like the others.
    const next = plugin.createHttpStream(new TraceSink());
    next.requestHeaders(GET(), true);
    next.finish();
    assert.is(plugin.vms.length, 4);
    assert.not.ok(plugin.vms.includes(trapped), 'the failed VM left the pool');
    assert.ok(plugin.vms.every((vm) => !vm.failed), 'four live VMs again');
    assert.is(value(metrics, 'wasmesh_wasm_vm_restarts_total', { plugin: 'test' }), 1, 'one replacement');
    assert.is(value(metrics, 'wasmesh_wasm_vms_live', { plugin: 'test' }), 4, 'the pool is full again');
    assert.is(plugin.activeStreams, 0);
  } finally {
    await plugin.stop();
  }
  assert.is(value(metrics, 'wasmesh_wasm_vms_live', { plugin: 'test' }), 0, 'a stopped plugin has no live VM');
});

test('a VM waiting out a backoff is skipped: new streams go to the live VMs instead of getting 503', async () => {
  const metrics = new MetricsRegistry();
  const { plugin } = await loadPlugin(poolModule(), { vms: 3 }, { metrics });
  try {
    // Two fresh VMs trap in a row before finishing a stream: the second failure backs off.
    for (let i = 0; i < 2; i++) {
      const s = plugin.createHttpStream(new TraceSink());
      s.requestHeaders([...GET(), 'x-trap', '1'], true);
      s.finish();
    }
    const failed = plugin.vms.filter((vm) => vm.failed);
    assert.is(failed.length, 1, 'the first failure was replaced at once, the second waits');
    for (let i = 0; i < 6; i++) {
      const sink = new TraceSink();
      const s = plugin.createHttpStream(sink);
      assert.not.ok(s.vm.failed, `stream ${i} went to a live VM`);
      s.requestHeaders(GET(), true);
      s.responseHeaders(OK_RESPONSE(), true);
      s.finish();
      assert.equal(sink.locals, [], `stream ${i} was not failed`);
    }
    assert.ok(plugin.vms.includes(failed[0]!), 'the backed-off VM is not replaced before its time');
    assert.is(plugin.state, 'running');
    assert.is(value(metrics, 'wasmesh_wasm_vm_traps_total', { plugin: 'test' }), 2);
  } finally {
    await plugin.stop();
  }
});

test('with every VM of the pool failed and backing off, new streams get the failStrategy answer and the plugin is failed', async () => {
  const metrics = new MetricsRegistry();
  const { plugin } = await loadPlugin(poolModule(), { vms: 2 }, { metrics });
  try {
    // Fresh VMs that trap before any stream got through: after the first, each failure backs off.
    for (let i = 0; i < 3; i++) {
      const s = plugin.createHttpStream(new TraceSink());
      s.requestHeaders([...GET(), 'x-trap', '1'], true);
      s.finish();
    }
    assert.ok(plugin.vms.every((vm) => vm.failed));
    assert.is(plugin.state, 'failed');
    assert.ok(plugin.bad, 'three failures in a row: the module version is bad');
    assert.is(value(metrics, 'wasmesh_wasm_plugin_failed', { plugin: 'test' }), 1);
    const sink = new TraceSink();
    const s = plugin.createHttpStream(sink);
    s.requestHeaders(GET(), true);
    s.finish();
    assert.equal(sink.locals.map((l) => l.status), [503]);
  } finally {
    await plugin.stop();
  }
});

test('each VM of the pool runs its own on_tick', async () => {
  const { plugin } = await loadPlugin(poolModule(), { vms: 4 });
  try {
    assert.ok(await waitFor(() => plugin.vms.every((vm) => count(vm, 'tick') === 1), 2000), `every VM ticked once: ${plugin.vms.map((vm) => count(vm, 'tick')).join(',')}`);
    assert.ok(plugin.vms.every((vm) => vm.root.tickPeriodMs === 0), 'each turned its own timer off');
  } finally {
    await plugin.stop();
  }
});

test('the test harness takes vms too: tick() steps every VM of the pool', async () => {
  const h = await FilterHarness.load(await wat2wasm(poolModule()), { name: 'pooled', vms: 3, manualTicks: true });
  try {
    assert.is(h.plugin.vms.length, 3);
    const r = await h.tick();
    assert.is(r.ticks, 3, 'one on_tick per VM');
    assert.ok(h.plugin.vms.every((vm) => count(vm, 'tick') === 1));
  } finally {
    await h.close();
  }
});

test('callouts are answered to the VM that made them', async () => {
  // Answer n (in the order the calls were made) has an n+1 byte body, so each answer is recognisable.
  const calls: Array<{ vm: Vm; bodyBytes: number }> = [];
  let current: Vm | undefined;
  const answers: Array<() => void> = [];
  const httpCall = (req: HttpCallRequest): Promise<HttpCallResponse> => {
    assert.is(req.upstream, CLUSTER);
    const bodyBytes = calls.length + 1;
    calls.push({ vm: current!, bodyBytes });
    // Answered later, in reverse order, so no answer can reach the right VM by coincidence of timing.
    return new Promise((resolve) => answers.push(() => resolve({ headers: [':status', '200'], body: new Uint8Array(bodyBytes), trailers: [] })));
  };
  const { plugin } = await loadPlugin(poolModule(), { vms: 4 }, { httpCall });
  try {
    const streams: HttpStream[] = [];
    for (let i = 0; i < 12; i++) {
      const s = plugin.createHttpStream(new TraceSink());
      current = s.vm;
      s.requestHeaders([...GET(), 'x-callout', '1'], true);
      streams.push(s);
    }
    assert.is(calls.length, 12);
    for (const answer of answers.reverse()) answer();
    await settle(10);
    for (const vm of plugin.vms) {
      const expected = calls.filter((call) => call.vm === vm).map((call) => call.bodyBytes).sort((a, b) => a - b);
      // http_call_response(root id, token, headers, body size, trailers)
      const got = events(vm.guest.memory).filter((e) => e.startsWith('http_call_response(')).map((e) => Number(e.slice(e.indexOf('(') + 1, -1).split(',')[3])).sort((a, b) => a - b);
      assert.is(expected.length, 3, 'three calls from each VM');
      assert.equal(got, expected, 'each VM got exactly the answers to its own calls');
    }
    for (const s of streams) s.finish();
  } finally {
    await plugin.stop();
  }
});

test('shared queues: the VM that registered last is told; when it fails, the one before it is, until its replacement registers', async () => {
  const sharedQueues = new SharedQueueRegistry();
  const { plugin } = await loadPlugin(poolModule(), { vms: 3 }, { sharedQueues });
  try {
    const id = sharedQueues.resolve('test', 'jobs')!;
    assert.ok(id > 0);
    const ready = () => plugin.vms.map((vm) => count(vm, 'queue_ready'));
    assert.is(sharedQueues.enqueue(id, new Uint8Array([1])), 'ok');
    assert.ok(await waitFor(() => ready().join() === '0,0,1'), `the last VM started is told: ${ready().join()}`);
    // The module does not dequeue; the host does, so a registrant is not told again of old items.
    assert.equal(sharedQueues.dequeue(id), new Uint8Array([1]));
    // The last VM fails (a bad request routed to it).
    const last = plugin.vms[2]!;
    for (let i = 0; i < 3; i++) {
      const s = plugin.createHttpStream(new TraceSink());
      if (s.vm === last) s.requestHeaders([...GET(), 'x-trap', '1'], true);
      s.finish();
    }
    assert.ok(last.failed);
    assert.is(sharedQueues.enqueue(id, new Uint8Array([2])), 'ok');
    assert.ok(await waitFor(() => count(plugin.vms[1]!, 'queue_ready') === 1), 'the VM that registered before it is told now');
    assert.equal(sharedQueues.dequeue(id), new Uint8Array([2]));
    // A new stream refills the slot; the fresh VM registers the queue again and is told from then on.
    plugin.createHttpStream(new TraceSink()).finish();
    const fresh = plugin.vms[2]!;
    assert.ok(fresh !== last && !fresh.failed);
    assert.is(sharedQueues.enqueue(id, new Uint8Array([3])), 'ok');
    assert.ok(await waitFor(() => count(fresh, 'queue_ready') === 1), 'the replacement is told');
    assert.is(count(plugin.vms[1]!, 'queue_ready'), 1);
    assert.is(count(last, 'queue_ready'), 1, 'the failed VM is never told again');
  } finally {
    await plugin.stop();
  }
});

test('foreign function events reach every VM of the pool; network connections spread over the pool too', async () => {
  const { plugin } = await loadPlugin(recordingModule({ body: recordingCallbacks({}, { network: true }) }), { vms: 3 });
  try {
    assert.ok(plugin.callForeignFunction(7, new Uint8Array(5)));
    for (const vm of plugin.vms) assert.is(events(vm.guest.memory).filter((e) => e === 'foreign_function(1,7,5)').length, 1, 'each VM was told once');
    const conns = [0, 1, 2].map(() => plugin.createNetworkStream(new ConnectionRecorder()));
    assert.is(new Set(conns.map((conn) => conn.vm)).size, 3, 'three connections on three VMs');
    for (const conn of conns) {
      assert.is(conn.onNewConnection(), 'continue');
      conn.finish();
    }
  } finally {
    await plugin.stop();
  }
});

test('stop() shuts every VM down (on_done, on_delete of each root), after drained() saw the streams of all VMs finish', async () => {
  const { plugin } = await loadPlugin(poolModule(), { vms: 4 });
  const streams = [0, 1, 2, 3].map(() => {
    const s = plugin.createHttpStream(new TraceSink());
    s.requestHeaders(GET(), true);
    return s;
  });
  assert.is(new Set(streams.map((s) => s.vm)).size, 4);
  let drained = false;
  const draining = plugin.drained().then(() => (drained = true));
  for (const s of streams.slice(0, 3)) s.finish();
  await settle();
  assert.not.ok(drained, 'one stream is still in flight on one VM');
  streams[3]!.finish();
  await draining;
  const vms = [...plugin.vms];
  await plugin.stop();
  assert.is(plugin.state, 'stopped');
  for (const vm of vms) {
    const list = events(vm.guest.memory);
    assert.ok(list.includes('done(1)') && list.includes('delete(1)'), `the root of each VM got on_done and on_delete: ${list.join(' ')}`);
    assert.ok(vm.root.deleted);
  }
  assert.throws(() => plugin.createHttpStream(new TraceSink()), /stopped/);
});

test.run();
