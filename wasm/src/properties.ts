// proxy_get_property: attribute paths resolved the way Envoy resolves them, and values encoded as
// Envoy encodes CEL values (strings raw, integers 8 bytes LE, bools 1 byte, maps as pairs).
import type { Context } from './context.ts';
import { Latin1Text, type PropertyValue } from './host.ts';
import { WasmResult } from './abi/constants.ts';
import { encodePairs } from './pairs.ts';
import type { Vm } from './vm.ts';

/** Splits "a\0b\0c" into segments; a trailing NUL (some SDKs send one) is ignored. */
export function splitPropertyPath(raw: string): string[] {
  const trimmed = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
  return trimmed.split('\0');
}

/** A parsed property path: its segments and the NUL-joined key stored values are kept under. */
export interface PropertyPath {
  readonly segments: readonly string[];
  readonly key: string;
}

/**
 * Filters ask for the same few paths on every request: parse each once. Bounded, so a module asking
 * for endless distinct paths cannot grow it without limit (past the bound, paths are parsed each time).
 */
const pathCache = new Map<string, PropertyPath>();
const PATH_CACHE_LIMIT = 4096;

export function parsePropertyPath(raw: string): PropertyPath {
  let path = pathCache.get(raw);
  if (path === undefined) {
    const segments = splitPropertyPath(raw);
    path = { segments, key: segments.join('\0') };
    if (pathCache.size < PATH_CACHE_LIMIT) pathCache.set(raw, path);
  }
  return path;
}

export function resolveProperty(vm: Vm, ctx: Context | undefined, parsed: PropertyPath): PropertyValue | undefined {
  const path = parsed.segments;
  const key = parsed.key;
  const stored = ctx?.streamInfo?.filterState?.get(key) ?? ctx?.properties?.get(key) ?? (ctx && ctx.root !== ctx ? ctx.root.properties?.get(key) : undefined);
  if (stored) return stored;
  const s = vm.settings;
  if (path.length === 1) {
    switch (path[0]) {
      case 'plugin_name':
        return s.name;
      case 'plugin_root_id':
        return s.rootId;
      case 'plugin_vm_id':
        return s.vmId;
    }
  }
  const fromStream = ctx?.streamProperty(path);
  if (fromStream !== undefined) return fromStream;
  const info = ctx?.streamInfo;
  const fromInfo = info ? connectionProperty(info, path) ?? info.getProperty?.(path) : undefined;
  if (fromInfo !== undefined) return fromInfo;
  const fromHost = s.host.getProperty?.(path, info);
  if (fromHost !== undefined) return fromHost;
  // Envoy keeps set_property values as filter state "wasm.<path>" and serves unknown roots from there.
  return ctx?.streamInfo?.filterState?.get(`wasm.${key}`) ?? ctx?.properties?.get(`wasm.${key}`);
}

function portOf(address: string | undefined): number | undefined {
  if (!address) return undefined;
  const i = address.lastIndexOf(':');
  const port = i >= 0 ? Number(address.slice(i + 1)) : NaN;
  return Number.isInteger(port) ? port : undefined;
}

function connectionProperty(info: NonNullable<Context['streamInfo']>, path: readonly string[]): PropertyValue | undefined {
  if (path.length !== 2) return path.length === 1 && path[0] === 'connection_id' ? info.connectionId : undefined;
  const [scope, field] = path;
  if (scope === 'source') {
    if (field === 'address') return info.sourceAddress;
    if (field === 'port') return portOf(info.sourceAddress);
  } else if (scope === 'destination') {
    if (field === 'address') return info.destinationAddress;
    if (field === 'port') return portOf(info.destinationAddress);
  } else if (scope === 'connection') {
    switch (field) {
      case 'mtls':
        return info.mtls ?? false;
      case 'uri_san_peer_certificate':
        return info.peerPrincipal;
      case 'uri_san_local_certificate':
        return info.localPrincipal;
      case 'id':
        return info.connectionId;
    }
  }
  return undefined;
}

const BOOL_TRUE = new Uint8Array([1]);
const BOOL_FALSE = new Uint8Array([0]);
/** Numbers are copied into the guest right away, so one scratch buffer serves every call. */
const scratch8 = Buffer.alloc(8);

/**
 * Hands a property value to the guest (allocate, write, set the out-pointers) without an intermediate
 * Buffer for the common values: header text and ASCII strings go straight into guest memory, numbers
 * through one scratch buffer. Returns the ABI status (SerializationFailure for a value it cannot encode).
 */
export function returnProperty(vm: Vm, value: PropertyValue, pRet: number, pRetLen: number): number {
  if (value instanceof Latin1Text) return vm.returnLatin1(value.text, pRet, pRetLen);
  if (typeof value === 'string') {
    if (isAscii(value)) return vm.returnLatin1(value, pRet, pRetLen);
    return vm.returnBytes(Buffer.from(value, 'utf8'), pRet, pRetLen);
  }
  const bytes = encodeProperty(value);
  return bytes === undefined ? WasmResult.SerializationFailure : vm.returnBytes(bytes, pRet, pRetLen);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * Encodes a property value; undefined when it cannot be serialized (SerializationFailure). Numbers
 * come back in a shared scratch buffer: copy (or hand to the guest) before the next call.
 */
export function encodeProperty(value: PropertyValue): Uint8Array | undefined {
  if (value instanceof Latin1Text) return Buffer.from(value.text, 'latin1');
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'boolean') return value ? BOOL_TRUE : BOOL_FALSE;
  if (typeof value === 'bigint') {
    scratch8.writeBigUInt64LE(BigInt.asUintN(64, value));
    return scratch8;
  }
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value)) {
      // Two 32-bit halves: no BigInt per call.
      scratch8.writeInt32LE(value | 0, 0);
      scratch8.writeInt32LE(Math.floor(value / 4294967296) | 0, 4);
    } else if (Number.isInteger(value)) scratch8.writeBigInt64LE(BigInt(value));
    else scratch8.writeDoubleLE(value);
    return scratch8;
  }
  if (Array.isArray(value)) return encodePairs(value);
  if (value instanceof Map) {
    const flat: string[] = [];
    for (const [k, v] of value) flat.push(k, v);
    return encodePairs(flat);
  }
  return undefined;
}
