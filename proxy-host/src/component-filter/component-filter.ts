// Component filters (schemas/wit/filter.wit, world wasmesh:filter/http-filter@0.1.0) run in the
// proxy's process. A component goes through three steps, each done once per version:
//  1. jco transpiles it into an ES module plus core wasm (seconds for a JavaScript component): in
//     memory once per sha256, and on disk (transpile-cache.ts) when the proxy has a cache dir;
//  2. its core modules get the same CPU budget instrumentation as proxy-wasm modules (fuel,
//     wasm/src/metering) and the same memory bound, then are compiled;
//  3. each ComponentInstance is one instantiation; every call into it runs under a fuel budget, so
//     an endless loop in the filter's JavaScript (interpreted by the engine compiled to wasm) traps
//     like one in a core module. A trapped instance is never called again.
// The chain's side (phases, failStrategy, effects) is component-plugin.ts.
import { ErrorCode, WasmeshWasmError, trapCause, type TrapCause } from '../../../wasm/src/errors.ts';
import { boundMemory } from '../../../wasm/src/binary.ts';
import { MAX_MODULE_BYTES, WASM_PAGE_BYTES } from '../../../wasm/src/limits.ts';
import { FUEL_GET_EXPORT, FUEL_SET_EXPORT, meterModule, MeteringError } from '../../../wasm/src/metering/metering.ts';
import { sha256Hex } from '../../../wasm/src/module.ts';
import { readModuleMetadata, readWasmHeader, type ModuleMetadata } from '../../../wasm/src/producers.ts';
import type { TranspileCache, TranspiledFiles } from './transpile-cache.ts';

/** The interface names of the filter world, as jco's instantiation exports them. */
const HANDLER_EXPORTS = ['wasmesh:filter/handler@0.1.0', 'handler'];

/**
 * CPU budget per call of a component, in fuel units. A JavaScript component runs its code in an
 * interpreter compiled to wasm whose dispatch loop is one large loop body, and fuel is counted
 * statically per loop iteration, so a unit is far less time than in a core filter: measured here,
 * an endless JavaScript loop uses 10 G units in about 1.6 ms, and one stream of add-header
 * (three calls) about 0.46 G units. 1 T units stops an endless loop after roughly 150-300 ms (like
 * DEFAULT_CPU_BUDGET for core modules) and is about 2,000 times what add-header's heaviest call uses.
 */
export const DEFAULT_COMPONENT_CPU_BUDGET = 1_000_000_000_000;
/**
 * Default bound on a component instance's linear memory: twice a core filter's 64 MiB. The JavaScript
 * engine inside a componentize-js component (StarlingMonkey) collects garbage only once its heap
 * reaches about 70-83 MiB of linear memory (measured with componentize-js 0.19.3 and 0.23.0, small
 * or large headers); under 64 MiB its grow was refused first and it aborted after 14,000-20,000
 * add-header streams, which looked like a leak. With room past that point the heap stays flat (77
 * MiB after 200,000 streams). The memory is reserved, not used: an instance commits what it grows.
 */
export const DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES = 128 * 1024 * 1024;
/** How close to its memory bound a component must be for a trap to count as `memory` (see #failure). */
const MEMORY_FULL_MARGIN = 2 * 1024 * 1024;

/** Budget for instantiation (the engine's start) and configure. */
export const DEFAULT_COMPONENT_STARTUP_CPU_BUDGET = 20_000_000_000_000;

export type Fields = Array<[string, Uint8Array]>;

export interface FieldChanges {
  remove: string[];
  set: Fields;
  add: Fields;
}

export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'critical';

export interface Effects {
  logs: Array<{ level: LogLevelName; message: string }>;
  metrics: Array<{ name: string; op: 'add' | 'set' | 'observe'; value: bigint }>;
  sharedWrites: Array<{ key: string; value: Uint8Array; cas?: number }>;
}

export interface LocalReplyValue {
  status: number;
  headers: Fields;
  body: Uint8Array;
  grpcStatus?: number;
  details: string;
}

export type Action = { tag: 'continue' } | { tag: 'stop' } | { tag: 'reply'; val: LocalReplyValue };

export interface HeadersResult {
  action: Action;
  headers: FieldChanges;
  effects: Effects;
}

export interface BodyResult {
  action: Action;
  body?: Uint8Array;
  headers: FieldChanges;
  effects: Effects;
}

