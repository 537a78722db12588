// proxy_get_property: attribute paths resolved the way Envoy resolves them, and values encoded as
// Envoy encodes CEL values (strings raw, integers 8 bytes LE, bools 1 byte, maps as pairs).
import type { Context } from './context.ts';
import type { PropertyValue } from './host.ts';
import { encodePairs } from './pairs.ts';
import type { Vm } from './vm.ts';

/** Splits "a\0b\0c" into segments; a trailing NUL (some SDKs send one) is ignored. */
export function splitPropertyPath(raw: string): string[] {
  const trimmed = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
  return trimmed.split('\0');
}

export function resolveProperty(vm: Vm, ctx: Context | undefined, path: readonly string[]): PropertyValue | undefined {
  const key = path.join('\0');
  const stored = ctx?.properties?.get(key) ?? (ctx && ctx.root !== ctx ? ctx.root.properties?.get(key) : undefined);
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
  return ctx?.properties?.get(`wasm.${key}`);
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

/** Encodes a property value; undefined when it cannot be serialized (SerializationFailure). */
export function encodeProperty(value: PropertyValue): Uint8Array | undefined {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'boolean') return value ? BOOL_TRUE : BOOL_FALSE;
  if (typeof value === 'bigint') {
    const out = Buffer.allocUnsafe(8);
    out.writeBigUInt64LE(BigInt.asUintN(64, value));
    return out;
  }
  if (typeof value === 'number') {
    const out = Buffer.allocUnsafe(8);
    if (Number.isInteger(value)) out.writeBigInt64LE(BigInt(value));
    else out.writeDoubleLE(value);
    return out;
  }
  if (Array.isArray(value)) return encodePairs(value);
  if (value instanceof Map) {
    const flat: string[] = [];
    for (const [k, v] of value) flat.push(k, v);
    return encodePairs(flat);
  }
  return undefined;
}
