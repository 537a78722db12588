// The metering rewrite changes nothing a module computes: every instruction family (control flow,
// multi-value, bulk memory, reference types, tail calls, exceptions, SIMD, atomics) gives the same
// results with and without it, on hand-written modules and on a real compiler's output (llhttp,
// clang with SIMD, as undici ships it). And its own counter is out of the module's reach.
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import wabtInit from 'wabt';
import { FUEL_GET_EXPORT, FUEL_SET_EXPORT, meterModule } from '../src/metering/metering.ts';

const BIG = 2 ** 50;

async function wat(source: string): Promise<Uint8Array> {
  const wabt = await wabtInit();
  const mod = wabt.parseWat('t.wat', source, {
    exceptions: true, mutable_globals: true, sat_float_to_int: true, sign_extension: true, simd: true, threads: true,
    multi_value: true, tail_call: true, bulk_memory: true, reference_types: true,
  });
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

async function instantiate(bytes: Uint8Array, imports: WebAssembly.Imports): Promise<WebAssembly.Instance> {
  return (await WebAssembly.instantiate(bytes as BufferSource, imports)).instance;
}

async function both(bytes: Uint8Array, imports: WebAssembly.Imports = {}) {
  const metered = meterModule(bytes, BIG);
  assert.ok(WebAssembly.validate(metered as BufferSource), 'the metered module validates');
  const plain = (await instantiate(bytes, imports)).exports as Record<string, any>;
  const m = (await instantiate(metered, imports)).exports as Record<string, any>;
  return { plain, metered: m };
}

const FEATURES = `(module
  (type $pair (func (param i32) (result i32 i32)))
  (memory (export "memory") 1 1)
  (table $t 4 funcref)
  (elem (table $t) (i32.const 0) func $double $triple)
  (data $d "wasmesh-data")
  (tag $oops (param i32))
  (global $g (mut i32) (i32.const 7))
  (func $double (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
  (func $triple (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3)))
  ;; br_table over a loop with a counter; multi-value block results
  (func (export "control") (param $n i32) (result i32) (local $acc i32) (local $i i32)
    (block $exit
      (loop $next
        (br_if $exit (i32.ge_u (local.get $i) (local.get $n)))
        (block $c2 (block $c1 (block $c0
          (br_table $c0 $c1 $c2 (i32.rem_u (local.get $i) (i32.const 3))))
          (local.set $acc (i32.add (local.get $acc) (i32.const 1))) (br $c2))
          (local.set $acc (i32.add (local.get $acc) (i32.const 10))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.add (local.get $acc) (call $sum (call $split (local.get $n)))))
  (func $split (type $pair) (i32.shr_u (local.get 0) (i32.const 1)) (i32.and (local.get 0) (i32.const 1)))
  (func $sum (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  ;; a loop with a parameter (multi-value), typed select, sign extension, saturating truncation
  (func (export "values") (param $x i32) (result i32)
    (i32.const 0)
    (loop $l (param i32) (result i32)
      (i32.add (i32.const 3))
      (br_if $l (i32.lt_s (local.tee $x (i32.sub (local.get $x) (i32.const 1))) (i32.const 0)) (i32.eqz)))
    (select (result i32) (i32.extend8_s (i32.const 0xff)) (i32.trunc_sat_f64_s (f64.const 1e20)) (i32.const 0))
    (i32.add))
  ;; indirect calls, ref.func, tail calls, table.grow/size
  (func (export "calls") (param $x i32) (result i32)
    (drop (table.grow $t (ref.func $triple) (i32.const 2)))
    (i32.add
      (call_indirect $t (param i32) (result i32) (local.get $x) (i32.const 1))
      (i32.add (call $countdown (local.get $x) (i32.const 0)) (table.size $t))))
  (func $countdown (param i32 i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (local.get 1))
      (else (return_call $countdown (i32.sub (local.get 0) (i32.const 1)) (i32.add (local.get 1) (i32.const 2))))))
  ;; bulk memory: init, copy, fill, data.drop; loads back a checksum
  (func (export "bulk") (result i32) (local $i i32) (local $s i32)
    (memory.init $d (i32.const 100) (i32.const 0) (i32.const 12))
    (memory.copy (i32.const 200) (i32.const 100) (i32.const 12))
    (memory.fill (i32.const 212) (i32.const 33) (i32.const 4))
    (data.drop $d)
    (loop $l
      (local.set $s (i32.add (local.get $s) (i32.mul (i32.load8_u offset=200 (local.get $i)) (i32.add (local.get $i) (i32.const 1)))))
      (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 16))))
    (local.get $s))
  ;; exceptions: throw, catch, rethrow through a delegate
  (func (export "exceptions") (param $x i32) (result i32)
    (try (result i32)
      (do (try (result i32) (do (throw $oops (i32.add (local.get $x) (i32.const 5)))) (delegate 0)))
      (catch $oops (i32.mul (i32.const 2)))))
  ;; SIMD: const, shuffle, lane ops, load/store lane, load zero
  (func (export "simd") (result i32)
    (v128.store (i32.const 300) (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0
      (v128.const i8x16 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16) (v128.const i8x16 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)))
    (v128.store32_lane 1 (i32.const 400) (i32x4.add (v128.load (i32.const 300)) (i32x4.splat (i32.const 1))))
    (i32.add
      (i32x4.extract_lane 2 (i32x4.replace_lane 2 (v128.load32_zero (i32.const 400)) (i32.load (i32.const 304))))
      (i32.load (i32.const 400))))
  ;; atomics on a non-shared memory
  (func (export "atomics") (result i32)
    (i32.atomic.store (i32.const 500) (i32.const 40))
    (drop (i32.atomic.rmw.add (i32.const 500) (i32.const 2)))
    (atomic.fence)
    (i32.atomic.load (i32.const 500)))
  ;; globals are still the module's own
  (func (export "global") (result i32) (global.set $g (i32.add (global.get $g) (i32.const 1))) (global.get $g)))`;

test('every instruction family computes the same with and without metering', async () => {
  const { plain, metered } = await both(await wat(FEATURES));
  metered[FUEL_SET_EXPORT](BIG);
  for (const n of [0, 1, 7, 100]) assert.is(metered.control(n), plain.control(n), `control(${n})`);
  for (const n of [0, 3, 9]) assert.is(metered.values(n), plain.values(n), `values(${n})`);
  assert.is(metered.calls(9), plain.calls(9), 'calls');
  assert.is(metered.bulk(), plain.bulk(), 'bulk');
  assert.is(metered.exceptions(4), plain.exceptions(4), 'exceptions');
  assert.is(metered.simd(), plain.simd(), 'simd');
  assert.is(metered.atomics(), plain.atomics(), 'atomics');
  assert.is(metered.global(), plain.global(), 'global');
  assert.ok(metered[FUEL_GET_EXPORT]() < BIG, 'fuel was spent');
  // The module's own exports are all still there, plus the two accessors.
  assert.equal(Object.keys(metered).filter((k) => !k.startsWith('__wasmesh_fuel')).sort(), Object.keys(plain).sort());
});

test('fuel spent grows with the work done, and bulk operations pay by length', async () => {
  const { metered } = await both(await wat(FEATURES));
  const spend = (fn: () => void) => {
    metered[FUEL_SET_EXPORT](BIG);
    fn();
    return BIG - metered[FUEL_GET_EXPORT]();
  };
  const small = spend(() => metered.control(100));
  const large = spend(() => metered.control(10_000));
  assert.ok(large > 50 * small, `100x the iterations cost ${large} vs ${small}`);
  const fill = await wat(`(module (memory 16) (func (export "fill") (param i32) (memory.fill (i32.const 0) (i32.const 1) (local.get 0))))`);
  const f = (await both(fill)).metered;
  const cost = (n: number) => {
    f[FUEL_SET_EXPORT](BIG);
    f.fill(n);
    return BIG - f[FUEL_GET_EXPORT]();
  };
  assert.ok(cost(1 << 20) - cost(0) >= (1 << 20) / 64, 'a 1 MiB fill pays at least a unit per 64 bytes');
});

test('llhttp (clang, SIMD) parses the same request identically with and without metering', async () => {
  const require = createRequire(import.meta.url);
  const bytes = new Uint8Array(require('undici/lib/llhttp/llhttp_simd-wasm.js'));
  const run = async (moduleBytes: Uint8Array) => {
    const seen: string[] = [];
    let memory: WebAssembly.Memory | undefined;
    const text = (at: number, len: number) => Buffer.from(memory!.buffer, at, len).toString('latin1');
    const env = {
      wasm_on_message_begin: () => (seen.push('begin'), 0),
      wasm_on_url: (_p: number, at: number, len: number) => (seen.push(`url ${text(at, len)}`), 0),
      wasm_on_status: (_p: number, at: number, len: number) => (seen.push(`status ${text(at, len)}`), 0),
      wasm_on_header_field: (_p: number, at: number, len: number) => (seen.push(`field ${text(at, len)}`), 0),
      wasm_on_header_value: (_p: number, at: number, len: number) => (seen.push(`value ${text(at, len)}`), 0),
      wasm_on_headers_complete: (_p: number, status: number, upgrade: number, keepAlive: number) => (seen.push(`headers ${status} ${upgrade} ${keepAlive}`), 0),
      wasm_on_body: (_p: number, at: number, len: number) => (seen.push(`body ${text(at, len)}`), 0),
      wasm_on_message_complete: () => (seen.push('complete'), 0),
    };
    const instance = await instantiate(moduleBytes, { env });
    const e = instance.exports as Record<string, any>;
    memory = e.memory;
    if (e[FUEL_SET_EXPORT]) e[FUEL_SET_EXPORT](BIG);
    e._initialize();
    const parser = e.llhttp_alloc(2); // a response parser (TYPE.RESPONSE)
    const input = Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nX-Long: ' + 'a'.repeat(300) + '\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    const ptr = e.malloc(input.length);
    new Uint8Array(memory!.buffer, ptr, input.length).set(input);
    seen.push(`ret ${e.llhttp_execute(parser, ptr, input.length)}`);
    return seen;
  };
  const metered = meterModule(bytes, BIG);
  assert.ok(WebAssembly.validate(metered as BufferSource));
  const expected = await run(bytes);
  assert.ok(expected.includes('complete') && expected.includes('body hello'), expected.join(' | '));
  assert.equal(await run(metered), expected);
});

test('a module cannot reach the counter: it is a global past every index the module was checked against', async () => {
  const bytes = await wat(`(module (global $mine (mut i32) (i32.const 1)) (func (export "touch") (result i32) (global.set $mine (i32.const 99)) (global.get $mine)))`);
  const { metered } = await both(bytes);
  metered[FUEL_SET_EXPORT](1000);
  assert.is(metered.touch(), 99);
  assert.ok(metered[FUEL_GET_EXPORT]() > 900, 'its own global is its own; the fuel only went down by the cost of the call');
});

test('a module that catches the host exception (wasm exception handling) still stops: the next check traps', async () => {
  // catch_all around an endless loop of calls into the host; the host sets the fuel negative when it
  // throws, so the loop after the catch traps at its first check.
  const bytes = await wat(`(module
    (import "env" "work" (func $work))
    (func (export "run") (try (do (loop $l (call $work) (br $l))) (catch_all (loop $again (br $again))))))`);
  const metered = meterModule(bytes, BIG);
  let calls = 0;
  let set: (f: number) => void = () => {};
  const instance = await instantiate(metered, {
    env: {
      work: () => {
        if (++calls === 1000) {
          set(-1);
          throw new Error('budget');
        }
      },
    },
  });
  const e = instance.exports as Record<string, any>;
  set = e[FUEL_SET_EXPORT];
  e[FUEL_SET_EXPORT](BIG);
  assert.throws(() => e.run(), (err: unknown) => err instanceof WebAssembly.RuntimeError && /unreachable/.test(err.message));
  assert.is(calls, 1000);
});

test.run();
