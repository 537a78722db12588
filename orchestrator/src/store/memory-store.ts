// The in-memory ConfigStore: for tests, and the reference for what the other backends must do.
//
// Semantics every backend shares (the conformance suite checks them):
// - the store revision starts at 0 and increases by one per write (put, putAll, delete); a putAll
//   is one write, so every resource in it gets the same resourceVersion;
// - resourceVersion = the revision of the resource's last write, as a decimal string;
// - generation starts at 1 and increases when spec changes;
// - a put that changes nothing (same apiVersion, labels, annotations and spec) is not a write: it
//   returns the stored resource and emits no event;
// - a DELETED event carries the last stored resource with resourceVersion = the deletion revision;
// - watch listeners are called after the write is committed, in revision order.

import {
  checkBatch,
  checkDelete,
  checkModuleName,
  checkModuleReupload,
  dispatch,
  isoNow,
  keyOf,
  nextResource,
  resourceKey,
  sha256Hex,
  sortModules,
  sortResources,
  withVersion,
} from './common.ts';
import type { ModuleMetadata } from '../../../wasm/src/producers.ts';
import type { ConfigStore, ModuleRecord, Resource, ResourceInput, ResourceKind, WatchEvent } from './types.ts';

export class MemoryStore implements ConfigStore {
  #revision = 0;
  readonly #resources = new Map<string, Resource>();
  readonly #blobs = new Map<string, Uint8Array>();
  readonly #modules = new Map<string, ModuleRecord>();
  readonly #listeners = new Set<(event: WatchEvent) => void>();
  #closed = false;

  async get(kind: ResourceKind, namespace: string, name: string): Promise<Resource | undefined> {
    this.#check();
    const r = this.#resources.get(resourceKey(kind, namespace, name));
    return r && structuredClone(r);
  }

  async list(kind?: ResourceKind, namespace?: string): Promise<Resource[]> {
    this.#check();
    const out: Resource[] = [];
    for (const r of this.#resources.values()) {
      if (kind !== undefined && r.kind !== kind) continue;
      if (namespace !== undefined && r.metadata.namespace !== namespace) continue;
      out.push(structuredClone(r));
    }
    return sortResources(out);
  }

  async put(input: ResourceInput): Promise<Resource> {
    return (await this.putAll([input]))[0]!;
  }

  async putAll(inputs: readonly ResourceInput[]): Promise<Resource[]> {
    this.#check();
    checkBatch(inputs);
    // Compute everything first: a conflict anywhere throws before anything is written.
    const planned = inputs.map((input) => nextResource(input, this.#resources.get(keyOf(input))));
    if (planned.every((p) => p.unchanged)) return planned.map((p) => structuredClone(p.resource));
    const revision = ++this.#revision;
    const events: WatchEvent[] = [];
    const results = planned.map(({ resource, unchanged }) => {
      if (unchanged) return structuredClone(resource);
      const key = keyOf(resource);
      const stored = withVersion(resource, revision);
      const type = this.#resources.has(key) ? 'MODIFIED' : 'ADDED';
      this.#resources.set(key, stored);
      events.push({ type, resource: structuredClone(stored), revision });
      return structuredClone(stored);
    });
    for (const event of events) dispatch(this.#listeners, event);
    return results;
  }

  async delete(kind: ResourceKind, namespace: string, name: string, resourceVersion?: string): Promise<Resource | undefined> {
    this.#check();
    const key = resourceKey(kind, namespace, name);
    const existing = this.#resources.get(key);
    if (!existing) return undefined;
    checkDelete(existing, resourceVersion);
    this.#resources.delete(key);
    const revision = ++this.#revision;
    const deleted = withVersion(existing, revision);
    dispatch(this.#listeners, { type: 'DELETED', resource: structuredClone(deleted), revision });
    return structuredClone(deleted);
  }

  async revision(): Promise<number> {
    this.#check();
    return this.#revision;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.#check();
    // Wrapped so the same function can watch twice and each stop removes only its own registration.
    const entry = (event: WatchEvent): void => listener(event);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  async putModule(name: string, version: string, bytes: Uint8Array, uploadedBy: string, metadata?: ModuleMetadata): Promise<ModuleRecord> {
    this.#check();
    checkModuleName(name, version);
    const sha256 = sha256Hex(bytes);
    const key = `${name}@${version}`;
    const existing = this.#modules.get(key);
    if (existing) return structuredClone(checkModuleReupload(existing, sha256));
    if (!this.#blobs.has(sha256)) this.#blobs.set(sha256, new Uint8Array(bytes));
    const record: ModuleRecord = { name, version, sha256, size: bytes.length, uploadedBy, uploadedAt: isoNow(), ...(metadata ? { metadata: structuredClone(metadata) } : {}) };
    this.#modules.set(key, record);
    return structuredClone(record);
  }

  async getModule(sha256: string): Promise<Uint8Array | undefined> {
    this.#check();
    const bytes = this.#blobs.get(sha256.toLowerCase());
    return bytes && new Uint8Array(bytes);
  }

  async listModules(name?: string): Promise<ModuleRecord[]> {
    this.#check();
    return sortModules([...this.#modules.values()].filter((m) => name === undefined || m.name === name).map((m) => structuredClone(m)));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
  }

  #check(): void {
    if (this.#closed) throw new Error('store is closed');
  }
}
