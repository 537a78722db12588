// Conformance of shared data (get/set with compare-and-swap) and shared queues, within one plugin,
// between plugins with the same vm_id and across vm_ids.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WasmResult } from '../src/abi/constants.ts';
import type { PluginHost } from '../src/host.ts';
import { SharedDataStore } from '../src/shared-data.ts';
import { SharedQueueRegistry } from '../src/shared-queue.ts';
import {
  type Blob, Data, MEM_END, OUT_FILL, RecordingSink, c, guestMemory, load, loadProbe, out, pl, probeModule, proxyImports, rec, settle,
} from './support/guest.ts';

const { Ok, NotFound, InvalidMemoryAccess, Empty, CasMismatch } = WasmResult;

const IMPORTS = proxyImports(
  'proxy_get_shared_data', 'proxy_set_shared_data', 'proxy_register_shared_queue', 'proxy_resolve_shared_queue',
  'proxy_enqueue_shared_queue', 'proxy_dequeue_shared_queue',
);

/** get: value ptr/len in out slots o, o+1; cas in out slot o+2. */
const getData = (slot: number, key: Blob, o: number) =>
  rec(slot, `(call $proxy_get_shared_data ${pl(key)} ${c(out(o))} ${c(out(o + 1))} ${c(out(o + 2))})`);
const setData = (slot: number, key: Blob, value: Blob, cas: string) => rec(slot, `(call $proxy_set_shared_data ${pl(key)} ${pl(value)} ${cas})`);
const register = (slot: number, name: Blob, o: number) => rec(slot, `(call $proxy_register_shared_queue ${pl(name)} ${c(out(o))})`);
const resolve = (slot: number, vmId: Blob, name: Blob, o: number) => rec(slot, `(call $proxy_resolve_shared_queue ${pl(vmId)} ${pl(name)} ${c(out(o))})`);
const enqueue = (slot: number, id: string, value: Blob) => rec(slot, `(call $proxy_enqueue_shared_queue ${id} ${pl(value)})`);
const dequeue = (slot: number, id: string, o: number) => rec(slot, `(call $proxy_dequeue_shared_queue ${id} ${c(out(o))} ${c(out(o + 1))})`);

function onConfigure(d: Data, code: string, extra = ''): string {
  return probeModule({ imports: IMPORTS, data: d, body: `(func (export "proxy_on_configure") (param i32 i32) (result i32)\n${code}\n(i32.const 1))\n${extra}` });
}

function stores(): PluginHost {
  return { sharedData: new SharedDataStore(), sharedQueues: new SharedQueueRegistry() };
}

const EMPTY: Blob = { ptr: 0, len: 0 };

// ---- shared data --------------------------------------------------------------------------------------

test('shared data: NotFound, unconditional set (cas 0), then compare-and-swap with current and stale cas', async () => {
  const d = new Data();
  const k = d.add('counter');
  const code = [
    getData(0, k, 0),
    setData(1, k, d.add('v1'), c(0)),
    getData(2, k, 3), // value out 3/4, cas out 5
    setData(3, k, d.add('v2'), load(out(5))), // the current cas
    getData(4, k, 6), // value out 6/7, cas out 8
    setData(5, k, d.add('v3'), load(out(5))), // stale now
    getData(6, k, 9), // value out 9/10, cas out 11
    setData(7, k, d.add('v4'), c(0)), // cas 0 always writes
    getData(8, k, 12), // cas out 14
    setData(9, d.add('fresh'), d.add('new'), c(12345)), // a missing key is created whatever the cas
    getData(10, d.add('fresh'), 15),
    setData(11, d.add('empty'), EMPTY, c(0)),
    getData(12, d.add('empty'), 18),
  ].join('\n');
  const { plugin } = await loadProbe(onConfigure(d, code), {}, stores());
  const m = guestMemory(plugin);
  assert.is(m.result(0), NotFound);
  assert.equal([m.outU32(0), m.outU32(1), m.outU32(2)], [OUT_FILL, OUT_FILL, OUT_FILL], 'nothing written for a missing key');
  assert.is(m.result(1), Ok);
  assert.is(m.result(2), Ok);
  assert.is(m.blob(3).toString(), 'v1');
  const cas1 = m.outU32(5);
  assert.ok(cas1 !== 0, 'cas is non-zero');
  assert.is(m.result(3), Ok, 'set with the current cas');
  assert.is(m.result(4), Ok);
  assert.is(m.blob(6).toString(), 'v2');
  const cas2 = m.outU32(8);
  assert.ok(cas2 !== 0 && cas2 !== cas1, 'every write changes the cas');
  assert.is(m.result(5), CasMismatch, 'set with a stale cas');
  assert.is(m.result(6), Ok);
  assert.is(m.blob(9).toString(), 'v2', 'a refused write changes nothing');
  assert.is(m.outU32(11), cas2);
  assert.is(m.result(7), Ok);
  assert.ok(![0, cas1, cas2].includes(m.outU32(14)));
  assert.is(m.result(9), Ok);
  assert.is(m.result(10), Ok);
  assert.is(m.blob(15).toString(), 'new');
  assert.is(m.result(11), Ok);
  assert.is(m.result(12), Ok);
  assert.equal([m.outU32(18), m.outU32(19)], [0, 0], 'an empty value is ptr 0 / len 0');
  assert.ok(m.outU32(20) !== 0 && m.outU32(20) !== OUT_FILL, 'with its cas');
  await plugin.stop();
});

