// The embedded ConfigStore: one SQLite file under the data dir (better-sqlite3).
//
// Durability: WAL journal with synchronous = FULL, so a write is on disk (WAL fsynced) before put()
// resolves; nothing acknowledged is lost on kill -9 or power loss. Every write runs in one
// IMMEDIATE transaction that also bumps the store revision, so putAll is all or nothing.
//
// Watch is in-process: listeners are called after the transaction commits. Another process
// writing the same file is not seen (run one orchestrator per SQLite file; use etcd to replicate).
//
// Modules are content-addressed: module_blobs holds each distinct byte string once, keyed by
// sha256; module_versions maps name@version to a digest.

import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  checkBatch,
  checkDelete,
  checkModuleName,
  checkModuleReupload,
  dispatch,
  isoNow,
  namespaceOfInput,
  nextResource,
  sha256Hex,
  withVersion,
} from './common.ts';
import type { ModuleMetadata } from '../../../wasm/src/producers.ts';
import type { ConfigStore, ModuleRecord, Resource, ResourceInput, ResourceKind, WatchEvent } from './types.ts';

export const SQLITE_FILE = 'store.db';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS resources (
  kind TEXT NOT NULL,
  namespace TEXT NOT NULL,
  name TEXT NOT NULL,
  revision INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS module_blobs (
  sha256 TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS module_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL REFERENCES module_blobs (sha256),
  uploaded_by TEXT NOT NULL,
  uploaded_at TEXT NOT NULL,
  metadata TEXT,
  PRIMARY KEY (name, version)
) WITHOUT ROWID;
`;

interface ModuleRow {
  name: string;
  version: string;
  sha256: string;
  size: number;
  uploaded_by: string;
  uploaded_at: string;
  metadata: string | null;
}

export interface SqliteStoreOptions {
  /** Directory holding the database file (created if missing). */
  dataDir: string;
  /** File name inside dataDir; default store.db. */
  file?: string;
}

export class SqliteStore implements ConfigStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #listeners = new Set<(event: WatchEvent) => void>();
  readonly #stmt;
  #closed = false;

  constructor(options: SqliteStoreOptions) {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    this.path = join(options.dataDir, options.file ?? SQLITE_FILE);
    const db = new Database(this.path);
    this.#db = db;
    // Owner only: TLSSecrets (private keys) live here. SQLite gives the -wal and -shm files the
    // database file's mode.
    chmodSync(this.path, 0o600);
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      db.exec(SCHEMA);
      // Databases written before module metadata was recorded get the column (NULL: not recorded).
      const columns = db.prepare<[], { name: string }>('PRAGMA table_info(module_versions)').all();
      if (!columns.some((c) => c.name === 'metadata')) db.exec('ALTER TABLE module_versions ADD COLUMN metadata TEXT');
    } catch (err) {
      db.close();
      throw err;
    }
    this.#stmt = {
      revision: db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'revision'"),
      bump: db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'revision'"),
      get: db.prepare<[string, string, string], { body: string }>('SELECT body FROM resources WHERE kind = ? AND namespace = ? AND name = ?'),
      listAll: db.prepare<[], { body: string }>('SELECT body FROM resources ORDER BY kind, namespace, name'),
      listKind: db.prepare<[string], { body: string }>('SELECT body FROM resources WHERE kind = ? ORDER BY namespace, name'),
      listNamespace: db.prepare<[string], { body: string }>('SELECT body FROM resources WHERE namespace = ? ORDER BY kind, name'),
      listKindNamespace: db.prepare<[string, string], { body: string }>('SELECT body FROM resources WHERE kind = ? AND namespace = ? ORDER BY name'),
      upsert: db.prepare(
        'INSERT INTO resources (kind, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?) ' +
          'ON CONFLICT (kind, namespace, name) DO UPDATE SET revision = excluded.revision, body = excluded.body',
      ),
      delete: db.prepare('DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?'),
      blobExists: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM module_blobs WHERE sha256 = ?'),
      blobInsert: db.prepare('INSERT INTO module_blobs (sha256, size, bytes) VALUES (?, ?, ?)'),
      blobGet: db.prepare<[string], { bytes: Buffer }>('SELECT bytes FROM module_blobs WHERE sha256 = ?'),
      moduleGet: db.prepare<[string, string], ModuleRow>(
        'SELECT v.name, v.version, v.sha256, b.size, v.uploaded_by, v.uploaded_at, v.metadata FROM module_versions v JOIN module_blobs b USING (sha256) WHERE v.name = ? AND v.version = ?',
      ),
      moduleInsert: db.prepare('INSERT INTO module_versions (name, version, sha256, uploaded_by, uploaded_at, metadata) VALUES (?, ?, ?, ?, ?, ?)'),
      modulesAll: db.prepare<[], ModuleRow>(
        'SELECT v.name, v.version, v.sha256, b.size, v.uploaded_by, v.uploaded_at, v.metadata FROM module_versions v JOIN module_blobs b USING (sha256) ORDER BY v.name, v.uploaded_at, v.version',
      ),
      modulesByName: db.prepare<[string], ModuleRow>(
        'SELECT v.name, v.version, v.sha256, b.size, v.uploaded_by, v.uploaded_at, v.metadata FROM module_versions v JOIN module_blobs b USING (sha256) WHERE v.name = ? ORDER BY v.uploaded_at, v.version',
      ),
    };
  }

  async get(kind: ResourceKind, namespace: string, name: string): Promise<Resource | undefined> {
    this.#check();
    return this.#get(kind, namespace, name);
  }

  async list(kind?: ResourceKind, namespace?: string): Promise<Resource[]> {
    this.#check();
    const s = this.#stmt;
    const rows =
      kind !== undefined && namespace !== undefined
        ? s.listKindNamespace.all(kind, namespace)
        : kind !== undefined
          ? s.listKind.all(kind)
          : namespace !== undefined
            ? s.listNamespace.all(namespace)
            : s.listAll.all();
    return rows.map((r) => JSON.parse(r.body) as Resource);
  }

  async put(input: ResourceInput): Promise<Resource> {
    return (await this.putAll([input]))[0]!;
  }

  async putAll(inputs: readonly ResourceInput[]): Promise<Resource[]> {
    this.#check();
    checkBatch(inputs);
    const events: WatchEvent[] = [];
    const write = this.#db.transaction((): Resource[] => {
      const previous = inputs.map((input) => this.#get(input.kind, namespaceOfInput(input), input.metadata.name));
      const planned = inputs.map((input, i) => nextResource(input, previous[i]));
      if (planned.every((p) => p.unchanged)) return planned.map((p) => p.resource);
      this.#stmt.bump.run();
      const revision = this.#stmt.revision.get()!.value;
      return planned.map(({ resource, unchanged }, i) => {
        if (unchanged) return resource;
        const stored = withVersion(resource, revision);
        const m = stored.metadata;
        this.#stmt.upsert.run(stored.kind, m.namespace, m.name, revision, JSON.stringify(stored));
        events.push({ type: previous[i] ? 'MODIFIED' : 'ADDED', resource: stored, revision });
        return stored;
      });
    });
    // IMMEDIATE: take the write lock up front, so the reads above see what the write replaces.
    const results = write.immediate();
    for (const event of events) dispatch(this.#listeners, structuredClone(event));
    return results;
  }

  async delete(kind: ResourceKind, namespace: string, name: string, resourceVersion?: string): Promise<Resource | undefined> {
    this.#check();
    const remove = this.#db.transaction((): { deleted: Resource; revision: number } | undefined => {
      const existing = this.#get(kind, namespace, name);
      if (!existing) return undefined;
      checkDelete(existing, resourceVersion);
      this.#stmt.delete.run(kind, namespace, name);
      this.#stmt.bump.run();
      const revision = this.#stmt.revision.get()!.value;
      return { deleted: withVersion(existing, revision), revision };
    });
    const result = remove.immediate();
    if (!result) return undefined;
    dispatch(this.#listeners, { type: 'DELETED', resource: structuredClone(result.deleted), revision: result.revision });
    return result.deleted;
  }

  async revision(): Promise<number> {
    this.#check();
    return this.#stmt.revision.get()!.value;
  }

  watch(listener: (event: WatchEvent) => void): () => void {
    this.#check();
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
    const insert = this.#db.transaction((): ModuleRecord => {
      const existing = this.#stmt.moduleGet.get(name, version);
      if (existing) return checkModuleReupload(toRecord(existing), sha256);
      if (!this.#stmt.blobExists.get(sha256)) this.#stmt.blobInsert.run(sha256, bytes.length, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      const record: ModuleRecord = { name, version, sha256, size: bytes.length, uploadedBy, uploadedAt: isoNow(), ...(metadata ? { metadata } : {}) };
      this.#stmt.moduleInsert.run(name, version, sha256, uploadedBy, record.uploadedAt, metadata ? JSON.stringify(metadata) : null);
      return record;
    });
    return insert.immediate();
  }

  async getModule(sha256: string): Promise<Uint8Array | undefined> {
    this.#check();
    const row = this.#stmt.blobGet.get(sha256.toLowerCase());
    return row ? new Uint8Array(row.bytes) : undefined;
  }

  async listModules(name?: string): Promise<ModuleRecord[]> {
    this.#check();
    const rows = name === undefined ? this.#stmt.modulesAll.all() : this.#stmt.modulesByName.all(name);
    return rows.map(toRecord);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#db.close();
  }

  #get(kind: string, namespace: string, name: string): Resource | undefined {
    const row = this.#stmt.get.get(kind, namespace, name);
    return row ? (JSON.parse(row.body) as Resource) : undefined;
  }

  #check(): void {
    if (this.#closed) throw new Error('store is closed');
  }
}

function toRecord(row: ModuleRow): ModuleRecord {
  return {
    name: row.name, version: row.version, sha256: row.sha256, size: row.size, uploadedBy: row.uploaded_by, uploadedAt: row.uploaded_at,
    ...(row.metadata !== null ? { metadata: JSON.parse(row.metadata) as ModuleMetadata } : {}),
  };
}

