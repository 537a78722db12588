// Helpers for the lifecycle, stream and failure conformance tests: guest modules (in wat) that record
// every callback they get, with its arguments, into their own memory, and a sink that records what
// the next hop of a stream sees, in order.
//
// Memory layout of a recording module (2 pages):
//   256..1023    OUT:    out-parameters the host writes (8 bytes per slot)
//   1024..4095   DATA:   constant strings and serialized pairs (placed by `Strings`)
//   4096         count of recorded events (u32)
//   4100..32767  EVENTS: 24 bytes per event: code, then up to five i32 arguments
//   32768..      heap of the bump allocator exported as malloc (support/wat.ts)
import type { LogLevel } from '../../src/abi/constants.ts';
import type { HeaderList, HttpStreamSink, LocalResponse, PluginHost } from '../../src/host.ts';
import type { CompileOptions } from '../../src/module.ts';
import { Plugin } from '../../src/plugin.ts';
import type { PluginConfig } from '../../src/plugin-settings.ts';
import { guestModule, wat2wasm } from './wat.ts';

const OUT = 256;
const DATA = 1024;
const EVENT_COUNT = 4096;
const EVENTS = 4100;
const EVENT_BYTES = 24;
const EVENTS_END = 32768;

/** `(i32.const n)` */
export const c = (n: number): string => `(i32.const ${n | 0})`;
/** `(local.get i)` */
export const arg = (i: number): string => `(local.get ${i})`;
/** Address of out-parameter slot i. */
export const out = (i: number): number => OUT + 8 * i;
/** `(i32.load (i32.const out(i)))`: a value the host wrote into out slot i. */
export const outVal = (i: number): string => `(i32.load ${c(out(i))})`;

// ---- events ------------------------------------------------------------------------------------

const eventNames: string[] = ['(none)'];
const eventArity: number[] = [0];

/** One code per (name, arity): ABI 0.1.0 header callbacks record two arguments under the same name. */
function eventCode(name: string, arity: number): number {
  for (let code = 1; code < eventNames.length; code++) if (eventNames[code] === name && eventArity[code] === arity) return code;
  eventArity.push(arity);
  return eventNames.push(name) - 1;
}

/** wat that records event `name` with the given i32 expressions as its arguments (at most five). */
export function ev(name: string, ...args: string[]): string {
  if (args.length > 5) throw new Error('at most five event arguments');
  const code = eventCode(name, args.length);
  const padded = [...args, ...Array(5 - args.length).fill(c(0))];
  return `(call $ev ${c(code)} ${padded.join(' ')})`;
}

const EVENT_FUNC = `
  (global $evp (mut i32) ${c(EVENTS)})
  (func $ev (param i32 i32 i32 i32 i32 i32) (local $p i32)
    (local.set $p (global.get $evp))
    (if (i32.ge_u (local.get $p) ${c(EVENTS_END - EVENT_BYTES)}) (then unreachable))
    (i32.store (local.get $p) (local.get 0))
    (i32.store offset=4 (local.get $p) (local.get 1))
    (i32.store offset=8 (local.get $p) (local.get 2))
    (i32.store offset=12 (local.get $p) (local.get 3))
    (i32.store offset=16 (local.get $p) (local.get 4))
    (i32.store offset=20 (local.get $p) (local.get 5))
    (global.set $evp (i32.add (local.get $p) ${c(EVENT_BYTES)}))
    (i32.store ${c(EVENT_COUNT)} (i32.add (i32.load ${c(EVENT_COUNT)}) (i32.const 1))))`;

/** The events a VM's guest recorded so far, as `name(arg, ...)`. */
export function events(memory: WebAssembly.Memory): string[] {
  const view = new DataView(memory.buffer);
  const n = view.getUint32(EVENT_COUNT, true);
  const list: string[] = [];
  for (let i = 0; i < n; i++) {
    const at = EVENTS + i * EVENT_BYTES;
    const code = view.getUint32(at, true);
    const args: number[] = [];
    for (let a = 0; a < eventArity[code]; a++) args.push(view.getInt32(at + 4 + 4 * a, true));
    list.push(`${eventNames[code]}(${args.join(',')})`);
  }
  return list;
}

/** The events of the plugin's current VM. */
export function pluginEvents(plugin: Plugin): string[] {
  return events(plugin.vm.guest.memory);
}