test('shared data: a bad key, value or out pointer is InvalidMemoryAccess', async () => {
  const d = new Data();
  const k = d.add('k');
  const bad: Blob = { ptr: MEM_END - 1, len: 4 };
  const code = [
    setData(0, k, d.add('v'), c(0)),
    setData(1, bad, d.add('v'), c(0)),
    setData(2, k, bad, c(0)),
    getData(3, bad, 0),
    rec(4, `(call $proxy_get_shared_data ${pl(k)} ${c(out(3))} ${c(out(4))} ${c(MEM_END - 2)})`),
    getData(5, k, 6),
  ].join('\n');
  const { plugin } = await loadProbe(onConfigure(d, code), {}, stores());
  const m = guestMemory(plugin);
  assert.is(m.result(0), Ok);
  assert.equal([1, 2, 3, 4].map((i) => m.result(i)), [InvalidMemoryAccess, InvalidMemoryAccess, InvalidMemoryAccess, InvalidMemoryAccess]);
  assert.is(m.result(5), Ok);
  assert.is(m.blob(6).toString(), 'v', 'the failed sets changed nothing');
  await plugin.stop();
});

test('shared data is shared by plugins with the same vm_id and isolated from other vm_ids', async () => {
  const host = stores();
  const writerData = new Data();
  const writer = onConfigure(writerData, setData(0, writerData.add('greeting'), writerData.add('hello from a'), c(0)));
  const readerData = new Data();
  const reader = onConfigure(readerData, getData(0, readerData.add('greeting'), 0));

  const a = await loadProbe(writer, { name: 'a', vmId: 'shared-vm' }, host);
  const b = await loadProbe(reader, { name: 'b', vmId: 'shared-vm' }, host);
  const other = await loadProbe(reader, { name: 'c', vmId: 'other-vm' }, host);
  const byName = await loadProbe(reader, { name: 'shared-vm' }, host);
  assert.is(guestMemory(a.plugin).result(0), Ok);
  assert.is(guestMemory(b.plugin).result(0), Ok);
  assert.is(guestMemory(b.plugin).blob(0).toString(), 'hello from a');
  assert.ok(guestMemory(b.plugin).outU32(2) !== 0);
  assert.is(guestMemory(other.plugin).result(0), NotFound, 'another vm_id does not see it');
  assert.is(guestMemory(byName.plugin).result(0), Ok, 'the vm_id defaults to the plugin name');

  // A store of its own is another proxy: nothing shared.
  const elsewhere = await loadProbe(reader, { name: 'd', vmId: 'shared-vm' }, stores());
  assert.is(guestMemory(elsewhere.plugin).result(0), NotFound);
  for (const p of [a, b, other, byName, elsewhere]) await p.plugin.stop();
});

// ---- shared queues ------------------------------------------------------------------------------------

test('register gives a non-zero id; registering again gives the same queue with its items kept', async () => {
  const d = new Data();
  const q = d.add('jobs');
  const code = [
    register(0, q, 0),
    enqueue(1, load(out(0)), d.add('first')),
    register(2, q, 1),
    dequeue(3, load(out(1)), 2),
    register(4, d.add('other'), 4),
  ].join('\n');
  const { plugin } = await loadProbe(onConfigure(d, code), { vmId: 'q1' }, stores());
  const m = guestMemory(plugin);
  assert.equal([0, 1, 2, 3, 4].map((i) => m.result(i)), [Ok, Ok, Ok, Ok, Ok]);
  const id = m.outU32(0);
  assert.ok(id !== 0);
  assert.is(m.outU32(1), id, 're-register: same id');
  assert.is(m.blob(2).toString(), 'first', 'items survive a re-register');
  assert.ok(m.outU32(4) !== 0 && m.outU32(4) !== id, 'another name, another queue');
  await plugin.stop();
});

