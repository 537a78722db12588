import { existsSync } from 'node:fs';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { headerGet, limits, MetricsRegistry, ModuleCache, sha256Hex, type HeaderList, type HttpStreamSink, type LocalResponse, type Plugin, type PluginHost } from '../../wasm/src/index.ts';
import { guestModule, wat2wasm } from '../../wasm/test/support/wat.ts';
import type { FilterBinding } from '../../mesh/src/proxy-config.ts';
import { CanaryPair, FilterChain, type ChainTerminal } from '../src/filter-chain/chain.ts';
import { PluginLoadError, PluginManager, RECENT_MODULES_KEPT } from '../src/filter-chain/plugin-manager.ts';

// A module that names itself: it adds `x-plugin: <plugin_name>` to the request, and logs when its root
// context is done (the plugin was stopped). `tag` only changes the bytes (a new module version);
// `configure: false` makes on_configure refuse the configuration.
function moduleWat(tag: string, configure = true): string {
  return guestModule({
    imports: `
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))`,
    body: `
  (global $root (mut i32) (i32.const 0))
  (data (i32.const 1024) "plugin_name")
  (data (i32.const 1040) "x-plugin")
  (data (i32.const 1056) "root_done")
  (data (i32.const 1072) "${tag}")
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then (global.set $root (local.get $ctx)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const ${configure ? 1 : 0}))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get_property (i32.const 1024) (i32.const 11) (i32.const 16) (i32.const 20)))
    (drop (call $add_header (i32.const 0) (i32.const 1040) (i32.const 8) (i32.load (i32.const 16)) (i32.load (i32.const 20))))
    (i32.const 0))
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (if (i32.eq (local.get $ctx) (global.get $root)) (then (drop (call $log (i32.const 2) (i32.const 1056) (i32.const 9)))))
    (i32.const 1))`,
  });
}

const events: string[] = [];
const metrics = new MetricsRegistry();
const host: PluginHost = { log: (_l, message, plugin) => void events.push(`${plugin}:${message}`), metrics };

let dir = '';
const files = { v1: '', v2: '', v3: '', v4: '', bad: '', noConfigure: '' };

function binding(name: string, path: string, over: Partial<FilterBinding> = {}): FilterBinding {
  return {
    name,
    namespace: 'default',
    phase: 'UNSPECIFIED_PHASE',
    priority: 0,
    url: `file://${path}`,
    path,
    rootId: '',
    vmId: '',
    pluginConfig: { greeting: 'hello', limits: { rps: 10 } },
    failStrategy: 'FAIL_CLOSE',
    env: {},
    ...over,
  };
}

class Sink implements HttpStreamSink, ChainTerminal {
  headers: HeaderList | undefined;
  requestHeaders(headers: HeaderList): void {
    this.headers = headers;
  }
  requestData(): void {}
  requestTrailers(): void {}
  responseHeaders(): void {}
  responseData(): void {}
  responseTrailers(): void {}
  localResponse(_r: LocalResponse): void {}
  reset(): void {}
}

async function until(done: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Lets the background retirement (next macrotask) run. */
const tick = () => new Promise((r) => setTimeout(r, 10));

async function rejects(p: Promise<unknown>): Promise<PluginLoadError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, PluginLoadError);
    return err as PluginLoadError;
  }
  throw new Error('expected a rejection');
}

const managers: PluginManager[] = [];
function manager(cache?: ModuleCache): PluginManager {
  const m = new PluginManager(host, cache);
  managers.push(m);
  return m;
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'wasmesh-plugins-'));
  files.v1 = join(dir, 'v1.wasm');
  files.v2 = join(dir, 'v2.wasm');
  files.bad = join(dir, 'bad.wasm');
  files.noConfigure = join(dir, 'no-configure.wasm');
  await writeFile(files.v1, await wat2wasm(moduleWat('one')));
  await writeFile(files.v2, await wat2wasm(moduleWat('two')));
  files.v3 = join(dir, 'v3.wasm');
  files.v4 = join(dir, 'v4.wasm');
  await writeFile(files.v3, await wat2wasm(moduleWat('five')));
  await writeFile(files.v4, await wat2wasm(moduleWat('six')));
  await writeFile(files.bad, Buffer.from('this is not a wasm module'));
  await writeFile(files.noConfigure, await wat2wasm(moduleWat('three', false)));
});

