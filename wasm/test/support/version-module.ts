// A filter module that says which version it is: every response gets `x-filter-version: <tag>`, and
// `x-first: <tag of the first version that configured>` read from shared data (vm_id scoped), which
// shows shared data surviving module swaps. Variants: `trap` fails every request (unreachable),
// `failStart` refuses to start (on_vm_start returns false).
import { guestModule, wat2wasm } from './wat.ts';

export interface VersionModuleOptions {
  trap?: boolean;
  failStart?: boolean;
}

export function versionModuleWat(tag: string, opts: VersionModuleOptions = {}): string {
  return guestModule({
    // The test allocator never frees: room for a long load test's shared-data reads.
    memoryPages: 32,
    imports: `
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))`,
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
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ${opts.trap ? 'unreachable' : '(i32.const 0)'})
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
