// Network (L4) filters with @solo-io/proxy-runtime. The SDK's Context class has the TCP callbacks
// (onNewConnection, onDownstreamData, onUpstreamData, onDownstreamConnectionClose,
// onUpstreamConnectionClose), but its exports.ts never exports the ABI entry points that call them, so
// a host never reaches them. This file provides those entry points and the buffer and stream calls a
// network filter needs. A network filter's assembly/index.ts re-exports the five entry points by name:
//
//   export * from "@solo-io/proxy-runtime/proxy";
//   export {
//     proxy_on_new_connection, proxy_on_downstream_data, proxy_on_upstream_data,
//     proxy_on_downstream_connection_close, proxy_on_upstream_connection_close,
//   } from "../../common/assembly/network";
//
// (Exported from here rather than by patching the SDK: the patch is shared by every filter and an HTTP
// filter must not export network callbacks it does not implement; a host only calls what is exported.)
import { getContext, get_buffer_bytes, BufferTypeValues, PeerTypeValues, StreamTypeValues, WasmResultValues } from "@solo-io/proxy-runtime/assembly/runtime";
import * as imports from "@solo-io/proxy-runtime/assembly/imports";

// ---- ABI entry points ---------------------------------------------------------------------------

export function proxy_on_new_connection(context_id: u32): u32 {
  return <u32>getContext(context_id).onNewConnection();
}

export function proxy_on_downstream_data(context_id: u32, data_size: u32, end_of_stream: u32): u32 {
  return <u32>getContext(context_id).onDownstreamData(data_size, end_of_stream != 0);
}

export function proxy_on_upstream_data(context_id: u32, data_size: u32, end_of_stream: u32): u32 {
  return <u32>getContext(context_id).onUpstreamData(data_size, end_of_stream != 0);
}

export function proxy_on_downstream_connection_close(context_id: u32, peer_type: u32): void {
  getContext(context_id).onDownstreamConnectionClose(<PeerTypeValues>peer_type);
}

export function proxy_on_upstream_connection_close(context_id: u32, peer_type: u32): void {
  getContext(context_id).onUpstreamConnectionClose(<PeerTypeValues>peer_type);
}

// ---- calls a network filter makes ----------------------------------------------------------------

/** Bytes [start, start+length) of the client's data (readable in onDownstreamData and while paused). */
export function get_downstream_data(start: u32, length: u32): ArrayBuffer {
  return get_buffer_bytes(BufferTypeValues.NetworkDownstreamData, start, length);
}

/** Bytes [start, start+length) of the upstream's data (readable in onUpstreamData and while paused). */
export function get_upstream_data(start: u32, length: u32): ArrayBuffer {
  return get_buffer_bytes(BufferTypeValues.NetworkUpstreamData, start, length);
}

/**
 * Replaces bytes [start, start+length) of a data buffer with `data`: start 0 and length 0 prepends,
 * start at or past the end appends, start 0 and length >= the buffer's length replaces it all.
 */
export function set_data(typ: BufferTypeValues, start: u32, length: u32, data: ArrayBuffer): WasmResultValues {
  const ptr = __pin(changetype<usize>(data));
  const result = imports.proxy_set_buffer_status(typ, start, length, ptr, data.byteLength);
  __unpin(ptr);
  return result;
}

/** Lets the client bytes held by a StopIteration go on (after the current callback returns). */
export function continue_downstream(): WasmResultValues {
  return imports.proxy_continue_stream(StreamTypeValues.Downstream);
}

/** Lets the upstream bytes held by a StopIteration go on (wasmesh; Envoy answers Unimplemented). */
export function continue_upstream(): WasmResultValues {
  return imports.proxy_continue_stream(StreamTypeValues.Upstream);
}

/** Closes the connection (after the current callback returns); nothing more passes either way. */
export function close_downstream(): WasmResultValues {
  return imports.proxy_close_stream(StreamTypeValues.Downstream);
}

/** Closes the connection naming its upstream side. */
export function close_upstream(): WasmResultValues {
  return imports.proxy_close_stream(StreamTypeValues.Upstream);
}
