// Generates docs/config-reference.md from the JSON Schemas: one section per kind (schemas/json/*.schema.json)
// and one per built-in filter's pluginConfig (schemas/json/filters/*.schema.json). Each section gives the
// accepted apiVersions, the schema's description, a table of every field by its dotted path, and an example
// (the first document of that kind in schemas/examples/, or filters/<name>/example/config.json).
//
//   node --import tsx scripts/gen-config-reference.ts           writes docs/config-reference.md
//   node --import tsx scripts/gen-config-reference.ts --check   exits 1 if that file is not what it would write
//
// The output depends only on the files read: kinds and filters in file-name order, fields in the order the
// schema lists them. The schemas are not validated here (schemas/test does that); whatever they say is shown.

import { readFileSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CONFIG_REFERENCE_FILE = path.join(repoRoot, 'docs', 'config-reference.md');
const SCHEMA_DIR = path.join(repoRoot, 'schemas', 'json');
const FILTER_SCHEMA_DIR = path.join(SCHEMA_DIR, 'filters');
const EXAMPLES_DIR = path.join(repoRoot, 'schemas', 'examples');
const FILTERS_DIR = path.join(repoRoot, 'filters');
const GENERATE_COMMAND = 'node --import tsx scripts/gen-config-reference.ts';
/** Placeholder for the key of a map (an object whose values are described by additionalProperties). */
const MAP_KEY = '<key>';
/** Nesting deeper than this is cut off even without a recursive $ref (a guard against pathological schemas). */
const MAX_DEPTH = 32;

/** The subset of JSON Schema (draft 2020-12, plus draft-07's `definitions`) this generator reads. */
export interface JsonSchema {
  $ref?: string;
  $defs?: Record<string, SchemaNode>;
  definitions?: Record<string, SchemaNode>;
  title?: string;
  description?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  additionalProperties?: SchemaNode;
  propertyNames?: SchemaNode;
  items?: SchemaNode;
  oneOf?: SchemaNode[];
  anyOf?: SchemaNode[];
  allOf?: SchemaNode[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  minProperties?: number;
  maxProperties?: number;
  examples?: unknown[];
}
/** A subschema: an object, or `true` (anything) / `false` (nothing). */
export type SchemaNode = JsonSchema | boolean;

/** One row of a field table. */
export interface FieldRow {
  /** Dotted path from the document root: `[]` for array items, `.<key>` for map values. */
  path: string;
  type: string;
  required: boolean;
  /** The schema's `default`, as JSON; undefined when there is none. */
  default?: string;
  constraints: string[];
  description: string;
}

// ---------------------------------------------------------------------------------------------------------
// $ref resolution

/** A schema file: refs inside `root` are resolved against `file`. */
interface SchemaDoc {
  file: string;
  root: SchemaNode;
}

/** A subschema with its top-level $ref (and allOf) folded in. */
interface View {
  schema: JsonSchema;
  doc: SchemaDoc;
  /** `file#pointer` of every $ref followed to reach it; used to detect recursion. */
  refs: string[];
}

/** Loads and caches schema files that refs point to; the documents being rendered are registered up front. */
class SchemaDocs {
  readonly #docs = new Map<string, SchemaDoc>();

  add(file: string, root: SchemaNode): SchemaDoc {
    const doc = { file, root };
    this.#docs.set(file, doc);
    return doc;
  }

  get(file: string): SchemaDoc {
    let doc = this.#docs.get(file);
    if (doc === undefined) doc = this.add(file, JSON.parse(readFileSync(file, 'utf8')) as SchemaNode);
    return doc;
  }

  /** Resolves `ref` (a JSON pointer in the same file, or a relative file with an optional pointer). */
  resolve(ref: string, from: SchemaDoc): { node: SchemaNode; doc: SchemaDoc; key: string } {
    const hash = ref.indexOf('#');
    const filePart = hash < 0 ? ref : ref.slice(0, hash);
    const pointer = hash < 0 ? '' : decodeURIComponent(ref.slice(hash + 1));
    if (/^[a-z][a-z0-9+.-]*:/i.test(filePart)) throw new Error(`${from.file}: cannot resolve absolute $ref ${ref}`);
    const doc = filePart === '' ? from : this.get(path.resolve(path.dirname(from.file), filePart));
    let node: unknown = doc.root;
    if (pointer !== '') {
      if (!pointer.startsWith('/')) throw new Error(`${from.file}: cannot resolve $ref ${ref} (only JSON pointers)`);
      for (const raw of pointer.slice(1).split('/')) {
        const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
        if (typeof node !== 'object' || node === null || !(segment in node)) {
          throw new Error(`${from.file}: $ref ${ref} points to nothing`);
        }
        node = (node as Record<string, unknown>)[segment];
      }
    }
    return { node: node as SchemaNode, doc, key: `${doc.file}#${pointer}` };
  }

  /**
   * Follows $ref chains (keywords beside a $ref win over the target's, as in 2020-12 where both apply and
   * the sibling is the more specific) and merges allOf members into one view.
   */
  view(node: SchemaNode, doc: SchemaDoc): View {
    let schema: JsonSchema = isSchemaObject(node) ? node : {}; // typeOf reports `false` before asking for a view
    let current = doc;
    const refs: string[] = [];
    while (schema.$ref !== undefined) {
      const { $ref, ...siblings } = schema;
      const target = this.resolve($ref, current);
      if (refs.includes(target.key)) throw new Error(`${doc.file}: $ref cycle through ${target.key}`);
      refs.push(target.key);
      current = target.doc;
      schema = { ...(isSchemaObject(target.node) ? target.node : {}), ...siblings };
    }
    if (schema.allOf !== undefined) {
      const { allOf, ...rest } = schema;
      const merged: JsonSchema = { ...rest };
      for (const member of allOf) {
        const part = this.view(member, current).schema;
        for (const [key, value] of Object.entries(part)) {
          if (key === 'properties') merged.properties = { ...merged.properties, ...part.properties };
          else if (key === 'required') merged.required = [...(merged.required ?? []), ...(part.required ?? [])];
          else if (!(key in merged)) (merged as Record<string, unknown>)[key] = value;
        }
      }
      schema = merged;
    }
    return { schema, doc: current, refs };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Types, constraints, rows

const isSchemaObject = (node: SchemaNode | undefined): node is JsonSchema => typeof node === 'object' && node !== null;

/** oneOf/anyOf members that only require fields: a constraint on the object, not a type alternative. */
function isRequiredOnly(node: SchemaNode): boolean {
  return isSchemaObject(node) && Object.keys(node).every((k) => k === 'required' || k === 'description');
}

/** The oneOf/anyOf members that are type alternatives (empty when there are none). */
function typeBranches(schema: JsonSchema): SchemaNode[] {
  const branches = schema.oneOf ?? schema.anyOf ?? [];
  return branches.every(isRequiredOnly) ? [] : branches;
}

/** Splits `a | map<string, b | c> | "d"` at its top-level bars only. */
function alternatives(type: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < type.length; i++) {
    const c = type[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === '(' || c === '<') depth++;
    else if (c === ')' || c === '>') depth--;
    else if (depth === 0 && type.startsWith(' | ', i)) {
      out.push(type.slice(start, i));
      start = i + 3;
      i += 2;
    }
  }
  out.push(type.slice(start));
  return out;
}

const parenthesize = (type: string): string => (alternatives(type).length > 1 ? `(${type})` : type);

/** `a | b | c` without repeats, in first-seen order; nested alternatives are flattened. */
const union = (types: string[]): string => [...new Set(types.flatMap(alternatives))].join(' | ');

function typeOf(docs: SchemaDocs, node: SchemaNode, doc: SchemaDoc, seen: string[] = []): string {
  if (node === true || (isSchemaObject(node) && Object.keys(node).length === 0)) return 'any';
  if (node === false) return 'never';
  const { schema, doc: at, refs } = docs.view(node, doc);
  const loop = refs.find((r) => seen.includes(r));
  if (loop !== undefined) return loop.slice(loop.lastIndexOf('/') + 1);
  const inner = [...seen, ...refs];
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.enum !== undefined) return union(schema.enum.map((v) => JSON.stringify(v)));
  const branches = typeBranches(schema);
  if (branches.length > 0) return union(branches.map((b) => typeOf(docs, b, at, inner)));
  const declared = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
  const types = declared.length > 0 ? declared
    : schema.properties !== undefined || schema.additionalProperties !== undefined ? ['object']
    : schema.items !== undefined ? ['array']
    : ['any'];
  return union(types.map((t) => {
    if (t === 'array') return schema.items === undefined ? 'any[]' : `${parenthesize(typeOf(docs, schema.items, at, inner))}[]`;
    if (t === 'object' && schema.properties === undefined && isSchemaObject(schema.additionalProperties)) {
      return `map<string, ${typeOf(docs, schema.additionalProperties, at, inner)}>`;
    }
    return t;
  }));
}

/** The schema's own constraints, then those of its items, map keys and values, and type alternatives. */
function constraintsOf(docs: SchemaDocs, node: SchemaNode, doc: SchemaDoc, depth = 0): string[] {
  if (!isSchemaObject(node) || depth > MAX_DEPTH) return [];
  const { schema, doc: at } = docs.view(node, doc);
  const out: string[] = [];
  for (const key of ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf', 'minLength', 'maxLength',
    'minItems', 'maxItems', 'minProperties', 'maxProperties'] as const) {
    if (schema[key] !== undefined) out.push(`${key} ${schema[key]}`);
  }
  if (schema.uniqueItems === true) out.push('uniqueItems');
  if (schema.pattern !== undefined) out.push(`pattern ${code(schema.pattern)}`);
  if (schema.format !== undefined) out.push(`format ${schema.format}`);
  for (const [keyword, phrase] of [['oneOf', 'exactly one of'], ['anyOf', 'at least one of']] as const) {
    const branches = schema[keyword];
    if (branches !== undefined && branches.every(isRequiredOnly)) {
      const alternatives = branches.map((b) => ((b as JsonSchema).required ?? []).map(code).join(' + '));
      out.push(`${phrase} ${alternatives.join(', ')}`);
    }
  }
  const nested = (label: string, child: SchemaNode | undefined): void => {
    if (child === undefined) return;
    const inner = constraintsOf(docs, child, at, depth + 1);
    if (inner.length > 0) out.push(`${label}: ${inner.join(', ')}`);
  };
  nested('items', schema.items);
  nested('keys', schema.propertyNames);
  if (schema.properties === undefined) nested('values', schema.additionalProperties);
  for (const branch of typeBranches(schema)) nested(typeOf(docs, branch, at), branch);
  return out;
}

/** The description of a field: its own, else that of the schema it refers to, else that of its items. */
function descriptionOf(docs: SchemaDocs, view: View): string {
  let { schema, doc } = view;
  for (let i = 0; i < MAX_DEPTH; i++) {
    if (schema.description !== undefined) return schema.description.replace(/\s*\n\s*/g, ' ').trim();
    const next = schema.items ?? (schema.properties === undefined ? schema.additionalProperties : undefined);
    if (!isSchemaObject(next)) break;
    ({ schema, doc } = docs.view(next, doc));
  }
  return '';
}

/** Every ref reached from a view through items and map values (what a row's children would expand). */
function containerRefs(docs: SchemaDocs, view: View): string[] {
  const refs = [...view.refs];
  let { schema, doc } = view;
  for (let i = 0; i < MAX_DEPTH; i++) {
    const next = schema.items ?? (schema.properties === undefined ? schema.additionalProperties : undefined);
    if (!isSchemaObject(next)) break;
    const inner = docs.view(next, doc);
    refs.push(...inner.refs);
    ({ schema, doc } = inner);
  }
  return refs;
}

interface Expanded {
  ref: string;
  path: string;
}

class RowBuilder {
  readonly rows: FieldRow[] = [];
  readonly #docs: SchemaDocs;

  constructor(docs: SchemaDocs) {
    this.#docs = docs;
  }

  /** Adds a row per property of `view`, each followed by the rows of its own fields. */
  properties(view: View, prefix: string, expanded: Expanded[], depth: number): void {
    const required = new Set(view.schema.required ?? []);
    for (const [name, node] of Object.entries(view.schema.properties ?? {})) {
      this.field(node, view.doc, prefix === '' ? name : `${prefix}.${name}`, required.has(name), expanded, depth);
    }
  }

  field(node: SchemaNode, doc: SchemaDoc, fieldPath: string, required: boolean, expanded: Expanded[], depth: number): void {
    const docs = this.#docs;
    const view = docs.view(node, doc);
    const row: FieldRow = {
      path: fieldPath,
      type: typeOf(docs, node, doc),
      required,
      constraints: constraintsOf(docs, node, doc),
      description: descriptionOf(docs, view),
    };
    if (view.schema.default !== undefined) row.default = JSON.stringify(view.schema.default);
    this.rows.push(row);
    const again = containerRefs(docs, view).map((ref) => expanded.find((e) => e.ref === ref)).find((e) => e !== undefined);
    if (again !== undefined) {
      row.description = `${row.description}${row.description === '' ? '' : ' '}Recursive: its fields are those of \`${again.path}\`.`;
      return;
    }
    if (depth >= MAX_DEPTH) return;
    this.children(view, fieldPath, [...expanded, ...view.refs.map((ref) => ({ ref, path: fieldPath }))], depth + 1);
  }

  /** Rows below a field: its properties, the fields of its items and map values, and of each type alternative. */
  children(view: View, fieldPath: string, expanded: Expanded[], depth: number): void {
    const docs = this.#docs;
    const { schema, doc } = view;
    if (schema.properties !== undefined) this.properties(view, fieldPath, expanded, depth);
    const container: [SchemaNode | undefined, string][] = [
      [schema.items, `${fieldPath}[]`],
      [schema.properties === undefined ? schema.additionalProperties : undefined, `${fieldPath}.${MAP_KEY}`],
    ];
    for (const [child, childPath] of container) {
      if (!isSchemaObject(child)) continue;
      const inner = docs.view(child, doc);
      this.children(inner, childPath, [...expanded, ...inner.refs.map((ref) => ({ ref, path: childPath }))], depth + 1);
    }
    for (const branch of typeBranches(schema)) {
      const inner = docs.view(branch, doc);
      if (inner.refs.some((ref) => expanded.some((e) => e.ref === ref))) continue;
      this.children(inner, fieldPath, [...expanded, ...inner.refs.map((ref) => ({ ref, path: fieldPath }))], depth + 1);
    }
  }
}

/**
 * The field rows of a schema, depth first in the order the schema lists its properties. `file` is where
 * the schema lives (relative $refs to other files are resolved from there).
 */
export function fieldRows(schema: JsonSchema, file: string): FieldRow[] {
  const docs = new SchemaDocs();
  const doc = docs.add(path.resolve(file), schema);
  const builder = new RowBuilder(docs);
  builder.properties(docs.view(schema, doc), '', [], 0);
  return builder.rows;
}

// ---------------------------------------------------------------------------------------------------------
// Markdown

/** A code span; backticks inside get a longer fence. */
function code(text: string): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const fence = '`'.repeat(longest + 1);
  const pad = longest > 0 || text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

/**
 * Prose from a schema as Markdown: outside code spans, backslashes, `*`, `_` not inside a word (GFM ignores
 * intraword underscores) and angle brackets are escaped, so that "*.suffix" or "<name>" show as written.
 */
export function markdownText(text: string): string {
  const parts = text.split('`');
  const escapeProse = (s: string): string =>
    s.replace(/[\\*]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])/g, (c) => `\\${c}`).replace(/</g, '&lt;').replace(/>/g, '&gt;');
  if (parts.length % 2 === 0) return escapeProse(text); // an unmatched backtick: no code spans at all
  return parts.map((part, i) => (i % 2 === 0 ? escapeProse(part) : `\`${part}\``)).join('');
}

