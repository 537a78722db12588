// The mesh's traffic as the sidecars report it (TrafficReport in discovery.proto): every proxy's
// cumulative counters per outbound edge, and the graph the console draws from them over a time
// window, summed over the proxies of a workload.
//
// Three resolutions (the window picks the finest one that reaches back far enough):
//   raw      the reports themselves (one per proxy every 2 s), kept for RAW_WINDOW_MS (2 min):
//            windows up to 2 min are the difference between a proxy's latest sample and its
//            sample at the window's start, exact to the report;
//   10 s     buckets for 10 min, and
//   1 min    buckets for 6 h: the difference between consecutive reports of a proxy is added to
//            the bucket of the time it arrived (bucket n holds (n x size, (n + 1) x size]), per
//            graph edge (calling workload -> service, answering app/version, mTLS: a workload's
//            proxies share one series) and per proxy (all its outbound calls: the workloads page).
//            A window sums the buckets that start inside it and the current one (its start is
//            rounded up to a bucket boundary); its rates are over that span (from the workload's
//            first report, when later).
//
// Bounded: at most MAX_NODES proxies (the oldest reporter goes first); raw samples older than
// RAW_WINDOW_MS go, at most MAX_SAMPLES per proxy, each with at most 256 edges (the proxy's bound,
// checked again here); at most MAX_EDGE_SERIES graph edges keep buckets (the longest silent goes
// when a new one comes). A series' buckets are two fixed rings (61 and 361 slots) of 32-bit
// counters (requests, 5xx, 4xx, over mTLS, the latency histogram's 15 buckets) and a bucket
// number, 80 B a slot, allocated on the series' first call: 33 KB a series, so at most
// (MAX_EDGE_SERIES + MAX_NODES) x 33 KB = 100 MB however long the orchestrator runs (the demo's
// 6 proxies and 8 edges: 0.5 MB).
//
// Graph shape (Kiali's "versioned app" graph):
//   nodes  workload nodes "<namespace>/<app>/<version>" (callers and the versions that answered) and
//          service nodes (the hosts called)
//   edges  caller -> service: rps, error rate, p99, mTLS of the calls the caller made
//          service -> version: the same for the calls that version answered, plus its share of the
//          service's calls (the traffic split)
import type { TrafficReportMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';

/** Windows up to this are computed from the raw reports. */
export const RAW_WINDOW_MS = 2 * 60_000;
/** Bucket resolutions for longer windows: `buckets` whole buckets of `bucketMs` (plus the current one). */
export const TIERS: ReadonlyArray<{ readonly bucketMs: number; readonly buckets: number }> = Object.freeze([
  Object.freeze({ bucketMs: 10_000, buckets: 60 }), // 10 min
  Object.freeze({ bucketMs: 60_000, buckets: 360 }), // 6 h
]);
export const MAX_WINDOW_MS = 6 * 3_600_000;
export const MIN_WINDOW_MS = 5_000;
export const MAX_SAMPLES = 100;
export const MAX_NODES = 2_000;
export const MAX_EDGES_PER_REPORT = 256;
/** Graph edges (calling workload, service, answering app/version, mTLS) that keep buckets. */
export const MAX_EDGE_SERIES = 1_024;

interface EdgeCounters {
  service: string;
  namespace: string;
  app: string;
  version: string;
  mtls: boolean;
  requests: number;
  errors: number;
  clientErrors: number;
  buckets: number[];
}

interface Sample {
  at: number;
  bounds: number[];
  edges: Map<string, EdgeCounters>;
}

interface NodeSeries {
  source: { namespace: string; app: string; version: string };
  certNotAfter: string | undefined;
  samples: Sample[];
  /** The first report's time: rates over a window that starts earlier count from here. */
  firstAt: number;
  /** The proxy's outbound calls in buckets (all its edges summed). */
  buckets: Buckets;
}

/** One graph edge's calls in buckets, the calling workload's proxies together. */
interface EdgeSeries {
  source: { namespace: string; app: string; version: string };
  edge: Omit<EdgeCounters, 'requests' | 'errors' | 'clientErrors' | 'buckets'>;
  buckets: Buckets;
}

// Counters per bucket: requests, 5xx or no answer, 4xx, over mTLS, then the latency histogram.
const REQUESTS = 0;
const ERRORS = 1;
const CLIENT_ERRORS = 2;
const MTLS = 3;
const HISTOGRAM = 4;
const U32_MAX = 0xffff_ffff;

/** A fixed ring of buckets of one resolution: slot = bucket number modulo its size. */
class Ring {
  /** The bucket number each slot holds (-1: none yet). */
  readonly #number: Int32Array;
  readonly #counters: Uint32Array;
  constructor(
    readonly bucketMs: number,
    readonly size: number,
    readonly width: number,
  ) {
    this.#number = new Int32Array(size).fill(-1);
    this.#counters = new Uint32Array(size * width);
  }

  /** Bucket n holds what arrived in (n x bucketMs, (n + 1) x bucketMs]: a report at a boundary closes its bucket. */
  add(at: number, values: ArrayLike<number>): void {
    const n = Math.ceil(at / this.bucketMs) - 1;
    const slot = n % this.size;
    const base = slot * this.width;
    if (this.#number[slot] !== n) {
      this.#number[slot] = n;
      this.#counters.fill(0, base, base + this.width);
    }
    // Saturating: 2^32 calls in one bucket would be 7 M calls a second for 10 minutes.
    for (let i = 0; i < this.width; i++) this.#counters[base + i] = Math.min(U32_MAX, this.#counters[base + i]! + values[i]!);
  }

  /** Adds buckets `from`..`to` (bucket numbers, inclusive) into `out`. */
  sum(from: number, to: number, out: Float64Array): void {
    for (let n = Math.max(from, to - this.size + 1); n <= to; n++) {
      const slot = n % this.size;
      if (this.#number[slot] !== n) continue;
      const base = slot * this.width;
      for (let i = 0; i < this.width; i++) out[i]! += this.#counters[base + i]!;
    }
  }
}

/** A series' rings, one per TIERS entry, allocated with its first call. */
class Buckets {
  #rings: Ring[] | undefined;
  #bounds: number[] = [];
  /** The reporting proxies' first report (the earliest): where its rates start. */
  since: number;
  /** The last call added. */
  lastAt = -Infinity;

  constructor(since: number) {
    this.since = since;
  }

  get bounds(): number[] {
    return this.#bounds;
  }

  add(at: number, since: number, bounds: number[], e: EdgeCounters): void {
    const width = HISTOGRAM + bounds.length + 1;
    // A proxy with other latency bounds (another version) starts the series again.
    if (this.#rings === undefined || !sameBounds(this.#bounds, bounds)) {
      this.#rings = TIERS.map((t) => new Ring(t.bucketMs, t.buckets + 1, width));
      this.#bounds = bounds;
    }
    const values = new Array<number>(width).fill(0);
    values[REQUESTS] = e.requests;
    values[ERRORS] = e.errors;
    values[CLIENT_ERRORS] = e.clientErrors;
    values[MTLS] = e.mtls ? e.requests : 0;
    for (let i = 0; i < e.buckets.length && HISTOGRAM + i < width; i++) values[HISTOGRAM + i] = e.buckets[i]!;
    for (const ring of this.#rings) ring.add(at, values);
    this.since = Math.min(this.since, since);
    this.lastAt = Math.max(this.lastAt, at);
  }

  /**
   * The calls in the buckets of tier `tier` over (`startMs`, `endMs`], the start rounded up to a
   * bucket boundary; undefined when none, or nothing since the start.
   */
  accum(tier: number, startMs: number, endMs: number): Accum | undefined {
    const ring = this.#rings?.[tier];
    if (ring === undefined || this.lastAt <= startMs) return undefined;
    const from = Math.ceil(startMs / ring.bucketMs);
    const to = Math.ceil(endMs / ring.bucketMs) - 1;
    if (to < from) return undefined;
    const sum = new Float64Array(ring.width);
    ring.sum(from, to, sum);
    if (sum[REQUESTS] === 0) return undefined;
    const spanStart = Math.max(from * ring.bucketMs, this.since);
    const spanEnd = Math.min(endMs, this.lastAt);
    return {
      requests: sum[REQUESTS]!,
      errors: sum[ERRORS]!,
      clientErrors: sum[CLIENT_ERRORS]!,
      mtlsRequests: sum[MTLS]!,
      buckets: Array.from(sum.subarray(HISTOGRAM)),
      bounds: this.#bounds,
      seconds: Math.max(0, spanEnd - spanStart) / 1000,
    };
  }
}

/** Counters over a window: what edges carry. */
export interface Signals {
  /** Calls in the window. */
  requests: number;
  rps: number;
  /** Share of calls answered 5xx or not answered. */
  errorRate: number;
  /** Share of calls answered 4xx. */
  clientErrorRate: number;
  /** 99th percentile latency, ms (interpolated within the histogram's bucket); undefined without calls. */
  p99Ms: number | undefined;
  /** Share of calls over mTLS (1: all, 0: none). */
  mtls: number;
}

export interface GraphNode {
  id: string;
  kind: 'workload' | 'service';
  namespace: string;
  /** workload: app label; service: its host. */
  name: string;
  version?: string;
}

export interface GraphEdge extends Signals {
  from: string;
  to: string;
  /** service -> version edges: the version's share of the service's calls in the window. */
  share?: number;
}

export interface Graph {
  windowSeconds: number;
  /** What the window was computed from: the raw reports, or buckets of this many seconds. */
  resolutionSeconds: number | 'report';
  /** Proxies whose reports the graph is made of. */
  reporters: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

interface Accum {
  requests: number;
  errors: number;
  clientErrors: number;
  mtlsRequests: number;
  buckets: number[];
  bounds: number[];
  seconds: number;
}

const num = (v: string | number | undefined): number => {
  const n = Number(v ?? 0);
  return Number.isFinite(n) && n >= 0 ? n : 0;
};

export const workloadId = (namespace: string, app: string, version: string) => `${namespace}/${app}/${version}`;
export const serviceId = (host: string) => `svc:${host}`;

/** The resolution a window is computed at: -1 for the raw reports, else an index of TIERS. */
export function tierFor(windowMs: number): number {
  if (windowMs <= RAW_WINDOW_MS) return -1;
  const i = TIERS.findIndex((t) => t.bucketMs * t.buckets >= windowMs);
  return i === -1 ? TIERS.length - 1 : i;
}

/** One edge's counters over a window, from whichever resolution: what the graph sums. */
interface WindowEdge {
  source: { namespace: string; app: string; version: string };
  edge: Omit<EdgeCounters, 'requests' | 'errors' | 'clientErrors' | 'buckets'>;
  acc: Accum;
}

export class TrafficStats {
  readonly #nodes = new Map<string, NodeSeries>();
  readonly #edges = new Map<string, EdgeSeries>();
  readonly #now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** Stores a proxy's report (cumulative counters). */
  record(node: string, traffic: TrafficReportMessage): void {
    const now = this.#now();
    let series = this.#nodes.get(node);
    if (series === undefined) {
      if (this.#nodes.size >= MAX_NODES) this.#evictOldest();
      series = { source: { namespace: '', app: '', version: '' }, certNotAfter: undefined, samples: [], firstAt: now, buckets: new Buckets(now) };
      this.#nodes.set(node, series);
    }
    series.source = { namespace: traffic.source_namespace || 'default', app: traffic.source_app, version: traffic.source_version };
    series.certNotAfter = traffic.cert_not_after || undefined;
    const bounds = (traffic.latency_bounds_ms ?? []).map(Number).filter((b) => Number.isFinite(b));
    const edges = new Map<string, EdgeCounters>();
    for (const e of (traffic.edges ?? []).slice(0, MAX_EDGES_PER_REPORT)) {
      const c: EdgeCounters = {
        service: e.destination_service,
        namespace: e.destination_namespace,
        app: e.destination_app,
        version: e.destination_version,
        mtls: e.mtls,
        requests: num(e.requests),
        errors: num(e.errors),
        clientErrors: num(e.client_errors),
        buckets: (e.latency_buckets ?? []).slice(0, bounds.length + 1).map(num),
      };
      edges.set(edgeKey(c), c);
    }
    const sample: Sample = { at: now, bounds, edges };
    const previous = series.samples.at(-1);
    if (previous !== undefined) this.#bucket(series, previous, sample);
    series.samples.push(sample);
    const oldest = now - RAW_WINDOW_MS - 10_000;
    // Keep one sample before the longest raw window as its baseline.
    while (series.samples.length > 2 && series.samples[1]!.at < oldest) series.samples.shift();
    if (series.samples.length > MAX_SAMPLES) series.samples.splice(0, series.samples.length - MAX_SAMPLES);
  }

  /** The calls between a proxy's previous report and this one, into the buckets of their edges and of the proxy. */
  #bucket(series: NodeSeries, before: Sample, after: Sample): void {
    const src = series.source;
    const from = workloadId(src.namespace, src.app, src.version);
    for (const e of differences(before, after)) {
      series.buckets.add(after.at, series.firstAt, after.bounds, e);
      const key = `${from}\0${edgeKey(e)}`;
      let edge = this.#edges.get(key);
      if (edge === undefined) {
        if (this.#edges.size >= MAX_EDGE_SERIES) this.#evictSilentEdge();
        const { requests: _r, errors: _e, clientErrors: _c, buckets: _b, ...shape } = e;
        edge = { source: { ...src }, edge: shape, buckets: new Buckets(series.firstAt) };
        this.#edges.set(key, edge);
      }
      edge.buckets.add(after.at, series.firstAt, after.bounds, e);
    }
  }

  #evictSilentEdge(): void {
    let oldest: [string, number] | undefined;
    for (const [key, s] of this.#edges) {
      if (oldest === undefined || s.buckets.lastAt < oldest[1]) oldest = [key, s.buckets.lastAt];
    }
    if (oldest) this.#edges.delete(oldest[0]);
  }

  /** The certificate expiry a proxy last reported (RFC 3339). */
  certNotAfter(node: string): string | undefined {
    return this.#nodes.get(node)?.certNotAfter;
  }

  /** Forgets a proxy (tests; disconnected proxies age out on their own). */
  forget(node: string): void {
    this.#nodes.delete(node);
  }

  /** Graph edges that keep buckets (tests: the bound). */
  get edgeSeries(): number {
    return this.#edges.size;
  }

  #evictOldest(): void {
    let oldest: [string, number] | undefined;
    for (const [node, s] of this.#nodes) {
      const at = s.samples.at(-1)?.at ?? 0;
      if (oldest === undefined || at < oldest[1]) oldest = [node, at];
    }
    if (oldest) this.#nodes.delete(oldest[0]);
  }

  /** Per proxy: its outbound calls over the window (the workloads page). */
  outbound(node: string, windowMs: number): Signals | undefined {
    const series = this.#nodes.get(node);
    if (!series) return undefined;
    windowMs = clampWindow(windowMs);
    const tier = tierFor(windowMs);
    if (tier >= 0) {
      const now = this.#now();
      const acc = series.buckets.accum(tier, now - windowMs, now);
      return acc && acc.seconds > 0 ? signals(acc) : undefined;
    }
    const d = this.#delta(series, windowMs);
    if (!d) return undefined;
    const acc = emptyAccum(d.bounds, d.seconds);
    for (const e of d.edges) add(acc, e);
    return signals(acc);
  }

  /**
   * Per proxy: its outbound signals over the window, at most `points` of them, oldest first: the
   * workloads page's small charts. Up to RAW_WINDOW_MS, between consecutive reports (spread
   * evenly); longer, per whole bucket (several merged into a point when there are more than `points`).
   */
  history(node: string, windowMs: number, points = 60): Array<Signals & { at: string }> {
    const series = this.#nodes.get(node);
    if (!series) return [];
    windowMs = clampWindow(windowMs);
    const tier = tierFor(windowMs);
    if (tier >= 0) return this.#bucketHistory(series, tier, windowMs, points);
    const samples = series.samples;
    const start = this.#now() - windowMs;
    const inWindow = samples.filter((x) => x.at >= start);
    if (inWindow.length < 2) return [];
    const step = Math.max(1, Math.ceil((inWindow.length - 1) / points));
    const out: Array<Signals & { at: string }> = [];
    for (let i = step; i < inWindow.length; i += step) {
      const a = inWindow[i - step]!;
      const b = inWindow[i]!;
      const acc = emptyAccum(b.bounds, (b.at - a.at) / 1000);
      for (const e of differences(a, b)) add(acc, e);
      out.push({ at: new Date(b.at).toISOString(), ...signals(acc) });
    }
    return out;
  }

  #bucketHistory(series: NodeSeries, tier: number, windowMs: number, points: number): Array<Signals & { at: string }> {
    const { bucketMs } = TIERS[tier]!;
    const now = this.#now();
    // Whole buckets only: the current one is still filling.
    const first = Math.ceil((now - windowMs) / bucketMs);
    const last = Math.floor(now / bucketMs) - 1; // (last x bucketMs, (last + 1) x bucketMs] has ended
    if (last < first) return [];
    const per = Math.max(1, Math.ceil((last - first + 1) / points));
    const out: Array<Signals & { at: string }> = [];
    // Aligned from the newest bucket back, so each point keeps its buckets as time goes on.
    for (let end = last; end - per + 1 >= first; end -= per) {
      const startMs = (end - per + 1) * bucketMs;
      const endMs = (end + 1) * bucketMs;
      if (endMs <= series.firstAt) break;
      const acc = series.buckets.accum(tier, startMs, endMs) ?? emptyAccum(series.buckets.bounds, 0);
      // A point's rate is over its whole span (from the proxy's first report, if later).
      acc.seconds = (endMs - Math.max(startMs, series.firstAt)) / 1000;
      out.push({ at: new Date(endMs).toISOString(), ...signals(acc) });
    }
    return out.reverse();
  }

  /** The graph over the last `windowMs`, optionally only the edges touching one namespace. */
  graph(opts: { windowMs: number; namespace?: string }): Graph {
    const windowMs = clampWindow(opts.windowMs);
    const tier = tierFor(windowMs);
    const nodes = new Map<string, GraphNode>();
    const callerEdges = new Map<string, Accum>();
    const versionEdges = new Map<string, Accum>();
    const serviceTotals = new Map<string, number>();
    const { edges: windowEdges, reporters } = tier >= 0 ? this.#bucketEdges(tier, windowMs) : this.#rawEdges(windowMs);
    for (const { source: src, edge: e, acc } of windowEdges) {
      if (opts.namespace !== undefined && src.namespace !== opts.namespace && e.namespace !== opts.namespace) continue;
      const from = workloadId(src.namespace, src.app, src.version);
      const svc = serviceId(e.service);
      nodes.set(from, { id: from, kind: 'workload', namespace: src.namespace, name: src.app, version: src.version });
      nodes.set(svc, { id: svc, kind: 'service', namespace: e.namespace, name: e.service });
      merge(callerEdges, `${from}\0${svc}`, acc);
      serviceTotals.set(svc, (serviceTotals.get(svc) ?? 0) + acc.requests);
      if (e.app !== '' || e.version !== '') {
        const ns = e.namespace || src.namespace;
        const to = workloadId(ns, e.app || e.service.split('.')[0]!, e.version);
        nodes.set(to, { id: to, kind: 'workload', namespace: ns, name: e.app || e.service.split('.')[0]!, version: e.version });
        merge(versionEdges, `${svc}\0${to}`, acc);
      }
    }
    const edges: GraphEdge[] = [];
    for (const [k, acc] of callerEdges) {
      const [from, to] = k.split('\0') as [string, string];
      edges.push({ from, to, ...signals(acc) });
    }
    for (const [k, acc] of versionEdges) {
      const [from, to] = k.split('\0') as [string, string];
      const total = serviceTotals.get(from) ?? 0;
      edges.push({ from, to, ...signals(acc), share: total > 0 ? acc.requests / total : 0 });
    }
    edges.sort((a, b) => (a.from === b.from ? cmp(a.to, b.to) : cmp(a.from, b.from)));
    return {
      windowSeconds: windowMs / 1000,
      resolutionSeconds: tier >= 0 ? TIERS[tier]!.bucketMs / 1000 : 'report',
      reporters,
      nodes: [...nodes.values()].sort((a, b) => cmp(a.id, b.id)),
      edges,
    };
  }

  /** Every proxy's edges over a raw window: one entry per proxy and edge. */
  #rawEdges(windowMs: number): { edges: WindowEdge[]; reporters: number } {
    const out: WindowEdge[] = [];
    let reporters = 0;
    for (const series of this.#nodes.values()) {
      const d = this.#delta(series, windowMs);
      if (!d) continue;
      reporters++;
      for (const e of d.edges) {
        const acc = emptyAccum(d.bounds, d.seconds);
        add(acc, e);
        out.push({ source: series.source, edge: e, acc });
      }
    }
    return { edges: out, reporters };
  }

  /** The graph edges' buckets over a longer window: one entry per edge (a workload's proxies together). */
  #bucketEdges(tier: number, windowMs: number): { edges: WindowEdge[]; reporters: number } {
    const now = this.#now();
    const start = now - windowMs;
    const out: WindowEdge[] = [];
    for (const s of this.#edges.values()) {
      const acc = s.buckets.accum(tier, start, now);
      if (acc !== undefined && acc.seconds > 0) out.push({ source: s.source, edge: s.edge, acc });
    }
    let reporters = 0;
    for (const series of this.#nodes.values()) if (series.samples.length > 1 && series.samples.at(-1)!.at >= start) reporters++;
    return { edges: out, reporters };
  }

  /**
   * A proxy's counters over the window: its latest sample minus the last sample at or before the
   * window's start (else its oldest). Undefined when it has not reported twice, or not within the
   * window. An edge whose counters went down (the proxy restarted) counts from zero.
   */
  #delta(series: NodeSeries, windowMs: number): { edges: EdgeCounters[]; bounds: number[]; seconds: number } | undefined {
    const samples = series.samples;
    const last = samples.at(-1);
    const now = this.#now();
    if (last === undefined || last.at < now - windowMs) return undefined;
    const start = now - windowMs;
    let base = samples[0]!;
    for (const s of samples) {
      if (s.at <= start) base = s;
      else break;
    }
    if (base === last) return undefined;
    const seconds = (last.at - base.at) / 1000;
    if (seconds <= 0) return undefined;
    return { edges: differences(base, last), bounds: last.bounds, seconds };
  }
}

