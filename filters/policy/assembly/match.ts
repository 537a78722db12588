// Matching primitives, compiled once in on_configure: Istio string patterns (exact, "abc*" prefix,
// "*abc" suffix, "*" presence), IPv4/IPv6 addresses and CIDR blocks held as integers, and the path
// normalization that makes path rules hard to sidestep with "//", "/./", "/../" or %-escapes.

export const enum MatchKind {
  Exact = 0,
  Prefix = 1,
  Suffix = 2,
  /** "*": any non-empty value. */
  Presence = 3,
}

export class StringMatcher {
  kind: MatchKind;
  value: string;

  constructor(kind: MatchKind, value: string) {
    this.kind = kind;
    this.value = value;
  }

  /** Istio's reading of a pattern: "*" presence, "*abc" suffix, "abc*" prefix, otherwise exact. */
  static parse(pattern: string, lowercase: bool): StringMatcher {
    const p = lowercase ? pattern.toLowerCase() : pattern;
    const n = p.length;
    if (p == "*") return new StringMatcher(MatchKind.Presence, "");
    if (n > 1 && p.charCodeAt(0) == 0x2a) return new StringMatcher(MatchKind.Suffix, p.substring(1));
    if (n > 1 && p.charCodeAt(n - 1) == 0x2a) return new StringMatcher(MatchKind.Prefix, p.substring(0, n - 1));
    return new StringMatcher(MatchKind.Exact, p);
  }

  matches(s: string): bool {
    switch (this.kind) {
      case MatchKind.Exact: return s == this.value;
      case MatchKind.Prefix: return s.startsWith(this.value);
      case MatchKind.Suffix: return s.endsWith(this.value);
      default: return s.length > 0;
    }
  }
}

// ---- IP addresses ----------------------------------------------------------------------------

/** An address: IPv4 in the low 32 bits of `lo`; IPv6 as two 64-bit halves. */
export class IpAddr {
  v6: bool = false;
  hi: u64 = 0;
  lo: u64 = 0;
}

export class Cidr {
  v6: bool;
  hi: u64;
  lo: u64;
  prefix: i32;

  constructor(v6: bool, hi: u64, lo: u64, prefix: i32) {
    this.v6 = v6;
    this.prefix = prefix;
    // Host bits are ignored (Istio accepts "10.1.2.3/8" as 10.0.0.0/8).
    this.hi = hi & maskHi(v6, prefix);
    this.lo = lo & maskLo(v6, prefix);
  }

  contains(ip: IpAddr): bool {
    if (ip.v6 != this.v6) return false;
    return (ip.hi & maskHi(this.v6, this.prefix)) == this.hi && (ip.lo & maskLo(this.v6, this.prefix)) == this.lo;
  }
}

function maskHi(v6: bool, prefix: i32): u64 {
  if (!v6 || prefix <= 0) return 0;
  if (prefix >= 64) return U64.MAX_VALUE;
  return U64.MAX_VALUE << <u64>(64 - prefix);
}

function maskLo(v6: bool, prefix: i32): u64 {
  if (!v6) {
    if (prefix <= 0) return 0;
    if (prefix >= 32) return 0xffffffff;
    return (<u64>0xffffffff << <u64>(32 - prefix)) & 0xffffffff;
  }
  if (prefix <= 64) return 0;
  if (prefix >= 128) return U64.MAX_VALUE;
  return U64.MAX_VALUE << <u64>(128 - prefix);
}

/** Parses "10.0.0.0/8", "10.1.2.3", "2001:db8::/32" or "::1"; null when invalid. */
export function parseCidr(s: string): Cidr | null {
  const slash = s.indexOf("/");
  const addrText = slash < 0 ? s : s.substring(0, slash);
  // Parsed without turning ::ffff:a.b.c.d into IPv4, so the prefix length is read in IPv6 terms.
  const ip = addrText.indexOf(":") >= 0 ? parseIpv6(addrText) : parseIp(addrText);
  if (ip === null) return null;
  const max = ip.v6 ? 128 : 32;
  let prefix = max;
  if (slash >= 0) {
    const digits = s.substring(slash + 1);
    prefix = parseDecimal(digits, 3);
    if (prefix < 0 || prefix > max) return null;
  }
  if (ip.v6 && isV4Mapped(ip) && prefix >= 96) {
    // ::ffff:a.b.c.d/n is the IPv4 block a.b.c.d/(n-96): requests from mapped addresses are IPv4 too.
    return new Cidr(false, 0, ip.lo & 0xffffffff, prefix - 96);
  }
  return new Cidr(ip.v6, ip.hi, ip.lo, prefix);
}

