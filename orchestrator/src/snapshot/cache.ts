// The per-proxy snapshot cache (go-control-plane's SnapshotCache, fed the way Istio's push queue is):
// one immutable snapshot per connected workload identity, recomputed from the store when it changes
// (debounced: 100 ms quiet period, at most 1 s), and handed to the workload's watchers only when its
// content version changed. Streams never compute config; they serve what this cache holds.
//
// Ingestion is deliberately simple and replica-safe: a watch event only marks the world dirty; the
// debounced flush re-reads the whole store (list + module digests), diffs it against the previous
// read, and recomputes only the connected workloads the changed resources can affect (scope.ts;
// when unsure, it recomputes). Diffing whole reads rather than trusting watch events means a
// missed or coalesced event cannot leave a workload stale. A change of the module set, an
// invalidate(), and workloads whose last recompute failed or left something out always recompute. Proxies with equal
// identities share one snapshot; pushes are limited to changed versions.

import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';
import type { ConfigDocument } from '../../../mesh/src/documents.ts';
import type { ConfigStore } from '../store/types.ts';
import { Debouncer } from './debounce.ts';
import { BuiltinModules } from './builtin-modules.ts';
import { changeScope, indexResources, type ResourceIndex } from './scope.ts';
import { buildSnapshot, managedDocuments, workloadKey, type ConfigProblem, type ProxySnapshot } from './snapshot.ts';

export type SnapshotListener = (snapshot: ProxySnapshot) => void;

export interface SnapshotCacheOptions {
  readonly store: ConfigStore;
  /** Quiet period before a recompute (default 100 ms). */
  readonly debounceMs?: number;
  /** Longest a change waits for a recompute (default 1000 ms). */
  readonly maxDelayMs?: number;
  /** While some workload's config is inconsistent (a module not uploaded yet), re-read this often (default 2000 ms). */
  readonly retryMs?: number;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** The mesh's built-in filter modules (default: this checkout's filters/). */
  readonly builtins?: BuiltinModules;
  /** The built-in telemetry filter on both sides (default true). */
  readonly telemetry?: boolean;
}

/** What the cache knows about one workload, for status and debugging. */
export interface NodeState {
  readonly workload: WorkloadIdentity;
  readonly version: string | undefined;
  /** Why the latest recompute was not set (the previous snapshot, if any, stays). */
  readonly errors: readonly string[];
  /** What the latest recompute could not carry as written: left out or stood in for (see buildSnapshot). */
  readonly problems: readonly ConfigProblem[];
  readonly updatedAt: string | undefined;
  readonly watchers: number;
}

interface Node {
  readonly workload: WorkloadIdentity;
  snapshot: ProxySnapshot | undefined;
  errors: string[];
  problems: readonly ConfigProblem[];
  updatedAt: string | undefined;
  readonly listeners: Set<SnapshotListener>;
}

interface World {
  readonly documents: readonly ConfigDocument[];
  readonly modules: ReadonlySet<string>;
  readonly index: ResourceIndex;
}

/** Work done by the cache, cumulative. */
export interface CacheStats {
  /** Store re-reads (debounced flushes) that completed. */
  readonly flushes: number;
  /** Workload translations run (a new watcher's first one included). */
  readonly recomputes: number;
  /** Workload translations skipped because no change of the flush could affect them. */
  readonly skipped: number;
  /** Snapshots of a new version handed to watchers. */
  readonly updates: number;
  /** The latest flush: when it began (epoch ms), how long the store read and the recomputes (including handing snapshots to watchers) took. */
  readonly lastFlush?: { readonly startedAt: number; readonly readMs: number; readonly recomputeMs: number; readonly recomputed: number };
}

export class SnapshotCache {
  readonly #store: ConfigStore;
  readonly #log: NonNullable<SnapshotCacheOptions['log']>;
  readonly #retryMs: number;
  readonly #debouncer: Debouncer;
  readonly #nodes = new Map<string, Node>();
  readonly builtins: BuiltinModules;
  readonly #telemetry: boolean | undefined;
  #world: World = { documents: [], modules: new Set(), index: new Map() };
  /** The next flush recomputes every workload (invalidate()). */
  #everything = false;
  #stats: { flushes: number; recomputes: number; skipped: number; updates: number; lastFlush?: CacheStats['lastFlush'] } = { flushes: 0, recomputes: 0, skipped: 0, updates: 0 };
  #stopWatch: (() => void) | undefined;
  #retry: NodeJS.Timeout | undefined;
  #started = false;
  #stopped = false;
  #readFailed = false;

  constructor(options: SnapshotCacheOptions) {
    this.#store = options.store;
    this.#retryMs = options.retryMs ?? 2000;
    this.#log = options.log ?? (() => {});
    this.builtins = options.builtins ?? new BuiltinModules();
    this.#telemetry = options.telemetry;
    this.#debouncer = new Debouncer(() => this.#flush(), { quietMs: options.debounceMs ?? 100, maxMs: options.maxDelayMs ?? 1000 });
  }