/**
 * The calls between two samples of a proxy, per edge with calls. An edge absent from the earlier
 * sample is new since (counters start at 0); one whose counters went down: the proxy restarted.
 */
function differences(before: Sample, after: Sample): EdgeCounters[] {
  const out: EdgeCounters[] = [];
  for (const [k, e] of after.edges) {
    const seen = before.edges.get(k);
    const b = seen === undefined || e.requests < seen.requests || seen.buckets.length !== e.buckets.length ? undefined : seen;
    const requests = e.requests - (b?.requests ?? 0);
    if (requests <= 0) continue;
    out.push({
      ...e,
      requests,
      errors: Math.max(0, e.errors - (b?.errors ?? 0)),
      clientErrors: Math.max(0, e.clientErrors - (b?.clientErrors ?? 0)),
      buckets: e.buckets.map((n, i) => Math.max(0, n - (b?.buckets[i] ?? 0))),
    });
  }
  return out;
}

function clampWindow(windowMs: number): number {
  return Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, windowMs));
}

function sameBounds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function edgeKey(e: { service: string; app: string; version: string; mtls: boolean }): string {
  return `${e.service}\0${e.app}\0${e.version}\0${e.mtls ? 1 : 0}`;
}

function emptyAccum(bounds: number[], seconds: number): Accum {
  return { requests: 0, errors: 0, clientErrors: 0, mtlsRequests: 0, buckets: new Array<number>(bounds.length + 1).fill(0), bounds, seconds };
}

