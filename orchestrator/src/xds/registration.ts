// Endpoint auto-registration (Istio's WorkloadEntry auto-registration): a proxy whose subscription
// carries node.endpoint gets a WorkloadEntry in the registry for as long as its stream lives, so
// ServiceEntries whose workloadSelector matches its labels route to it.
//
// Written through the store (not the REST API: no validation, no token), so every replica and
// every proxy sees it. Replica safety rests on one annotation, wasmesh.io/connection: each
// registration writes a fresh connection id into it. When a stream ends, the replica that served
// it waits for the grace period, then deletes the entry only if the annotation still holds that
// stream's id (a reconnect to any replica has rewritten it) and with the resourceVersion it read
// (a write in between makes the delete a conflict, and the entry stays). While a stream lives, a
// deletion of its entry by someone else is undone (the entry is written again).
//
// Limitation: entries of streams still open when a replica shuts down are left in place; the
// proxy's reconnect (to any replica) takes them over, and one that never comes back leaves its
// entry until it is deleted by hand (`wasmesh delete WorkloadEntry auto-...`).

import { createHash, randomBytes } from 'node:crypto';
import { TLS_MODE_LABEL, type WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import type { EndpointMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import { CONNECTION_ANNOTATION } from '../snapshot/scope.ts';
import { ConflictError, type ConfigStore, type Resource, type ResourceInput } from '../store/types.ts';

export const AUTO_REGISTERED_ANNOTATION = 'wasmesh.io/auto-registered';
/** "<replica id>/<connection number>" of the stream that last registered the entry. */
export { CONNECTION_ANNOTATION };
export const DEFAULT_REGISTRATION_GRACE_MS = 10_000;

export interface RegisteredEndpoint {
  readonly address: string;
  readonly ports: Readonly<Record<string, number>>;
}

/** The endpoint of a subscription, or why it is unusable; undefined when the node registers none. */
export function parseEndpoint(message: EndpointMessage | null | undefined): RegisteredEndpoint | undefined | { error: string } {
  if (message === null || message === undefined) return undefined;
  const address = (message.address ?? '').trim();
  if (address === '') return { error: 'node.endpoint.address is required when node.endpoint is set' };
  const ports: Record<string, number> = {};
  for (const [name, raw] of Object.entries(message.ports ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const port = Number(raw);
    if (name === '') return { error: 'node.endpoint.ports: a port name must not be empty' };
    if (!Number.isInteger(port) || port < 1 || port > 65535) return { error: `node.endpoint.ports[${JSON.stringify(name)}]: ${raw} is not a port number (1-65535)` };
    ports[name] = port;
  }
  if (Object.keys(ports).length === 0) return { error: 'node.endpoint.ports: give at least one port (service port name -> port number)' };
  return { address, ports };
}

/** A DNS-1123 label made from a workload name (lowercase letters, digits, "-"). */
function dnsLabel(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 200)
    .replace(/-+$/, '');
  return s || 'workload';
}

/** `auto-<workload>-<hash of address:ports>`: stable across reconnects of the same endpoint. */
export function autoEntryName(workload: Pick<WorkloadIdentity, 'name'>, endpoint: RegisteredEndpoint): string {
  const ports = Object.entries(endpoint.ports)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const hash = createHash('sha256').update(`${endpoint.address}:${ports}`).digest('hex').slice(0, 10);
  return `auto-${dnsLabel(workload.name)}-${hash}`;
}

/**
 * The WorkloadEntry document for a registration (valid per schemas/json/workload-entry.schema.json).
 * It carries Istio's sidecar label security.istio.io/tlsMode=istio, so clients' auto mTLS sends it
 * mTLS, unless the proxy's own labels set the label (a proxy without mTLS says "disabled").
 */
export function autoWorkloadEntry(workload: WorkloadIdentity, endpoint: RegisteredEndpoint, connection: string): ResourceInput {
  return {
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: {
      name: autoEntryName(workload, endpoint),
      namespace: workload.namespace,
      annotations: { [AUTO_REGISTERED_ANNOTATION]: 'true', [CONNECTION_ANNOTATION]: connection },
    },
    spec: {
      address: endpoint.address,
      ports: { ...endpoint.ports },
      labels: { [TLS_MODE_LABEL]: 'istio', ...workload.labels },
      serviceAccount: workload.serviceAccount,
    },
  };
}

type RegistrarLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export interface Registration {
  /** The WorkloadEntry's name. */
  readonly name: string;
  readonly namespace: string;
}

interface Entry {
  readonly namespace: string;
  readonly name: string;
  /** Live streams on this replica holding the entry, by connection id, with the document each wrote. */
  readonly live: Map<string, ResourceInput>;
  /** The connection id whose disconnect is pending deletion. */
  pending?: { connection: string; timer: NodeJS.Timeout };
  /** Store operations on this entry, one after the other. */
  chain: Promise<void>;
}

export class AutoRegistrar {
  readonly #store: ConfigStore;
  readonly #graceMs: number;
  readonly #log: RegistrarLog;
  readonly #replica = randomBytes(4).toString('hex');
  readonly #entries = new Map<string, Entry>();
  #counter = 0;
  #closed = false;
  readonly #stopWatch: () => void;

  constructor(store: ConfigStore, options: { graceMs?: number; log?: RegistrarLog } = {}) {
    this.#store = store;
    this.#graceMs = options.graceMs ?? DEFAULT_REGISTRATION_GRACE_MS;
    this.#log = options.log ?? (() => {});
    // Someone deleted the entry of a live stream (a user, or another replica's stale cleanup): write it again.
    this.#stopWatch = store.watch((event) => {
      if (this.#closed || event.type !== 'DELETED' || event.resource.kind !== 'WorkloadEntry') return;
      const entry = this.#entries.get(keyOf(event.resource.metadata.namespace, event.resource.metadata.name));
      const last = entry && [...entry.live.values()].at(-1);
      if (!entry || !last) return;
      this.#log('info', `auto-registered WorkloadEntry ${entry.namespace}/${entry.name} was deleted while its proxy is connected; registering it again`);
      this.#enqueue(entry, () => this.#put(entry, last));
    });
  }

  /** Registers a connected stream's endpoint; returns the handle to pass to unregister(). */
  register(workload: WorkloadIdentity, endpoint: RegisteredEndpoint): Registration & { connection: string } {
    const name = autoEntryName(workload, endpoint);
    const key = keyOf(workload.namespace, name);
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { namespace: workload.namespace, name, live: new Map(), chain: Promise.resolve() };
      this.#entries.set(key, entry);
    }
    if (entry.pending) {
      clearTimeout(entry.pending.timer);
      entry.pending = undefined;
    }
    const connection = `${this.#replica}/${(++this.#counter).toString(36)}`;
    const doc = autoWorkloadEntry(workload, endpoint, connection);
    entry.live.set(connection, doc);
    const e = entry;
    this.#enqueue(e, () => this.#put(e, doc));
    return { name, namespace: workload.namespace, connection };
  }

  /**
   * The stream ended: delete its entry after the grace period unless it reconnected meanwhile. `leaving`:
   * the proxy closed its stream itself (it is shutting down and draining), so the entry goes at once:
   * other proxies stop sending it new requests while it finishes the ones it has, instead of trying a
   * closed port for the grace period. A stream that just broke (crash, network) keeps the grace.
   */
  unregister(registration: Registration & { connection: string }, leaving = false): void {
    const entry = this.#entries.get(keyOf(registration.namespace, registration.name));
    if (!entry || !entry.live.delete(registration.connection) || this.#closed) return;
    if (entry.live.size > 0) return; // another stream on this replica still holds it
    // The id the store should still hold if nobody re-registered: the latest registration's.
    const connection = registration.connection;
    if (entry.pending) clearTimeout(entry.pending.timer);
    if (leaving) {
      entry.pending = undefined;
      this.#enqueue(entry, () => this.#deleteIfStale(entry, connection, 'its proxy is shutting down'));
      return;
    }
    const timer = setTimeout(() => {
      if (entry.pending?.timer !== timer) return;
      entry.pending = undefined;
      this.#enqueue(entry, () => this.#deleteIfStale(entry, connection));
    }, this.#graceMs);
    timer.unref();
    entry.pending = { connection, timer };
  }

  /** Resolves when every store operation started so far has finished (tests). */
  async idle(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((e) => e.chain));
  }

  /** Stops: pending deletions are dropped (see the limitation above). */
  close(): void {
    this.#closed = true;
    this.#stopWatch();
    for (const e of this.#entries.values()) if (e.pending) clearTimeout(e.pending.timer);
  }

  #enqueue(entry: Entry, op: () => Promise<void>): void {
    entry.chain = entry.chain.then(op).catch((err: unknown) => {
      this.#log('error', `auto-registration of WorkloadEntry ${entry.namespace}/${entry.name} failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }

  async #put(entry: Entry, doc: ResourceInput): Promise<void> {
    if (this.#closed) return;
    await this.#store.put(doc);
    this.#log('info', `registered WorkloadEntry ${entry.namespace}/${entry.name} (${String(doc.spec.address)} ${JSON.stringify(doc.spec.ports)})`);
  }

  async #deleteIfStale(entry: Entry, connection: string, why = `its proxy did not reconnect within ${this.#graceMs} ms`): Promise<void> {
    if (this.#closed || entry.live.size > 0) return;
    const current: Resource | undefined = await this.#store.get('WorkloadEntry', entry.namespace, entry.name);
    if (entry.live.size > 0) return; // re-registered while reading: its put follows in the chain
    if (current === undefined) {
      this.#forget(entry);
      return;
    }
    const holder = current.metadata.annotations?.[CONNECTION_ANNOTATION];
    if (current.metadata.annotations?.[AUTO_REGISTERED_ANNOTATION] !== 'true' || holder !== connection) {
      this.#log('info', `WorkloadEntry ${entry.namespace}/${entry.name} kept: its proxy reconnected (${holder ?? 'not auto-registered'})`);
      this.#forget(entry);
      return;
    }
    try {
      await this.#store.delete('WorkloadEntry', entry.namespace, entry.name, current.metadata.resourceVersion);
      this.#log('info', `unregistered WorkloadEntry ${entry.namespace}/${entry.name}: ${why}`);
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      this.#log('info', `WorkloadEntry ${entry.namespace}/${entry.name} kept: it changed while being removed`);
    }
    this.#forget(entry);
  }

  #forget(entry: Entry): void {
    const key = keyOf(entry.namespace, entry.name);
    if (this.#entries.get(key) === entry && entry.live.size === 0 && !entry.pending) this.#entries.delete(key);
  }
}

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
