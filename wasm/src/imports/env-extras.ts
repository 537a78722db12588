// Non-proxy `env` imports that real builds carry: AssemblyScript's abort/trace/seed, Emscripten's
// memory-growth notice and pthread_equal, Envoy's DNS call (not offered).
import { LogLevel, WasmResult } from '../abi/constants.ts';
import type { Vm } from '../vm.ts';

/** AssemblyScript strings: UTF-16LE, byte length stored at ptr - 4. */
function readAsString(vm: Vm, ptr: number): string {
  if (ptr === 0 || !vm.mem) return '';
  const len = vm.mem.readU32(ptr - 4);
  if (len === undefined || !vm.mem.inBounds(ptr, len)) return '';
  return vm.mem.bytes.toString('utf16le', ptr >>> 0, (ptr >>> 0) + len);
}

export function envExtraImports(vm: Vm) {
  return {
    abort(msgPtr: number, filePtr: number, line: number, column: number): never {
      const message = `abort: ${readAsString(vm, msgPtr)} at ${readAsString(vm, filePtr)}:${line}:${column}`;
      vm.emitLog(LogLevel.Critical, message);
      throw new WebAssembly.RuntimeError(message);
    },
    trace(msgPtr: number, n: number, ...args: number[]): void {
      vm.hostWork();
      if (vm.logLevelEnabled(LogLevel.Trace)) vm.emitLog(LogLevel.Trace, `trace: ${readAsString(vm, msgPtr)} ${args.slice(0, n).join(', ')}`);
    },
    seed(): number {
      return Math.random() * Number.MAX_SAFE_INTEGER;
    },
    emscripten_notify_memory_growth(): void {},
    pthread_equal(a: number, b: number): number {
      return a === b ? 1 : 0;
    },
    envoy_resolve_dns(): number {
      return WasmResult.Unimplemented;
    },
  };
}
