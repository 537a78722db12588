// Loading a module: every refusal names its cause (with a stable code), the ABI version is read from
// the first marker export, the memory bound is checked up front, and identical bytes compile once.
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ErrorCode, WasmeshWasmError } from '../src/errors.ts';
import { compileModule, ModuleCache } from '../src/module.ts';
import { Plugin } from '../src/plugin.ts';
import { guestModule, wat2wasm } from './support/wat.ts';

/** Awaits `p`, expecting a WasmeshWasmError; returns it. */
async function refusal(p: Promise<unknown>): Promise<WasmeshWasmError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, WasmeshWasmError, err === undefined ? 'expected the module to be refused, but it loaded' : `expected a WasmeshWasmError, got ${String(err)}`);
  return err as WasmeshWasmError;
}

const minimal = () => guestModule({ body: '' });

test('random bytes are not wasm', async () => {
  let bytes = randomBytes(256);
  bytes[0] = 0x7f; // never the \0asm magic
  const err = await refusal(compileModule(bytes, { name: 'noise.bin' }));
  assert.is(err.code, ErrorCode.NotWasm);
  assert.match(err.message, /noise\.bin/);
  assert.is((await refusal(compileModule(new Uint8Array(0)))).code, ErrorCode.NotWasm);
});

test('a truncated module is not wasm', async () => {
  const bytes = await wat2wasm(minimal());
  // Sanity: the whole module loads.
  await compileModule(bytes);
  for (const cut of [9, Math.floor(bytes.length / 2), bytes.length - 3]) {
    const err = await refusal(compileModule(bytes.subarray(0, cut), { name: 'cut.wasm' }));
    assert.is(err.code, ErrorCode.NotWasm, `cut at ${cut}: ${err.message}`);
  }
});

test('a module without an ABI version marker is refused', async () => {
  const wat = `(module
    (memory (export "memory") 1)
    (func (export "malloc") (param i32) (result i32) (i32.const 1024))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))`;
  const err = await refusal(compileModule(await wat2wasm(wat), { name: 'plain.wasm' }));
  assert.is(err.code, ErrorCode.NoAbiMarker);
  assert.match(err.message, /plain\.wasm/);
  assert.match(err.message, /proxy_abi_version/);
});

test('an import the host does not provide is refused, naming it', async () => {
  const wat = guestModule({ imports: '(import "env" "some_func" (func (param i32) (result i32)))', body: '' });
  const err = await refusal(compileModule(await wat2wasm(wat), { name: 'needs.wasm' }));
  assert.is(err.code, ErrorCode.MissingImport);
  assert.match(err.message, 'env.some_func');
  // A known name in an unknown module is just as missing.
  const other = guestModule({ imports: '(import "other" "proxy_log" (func (param i32 i32 i32) (result i32)))', body: '' });
  const err2 = await refusal(compileModule(await wat2wasm(other)));
  assert.is(err2.code, ErrorCode.MissingImport);
  assert.match(err2.message, 'other.proxy_log');
});

test('memory and global imports are refused: the host provides only functions', async () => {
  const memImport = `(module
    (import "env" "memory" (memory 1))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "malloc") (param i32) (result i32) (i32.const 1024)))`;
  const err = await refusal(compileModule(await wat2wasm(memImport)));
  assert.is(err.code, ErrorCode.MissingImport);
  assert.match(err.message, 'env.memory');
  assert.match(err.message, /memory/);

  const globalImport = guestModule({ imports: '(import "env" "__stack_pointer" (global (mut i32)))', body: '' });
  const err2 = await refusal(compileModule(await wat2wasm(globalImport)));
  assert.is(err2.code, ErrorCode.MissingImport);
  assert.match(err2.message, 'env.__stack_pointer');
  assert.match(err2.message, /global/);
});

test('a module without an allocator export is refused', async () => {
  const wat = `(module
    (memory (export "memory") 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "free") (param i32)))`;
  const err = await refusal(compileModule(await wat2wasm(wat), { name: 'noalloc.wasm' }));
  assert.is(err.code, ErrorCode.NoAllocator);
  assert.match(err.message, /noalloc\.wasm/);
  // proxy_on_memory_allocate alone is enough.
  const preferred = `(module
    (memory (export "memory") 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024)))`;
  const ok = await compileModule(await wat2wasm(preferred));
  assert.is(ok.abiVersion, '0.2.1');
});

