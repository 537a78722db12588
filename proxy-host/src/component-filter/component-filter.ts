// Component filters (schemas/wit/filter.wit, world wasmesh:filter/http-filter@0.1.0) run in the
// proxy's process: jco transpiles the component into an ES module plus core wasm, in memory, once
// per sha256 (the transpile takes seconds for a JavaScript component); each ComponentFilter is one
// instance, configured once, then called once per phase.
//
// Not done yet (README, "Component filters"): a WasmPlugin cannot name a component (the filter chain
// runs proxy-wasm plugins only), so nothing here runs under the chain's failStrategy, CPU budget,
// hot reload, canaries or metrics; only the headers phases are exercised by tests.
import { sha256Hex } from '../../../wasm/src/module.ts';

/** The interface names of the filter world, as jco's instantiation exports them. */
const HANDLER_EXPORTS = ['handler', 'wasmesh:filter/handler@0.1.0'];

export type Fields = Array<[string, Uint8Array]>;

export interface FieldChanges {
  remove: string[];
  set: Fields;
  add: Fields;
}

export interface Effects {
  logs: Array<{ level: string; message: string }>;
  metrics: Array<{ name: string; op: 'add' | 'set' | 'observe'; value: bigint }>;
  sharedWrites: Array<{ key: string; value: Uint8Array; cas?: number }>;
}

export type Action = { tag: 'continue' } | { tag: 'stop' } | { tag: 'reply'; val: { status: number; headers: Fields; body: Uint8Array; grpcStatus?: number; details: string } };

export interface HeadersResult {
  action: Action;
  headers: FieldChanges;
  effects: Effects;
}

export interface Needs {
  phases: string[];
  properties: string[][];
  sharedKeys: string[];
  metrics: Array<{ name: string; kind: string }>;
}

export interface CallContext {
  streamId: bigint;
  properties: Array<{ path: string[]; value?: Uint8Array }>;
  shared: Array<{ key: string; value?: Uint8Array; cas: number }>;
}

/** The exported handler interface as jco's bindings present it (kebab-case names in camelCase). */
interface Handler {
  configure(config: Uint8Array): Needs;
  onRequestHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onResponseHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult;
  onStreamDone(streamId: bigint): Effects;
}

interface Transpiled {
  sha256: string;
  /** The ES module jco generated, loaded. */
  bindings: { instantiate(getCoreModule: (path: string) => WebAssembly.Module, imports: Record<string, unknown>): Promise<Record<string, unknown>> };
  /** Its core modules, compiled. */
  cores: Map<string, WebAssembly.Module>;
  /** The interfaces the component imports (WASI, for componentize-js components). */
  imports: string[];
  transpileMs: number;
}

export class ComponentFilterError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ComponentFilterError';
    this.code = code;
  }
}

const transpiled = new Map<string, Promise<Transpiled>>();

interface Jco {
  transpile(component: Uint8Array, opts: Record<string, unknown>): Promise<{ files: Record<string, Uint8Array>; imports: string[]; exports: Array<[string, string]> }>;
}

/** Transpiles (once per sha256 in this process; a failure is not kept) and compiles the core modules. */
export function transpileComponent(bytes: Uint8Array, name = 'component'): Promise<Transpiled> {
  const sha256 = sha256Hex(bytes);
  let entry = transpiled.get(sha256);
  if (!entry) {
    entry = doTranspile(bytes, sha256, name);
    transpiled.set(sha256, entry);
    entry.catch(() => transpiled.delete(sha256));
  }
  return entry;
}

