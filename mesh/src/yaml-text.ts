// YAML text to plain values, one per YAML document, within INPUT_LIMITS (input-limits.ts).
//
// The `yaml` package's stages are driven one at a time so that hostile text is refused before it
// costs much: the lexer and parser run token by token, and the parse stops as soon as nesting runs
// deep or the documents are too many; a document larger than the limit is never composed; a
// composed document is measured (aliases expanded, without expanding them) before it becomes a
// value. Duplicate keys are found here in linear time: the package's own check (`uniqueKeys`)
// compares every key of a mapping with every other, minutes of CPU for a 500 KiB mapping.

import { CST, Composer, Lexer, LineCounter, Parser, isAlias, isMap, isPair, isScalar, isSeq } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';
import { INPUT_LIMITS, formatSize } from './input-limits.ts';

export interface YamlProblem {
  readonly message: string;
  /** 1-based line the problem is at, when known. */
  readonly line?: number;
  /** 1-based column there, when known. */
  readonly column?: number;
}

/** What a YAML document named itself, as far as it got: enough to name it in an error. */
export interface YamlIdentity {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
}

export type YamlEntry =
  | {
      readonly ok: true;
      readonly value: unknown;
      readonly line?: number;
      readonly itemLines?: readonly (number | undefined)[];
      /** The line of the node a JSON pointer names (see nodePositionOf). */
      readonly lineOf: (pointer: string) => number | undefined;
      /** Its line and column. */
      readonly positionOf: (pointer: string) => TextPosition | undefined;
    }
  | { readonly ok: false; readonly problems: readonly YamlProblem[]; readonly identity?: YamlIdentity; readonly line?: number };

/** 1-based line and column in the text. */
export interface TextPosition {
  readonly line: number;
  readonly column: number;
}

export interface YamlTextResult {
  /** One per non-empty YAML document, in order (a refused document is an entry too). */
  readonly entries: readonly YamlEntry[];
  /** The text as a whole was refused past this point (too many documents). */
  readonly textProblem?: string;
}

type Limits = typeof INPUT_LIMITS;

/** Parses every document of `text`; never throws for bad input. */
export function parseYamlText(text: string, limits: Limits = INPUT_LIMITS): YamlTextResult {
  const lineCounter = new LineCounter();
  const linePos: LinePos = (offset) => lineCounter.linePos(offset);
  const lineOf = (offset: number): number => linePos(offset).line;
  const parser = new Parser(lineCounter.addNewLine);
  // logLevel error: the package's warnings (a mapping used as a key, ...) would go to the process's
  // warning stream, where any caller could fill a log with them.
  const composer = new Composer({ uniqueKeys: false, logLevel: 'error' });
  const entries: YamlEntry[] = [];
  // Documents refused before composing, by their position among the YAML documents; the composer
  // gets an empty stand-in for each, so that it still sees one document per document.
  const refused = new Map<number, YamlEntry>();
  let parsedDocs = 0;
  let composedDocs = 0;

  const accept = (doc: Document.Parsed): void => {
    const ordinal = ++composedDocs;
    const early = refused.get(ordinal);
    if (early) entries.push(early);
    else composedEntry(doc, limits, linePos, entries);
  };
  const feed = (token: CST.Token): string | undefined => {
    if (token.type === 'document') {
      parsedDocs += 1;
      if (parsedDocs > limits.maxDocuments) return `more than ${limits.maxDocuments} documents (the limit): split the text`;
      const size = CST.stringify(token).length;
      if (size > limits.maxDocumentBytes) {
        refused.set(parsedDocs, {
          ok: false,
          identity: cstIdentity(token.value),
          line: lineOf(token.offset),
          problems: [{ line: lineOf(token.offset), message: `the document is ${formatSize(size)}, more than the limit of ${formatSize(limits.maxDocumentBytes)}` }],
        });
        token = { type: 'document', offset: token.offset, start: [] };
      }
    }
    for (const doc of composer.next(token)) accept(doc);
    return undefined;
  };

  lineCounter.addNewLine(0);
  const maxStack = 2 * limits.maxDepth + 8; // the parser's stack holds each open collection, and a few more tokens
  let textProblem: string | undefined;
  outer: for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) {
      textProblem = feed(token);
      if (textProblem) break outer;
    }
    // Stop reading at once when the document being parsed nests too deep or grows too large: the
    // parser would go on (linearly, but seconds for a few MiB), and the composer recurses per level.
    const open = parser.stack[0];
    const tooDeep = parser.stack.length > maxStack;
    if (tooDeep || (open?.type === 'document' && parser.offset - open.offset > limits.maxDocumentBytes)) {
      for (const doc of composer.end()) accept(doc);
      const line = lineOf(parser.offset);
      const message = tooDeep
        ? `nests deeper than ${limits.maxDepth} levels (the limit) at line ${line}; the rest of the text was not read`
        : `the document is larger than ${formatSize(limits.maxDocumentBytes)} (the limit) at line ${line}; the rest of the text was not read`;
      entries.push({
        ok: false,
        // The document is unfinished: its top-level collection is still on the parser's stack.
        ...(open?.type === 'document' ? { identity: cstIdentity(open.value ?? parser.stack[1]), line: lineOf(open.offset) } : {}),
        problems: [{ line, message }],
      });
      return { entries };
    }
  }
  if (!textProblem) {
    for (const token of parser.end()) {
      textProblem = feed(token);
      if (textProblem) break;
    }
  }
  for (const doc of composer.end()) accept(doc);
  return textProblem ? { entries, textProblem } : { entries };
}