// ---- constant data -----------------------------------------------------------------------------

export interface Blob {
  ptr: number;
  len: number;
}

/** `(i32.const ptr) (i32.const len)` */
export const pl = (b: Blob): string => `${c(b.ptr)} ${c(b.len)}`;

function watBytes(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : '\\' + b.toString(16).padStart(2, '0');
  return s;
}

/** Serialized header pairs (§3.10), written out independently of the runtime's encoder. */
export function pairsBytes(pairs: Array<[string, string]>): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const parts: Buffer[] = [u32(pairs.length)];
  for (const [k, v] of pairs) parts.push(u32(Buffer.byteLength(k)), u32(Buffer.byteLength(v)));
  for (const [k, v] of pairs) parts.push(Buffer.from(k), Buffer.from([0]), Buffer.from(v), Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Constant inputs of a module, placed in the DATA region. */
export class Strings {
  #at = DATA;
  #segments: string[] = [];

  add(data: string | Uint8Array): Blob {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const ptr = this.#at;
    if (ptr + bytes.length > EVENT_COUNT) throw new Error('test data overflows the DATA region');
    if (bytes.length > 0) this.#segments.push(`(data ${c(ptr)} "${watBytes(bytes)}")`);
    this.#at = (ptr + bytes.length + 8) & ~7;
    return { ptr, len: bytes.length };
  }

  pairs(pairs: Array<[string, string]>): Blob {
    return this.add(pairsBytes(pairs));
  }

  wat(): string {
    return this.#segments.join('\n  ');
  }
}

// ---- recording callbacks -----------------------------------------------------------------------

/** Callback exports: [event name, parameter count, has a result]. */
const CALLBACKS = {
  proxy_on_context_create: ['context_create', 2, false],
  proxy_on_vm_start: ['vm_start', 2, true],
  proxy_on_configure: ['configure', 2, true],
  proxy_on_tick: ['tick', 1, false],
  proxy_on_queue_ready: ['queue_ready', 2, false],
  proxy_on_foreign_function: ['foreign_function', 3, false],
  proxy_on_request_headers: ['request_headers', 3, true],
  proxy_on_request_body: ['request_body', 3, true],
  proxy_on_request_trailers: ['request_trailers', 2, true],
  proxy_on_response_headers: ['response_headers', 3, true],
  proxy_on_response_body: ['response_body', 3, true],
  proxy_on_response_trailers: ['response_trailers', 2, true],
  proxy_on_new_connection: ['new_connection', 1, true],
  proxy_on_downstream_data: ['downstream_data', 3, true],
  proxy_on_upstream_data: ['upstream_data', 3, true],
  proxy_on_downstream_connection_close: ['downstream_close', 2, false],
  proxy_on_upstream_connection_close: ['upstream_close', 2, false],
  proxy_on_http_call_response: ['http_call_response', 5, false],
  proxy_on_grpc_receive_initial_metadata: ['grpc_initial_metadata', 3, false],
  proxy_on_grpc_receive: ['grpc_receive', 3, false],
  proxy_on_grpc_receive_trailing_metadata: ['grpc_trailing_metadata', 3, false],
  proxy_on_grpc_close: ['grpc_close', 3, false],
  proxy_on_log: ['log', 1, false],
  proxy_on_done: ['done', 1, true],
  proxy_on_delete: ['delete', 1, false],
} as const;
export type CallbackName = keyof typeof CALLBACKS;

/** The network-filter callbacks: exported only by modules that ask for them (recordingCallbacks' `network`). */
const NETWORK_CALLBACKS = new Set<string>([
  'proxy_on_new_connection', 'proxy_on_downstream_data', 'proxy_on_upstream_data',
  'proxy_on_downstream_connection_close', 'proxy_on_upstream_connection_close',
]);

/** What a callback returns unless told otherwise: "OK" for start and done, "continue" for stream callbacks. */
const DEFAULT_RESULT: Partial<Record<CallbackName, number>> = { proxy_on_vm_start: 1, proxy_on_configure: 1, proxy_on_done: 1 };

export interface CallbackSpec {
  /** wat run after the event is recorded; for callbacks with a result, it must leave the i32 result. */
  body?: string;
  /** Parameter count, for ABI 0.1.0 (2-argument header callbacks). */
  params?: number;
  /** Extra locals (all i32), referenced as $name. */
  locals?: string[];
}

/**
 * Every callback export, each recording its arguments as an event. `specs` changes what a callback
 * does after recording (or leaves it out with `null`).
 */
export function recordingCallbacks(specs: Partial<Record<CallbackName, CallbackSpec | string | null>> = {}, opts: { network?: boolean } = {}): string {
  const funcs: string[] = [];
  for (const [exportName, [event, params, hasResult]] of Object.entries(CALLBACKS) as Array<[CallbackName, readonly [string, number, boolean]]>) {
    const raw = specs[exportName];
    if (raw === null) continue;
    if (NETWORK_CALLBACKS.has(exportName) && !opts.network) continue;
    const spec: CallbackSpec = typeof raw === 'string' ? { body: raw } : (raw ?? {});
    const n = spec.params ?? params;
    const paramList = Array.from({ length: n }, () => 'i32').join(' ');
    const locals = (spec.locals ?? []).map((l) => `(local $${l} i32)`).join(' ');
    const record = ev(event, ...Array.from({ length: n }, (_, i) => arg(i)));
    const body = spec.body ?? (hasResult ? c(DEFAULT_RESULT[exportName] ?? 0) : '');
    funcs.push(`(func (export "${exportName}") (param ${paramList})${hasResult ? ' (result i32)' : ''} ${locals}
    ${record}
    ${body})`);
  }
  return funcs.join('\n  ');
}

/**
 * A module with the wat.ts boilerplate, the event recorder, the constant data and `body`.
 * Common imports (proxy_log and friends) are declared by the caller in `imports`.
 */
export function recordingModule(opts: { imports?: string; body: string; strings?: Strings; abi?: '0_1_0' | '0_2_0' | '0_2_1' }): string {
  return guestModule({
    imports: opts.imports,
    abi: opts.abi,
    body: `${EVENT_FUNC}
  ${opts.strings?.wat() ?? ''}
  ${opts.body}`,
  });
}

/** Import declarations by function name, with their ABI signatures. */
const IMPORT_SIGS: Record<string, string> = {
  proxy_log: '(param i32 i32 i32) (result i32)',
  proxy_set_tick_period_milliseconds: '(param i32) (result i32)',
  proxy_get_status: '(param i32 i32 i32) (result i32)',
  proxy_get_header_map_value: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_add_header_map_value: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_replace_header_map_value: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_remove_header_map_value: '(param i32 i32 i32) (result i32)',
  proxy_get_header_map_pairs: '(param i32 i32 i32) (result i32)',
  proxy_set_header_map_pairs: '(param i32 i32 i32) (result i32)',
  proxy_get_header_map_size: '(param i32 i32) (result i32)',
  proxy_get_buffer_bytes: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_set_buffer_bytes: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_get_buffer_status: '(param i32 i32 i32) (result i32)',
  proxy_continue_stream: '(param i32) (result i32)',
  proxy_close_stream: '(param i32) (result i32)',
  proxy_send_local_response: '(param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)',
  proxy_http_call: '(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)',
  proxy_grpc_call: '(param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)',
  proxy_set_effective_context: '(param i32) (result i32)',
  proxy_done: '(result i32)',
  proxy_get_property: '(param i32 i32 i32 i32) (result i32)',
  proxy_set_property: '(param i32 i32 i32 i32) (result i32)',
  proxy_get_current_time_nanoseconds: '(param i32) (result i32)',
  proxy_get_log_level: '(param i32) (result i32)',
  proxy_get_shared_data: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_set_shared_data: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_register_shared_queue: '(param i32 i32 i32) (result i32)',
  proxy_resolve_shared_queue: '(param i32 i32 i32 i32 i32) (result i32)',
  proxy_enqueue_shared_queue: '(param i32 i32 i32) (result i32)',
  proxy_dequeue_shared_queue: '(param i32 i32 i32) (result i32)',
  proxy_define_metric: '(param i32 i32 i32 i32) (result i32)',
  proxy_call_foreign_function: '(param i32 i32 i32 i32 i32 i32) (result i32)',
  proxy_continue_request: '(result i32)',
};

/** `(import "env" "name" (func $name ...))` for each name. */
export function envImports(...names: string[]): string {
  return names
    .map((n) => {
      const sig = IMPORT_SIGS[n];
      if (!sig) throw new Error(`no signature for ${n}`);
      return `(import "env" "${n}" (func $${n} ${sig}))`;
    })
    .join('\n  ');
}

/** `(drop (call $proxy_log (i32.const level) ptr len))` */
export const log = (level: number, b: Blob): string => `(drop (call $proxy_log ${c(level)} ${pl(b)}))`;

// ---- loading -----------------------------------------------------------------------------------

export interface LoadedPlugin {
  plugin: Plugin;
  /** Every log line of every VM of the plugin, as "level: message". */
  logs: string[];
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'critical'];

/** Compiles the wat and loads it as a plugin (log level trace); module log lines land in `logs`. */
export async function loadPlugin(
  wat: string,
  config: Partial<PluginConfig> = {},
  host: PluginHost = {},
  compile?: CompileOptions,
): Promise<LoadedPlugin> {
  const logs: string[] = [];
  const bytes = await wat2wasm(wat);
  const plugin = await Plugin.load(
    bytes,
    { name: 'test', logLevel: 'trace', ...config },
    { log: (level: LogLevel, message: string) => logs.push(`${LEVELS[level]}: ${message}`), ...host },
    compile,
  );
  return { plugin, logs };
}

// ---- sink --------------------------------------------------------------------------------------

/** What the next hop of a stream saw, in order, plus the latest of each kind for detailed checks. */
export class TraceSink implements HttpStreamSink {
  /** e.g. "request headers", "request data 'abc' end", "local 403", "reset wasm_close_stream". */
  readonly trace: string[] = [];
  requestHeadersSeen: HeaderList | undefined;
  requestTrailersSeen: HeaderList | undefined;
  responseHeadersSeen: HeaderList | undefined;
  responseTrailersSeen: HeaderList | undefined;
  readonly requestBody: Buffer[] = [];
  readonly responseBody: Buffer[] = [];
  readonly locals: LocalResponse[] = [];
  readonly resets: string[] = [];

  requestHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.requestHeadersSeen = [...headers];
    this.trace.push(`request headers${endOfStream ? ' end' : ''}`);
  }
  requestData(data: Uint8Array, endOfStream: boolean): void {
    this.requestBody.push(Buffer.from(data));
    this.trace.push(`request data '${Buffer.from(data).toString()}'${endOfStream ? ' end' : ''}`);
  }
  requestTrailers(trailers: HeaderList): void {
    this.requestTrailersSeen = [...trailers];
    this.trace.push('request trailers');
  }
  responseHeaders(headers: HeaderList, endOfStream: boolean): void {
    this.responseHeadersSeen = [...headers];
    this.trace.push(`response headers${endOfStream ? ' end' : ''}`);
  }
  responseData(data: Uint8Array, endOfStream: boolean): void {
    this.responseBody.push(Buffer.from(data));
    this.trace.push(`response data '${Buffer.from(data).toString()}'${endOfStream ? ' end' : ''}`);
  }
  responseTrailers(trailers: HeaderList): void {
    this.responseTrailersSeen = [...trailers];
    this.trace.push('response trailers');
  }
  localResponse(response: LocalResponse): void {
    this.locals.push(response);
    this.trace.push(`local ${response.status}`);
  }
  reset(reason: string): void {
    this.resets.push(reason);
    this.trace.push(`reset ${reason}`);
  }
}

/**
 * Request and response headers as a stream receives them. Fresh lists each time: the stream hands the
 * list itself to the module, which may change it.
 */
export const GET = (): HeaderList => [':method', 'GET', ':path', '/items', ':authority', 'api.local', ':scheme', 'http'];
export const POST = (): HeaderList => [':method', 'POST', ':path', '/items', ':authority', 'api.local', ':scheme', 'http', 'content-type', 'text/plain'];
export const OK_RESPONSE = (): HeaderList => [':status', '200', 'content-type', 'text/plain'];

/** Lets promise callbacks and setImmediate work run (callout answers, deferred resumes). */
export function settle(rounds = 5): Promise<void> {
  return new Promise((resolve) => {
    let n = rounds;
    const step = (): void => {
      if (n-- > 0) setImmediate(step);
      else resolve();
    };
    step();
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every few ms until true or `ms` passed; returns whether it became true. */
export async function waitFor(cond: () => boolean, ms = 1000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(2);
  }
  return true;
}
