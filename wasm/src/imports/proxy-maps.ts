// proxy_* host functions over header, trailer and metadata maps.
import { MAX_MAP_TYPE, MapType, WasmResult } from '../abi/constants.ts';
import type { OutputKind } from '../context.ts';
import { findHeader } from '../latin1.ts';
import { decodePairs, headerRemove, headerSet, pairsByteLength } from '../pairs.ts';
import type { Vm } from '../vm.ts';

export function proxyMapImports(vm: Vm) {
  const legacyAbi = vm.compiled.abiVersion === '0.1.0';
  return {
    proxy_get_header_map_value(type: number, keyPtr: number, keyLen: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      if (!vm.mem.inBounds(keyPtr, keyLen)) return WasmResult.InvalidMemoryAccess;
      const map = vm.ctx?.getMap(type);
      // Unavailable maps read as missing keys: strict SDKs panic on BadArgument (envoy#26485).
      // The key is matched against guest bytes in place: no string is made for it.
      const at = map === undefined ? -1 : findHeader(map, vm.mem.bytes, keyPtr >>> 0, keyLen >>> 0);
      if (at < 0) return legacyAbi ? vm.returnLatin1('', pRet, pRetLen) : WasmResult.NotFound;
      return vm.returnLatin1(map![at + 1], pRet, pRetLen);
    },

    proxy_add_header_map_value(type: number, keyPtr: number, keyLen: number, valPtr: number, valLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      // Refused before the bytes are copied out: a 32 MiB value never becomes a string.
      if ((keyLen >>> 0) + (valLen >>> 0) > (vm.ctx?.mapWriteLimit(type) ?? Infinity)) return vm.ctx!.outputTooLarge(outputKindOfMap(type));
      const key = vm.mem.readHeaderName(keyPtr, keyLen);
      const value = vm.mem.readLatin1(valPtr, valLen);
      if (key === undefined || value === undefined) return WasmResult.InvalidMemoryAccess;
      const map = vm.ctx?.writableMap(type);
      if (map === undefined) return WasmResult.BadArgument;
      map.push(key, value);
      return WasmResult.Ok;
    },

    proxy_replace_header_map_value(type: number, keyPtr: number, keyLen: number, valPtr: number, valLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      // Refused before the bytes are copied out: a 32 MiB value never becomes a string.
      if ((keyLen >>> 0) + (valLen >>> 0) > (vm.ctx?.mapWriteLimit(type) ?? Infinity)) return vm.ctx!.outputTooLarge(outputKindOfMap(type));
      const key = vm.mem.readHeaderName(keyPtr, keyLen);
      const value = vm.mem.readLatin1(valPtr, valLen);
      if (key === undefined || value === undefined) return WasmResult.InvalidMemoryAccess;
      const map = vm.ctx?.writableMap(type);
      if (map === undefined) return WasmResult.BadArgument;
      headerSet(map, key, value);
      return WasmResult.Ok;
    },

    proxy_remove_header_map_value(type: number, keyPtr: number, keyLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      const key = vm.mem.readHeaderName(keyPtr, keyLen);
      if (key === undefined) return WasmResult.InvalidMemoryAccess;
      const map = vm.ctx?.writableMap(type);
      if (map === undefined) return WasmResult.BadArgument;
      headerRemove(map, key);
      return WasmResult.Ok;
    },

    proxy_get_header_map_pairs(type: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      return vm.returnPairs(vm.ctx?.getMap(type) ?? EMPTY, pRet, pRetLen);
    },

    proxy_set_header_map_pairs(type: number, ptr: number, len: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      if (len >>> 0 > (vm.ctx?.mapWriteLimit(type) ?? Infinity) * 2) return vm.ctx!.outputTooLarge(outputKindOfMap(type));
      if (!vm.mem.inBounds(ptr, len)) return WasmResult.InvalidMemoryAccess;
      const decoded = decodePairs(vm.mem.bytes, ptr >>> 0, len >>> 0, true);
      // Unlike cpp-host (which would clear the map), malformed pairs are refused and change nothing.
      if (decoded === undefined) return WasmResult.BadArgument;
      const map = vm.ctx?.writableMap(type);
      if (map === undefined) return WasmResult.BadArgument;
      map.length = 0;
      for (let i = 0; i < decoded.length; i++) map.push(decoded[i]);
      return WasmResult.Ok;
    },

    proxy_get_header_map_size(type: number, pSize: number): number {
      vm.hostWork();
      if (type >>> 0 > MAX_MAP_TYPE) return WasmResult.BadArgument;
      const map = vm.ctx?.getMap(type);
      if (map === undefined) return WasmResult.BadArgument;
      return vm.mem.writeU32(pSize, pairsByteLength(map)) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },
  };
}

const EMPTY: string[] = [];

function outputKindOfMap(type: number): OutputKind {
  switch (type) {
    case MapType.HttpRequestHeaders:
      return 'request_headers';
    case MapType.HttpRequestTrailers:
      return 'request_trailers';
    case MapType.HttpResponseTrailers:
      return 'response_trailers';
    default:
      return 'response_headers';
  }
}
