// A filter module that says which version it is: every response gets `x-filter-version: <tag>`, and
// `x-first: <tag of the first version that configured>` read from shared data (vm_id scoped), which
// shows shared data surviving module swaps. Variants: `trap` fails every request (unreachable),
// `failStart` refuses to start (on_vm_start returns false), `loopOn` loops forever on one path.
import { guestModule, wat2wasm } from './wat.ts';

export interface VersionModuleOptions {
  trap?: boolean;
  failStart?: boolean;
  /** proxy_on_request_headers loops forever when :path is this (under the CPU budget: a cpu_budget trap). */
  loopOn?: string;
}

/** Request headers that loop forever when :path equals `path` (bytes at 1200, the path at 1216), else continue. */
function loopOnPath(path: string): string {
  return `(data (i32.const 1200) ":path")
  (data (i32.const 1216) "${path}")
  (func $is_loop_path (result i32) (local $i i32) (local $value i32)
    (if (i32.ne (call $get_header (i32.const 0) (i32.const 1200) (i32.const 5) (i32.const 32) (i32.const 36)) (i32.const 0))
      (then (return (i32.const 0))))
    (if (i32.ne (i32.load (i32.const 36)) (i32.const ${Buffer.byteLength(path)})) (then (return (i32.const 0))))
    (local.set $value (i32.load (i32.const 32)))
    (block $differ
      (loop $next
        (br_if $differ (i32.ne (i32.load8_u (i32.add (local.get $value) (local.get $i))) (i32.load8_u (i32.add (i32.const 1216) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $next (i32.lt_u (local.get $i) (i32.const ${Buffer.byteLength(path)}))))
      (return (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $is_loop_path) (then (loop $forever (br $forever))))
    (i32.const 0))`;
}

export function versionModuleWat(tag: string, opts: VersionModuleOptions = {}): string {
  return guestModule({
    // The test allocator never frees: room for a long load test's shared-data reads.
    memoryPages: 32,
    imports: `
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))`,
    body: `
  (data (i32.const 1024) "x-filter-version")
  (data (i32.const 1056) "${tag}")
  (data (i32.const 1088) "first")
  (data (i32.const 1104) "x-first")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const ${opts.failStart ? 0 : 1}))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    ;; The first version to configure in this vm_id writes its tag; later versions find it.
    (if (i32.ne (call $get_shared (i32.const 1088) (i32.const 5) (i32.const 16) (i32.const 20) (i32.const 24)) (i32.const 0))
      (then (drop (call $set_shared (i32.const 1088) (i32.const 5) (i32.const 1056) (i32.const ${tag.length}) (i32.const 0)))))
    (i32.const 1))
  ${
    opts.loopOn !== undefined
      ? loopOnPath(opts.loopOn)
      : `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ${opts.trap ? 'unreachable' : '(i32.const 0)'})`
  }
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get_shared (i32.const 1088) (i32.const 5) (i32.const 16) (i32.const 20) (i32.const 24)))
      (then (drop (call $add_header (i32.const 2) (i32.const 1104) (i32.const 7) (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
    (drop (call $add_header (i32.const 2) (i32.const 1024) (i32.const 16) (i32.const 1056) (i32.const ${tag.length})))
    (i32.const 0))`,
  });
}

export function versionModule(tag: string, opts: VersionModuleOptions = {}): Promise<Uint8Array> {
  return wat2wasm(versionModuleWat(tag, opts), `${tag}.wat`);
}