type LinePos = (offset: number) => { line: number; col: number };

function composedEntry(doc: Document.Parsed, limits: Limits, linePos: LinePos, entries: YamlEntry[]): void {
  const lineOf = (offset: number): number => linePos(offset).line;
  if (doc.errors.length > 0) {
    entries.push({
      ok: false,
      problems: doc.errors.map((e) => {
        const pos = linePos(e.pos[0]);
        return { line: pos.line, column: pos.col, message: `invalid YAML at line ${pos.line}, column ${pos.col}: ${firstLine(e.message)}` };
      }),
    });
    return;
  }
  const contents = doc.contents as YamlNode | null;
  if (contents === null) return;
  const identity = astIdentity(contents);
  const line = nodeLine(contents, lineOf);
  const refuse = (problem: YamlProblem): void => void entries.push({ ok: false, identity, ...(line === undefined ? {} : { line }), problems: [problem] });
  const problem = measureDocument(doc, contents, limits, linePos);
  if (problem) return refuse(problem);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: limits.maxAliases });
  } catch (err) {
    // measureDocument bounds aliases already; the package's own alias guard counts differently
    // (aliases inside what an alias refers to multiply), so it can still stop a document here.
    const message = err instanceof Error ? err.message : String(err);
    return refuse({ message: /alias/i.test(message) ? `YAML aliases were limited: ${message}` : `invalid YAML: ${message}` });
  }
  if (value === null || value === undefined) return;
  let itemLines: (number | undefined)[] | undefined;
  if (isSeq(contents)) {
    itemLines = contents.items.map((n) => nodeLine(n as YamlNode, lineOf));
  } else if (isMap(contents) && isRecord(value) && value.kind === 'List' && Array.isArray(value.items)) {
    const items = contents.get('items', true);
    if (isSeq(items)) itemLines = items.items.map((n) => nodeLine(n as YamlNode, lineOf));
  }
  const positionOf = nodePositionOf(doc, contents, linePos);
  entries.push({ ok: true, value, ...(line === undefined ? {} : { line }), ...(itemLines ? { itemLines } : {}), lineOf: (pointer) => positionOf(pointer)?.line, positionOf });
}

/**
 * The line and column of the node a JSON pointer names in a composed document: for a mapping's
 * field, its key's (where the field is written); for a sequence item, the item's. A pointer that
 * leaves the text (a missing field) gets the position of the deepest node on its way that is there.
 * Aliases are followed to their anchor. Walks only the pointer's path, so a lookup costs its depth.
 */
function nodePositionOf(doc: Document.Parsed, contents: YamlNode, linePos: LinePos): (pointer: string) => TextPosition | undefined {
  const at = (node: YamlNode | null | undefined): TextPosition | undefined => {
    const range = node?.range;
    if (!range) return undefined;
    const { line, col } = linePos(range[0]);
    return { line, column: col };
  };
  return (pointer) => {
    let node: unknown = contents;
    let line = at(contents);
    if (pointer === '') return line;
    for (const raw of pointer.split('/').slice(1)) {
      const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === segment);
        if (pair === undefined) return line;
        line = at(pair.key as YamlNode) ?? line;
        node = pair.value;
      } else if (isSeq(node)) {
        const item = /^(0|[1-9][0-9]*)$/.test(segment) ? node.items[Number(segment)] : undefined;
        if (item === undefined) return line;
        line = at(item as YamlNode) ?? line;
        node = item;
      } else {
        return line;
      }
    }
    return line;
  };
}

interface Measure {
  /** Length of the node's text with every alias inside it replaced by what it refers to. */
  size: number;
  /** Levels of mappings and sequences below and including the node (0 for a scalar). */
  height: number;
}

class Refused {
  constructor(readonly problem: YamlProblem) {}
}

/**
 * Checks a composed document against the limits before it is turned into a value: the number of
 * aliases, its size and depth as if every alias were expanded (computed once per anchored node, so
 * a billion laughs costs as little to measure as it is long), aliases that refer to a node they are
 * inside (which would make a cyclic value), and duplicate keys.
 */