export interface TrailersResult {
  action: Action;
  trailers: FieldChanges;
  effects: Effects;
}

export type PhaseName = 'request-headers' | 'request-body' | 'request-trailers' | 'response-headers' | 'response-body' | 'response-trailers';

export interface Needs {
  phases: PhaseName[];
  properties: string[][];
  sharedKeys: string[];
  metrics: Array<{ name: string; kind: 'counter' | 'gauge' | 'histogram' }>;
}

export interface CallContext {
  streamId: bigint;
  properties: Array<{ path: string[]; value?: Uint8Array }>;
  shared: Array<{ key: string; value?: Uint8Array; cas: number }>;
}

/** The exported handler interface as jco's bindings present it (kebab-case names in camelCase). */
export interface Handler {
  configure(config: Uint8Array): Needs;
  onRequestHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onRequestBody(ctx: CallContext, body: Uint8Array, endOfStream: boolean): BodyResult;
  onRequestTrailers(ctx: CallContext, trailers: Fields): TrailersResult;
  onResponseHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onResponseBody(ctx: CallContext, body: Uint8Array, endOfStream: boolean): BodyResult;
  onResponseTrailers(ctx: CallContext, trailers: Fields): TrailersResult;
  onStreamDone(streamId: bigint): Effects;
}

export class ComponentFilterError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ComponentFilterError';
    this.code = code;
  }
}

/** What jco's transpile gave for one component, and where it came from. */
export interface Transpiled extends TranspiledFiles {
  sha256: string;
  /** Time to transpile, or to read the disk cache. */
  ms: number;
  /** Read from the disk cache (no jco run). */
  fromDisk: boolean;
}

interface Jco {
  transpile(component: Uint8Array, opts: Record<string, unknown>): Promise<{ files: Record<string, Uint8Array>; imports: string[]; exports: Array<[string, string]> }>;
}

const transpiled = new Map<string, Promise<Transpiled>>();

/** Forgets the in-memory transpiles (tests: the next load goes to the disk cache or jco). */
export function clearTranspileMemory(): void {
  transpiled.clear();
}

/**
 * Transpiles once per sha256 in this process (a failure is not kept): from the disk cache when one
 * is given and holds a sound entry, else with jco (then written to the cache).
 */
export function transpileComponent(bytes: Uint8Array, name = 'component', cache?: TranspileCache): Promise<Transpiled> {
  const sha256 = sha256Hex(bytes);
  let entry = transpiled.get(sha256);
  if (!entry) {
    entry = doTranspile(bytes, sha256, name, cache);
    transpiled.set(sha256, entry);
    entry.catch(() => transpiled.delete(sha256));
  }
  return entry;
}

async function doTranspile(bytes: Uint8Array, sha256: string, name: string, cache: TranspileCache | undefined): Promise<Transpiled> {
  const started = performance.now();
  if (cache) {
    const hit = await cache.read(sha256);
    if (hit) return { ...hit, sha256, ms: performance.now() - started, fromDisk: true };
  }
  const jco = (await import('@bytecodealliance/jco')) as unknown as Jco;
  let out: Awaited<ReturnType<Jco['transpile']>>;
  try {
    // instantiation: the module exports instantiate(getCoreModule, imports, instantiateCore) and
    // imports nothing itself, so it loads from memory and the host decides what each import is.
    out = await jco.transpile(bytes, { name: 'filter', instantiation: 'async', typescript: false, base64Cutoff: 0 });
  } catch (err) {
    throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${name}: jco cannot transpile the component: ${String((err as { payload?: unknown }).payload ?? (err as Error).message)}`, { cause: err });
  }
  const cores: Record<string, Uint8Array> = {};
  let js: string | undefined;
  for (const [file, contents] of Object.entries(out.files)) {
    if (file.endsWith('.wasm')) cores[file] = contents;
    else if (file.endsWith('.js') && !file.includes('/')) js = Buffer.from(contents).toString('utf8');
  }
  if (js === undefined) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${name}: jco produced no JavaScript`);
  const files: TranspiledFiles = { js, cores, imports: out.imports };
  // A cache that cannot be written costs the next start a transpile, nothing more.
  if (cache) await cache.write(sha256, files).catch((err: unknown) => cache.onError?.(`cannot write the transpile of ${name} to ${cache.dir}: ${(err as Error).message}`));
  return { ...files, sha256, ms: performance.now() - started, fromDisk: false };
}

