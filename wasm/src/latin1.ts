// Short header names and values cross the guest boundary on every request. Node's latin1 helpers are
// native calls with a fixed toll that dominates for a 10-byte name, so short strings are moved here
// in plain JS and long ones still go through Buffer.

const SHORT = 32;

/** Index (even) of the first header whose name equals guest bytes [ptr, ptr+len) ASCII-case-insensitively, or -1. */
export function findHeader(list: readonly string[], bytes: Uint8Array, ptr: number, len: number): number {
  outer: for (let i = 0; i < list.length; i += 2) {
    const name = list[i];
    if (name.length !== len) continue;
    for (let j = 0; j < len; j++) {
      let b = bytes[ptr + j];
      if (b >= 65 && b <= 90) b |= 0x20;
      if (name.charCodeAt(j) !== b) continue outer;
    }
    return i;
  }
  return -1;
}

/** Reads guest bytes as a latin1 string (the caller checked bounds). */
export function readLatin1(bytes: Buffer, ptr: number, len: number): string {
  if (len > SHORT) return bytes.latin1Slice(ptr, ptr + len);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(bytes[ptr + i]);
  return s;
}

/** Reads a header name: latin1, ASCII letters lowercased. */
export function readLowerLatin1(bytes: Buffer, ptr: number, len: number): string {
  if (len > SHORT) return bytes.latin1Slice(ptr, ptr + len).toLowerCase();
  let s = '';
  for (let i = 0; i < len; i++) {
    const b = bytes[ptr + i];
    s += String.fromCharCode(b >= 65 && b <= 90 ? b | 0x20 : b);
  }
  return s;
}

/** Writes a latin1 string into guest bytes (the caller checked bounds). */
export function writeLatin1(bytes: Buffer, value: string, at: number): void {
  const len = value.length;
  if (len > SHORT) {
    bytes.latin1Write(value, at, len);
    return;
  }
  for (let i = 0; i < len; i++) bytes[at + i] = value.charCodeAt(i);
}
