// Helpers for the host-function conformance tests (abi-*.test.ts): a fixed memory layout for guest
// modules written in wat, data segments for their constant inputs, and readers for what the host wrote.
//
// Layout of every probe module (2 pages):
//   1000, 1004  allocations the host made through proxy_on_memory_allocate: count, size of the last one
//   1024..2047  RESULTS: one i32 per slot, prefilled with 0xEEEEEEEE (a call that never ran is visible)
//   2048..4095  OUT:     8 bytes per slot for host out-parameters, prefilled with 0xA5 bytes
//   4096..32767 DATA:    constant inputs (strings, serialized pairs), placed by `Data`
//   32768..     heap of the bump allocator exported as malloc (support/wat.ts)
import type { HeaderList, HttpStreamSink, LocalResponse, PluginHost } from '../../src/host.ts';
import { Plugin } from '../../src/plugin.ts';
import type { PluginConfig } from '../../src/plugin-settings.ts';
import { guestModule, wat2wasm } from './wat.ts';

export const MEM_END = 2 * 65536;
export const ALLOC_COUNT = 1000;
export const ALLOC_LAST = 1004;
export const RESULTS = 1024;
export const OUT = 2048;
export const DATA = 4096;
export const HEAP_START = 32768;
export const RESULT_FILL = 0xeeeeeeee;
export const OUT_FILL = 0xa5a5a5a5;

/** Address of result slot i (an i32). */
export const res = (i: number): number => RESULTS + 4 * i;
/** Address of out-parameter slot i (8 bytes). */
export const out = (i: number): number => OUT + 8 * i;

/** `(i32.const n)` */
export const c = (n: number): string => `(i32.const ${n | 0})`;
/** `(i64.const n)` */
export const c64 = (n: bigint | number): string => `(i64.const ${BigInt(n).toString()})`;
/** Stores the i32 value of `expr` in result slot i. */
export const rec = (i: number, expr: string): string => `(i32.store (i32.const ${res(i)}) ${expr})`;
/** Records the allocator's heap pointer in result slot i (to prove the host allocated nothing). */
export const recHeap = (i: number): string => `(i32.store (i32.const ${res(i)}) (global.get $heap))`;
/** Records how many allocations the host has made so far in result slot i. */
export const recAllocs = (i: number): string => `(i32.store (i32.const ${res(i)}) (i32.load (i32.const ${ALLOC_COUNT})))`;
/** `(i32.load (i32.const addr))`: reads back an out-parameter the host wrote. */
export const load = (addr: number): string => `(i32.load (i32.const ${addr}))`;

/** Escapes bytes for a wat string literal. */
export function watBytes(data: string | Uint8Array): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let s = '';
  for (const b of bytes) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c) s += String.fromCharCode(b);
    else s += '\\' + b.toString(16).padStart(2, '0');
  }
  return s;
}

export interface Blob {
  ptr: number;
  len: number;
}

/** Constant inputs placed in the DATA region, each on its own 8-byte boundary. */
export class Data {
  #at = DATA;
  #segments: string[] = [];

  add(data: string | Uint8Array): Blob {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const ptr = this.#at;
    if (ptr + bytes.length > HEAP_START) throw new Error('test data overflows the DATA region');
    if (bytes.length > 0) this.#segments.push(`(data (i32.const ${ptr}) "${watBytes(bytes)}")`);
    this.#at = (ptr + bytes.length + 8) & ~7;
    return { ptr, len: bytes.length };
  }

  wat(): string {
    return this.#segments.join('\n  ');
  }
}

/** `(i32.const ptr) (i32.const len)` for a blob. */
export const pl = (b: Blob): string => `${c(b.ptr)} ${c(b.len)}`;

/**
 * A probe module: the wat.ts boilerplate plus the prefilled RESULTS and OUT regions, the data segments, and a
 * proxy_on_memory_allocate (which the host prefers to malloc) that counts the host's allocations, unless
 * `ownAllocator` says the body exports its own.
 */
