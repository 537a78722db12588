// proxy_* host functions for logging, time, timers, status, properties, contexts and foreign functions.
import { LogLevel, WasmResult } from '../abi/constants.ts';
import { MAX_FILTER_STATE_ENTRIES, MAX_FOREIGN_ARGS_BYTES, MAX_LOG_MESSAGE_BYTES } from '../limits.ts';
import { CpuBudgetExceeded } from '../errors.ts';
import { parsePropertyPath, resolveProperty, returnProperty } from '../properties.ts';
import { builtinForeignFunctions } from '../foreign.ts';
import type { Vm } from '../vm.ts';

const hrtimeOrigin = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

/** Wall-clock nanoseconds since the epoch with hrtime precision. */
export function realtimeNs(): bigint {
  return hrtimeOrigin + process.hrtime.bigint();
}

export function proxyGeneralImports(vm: Vm) {
  return {
    proxy_log(level: number, ptr: number, len: number): number {
      vm.hostWork();
      if (level < 0 || level > LogLevel.Critical) return WasmResult.BadArgument;
      if (!vm.mem) return WasmResult.InternalFailure;
      if (!vm.mem.inBounds(ptr, len)) return WasmResult.InvalidMemoryAccess;
      if (!vm.logLevelEnabled(level)) return WasmResult.Ok;
      const message = vm.mem.readUtf8(ptr, Math.min(len >>> 0, MAX_LOG_MESSAGE_BYTES))!;
      vm.emitLog(level as LogLevel, message);
      return WasmResult.Ok;
    },

    proxy_get_log_level(pLevel: number): number {
      return vm.mem.writeU32(pLevel, vm.settings.logLevel) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },

    proxy_get_current_time_nanoseconds(pTime: number): number {
      return vm.mem.writeU64(pTime, realtimeNs()) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },

    proxy_set_tick_period_milliseconds(periodMs: number): number {
      const root = vm.ctx?.root ?? vm.root;
      if (!root) return WasmResult.BadArgument;
      vm.setTickPeriod(root, periodMs >>> 0);
      return WasmResult.Ok;
    },

    proxy_get_status(pCode: number, pMsg: number, pMsgLen: number): number {
      vm.hostWork();
      if (!vm.mem.writeU32(pCode, vm.status.code)) return WasmResult.InvalidMemoryAccess;
      // Status messages are text (gRPC messages are UTF-8), not header bytes.
      return vm.returnBytes(Buffer.from(vm.status.message, 'utf8'), pMsg, pMsgLen);
    },

    proxy_get_property(pathPtr: number, pathLen: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (!vm.mem.inBounds(pathPtr, pathLen)) return WasmResult.InvalidMemoryAccess;
      const value = resolveProperty(vm, vm.ctx, vm.propertyPaths.lookup(vm.mem.bytes, pathPtr >>> 0, pathLen >>> 0));
      if (value === undefined) return WasmResult.NotFound;
      return returnProperty(vm, value, pRet, pRetLen);
    },

    proxy_set_property(pathPtr: number, pathLen: number, valPtr: number, valLen: number): number {
      vm.hostWork();
      const raw = vm.mem.readLatin1(pathPtr, pathLen);
      const value = vm.mem.readCopy(valPtr, valLen);
      if (raw === undefined || value === undefined) return WasmResult.InvalidMemoryAccess;
      const ctx = vm.ctx;
      if (!ctx) return WasmResult.NotFound;
      const key = parsePropertyPath(raw).key;
      // In a stream, the value is the stream's filter state: later filters of the chain read it too.
      const info = ctx.streamInfo;
      if (info !== undefined) {
        const state = (info.filterState ??= new Map());
        if (!state.has(key) && state.size >= MAX_FILTER_STATE_ENTRIES) return WasmResult.BadArgument;
        state.set(key, value);
        return WasmResult.Ok;
      }
      (ctx.properties ??= new Map()).set(key, value);
      return WasmResult.Ok;
    },

    proxy_set_effective_context(contextId: number): number {
      const ctx = vm.contexts.get(contextId);
      if (!ctx || ctx.deleted) return WasmResult.BadArgument;
      vm.ctx = ctx;
      return WasmResult.Ok;
    },

    proxy_done(): number {
      const root = vm.ctx?.root;
      if (!root || !root.pendingDone) return WasmResult.NotFound;
      root.pendingDone = false;
      vm.defer(() => vm.finishRootShutdown(root));
      return WasmResult.Ok;
    },

    proxy_call_foreign_function(namePtr: number, nameLen: number, argsPtr: number, argsLen: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (nameLen >>> 0 > 256 || argsLen >>> 0 > MAX_FOREIGN_ARGS_BYTES) return WasmResult.BadArgument;
      const name = vm.mem.readLatin1(namePtr, nameLen);
      const args = vm.mem.readCopy(argsPtr, argsLen);
      if (name === undefined || args === undefined) return WasmResult.InvalidMemoryAccess;
      const fn = vm.settings.host.foreignFunctions?.get(name) ?? builtinForeignFunctions.get(name);
      if (!fn) return WasmResult.NotFound;
      let result: Uint8Array | number;
      try {
        result = fn(args, vm);
      } catch (err) {
        // Past the budget: the guest's next check traps (the fuel is negative), as for hostWork.
        if (err instanceof CpuBudgetExceeded) throw err;
        return WasmResult.InternalFailure;
      }
      if (typeof result === 'number') return result;
      if (pRet === 0) return WasmResult.Ok;
      return vm.returnBytes(result, pRet, pRetLen);
    },

    // ABI 0.1.0: the configuration of the current phase (VM config in on_vm_start, plugin config after).
    proxy_get_configuration(pRet: number, pRetLen: number): number {
      vm.hostWork();
      const root = vm.ctx?.root ?? vm.root;
      if (!root) return WasmResult.NotFound;
      const data = vm.inVmStart ? root.vmConfiguration.bytes() : root.pluginConfiguration.bytes();
      return vm.returnBytes(data, pRet, pRetLen);
    },
  };
}
