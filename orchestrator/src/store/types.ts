// The one store interface (Galley's ingestion layer): config resources and filter modules. The
// embedded SQLite store and the etcd store implement it; the REST API writes through it and the
// distribution layer watches it.

export const RESOURCE_KINDS = ['ServiceEntry', 'WorkloadEntry', 'VirtualService', 'DestinationRule', 'WasmPlugin', 'PeerAuthentication', 'AuthorizationPolicy', 'RequestAuthentication', 'RateLimitPolicy', 'Gateway', 'TLSSecret', 'Telemetry', 'MeshConfig'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

export interface ResourceMetadata {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Opaque to clients; changes on every write. A write carrying a stale one gets a conflict. */
  resourceVersion: string;
  /** Increments when spec changes. */
  generation: number;
  creationTimestamp: string;
}

export interface Resource {
  apiVersion: string;
  kind: ResourceKind;
  metadata: ResourceMetadata;
  spec: Record<string, unknown>;
}

/** What a client sends: metadata.resourceVersion optional (required to match when given). */
export interface ResourceInput {
  apiVersion: string;
  kind: ResourceKind;
  metadata: Omit<Partial<ResourceMetadata>, 'name'> & { name: string };
  spec: Record<string, unknown>;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  resource: Resource;
  /** The store revision after this event. */
  revision: number;
}

import type { ModuleMetadata } from '../../../wasm/src/producers.ts';

export interface ModuleRecord {
  name: string;
  version: string;
  /** sha256 of the bytes, hex: modules are content-addressed. */
  sha256: string;
  size: number;
  uploadedBy: string;
  uploadedAt: string;
  /**
   * How the module was made (core module or component; language, compilers, SDK; a component's
   * world), read when it was uploaded. Absent for versions uploaded before wasmesh recorded it.
   */
  metadata?: ModuleMetadata;
}

export class ConflictError extends Error {
  readonly code = 'WASMESH_ORCH_CONFLICT';
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

export interface ConfigStore {
  get(kind: ResourceKind, namespace: string, name: string): Promise<Resource | undefined>;
  list(kind?: ResourceKind, namespace?: string): Promise<Resource[]>;
  /** Creates or updates; with metadata.resourceVersion set, it must match the stored one (else ConflictError). */
  put(input: ResourceInput): Promise<Resource>;
  /** All or nothing: every resource is written, or none (a conflict in one rejects all). */
  putAll(inputs: readonly ResourceInput[]): Promise<Resource[]>;
  delete(kind: ResourceKind, namespace: string, name: string, resourceVersion?: string): Promise<Resource | undefined>;
  /** The current revision: increases with every write. */
  revision(): Promise<number>;
  /** Every change after the call, in order, across replicas for shared stores. Returns a stop function. */
  watch(listener: (event: WatchEvent) => void): () => void;

  /** Stores name@version (immutable: the same bytes again return the existing record). `metadata` is kept with a new version. */
  putModule(name: string, version: string, bytes: Uint8Array, uploadedBy: string, metadata?: ModuleMetadata): Promise<ModuleRecord>;
  getModule(sha256: string): Promise<Uint8Array | undefined>;
  listModules(name?: string): Promise<ModuleRecord[]>;

  close(): Promise<void>;
}
