// proxy_* host functions that steer the stream: continue, close, local responses (and ABI 0.1.0 forms).
import { StreamType, WasmResult } from '../abi/constants.ts';
import { decodePairs } from '../pairs.ts';
import type { Vm } from '../vm.ts';

const WHITESPACE = /\s/g;

export function proxyStreamImports(vm: Vm) {
  return {
    proxy_continue_stream(type: number): number {
      if (type >>> 0 > StreamType.Upstream) return WasmResult.BadArgument;
      // Envoy cannot resume an upstream (write) direction; a TCP connection here can (network-stream.ts).
      if (type === StreamType.Upstream && !vm.ctx?.resumesUpstream) return WasmResult.Unimplemented;
      return vm.ctx ? vm.ctx.continueStream(type) : WasmResult.NotFound;
    },

    proxy_close_stream(type: number): number {
      if (type >>> 0 > StreamType.Upstream) return WasmResult.BadArgument;
      return vm.ctx ? vm.ctx.closeStream(type) : WasmResult.NotFound;
    },

    proxy_send_local_response(
      status: number, detailsPtr: number, detailsLen: number, bodyPtr: number, bodyLen: number,
      headersPtr: number, headersLen: number, grpcStatus: number,
    ): number {
      vm.hostWork();
      // A reply larger than a response may be is refused before its bytes are copied out.
      const limits = vm.settings.outputLimits;
      if (vm.ctx && ((bodyLen >>> 0) > vm.settings.maxBufferedBodyBytes || (headersLen >>> 0) > limits.responseHeaderBytes * 2)) {
        return vm.ctx.outputTooLarge('local_reply');
      }
      const details = vm.mem.readLatin1(detailsPtr, detailsLen);
      const body = vm.mem.readCopy(bodyPtr, bodyLen);
      if (details === undefined || body === undefined || !vm.mem.inBounds(headersPtr, headersLen)) return WasmResult.InvalidMemoryAccess;
      const headers = decodePairs(vm.mem.bytes, headersPtr >>> 0, headersLen >>> 0, true);
      if (headers === undefined) return WasmResult.BadArgument;
      if (status < 100 || status > 999) return WasmResult.BadArgument;
      if (!vm.ctx) return WasmResult.NotFound;
      return vm.ctx.sendLocalResponse({
        status,
        details: details.replace(WHITESPACE, '_'),
        body,
        headers,
        grpcStatus: grpcStatus >= 0 && grpcStatus <= 16 ? grpcStatus : -1,
      });
    },

    // ABI 0.1.0.
    proxy_continue_request(): number {
      return vm.ctx ? vm.ctx.continueStream(StreamType.HttpRequest) : WasmResult.NotFound;
    },
    proxy_continue_response(): number {
      return vm.ctx ? vm.ctx.continueStream(StreamType.HttpResponse) : WasmResult.NotFound;
    },
    /** Routes are picked after the filter chain here, so there is no cache to clear. */
    proxy_clear_route_cache(): number {
      return WasmResult.Ok;
    },
  };
}
