// proxy_http_call and the gRPC callouts: validated here, carried out by the embedder's PluginHost.
import { WasmResult } from '../abi/constants.ts';
import { decodePairs, headerGet } from '../pairs.ts';
import type { Vm } from '../vm.ts';

export function proxyCalloutImports(vm: Vm) {
  return {
    proxy_http_call(
      upPtr: number, upLen: number, hPtr: number, hLen: number, bPtr: number, bLen: number,
      tPtr: number, tLen: number, timeoutMs: number, pToken: number,
    ): number {
      vm.hostWork();
      const upstream = vm.mem.readLatin1(upPtr, upLen);
      const body = vm.mem.readCopy(bPtr, bLen);
      if (upstream === undefined || body === undefined || !vm.mem.inBounds(hPtr, hLen) || !vm.mem.inBounds(tPtr, tLen) || !vm.mem.inBounds(pToken, 4)) {
        return WasmResult.InvalidMemoryAccess;
      }
      const headers = decodePairs(vm.mem.bytes, hPtr >>> 0, hLen >>> 0, true);
      const trailers = decodePairs(vm.mem.bytes, tPtr >>> 0, tLen >>> 0, true);
      if (headers === undefined || trailers === undefined) return WasmResult.BadArgument;
      if (headerGet(headers, ':method') === undefined || headerGet(headers, ':path') === undefined || headerGet(headers, ':authority') === undefined) {
        return WasmResult.BadArgument;
      }
      const root = vm.ctx?.root ?? vm.root;
      if (!root) return WasmResult.BadArgument;
      return vm.callouts.startHttp(root, { upstream, headers, body, trailers, timeoutMs: timeoutMs >>> 0 }, pToken);
    },

    proxy_grpc_call(
      upPtr: number, upLen: number, svcPtr: number, svcLen: number, mPtr: number, mLen: number,
      mdPtr: number, mdLen: number, msgPtr: number, msgLen: number, timeoutMs: number, pToken: number,
    ): number {
      vm.hostWork();
      const upstream = vm.mem.readLatin1(upPtr, upLen);
      const service = vm.mem.readLatin1(svcPtr, svcLen);
      const method = vm.mem.readLatin1(mPtr, mLen);
      const message = vm.mem.readCopy(msgPtr, msgLen);
      if (upstream === undefined || service === undefined || method === undefined || message === undefined || !vm.mem.inBounds(mdPtr, mdLen) || !vm.mem.inBounds(pToken, 4)) {
        return WasmResult.InvalidMemoryAccess;
      }
      const initialMetadata = decodePairs(vm.mem.bytes, mdPtr >>> 0, mdLen >>> 0, true);
      if (initialMetadata === undefined) return WasmResult.BadArgument;
      const root = vm.ctx?.root ?? vm.root;
      if (!root) return WasmResult.BadArgument;
      return vm.callouts.startGrpc(root, { upstream, service, method, initialMetadata, message, timeoutMs: timeoutMs >>> 0 }, pToken);
    },

    /** Streaming gRPC callouts are not offered by this host yet: the module is told so. */
    proxy_grpc_stream(): number {
      vm.hostWork();
      return WasmResult.Unimplemented;
    },
    proxy_grpc_send(token: number): number {
      vm.hostWork();
      return vm.callouts.hasGrpc(token) ? WasmResult.BadArgument : WasmResult.NotFound;
    },
    proxy_grpc_cancel(token: number): number {
      return vm.callouts.cancelGrpc(token) ? WasmResult.Ok : WasmResult.NotFound;
    },
    proxy_grpc_close(token: number): number {
      return vm.callouts.cancelGrpc(token) ? WasmResult.Ok : WasmResult.NotFound;
    },
  };
}
