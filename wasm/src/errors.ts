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
  /** The module could not be instrumented for the CPU budget (an instruction the rewriter does not know). */
  MeteringFailed: 'WASMESH_WASM_METERING_FAILED',
  BadConfig: 'WASMESH_WASM_BAD_PLUGIN_CONFIG',
  /** A WebAssembly component (component model), not a core module: the proxy-wasm host cannot run it. */
  Component: 'WASMESH_WASM_COMPONENT',
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

/**
 * Why a VM failed, as the `cause` label of the trap counter says it. `cpu_budget`: a callback ran
 * past its budget; `memory`: the module failed with its memory at the bound (out of memory, however
 * its SDK reports it); `stack_overflow`: call depth; `unreachable`, `memory_access`, `arithmetic`,
 * `indirect_call`: the wasm trap of that kind; `abort`: the SDK's abort (AssemblyScript) or panic
 * hook; `exit`: WASI proc_exit; `host`: an exception from a host function.
 */
export type TrapCause = 'cpu_budget' | 'memory' | 'stack_overflow' | 'unreachable' | 'memory_access' | 'arithmetic' | 'indirect_call' | 'abort' | 'exit' | 'host' | 'trap';

/** Thrown by a host function when the callback's budget ran out inside the host (a loop of host calls). */
export class CpuBudgetExceeded extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CpuBudgetExceeded';
  }
}

/**
 * Classifies a failure. `budgetSpent`: the fuel counter went negative (the instrumentation's own trap);
 * `memoryFull`: the VM's memory cannot grow by another page.
 */
export function trapCause(err: unknown, budgetSpent: boolean, memoryFull: boolean): TrapCause {
  if (budgetSpent || err instanceof CpuBudgetExceeded) return 'cpu_budget';
  let cause: TrapCause;
  if (err instanceof ProcExit) cause = 'exit';
  else if (err instanceof RangeError) return 'stack_overflow';
  else if (err instanceof WebAssembly.RuntimeError) {
    const m = err.message;
    if (m.startsWith('abort:')) cause = 'abort';
    else if (m.includes('unreachable')) cause = 'unreachable';
    else if (m.includes('memory access') || m.includes('out of bounds memory')) cause = 'memory_access';
    else if (m.includes('by zero') || m.includes('overflow') || m.includes('unrepresentable') || m.includes('float')) cause = 'arithmetic';
    else if (m.includes('table') || m.includes('signature') || m.includes('function')) cause = 'indirect_call';
    else cause = 'trap';
  } else cause = 'host';
  // However the SDK says it (a panic, abort, exit, or a stray access), a failure at the memory bound is out of memory.
  if (memoryFull && cause !== 'arithmetic' && cause !== 'indirect_call' && cause !== 'host') return 'memory';
  return cause;
}

/** Describes a trap or exception from guest code in one line, for logs and metrics. */
export function describeTrap(err: unknown): string {
  if (err instanceof ProcExit) return err.message;
  if (err instanceof WebAssembly.RuntimeError) return `wasm trap: ${err.message}`;
  if (err instanceof RangeError) return `wasm stack overflow: ${err.message}`;
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}
