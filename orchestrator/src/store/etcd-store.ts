// The replicated ConfigStore: etcd (through the etcd3 client). Several orchestrator replicas share
// one etcd and watch it, so a write through any replica reaches every replica's watchers.
//
// Keys, under a prefix (default /wasmesh/):
//   resources/<kind>/<namespace>/<name>   resource JSON (resourceVersion left empty: it is the
//                                         key's etcd mod revision, filled in on read)
//   modules/versions/<name>/<version>     ModuleRecord JSON
//   modules/blobs/<sha256>                {size, chunks}: written after every chunk
//   modules/chunks/<sha256>/<000000>      module bytes in 1 MiB chunks (etcd's default request
//                                         limit is 1.5 MiB; modules may be 64 MiB)
//
// Writes are etcd transactions comparing each key's mod revision with the one read (0 for "does not
// exist"): a client's stale resourceVersion is a ConflictError; losing a race with another writer
// that the client did not know about is retried after a fresh read. putAll is one transaction (so
// one revision for all resources; etcd's --max-txn-ops, 128 by default, bounds its size).
//
// Store revision = etcd's cluster revision, which also counts module writes: it only increases.

import { Etcd3, type IOptions, type Watcher } from 'etcd3';
import {
  checkBatch,
  checkDelete,
  checkModuleName,
  checkModuleReupload,
  dispatch,
  isoNow,
  namespaceOfInput,
  nextResource,
  resourceKey,
  sha256Hex,
  sortModules,
  withVersion,
} from './common.ts';
import type { ModuleMetadata } from '../../../wasm/src/producers.ts';
import { ConflictError, type ConfigStore, type ModuleRecord, type Resource, type ResourceInput, type ResourceKind, type WatchEvent } from './types.ts';

const CHUNK_BYTES = 1024 * 1024;
const MAX_ATTEMPTS = 10;
const DEFAULT_PREFIX = '/wasmesh/';

export interface EtcdStoreOptions {
  /** etcd client URLs, e.g. ["http://127.0.0.1:2379"]. */
  hosts: string[];
  /** Key prefix; default /wasmesh/. Stores with different prefixes on one etcd are independent. */
  prefix?: string;
  /** Milliseconds to wait for the first connection; default 5000. */
  dialTimeout?: number;
}

/**
 * Parses `etcd://host:port[,host:port...][/prefix]` (the orchestrator's --store flag). The prefix
 * defaults to /wasmesh/.
 */
export function parseEtcdUrl(url: string): EtcdStoreOptions {
  const m = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (!m) throw new Error(`invalid etcd store url ${JSON.stringify(url)}: expected etcd://host:port[,host:port...][/prefix]`);
  const hosts = m[1]!.split(',').map((h) => {
    if (!/^[^:\s]+:\d+$/.test(h) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(h)) throw new Error(`invalid etcd endpoint ${JSON.stringify(h)} in ${url}: expected host:port`);
    return `http://${h}`;
  });
  const path = m[2];
  return { hosts, ...(path && path !== '/' ? { prefix: path.endsWith('/') ? path : `${path}/` } : {}) };
}

interface Kv {
  key: Buffer;
  value: Buffer;
  mod_revision: string;
  version: string;
}

export class EtcdStore implements ConfigStore {
  readonly prefix: string;
  readonly #client: Etcd3;
  readonly #listeners = new Map<(event: WatchEvent) => void, number>();
  #watcher: Watcher | undefined;
  /** The highest revision this replica knows has happened (own writes, watch events, reads). */
  #seen = 0;
  #closed = false;

  private constructor(client: Etcd3, prefix: string) {
    this.#client = client;
    this.prefix = prefix;
  }

