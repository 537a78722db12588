// Host calls the SDK does not wrap, declared directly (the ABI: ../../README.md of wasmesh,
// docs/authoring.md). Declaring an import the SDK also declares is fine: both name one env function.

// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(buffer_type: u32, start: u32, length: u32, data: usize, size: usize): u32;

const HTTP_RESPONSE_BODY: u32 = 1;

/** Replaces the whole response body the filter holds (in on_response_body) with `body`. */
export function setResponseBody(length: u32, body: ArrayBuffer): bool {
  // Pinned for the call, as the SDK does with what it hands the host: the host reads the buffer.
  const ptr = __pin(changetype<usize>(body));
  const result = proxy_set_buffer_bytes(HTTP_RESPONSE_BODY, 0, length, ptr, <usize>body.byteLength);
  __unpin(ptr);
  return result == 0;
}