/** A table cell: one line, pipes escaped (GFM also honours `\|` inside code spans). */
const cell = (markdown: string): string => markdown.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');

function fieldTable(rows: FieldRow[]): string {
  const lines = [
    '| Field | Type | Required | Default | Constraints | Description |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    lines.push(`| ${[
      code(row.path),
      code(row.type),
      row.required ? 'yes' : 'no',
      row.default === undefined ? '' : code(row.default),
      row.constraints.join(', '),
      markdownText(row.description),
    ].map(cell).join(' | ')} |`);
  }
  return lines.join('\n');
}

/** The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to dashes. */
function anchor(heading: string): string {
  return heading.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-');
}

const toPosix = (file: string): string => path.relative(repoRoot, file).split(path.sep).join('/');

// ---------------------------------------------------------------------------------------------------------
// Sections

interface Example {
  source: string;
  language: 'yaml' | 'json';
  text: string;
}

interface Section {
  heading: string;
  schemaFile: string;
  intro: string[];
  description: string;
  rows: FieldRow[];
  example?: Example;
}

const schemaFilesIn = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.schema.json'))
    .map((e) => e.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => path.join(dir, name));

async function readSchema(file: string): Promise<JsonSchema> {
  const node = JSON.parse(await readFile(file, 'utf8')) as SchemaNode;
  if (!isSchemaObject(node)) throw new Error(`${toPosix(file)}: not a schema object`);
  return node;
}

/** The first document of each kind in schemas/examples/*.yaml (files by name), as written there. */
async function kindExamples(): Promise<Map<string, Example>> {
  const examples = new Map<string, Example>();
  let files: string[];
  try {
    files = readdirSync(EXAMPLES_DIR).filter((f) => /\.ya?ml$/.test(f)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch {
    return examples;
  }
  for (const name of files) {
    const source = (await readFile(path.join(EXAMPLES_DIR, name), 'utf8')).replace(/\r\n/g, '\n');
    for (const document of parseAllDocuments(source)) {
      if (!('contents' in document) || document.errors.length > 0 || document.contents === null) continue;
      const kind = (document.toJS() as { kind?: unknown } | null)?.kind;
      if (typeof kind !== 'string' || examples.has(kind)) continue;
      const [start, valueEnd] = document.contents.range;
      examples.set(kind, { source: `schemas/examples/${name}`, language: 'yaml', text: source.slice(start, valueEnd).trimEnd() });
    }
  }
  return examples;
}

/** filters/<name>/example/config.json, else the first non-empty entry of the schema's `examples`. */
async function filterExample(name: string, schema: JsonSchema): Promise<Example | undefined> {
  const file = path.join(FILTERS_DIR, name, 'example', 'config.json');
  try {
    const text = (await readFile(file, 'utf8')).replace(/\r\n/g, '\n').trimEnd();
    return { source: toPosix(file), language: 'json', text };
  } catch {
    const example = (schema.examples ?? []).find((e) => typeof e === 'object' && e !== null && Object.keys(e).length > 0);
    if (example === undefined) return undefined;
    return { source: `the \`examples\` of ${toPosix(path.join(FILTER_SCHEMA_DIR, `${name}.schema.json`))}`, language: 'json', text: JSON.stringify(example, null, 2) };
  }
}