  /** Connects, and starts the one etcd watch that feeds every listener of this store. */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const clientOptions: IOptions = {
      hosts: options.hosts,
      dialTimeout: options.dialTimeout ?? 5000,
      grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 64 * 1024 * 1024 },
    };
    const client = new Etcd3(clientOptions);
    const store = new EtcdStore(client, options.prefix ?? DEFAULT_PREFIX);
    try {
      const start = await store.revision();
      store.#seen = start;
      const watcher = await client
        .watch()
        .prefix(`${store.prefix}resources/`)
        .withPreviousKV()
        .startRevision(String(start + 1))
        .create();
      watcher.on('data', (res) => store.#onWatch(res.events as unknown as { type: string; kv: Kv; prev_kv?: Kv }[]));
      // The client reconnects and resumes the watch by itself; errors here are informational.
      watcher.on('error', (err) => process.emitWarning(`wasmesh etcd store: watch error: ${err.message}`));
      store.#watcher = watcher;
    } catch (err) {
      client.close();
      throw new Error(`cannot connect to etcd at ${options.hosts.join(', ')}: ${(err as Error).message}`, { cause: err });
    }
    return store;
  }

  async get(kind: ResourceKind, namespace: string, name: string): Promise<Resource | undefined> {
    this.#check();
    const res = await this.#client.get(this.#resourceKey(kind, namespace, name)).exec();
    this.#see(Number(res.header.revision));
    const kv = res.kvs[0] as Kv | undefined;
    return kv ? this.#decode(kv) : undefined;
  }

  async list(kind?: ResourceKind, namespace?: string): Promise<Resource[]> {
    this.#check();
    const prefix = kind === undefined ? `${this.prefix}resources/` : `${this.prefix}resources/${kind}/${namespace === undefined ? '' : `${namespace}/`}`;
    const res = await this.#client.getAll().prefix(prefix).sort('Key', 'Ascend').exec();
    this.#see(Number(res.header.revision));
    const out = (res.kvs as Kv[]).map((kv) => this.#decode(kv));
    return namespace === undefined || kind !== undefined ? out : out.filter((r) => r.metadata.namespace === namespace);
  }

  async put(input: ResourceInput): Promise<Resource> {
    return (await this.putAll([input]))[0]!;
  }

  async putAll(inputs: readonly ResourceInput[]): Promise<Resource[]> {
    this.#check();
    checkBatch(inputs);
    const keys = inputs.map((i) => this.#resourceKey(i.kind, namespaceOfInput(i), i.metadata.name));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const reads = await Promise.all(keys.map((k) => this.#client.get(k).exec()));
      const previous = reads.map((r) => r.kvs[0] as Kv | undefined);
      // Throws ConflictError for a stale resourceVersion the client sent, before anything is written.
      const planned = inputs.map((input, i) => nextResource(input, previous[i] && this.#decode(previous[i]!)));
      if (planned.every((p) => p.unchanged)) return planned.map((p) => p.resource);
      const changed = planned.map((p, i) => ({ ...p, i })).filter((p) => !p.unchanged);
      const [first, ...rest] = changed;
      let txn = this.#client.if(keys[first!.i]!, 'Mod', '==', modRevision(previous[first!.i]));
      for (const c of rest) txn = txn.and(keys[c.i]!, 'Mod', '==', modRevision(previous[c.i]));
      const res = await txn.then(...changed.map((c) => this.#client.put(keys[c.i]!).value(encode(c.resource)))).commit();
      if (!res.succeeded) continue; // someone else wrote one of the keys: read again
      const revision = Number(res.header.revision);
      this.#see(revision);
      return planned.map((p) => (p.unchanged ? p.resource : withVersion(p.resource, revision)));
    }
    throw new ConflictError(`could not write after ${MAX_ATTEMPTS} attempts: the resources keep changing concurrently`);
  }

  async delete(kind: ResourceKind, namespace: string, name: string, resourceVersion?: string): Promise<Resource | undefined> {
    this.#check();
    const key = this.#resourceKey(kind, namespace, name);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const read = await this.#client.get(key).exec();
      const kv = read.kvs[0] as Kv | undefined;
      if (!kv) return undefined;
      const existing = this.#decode(kv);
      checkDelete(existing, resourceVersion);
      const res = await this.#client.if(key, 'Mod', '==', kv.mod_revision).then(this.#client.delete().key(key)).commit();
      if (!res.succeeded) continue;
      const revision = Number(res.header.revision);
      this.#see(revision);
      return withVersion(existing, revision);
    }
    throw new ConflictError(`could not delete ${kind} ${namespace}/${name} after ${MAX_ATTEMPTS} attempts: it keeps changing concurrently`);
  }

  async revision(): Promise<number> {
    this.#check();
    const res = await this.#client.get(`${this.prefix}revision`).exec();
    const revision = Number(res.header.revision);
    this.#see(revision);
    return revision;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.#check();
    // Wrapped so that the same function can be registered twice; events up to #seen happened
    // before this call and are not delivered to it.
    const entry = (event: WatchEvent): void => listener(event);
    this.#listeners.set(entry, this.#seen);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  async putModule(name: string, version: string, bytes: Uint8Array, uploadedBy: string, metadata?: ModuleMetadata): Promise<ModuleRecord> {
    this.#check();
    checkModuleName(name, version);
    const sha256 = sha256Hex(bytes);
    const versionKey = `${this.prefix}modules/versions/${name}/${version}`;
    const existing = await this.#client.get(versionKey).string();
    if (existing !== null) return checkModuleReupload(JSON.parse(existing) as ModuleRecord, sha256);

    const blobKey = `${this.prefix}modules/blobs/${sha256}`;
    if (!(await this.#client.get(blobKey).exists())) {
      // Chunks first, the manifest last: a blob is visible only once complete. A crash in between
      // leaves chunks that the next upload of the same bytes overwrites.
      const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
      for (let i = 0; i < chunks; i++) {
        const chunk = bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES);
        await this.#client.put(this.#chunkKey(sha256, i)).value(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      }
      await this.#client.put(blobKey).value(JSON.stringify({ size: bytes.length, chunks }));
    }
    const record: ModuleRecord = { name, version, sha256, size: bytes.length, uploadedBy, uploadedAt: isoNow(), ...(metadata ? { metadata } : {}) };
    const res = await this.#client.if(versionKey, 'Create', '==', 0).then(this.#client.put(versionKey).value(JSON.stringify(record))).commit();
    if (!res.succeeded) {
      const now = await this.#client.get(versionKey).string();
      if (now === null) throw new ConflictError(`module ${name}@${version} is being uploaded concurrently; retry`);
      return checkModuleReupload(JSON.parse(now) as ModuleRecord, sha256);
    }
    this.#see(Number(res.header.revision));
    return record;
  }

  async getModule(sha256: string): Promise<Uint8Array | undefined> {
    this.#check();
    const digest = sha256.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(digest)) return undefined;
    const manifest = await this.#client.get(`${this.prefix}modules/blobs/${digest}`).string();
    if (manifest === null) return undefined;
    const { size, chunks } = JSON.parse(manifest) as { size: number; chunks: number };
    const out = new Uint8Array(size);
    let offset = 0;
    // One chunk per request keeps every response under gRPC's message limits.
    for (let i = 0; i < chunks; i++) {
      const chunk = await this.#client.get(this.#chunkKey(digest, i)).buffer();
      if (chunk === null) throw new Error(`module ${digest}: chunk ${i} of ${chunks} is missing in etcd`);
      out.set(chunk, offset);
      offset += chunk.length;
    }
    if (offset !== size || sha256Hex(out) !== digest) throw new Error(`module ${digest}: stored bytes do not match their sha256`);
    return out;
  }

  async listModules(name?: string): Promise<ModuleRecord[]> {
    this.#check();
    const values = await this.#client
      .getAll()
      .prefix(`${this.prefix}modules/versions/${name === undefined ? '' : `${name}/`}`)
      .strings();
    return sortModules(Object.values(values).map((v) => JSON.parse(v) as ModuleRecord));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    try {
      await this.#watcher?.cancel();
    } catch {
      // the connection may already be gone
    }
    this.#client.close();
  }

  #onWatch(events: { type: string; kv: Kv; prev_kv?: Kv }[]): void {
    for (const ev of events) {
      const revision = Number(ev.kv.mod_revision);
      let event: WatchEvent | undefined;
      if (ev.type === 'Put') {
        event = { type: ev.kv.version === '1' ? 'ADDED' : 'MODIFIED', resource: this.#decode(ev.kv), revision };
      } else if (ev.type === 'Delete') {
        const last = ev.prev_kv ? this.#decode(ev.prev_kv) : this.#fromKey(ev.kv.key);
        if (last) event = { type: 'DELETED', resource: withVersion(last, revision), revision };
      }
      if (event) {
        for (const [listener, from] of this.#listeners) {
          if (revision > from) dispatch([listener], structuredClone(event));
        }
      }
      this.#see(revision);
    }
  }

  #see(revision: number): void {
    if (revision > this.#seen) this.#seen = revision;
  }

  #decode(kv: Kv): Resource {
    return withVersion(JSON.parse(kv.value.toString('utf8')) as Resource, Number(kv.mod_revision));
  }

  /** The identity of a deleted resource whose last value etcd no longer has (compacted). */
  #fromKey(key: Buffer): Resource | undefined {
    const parts = key.toString('utf8').slice(`${this.prefix}resources/`.length).split('/');
    if (parts.length !== 3) return undefined;
    const [kind, namespace, name] = parts as [ResourceKind, string, string];
    return { apiVersion: '', kind, metadata: { name, namespace, resourceVersion: '', generation: 0, creationTimestamp: '' }, spec: {} };
  }

  #resourceKey(kind: string, namespace: string, name: string): string {
    return `${this.prefix}resources/${resourceKey(kind, namespace, name)}`;
  }

  #chunkKey(sha256: string, index: number): string {
    return `${this.prefix}modules/chunks/${sha256}/${String(index).padStart(6, '0')}`;
  }

  #check(): void {
    if (this.#closed) throw new Error('store is closed');
  }
}

function modRevision(kv: Kv | undefined): string {
  return kv ? kv.mod_revision : '0';
}

function encode(resource: Resource): string {
  return JSON.stringify({ ...resource, metadata: { ...resource.metadata, resourceVersion: '' } });
}
