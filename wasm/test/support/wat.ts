// Compiles WebAssembly text to bytes at test time (wabt), so conformance modules live as readable source.
import wabtInit from 'wabt';

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

export async function wat2wasm(source: string, name = 'test.wat'): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat(name, source, { mutable_globals: true, sat_float_to_int: true, bulk_memory: true, multi_value: true });
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/**
 * The boilerplate every conformance module needs: memory, a bump allocator exported as malloc, the ABI
 * marker. `body` adds imports, data and functions. Imports must come first in wat, so pass them apart.
 */
export function guestModule(opts: { imports?: string; body: string; abi?: '0_1_0' | '0_2_0' | '0_2_1'; memoryPages?: number }): string {
  return `(module
  ${opts.imports ?? ''}
  (memory (export "memory") ${opts.memoryPages ?? 2})
  (global $heap (mut i32) (i32.const 32768))
  (func (export "proxy_abi_version_${opts.abi ?? '0_2_1'}"))
  (func $malloc (export "malloc") (param $n i32) (result i32) (local $p i32)
    global.get $heap local.set $p
    global.get $heap local.get $n i32.add i32.const 7 i32.add i32.const -8 i32.and global.set $heap
    local.get $p)
  ${opts.body}
)`;
}
