// What a binary says about how it was made, read from its bytes alone (no compile, no jco):
//  - the header: a core module (version 1, layer 0) or a component (component model, layer 1), and
//  - the `producers` custom section of the WebAssembly tool conventions: fields `language`,
//    `processed-by` and `sdk`, each a list of (name, version) pairs.
// Cheap enough for every upload and every load. A malformed producers section is reported as a
// problem, never a reason to refuse a module: engines ignore custom sections, and so do we.
import { readLeb, writeLeb } from './binary.ts';
import { ErrorCode, WasmeshWasmError } from './errors.ts';

export const PRODUCERS_SECTION = 'producers';
const CUSTOM_SECTION = 0;
const CORE_VERSION = 1;
const CORE_LAYER = 0;
const COMPONENT_LAYER = 1;

export type BinaryKind = 'core' | 'component';

export interface WasmHeader {
  kind: BinaryKind;
  /** The header's version field: 1 for core modules; 0x0d for components of the current draft. */
  version: number;
  layer: number;
}

export interface ProducerEntry {
  name: string;
  version: string;
}

/** The producers section: field name (`language`, `processed-by`, `sdk`, ...) to its entries, in section order. */
export type Producers = Record<string, ProducerEntry[]>;

/** What wasmesh records about a module (stored with each uploaded version, shown by the CLI). */
export interface ModuleMetadata {
  kind: BinaryKind;
  /** Header version (components: the component-model binary version, 0x0d today). */
  binaryVersion: number;
  /** The top-level producers section as written; absent when the binary has none. */
  producers?: Producers;
  /** `language` entries, "name version" joined with ", " (e.g. "AssemblyScript 0.28.9"). */
  language?: string;
  /** `processed-by` entries: compilers and tools that wrote the binary. */
  processedBy?: string;
  /** `sdk` entries. */
  sdk?: string;
  /** Components only: the producers of the modules and components inside, merged (an engine's toolchain). */
  innerProducers?: Producers;
  /** Components only: the imports and exports of the component's world (from its WIT). */
  world?: { imports: string[]; exports: string[] };
  /** What could not be read (a malformed producers section), for display; the module is still accepted. */
  problems?: string[];
}

/** Reads the 8-byte header. Throws WasmeshWasmError(NotWasm) naming what is wrong with it. */
export function readWasmHeader(bytes: Uint8Array): WasmHeader {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmeshWasmError(ErrorCode.NotWasm, 'not WebAssembly: the binary does not start with \\0asm');
  }
  const version = bytes[4] | (bytes[5] << 8);
  const layer = bytes[6] | (bytes[7] << 8);
  if (layer === CORE_LAYER) {
    if (version !== CORE_VERSION) throw new WasmeshWasmError(ErrorCode.NotWasm, `unsupported core module version ${version} (expected ${CORE_VERSION})`);
    return { kind: 'core', version, layer };
  }
  if (layer === COMPONENT_LAYER) return { kind: 'component', version, layer };
  throw new WasmeshWasmError(ErrorCode.NotWasm, `unknown WebAssembly layer ${layer} in the header (0: core module, 1: component)`);
}

export function isComponent(bytes: Uint8Array): boolean {
  try {
    return readWasmHeader(bytes).kind === 'component';
  } catch {
    return false;
  }
}

interface CustomSection {
  name: string;
  /** Offsets in the binary: the section (id byte) and its content after the name. */
  start: number;
  contentStart: number;
  end: number;
}

/** The top-level custom sections, in order. Throws WasmeshWasmError(NotWasm) when the section framing is broken. */
export function customSections(bytes: Uint8Array): CustomSection[] {
  readWasmHeader(bytes);
  const found: CustomSection[] = [];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, contentStart] = readLeb(bytes, pos + 1);
    const end = contentStart + size;
    if (end > bytes.length) throw new WasmeshWasmError(ErrorCode.NotWasm, `truncated binary: section ${id} at byte ${pos} runs past the end`);
    if (id === CUSTOM_SECTION) {
      const [nameLength, nameStart] = readLeb(bytes, contentStart);
      if (nameStart + nameLength > end) throw new WasmeshWasmError(ErrorCode.NotWasm, `custom section at byte ${pos}: its name runs past the section`);
      let name: string;
      try {
        name = decodeUtf8(bytes.subarray(nameStart, nameStart + nameLength), `the name of the custom section at byte ${pos}`);
      } catch (err) {
        throw new WasmeshWasmError(ErrorCode.NotWasm, (err as Error).message);
      }
      found.push({ name, start: pos, contentStart: nameStart + nameLength, end });
    }
    pos = end;
  }
  return found;
}

/**
 * Parses a producers section's content (after its name). Throws an Error naming the byte offset
 * (relative to the content) and what was wrong: truncated, not UTF-8, a field given twice.
 */