export interface ComponentCompileOptions {
  name?: string;
  cache?: TranspileCache;
  /** Bound on each core module's linear memory; default DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES. */
  memoryLimitBytes?: number;
  /** Fuel each new instance starts with (instantiation and configure); default DEFAULT_COMPONENT_STARTUP_CPU_BUDGET. */
  startupCpuBudget?: number;
}

type Bindings = {
  instantiate(
    getCoreModule: (path: string) => WebAssembly.Module,
    imports: Record<string, unknown>,
    instantiateCore: (module: WebAssembly.Module, imports: WebAssembly.Imports) => Promise<WebAssembly.Instance>,
  ): Promise<Record<string, unknown>>;
};

/** A component ready to instantiate: transpiled, its core modules metered, bounded and compiled. */
export interface CompiledComponent {
  readonly kind: 'component';
  readonly name: string;
  readonly sha256: string;
  readonly byteLength: number;
  readonly memoryLimitBytes: number;
  readonly metadata: ModuleMetadata;
  readonly transpile: { ms: number; fromDisk: boolean };
  /** Metering and compiling the core modules. */
  readonly compileMs: number;
  /** @internal */
  readonly bindings: Bindings;
  /** @internal */
  readonly cores: ReadonlyMap<string, WebAssembly.Module>;
}

/**
 * Transpiles (cached), meters and compiles a component. Refuses one that imports anything: a
 * filter's calls must run wholly inside its metered wasm (a componentize-js component with every
 * feature off imports nothing; WASI clocks, random, stdio or HTTP would be host code outside the
 * budget, and a blocking poll could stall the proxy).
 */
export async function compileComponent(bytes: Uint8Array, options: ComponentCompileOptions = {}): Promise<CompiledComponent> {
  const name = options.name ?? 'component';
  const limit = options.memoryLimitBytes ?? DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES;
  if (bytes.length > MAX_MODULE_BYTES) throw new WasmeshWasmError(ErrorCode.TooLarge, `${name}: component is ${bytes.length} bytes, over the ${MAX_MODULE_BYTES}-byte limit`);
  if (readWasmHeader(bytes).kind !== 'component') throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_NOT_A_FILTER', `${name}: not a WebAssembly component`);
  const t = await transpileComponent(bytes, name, options.cache);
  if (t.imports.length > 0) {
    throw new ComponentFilterError(
      'WASMESH_PROXY_COMPONENT_IMPORT',
      `${name}: the component imports ${t.imports.join(', ')}; a filter component may import nothing (build it with every componentize-js feature off: random, stdio, clocks, http, fetch-event)`,
    );
  }
  const started = performance.now();
  const cores = new Map<string, WebAssembly.Module>();
  for (const [file, core] of Object.entries(t.cores)) {
    let prepared: Uint8Array;
    try {
      prepared = meterModule(boundMemory(core, Math.floor(limit / WASM_PAGE_BYTES)), options.startupCpuBudget ?? DEFAULT_COMPONENT_STARTUP_CPU_BUDGET);
    } catch (err) {
      if (err instanceof MeteringError) throw new WasmeshWasmError(ErrorCode.MeteringFailed, `${name}: cannot put ${file} under a CPU budget: ${err.message}`, { cause: err });
      throw err;
    }
    cores.set(file, await WebAssembly.compile(prepared as Uint8Array<ArrayBuffer>));
  }
  const bindings = (await import(`data:text/javascript;base64,${Buffer.from(t.js).toString('base64')}`)) as Bindings;
  let metadata: ModuleMetadata;
  try {
    metadata = readModuleMetadata(bytes);
  } catch (err) {
    metadata = { kind: 'component', binaryVersion: readWasmHeader(bytes).version, problems: [(err as Error).message] };
  }
  return Object.freeze({
    kind: 'component' as const,
    name,
    sha256: t.sha256,
    byteLength: bytes.length,
    memoryLimitBytes: limit,
    metadata,
    transpile: { ms: t.ms, fromDisk: t.fromDisk },
    compileMs: performance.now() - started,
    bindings,
    cores,
  });
}