  /** Reads the store and starts watching it. Call once, before watch(). Rejects if the store cannot be read. */
  async start(): Promise<void> {
    if (this.#started) throw new Error('SnapshotCache already started');
    this.#started = true;
    // Watch first, so that a change made while the first read runs is not missed (it re-reads).
    this.#stopWatch = this.#store.watch(() => this.#debouncer.trigger());
    this.#world = await this.#read();
  }

  /**
   * Registers a watcher for a workload's snapshot. The listener gets the current snapshot (if the
   * workload's config is consistent) on the next tick, then every new version. Returns the cancel
   * function; the workload is forgotten when its last watcher cancels.
   */
  watch(workload: WorkloadIdentity, listener: SnapshotListener): () => void {
    const key = workloadKey(workload);
    let node = this.#nodes.get(key);
    if (node === undefined) {
      node = { workload, snapshot: undefined, errors: [], problems: [], updatedAt: undefined, listeners: new Set() };
      this.#nodes.set(key, node);
      this.#recompute(node, this.#world);
    }
    const n = node;
    n.listeners.add(listener);
    queueMicrotask(() => {
      if (n.listeners.has(listener) && n.snapshot) listener(n.snapshot);
    });
    return () => {
      n.listeners.delete(listener);
      if (n.listeners.size === 0 && this.#nodes.get(key) === n) this.#nodes.delete(key);
    };
  }

  /** The current snapshot of a workload, if it is watched and consistent. */
  get(workload: WorkloadIdentity): ProxySnapshot | undefined {
    return this.#nodes.get(workloadKey(workload))?.snapshot;
  }

  /** Every watched workload. */
  nodes(): NodeState[] {
    return [...this.#nodes.values()].map((n) => ({
      workload: n.workload,
      version: n.snapshot?.version,
      errors: [...n.errors],
      problems: [...n.problems],
      updatedAt: n.updatedAt,
      watchers: n.listeners.size,
    }));
  }

  /** Why a watched workload's latest config could not be built, and what it could not carry; undefined when not watched. */
  state(workload: WorkloadIdentity): { errors: readonly string[]; problems: readonly ConfigProblem[] } | undefined {
    const n = this.#nodes.get(workloadKey(workload));
    return n && { errors: n.errors, problems: n.problems };
  }

  /** Schedules a re-read (debounced), for changes the store's watch does not report (module uploads). */
  invalidate(): void {
    this.#everything = true;
    this.#debouncer.trigger();
  }

  stats(): CacheStats {
    return { ...this.#stats };
  }

  /** Resolves once no recompute is pending (for tests and benchmarks). */
  settled(): Promise<void> {
    return this.#debouncer.idle();
  }

  stop(): void {
    this.#stopped = true;
    this.#stopWatch?.();
    this.#debouncer.stop();
    if (this.#retry) clearTimeout(this.#retry);
  }

  async #read(): Promise<World> {
    const [resources, modules] = await Promise.all([this.#store.list(), this.#store.listModules()]);
    return { documents: managedDocuments(resources, modules), modules: new Set(modules.map((m) => m.sha256.toLowerCase())), index: indexResources(resources) };
  }

  async #flush(): Promise<void> {
    if (this.#stopped) return;
    const startedAt = Date.now();
    const t0 = performance.now();
    let world: World;
    try {
      world = await this.#read();
    } catch (err) {
      this.#log('error', `reading the store failed, keeping the current snapshots: ${messageOf(err)}`);
      this.#readFailed = true;
      this.#scheduleRetry();
      return;
    }
    if (this.#stopped) return;
    this.#readFailed = false;
    const previous = this.#world;
    this.#world = world;
    this.#stats.flushes++;
    const everything = this.#everything || !sameSet(previous.modules, world.modules);
    this.#everything = false;
    const t1 = performance.now();
    const { affects } = everything ? { affects: () => true } : changeScope(previous.index, world.index);
    let recomputed = 0;
    for (const node of [...this.#nodes.values()]) {
      if (node.errors.length > 0 || node.problems.length > 0 || node.snapshot === undefined || affects(node.workload)) {
        recomputed++;
        this.#recompute(node, world);
      } else this.#stats.skipped++;
    }
    this.#stats.lastFlush = { startedAt, readMs: t1 - t0, recomputeMs: performance.now() - t1, recomputed };
  }

  /** Builds a node's snapshot; sets it (and notifies) only when it could be built and is of a new version. */
  #recompute(node: Node, world: World): void {
    this.#stats.recomputes++;
    const result = buildSnapshot(world.documents, node.workload, { stored: world.modules, builtins: this.builtins }, { telemetry: this.#telemetry });
    const name = `${node.workload.namespace}/${node.workload.name}`;
    const problems = result.problems.map((p) => `${p.resource}${p.path ? ` ${p.path}` : ''}: ${p.message}`).join('; ');
    if (problems !== node.problems.map((p) => `${p.resource}${p.path ? ` ${p.path}` : ''}: ${p.message}`).join('; ') && problems !== '') {
      this.#log('warn', `config for ${name} cannot carry everything as written: ${problems}`);
    }
    node.problems = result.problems;
    // Left-out resources may become servable without a resource change (a module uploaded through
    // another replica): look again, as for inconsistent configs.
    if (result.problems.length > 0) this.#scheduleRetry();
    if (!result.ok) {
      const changed = result.errors.join('\n') !== node.errors.join('\n');
      node.errors = result.errors;
      if (changed) {
        const keeping = node.snapshot ? `keeping ${node.snapshot.version.slice(0, 12)}` : 'no config to send yet';
        this.#log('warn', `config for ${name} cannot be built, ${keeping}: ${result.errors.join('; ')}`);
      }
      this.#scheduleRetry();
      return;
    }
    node.errors = [];
    if (node.snapshot?.version === result.snapshot.version) return;
    node.snapshot = result.snapshot;
    node.updatedAt = new Date().toISOString();
    this.#stats.updates++;
    for (const listener of [...node.listeners]) {
      try {
        listener(result.snapshot);
      } catch (err) {
        this.#log('error', `snapshot watcher for ${name} failed: ${messageOf(err)}`);
      }
    }
  }

  #scheduleRetry(): void {
    if (this.#retry || this.#stopped) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      if (this.#readFailed || [...this.#nodes.values()].some((n) => n.errors.length > 0 || n.problems.length > 0)) this.#debouncer.trigger();
    }, this.#retryMs);
    this.#retry.unref();
  }
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
