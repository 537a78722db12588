// WebAssembly text filters that misbehave on request, for the proxy's isolation tests and benchmark:
// one module that, asked by a request header, loops, recurses, grows its memory, writes a 32 MiB
// header or traps, and a well-behaved header writer for the output-limit tests. Text, not an SDK
// build, so every misbehaviour is exactly what it says.
import { Strings, c, envImports, out, outVal, pl } from '../../../wasm/test/support/recorder.ts';
import { guestModule } from '../../../wasm/test/support/wat.ts';

const PAGE = 65536;
/** Where the bump allocator starts (support/wat.ts); reset at each callback, as nothing outlives one. */
const HEAP = 32768;
/** The big header's value lives above the module's first two pages. */
const BIG_AT = 2 * PAGE;
export const BIG_HEADER_BYTES = 32 * 1024 * 1024;
/** Iterations of the bounded loop behind x-work: about 10 M fuel units (10 per iteration). */
const WORK_ITERATIONS = 1_000_000;

/**
 * What each request header (its presence; the value is ignored) makes the filter do in
 * on_request_headers:
 * - x-loop: loop forever; x-deep: recurse without end; x-grow: grow memory until refused, then trap;
 * - x-work: a bounded loop of about 10 M fuel units, then carry on (passes the default budget, not a small one);
 * - x-big-header: add a request header with a 32 MiB value (then carry on);
 * - x-body-loop: loop forever in this stream's response body callback;
 * - x-tick: start a 1 ms tick whose callback loops forever;
 * - x-callout: call `calloutCluster` and pause; the callout's answer callback loops forever.
 * A request for the path /trap traps (unreachable). Every request the filter lets through carries
 * `x-filtered: 1`, so a stream that passed without it (FAIL_OPEN) shows.
 */
export function hostileFilterWat(calloutCluster: string): string {
  const s = new Strings();
  const names = ['x-loop', 'x-deep', 'x-grow', 'x-work', 'x-big-header', 'x-body-loop', 'x-tick', 'x-callout'] as const;
  const blob = Object.fromEntries(names.map((n) => [n, s.add(n)])) as Record<(typeof names)[number], ReturnType<Strings['add']>>;
  const path = s.add(':path');
  const xBig = s.add('x-big');
  const xFiltered = s.add('x-filtered');
  const one = s.add('1');
  const cluster = s.add(calloutCluster);
  const calloutHeaders = s.pairs([[':method', 'GET'], [':path', '/check'], [':authority', 'authz']]);
  const has = (name: (typeof names)[number]) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(blob[name])} ${c(out(0))} ${c(out(1))}))`;
  const bigPages = (BIG_AT + BIG_HEADER_BYTES) / PAGE;
  return guestModule({
    imports: envImports('proxy_get_header_map_value', 'proxy_add_header_map_value', 'proxy_set_tick_period_milliseconds', 'proxy_http_call'),
    body: `
  ${s.wat()}
  (global $bodyLoopContext (mut i32) (i32.const 0))
  (func $spin (loop $l (br $l)))
  (func $deep (param i32) (result i32) (i32.add (call $deep (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  ;; A page at a time, as an allocator out of room would: the runtime names the cause "memory" when a
  ;; trap comes with less than a page left below the VM's bound.
  (func $grow (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable)
  (func $work (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) ${c(WORK_ITERATIONS)}))))
  (func $isTrapPath (result i32)
    (if (i32.ne (call $proxy_get_header_map_value ${c(0)} ${pl(path)} ${c(out(0))} ${c(out(1))}) ${c(0)}) (then (return ${c(0)})))
    (if (i32.ne ${outVal(1)} ${c(5)}) (then (return ${c(0)})))
    ;; "/tra" little-endian, then "p"
    (i32.and (i32.eq (i32.load ${outVal(0)}) ${c(0x6172742f)}) (i32.eq (i32.load8_u offset=4 ${outVal(0)}) ${c(112)})))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $heap ${c(HEAP)})
    (if ${has('x-loop')} (then (call $spin)))
    (if ${has('x-deep')} (then (drop (call $deep ${c(0)}))))
    (if ${has('x-grow')} (then (call $grow)))
    (if ${has('x-work')} (then (call $work)))
    (if ${has('x-big-header')} (then
      (if (i32.lt_u (memory.size) ${c(bigPages)}) (then
        (drop (memory.grow (i32.sub ${c(bigPages)} (memory.size))))
        (memory.fill ${c(BIG_AT)} ${c(97)} ${c(BIG_HEADER_BYTES)})))
      (drop (call $proxy_add_header_map_value ${c(0)} ${pl(xBig)} ${c(BIG_AT)} ${c(BIG_HEADER_BYTES)}))))
    (if ${has('x-body-loop')} (then (global.set $bodyLoopContext (local.get $ctx))))
    (if ${has('x-tick')} (then (drop (call $proxy_set_tick_period_milliseconds ${c(1)}))))
    (if ${has('x-callout')} (then
      (drop (call $proxy_http_call ${pl(cluster)} ${pl(calloutHeaders)} ${c(0)} ${c(0)} ${c(0)} ${c(0)} ${c(5000)} ${c(out(4))}))
      (return ${c(1)})))
    (if (call $isTrapPath) (then unreachable))
    (drop (call $proxy_add_header_map_value ${c(0)} ${pl(xFiltered)} ${pl(one)}))
    ${c(0)})
  (func (export "proxy_on_response_body") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eq (local.get $ctx) (global.get $bodyLoopContext)) (then (call $spin)))
    ${c(0)})
  (func (export "proxy_on_tick") (param i32) (call $spin))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32) (call $spin))`,
  });
}

/**
 * A well-behaved filter that writes big headers when asked: x-write-request adds `x-filler` with
 * `requestBytes` bytes to the request; x-write-response adds one of `responseBytes` to that stream's
 * response. Within the limits they go through; past them the proxy refuses them (500).
 */
export function headerWriterWat(requestBytes: number, responseBytes: number): string {
  const s = new Strings();
  const writeRequest = s.add('x-write-request');
  const writeResponse = s.add('x-write-response');
  const filler = s.add('x-filler');
  const fillAt = PAGE;
  const size = Math.max(requestBytes, responseBytes);
  const pages = Math.ceil((fillAt + size) / PAGE);
  const has = (b: ReturnType<Strings['add']>) => `(i32.eqz (call $proxy_get_header_map_value ${c(0)} ${pl(b)} ${c(out(0))} ${c(out(1))}))`;
  return guestModule({
    memoryPages: pages,
    imports: envImports('proxy_get_header_map_value', 'proxy_add_header_map_value'),
    body: `
  ${s.wat()}
  (global $responseContext (mut i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (memory.fill ${c(fillAt)} ${c(97)} ${c(size)})
    ${c(1)})
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $heap ${c(HEAP)})
    (if ${has(writeRequest)} (then (drop (call $proxy_add_header_map_value ${c(0)} ${pl(filler)} ${c(fillAt)} ${c(requestBytes)}))))
    (if ${has(writeResponse)} (then (global.set $responseContext (local.get $ctx))))
    ${c(0)})
  (func (export "proxy_on_response_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $heap ${c(HEAP)})
    (if (i32.eq (local.get $ctx) (global.get $responseContext)) (then
      (drop (call $proxy_add_header_map_value ${c(2)} ${pl(filler)} ${c(fillAt)} ${c(responseBytes)}))))
    ${c(0)})`,
  });
}
