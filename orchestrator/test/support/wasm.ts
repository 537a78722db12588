// Small proxy-wasm modules for upload tests, compiled from text with wabt.
import wabtInit from 'wabt';

let wabt: Awaited<ReturnType<typeof wabtInit>> | undefined;

export async function wat2wasm(source: string): Promise<Uint8Array> {
  wabt ??= await wabtInit();
  const mod = wabt.parseWat('test.wat', source);
  try {
    mod.resolveNames();
    mod.validate();
    return new Uint8Array(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

/** A module the host accepts: memory, an allocator, the ABI marker, and `imports` (wat import lines). */
export function filterWat(opts: { imports?: string; abiMarker?: boolean; salt?: number } = {}): string {
  return `(module
  ${opts.imports ?? ''}
  (memory (export "memory") 1)
  ${opts.abiMarker === false ? '' : '(func (export "proxy_abi_version_0_2_1"))'}
  (func (export "malloc") (param i32) (result i32) (i32.const ${opts.salt ?? 1024}))
)`;
}

export async function goodModule(salt = 1024): Promise<Uint8Array> {
  return wat2wasm(filterWat({ salt }));
}
