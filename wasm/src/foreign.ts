// Foreign functions every module can call: as Envoy offers them (compress/uncompress: zlib streams),
// and jws_verify (a JWS signature check with node:crypto, for JWT filters; see jws-verify.ts).
import { deflateSync, inflateSync } from 'node:zlib';
import { WasmResult } from './abi/constants.ts';
import type { ForeignFunction } from './host.ts';
import { JWS_VERIFY_FUNCTION, jwsVerify } from './jws-verify.ts';

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
  [JWS_VERIFY_FUNCTION, jwsVerify],
]);