test('resolve: an empty vm_id means this VM; other vm_ids and unknown names are NotFound', async () => {
  const host = stores();
  const d = new Data();
  const q = d.add('events');
  const code = [
    register(0, q, 0),
    resolve(1, EMPTY, q, 1),
    resolve(2, d.add('vm-a'), q, 2),
    resolve(3, d.add('vm-b'), q, 3),
    resolve(4, EMPTY, d.add('nope'), 4),
  ].join('\n');
  const a = await loadProbe(onConfigure(d, code), { name: 'a', vmId: 'vm-a' }, host);
  const m = guestMemory(a.plugin);
  const id = m.outU32(0);
  assert.is(m.result(1), Ok);
  assert.is(m.outU32(1), id);
  assert.is(m.result(2), Ok, 'own vm_id spelled out');
  assert.is(m.outU32(2), id);
  assert.is(m.result(3), NotFound, 'the queue belongs to vm-a');
  assert.is(m.outU32(3), OUT_FILL);
  assert.is(m.result(4), NotFound);
  assert.is(m.outU32(4), OUT_FILL);

  // Another vm_id finds the queue only by naming vm-a.
  const d2 = new Data();
  const q2 = d2.add('events');
  const b = await loadProbe(onConfigure(d2, [resolve(0, EMPTY, q2, 0), resolve(1, d2.add('vm-a'), q2, 1)].join('\n')), { name: 'b', vmId: 'vm-b' }, host);
  const mb = guestMemory(b.plugin);
  assert.is(mb.result(0), NotFound);
  assert.is(mb.result(1), Ok);
  assert.is(mb.outU32(1), id);
  await a.plugin.stop();
  await b.plugin.stop();
});

test('resolve matches a configured vm_id given as UTF-8 bytes', async () => {
  const host = stores();
  const d = new Data();
  const q = d.add('events');
  const owner = await loadProbe(onConfigure(d, register(0, q, 0)), { name: 'owner', vmId: 'vm-zürich' }, host);
  const d2 = new Data();
  const code = resolve(0, d2.add('vm-zürich'), d2.add('events'), 0);
  const other = await loadProbe(onConfigure(d2, code), { name: 'other', vmId: 'elsewhere' }, host);
  const m = guestMemory(other.plugin);
  assert.is(m.result(0), Ok);
  assert.is(m.outU32(0), guestMemory(owner.plugin).outU32(0));
  await owner.plugin.stop();
  await other.plugin.stop();
});

test('enqueue and dequeue: FIFO order, Empty when empty, NotFound for an unknown id', async () => {
  const d = new Data();
  const id = load(out(0));
  const code = [
    register(0, d.add('fifo'), 0),
    dequeue(1, id, 1),
    enqueue(2, id, d.add('one')),
    enqueue(3, id, d.add('two')),
    enqueue(4, id, EMPTY),
    dequeue(5, id, 3),
    dequeue(6, id, 5),
    dequeue(7, id, 7),
    dequeue(8, id, 9),
    enqueue(9, c(0x7ead), d.add('x')),
    dequeue(10, c(0x7ead), 11),
    rec(11, `(call $proxy_dequeue_shared_queue ${id} ${c(MEM_END - 2)} ${c(out(13))})`),
    enqueue(12, id, { ptr: MEM_END - 1, len: 8 }),
  ].join('\n');
  const { plugin } = await loadProbe(onConfigure(d, code), { vmId: 'fifo-vm' }, stores());
  const m = guestMemory(plugin);
  assert.is(m.result(1), Empty, 'a new queue is empty');
  assert.equal([m.outU32(1), m.outU32(2)], [OUT_FILL, OUT_FILL]);
  assert.equal([m.result(2), m.result(3), m.result(4)], [Ok, Ok, Ok]);
  assert.is(m.result(5), Ok);
  assert.is(m.blob(3).toString(), 'one');
  assert.is(m.result(6), Ok);
  assert.is(m.blob(5).toString(), 'two');
  assert.is(m.result(7), Ok, 'an empty item');
  assert.equal([m.outU32(7), m.outU32(8)], [0, 0]);
  assert.is(m.result(8), Empty, 'drained');
  assert.is(m.result(9), NotFound, 'enqueue to an unknown id');
  assert.is(m.result(10), NotFound, 'dequeue from an unknown id');
  assert.is(m.result(11), InvalidMemoryAccess);
  assert.is(m.result(12), InvalidMemoryAccess);
  await plugin.stop();
});

