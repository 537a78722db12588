// The proxy's one string hash, stable across processes and versions: FNV-1a over UTF-16 code units,
// then murmur3's finalizer (FNV-1a alone spreads short, similar keys poorly). Ring-hash load balancing
// and canary version picks (by x-request-id) both use it.

export const FNV_OFFSET = 0x811c9dc5;
export const FNV_PRIME = 0x01000193;

export function fnv1a(s: string, start: number, end: number, seed: number): number {
  let h = seed;
  for (let i = start; i < end; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return h >>> 0;
}

export function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit hash of `s[start, end)`. */
export function hashString(s: string, start = 0, end = s.length): number {
  return fmix32(fnv1a(s, start, end, FNV_OFFSET));
}
