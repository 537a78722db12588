// @wasmesh/wasm: the proxy-wasm host runtime. Modules in, filters out; no sockets.
export * from './abi/constants.ts';
export { detectAbiVersion } from './abi/version.ts';
export { ErrorCode, WasmeshWasmError, ProcExit, type TrapCause } from './errors.ts';
export type * from './host.ts';
export { Latin1Text } from './host.ts';
export {
  readWasmHeader, readModuleMetadata, parseProducers, encodeProducersSection, addProducers, customSections, summarizeProducers, isComponent, PRODUCERS_SECTION,
  type ModuleMetadata, type Producers, type ProducerEntry, type WasmHeader, type BinaryKind,
} from './producers.ts';
export { compileModule, ModuleCache, sha256Hex, type CompiledModule, type CompileOptions } from './module.ts';
export { Plugin, type PluginState } from './plugin.ts';
export { buildPluginSettings, type PluginConfig, type PluginSettings } from './plugin-settings.ts';
export { HttpStream, localReply, type StreamCallback, type StreamObserver } from './http-stream.ts';
export { NetworkStream, type ConnectionAction } from './network-stream.ts';
export { isGrpcRequest, isTrailersOnly, localResponseHeaders } from './local-reply.ts';
export { MetricsRegistry, type Metric, type MetricSnapshot } from './metrics/registry.ts';
export { SharedDataStore } from './shared-data.ts';
export { SharedQueueRegistry } from './shared-queue.ts';
export { encodePairs, decodePairs, toHeaderList, headerGet, headerSet, headerRemove } from './pairs.ts';
export { providedImports } from './imports/index.ts';
export { meterModule, MeteringError, FUEL_GET_EXPORT, FUEL_SET_EXPORT } from './metering/metering.ts';
export {
  FilterHarness, headersToObject, ConnectionRecorder,
  type ConnectionStep, type ConnectionRunInput, type ConnectionRunResult, type ConnectionOutput,
  type HarnessOptions, type RunInput, type RunResult, type CallbackAction, type TickResult, type MessageInput, type MessageOutput,
  type CalloutAnswer, type CalloutRecord, type GrpcCalloutAnswer, type GrpcCalloutRecord, type HeadersInput, type HeadersOutput,
} from './harness.ts';
export * as limits from './limits.ts';
export { JWS_VERIFY_FUNCTION, JWS_ALGORITHMS, JWS_LIMITS, encodeJwsVerifyArgs, jwsVerify } from './jws-verify.ts';
