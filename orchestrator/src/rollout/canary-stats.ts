// Filter outcomes per module version, as proxies report them (ReportFilterStats): the latest cumulative
// counters of each proxy, when each last reported, and sums over proxies relative to a baseline taken
// when a rollout began.
import type { FilterStatsReport } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';

export interface VersionCounters {
  streams: number;
  failedStreams: number;
  traps: number;
  /** Traps by cause (cpu_budget, memory, ...). */
  trapCauses: Record<string, number>;
  /** The proxy's event-loop stalls since the version was loaded there. */
  stalls: number;
}

export interface VersionTotals extends VersionCounters {
  /** Proxies that reported this version. */
  proxies: number;
  /** Proxies on which the version is marked bad (failed repeatedly). */
  badOn: string[];
  /** Proxies whose event loop stalled while they ran this version, and how often. */
  stalledOn: Array<{ node: string; stalls: number }>;
}

interface Latest extends VersionCounters {
  bad: boolean;
  /** When the proxy last reported this version (Date.now()). */
  at: number;
}

/** Proxy node id -> "<plugin>\0<sha256>" -> latest counters. */
type Table = Map<string, Map<string, Latest>>;

/** A snapshot of every proxy's counters: subtracted from later sums. */
export type Baseline = ReadonlyMap<string, ReadonlyMap<string, VersionCounters>>;

const key = (plugin: string, sha256: string) => `${plugin}\0${sha256.toLowerCase()}`;
const ZERO: VersionCounters = { streams: 0, failedStreams: 0, traps: 0, trapCauses: {}, stalls: 0 };

export class CanaryStats {
  readonly #table: Table = new Map();
  readonly #listeners = new Set<(plugins: ReadonlySet<string>) => void>();

  /** Stores a proxy's report and tells the listeners which plugins it was about. */
  record(report: FilterStatsReport): void {
    const node = report.node_id || 'unknown';
    let versions = this.#table.get(node);
    if (versions === undefined) this.#table.set(node, (versions = new Map()));
    const plugins = new Set<string>();
    const now = Date.now();
    for (const f of report.filters) {
      const trapCauses: Record<string, number> = {};
      for (const [cause, n] of Object.entries(f.traps_by_cause ?? {})) trapCauses[cause] = Number(n);
      versions.set(key(f.plugin, f.sha256), {
        streams: Number(f.streams),
        failedStreams: Number(f.failed_streams),
        traps: Number(f.traps),
        trapCauses,
        stalls: Number(f.stalls ?? 0),
        bad: f.bad,
        at: now,
      });
      plugins.add(f.plugin);
    }
    for (const listener of this.#listeners) listener(plugins);
  }

  /** Called after every report with the plugins (`namespace/name`) it covered. Returns a stop function. */
  onReport(listener: (plugins: ReadonlySet<string>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** When `node` last reported on this version of `plugin` (Date.now() ms), or undefined if it never did. */
  lastReport(node: string, plugin: string, sha256: string): number | undefined {
    return this.#table.get(node)?.get(key(plugin, sha256))?.at;
  }

  /** The current counters of every proxy for one plugin, to subtract later. */
  baseline(plugin: string): Baseline {
    const out = new Map<string, Map<string, VersionCounters>>();
    for (const [node, versions] of this.#table) {
      const mine = new Map<string, VersionCounters>();
      for (const [k, v] of versions) {
        if (k.startsWith(`${plugin}\0`)) mine.set(k, { streams: v.streams, failedStreams: v.failedStreams, traps: v.traps, trapCauses: { ...v.trapCauses }, stalls: v.stalls });
      }
      out.set(node, mine);
    }
    return out;
  }

  /**
   * Sums over proxies of one version's counters since `baseline`. A proxy whose counters went down
   * (it restarted, or reloaded the version) counts from zero.
   */
  totals(plugin: string, sha256: string, baseline: Baseline): VersionTotals {
    const k = key(plugin, sha256);
    const totals: VersionTotals = { streams: 0, failedStreams: 0, traps: 0, trapCauses: {}, stalls: 0, proxies: 0, badOn: [], stalledOn: [] };
    for (const [node, versions] of this.#table) {
      const v = versions.get(k);
      if (v === undefined) continue;
      const base = baseline.get(node)?.get(k);
      const restarted = base !== undefined && (v.streams < base.streams || v.traps < base.traps || v.stalls < base.stalls);
      const b = base === undefined || restarted ? ZERO : base;
      totals.streams += v.streams - b.streams;
      totals.failedStreams += v.failedStreams - b.failedStreams;
      totals.traps += v.traps - b.traps;
      for (const [cause, n] of Object.entries(v.trapCauses)) {
        const since = n - (b.trapCauses[cause] ?? 0);
        if (since > 0) totals.trapCauses[cause] = (totals.trapCauses[cause] ?? 0) + since;
      }
      const stalls = v.stalls - b.stalls;
      totals.stalls += stalls;
      if (stalls > 0) totals.stalledOn.push({ node, stalls });
      totals.proxies++;
      if (v.bad) totals.badOn.push(node);
    }
    return totals;
  }
}