test.before.each(() => {
  events.length = 0;
});

test.after.each(async () => {
  await Promise.all(managers.splice(0).map((m) => m.stop()));
});

test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('apply starts one plugin per binding, named <namespace>.<name>, in binding order', async () => {
  const m = manager();
  const [a, b] = await m.apply([binding('a', files.v1), binding('b', files.v2, { namespace: 'istio-system' })]);
  assert.is(a.settings.name, 'default.a');
  assert.is(b.settings.name, 'istio-system.b');
  assert.is(a.state, 'running');
  assert.is(b.state, 'running');
  assert.equal(Buffer.from(a.settings.pluginConfiguration).toString(), '{"greeting":"hello","limits":{"rps":10}}');
  const sink = new Sink();
  const s = new FilterChain([a, b]).createStream(sink, {});
  s.requestHeaders([':method', 'GET', ':path', '/', ':authority', 'x'], true);
  assert.equal(sink.headers!.filter((_, i, l) => i % 2 === 1 && l[i - 1] === 'x-plugin'), ['default.a', 'istio-system.b']);
  const active = metrics.snapshot().filter((x) => x.name === 'wasmesh_wasm_active_streams').map((x) => [x.labels.plugin, x.value]);
  assert.ok(active.some(([p, v]) => p === 'default.a' && v === 1), JSON.stringify(active));
  s.finish();
});

test('unchanged bindings keep their plugin; a changed setting or module replaces it, and the old one stops once drained', async () => {
  const m = manager();
  const [a1, b1] = await m.apply([binding('a', files.v1), binding('b', files.v1)]);
  // Same module and settings (config keys in another order): nothing reloads.
  const [a2, b2] = await m.apply([binding('a', files.v1), binding('b', files.v1, { pluginConfig: { limits: { rps: 10 }, greeting: 'hello' } })]);
  assert.is(a2, a1);
  assert.is(b2, b1);
  // A stream in flight on b holds the old plugin.
  const sink = new Sink();
  const inFlight = b1.createHttpStream(sink);
  const [a3, b3] = await m.apply([binding('a', files.v1), binding('b', files.v1, { pluginConfig: { greeting: 'bye' } })]);
  assert.is(a3, a1);
  assert.is.not(b3, b1);
  assert.is(b3.compiled, b1.compiled, 'a settings-only change reconfigures without recompiling');
  await tick();
  assert.is(b1.state, 'running', 'the old plugin waits for its stream');
  assert.is(m.retiring, 1);
  inFlight.finish();
  await until(() => b1.state === 'stopped', 'the old b to stop');
  assert.ok(events.includes('default.b:root_done'));
  assert.is(m.retiring, 0);
  // A new module version at another path (or the same path rewritten) is a new plugin too.
  const [a4] = await m.apply([binding('a', files.v2), binding('b', files.v1, { pluginConfig: { greeting: 'bye' } })]);
  assert.is.not(a4, a1);
  await until(() => a1.state === 'stopped', 'the old a to stop');
  for (const [over, what] of [[{ failStrategy: 'FAIL_OPEN' }, 'failStrategy'], [{ rootId: 'r' }, 'rootId'], [{ vmId: 'v' }, 'vmId'], [{ logLevel: 'debug' }, 'logLevel'], [{ env: { A: '1' } }, 'env'], [{ cpuBudget: 5_000_000 }, 'cpuBudget'], [{ startupCpuBudget: 5_000_000_000 }, 'startupCpuBudget']] as const) {
    const [next] = await m.apply([binding('a', files.v2, over)]);
    assert.is.not(next, a4, what);
    const [back] = await m.apply([binding('a', files.v2)]);
    assert.is.not(back, next, what);
  }
  assert.equal(m.plugins.length, 1);
});

