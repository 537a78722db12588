// Content versions: sha256 over canonical JSON, so equal configs have equal versions whatever the
// key order of the objects they were built from.

import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted (recursively) and no whitespace. Array order is kept (it is
 * meaningful: routes, filters). Properties whose value is undefined are left out, as JSON.stringify
 * does; so are functions and symbols. Non-finite numbers are refused rather than turned into null.
 */
export function canonicalJson(value: unknown): string {
  return write(value);
}

function write(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} has no JSON form`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : write(v))).join(',')}]`;
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((k) => record[k] !== undefined && typeof record[k] !== 'function' && typeof record[k] !== 'symbol')
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${write(record[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} has no JSON form`);
  }
}

/** Hex sha256 of the canonical JSON of `value`. */
export function contentVersion(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}
