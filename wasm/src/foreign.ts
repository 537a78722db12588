// Foreign functions every module can call, as Envoy offers them (compress/uncompress: zlib streams).
import { deflateSync, inflateSync } from 'node:zlib';
import { WasmResult } from './abi/constants.ts';
import type { ForeignFunction } from './host.ts';

export const builtinForeignFunctions: ReadonlyMap<string, ForeignFunction> = new Map<string, ForeignFunction>([
  ['compress', (args) => deflateSync(args)],
  [
    'uncompress',
    (args) => {
      try {
        return inflateSync(args);
      } catch {
        return WasmResult.SerializationFailure;
      }
    },
  ],
]);