/** An IPv4 or IPv6 address (no port, no zone); IPv4-mapped IPv6 addresses are turned into IPv4. */
export function parseIp(s: string): IpAddr | null {
  if (s.indexOf(":") >= 0) {
    const ip = parseIpv6(s);
    if (ip !== null && isV4Mapped(ip)) {
      const v4 = new IpAddr();
      v4.lo = ip.lo & 0xffffffff;
      return v4;
    }
    return ip;
  }
  const v4 = parseIpv4(s);
  if (v4 < 0) return null;
  const ip = new IpAddr();
  ip.lo = <u64>v4;
  return ip;
}

/**
 * The IP of an "ip:port" address as hosts report it: "10.1.2.3:5555", "[::1]:5555", or the unbracketed
 * "::1:5555" some hosts produce. A trailing zone ("%eth0") is dropped.
 */
export function parseAddressIp(address: string): IpAddr | null {
  let host = address;
  if (address.startsWith("[")) {
    const close = address.indexOf("]");
    if (close < 0) return null;
    host = address.substring(1, close);
  } else {
    const colon = address.lastIndexOf(":");
    if (colon >= 0) host = address.substring(0, colon);
  }
  const pct = host.indexOf("%");
  if (pct >= 0) host = host.substring(0, pct);
  let ip = parseIp(host);
  // No port after all (a bare IPv6 address): try the whole text.
  if (ip === null && !address.startsWith("[")) ip = parseIp(address);
  return ip;
}

function isV4Mapped(ip: IpAddr): bool {
  return ip.v6 && ip.hi == 0 && (ip.lo >> 32) == 0xffff;
}

/** a.b.c.d as a u32 in an i64, or -1. Leading zeros are refused (they are octal to some parsers). */
function parseIpv4(s: string): i64 {
  let value: i64 = 0;
  let parts = 0;
  let start = 0;
  const n = s.length;
  for (let i = 0; i <= n; i++) {
    if (i == n || s.charCodeAt(i) == 0x2e) {
      const len = i - start;
      if (len == 0 || len > 3) return -1;
      if (len > 1 && s.charCodeAt(start) == 0x30) return -1;
      const octet = parseDecimal(s.substring(start, i), 3);
      if (octet < 0 || octet > 255) return -1;
      value = (value << 8) | <i64>octet;
      parts++;
      start = i + 1;
    }
  }
  return parts == 4 ? value : -1;
}

function parseIpv6(s: string): IpAddr | null {
  const groups = new StaticArray<u32>(8);
  let count = 0;
  let gap = -1; // index in groups where "::" stands
  const n = s.length;
  if (n < 2) return null;
  let i = 0;
  if (s.startsWith("::")) {
    gap = 0;
    i = 2;
    if (i == n) return fromGroups(groups, count, gap);
  } else if (s.charCodeAt(0) == 0x3a) {
    return null;
  }
  while (i < n) {
    if (count >= 8) return null;
    // An embedded IPv4 address takes the last two groups.
    const rest = s.substring(i);
    if (rest.indexOf(".") >= 0 && rest.indexOf(":") < 0) {
      if (count > 6) return null;
      const v4 = parseIpv4(rest);
      if (v4 < 0) return null;
      groups[count++] = <u32>(v4 >> 16) & 0xffff;
      groups[count++] = <u32>v4 & 0xffff;
      i = n;
      break;
    }
    let value: u32 = 0;
    let digits = 0;
    while (i < n) {
      const d = hexDigit(s.charCodeAt(i));
      if (d < 0) break;
      value = (value << 4) | <u32>d;
      digits++;
      i++;
      if (digits > 4) return null;
    }
    if (digits == 0) return null;
    groups[count++] = value;
    if (i == n) break;
    if (s.charCodeAt(i) != 0x3a) return null;
    i++;
    if (i < n && s.charCodeAt(i) == 0x3a) {
      if (gap >= 0) return null; // "::" twice
      gap = count;
      i++;
    } else if (i == n) {
      return null; // trailing single ':'
    }
  }
  return fromGroups(groups, count, gap);
}

