// Host-side sinks for telemetry filters: foreign functions a filter calls to hand records to the proxy.
//
//   wasmesh_access_log(args: one JSON access-log record, UTF-8) -> empty result
//
// The telemetry filter (filters/telemetry) builds Istio's JSON access-log record in on_log and calls
// this; the proxy decides where the record goes (its AccessLog, a test's array). A filter that finds
// the function missing (NotFound) logs the record itself. Register the map on the PluginHost:
//
//   foreignFunctions: createTelemetryForeignFunctions((record) => accessLog.writeRecord(record))
import { WasmResult, type ForeignFunction } from '../../wasm/src/index.ts';

export const ACCESS_LOG_FOREIGN_FUNCTION = 'wasmesh_access_log';

/** A record larger than this is refused (BadArgument): a filter bug, not something to write out. */
export const MAX_ACCESS_LOG_RECORD_BYTES = 64 * 1024;

const EMPTY = new Uint8Array(0);
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * The foreign functions telemetry filters call. `write` gets each record as a plain object; it runs
 * synchronously inside the module's on_log, so it should only queue the record (AccessLog.write does).
 * Answers: Ok with an empty result; BadArgument when the bytes are not one JSON object (or too large);
 * InternalFailure when `write` throws.
 */
export function createTelemetryForeignFunctions(write: (record: object) => void): ReadonlyMap<string, ForeignFunction> {
  const accessLog: ForeignFunction = (args) => {
    if (args.length === 0 || args.length > MAX_ACCESS_LOG_RECORD_BYTES) return WasmResult.BadArgument;
    let record: unknown;
    try {
      record = JSON.parse(decoder.decode(args));
    } catch {
      return WasmResult.BadArgument;
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) return WasmResult.BadArgument;
    try {
      write(record);
    } catch {
      return WasmResult.InternalFailure;
    }
    return EMPTY;
  };
  return new Map<string, ForeignFunction>([[ACCESS_LOG_FOREIGN_FUNCTION, accessLog]]);
}