export function probeModule(opts: { imports?: string; body: string; data?: Data; abi?: '0_1_0' | '0_2_0' | '0_2_1'; ownAllocator?: boolean }): string {
  const fill = (byte: string, n: number) => `\\${byte}`.repeat(n);
  return guestModule({
    imports: opts.imports,
    abi: opts.abi,
    body: `(data (i32.const ${RESULTS}) "${fill('ee', OUT - RESULTS)}")
  (data (i32.const ${OUT}) "${fill('a5', DATA - OUT)}")
  ${opts.data?.wat() ?? ''}
  ${opts.ownAllocator ? '' : `(func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (i32.store (i32.const ${ALLOC_COUNT}) (i32.add (i32.load (i32.const ${ALLOC_COUNT})) (i32.const 1)))
    (i32.store (i32.const ${ALLOC_LAST}) (local.get $n))
    (call $malloc (local.get $n)))`}
  ${opts.body}`,
  });
}

export interface LogLine {
  level: number;
  message: string;
  plugin: string;
}

/** Loads a probe module as a plugin; every log line is recorded in `logs`. */
export async function loadProbe(
  wat: string,
  config: Partial<PluginConfig> = {},
  host: PluginHost = {},
): Promise<{ plugin: Plugin; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const bytes = await wat2wasm(wat);
  const plugin = await Plugin.load(bytes, { name: 'probe', logLevel: 'trace', ...config }, {
    log: (level, message, plugin) => logs.push({ level, message, plugin }),
    ...host,
  });
  return { plugin, logs };
}

/** Reads the guest's memory as it is now (the buffer is re-read on every call: memory may grow). */
export function guestMemory(plugin: Plugin) {
  const view = () => new DataView(plugin.vm.guest.memory.buffer);
  return {
    u32: (addr: number): number => view().getUint32(addr, true),
    u64: (addr: number): bigint => view().getBigUint64(addr, true),
    bytes: (addr: number, len: number): Buffer => Buffer.from(new Uint8Array(plugin.vm.guest.memory.buffer, addr, len)),
    /** How many times the host called the allocator so far. */
    allocations: (): number => view().getUint32(ALLOC_COUNT, true),
    /** The size the host asked for in its latest allocation. */
    lastAllocation: (): number => view().getUint32(ALLOC_LAST, true),
    /** The i32 a guest stored in result slot i (unsigned). */
    result: (i: number): number => view().getUint32(res(i), true),
    /** The u32 the host wrote into out slot i. */
    outU32: (i: number): number => view().getUint32(out(i), true),
    /** The blob a host call returned through out slots (ptr in slot p, len in slot p + 1). */
    blob: (p: number): Buffer => {
      const ptr = view().getUint32(out(p), true);
      const len = view().getUint32(out(p + 1), true);
      return Buffer.from(new Uint8Array(plugin.vm.guest.memory.buffer, ptr, len));
    },
  };
}

/** Lets setImmediate/promise work (queue notifications, callouts) run. */
export function settle(rounds = 3): Promise<void> {
  return new Promise((resolve) => {
    let n = rounds;
    const step = () => (n-- > 0 ? setImmediate(step) : resolve());
    step();
  });
}

/** An HttpStreamSink that records what the next hop would see. */
export class RecordingSink implements HttpStreamSink {
  requestHeadersSeen: HeaderList | undefined;
  requestBody: Buffer[] = [];
  requestTrailersSeen: HeaderList | undefined;
  responseHeadersSeen: HeaderList | undefined;
  responseBody: Buffer[] = [];
  responseTrailersSeen: HeaderList | undefined;
  local: LocalResponse | undefined;
  resetReason: string | undefined;

  requestHeaders(headers: HeaderList): void {
    this.requestHeadersSeen = [...headers];
  }
  requestData(data: Uint8Array): void {
    this.requestBody.push(Buffer.from(data));
  }
  requestTrailers(trailers: HeaderList): void {
    this.requestTrailersSeen = [...trailers];
  }
  responseHeaders(headers: HeaderList): void {
    this.responseHeadersSeen = [...headers];
  }
  responseData(data: Uint8Array): void {
    this.responseBody.push(Buffer.from(data));
  }
  responseTrailers(trailers: HeaderList): void {
    this.responseTrailersSeen = [...trailers];
  }
  localResponse(response: LocalResponse): void {
    this.local = response;
  }
  reset(reason: string): void {
    this.resetReason = reason;
  }
}