function acceptedValues(node: SchemaNode | undefined): string[] {
  if (!isSchemaObject(node)) return [];
  if (node.const !== undefined) return [String(node.const)];
  return (node.enum ?? []).map(String);
}

async function kindSection(file: string, examples: Map<string, Example>): Promise<Section> {
  const schema = await readSchema(file);
  const kind = acceptedValues(schema.properties?.kind)[0] ?? schema.title ?? path.basename(file, '.schema.json');
  const apiVersions = acceptedValues(schema.properties?.apiVersion);
  const section: Section = {
    heading: kind,
    schemaFile: toPosix(file),
    intro: [
      `apiVersion: ${apiVersions.length > 0 ? apiVersions.map(code).join(', ') : 'any'}`,
      `kind: ${code(kind)}`,
    ],
    description: schema.description ?? schema.title ?? '',
    rows: fieldRows(schema, file),
  };
  const example = examples.get(kind);
  if (example !== undefined) section.example = example;
  return section;
}

async function filterSection(file: string): Promise<Section> {
  const schema = await readSchema(file);
  const name = path.basename(file, '.schema.json');
  const section: Section = {
    heading: `${name} filter`,
    schemaFile: toPosix(file),
    intro: ['The `spec.pluginConfig` of a WasmPlugin that runs this filter; field paths start there.'],
    description: schema.description ?? schema.title ?? '',
    rows: fieldRows(schema, file),
  };
  const example = await filterExample(name, schema);
  if (example !== undefined) section.example = example;
  return section;
}