test('a module that does not export its memory is refused', async () => {
  const wat = `(module
    (memory 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "malloc") (param i32) (result i32) (i32.const 1024)))`;
  const err = await refusal(compileModule(await wat2wasm(wat), { name: 'nomem.wasm' }));
  assert.is(err.code, ErrorCode.NoMemory);
  assert.match(err.message, /nomem\.wasm/);
  // Memory exported under another name does not count either.
  const renamed = `(module
    (memory (export "mem") 1)
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "malloc") (param i32) (result i32) (i32.const 1024)))`;
  assert.is((await refusal(compileModule(await wat2wasm(renamed)))).code, ErrorCode.NoMemory);
});

test('the ABI version comes from the marker export', async () => {
  for (const [abi, version] of [['0_1_0', '0.1.0'], ['0_2_0', '0.2.0'], ['0_2_1', '0.2.1']] as const) {
    const compiled = await compileModule(await wat2wasm(guestModule({ abi, body: '' })));
    assert.is(compiled.abiVersion, version);
  }
});

test('with several markers, the first in export order wins', async () => {
  const twoMarkers = (first: string, second: string) => `(module
    (memory (export "memory") 1)
    (func (export "proxy_abi_version_${first}"))
    (func (export "malloc") (param i32) (result i32) (i32.const 1024))
    (func (export "proxy_abi_version_${second}")))`;
  assert.is((await compileModule(await wat2wasm(twoMarkers('0_1_0', '0_2_1')))).abiVersion, '0.1.0');
  assert.is((await compileModule(await wat2wasm(twoMarkers('0_2_1', '0_1_0')))).abiVersion, '0.2.1');
  assert.is((await compileModule(await wat2wasm(twoMarkers('0_2_0', '0_2_1')))).abiVersion, '0.2.0');
});

test('a module whose initial memory exceeds the memory limit is refused', async () => {
  const bytes = await wat2wasm(guestModule({ body: '', memoryPages: 5 }));
  const err = await refusal(compileModule(bytes, { memoryLimitBytes: 4 * 65536 }));
  assert.is(err.code, ErrorCode.MemoryLimit);
  assert.match(err.message, /5 pages/);
  // Plugin.load passes the bound through: the plugin never starts.
  const viaPlugin = await refusal(Plugin.load(bytes, { name: 'big' }, {}, { memoryLimitBytes: 4 * 65536 }));
  assert.is(viaPlugin.code, ErrorCode.MemoryLimit);
  // Exactly at the bound is fine.
  const atBound = await compileModule(bytes, { memoryLimitBytes: 5 * 65536 });
  assert.is(atBound.memoryLimitBytes, 5 * 65536);
  // A bound under one page is a configuration error.
  assert.is((await refusal(compileModule(bytes, { memoryLimitBytes: 1000 }))).code, ErrorCode.BadConfig);
});

test('ModuleCache compiles identical bytes once', async () => {
  const cache = new ModuleCache();
  const bytes = await wat2wasm(minimal());
  const first = await cache.get(bytes);
  const again = await cache.get(Uint8Array.from(bytes));
  assert.ok(first === again, 'identical bytes give the same compiled module back');
  // Concurrent requests share one compile too.
  const other = await wat2wasm(guestModule({ abi: '0_2_0', body: '' }));
  const [a, b] = await Promise.all([cache.get(other), cache.get(other)]);
  assert.ok(a === b);
  assert.ok(a !== first, 'different bytes compile separately');
  assert.is(a.abiVersion, '0.2.0');
  // A different memory bound is a different compiled module (the bound is written into it).
  const bounded = await cache.get(bytes, { memoryLimitBytes: 4 * 65536 });
  assert.ok(bounded !== first);
  assert.is(bounded.memoryLimitBytes, 4 * 65536);
  assert.is(cache.size, 3);
  // A refused module is not kept: it is refused again, with the same cause.
  const bad = randomBytes(64);
  bad[0] = 0x7f;
  assert.is((await refusal(cache.get(bad))).code, ErrorCode.NotWasm);
  assert.is((await refusal(cache.get(bad))).code, ErrorCode.NotWasm);
  assert.is(cache.size, 3);
  cache.delete(first.sha256);
  assert.is(cache.size, 1);
  assert.ok((await cache.get(bytes)) !== first, 'after delete, the bytes are compiled again');
});

test.run();
