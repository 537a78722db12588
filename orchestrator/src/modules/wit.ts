// Just enough of WIT's structure to check a component against the filter world: packages,
// interfaces and the names of their functions, worlds and their imports and exports. Types are
// not read. The text comes from jco (a component's world as `componentWit` prints it) or from
// schemas/wit/filter.wit; jco's own parser has already rejected anything malformed in the first,
// and a test runs the second through jco.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { installRoot } from '../../../schemas/repo-files.ts';

export interface WitWorld {
  /** Imports and exports as fully qualified names (`ns:pkg/iface@version`) or plain names for inline items. */
  imports: string[];
  exports: string[];
}

export interface WitPackage {
  /** `ns:pkg@version` (the version part only when the text has one). */
  id: string;
  /** interface name -> its functions' names */
  interfaces: Map<string, string[]>;
  worlds: Map<string, WitWorld>;
}

interface Item {
  head: string;
  body?: string;
}

/** Splits WIT text into its top-level items: `head;` statements and `head { body }` blocks. */
function items(src: string): Item[] {
  const out: Item[] = [];
  let depth = 0;
  let start = 0;
  let open = -1;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '{') {
      if (depth === 0) open = i;
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth < 0) throw new Error(`unbalanced "}" at offset ${i}`);
      if (depth === 0) {
        out.push({ head: src.slice(start, open).trim(), body: src.slice(open + 1, i) });
        start = i + 1;
      }
    } else if (c === ';' && depth === 0) {
      const head = src.slice(start, i).trim();
      if (head !== '') out.push({ head });
      start = i + 1;
    }
  }
  if (depth !== 0) throw new Error('unbalanced "{": the text ends inside a block');
  return out;
}

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/[^\n]*/g, ' ');
}

const ident = (s: string): string => s.replace(/^%/, '');

/** `ns:pkg@1.2.3` -> { name: 'ns:pkg', version: '1.2.3' } */
function splitPackage(id: string): { name: string; version?: string } {
  const at = id.indexOf('@');
  return at < 0 ? { name: id } : { name: id.slice(0, at), version: id.slice(at + 1) };
}

/** The fully qualified name of interface `iface` of package `pkg` (`ns:pkg/iface@version`). */
export function qualify(pkg: string, iface: string): string {
  const { name, version } = splitPackage(pkg);
  return `${name}/${iface}${version ? `@${version}` : ''}`;
}

/**
 * Reads the packages of a WIT text: the one its `package x:y@v;` line declares (top-level items
 * belong to it) and any nested `package x:y@v { ... }` blocks, as `componentWit` prints them.
 * Throws an Error naming the problem when the braces do not balance or a package has no name.
 */
export function parseWit(text: string): WitPackage[] {
  const packages: WitPackage[] = [];
  const top: WitPackage = { id: '', interfaces: new Map(), worlds: new Map() };
  const fill = (pkg: WitPackage, body: Item[]): void => {
    for (const item of body) {
      const m = /^(interface|world)\s+(%?[a-z][\w-]*)$/.exec(item.head);
      if (!m || item.body === undefined) continue;
      const name = ident(m[2]);
      if (m[1] === 'interface') pkg.interfaces.set(name, functions(item.body));
      else pkg.worlds.set(name, world(item.body, pkg.id));
    }
  };
  const all = items(stripComments(text));
  for (const item of all) {
    const m = /^package\s+(\S+)$/.exec(item.head);
    if (!m) continue;
    if (item.body === undefined) top.id = m[1];
    else {
      const pkg: WitPackage = { id: m[1], interfaces: new Map(), worlds: new Map() };
      fill(pkg, items(item.body));
      packages.push(pkg);
    }
  }
  fill(top, all);
  if (top.interfaces.size > 0 || top.worlds.size > 0) {
    if (top.id === '') throw new Error('the WIT text has interfaces or worlds but no `package ns:name;` line');
    packages.unshift(top);
  }
  return packages;
}

function functions(body: string): string[] {
  const names: string[] = [];
  for (const item of items(body)) {
    const m = /^(%?[a-z][\w-]*)\s*:\s*(?:async\s+)?func\b/.exec(item.head);
    if (m) names.push(ident(m[1]));
  }
  return names;
}

function world(body: string, pkg: string): WitWorld {
  const result: WitWorld = { imports: [], exports: [] };
  for (const item of items(body)) {
    // `import name: func(...)` / `export name: interface { ... }` are inline items, named as they are;
    // `export ns:pkg/iface@v` is a path; a bare `export iface` refers to an interface of this package.
    const m = /^(import|export)\s+(?:(%?[a-z][\w-]*)\s*:\s*(?:async\s+)?(?:func|interface)\b|(\S+))/.exec(item.head);
    if (!m) continue;
    const name = m[2] !== undefined ? ident(m[2]) : m[3].includes(':') || pkg === '' ? m[3] : qualify(pkg, ident(m[3]));
    (m[1] === 'import' ? result.imports : result.exports).push(name);
  }
  return result;
}

export interface FilterWorld {
  /** `wasmesh:filter@0.1.0` */
  package: string;
  /** `wasmesh:filter/http-filter@0.1.0` */
  world: string;
  /** What a filter component must export, as qualified interface names. */
  exports: string[];
  /** Each exported interface's functions, as filter.wit defines them. */
  functions: Map<string, string[]>;
}

let filterWorld: FilterWorld | undefined;

/** The filter world as schemas/wit/filter.wit defines it (read once). */
export function loadFilterWorld(): FilterWorld {
  if (filterWorld) return filterWorld;
  const path = join(installRoot(), 'schemas', 'wit', 'filter.wit');
  const [pkg] = parseWit(readFileSync(path, 'utf8'));
  const w = pkg?.worlds.get('http-filter');
  if (!pkg || !w) throw new Error(`${path}: no world http-filter`);
  const functions = new Map<string, string[]>();
  for (const name of w.exports) {
    const iface = /\/([\w-]+)(@|$)/.exec(name)?.[1];
    const funcs = iface === undefined ? undefined : pkg.interfaces.get(iface);
    if (!funcs) throw new Error(`${path}: world http-filter exports ${name}, which the file does not define`);
    functions.set(name, funcs);
  }
  filterWorld = { package: pkg.id, world: qualify(pkg.id, 'http-filter'), exports: w.exports, functions };
  return filterWorld;
}

/**
 * Checks a component's world (WIT as jco's `componentWit` prints it) against the filter world.
 * Returns the problems, each naming the missing export (empty: the component exports the filter
 * world's interfaces). jco prints the world without the definitions of the interfaces it names, so
 * the exported interfaces' functions and types are not compared here.
 */
export function checkFilterWorld(componentWit: string, fw: FilterWorld = loadFilterWorld()): string[] {
  const root = parseWit(componentWit).find((p) => p.worlds.size > 0);
  const w = root ? [...root.worlds.values()][0] : undefined;
  if (!w) return ['the component has no world'];
  const problems: string[] = [];
  for (const required of fw.exports) {
    if (w.exports.includes(required)) continue;
    const base = required.replace(/@.*$/, '');
    const other = w.exports.filter((e) => e.replace(/@.*$/, '') === base);
    problems.push(
      other.length > 0
        ? `missing export ${required}: the component exports ${other.join(', ')}, a version of the filter world this orchestrator does not serve`
        : `missing export ${required} (the component exports ${w.exports.length > 0 ? w.exports.join(', ') : 'nothing'})`,
    );
  }
  return problems;
}