function fromGroups(groups: StaticArray<u32>, count: i32, gap: i32): IpAddr | null {
  if (gap < 0 && count != 8) return null;
  if (gap >= 0 && count > 7) return null;
  const full = new StaticArray<u32>(8);
  if (gap < 0) {
    for (let k = 0; k < 8; k++) full[k] = groups[k];
  } else {
    for (let k = 0; k < gap; k++) full[k] = groups[k];
    const tail = count - gap;
    for (let k = 0; k < tail; k++) full[8 - tail + k] = groups[gap + k];
  }
  const ip = new IpAddr();
  ip.v6 = true;
  for (let k = 0; k < 4; k++) ip.hi = (ip.hi << 16) | <u64>full[k];
  for (let k = 4; k < 8; k++) ip.lo = (ip.lo << 16) | <u64>full[k];
  return ip;
}

function hexDigit(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** A non-negative decimal of at most maxDigits digits, or -1. */
export function parseDecimal(s: string, maxDigits: i32): i32 {
  const n = s.length;
  if (n == 0 || n > maxDigits) return -1;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v;
}

// ---- identities and paths --------------------------------------------------------------------

/** "spiffe://cluster.local/ns/default/sa/x" -> "cluster.local/ns/default/sa/x" (Istio's principal form). */
export function principalOf(uriSan: string): string {
  return uriSan.startsWith("spiffe://") ? uriSan.substring(9) : uriSan;
}

/** The namespace in a principal ("…/ns/<ns>/…"), or "" when there is none. */
export function namespaceOf(principal: string): string {
  const at = principal.indexOf("/ns/");
  if (at < 0) return "";
  const start = at + 4;
  let end = principal.indexOf("/", start);
  if (end < 0) end = principal.length;
  return principal.substring(start, end);
}

/**
 * The path rules are matched against: the query and fragment are cut off, %-escapes of unreserved
 * characters are decoded, repeated slashes are merged and "." / ".." segments are resolved (RFC 3986).
 * The request itself is forwarded unchanged.
 */
export function normalizePath(raw: string): string {
  let end = raw.length;
  const q = raw.indexOf("?");
  if (q >= 0) end = q;
  const h = raw.indexOf("#");
  if (h >= 0 && h < end) end = h;
  let path = raw.substring(0, end);
  if (path.indexOf("%") >= 0) path = decodeUnreserved(path);
  if (!path.startsWith("/")) return path; // "*" (OPTIONS) or an absolute URI: leave as is
  if (path.indexOf("//") < 0 && path.indexOf("/.") < 0) return path; // the common case: nothing to do
  const segments = path.split("/");
  const out: string[] = [];
  const n = segments.length;
  let trailingSlash = false;
  for (let i = 1; i < n; i++) {
    const seg = unchecked(segments[i]);
    const last = i == n - 1;
    if (seg == "" || seg == ".") {
      if (last) trailingSlash = true;
      continue;
    }
    if (seg == "..") {
      if (out.length > 0) out.pop();
      if (last) trailingSlash = true;
      continue;
    }
    out.push(seg);
    trailingSlash = false;
  }
  if (out.length == 0) return "/";
  let result = "/" + out.join("/");
  if (trailingSlash) result += "/";
  return result;
}

function decodeUnreserved(s: string): string {
  let out = "";
  let runStart = 0;
  const n = s.length;
  let i = 0;
  while (i < n) {
    if (s.charCodeAt(i) == 0x25 && i + 2 < n) {
      const hi = hexDigit(s.charCodeAt(i + 1));
      const lo = hexDigit(s.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        const c = (hi << 4) | lo;
        if (isUnreserved(c)) {
          out += s.substring(runStart, i) + String.fromCharCode(c);
          i += 3;
          runStart = i;
          continue;
        }
      }
    }
    i++;
  }
  return out + s.substring(runStart);
}

function isUnreserved(c: i32): bool {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) ||
    c == 0x2d || c == 0x2e || c == 0x5f || c == 0x7e;
}