function add(acc: Accum, e: EdgeCounters): void {
  acc.requests += e.requests;
  acc.errors += e.errors;
  acc.clientErrors += e.clientErrors;
  if (e.mtls) acc.mtlsRequests += e.requests;
  for (let i = 0; i < acc.buckets.length && i < e.buckets.length; i++) acc.buckets[i]! += e.buckets[i]!;
}

function merge(map: Map<string, Accum>, key: string, from: Accum): void {
  let acc = map.get(key);
  if (acc === undefined) map.set(key, (acc = emptyAccum(from.bounds, from.seconds)));
  acc.requests += from.requests;
  acc.errors += from.errors;
  acc.clientErrors += from.clientErrors;
  acc.mtlsRequests += from.mtlsRequests;
  for (let i = 0; i < acc.buckets.length && i < from.buckets.length; i++) acc.buckets[i]! += from.buckets[i]!;
  // Several proxies of a workload report over slightly different spans: the rate uses the longest.
  acc.seconds = Math.max(acc.seconds, from.seconds);
}

function signals(acc: Accum): Signals {
  const r = acc.requests;
  return {
    requests: r,
    rps: acc.seconds > 0 ? r / acc.seconds : 0,
    errorRate: r > 0 ? acc.errors / r : 0,
    clientErrorRate: r > 0 ? acc.clientErrors / r : 0,
    p99Ms: quantile(0.99, acc.bounds, acc.buckets),
    mtls: r > 0 ? acc.mtlsRequests / r : 0,
  };
}

/**
 * The q-quantile of a histogram (Prometheus histogram_quantile): linear within the bucket it falls
 * in, from the bucket's lower bound (0 for the first); in the last, unbounded bucket: its lower bound.
 */
export function quantile(q: number, bounds: readonly number[], buckets: readonly number[]): number | undefined {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i]!;
    if (seen + n >= rank && n > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      const upper = bounds[i]!;
      return lower + (upper - lower) * ((rank - seen) / n);
    }
    seen += n;
  }
  return bounds[bounds.length - 1];
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
