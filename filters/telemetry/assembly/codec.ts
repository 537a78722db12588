// Small text codecs: hex, base64, percent-escaping of metadata values and metric label escaping.
// All total functions: bad input gives an empty/null result, never a trap.

const HEX = "0123456789abcdef";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Writes the lowercase hex of `len` bytes at `src` as 2 * len ASCII bytes at `dst`; returns dst + 2 * len. */
export function writeHex(dst: usize, src: usize, len: usize): usize {
  for (let i: usize = 0; i < len; i++) {
    const b = <u32>load<u8>(src + i);
    store<u8>(dst, <u8>(b >> 4 < 10 ? 0x30 + (b >> 4) : 0x57 + (b >> 4)));
    store<u8>(dst + 1, <u8>((b & 15) < 10 ? 0x30 + (b & 15) : 0x57 + (b & 15)));
    dst += 2;
  }
  return dst;
}

/** 0-15 for a hex digit (either case), -1 otherwise. */
export function hexValue(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** True when `s` is exactly `len` hex digits (lowercase only when `lowerOnly`) and not all zeros. */
export function isHexId(s: string, len: i32, lowerOnly: bool): bool {
  if (s.length != len) return false;
  let nonZero = false;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (lowerOnly && c >= 0x41 && c <= 0x46) return false;
    if (hexValue(c) < 0) return false;
    if (c != 0x30) nonZero = true;
  }
  return nonZero;
}

export function base64Encode(data: ArrayBuffer): string {
  const ptr = changetype<usize>(data);
  const n = <usize>data.byteLength;
  let out = "";
  let i: usize = 0;
  for (; i + 3 <= n; i += 3) {
    const v = (<i32>load<u8>(ptr + i) << 16) | (<i32>load<u8>(ptr + i + 1) << 8) | <i32>load<u8>(ptr + i + 2);
    out += B64.charAt((v >> 18) & 63) + B64.charAt((v >> 12) & 63) + B64.charAt((v >> 6) & 63) + B64.charAt(v & 63);
  }
  const rest = n - i;
  if (rest == 1) {
    const v = <i32>load<u8>(ptr + i) << 16;
    out += B64.charAt((v >> 18) & 63) + B64.charAt((v >> 12) & 63) + "==";
  } else if (rest == 2) {
    const v = (<i32>load<u8>(ptr + i) << 16) | (<i32>load<u8>(ptr + i + 1) << 8);
    out += B64.charAt((v >> 18) & 63) + B64.charAt((v >> 12) & 63) + B64.charAt((v >> 6) & 63) + "=";
  }
  return out;
}

function b64Value(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41;
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26;
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52;
  if (c == 0x2b || c == 0x2d) return 62; // + (standard) or - (URL-safe)
  if (c == 0x2f || c == 0x5f) return 63; // / (standard) or _ (URL-safe)
  return -1;
}

/** Decodes base64 (standard or URL-safe, padding optional); null when it is not base64. */
export function base64Decode(s: string): ArrayBuffer | null {
  let n = s.length;
  while (n > 0 && s.charCodeAt(n - 1) == 0x3d) n--;
  if (s.length - n > 2 || n % 4 == 1) return null;
  const out = new ArrayBuffer((n * 3) >> 2);
  const ptr = changetype<usize>(out);
  let acc = 0;
  let bits = 0;
  let o: usize = 0;
  for (let i = 0; i < n; i++) {
    const v = b64Value(s.charCodeAt(i));
    if (v < 0) return null;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      store<u8>(ptr + o, <u8>(acc >> bits));
      o++;
    }
  }
  return out;
}

/** Escapes `%`, `;`, `=` and control characters as %XX, so a value cannot break the `k=v;` encoding. */
export function percentEscape(s: string): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x25 || c == 0x3b || c == 0x3d || c < 0x20) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x25 || c == 0x3b || c == 0x3d || c < 0x20) out += "%" + HEX.charAt(c >> 4).toUpperCase() + HEX.charAt(c & 15).toUpperCase();
    else out += String.fromCharCode(c);
  }
  return out;
}

export function percentUnescape(s: string): string {
  if (s.indexOf("%") < 0) return s;
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c == 0x25 && i + 2 < s.length) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        out += String.fromCharCode((hi << 4) | lo);
        i += 3;
        continue;
      }
    }
    out += String.fromCharCode(c);
    i++;
  }
  return out;
}

/** A Prometheus label value as the registry parses it inside `name{label="..."}`: \\, \" and \n escaped. */
export function escapeLabel(s: string): string {
  let special = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x5c || c == 0x22 || c == 0x0a) {
      special = true;
      break;
    }
  }
  if (!special) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x5c) out += "\\\\";
    else if (c == 0x22) out += "\\\"";
    else if (c == 0x0a) out += "\\n";
    else out += String.fromCharCode(c);
  }
  return out;
}