test('proxy_on_queue_ready reaches the registering root context asynchronously, once per item, from any plugin of the vm_id', async () => {
  const host = stores();
  const d = new Data();
  const q = d.add('work');
  // The owner registers the queue and enqueues one item itself; on_queue_ready counts calls and dequeues.
  const owner = onConfigure(
    d,
    [register(0, q, 0), enqueue(1, load(out(0)), d.add('self')), rec(2, '(global.get $ready)')].join('\n'),
    `(global $ready (mut i32) (i32.const 0))
    (global $root (mut i32) (i32.const 0))
    (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
      (if (i32.eqz (local.get $parent)) (then (global.set $root (local.get $id)))))
    (func (export "proxy_on_queue_ready") (param $ctx i32) (param $queue i32)
      (global.set $ready (i32.add (global.get $ready) (i32.const 1)))
      (i32.store (i32.const ${out(10)}) (global.get $ready))
      (i32.store (i32.const ${out(11)}) (i32.eq (local.get $ctx) (global.get $root)))
      (i32.store (i32.const ${out(12)}) (local.get $queue))
      ${dequeue(10, '(local.get $queue)', 13)}
      (i32.store (i32.add (i32.const ${out(20)}) (i32.shl (global.get $ready) (i32.const 3))) (i32.load (i32.const ${out(13)})))
      (i32.store (i32.add (i32.const ${out(20)}) (i32.add (i32.shl (global.get $ready) (i32.const 3)) (i32.const 4))) (i32.load (i32.const ${out(14)}))))`,
  );
  const a = await loadProbe(owner, { name: 'owner', vmId: 'qvm' }, host);
  const m = guestMemory(a.plugin);
  const id = m.outU32(0);
  assert.is(m.result(1), Ok);
  assert.is(m.result(2), 0, 'not called from inside proxy_enqueue_shared_queue');
  assert.is(m.outU32(10), OUT_FILL, 'not called before the event loop turns');
  await settle();
  assert.is(m.outU32(10), 1, 'called once for the one item');
  assert.is(m.outU32(11), 1, 'with the root context id');
  assert.is(m.outU32(12), id, 'and the queue id');
  assert.is(m.result(10), Ok);

  // Another plugin of the same vm_id enqueues two items: the owner is told twice and reads both.
  const pd = new Data();
  const pq = pd.add('work');
  const producer = onConfigure(
    pd,
    [resolve(0, EMPTY, pq, 0), enqueue(1, load(out(0)), pd.add('from b #1')), enqueue(2, load(out(0)), pd.add('from b #2'))].join('\n'),
  );
  const b = await loadProbe(producer, { name: 'producer', vmId: 'qvm' }, host);
  const mb = guestMemory(b.plugin);
  assert.equal([mb.result(0), mb.result(1), mb.result(2)], [Ok, Ok, Ok]);
  assert.is(m.outU32(10), 1, 'still asynchronous');
  await settle();
  assert.is(m.outU32(10), 3);
  const item = (n: number) => m.bytes(m.u32(out(20) + 8 * n), m.u32(out(20) + 8 * n + 4)).toString();
  assert.equal([item(1), item(2), item(3)], ['self', 'from b #1', 'from b #2']);
  await a.plugin.stop();
  await b.plugin.stop();
});

test('a queue registered from a stream context notifies the root context', async () => {
  const d = new Data();
  const q = d.add('from-stream');
  const wat = probeModule({
    imports: IMPORTS,
    data: d,
    body: `(global $root (mut i32) (i32.const 0))
    (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
      (if (i32.eqz (local.get $parent)) (then (global.set $root (local.get $id)))))
    (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
      ${rec(0, '(local.get $id)')}
      ${register(1, q, 0)}
      ${enqueue(2, load(out(0)), q)}
      (i32.const 0))
    (func (export "proxy_on_queue_ready") (param $ctx i32) (param $queue i32)
      ${rec(3, '(local.get $ctx)')}
      ${rec(4, '(global.get $root)')}
      ${dequeue(5, '(local.get $queue)', 1)})`,
  });
  const { plugin } = await loadProbe(wat, { vmId: 'stream-q' }, stores());
  const stream = plugin.createHttpStream(new RecordingSink());
  stream.requestHeaders([':path', '/'], true);
  stream.finish();
  await settle();
  const m = guestMemory(plugin);
  assert.equal([m.result(1), m.result(2), m.result(5)], [Ok, Ok, Ok]);
  assert.is(m.result(3), m.result(4), 'on_queue_ready gets the root id');
  assert.ok(m.result(3) !== m.result(0), 'not the stream id');
  assert.is(m.blob(1).toString(), 'from-stream');
  await plugin.stop();
});

test.run();