export function parseProducers(content: Uint8Array): Producers {
  const producers: Producers = {};
  let pos = 0;
  const leb = (what: string): number => {
    try {
      const [value, next] = readLeb(content, pos);
      pos = next;
      return value;
    } catch {
      throw new Error(`${what} at byte ${pos}: truncated or malformed LEB128`);
    }
  };
  const str = (what: string): string => {
    const at = pos;
    const length = leb(`${what} length`);
    if (pos + length > content.length) throw new Error(`${what} at byte ${at}: ${length} bytes long but only ${content.length - pos} remain`);
    const s = decodeUtf8(content.subarray(pos, pos + length), `${what} at byte ${at}`);
    pos += length;
    return s;
  };
  const fields = leb('field count');
  for (let i = 0; i < fields; i++) {
    const field = str(`field ${i} name`);
    if (Object.hasOwn(producers, field)) throw new Error(`field "${field}" appears twice`);
    const count = leb(`field "${field}" value count`);
    const entries: ProducerEntry[] = [];
    for (let j = 0; j < count; j++) {
      const name = str(`field "${field}" value ${j} name`);
      const version = str(`field "${field}" value ${j} version`);
      entries.push({ name, version });
    }
    producers[field] = entries;
  }
  if (pos !== content.length) throw new Error(`${content.length - pos} bytes after the last field`);
  return producers;
}

/** Encodes a producers section, the custom section's id and size included. */
export function encodeProducersSection(producers: Producers): Uint8Array {
  const enc = new TextEncoder();
  const content: number[] = [];
  const str = (s: string): void => {
    const b = enc.encode(s);
    writeLeb(b.length, content);
    for (const x of b) content.push(x);
  };
  str(PRODUCERS_SECTION);
  const fields = Object.entries(producers).filter(([, entries]) => entries.length > 0);
  writeLeb(fields.length, content);
  for (const [field, entries] of fields) {
    str(field);
    writeLeb(entries.length, content);
    for (const e of entries) {
      str(e.name);
      str(e.version);
    }
  }
  const header = [CUSTOM_SECTION];
  writeLeb(content.length, header);
  return Uint8Array.from([...header, ...content]);
}

/**
 * Returns the binary with `add` merged into its producers section (an entry whose name a field
 * already lists is kept as it was), written as the last section. Custom sections may go anywhere,
 * so the module's meaning does not change.
 */
export function addProducers(bytes: Uint8Array, add: Producers): Uint8Array {
  const sections = customSections(bytes).filter((s) => s.name === PRODUCERS_SECTION);
  const merged: Producers = {};
  for (const s of sections) {
    for (const [field, entries] of Object.entries(parseProducers(bytes.subarray(s.contentStart, s.end)))) (merged[field] ??= []).push(...entries);
  }
  for (const [field, entries] of Object.entries(add)) {
    const list = (merged[field] ??= []);
    for (const e of entries) if (!list.some((x) => x.name === e.name)) list.push(e);
  }
  const kept: Uint8Array[] = [];
  let pos = 0;
  for (const s of sections) {
    kept.push(bytes.subarray(pos, s.start));
    pos = s.end;
  }
  kept.push(bytes.subarray(pos));
  const section = encodeProducersSection(merged);
  const out = new Uint8Array(kept.reduce((n, k) => n + k.length, 0) + section.length);
  let at = 0;
  for (const k of kept) {
    out.set(k, at);
    at += k.length;
  }
  out.set(section, at);
  return out;
}

/**
 * Reads a binary's header and top-level producers section. Throws only when the binary is not
 * WebAssembly at all (bad header, broken section framing); a malformed producers section becomes
 * a `problems` entry. For components, `world` is left for a component toolchain to fill in.
 */
export function readModuleMetadata(bytes: Uint8Array): ModuleMetadata {
  const header = readWasmHeader(bytes);
  const metadata: ModuleMetadata = { kind: header.kind, binaryVersion: header.version };
  const problems: string[] = [];
  const sections = customSections(bytes).filter((s) => s.name === PRODUCERS_SECTION);
  if (sections.length > 1) problems.push(`${sections.length} producers sections (the tool conventions allow one); the first is shown`);
  if (sections.length > 0) {
    const s = sections[0];
    try {
      Object.assign(metadata, summarizeProducers(parseProducers(bytes.subarray(s.contentStart, s.end))));
    } catch (err) {
      problems.push(`producers section at byte ${s.start} is malformed: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) metadata.problems = problems;
  return metadata;
}

/** The producers plus their one-line summaries (language, processedBy, sdk). */
export function summarizeProducers(producers: Producers): Pick<ModuleMetadata, 'producers' | 'language' | 'processedBy' | 'sdk'> {
  const line = (field: string): string | undefined => {
    const entries = producers[field];
    return entries && entries.length > 0 ? entries.map((e) => (e.version ? `${e.name} ${e.version}` : e.name)).join(', ') : undefined;
  };
  const language = line('language');
  const processedBy = line('processed-by');
  const sdk = line('sdk');
  return { producers, ...(language ? { language } : {}), ...(processedBy ? { processedBy } : {}), ...(sdk ? { sdk } : {}) };
}

function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${what} is not valid UTF-8`);
  }
}