/**
 * The §3.10 serialized form, written out by hand for test inputs (deliberately independent of the
 * runtime's encoder): [N] [klen vlen]*N (key 0x00 value 0x00)*N, u32 little-endian.
 */
export function serializePairs(pairs: Array<[string, string]>): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const parts: Buffer[] = [u32(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32(Buffer.byteLength(k, 'latin1')), u32(Buffer.byteLength(v, 'latin1')));
  for (const [k, v] of pairs) parts.push(Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1'), Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Signatures of the env.proxy_* imports the probes use (params; every result is i32). */
const PROXY_PARAMS: Record<string, string> = {
  proxy_log: 'i32 i32 i32',
  proxy_get_log_level: 'i32',
  proxy_get_current_time_nanoseconds: 'i32',
  proxy_set_tick_period_milliseconds: 'i32',
  proxy_get_status: 'i32 i32 i32',
  proxy_get_property: 'i32 i32 i32 i32',
  proxy_set_property: 'i32 i32 i32 i32',
  proxy_get_header_map_value: 'i32 i32 i32 i32 i32',
  proxy_add_header_map_value: 'i32 i32 i32 i32 i32',
  proxy_replace_header_map_value: 'i32 i32 i32 i32 i32',
  proxy_remove_header_map_value: 'i32 i32 i32',
  proxy_get_header_map_pairs: 'i32 i32 i32',
  proxy_set_header_map_pairs: 'i32 i32 i32',
  proxy_get_header_map_size: 'i32 i32',
  proxy_get_buffer_bytes: 'i32 i32 i32 i32 i32',
  proxy_set_buffer_bytes: 'i32 i32 i32 i32 i32',
  proxy_get_buffer_status: 'i32 i32 i32',
  proxy_continue_stream: 'i32',
  proxy_http_call: 'i32 i32 i32 i32 i32 i32 i32 i32 i32 i32',
  proxy_grpc_call: 'i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32',
  proxy_get_shared_data: 'i32 i32 i32 i32 i32',
  proxy_set_shared_data: 'i32 i32 i32 i32 i32',
  proxy_register_shared_queue: 'i32 i32 i32',
  proxy_resolve_shared_queue: 'i32 i32 i32 i32 i32',
  proxy_enqueue_shared_queue: 'i32 i32 i32',
  proxy_dequeue_shared_queue: 'i32 i32 i32',
  proxy_define_metric: 'i32 i32 i32 i32',
  proxy_increment_metric: 'i32 i64',
  proxy_record_metric: 'i32 i64',
  proxy_get_metric: 'i32 i32',
  proxy_set_effective_context: 'i32',
  proxy_done: '',
  proxy_call_foreign_function: 'i32 i32 i32 i32 i32 i32',
  proxy_get_configuration: 'i32 i32',
};

/** `(import "env" "proxy_x" (func $proxy_x (param ...) (result i32)))` for each name. */
export function proxyImports(...names: string[]): string {
  return names
    .map((name) => {
      const params = PROXY_PARAMS[name];
      if (params === undefined) throw new Error(`no signature for ${name}`);
      return `(import "env" "${name}" (func $${name}${params ? ` (param ${params})` : ''} (result i32)))`;
    })
    .join('\n  ');
}

/** Reads the §3.10 form back into [key, value] pairs (latin1), checking every terminator and length. */
export function parseSerializedPairs(buf: Uint8Array): Array<[string, string]> {
  const b = Buffer.from(buf);
  if (b.length === 0) return [];
  const n = b.readUInt32LE(0);
  const lens: number[] = [];
  for (let i = 0; i < 2 * n; i++) lens.push(b.readUInt32LE(4 + 4 * i));
  let at = 4 + 8 * n;
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < n; i++) {
    const k = b.toString('latin1', at, at + lens[2 * i]!);
    at += lens[2 * i]!;
    if (b[at++] !== 0) throw new Error(`key ${i} is not NUL-terminated`);
    const v = b.toString('latin1', at, at + lens[2 * i + 1]!);
    at += lens[2 * i + 1]!;
    if (b[at++] !== 0) throw new Error(`value ${i} is not NUL-terminated`);
    pairs.push([k, v]);
  }
  if (at !== b.length) throw new Error(`${b.length - at} bytes left over`);
  return pairs;
}
