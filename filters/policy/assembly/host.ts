// Host calls the filter makes per request, written so that nothing a request carries can abort the VM.
// The SDK's get_property aborts (CHECK_RESULT) when a property is missing, which is normal here (no
// peer certificate on a plaintext connection), so properties and headers are read through the raw
// imports: NotFound comes back as null. Blobs the host returns were allocated through the SDK's
// malloc, which pins them; taking one back unpins it, exactly as the SDK's own wrappers do.
import * as imports from "@solo-io/proxy-runtime/assembly/imports";
import { free } from "@solo-io/proxy-runtime/assembly/malloc";
import { define_metric, MetricTypeValues } from "@solo-io/proxy-runtime/assembly/runtime";
import { WasmResultValues } from "@solo-io/proxy-runtime";

// Out-parameters for the host (pointer, length), and for the clock.
const RET = memory.data(8, 4);
const TIME = memory.data(8, 8);

const REQUEST_HEADERS: i32 = 0; // HeaderMapType.RequestHeaders

function takeReturned(): ArrayBuffer {
  const ptr = load<usize>(RET);
  const len = load<u32>(RET, 4);
  if (ptr == 0 || len == 0) return new ArrayBuffer(0);
  const buffer = changetype<ArrayBuffer>(ptr);
  free(ptr); // unpin: `buffer` keeps it alive from here on
  return buffer;
}

/** A property path as the ABI wants it: segments joined by NUL, UTF-8. */
export function propertyPath(segments: string[]): ArrayBuffer {
  return String.UTF8.encode(segments.join("\0"));
}

/** The raw bytes of a property, or null when the host does not have it. `path` must stay reachable. */
export function getPropertyBytes(path: ArrayBuffer): ArrayBuffer | null {
  store<u64>(RET, 0);
  const r = imports.proxy_get_property(changetype<usize>(path), path.byteLength, RET, RET + 4);
  if (r != WasmResultValues.Ok) return null;
  return takeReturned();
}

export function getPropertyString(path: ArrayBuffer): string | null {
  const bytes = getPropertyBytes(path);
  return bytes === null ? null : String.UTF8.decode(bytes);
}

/** An integer property (8 bytes little-endian), or -1 when missing or not an integer. */
export function getPropertyInt(path: ArrayBuffer): i64 {
  const bytes = getPropertyBytes(path);
  if (bytes === null || bytes.byteLength != 8) return -1;
  return load<i64>(changetype<usize>(bytes));
}

/** A request header (name lowercase, UTF-8 encoded), or null when absent. `name` must stay reachable. */
export function getRequestHeader(name: ArrayBuffer): string | null {
  store<u64>(RET, 0);
  const r = imports.proxy_get_header_map_value(REQUEST_HEADERS, changetype<usize>(name), name.byteLength, RET, RET + 4);
  if (r != WasmResultValues.Ok) return null;
  return String.UTF8.decode(takeReturned());
}

/** Wall-clock nanoseconds (proxy_get_current_time_nanoseconds); 0 if the host refuses. */
export function nowNanos(): u64 {
  if (imports.proxy_get_current_time_nanoseconds(TIME) != WasmResultValues.Ok) return 0;
  return load<u64>(TIME);
}

/** A counter defined once; a name the host refuses leaves it inert instead of aborting. */
export class Counter {
  id: u32 = 0;

  constructor(name: string) {
    const r = define_metric(MetricTypeValues.Counter, name);
    if (r.result == WasmResultValues.Ok) this.id = r.metric_id;
  }

  inc(): void {
    if (this.id != 0) imports.proxy_increment_metric(this.id, 1);
  }
}

/** A Prometheus label value in double quotes, escaped. */
export function labelValue(v: string): string {
  let out = "\"";
  for (let i = 0, n = v.length; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c == 0x5c) out += "\\\\";
    else if (c == 0x22) out += "\\\"";
    else if (c == 0x0a) out += "\\n";
    else out += String.fromCharCode(c);
  }
  return out + "\"";
}
