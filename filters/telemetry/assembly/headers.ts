// A header map read once (proxy_get_header_map_pairs) and searched in place: on_log needs several
// request headers, and one host call beats one per header. Values are found as byte ranges and only
// turned into strings when a caller needs a string.

export class HeaderPairs {
  private buffer: ArrayBuffer;
  private count: usize = 0;
  /** Set by find(): where the value of the last found header is. */
  valuePtr: usize = 0;
  valueLen: usize = 0;

  constructor(buffer: ArrayBuffer | null) {
    this.buffer = buffer === null ? new ArrayBuffer(0) : buffer;
    this.count = validCount(this.buffer);
  }

  /** Finds the first header named `name` (lowercase bytes); sets valuePtr/valueLen. */
  find(name: ArrayBuffer): bool {
    const base = changetype<usize>(this.buffer);
    const nameLen = <usize>name.byteLength;
    const namePtr = changetype<usize>(name);
    let data = base + 4 + this.count * 8;
    for (let i: usize = 0; i < this.count; i++) {
      const keyLen = <usize>load<u32>(base + 4 + i * 8);
      const valueLen = <usize>load<u32>(base + 8 + i * 8);
      if (keyLen == nameLen && memory.compare(data, namePtr, keyLen) == 0) {
        this.valuePtr = data + keyLen + 1;
        this.valueLen = valueLen;
        return true;
      }
      data += keyLen + 1 + valueLen + 1;
    }
    return false;
  }

  /** True when the value find() found begins with `prefix`. */
  valueStartsWith(prefix: ArrayBuffer): bool {
    const n = <usize>prefix.byteLength;
    return this.valueLen >= n && memory.compare(this.valuePtr, changetype<usize>(prefix), n) == 0;
  }

  /** The header's value as a string (UTF-8), or null. */
  get(name: ArrayBuffer): string | null {
    return this.find(name) ? String.UTF8.decodeUnsafe(this.valuePtr, this.valueLen) : null;
  }
}

/** The number of pairs, once the layout is checked (so find() can trust it); 0 when malformed. */
function validCount(buffer: ArrayBuffer): usize {
  const size = <usize>buffer.byteLength;
  if (size < 4) return 0;
  const base = changetype<usize>(buffer);
  const count = <usize>load<u32>(base);
  if (count > (size - 4) / 8) return 0;
  let data = base + 4 + count * 8;
  for (let i: usize = 0; i < count; i++) {
    data += <usize>load<u32>(base + 4 + i * 8) + 1 + <usize>load<u32>(base + 8 + i * 8) + 1;
    if (data > base + size) return 0;
  }
  return count;
}
