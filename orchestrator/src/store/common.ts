// What every ConfigStore backend shares: identity keys, the rules that turn a client's input into
// the stored resource (namespace default, generation, creation time), and module record checks.
// Backends differ only in where bytes live and how a write is made atomic.

import { createHash } from 'node:crypto';
import {
  ConflictError,
  RESOURCE_KINDS,
  type ModuleRecord,
  type Resource,
  type ResourceInput,
  type ResourceKind,
  type ResourceMetadata,
} from './types.ts';

export const DEFAULT_NAMESPACE = 'default';

/** Thrown for input a store cannot hold at all (unknown kind, missing name); the API maps it to 400. */
export class StoreInputError extends Error {
  readonly code = 'WASMESH_ORCH_BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'StoreInputError';
  }
}

export function isResourceKind(value: unknown): value is ResourceKind {
  return typeof value === 'string' && (RESOURCE_KINDS as readonly string[]).includes(value);
}

/** `<kind>/<namespace>/<name>`: unique per resource, and sorts by kind, then namespace, then name. */
export function resourceKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export function keyOf(resource: { kind: string; metadata: { namespace?: string; name: string } }): string {
  return resourceKey(resource.kind, namespaceOfInput(resource), resource.metadata.name);
}

export function namespaceOfInput(resource: { metadata: { namespace?: string } }): string {
  const ns = resource.metadata.namespace;
  return typeof ns === 'string' && ns !== '' ? ns : DEFAULT_NAMESPACE;
}

/** Checks what the store itself relies on (the API validates everything else before writing). */
export function checkInput(input: ResourceInput): void {
  if (!isResourceKind(input.kind)) throw new StoreInputError(`unknown kind ${JSON.stringify(input.kind)}`);
  if (typeof input.metadata?.name !== 'string' || input.metadata.name === '') throw new StoreInputError('metadata.name is required');
  if (input.metadata.namespace !== undefined && typeof input.metadata.namespace !== 'string') {
    throw new StoreInputError('metadata.namespace must be a string');
  }
  if (typeof input.spec !== 'object' || input.spec === null || Array.isArray(input.spec)) throw new StoreInputError('spec must be an object');
}

/** The resourceVersion a client asked to match, if any ("" counts as none). */
export function expectedVersion(input: ResourceInput): string | undefined {
  const rv = input.metadata.resourceVersion;
  return typeof rv === 'string' && rv !== '' ? rv : undefined;
}

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    }
    return v;
  });
}

/**
 * The outcome of writing `input` over `previous`: the resource to store (resourceVersion still to be
 * set by the backend), or `unchanged` when the write would change nothing (no new revision then).
 * Throws ConflictError when the input carries a resourceVersion other than the stored one.
 */
export function nextResource(input: ResourceInput, previous: Resource | undefined, now: () => string = isoNow): { resource: Resource; unchanged: boolean } {
  checkInput(input);
  const expected = expectedVersion(input);
  const label = `${input.kind} ${namespaceOfInput(input)}/${input.metadata.name}`;
  if (expected !== undefined) {
    if (!previous) throw new ConflictError(`${label} does not exist (the write names resourceVersion ${expected})`);
    if (previous.metadata.resourceVersion !== expected) {
      throw new ConflictError(`${label} has changed: resourceVersion is ${previous.metadata.resourceVersion}, not ${expected}; read it again and retry`);
    }
  }
  const spec = structuredClone(input.spec);
  const metadata: ResourceMetadata = {
    name: input.metadata.name,
    namespace: namespaceOfInput(input),
    ...(input.metadata.labels && Object.keys(input.metadata.labels).length > 0 ? { labels: { ...input.metadata.labels } } : {}),
    ...(input.metadata.annotations && Object.keys(input.metadata.annotations).length > 0 ? { annotations: { ...input.metadata.annotations } } : {}),
    resourceVersion: '',
    generation: 1,
    creationTimestamp: previous?.metadata.creationTimestamp ?? now(),
  };
  if (previous) {
    const specChanged = canonicalJson(previous.spec) !== canonicalJson(spec);
    metadata.generation = previous.metadata.generation + (specChanged ? 1 : 0);
    const unchanged =
      !specChanged &&
      previous.apiVersion === input.apiVersion &&
      canonicalJson(previous.metadata.labels ?? {}) === canonicalJson(metadata.labels ?? {}) &&
      canonicalJson(previous.metadata.annotations ?? {}) === canonicalJson(metadata.annotations ?? {});
    if (unchanged) return { resource: previous, unchanged: true };
  }
  return { resource: { apiVersion: input.apiVersion, kind: input.kind, metadata, spec }, unchanged: false };
}

export function withVersion(resource: Resource, revision: number): Resource {
  return { ...resource, metadata: { ...resource.metadata, resourceVersion: String(revision) } };
}

/** Rejects a batch naming one resource twice (which would make "all or nothing" ambiguous). */
export function checkBatch(inputs: readonly ResourceInput[]): void {
  const seen = new Set<string>();
  for (const input of inputs) {
    checkInput(input);
    const key = keyOf(input);
    if (seen.has(key)) throw new StoreInputError(`${key.replace(/\//, ' ')} appears twice in one write`);
    seen.add(key);
  }
}

/** Checks a delete's resourceVersion against the stored resource. */
export function checkDelete(existing: Resource, resourceVersion: string | undefined): void {
  if (resourceVersion !== undefined && resourceVersion !== '' && existing.metadata.resourceVersion !== resourceVersion) {
    throw new ConflictError(
      `${existing.kind} ${existing.metadata.namespace}/${existing.metadata.name} has changed: resourceVersion is ${existing.metadata.resourceVersion}, not ${resourceVersion}`,
    );
  }
}

export function sortResources(resources: Resource[]): Resource[] {
  return resources.sort((a, b) => {
    const ka = keyOf(a);
    const kb = keyOf(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
}

export function isoNow(): string {
  return new Date().toISOString();
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const MODULE_NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;
const MODULE_VERSION = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** Checks a module's name and version (names like resource names; versions like semver or tags). */
export function checkModuleName(name: string, version: string): void {
  if (!MODULE_NAME.test(name)) {
    throw new StoreInputError(`invalid module name ${JSON.stringify(name)}: use lowercase letters, digits, "-" and ".", at most 63 characters`);
  }
  if (!MODULE_VERSION.test(version)) {
    throw new StoreInputError(`invalid module version ${JSON.stringify(version)}: use letters, digits, ".", "_", "+" and "-", at most 64 characters`);
  }
}

/**
 * A module name@version is immutable: uploading the same bytes again returns the existing record,
 * other bytes are a conflict.
 */
export function checkModuleReupload(existing: ModuleRecord, sha256: string): ModuleRecord {
  if (existing.sha256 !== sha256) {
    throw new ConflictError(
      `module ${existing.name}@${existing.version} already exists with sha256 ${existing.sha256}; versions are immutable, upload under a new version`,
    );
  }
  return existing;
}

export function sortModules(records: ModuleRecord[]): ModuleRecord[] {
  return records.sort((a, b) => (a.name !== b.name ? (a.name < b.name ? -1 : 1) : a.uploadedAt < b.uploadedAt ? -1 : a.uploadedAt > b.uploadedAt ? 1 : a.version < b.version ? -1 : 1));
}

/** Calls each listener, never letting one listener's exception reach the writer or the others. */
export function dispatch<E>(listeners: Iterable<(event: E) => void>, event: E): void {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch (err) {
      process.emitWarning(`wasmesh store watch listener threw: ${(err as Error).stack ?? String(err)}`);
    }
  }
}
