// Every write through the API goes through ConfigWriter: it validates the whole set of resources
// the write would leave (stored ones plus or minus the change), so the cross-document checks see
// the full state, then writes. Writes from this process are serialized, so no other API write can
// slip between the validation and the store write. (Replicas on one etcd still race on
// cross-document checks; the store's resourceVersion checks guard each resource itself.)
//
// An error that the stored state already has (say, after an upgrade tightened a rule) does not
// block unrelated writes: only errors the write would add are reported.

import { fromObjects, type ConfigDocument, type ConfigError } from '../../../mesh/src/documents.ts';
import { MODULE_URL, validateDocuments, type ValidationMode } from '../../../mesh/src/validate.ts';
import { keyOf } from '../store/common.ts';
import type { ConfigStore, Resource, ResourceInput } from '../store/types.ts';
import { ErrorCode, HttpError, type ApiError } from './errors.ts';

/** `digest:sha256:<hex>` (also `sha256:<hex>`): how a WasmPlugin names an uploaded module. */
const DIGEST_URL = /^(?:digest:)?sha256:([A-Fa-f0-9]{64})$/;

export interface WriteChange {
  /** Documents to create or replace (already parsed, with their sources for messages). */
  put?: readonly ConfigDocument[];
  /** Resource keys (`<kind>/<namespace>/<name>`) to remove. */
  remove?: readonly string[];
}

export class ConfigWriter {
  readonly #store: ConfigStore;
  readonly #mode: ValidationMode;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(store: ConfigStore, mode: ValidationMode) {
    this.#store = store;
    this.#mode = mode;
  }

  /** Runs `fn` after every earlier write of this writer has finished. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Throws HttpError 400 naming each problem if the state after `change` would be invalid. */
  async check(change: WriteChange): Promise<Resource[]> {
    const stored = await this.#store.list();
    const replaced = new Set<string>(change.remove ?? []);
    for (const doc of change.put ?? []) {
      const key = documentKey(doc.value);
      if (key) replaced.add(key);
    }
    const storedDocs = fromObjects(stored.map(documentOf), 'stored');
    const next = [...storedDocs.filter((d) => !replaced.has(documentKey(d.value) ?? '')), ...(change.put ?? [])];
    // Modules are known by digest and by name@version (module:// urls).
    const records = await this.#store.listModules();
    const modules = new Set([...records.map((m) => m.sha256), ...records.map((m) => `${m.name}@${m.version}`)]);
    const errors = this.#validate(next, modules);
    if (errors.length === 0) return stored;
    const before = new Set(this.#validate(storedDocs, modules).map(errorKey));
    const added = errors.filter((e) => !before.has(errorKey(e)));
    if (added.length > 0) throw invalid(added);
    return stored;
  }

  #validate(documents: ConfigDocument[], modules: ReadonlySet<string>): ConfigError[] {
    const errors = [...validateDocuments(documents, { mode: this.#mode }).errors];
    for (const doc of documents) errors.push(...moduleErrors(doc, modules));
    return errors;
  }
}

export function invalid(errors: readonly ConfigError[]): HttpError {
  return new HttpError(400, ErrorCode.Invalid, errors.map(toApiError));
}

export function toApiError(e: ConfigError): ApiError {
  return { document: e.document, path: e.path, message: e.message, ...(e.line !== undefined ? { line: e.line } : {}), ...(e.column !== undefined ? { column: e.column } : {}) };
}

/** A stored resource as a document to validate: store-managed metadata left out. */
export function documentOf(r: Resource): Record<string, unknown> {
  const { name, namespace, labels, annotations } = r.metadata;
  return {
    apiVersion: r.apiVersion,
    kind: r.kind,
    metadata: { name, namespace, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) },
    spec: r.spec,
  };
}

/** The store key of a document, if it has a kind and a name. */
export function documentKey(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  if (typeof v.kind !== 'string' || typeof v.metadata?.name !== 'string') return undefined;
  return keyOf({ kind: v.kind, metadata: { name: v.metadata.name, ...(typeof v.metadata.namespace === 'string' ? { namespace: v.metadata.namespace } : {}) } });
}

/**
 * A client's document without the metadata only the store sets (creationTimestamp), so what a GET
 * or a list returned can be sent back as it is. The document is copied, never modified.
 */
export function withoutReadOnly(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const v = value as { metadata?: unknown };
  if (typeof v.metadata !== 'object' || v.metadata === null || !('creationTimestamp' in v.metadata)) return value;
  const { creationTimestamp: _ignored, ...metadata } = v.metadata as Record<string, unknown>;
  return { ...v, metadata };
}

/** A validated document as store input. */
export function toInput(value: unknown): ResourceInput {
  const v = value as ResourceInput;
  const { creationTimestamp: _ignored, generation: _generation, ...metadata } = v.metadata as ResourceInput['metadata'] & { creationTimestamp?: string };
  return { apiVersion: v.apiVersion, kind: v.kind, metadata, spec: v.spec };
}

/** Who is writing, as recorded in histories: `<role>:<token id>`. */
export function writerOf(request: { identity?: { role: string; id: string } }): string {
  const id = request.identity;
  return id ? `${id.role}:${id.id}` : 'unknown';
}

function moduleErrors(doc: ConfigDocument, modules: ReadonlySet<string>): ConfigError[] {
  const v = doc.value as { kind?: unknown; spec?: { url?: unknown; canary?: { url?: unknown } }; metadata?: { name?: unknown; namespace?: unknown } } | null;
  if (!v || v.kind !== 'WasmPlugin' || typeof v.spec?.url !== 'string') return [];
  const ns = typeof v.metadata?.namespace === 'string' && v.metadata.namespace !== '' ? v.metadata.namespace : 'default';
  const resource = `WasmPlugin ${ns}/${String(v.metadata?.name)}`;
  const errors: ConfigError[] = [];
  const check = (url: string, path: string) => {
    const byName = MODULE_URL.exec(url);
    const m = DIGEST_URL.exec(url);
    const missing = byName ? (modules.has(`${byName[1]}@${byName[2]}`) ? undefined : `module ${byName[1]}@${byName[2]}`) : m && !modules.has(m[1]!.toLowerCase()) ? `module sha256:${m[1]!.toLowerCase()}` : undefined;
    if (missing === undefined) return;
    errors.push({
      document: `${resource} (${doc.source.file}#${doc.source.index})`,
      resource,
      source: doc.source,
      path,
      message: `${missing} has not been uploaded: upload it first (POST /modules, or wasmesh filter deploy)`,
    });
  };
  check(v.spec.url, '/spec/url');
  if (typeof v.spec.canary?.url === 'string') check(v.spec.canary.url, '/spec/canary/url');
  return errors;
}

function errorKey(e: ConfigError): string {
  return `${e.resource ?? e.document}\u0000${e.path}\u0000${e.message}`;
}