test("a WasmPlugin's CPU budgets and pool reach the runtime, the canary module's plugin too; absent, the runtime's defaults apply", async () => {
  const m = manager();
  const [budgeted, plain] = await m.load([
    binding('a', files.v1, { cpuBudget: 7_000_000, startupCpuBudget: 9_000_000_000, vms: 3, canary: { url: `file://${files.v2}`, path: files.v2, weight: 50 } }),
    binding('b', files.v1),
  ]);
  assert.instance(budgeted, CanaryPair);
  const pair = budgeted as CanaryPair;
  for (const p of [pair.stable, pair.canary]) {
    assert.is(p.settings.cpuBudget, 7_000_000);
    assert.is(p.settings.startupCpuBudget, 9_000_000_000);
    assert.is((p as Plugin).vms.length, 3, 'the canary runs a pool of the same size');
  }
  assert.is.not(pair.canary.compiled, pair.stable.compiled);
  assert.is((plain as Plugin).settings.cpuBudget, limits.DEFAULT_CPU_BUDGET);
  assert.is((plain as Plugin).settings.startupCpuBudget, limits.DEFAULT_STARTUP_CPU_BUDGET);
  assert.is((plain as Plugin).vms.length, 1);
});

test('startupCpuBudget bounds module startup: a configure that needs about 10 M units loads by default and is refused under 1 M, naming the budget', async () => {
  const heavy = join(dir, 'heavy-configure.wasm');
  await writeFile(
    heavy,
    await wat2wasm(
      guestModule({
        body: `
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
    (i32.const 1))`,
      }),
    ),
  );
  const m = manager();
  const [loaded] = await m.apply([binding('heavy', heavy)]);
  assert.is(loaded.state, 'running');
  const err = await rejects(m.apply([binding('heavy', heavy, { startupCpuBudget: 1_000_000 })]));
  assert.is(err.plugin, 'default/heavy');
  assert.match(err.message, /proxy_on_configure trapped: CPU budget exceeded/);
  assert.is(m.plugins[0], loaded, 'the running plugin stays');
});

test('a budget the runtime refuses (a config that skipped validation) is a load error naming the WasmPlugin and the field', async () => {
  const m = manager();
  const err = await rejects(m.apply([binding('a', files.v1, { cpuBudget: 0 })]));
  assert.is(err.plugin, 'default/a');
  assert.match(err.message, /^WasmPlugin default\/a: .*cpuBudget must be a whole number/);
});

test('spec.vms reaches the runtime; absent and 1 are the same plugin, a change swaps it and the old pool stops every VM once drained; bad counts and components are refused by field', async () => {
  const m = manager();
  const [one] = await m.apply([binding('pool', files.v1)]);
  assert.is((one as Plugin).settings.vms, 1);
  const [same] = await m.apply([binding('pool', files.v1, { vms: 1 })]);
  assert.is(same, one, 'vms: 1 is the default: nothing reloads');
  const [four] = await m.apply([binding('pool', files.v1, { vms: 4 })]);
  assert.is.not(four, one);
  assert.is((four as Plugin).vms.length, 4);
  await until(() => one.state === 'stopped', 'the single-VM plugin to stop');
  // Streams on two VMs of the pool hold it while it retires.
  const streams = [four.createHttpStream(new Sink()), four.createHttpStream(new Sink())];
  const done = () => events.filter((e) => e === 'default.pool:root_done').length;
  const before = done();
  const [two] = await m.apply([binding('pool', files.v1, { vms: 2 })]);
  assert.is((two as Plugin).vms.length, 2);
  await tick();
  assert.is(four.state, 'running', 'the old pool waits for its streams');
  for (const s of streams) s.finish();
  await until(() => four.state === 'stopped', 'the old pool to stop');
  assert.is(done() - before, 4, 'each of its four VMs had its root context done');
  const err = await rejects(m.apply([binding('pool', files.v1, { vms: 17 })]));
  assert.is(err.plugin, 'default/pool');
  assert.match(err.message, /vms must be a whole number from 1 to 16, got 17/);
  const component = join(dir, 'pool-component.wasm');
  await writeFile(component, Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]));
  const refused = await rejects(m.apply([binding('js', component, { vms: 2 })]));
  assert.is(refused.plugin, 'default/js');
  assert.match(refused.message, /spec\.vms 2: .*pool-component\.wasm is a component \(wasmesh:filter\), which runs as one instance/);
  assert.equal(m.plugins, [two], 'the running plugin stays');
});