/** Compile once per version (sha256 and memory bound), shared by every plugin using it. */
export class ComponentCache {
  readonly #entries = new Map<string, Promise<CompiledComponent>>();
  readonly #transpiles: TranspileCache | undefined;

  constructor(transpiles?: TranspileCache) {
    this.#transpiles = transpiles;
  }

  get(bytes: Uint8Array, options: Omit<ComponentCompileOptions, 'cache'> = {}): Promise<CompiledComponent> {
    const key = `${sha256Hex(bytes)}:${options.memoryLimitBytes ?? DEFAULT_COMPONENT_MEMORY_LIMIT_BYTES}:${options.startupCpuBudget ?? DEFAULT_COMPONENT_STARTUP_CPU_BUDGET}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = compileComponent(bytes, { ...options, cache: this.#transpiles });
      this.#entries.set(key, entry);
      entry.catch(() => this.#entries.delete(key));
    }
    return entry;
  }

  delete(sha256: string): void {
    for (const key of this.#entries.keys()) if (key.startsWith(`${sha256}:`)) this.#entries.delete(key);
  }
}

/** A call that trapped: the instance is dead. */
export interface CallFailure {
  reason: string;
  cause: TrapCause;
}

/**
 * One instantiation of a component. call() runs one export under the fuel budget; a trap (a throw
 * out of the filter's JavaScript, the budget running out, memory, any wasm trap) marks the instance
 * failed for good (the component model forbids entering it again).
 */
export class ComponentInstance {
  readonly handler: Handler;
  readonly instantiateMs: number;
  failed: CallFailure | undefined = undefined;
  readonly #setFuel: Array<(fuel: number) => void>;
  readonly #getFuel: Array<() => number>;
  readonly #memories: WebAssembly.Memory[];
  readonly #memoryLimit: number;

  private constructor(handler: Handler, setFuel: Array<(fuel: number) => void>, getFuel: Array<() => number>, memories: WebAssembly.Memory[], memoryLimit: number, ms: number) {
    this.handler = handler;
    this.#setFuel = setFuel;
    this.#getFuel = getFuel;
    this.#memories = memories;
    this.#memoryLimit = memoryLimit;
    this.instantiateMs = ms;
  }

  /** Instantiates (the engine's start runs under the startup budget the core modules were metered with). */
  static async create(c: CompiledComponent): Promise<ComponentInstance> {
    const started = performance.now();
    const setFuel: Array<(fuel: number) => void> = [];
    const getFuel: Array<() => number> = [];
    const memories: WebAssembly.Memory[] = [];
    let exports: Record<string, unknown>;
    try {
      exports = await c.bindings.instantiate(
        (path) => {
          const core = c.cores.get(path);
          if (!core) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${c.name}: jco asked for core module ${path}, which it did not produce`);
          return core;
        },
        {},
        async (module, imports) => {
          const instance = await WebAssembly.instantiate(module, imports);
          const e = instance.exports as Record<string, unknown>;
          if (typeof e[FUEL_SET_EXPORT] === 'function') {
            setFuel.push(e[FUEL_SET_EXPORT] as (fuel: number) => void);
            getFuel.push(e[FUEL_GET_EXPORT] as () => number);
          }
          if (e.memory instanceof WebAssembly.Memory) memories.push(e.memory);
          return instance;
        },
      );
    } catch (err) {
      if (err instanceof ComponentFilterError) throw err;
      throw new WasmeshWasmError(ErrorCode.InitFailed, `${c.name}: the component failed while instantiating: ${(err as Error).message}`, { cause: err });
    }
    const handler = HANDLER_EXPORTS.map((k) => exports[k]).find((h) => h !== undefined) as Handler | undefined;
    if (!handler) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_NOT_A_FILTER', `${c.name}: the component exports ${Object.keys(exports).join(', ') || 'nothing'}, not wasmesh:filter/handler@0.1.0`);
    return new ComponentInstance(handler, setFuel, getFuel, memories, c.memoryLimitBytes, performance.now() - started);
  }

  /**
   * Calls configure (under the budget the instance started with). Its error result is a
   * ComponentFilterError carrying the filter's message; a trap is one too, naming the cause.
   */
  configure(config: Uint8Array, name: string): Needs {
    try {
      return this.handler.configure(config);
    } catch (err) {
      const payload = (err as { payload?: unknown }).payload;
      if (payload !== undefined) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_CONFIGURE', `${name}: configure refused the configuration: ${String(payload)}`, { cause: err });
      const failure = this.#failure(err);
      this.failed = failure;
      throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_CONFIGURE', `${name}: configure trapped (${failure.cause}): ${failure.reason}`, { cause: err });
    }
  }

  /** Runs `fn` with `budget` fuel. Undefined when it trapped (then `failed` says why). */
  call<T>(budget: number, fn: (h: Handler) => T): T | undefined {
    if (this.failed) return undefined;
    for (const set of this.#setFuel) set(budget);
    try {
      return fn(this.handler);
    } catch (err) {
      this.failed = this.#failure(err);
      return undefined;
    }
  }

  /** Bytes of linear memory the instance holds now (every core module's memory, added up). */
  memoryBytes(): number {
    let total = 0;
    for (const m of this.#memories) total += m.buffer.byteLength;
    return total;
  }

  /** Fuel left after the last call (the smallest over the core modules); negative when the budget ran out. */
  fuelLeft(): number {
    let left = Infinity;
    for (const get of this.#getFuel) left = Math.min(left, get());
    return left;
  }

  #failure(err: unknown): CallFailure {
    const spent = this.#getFuel.length > 0 && this.fuelLeft() < 0;
    // A JavaScript engine grows its heap in chunks of up to a MiB or more, and aborts (`unreachable`)
    // when a grow is refused: within MEMORY_FULL_MARGIN of the bound, the cause is memory.
    const full = this.#memories.some((m) => m.buffer.byteLength + MEMORY_FULL_MARGIN > this.#memoryLimit);
    const cause = trapCause(err, spent, full);
    const message = err instanceof Error ? err.message : String(err);
    const reason = cause === 'cpu_budget' ? `the call used up its CPU budget (${message})` : message;
    return { reason, cause };
  }
}

/**
 * One instance, configured: the simple way to run a component outside the proxy's chain (tests,
 * benchmarks). Calls run under DEFAULT_COMPONENT_CPU_BUDGET; a trap throws.
 */
export class ComponentFilter {
  readonly sha256: string;
  readonly needs: Needs;
  readonly instance: ComponentInstance;
  /** Time to instantiate and configure (the transpile is cached, so it counts only once per sha256). */
  readonly startMs: number;
  budget = DEFAULT_COMPONENT_CPU_BUDGET;

  private constructor(sha256: string, instance: ComponentInstance, needs: Needs, startMs: number) {
    this.sha256 = sha256;
    this.instance = instance;
    this.needs = needs;
    this.startMs = startMs;
  }

  /** Transpiles (cached), instantiates and configures. A configure error is a ComponentFilterError naming the filter's message. */
  static async load(bytes: Uint8Array, config: Uint8Array, name = 'component', options: Omit<ComponentCompileOptions, 'name'> = {}): Promise<ComponentFilter> {
    const compiled = await compileComponent(bytes, { ...options, name });
    const started = performance.now();
    const instance = await ComponentInstance.create(compiled);
    const needs = instance.configure(config, name);
    return new ComponentFilter(compiled.sha256, instance, needs, performance.now() - started);
  }

  #call<T>(fn: (h: Handler) => T): T {
    const r = this.instance.call(this.budget, fn);
    if (r === undefined) {
      const f = this.instance.failed!;
      throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRAP', `the component trapped (${f.cause}): ${f.reason}`);
    }
    return r;
  }

  onRequestHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult {
    return this.#call((h) => h.onRequestHeaders(ctx, headers, endOfStream));
  }

  onResponseHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult {
    return this.#call((h) => h.onResponseHeaders(ctx, headers, endOfStream));
  }

  onStreamDone(streamId: bigint): Effects {
    return this.#call((h) => h.onStreamDone(streamId));
  }
}

/** Applies field changes to a header list (remove, then set, then add), as the host does after a call. */
export function applyFieldChanges(headers: Fields, changes: FieldChanges): Fields {
  const removed = new Set([...changes.remove, ...changes.set.map(([n]) => n)].map((n) => n.toLowerCase()));
  const out: Fields = headers.filter(([n]) => !removed.has(n.toLowerCase()));
  for (const [n, v] of changes.set) out.push([n.toLowerCase(), v]);
  for (const [n, v] of changes.add) out.push([n.toLowerCase(), v]);
  return out;
}
