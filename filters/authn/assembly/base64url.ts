// base64url (RFC 4648 §5) without padding, as JWS compact serialization uses it (RFC 7515 §2).
// Strict: any other character, '=' padding, or a length that cannot be base64 is refused (null).

function value(c: i32): i32 {
  if (c >= 0x41 && c <= 0x5a) return c - 0x41; // A-Z
  if (c >= 0x61 && c <= 0x7a) return c - 0x61 + 26; // a-z
  if (c >= 0x30 && c <= 0x39) return c - 0x30 + 52; // 0-9
  if (c == 0x2d) return 62; // -
  if (c == 0x5f) return 63; // _
  return -1;
}

/** Decodes s[start, end); null when it is not unpadded base64url. */
export function decodeBase64Url(s: string, start: i32, end: i32): ArrayBuffer | null {
  const n = end - start;
  if (n < 0 || (n & 3) == 1) return null;
  const out = new ArrayBuffer((n * 3) >> 2);
  const base = changetype<usize>(out);
  let acc: u32 = 0;
  let bits: i32 = 0;
  let o: usize = 0;
  for (let i = start; i < end; i++) {
    const v = value(s.charCodeAt(i));
    if (v < 0) return null;
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      store<u8>(base + o, <u8>((acc >> <u32>bits) & 0xff));
      o++;
    }
  }
  return out;
}

/** True when every character of s is in the base64url alphabet (and s is not empty). */
export function isBase64Url(s: string): bool {
  const n = s.length;
  if (n == 0) return false;
  for (let i = 0; i < n; i++) if (value(s.charCodeAt(i)) < 0) return false;
  return true;
}