async function doTranspile(bytes: Uint8Array, sha256: string, name: string): Promise<Transpiled> {
  const started = performance.now();
  const jco = (await import('@bytecodealliance/jco')) as unknown as Jco;
  let out: Awaited<ReturnType<Jco['transpile']>>;
  try {
    // instantiation: the module exports instantiate(getCoreModule, imports) and imports nothing
    // itself, so it loads from memory and the host decides what each import is.
    out = await jco.transpile(bytes, { name: 'filter', instantiation: 'async', typescript: false, base64Cutoff: 0 });
  } catch (err) {
    throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${name}: jco cannot transpile the component: ${String((err as { payload?: unknown }).payload ?? (err as Error).message)}`, { cause: err });
  }
  const cores = new Map<string, WebAssembly.Module>();
  let js: string | undefined;
  for (const [file, contents] of Object.entries(out.files)) {
    if (file.endsWith('.wasm')) cores.set(file, await WebAssembly.compile(contents as Uint8Array<ArrayBuffer>));
    else if (file.endsWith('.js')) js = Buffer.from(contents).toString('utf8');
  }
  if (js === undefined) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${name}: jco produced no JavaScript`);
  const bindings = (await import(`data:text/javascript;base64,${Buffer.from(js).toString('base64')}`)) as Transpiled['bindings'];
  return { sha256, bindings, cores, imports: out.imports, transpileMs: performance.now() - started };
}

/**
 * What the component's imports are bound to: the WASI preview 2 shims jco ships
 * (@bytecodealliance/preview2-shim). componentize-js components import a few WASI interfaces even
 * with every feature off.
 */
async function wasiImports(names: readonly string[]): Promise<Record<string, unknown>> {
  const shims: Record<string, Record<string, unknown>> = {};
  const result: Record<string, unknown> = {};
  for (const spec of names) {
    const m = /^wasi:([a-z]+)\/([a-z-]+)(@.*)?$/.exec(spec);
    if (!m) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_IMPORT', `the component imports ${spec}; a filter may import only WASI interfaces`);
    const pkg = m[1];
    shims[pkg] ??= (await import(`@bytecodealliance/preview2-shim/${pkg}`)) as Record<string, unknown>;
    const iface = m[2].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!(iface in shims[pkg])) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_IMPORT', `the component imports ${spec}, which the WASI shim does not provide`);
    result[spec] = shims[pkg][iface];
    result[spec.replace(/@.*$/, '')] = shims[pkg][iface];
  }
  return result;
}

export class ComponentFilter {
  readonly sha256: string;
  readonly needs: Needs;
  readonly #handler: Handler;
  /** Time to instantiate and configure (the transpile is cached, so it counts only once per sha256). */
  readonly startMs: number;

  private constructor(sha256: string, handler: Handler, needs: Needs, startMs: number) {
    this.sha256 = sha256;
    this.#handler = handler;
    this.needs = needs;
    this.startMs = startMs;
  }

  /** Transpiles (cached), instantiates and configures. A configure error is a ComponentFilterError naming the filter's message. */
  static async load(bytes: Uint8Array, config: Uint8Array, name = 'component'): Promise<ComponentFilter> {
    const t = await transpileComponent(bytes, name);
    const started = performance.now();
    const instance = await t.bindings.instantiate((path) => {
      const core = t.cores.get(path);
      if (!core) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_TRANSPILE', `${name}: jco asked for core module ${path}, which it did not produce`);
      return core;
    }, await wasiImports(t.imports));
    const handler = HANDLER_EXPORTS.map((k) => instance[k]).find((h) => h !== undefined) as Handler | undefined;
    if (!handler) throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_NOT_A_FILTER', `${name}: the component exports ${Object.keys(instance).join(', ') || 'nothing'}, not wasmesh:filter/handler@0.1.0`);
    let needs: Needs;
    try {
      needs = handler.configure(config);
    } catch (err) {
      const reason = (err as { payload?: unknown }).payload ?? (err as Error).message ?? err;
      throw new ComponentFilterError('WASMESH_PROXY_COMPONENT_CONFIGURE', `${name}: configure refused the configuration: ${String(reason)}`, { cause: err });
    }
    return new ComponentFilter(t.sha256, handler, needs, performance.now() - started);
  }

  onRequestHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult {
    return this.#handler.onRequestHeaders(ctx, headers, endOfStream);
  }

  onResponseHeaders(ctx: CallContext, headers: Fields, endOfStream: boolean): HeadersResult {
    return this.#handler.onResponseHeaders(ctx, headers, endOfStream);
  }

  onStreamDone(streamId: bigint): Effects {
    return this.#handler.onStreamDone(streamId);
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
