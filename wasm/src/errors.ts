// One catalogue of the runtime's errors. Callers branch on `code`, never on the message.

export const ErrorCode = {
  NotWasm: 'WASMESH_WASM_NOT_WASM',
  TooLarge: 'WASMESH_WASM_TOO_LARGE',
  NoAbiMarker: 'WASMESH_WASM_NO_ABI_MARKER',
  MissingImport: 'WASMESH_WASM_MISSING_IMPORT',
  NoAllocator: 'WASMESH_WASM_NO_ALLOCATOR',
  NoMemory: 'WASMESH_WASM_NO_MEMORY',
  MemoryLimit: 'WASMESH_WASM_MEMORY_LIMIT',
  LinkFailed: 'WASMESH_WASM_LINK_FAILED',
  InitFailed: 'WASMESH_WASM_INIT_FAILED',
  StartFailed: 'WASMESH_WASM_VM_START_FAILED',
  ConfigureFailed: 'WASMESH_WASM_CONFIGURE_FAILED',
  Trap: 'WASMESH_WASM_TRAP',
  BadConfig: 'WASMESH_WASM_BAD_PLUGIN_CONFIG',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class WasmeshWasmError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WasmeshWasmError';
    this.code = code;
  }
}

/** Thrown by WASI proc_exit so the VM call unwinds; code 0 during startup is a normal finish. */
export class ProcExit extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`module called proc_exit(${exitCode})`);
    this.name = 'ProcExit';
    this.exitCode = exitCode;
  }
}

/** Describes a trap or exception from guest code in one line, for logs and metrics. */
export function describeTrap(err: unknown): string {
  if (err instanceof ProcExit) return err.message;
  if (err instanceof WebAssembly.RuntimeError) return `wasm trap: ${err.message}`;
  if (err instanceof RangeError) return `wasm stack overflow: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
