// The serialized map layout of the ABI: [N][klen vlen]*N (key\0 value\0)*N, every number a u32 LE.
import { MAX_PAIRS, MAX_PAIRS_BYTES } from './limits.ts';
import type { HeaderList } from './host.ts';

/** Bytes needed to serialize a header list (names and values as latin1, one byte per char). */
export function pairsByteLength(list: HeaderList): number {
  let size = 4;
  for (let i = 0; i < list.length; i += 2) size += 8 + list[i].length + list[i + 1].length + 2;
  return size;
}

/** Writes the list into `out` at `offset` (the caller sized it with pairsByteLength). */
export function writePairs(list: HeaderList, out: Buffer, offset: number): void {
  const n = list.length >>> 1;
  out.writeUInt32LE(n, offset);
  let lenAt = offset + 4;
  let dataAt = offset + 4 + 8 * n;
  for (let i = 0; i < list.length; i += 2) {
    const key = list[i];
    const value = list[i + 1];
    out.writeUInt32LE(key.length, lenAt);
    out.writeUInt32LE(value.length, lenAt + 4);
    lenAt += 8;
    dataAt += out.latin1Write(key, dataAt);
    out[dataAt++] = 0;
    dataAt += out.latin1Write(value, dataAt);
    out[dataAt++] = 0;
  }
}

export function encodePairs(list: HeaderList): Buffer {
  if (list.length === 0) return Buffer.alloc(0);
  const out = Buffer.allocUnsafe(pairsByteLength(list));
  writePairs(list, out, 0);
  return out;
}

/**
 * Decodes serialized pairs; names are lowercased when `lowercaseKeys`. Malformed input returns
 * undefined (cpp-host would decode it to an empty list; the caller decides what that means).
 */
export function decodePairs(src: Buffer, start: number, length: number, lowercaseKeys: boolean): HeaderList | undefined {
  if (length < 4) return [];
  if (length > MAX_PAIRS_BYTES) return undefined;
  const end = start + length;
  const n = src.readUInt32LE(start);
  if (n === 0) return length === 4 ? [] : undefined;
  if (n > MAX_PAIRS || 4 + 8 * n > length) return undefined;
  const list: HeaderList = new Array(n * 2);
  let lenAt = start + 4;
  let dataAt = start + 4 + 8 * n;
  for (let i = 0; i < n; i++) {
    const klen = src.readUInt32LE(lenAt);
    const vlen = src.readUInt32LE(lenAt + 4);
    lenAt += 8;
    if (dataAt + klen + vlen + 2 > end) return undefined;
    const key = src.latin1Slice(dataAt, dataAt + klen);
    dataAt += klen;
    if (src[dataAt++] !== 0) return undefined;
    const value = src.latin1Slice(dataAt, dataAt + vlen);
    dataAt += vlen;
    if (src[dataAt++] !== 0) return undefined;
    list[i * 2] = lowercaseKeys ? key.toLowerCase() : key;
    list[i * 2 + 1] = value;
  }
  if (dataAt !== end) return undefined;
  return list;
}

/** Converts { name: value } or [[name, value]] into a HeaderList with lowercase names. */
export function toHeaderList(input: Record<string, string | string[]> | Array<[string, string]> | HeaderList | undefined): HeaderList {
  if (!input) return [];
  const out: HeaderList = [];
  if (Array.isArray(input)) {
    if (input.length > 0 && Array.isArray(input[0])) {
      for (const [k, v] of input as Array<[string, string]>) out.push(k.toLowerCase(), String(v));
      return out;
    }
    const flat = input as HeaderList;
    for (let i = 0; i + 1 < flat.length; i += 2) out.push(flat[i].toLowerCase(), flat[i + 1]);
    return out;
  }
  for (const [k, v] of Object.entries(input)) {
    if (Array.isArray(v)) for (const item of v) out.push(k.toLowerCase(), String(item));
    else out.push(k.toLowerCase(), String(v));
  }
  return out;
}

/** Header list helpers used by the runtime and embedders; names are compared lowercase. */
export function headerGet(list: HeaderList, name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

export function headerRemove(list: HeaderList, name: string): void {
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === name) continue;
    if (w !== r) {
      list[w] = list[r];
      list[w + 1] = list[r + 1];
    }
    w += 2;
  }
  list.length = w;
}

export function headerSet(list: HeaderList, name: string, value: string): void {
  for (let i = 0; i < list.length; i += 2) {
    if (list[i] === name) {
      list[i + 1] = value;
      // Replace means one entry: drop later duplicates.
      for (let j = i + 2; j < list.length; j += 2) {
        if (list[j] === name) {
          headerRemoveFrom(list, name, j);
          break;
        }
      }
      return;
    }
  }
  list.push(name, value);
}

function headerRemoveFrom(list: HeaderList, name: string, from: number): void {
  let w = from;
  for (let r = from; r < list.length; r += 2) {
    if (list[r] === name) continue;
    list[w] = list[r];
    list[w + 1] = list[r + 1];
    w += 2;
  }
  list.length = w;
}