test('the same binding on the inbound and outbound lists is one plugin, counted twice', async () => {
  const m = manager();
  const a = binding('a', files.v1);
  const { inbound, outbound } = await m.applyConfig([a, binding('b', files.v2)], [a]);
  assert.is(inbound[0], outbound[0]);
  assert.is(m.refs(inbound[0]), 2);
  assert.is(m.plugins.length, 2);
  const [again] = await m.apply([a]);
  assert.is(again, inbound[0]);
  assert.is(m.refs(again), 1);
  await until(() => inbound[1].state === 'stopped', 'b to stop');
  assert.is(again.state, 'running');
  await m.apply([]);
  await until(() => again.state === 'stopped', 'a to stop');
  assert.is(m.refs(again), 0);
});

test('a bad module is refused with an error naming the WasmPlugin; the running plugins stay as they were', async () => {
  const m = manager();
  const [a] = await m.apply([binding('a', files.v1)]);
  const err = await rejects(m.apply([binding('a', files.v1, { pluginConfig: 'changed' }), binding('c', files.v2), binding('bad', files.bad)]));
  assert.is(err.plugin, 'default/bad');
  assert.is(err.code, 'WASMESH_PROXY_PLUGIN_LOAD_FAILED');
  assert.match(err.message, 'WasmPlugin default/bad');
  assert.match(err.message, /not a WebAssembly module/);
  assert.match(err.message, files.bad);
  // Nothing switched; what the failed version had started (a new a, c) was stopped again.
  assert.is(a.state, 'running');
  assert.equal(m.plugins, [a]);
  await tick();
  assert.is(a.state, 'running');
  assert.equal(events.filter((e) => e.endsWith(':root_done')).sort(), ['default.a:root_done', 'default.c:root_done']);
  // The manager still works after a refused version.
  const [a2] = await m.apply([binding('a', files.v1)]);
  assert.is(a2, a);
});

test('a sha256 mismatch is refused, naming the expected and the actual digest', async () => {
  const m = manager();
  const [a] = await m.apply([binding('a', files.v1)]);
  const wrong = '0'.repeat(64);
  const err = await rejects(m.apply([binding('a', files.v2, { sha256: wrong })]));
  const actual = sha256Hex(await wat2wasm(moduleWat('two')));
  assert.is(err.plugin, 'default/a');
  assert.match(err.message, `expected ${wrong}`);
  assert.match(err.message, actual);
  assert.is(a.state, 'running');
  // The right digest (any case, with or without the sha256: prefix) is accepted.
  const [b] = await m.apply([binding('a', files.v2, { sha256: `sha256:${actual.toUpperCase()}` })]);
  assert.is.not(b, a);
});

test('a pinned digest that is already running is kept without reading the file again', async () => {
  const m = manager();
  const path = join(dir, 'pinned.wasm');
  const bytes = await wat2wasm(moduleWat('pinned'));
  await writeFile(path, bytes);
  const pinned = binding('p', path, { sha256: sha256Hex(bytes) });
  const [p1] = await m.apply([pinned]);
  await unlink(path);
  const [p2] = await m.apply([pinned]);
  assert.is(p2, p1);
});

test('an unreadable module is refused, naming the binding and the path', async () => {
  const m = manager();
  const missing = join(dir, 'missing.wasm');
  const err = await rejects(m.apply([binding('gone', missing)]));
  assert.is(err.plugin, 'default/gone');
  assert.match(err.message, 'WasmPlugin default/gone');
  assert.match(err.message, missing);
  const err2 = await rejects(m.apply([binding('nopath', '', { path: undefined, url: 'oci://registry/x:1' })]));
  assert.match(err2.message, 'oci://registry/x:1');
});

test('a module that fails on_configure is refused with the runtime error as the cause', async () => {
  const m = manager();
  const err = await rejects(m.apply([binding('picky', files.noConfigure)]));
  assert.is(err.plugin, 'default/picky');
  assert.is((err.cause as { code?: string }).code, 'WASMESH_WASM_CONFIGURE_FAILED');
  assert.match(err.message, 'proxy_on_configure');
});

