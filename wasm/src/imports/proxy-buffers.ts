// proxy_* host functions over body, callout, configuration and foreign-call buffers.
import { BufferType, MAX_BUFFER_TYPE, WasmResult } from '../abi/constants.ts';
import type { OutputKind } from '../context.ts';
import type { Vm } from '../vm.ts';

/** What a write past a buffer's bound is reported as (wasmesh_wasm_output_limit_total{what}). */
function bufferKind(type: number): OutputKind {
  switch (type) {
    case BufferType.HttpRequestBody:
      return 'request_body';
    case BufferType.DownstreamData:
      return 'downstream_data';
    case BufferType.UpstreamData:
      return 'upstream_data';
    default:
      return 'response_body';
  }
}

export function proxyBufferImports(vm: Vm) {
  return {
    proxy_get_buffer_bytes(type: number, start: number, maxSize: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_BUFFER_TYPE) return WasmResult.BadArgument;
      const slot = vm.ctx?.getBuffer(type) ?? (vm.ctx ? undefined : vm.root?.getBuffer(type));
      if (!slot) return WasmResult.NotFound;
      const data = slot.bytes();
      const from = Math.min(start >>> 0, data.length);
      const to = Math.min(from + (maxSize >>> 0), data.length);
      return vm.returnBytes(data.subarray(from, to), pRet, pRetLen);
    },

    proxy_set_buffer_bytes(type: number, start: number, size: number, dataPtr: number, dataLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_BUFFER_TYPE) return WasmResult.BadArgument;
      if (!vm.mem.inBounds(dataPtr, dataLen)) return WasmResult.InvalidMemoryAccess;
      const slot = vm.ctx?.getBuffer(type);
      if (!slot) return WasmResult.NotFound;
      if (!slot.replace) return WasmResult.BadArgument;
      // The spec's general form: bytes [start, start+size) are replaced by data. start past the end appends.
      const old = slot.bytes();
      const from = Math.min(start >>> 0, old.length);
      const to = Math.min(from + (size >>> 0), old.length);
      if (slot.maxBytes !== undefined && from + (dataLen >>> 0) + (old.length - to) > slot.maxBytes) {
        return vm.ctx!.outputTooLarge(bufferKind(type));
      }
      const data = vm.mem.readCopy(dataPtr, dataLen)!;
      const next = Buffer.allocUnsafe(from + data.length + (old.length - to));
      next.set(old.subarray(0, from), 0);
      next.set(data, from);
      next.set(old.subarray(to), from + data.length);
      slot.replace(next);
      return WasmResult.Ok;
    },

    proxy_get_buffer_status(type: number, pLen: number, pFlags: number): number {
      if (type >>> 0 > MAX_BUFFER_TYPE) return WasmResult.BadArgument;
      const slot = vm.ctx?.getBuffer(type);
      if (!slot) return WasmResult.NotFound;
      if (!vm.mem.writeU32(pLen, slot.bytes().length) || !vm.mem.writeU32(pFlags, 0)) return WasmResult.InvalidMemoryAccess;
      return WasmResult.Ok;
    },
  };
}
