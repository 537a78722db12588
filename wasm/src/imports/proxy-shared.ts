// proxy_* host functions over shared data (with compare-and-swap) and shared queues.
import { WasmResult } from '../abi/constants.ts';
import type { Vm } from '../vm.ts';

export function proxySharedImports(vm: Vm) {
  const data = () => vm.settings.host.sharedData;
  const queues = () => vm.settings.host.sharedQueues;
  return {
    proxy_get_shared_data(keyPtr: number, keyLen: number, pRet: number, pRetLen: number, pCas: number): number {
      vm.hostWork();
      const key = vm.mem.readLatin1(keyPtr, keyLen);
      if (key === undefined || !vm.mem.inBounds(pCas, 4)) return WasmResult.InvalidMemoryAccess;
      const entry = data().get(vm.settings.vmId, key);
      if (!entry) return WasmResult.NotFound;
      if (!vm.mem.writeU32(pCas, entry.cas)) return WasmResult.InvalidMemoryAccess;
      return vm.returnBytes(entry.value, pRet, pRetLen);
    },

    proxy_set_shared_data(keyPtr: number, keyLen: number, valPtr: number, valLen: number, cas: number): number {
      vm.hostWork();
      const key = vm.mem.readLatin1(keyPtr, keyLen);
      const value = vm.mem.readCopy(valPtr, valLen);
      if (key === undefined || value === undefined) return WasmResult.InvalidMemoryAccess;
      return data().set(vm.settings.vmId, key, value, cas >>> 0) === 'ok' ? WasmResult.Ok : WasmResult.CasMismatch;
    },

    proxy_register_shared_queue(namePtr: number, nameLen: number, pId: number): number {
      vm.hostWork();
      const name = vm.mem.readLatin1(namePtr, nameLen);
      if (name === undefined || !vm.mem.inBounds(pId, 4)) return WasmResult.InvalidMemoryAccess;
      const root = vm.ctx?.root ?? vm.root;
      if (!root) return WasmResult.BadArgument;
      const id = queues().register(vm.settings.vmId, name, vm.queueOwnerFor(root));
      return vm.mem.writeU32(pId, id) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },

    proxy_resolve_shared_queue(vmIdPtr: number, vmIdLen: number, namePtr: number, nameLen: number, pId: number): number {
      vm.hostWork();
      // The vm_id is compared with the configured one, a JS string: decode it as the text it is.
      const vmId = vm.mem.readUtf8(vmIdPtr, vmIdLen);
      const name = vm.mem.readLatin1(namePtr, nameLen);
      if (vmId === undefined || name === undefined || !vm.mem.inBounds(pId, 4)) return WasmResult.InvalidMemoryAccess;
      const id = queues().resolve(vmId === '' ? vm.settings.vmId : vmId, name);
      if (id === undefined) return WasmResult.NotFound;
      return vm.mem.writeU32(pId, id) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
    },

    proxy_enqueue_shared_queue(queueId: number, valPtr: number, valLen: number): number {
      vm.hostWork();
      const value = vm.mem.readCopy(valPtr, valLen);
      if (value === undefined) return WasmResult.InvalidMemoryAccess;
      const r = queues().enqueue(queueId >>> 0, value);
      return r === 'ok' ? WasmResult.Ok : r === 'not-found' ? WasmResult.NotFound : WasmResult.InternalFailure;
    },

    proxy_dequeue_shared_queue(queueId: number, pRet: number, pRetLen: number): number {
      vm.hostWork();
      if (!vm.mem.inBounds(pRet, 4) || !vm.mem.inBounds(pRetLen, 4)) return WasmResult.InvalidMemoryAccess;
      const item = queues().dequeue(queueId >>> 0);
      if (item === undefined) return WasmResult.NotFound;
      if (item === null) return WasmResult.Empty;
      return vm.returnBytes(item, pRet, pRetLen);
    },
  };
}