test('each module is compiled once through the ModuleCache; unbound ones stay compiled for a rollback, then are dropped', async () => {
  const cache = new ModuleCache();
  const m = manager(cache);
  const [a, b] = await m.apply([binding('a', files.v1), binding('b', files.v1)]);
  assert.is.not(a, b);
  assert.is(a.compiled, b.compiled);
  assert.is(cache.size, 1);
  await m.apply([binding('a', files.v2)]);
  assert.is(cache.size, 2, 'v2 cached, v1 kept as the version before');
  const [back] = await m.apply([binding('a', files.v1)]);
  assert.is(back.compiled, a.compiled, 'going back to v1 does not compile again');
  await m.apply([binding('a', files.v3)]);
  await m.apply([binding('a', files.v4)]);
  assert.is(cache.size, 1 + RECENT_MODULES_KEPT, 'the bound module and the most recent unbound ones, no more');
  // Unbound now, oldest first: v1, v3. One more version pushes v1 out.
  await m.apply([binding('a', files.v2)]);
  assert.is(cache.size, 1 + RECENT_MODULES_KEPT);
  const [again] = await m.apply([binding('a', files.v1)]);
  assert.is.not(again.compiled, a.compiled, 'v1 was dropped: compiled again');
});

test('applies run one at a time, in order', async () => {
  const m = manager();
  const first = m.apply([binding('a', files.v1)]);
  const second = m.apply([binding('a', files.v2)]);
  const [a1] = await first;
  const [a2] = await second;
  assert.is.not(a1, a2);
  assert.equal(m.plugins, [a2]);
  await until(() => a1.state === 'stopped', 'the first a to stop');
});

// The AssemblyScript example (built by `npm run build:filters`), when it is there: a real SDK module
// through the manager and a chain. Without the build this test checks nothing.
const addHeaderWasm = fileURLToPath(new URL('../../filters/examples/add-header/build/add-header.wasm', import.meta.url));
test('the add-header example filter runs through the manager and a chain (when built)', async () => {
  if (!existsSync(addHeaderWasm)) return;
  const m = manager();
  const config = { request: { 'x-wasmesh-example': 'hello' }, response: { 'x-powered-by': 'wasmesh' } };
  const [p] = await m.apply([binding('add-header', addHeaderWasm, { rootId: 'add_header', pluginConfig: config })]);
  const requests: HeaderList[] = [];
  const responses: HeaderList[] = [];
  const terminal: ChainTerminal = Object.assign(new Sink(), {
    requestHeaders: (h: HeaderList) => void requests.push(h),
    responseHeaders: (h: HeaderList) => void responses.push(h),
  });
  const s = new FilterChain([p]).createStream(terminal, {});
  s.requestHeaders([':method', 'GET', ':path', '/', ':authority', 'x'], true);
  s.responseHeaders([':status', '200'], true);
  s.finish();
  assert.is(headerGet(requests[0], 'x-wasmesh-example'), 'hello');
  assert.is(headerGet(responses[0], 'x-powered-by'), 'wasmesh');
  const err = await rejects(m.apply([binding('add-header', addHeaderWasm, { rootId: 'add_header', pluginConfig: { request: { 'x-a': 1 } } })]));
  assert.is(err.plugin, 'default/add-header');
  assert.is(p.state, 'running');
});

test('stop() stops every plugin, draining or not, and refuses later applies', async () => {
  const m = new PluginManager(host);
  const [a, b] = await m.apply([binding('a', files.v1), binding('b', files.v2)]);
  const held = b.createHttpStream(new Sink());
  await m.apply([binding('a', files.v1)]);
  await m.stop();
  assert.is(a.state, 'stopped');
  assert.is(b.state, 'stopped');
  held.finish();
  try {
    await m.apply([binding('a', files.v1)]);
    assert.unreachable('apply after stop');
  } catch (err) {
    assert.match((err as Error).message, /stopped/);
  }
});

test('a WasmPlugin whose module is a component that is not a filter is refused by name; the running plugins stay', async () => {
  const m = manager();
  const [a] = await m.apply([binding('a', files.v1)]);
  // The smallest component there is: the header (component model binary version 0x0d, layer 1).
  const component = join(dir, 'component.wasm');
  await writeFile(component, Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]));
  const err = await rejects(m.apply([binding('a', files.v1), binding('js', component)]));
  assert.is(err.plugin, 'default/js');
  assert.match(err.message, /component\.wasm: the component exports nothing, not wasmesh:filter\/handler@0\.1\.0/);
  assert.equal(m.plugins, [a]);
});

test.run();
