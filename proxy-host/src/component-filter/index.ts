// wasmesh/component: component filters (the wasmesh:filter world) outside the proxy: the harness
// a TypeScript filter's unit tests use, and the pieces under it.
export { ComponentHarness, type ComponentHarnessOptions } from './harness.ts';
export {
  ComponentFilter, ComponentFilterError, compileComponent, transpileComponent, applyFieldChanges,
  DEFAULT_COMPONENT_CPU_BUDGET, DEFAULT_COMPONENT_STARTUP_CPU_BUDGET,
  type CompiledComponent, type Needs, type Fields, type FieldChanges, type Effects, type CallContext,
} from './component-filter.ts';
export { ComponentPlugin, ComponentStream } from './component-plugin.ts';
export { TranspileCache } from './transpile-cache.ts';
export type { RunInput, RunResult, MessageInput, MessageOutput } from '../../../wasm/src/harness.ts';
