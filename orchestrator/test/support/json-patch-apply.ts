// An RFC 6902 JSON Patch apply written apart from orchestrator/src/inject/json-patch.ts (the diff),
// so that applying the diff's output checks it. All six operations; strict: a path that does not
// exist (where the RFC says it must) throws, as the kube-apiserver's apply would fail.

export interface Operation {
  op: string;
  path: string;
  value?: unknown;
  from?: string;
}

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new Error(`JSON pointer "${p}" must start with "/"`);
  return p.slice(1).split('/').map((t) => {
    if (/~[^01]|~$/.test(t)) throw new Error(`JSON pointer "${p}": bad escape in "${t}"`);
    return t.replace(/~1/g, '/').replace(/~0/g, '~');
  });
}

function arrayIndex(arr: unknown[], token: string, forAdd: boolean, path: string): number {
  if (forAdd && token === '-') return arr.length;
  if (!/^(0|[1-9]\d*)$/.test(token)) throw new Error(`${path}: "${token}" is not an array index`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new Error(`${path}: index ${i} is out of range (length ${arr.length})`);
  return i;
}

function isContainer(v: unknown): v is Record<string, unknown> | unknown[] {
  return typeof v === 'object' && v !== null;
}

function get(doc: unknown, tokens: string[], path: string): unknown {
  let cur = doc;
  for (const t of tokens) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false, path)];
    else if (isContainer(cur) && Object.prototype.hasOwnProperty.call(cur, t)) cur = (cur as Record<string, unknown>)[t];
    else throw new Error(`${path}: "${t}" does not exist`);
  }
  return cur;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isContainer(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  return v;
}

/** Applies `ops` to a deep copy of `doc` and returns it. Throws on the first operation that cannot apply. */
export function applyPatch<T>(doc: T, ops: readonly Operation[]): T {
  let root: unknown = structuredClone(doc);
  const add = (path: string, value: unknown): void => {
    const tokens = parsePointer(path);
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const parent = get(root, tokens.slice(0, -1), path);
    const last = tokens[tokens.length - 1]!;
    if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, path), 0, value);
    else if (isContainer(parent)) (parent as Record<string, unknown>)[last] = value;
    else throw new Error(`${path}: the parent is not an object or array`);
  };
  const remove = (path: string): unknown => {
    const tokens = parsePointer(path);
    if (tokens.length === 0) throw new Error('cannot remove the whole document');
    const parent = get(root, tokens.slice(0, -1), path);
    const last = tokens[tokens.length - 1]!;
    if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false, path), 1)[0];
    if (isContainer(parent) && Object.prototype.hasOwnProperty.call(parent, last)) {
      const old = (parent as Record<string, unknown>)[last];
      delete (parent as Record<string, unknown>)[last];
      return old;
    }
    throw new Error(`${path}: "${last}" does not exist`);
  };
  for (const op of ops) {
    switch (op.op) {
      case 'add':
        add(op.path, structuredClone(op.value));
        break;
      case 'remove':
        remove(op.path);
        break;
      case 'replace':
        get(root, parsePointer(op.path), op.path); // must exist
        if (op.path === '') root = structuredClone(op.value);
        else {
          remove(op.path);
          add(op.path, structuredClone(op.value));
        }
        break;
      case 'move': {
        if (op.path.startsWith(`${op.from}/`)) throw new Error(`move: ${op.path} is inside ${op.from}`);
        const v = remove(op.from!);
        add(op.path, v);
        break;
      }
      case 'copy':
        add(op.path, structuredClone(get(root, parsePointer(op.from!), op.from!)));
        break;
      case 'test':
        if (!deepEqual(get(root, parsePointer(op.path), op.path), op.value)) throw new Error(`test failed at ${op.path}`);
        break;
      default:
        throw new Error(`unknown operation "${op.op}"`);
    }
  }
  return root as T;
}