function measureDocument(doc: Document.Parsed, contents: YamlNode, limits: Limits, linePos: LinePos): YamlProblem | undefined {
  const lineOf = (offset: number): number => linePos(offset).line;
  const measured = new Map<unknown, Measure>();
  const open = new Set<unknown>();
  let aliases = 0;
  const at = (node: unknown): number | undefined => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? lineOf(range[0]) : undefined;
  };
  // `where` is " at line N" when the node has a position.
  const refuse = (node: unknown, message: (where: string) => string): never => {
    const line = at(node);
    throw new Refused({ message: message(line === undefined ? '' : ` at line ${line}`), ...(line === undefined ? {} : { line }) });
  };

  const measure = (node: unknown, depth: number): Measure => {
    if (node === null || node === undefined) return { size: 1, height: 0 };
    if (isAlias(node)) {
      aliases += 1;
      if (aliases > limits.maxAliases) refuse(node, (where) => `YAML aliases were limited${where}: a document may have at most ${limits.maxAliases} aliases`);
      const target = node.resolve(doc);
      if (target === undefined) refuse(node, (where) => `invalid YAML${where}: alias *${node.source} refers to no anchor`);
      if (open.has(target)) refuse(node, (where) => `YAML aliases were limited${where}: alias *${node.source} refers to a node that contains it`);
      const m = measured.get(target) ?? measure(target, 0);
      if (depth + m.height > limits.maxDepth) {
        refuse(node, (where) => `YAML aliases were limited${where}: expanded, alias *${node.source} would nest the document deeper than ${limits.maxDepth} levels (the limit)`);
      }
      return m;
    }
    if (isScalar(node)) {
      const range = node.range;
      return { size: range ? Math.max(1, range[1] - range[0]) : String(node.value).length, height: 0 };
    }
    if (isMap(node) || isSeq(node)) {
      if (depth + 1 > limits.maxDepth) refuse(node, (where) => `nests deeper than ${limits.maxDepth} levels (the limit)${where}`);
      open.add(node);
      let size = 2;
      let height = 0;
      const keys = isMap(node) ? new Set<unknown>() : undefined;
      const add = (child: unknown): void => {
        const m = measure(child, depth + 1);
        size += m.size + 1;
        height = Math.max(height, m.height);
        if (size > limits.maxDocumentBytes) {
          refuse(child, (where) =>
            aliases > 0
              ? `YAML aliases were limited${where}: expanded, they would make the document larger than ${formatSize(limits.maxDocumentBytes)} (the limit)`
              : `the document is larger than ${formatSize(limits.maxDocumentBytes)} (the limit)${where}`,
          );
        }
      };
      for (const item of node.items as unknown[]) {
        if (isPair(item)) {
          if (keys && isScalar(item.key)) {
            if (keys.has(item.key.value)) {
              const { line, col } = linePos(item.key.range?.[0] ?? 0);
              throw new Refused({ line, column: col, message: `invalid YAML at line ${line}, column ${col}: Map keys must be unique` });
            }
            keys.add(item.key.value);
          }
          add(item.key);
          add(item.value);
        } else {
          add(item);
        }
      }
      open.delete(node);
      const m = { size, height: height + 1 };
      measured.set(node, m);
      return m;
    }
    return { size: 1, height: 0 };
  };

  try {
    measure(contents, 0);
    return undefined;
  } catch (err) {
    if (err instanceof Refused) return err.problem;
    throw err;
  }
}

function nodeLine(node: YamlNode | null | undefined, lineOf: (offset: number) => number): number | undefined {
  const range = node?.range;
  return range ? lineOf(range[0]) : undefined;
}

/** kind, metadata.name and metadata.namespace of a composed document, where they are plain strings. */
function astIdentity(contents: YamlNode): YamlIdentity | undefined {
  if (!isMap(contents)) return undefined;
  const str = (node: unknown): string | undefined => (isScalar(node) && typeof node.value === 'string' ? node.value : undefined);
  const kind = str(contents.get('kind', true));
  const metadata = contents.get('metadata', true);
  const name = isMap(metadata) ? str(metadata.get('name', true)) : undefined;
  const namespace = isMap(metadata) ? str(metadata.get('namespace', true)) : undefined;
  return { ...(kind ? { kind } : {}), metadata: { ...(name ? { name } : {}), ...(namespace ? { namespace } : {}) } };
}

/** The same from the parser's syntax tree (a document's value), for documents refused before they are composed (possibly unfinished). */
function cstIdentity(top: CST.Token | undefined): YamlIdentity | undefined {
  const field = (token: CST.Token | undefined, key: string): CST.Token | undefined => {
    if (!token || (token.type !== 'block-map' && token.type !== 'flow-collection')) return undefined;
    for (const item of token.items) {
      if (item.key && text(item.key) === key) return item.value;
    }
    return undefined;
  };
  const text = (token: CST.Token | null | undefined): string | undefined => {
    if (!token || !CST.isScalar(token)) return undefined;
    return CST.resolveAsScalar(token, false, () => {})?.value;
  };
  const kind = text(field(top, 'kind'));
  const metadata = field(top, 'metadata');
  const name = text(field(metadata, 'name'));
  const namespace = text(field(metadata, 'namespace'));
  return { ...(kind ? { kind } : {}), metadata: { ...(name ? { name } : {}), ...(namespace ? { namespace } : {}) } };
}

function firstLine(message: string): string {
  return message.split('\n')[0]!;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
