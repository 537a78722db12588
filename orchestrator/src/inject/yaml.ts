// kube-inject's YAML side: multi-document text in, the same text out with sidecars in the workloads.
// Documents that are not changed are copied byte for byte (comments, quoting, `---` lines and all).
// A changed document is the parsed YAML with the JSON Patch of the injection applied to its
// syntax tree, so its own comments and formatting survive too; if that ever disagrees with the
// injected object, the object is printed instead (a fresh YAML rendering, no comments).

import { Document, isCollection, isSeq, parseAllDocuments, type Node as YamlNode } from 'yaml';
import { INPUT_LIMITS } from '../../../mesh/src/input-limits.ts';
import { createPatch, jsonEqual, unescapePointerToken, type PatchOperation } from './json-patch.ts';
import { InjectError, injectResource, type TemplateResult } from './mutate.ts';
import type { InjectOptions } from './sidecar.ts';

export interface YamlInjectError {
  file: string;
  /** 1-based position of the document in the file (empty documents count too). */
  index: number;
  /** JSON pointer in the document ("" when the document is not YAML). */
  path: string;
  message: string;
}

export interface YamlInjectResult {
  /** The documents, each ending in a newline; join them with "---\n" separators as they carry. */
  segments: string[];
  templates: Array<TemplateResult & { file: string; index: number }>;
  errors: YamlInjectError[];
}

const STRINGIFY = { lineWidth: 0 } as const;

/** Injects every workload in `text` (the contents of `file`). Errors name the file and document. */
export function injectYaml(text: string, file: string, opts: InjectOptions): YamlInjectResult {
  const out: YamlInjectResult = { segments: [], templates: [], errors: [] };
  const docs = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: true });
  if (!Array.isArray(docs)) return out; // an empty stream
  docs.forEach((doc, i) => {
    const index = i + 1;
    // Each document's text runs from its start (the first one: from the file's start, so a leading
    // comment stays) to the next document's start.
    const start = i === 0 ? 0 : doc.range[0];
    const end = i + 1 < docs.length ? docs[i + 1]!.range[0] : text.length;
    const original = withNewline(text.slice(start, end));
    if (doc.errors.length > 0) {
      for (const e of doc.errors) out.errors.push({ file, index, path: '', message: `invalid YAML: ${e.message.split('\n')[0]}` });
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: INPUT_LIMITS.maxAliases });
    } catch (e) {
      out.errors.push({ file, index, path: '', message: `invalid YAML: ${(e as Error).message}` });
      return;
    }
    let result;
    try {
      result = injectResource(value, opts);
    } catch (e) {
      if (!(e instanceof InjectError)) throw e;
      out.errors.push({ file, index, path: e.path, message: e.message });
      return;
    }
    out.templates.push(...result.templates.map((t) => ({ ...t, file, index })));
    if (!result.changed) {
      out.segments.push(original);
      return;
    }
    out.segments.push(renderChanged(doc, value, result.object, i > 0, original));
  });
  return out;
}

/** Joins the documents of several files into one stream. */
export function joinSegments(segments: readonly string[]): string {
  let text = '';
  segments.forEach((s, i) => {
    if (i > 0 && !/^---(\s|$)/.test(s) && !/(^|\n)\.\.\.\s*\n$/.test(text)) text += '---\n';
    text += s;
  });
  return text;
}

function renderChanged(doc: Document.Parsed, before: unknown, after: unknown, separator: boolean, original: string): string {
  const ops = createPatch(before, after);
  // Keep the file's sequence style: kubectl's "key:\n- item" (not indented) or "key:\n  - item".
  const options = { ...STRINGIFY, indentSeq: !/^( *)[^\s#-][^\n]*:[ \t]*(#[^\n]*)?\n\1- /m.test(original) };
  let text: string | undefined;
  try {
    const copy = doc.clone();
    for (const op of ops) applyToYaml(copy, op);
    if (jsonEqual(copy.toJS({ maxAliasCount: 100 }), after)) text = copy.toString(options);
  } catch {
    text = undefined;
  }
  if (text === undefined) {
    const fresh = new Document(after);
    text = fresh.toString(options);
    if (separator) text = `---\n${text}`;
  }
  if (separator && !/^---(\s|$)/.test(text)) text = `---\n${text}`;
  return withNewline(text);
}

/** Applies one operation of createPatch (add, replace, remove; appends as "/-") to a YAML document. */
function applyToYaml(doc: Document, op: PatchOperation): void {
  const tokens = op.path.split('/').slice(1).map(unescapePointerToken);
  if (tokens.length === 0) throw new Error('whole-document operations are not applied to YAML');
  const parentPath = tokens.slice(0, -1);
  const parent = parentPath.length === 0 ? doc.contents : doc.getIn(keys(doc, parentPath), true);
  if (!isCollection(parent as YamlNode)) throw new Error(`${op.path}: the parent is not a collection`);
  const last = tokens[tokens.length - 1]!;
  const path = keys(doc, tokens);
  if (op.op === 'remove') {
    doc.deleteIn(path);
    return;
  }
  const node = doc.createNode(op.value);
  if (op.op === 'add' && last === '-' && isSeq(parent)) {
    parent.add(node);
    return;
  }
  doc.setIn(path, node);
}

/** Pointer tokens to yaml's path keys: numbers inside sequences. */
function keys(doc: Document, tokens: readonly string[]): Array<string | number> {
  const out: Array<string | number> = [];
  let node: unknown = doc.contents;
  for (const t of tokens) {
    const key = isSeq(node as YamlNode) && /^\d+$/.test(t) ? Number(t) : t;
    out.push(key);
    node = isCollection(node as YamlNode) ? (node as { get(k: unknown, keepScalar: true): unknown }).get(key, true) : undefined;
  }
  return out;
}

function withNewline(s: string): string {
  return s.endsWith('\n') ? s : `${s}\n`;
}
