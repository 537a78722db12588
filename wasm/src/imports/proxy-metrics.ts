// proxy_* metric host functions. Ids carry the type in the low two bits, as cpp-host numbers them.
import { MetricType, WasmResult } from '../abi/constants.ts';
import type { Metric } from '../metrics/registry.ts';
import type { Vm } from '../vm.ts';

function lookup(vm: Vm, id: number): Metric | undefined {
  const index = (id >>> 2) - 1;
  const metric = index >= 0 ? vm.metrics[index] : undefined;
  return metric && metric.type === (id & 3) ? metric : undefined;
}

export function proxyMetricImports(vm: Vm) {
  return {
    proxy_define_metric(type: number, namePtr: number, nameLen: number, pId: number): number {
      vm.hostWork();
      if (type >>> 0 > MetricType.Histogram) return WasmResult.BadArgument;
      const name = vm.mem.readUtf8(namePtr, nameLen);
      if (name === undefined || !vm.mem.inBounds(pId, 4)) return WasmResult.InvalidMemoryAccess;
      const metric = vm.settings.host.metrics.define(type as MetricType, name);
      if (!metric) return WasmResult.BadArgument;
      let index = vm.metrics.indexOf(metric);
      if (index < 0) index = vm.metrics.push(metric) - 1;
      return vm.mem.writeU32(pId, ((index + 1) << 2) | type) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },

    proxy_increment_metric(id: number, delta: bigint): number {
      vm.hostWork();
      const metric = lookup(vm, id);
      if (!metric) return WasmResult.NotFound;
      return metric.increment(Number(delta)) ? WasmResult.Ok : WasmResult.BadArgument;
    },

    proxy_record_metric(id: number, value: bigint): number {
      vm.hostWork();
      const metric = lookup(vm, id);
      if (!metric) return WasmResult.NotFound;
      // The ABI passes a u64 here (Envoy reads it unsigned).
      return metric.record(Number(BigInt.asUintN(64, value))) ? WasmResult.Ok : WasmResult.BadArgument;
    },

    proxy_get_metric(id: number, pRet: number): number {
      vm.hostWork();
      const metric = lookup(vm, id);
      if (!metric) return WasmResult.NotFound;
      const value = metric.get();
      if (value === undefined) return WasmResult.BadArgument;
      return vm.mem.writeU64(pRet, BigInt(Math.trunc(value))) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },
  };
}