function renderSection(section: Section): string {
  const parts = [
    `### ${section.heading}`,
    [...section.intro, `schema: [${code(section.schemaFile)}](../${section.schemaFile})`].join('  \n'),
  ];
  if (section.description !== '') parts.push(markdownText(section.description.replace(/\s*\n\s*/g, ' ')));
  parts.push(section.rows.length > 0 ? fieldTable(section.rows) : 'No fields.');
  if (section.example !== undefined) {
    const { source, language, text } = section.example;
    const fence = '`'.repeat(Math.max(3, ...(text.match(/`{3,}/g) ?? []).map((run) => run.length + 1)));
    parts.push(`Example (from ${source.startsWith('the ') ? source : code(source)}):`, `${fence}${language}\n${text}\n${fence}`);
  }
  return parts.join('\n\n');
}

/** The whole of docs/config-reference.md as it should be, from the files as they are now. */
export async function renderConfigReference(): Promise<string> {
  const examples = await kindExamples();
  const kinds = await Promise.all(schemaFilesIn(SCHEMA_DIR).map((file) => kindSection(file, examples)));
  const filters = await Promise.all(schemaFilesIn(FILTER_SCHEMA_DIR).map((file) => filterSection(file)));
  const toc = (sections: Section[]): string => sections.map((s) => `- [${s.heading}](#${anchor(s.heading)})`).join('\n');
  const out = [
    '# Configuration reference',
    `<!-- Generated by scripts/gen-config-reference.ts from schemas/json; do not edit. Regenerate with: ${GENERATE_COMMAND} -->`,
    'Every field wasmesh accepts, generated from the JSON Schemas in `schemas/json/` (the source of truth; see ' +
      '`schemas/README.md`). Objects are closed: a field not listed here is rejected. A path names a field from ' +
      `the document root: \`[]\` stands for any item of a list and \`.${MAP_KEY}\` for any key of a map. Some rules ` +
      'cannot be written as a schema (weights adding up to 100, references between resources) and are checked ' +
      'by the orchestrator after the schema.',
    '## Contents',
    `Kinds:\n\n${toc(kinds)}`,
    `Built-in filters (\`pluginConfig\`):\n\n${toc(filters)}`,
    '## Kinds',
    ...kinds.map(renderSection),
    '## Built-in filters',
    'The `pluginConfig` each built-in filter accepts (schemas in `schemas/json/filters/`).',
    ...filters.map(renderSection),
  ];
  return `${out.join('\n\n')}\n`;
}

/** Null when `file` holds what would be generated, else a message naming the file and the fix. */
export async function checkConfigReference(file: string = CONFIG_REFERENCE_FILE): Promise<string | null> {
  const expected = await renderConfigReference();
  let actual: string | null = null;
  try {
    actual = await readFile(file, 'utf8');
  } catch {
    // missing: reported below
  }
  if (actual === expected) return null;
  const what = actual === null ? 'is missing' : 'is out of date with schemas/';
  return `${path.relative(process.cwd(), file) || file} ${what}; regenerate it with: ${GENERATE_COMMAND}`;
}

async function main(args: string[]): Promise<number> {
  const unknown = args.filter((a) => a !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`unknown argument ${unknown[0]}\nusage: ${GENERATE_COMMAND} [--check]\n`);
    return 2;
  }
  if (args.includes('--check')) {
    const problem = await checkConfigReference();
    if (problem !== null) {
      process.stderr.write(`${problem}\n`);
      return 1;
    }
    return 0;
  }
  await mkdir(path.dirname(CONFIG_REFERENCE_FILE), { recursive: true });
  await writeFile(CONFIG_REFERENCE_FILE, await renderConfigReference());
  process.stdout.write(`wrote ${toPosix(CONFIG_REFERENCE_FILE)}\n`);
  return 0;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // No top-level await: `uvu -r tsx` loads this file as CommonJS.
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
