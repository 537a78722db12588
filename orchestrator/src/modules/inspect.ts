// What the orchestrator learns about an uploaded module before it stores it.
//  - Core modules: compiled and checked by the proxy-wasm runtime (compileModule: ABI marker,
//    imports, memory, allocator), and their producers section read from the bytes (no jco).
//  - Components: read with jco (loaded on the first component only: it is large): the producers
//    of the component and of the modules inside it (metadataShow), and its world (componentWit),
//    which must implement the filter world of schemas/wit/filter.wit.
import { compileModule } from '../../../wasm/src/module.ts';
import { MAX_MODULE_BYTES } from '../../../wasm/src/limits.ts';
import { isComponent, readWasmHeader, summarizeProducers, type ModuleMetadata, type Producers } from '../../../wasm/src/producers.ts';
import { checkFilterWorld, loadFilterWorld, parseWit } from './wit.ts';

/** Why a module is refused, with a stable code; the message names what was wrong. */
export class ModuleRejectedError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ModuleRejectedError';
    this.code = code;
  }
}

export const ModuleRejection = {
  /** The component does not implement the filter world (a missing export or function). */
  NotAFilter: 'WASMESH_ORCH_COMPONENT_NOT_A_FILTER',
  /** jco could not read the component. */
  BadComponent: 'WASMESH_ORCH_BAD_COMPONENT',
} as const;

/**
 * Validates module bytes and returns what they say about themselves. Throws WasmeshWasmError for a
 * core module the runtime refuses, ModuleRejectedError for a component that is unreadable or does
 * not implement the filter world.
 */
export async function inspectModule(bytes: Uint8Array, name: string): Promise<ModuleMetadata> {
  // Anything but a component of acceptable size goes to the runtime, which also words the refusals
  // of what is too large or not WebAssembly.
  if (bytes.length <= MAX_MODULE_BYTES && isComponent(bytes)) return inspectComponent(bytes, name);
  return (await compileModule(bytes, { name })).metadata;
}

/** The shape of jco's metadataShow entries that is read here. */
interface JcoMetadata {
  name?: string;
  /** Index of the enclosing component's entry; absent for the outermost. */
  parentIndex?: number;
  metaType: { tag: 'module' | 'component'; val?: number };
  producers: Array<[string, Array<[string, string]>]>;
}

interface Jco {
  metadataShow(binary: Uint8Array): Promise<JcoMetadata[]>;
  componentWit(binary: Uint8Array): Promise<string>;
}

let jco: Promise<Jco> | undefined;

/** jco, imported on first use (its wasm-tools build is several MB of wasm to compile). */
export function loadJco(): Promise<Jco> {
  jco ??= import('@bytecodealliance/jco').then((m) => m as unknown as Jco);
  return jco;
}

export async function inspectComponent(bytes: Uint8Array, name: string): Promise<ModuleMetadata> {
  const header = readWasmHeader(bytes);
  const tools = await loadJco();
  let wit: string;
  let entries: JcoMetadata[];
  try {
    wit = await tools.componentWit(bytes);
    entries = await tools.metadataShow(bytes);
  } catch (err) {
    throw new ModuleRejectedError(ModuleRejection.BadComponent, `${name}: not a valid WebAssembly component: ${jcoMessage(err)}`);
  }
  const packages = parseWit(wit);
  const world = packages.find((p) => p.worlds.size > 0)?.worlds.values().next().value;
  const problems = checkFilterWorld(wit);
  if (problems.length > 0) {
    throw new ModuleRejectedError(
      ModuleRejection.NotAFilter,
      `${name}: the component does not implement ${loadFilterWorld().world} (schemas/wit/filter.wit): ${problems.join('; ')}`,
    );
  }
  // The component's own producers say what it was written in (componentize-js: JavaScript); the
  // modules inside say how its engine was built (C, C++ and Rust for StarlingMonkey), kept apart.
  const own = entries.find((e) => e.parentIndex === undefined);
  const inner = mergeProducers(entries.filter((e) => e !== own));
  return {
    kind: 'component',
    binaryVersion: header.version,
    ...summarizeProducers(mergeProducers(own ? [own] : [])),
    ...(Object.keys(inner).length > 0 ? { innerProducers: inner } : {}),
    ...(world ? { world: { imports: world.imports, exports: world.exports } } : {}),
  };
}

/** Entries' producers merged, each name once per field, in order. */
function mergeProducers(entries: JcoMetadata[]): Producers {
  const merged: Producers = {};
  for (const entry of entries) {
    for (const [field, values] of entry.producers ?? []) {
      const list = (merged[field] ??= []);
      for (const [n, v] of values) if (!list.some((x) => x.name === n)) list.push({ name: n, version: v });
    }
  }
  return merged;
}

function jcoMessage(err: unknown): string {
  // jco's wasm-tools errors arrive as ComponentError { payload: string } or as plain Errors.
  const payload = (err as { payload?: unknown }).payload;
  if (typeof payload === 'string') return payload.split('\n')[0];
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}
