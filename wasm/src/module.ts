// Loading a module: validate before anything runs, bound its memory, compile once per version.
import { createHash } from 'node:crypto';
import type { AbiVersion } from './abi/constants.ts';
import { detectAbiVersion } from './abi/version.ts';
import { boundMemory, hasWasmMagic } from './binary.ts';
import { ErrorCode, WasmeshWasmError } from './errors.ts';
import { providedImports } from './imports/index.ts';
import { DEFAULT_MEMORY_LIMIT_BYTES, DEFAULT_STARTUP_CPU_BUDGET, MAX_MODULE_BYTES, WASM_PAGE_BYTES } from './limits.ts';
import { FUEL_GET_EXPORT, FUEL_SET_EXPORT, MeteringError, meterModule } from './metering/metering.ts';
import { readModuleMetadata, readWasmHeader, type ModuleMetadata } from './producers.ts';

export interface CompiledModule {
  /** For messages: a file name or the plugin's name. */
  readonly name: string;
  /** sha256 of the bytes as given (before the memory bound was written in), hex. */
  readonly sha256: string;
  readonly abiVersion: AbiVersion;
  readonly module: WebAssembly.Module;
  readonly byteLength: number;
  readonly memoryLimitBytes: number;
  readonly imports: readonly WebAssembly.ModuleImportDescriptor[];
  /** The module's own exports (the metering accessors the host added are not listed). */
  readonly exports: readonly WebAssembly.ModuleExportDescriptor[];
  /** Every callback runs under a CPU budget (the module was instrumented; always, unless a benchmark turned it off). */
  readonly metered: boolean;
  /** How the module was made, from its producers section (language, compilers, SDK). */
  readonly metadata: ModuleMetadata;
}

export interface CompileOptions {
  name?: string;
  /** Bound on the VM's linear memory; default 64 MiB. Rounded down to whole 64 KiB pages. */
  memoryLimitBytes?: number;
  /**
   * Instrument the module so every callback runs under a CPU budget (default true). Only benchmarks
   * measuring what the budget costs turn it off: an unmetered module can stall the process.
   */
  metering?: boolean;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Validates and compiles module bytes. Throws WasmeshWasmError naming the cause: not wasm, too large,
 * no ABI marker, an import the host does not provide (module.name), no allocator, memory over the bound.
 */
export async function compileModule(bytes: Uint8Array, options: CompileOptions = {}): Promise<CompiledModule> {
  const name = options.name ?? 'module';
  const limit = options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
  if (!Number.isInteger(limit) || limit < WASM_PAGE_BYTES) {
    throw new WasmeshWasmError(ErrorCode.BadConfig, `memory limit must be at least ${WASM_PAGE_BYTES} bytes, got ${limit}`);
  }
  if (bytes.length > MAX_MODULE_BYTES) {
    throw new WasmeshWasmError(ErrorCode.TooLarge, `${name}: module is ${bytes.length} bytes, over the ${MAX_MODULE_BYTES}-byte limit`);
  }
  if (!hasWasmMagic(bytes)) {
    throw new WasmeshWasmError(ErrorCode.NotWasm, `${name}: not a WebAssembly module (no \\0asm header)`);
  }
  if (readHeaderKind(bytes, name) === 'component') {
    throw new WasmeshWasmError(
      ErrorCode.Component,
      `${name}: is a WebAssembly component (component model), not a core module; this host runs proxy-wasm core modules only`,
    );
  }
  const sha256 = sha256Hex(bytes);
  const bounded = boundMemory(bytes, Math.floor(limit / WASM_PAGE_BYTES));
  const metering = options.metering ?? true;
  let instrumented = bounded;
  let meteringError: MeteringError | undefined;
  if (metering) {
    try {
      instrumented = meterModule(bounded, DEFAULT_STARTUP_CPU_BUDGET);
    } catch (err) {
      if (!(err instanceof MeteringError)) throw err;
      meteringError = err;
    }
  }
  let module: WebAssembly.Module;
  try {
    // A module the rewriter could not read is compiled as given only to tell an invalid module (V8 names
    // the problem best) from one that uses an instruction the rewriter does not know; it never runs.
    module = await WebAssembly.compile(instrumented as BufferSource);
  } catch (err) {
    throw new WasmeshWasmError(ErrorCode.NotWasm, `${name}: not a valid WebAssembly module: ${(err as Error).message}`, { cause: err });
  }
  if (meteringError) {
    throw new WasmeshWasmError(ErrorCode.MeteringFailed, `${name}: cannot put the module under a CPU budget: ${meteringError.message}`, { cause: meteringError });
  }
  const exports = WebAssembly.Module.exports(module).filter((e) => e.name !== FUEL_SET_EXPORT && e.name !== FUEL_GET_EXPORT);
  const imports = WebAssembly.Module.imports(module);
  const abiVersion = detectAbiVersion(exports);
  if (!abiVersion) {
    throw new WasmeshWasmError(
      ErrorCode.NoAbiMarker,
      `${name}: no proxy-wasm ABI version marker (export proxy_abi_version_0_2_1, _0_2_0 or _0_1_0); is this a proxy-wasm filter?`,
    );
  }
  const provided = providedImports();
  for (const imp of imports) {
    if (imp.kind !== 'function') {
      throw new WasmeshWasmError(ErrorCode.MissingImport, `${name}: imports ${imp.kind} ${imp.module}.${imp.name}; the host provides only functions`);
    }
    if (!provided.has(`${imp.module}.${imp.name}`)) {
      throw new WasmeshWasmError(ErrorCode.MissingImport, `${name}: imports ${imp.module}.${imp.name}, which the host does not provide`);
    }
  }
  if (!exports.some((e) => e.name === 'memory' && e.kind === 'memory')) {
    throw new WasmeshWasmError(ErrorCode.NoMemory, `${name}: does not export its memory as "memory"`);
  }
  if (!exports.some((e) => (e.name === 'proxy_on_memory_allocate' || e.name === 'malloc') && e.kind === 'function')) {
    throw new WasmeshWasmError(ErrorCode.NoAllocator, `${name}: exports neither proxy_on_memory_allocate nor malloc; the host cannot return data to it`);
  }
  let metadata: ModuleMetadata;
  try {
    metadata = readModuleMetadata(bytes);
  } catch (err) {
    // V8 compiled it, so the framing is sound; only a custom section's name can still be unreadable.
    metadata = { kind: 'core', binaryVersion: 1, problems: [(err as Error).message] };
  }
  return Object.freeze({ name, sha256, abiVersion, module, byteLength: bytes.length, memoryLimitBytes: limit, imports, exports, metered: metering, metadata });
}

function readHeaderKind(bytes: Uint8Array, name: string): 'core' | 'component' {
  try {
    return readWasmHeader(bytes).kind;
  } catch (err) {
    throw new WasmeshWasmError(ErrorCode.NotWasm, `${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Compile once per version: modules keyed by sha256 and memory bound, shared by every plugin using them. */
export class ModuleCache {
  readonly #entries = new Map<string, Promise<CompiledModule>>();

  get(bytes: Uint8Array, options: CompileOptions = {}): Promise<CompiledModule> {
    const key = `${sha256Hex(bytes)}:${options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES}:${options.metering ?? true}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = compileModule(bytes, options);
      this.#entries.set(key, entry);
      // A failed compile is not cached: the same bytes fail again with the same message anyway.
      entry.catch(() => this.#entries.delete(key));
    }
    return entry;
  }

  /** Drops a module (by sha256) that no plugin references any more. */
  delete(sha256: string): void {
    for (const key of this.#entries.keys()) if (key.startsWith(`${sha256}:`)) this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}
