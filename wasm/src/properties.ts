// proxy_get_property: attribute paths resolved the way Envoy resolves them, and values encoded as
// Envoy encodes CEL values (strings raw, integers 8 bytes LE, bools 1 byte, maps as pairs).
import type { Context } from './context.ts';
import { Latin1Text, type PropertyValue } from './host.ts';
import { WasmResult } from './abi/constants.ts';
import { encodePairs } from './pairs.ts';
import { readLatin1 } from './latin1.ts';
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

/** Paths remembered per VM by guest address; past this, other addresses parse through the string cache. */
const GUEST_PATHS_PER_VM = 64;

/**
 * proxy_get_property's paths by the guest address they come from. A filter keeps its paths in static
 * memory and asks for the same few on every request (the telemetry filter: about eight per request):
 * checking the bytes at a remembered address against the copy kept with it costs a short loop, where
 * reading them into a string costs a concatenation per byte and a hash of the result. The bytes are
 * always compared, so a module that reuses an address for another path gets that path.
 */
export class GuestPropertyPaths {
  readonly #byAddress = new Map<number, { raw: Uint8Array; path: PropertyPath }>();

  /** The path at guest [ptr, ptr+len) (bounds already checked against `bytes`). */
  lookup(bytes: Uint8Array, ptr: number, len: number): PropertyPath {
    const known = this.#byAddress.get(ptr);
    if (known !== undefined && sameBytes(known.raw, bytes, ptr, len)) return known.path;
    const path = parsePropertyPath(readLatin1(bytes as Buffer, ptr, len));
    // A new address is remembered while there is room; an address whose bytes changed is updated in place.
    // A copy: Buffer#slice would be a view that follows later writes to guest memory.
    if (known !== undefined || this.#byAddress.size < GUEST_PATHS_PER_VM) this.#byAddress.set(ptr, { raw: Uint8Array.prototype.slice.call(bytes, ptr, ptr + len), path });
    return path;
  }
}

function sameBytes(raw: Uint8Array, bytes: Uint8Array, ptr: number, len: number): boolean {
  if (raw.length !== len) return false;
  for (let i = 0; i < len; i++) if (raw[i] !== bytes[ptr + i]) return false;
  return true;
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
  } else if (scope === 'upstream') {
    if (field === 'address') return info.upstreamAddress;
    if (field === 'port') return portOf(info.upstreamAddress);
    if (field === 'local_address') return info.upstreamLocalAddress;
  } else if (scope === 'connection') {
    switch (field) {
      case 'requested_server_name':
        return info.requestedServerName;
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
 * Buffer for the common values: header text, ASCII strings, integers and bools go straight into guest
 * memory. Returns the ABI status (SerializationFailure for a value it cannot encode).
 */
export function returnProperty(vm: Vm, value: PropertyValue, pRet: number, pRetLen: number): number {
  if (typeof value === 'boolean' || (typeof value === 'number' && Number.isSafeInteger(value))) return returnScalar(vm, value, pRet, pRetLen);
  if (value instanceof Latin1Text) return vm.returnLatin1(value.text, pRet, pRetLen);
  if (typeof value === 'string') {
    if (isAscii(value)) return vm.returnLatin1(value, pRet, pRetLen);
    return vm.returnBytes(Buffer.from(value, 'utf8'), pRet, pRetLen);
  }
  const bytes = encodeProperty(value);
  return bytes === undefined ? WasmResult.SerializationFailure : vm.returnBytes(bytes, pRet, pRetLen);
}

/**
 * A bool (1 byte) or a safe integer (8 bytes LE, as two 32-bit halves: no BigInt) written straight
 * into the allocation, as returnBytes would hand it over. Most properties filters ask for per request
 * (sizes, codes, direction, mtls) are these.
 */
function returnScalar(vm: Vm, value: number | boolean, pRet: number, pRetLen: number): number {
  const mem = vm.mem;
  // Out-pointers first: a bad one must not leave the guest with an allocation it never sees.
  if (!mem.inBounds(pRet, 4) || !mem.inBounds(pRetLen, 4)) return WasmResult.InvalidMemoryAccess;
  const size = typeof value === 'boolean' ? 1 : 8;
  const addr = vm.alloc(size);
  // inBounds also picks up a memory the allocation grew.
  if (addr === 0 || !mem.inBounds(addr, size)) return WasmResult.InvalidMemoryAccess;
  if (typeof value === 'boolean') mem.bytes[addr] = value ? 1 : 0;
  else {
    mem.view.setInt32(addr, value | 0, true);
    mem.view.setInt32(addr + 4, Math.floor(value / 4294967296) | 0, true);
  }
  return mem.writeU32(pRet, addr) && mem.writeU32(pRetLen, size) ? WasmResult.Ok : WasmResult.InvalidMemoryAccess;
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
