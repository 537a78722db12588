// RFC 6902 JSON Patch, computed as the difference between two JSON values: what the admission
// webhook answers (base64 of the operations) and what kube-inject applies to the YAML it read.
//
// The diff walks both values together:
//  - objects: a key only in `before` is removed, only in `after` added, in both compared deeper;
//  - arrays: elements at the same index are compared deeper, extra elements in `after` are
//    appended with `add .../-`, surplus elements of `before` are removed from the end backwards
//    (so each index is still valid when its operation applies);
//  - anything else that differs (a type change, a scalar) is replaced whole.
// That is not the shortest patch for an insertion in the middle of an array, but it is always
// correct, and what injection does to arrays (append a container, a volume) comes out as appends.
//
// Values are JSON: an own property whose value is undefined counts as absent, as in JSON.stringify.

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type PatchOperation =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** One RFC 6901 reference token: "~" becomes "~0" and "/" becomes "~1" (in that order). */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The reverse of escapePointerToken. */
export function unescapePointerToken(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** A JSON pointer from path segments: pointer(['metadata', 'annotations', 'a/b']) = "/metadata/annotations/a~1b". */
export function pointer(segments: readonly (string | number)[]): string {
  return segments.map((s) => `/${escapePointerToken(String(s))}`).join('');
}

/** The operations that turn `before` into `after` (empty when they are equal). */
export function createPatch(before: unknown, after: unknown): PatchOperation[] {
  const ops: PatchOperation[] = [];
  diff(before, after, '', ops);
  return ops;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function diff(a: unknown, b: unknown, path: string, ops: PatchOperation[]): void {
  if (isObject(a) && isObject(b)) {
    for (const key of Object.keys(a)) {
      if (a[key] === undefined) continue;
      if (!(key in b) || b[key] === undefined) ops.push({ op: 'remove', path: `${path}/${escapePointerToken(key)}` });
    }
    for (const key of Object.keys(b)) {
      if (b[key] === undefined) continue;
      const child = `${path}/${escapePointerToken(key)}`;
      if (!(key in a) || a[key] === undefined) ops.push({ op: 'add', path: child, value: clone(b[key]) });
      else diff(a[key], b[key], child, ops);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const common = Math.min(a.length, b.length);
    for (let i = 0; i < common; i++) diff(a[i], b[i], `${path}/${i}`, ops);
    for (let i = common; i < b.length; i++) ops.push({ op: 'add', path: `${path}/-`, value: clone(b[i]) });
    for (let i = a.length - 1; i >= b.length; i--) ops.push({ op: 'remove', path: `${path}/${i}` });
    return;
  }
  if (!jsonEqual(a, b)) ops.push({ op: 'replace', path, value: clone(b) });
}

/** Deep equality of JSON values (key order ignored; undefined properties count as absent). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => k in b && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** A deep copy through JSON, so an operation never shares objects with the value it came from. */
function clone(v: unknown): unknown {
  return v === undefined ? null : (JSON.parse(JSON.stringify(v)) as unknown);
}
