// The mesh's traffic as the sidecars report it (TrafficReport in discovery.proto): every proxy's
// cumulative counters per outbound edge, kept as a short series of samples per proxy, and the graph
// the console draws from them: rates over a time window from the difference between a proxy's latest
// sample and its sample at the window's start, summed over the proxies of a workload.
//
// Bounded: samples older than MAX_WINDOW_MS go, at most MAX_SAMPLES per proxy, at most MAX_NODES
// proxies (the oldest reporter goes first), and a proxy's report carries at most 256 edges (the
// proxy's bound, checked again here).
//
// Graph shape (Kiali's "versioned app" graph):
//   nodes  workload nodes "<namespace>/<app>/<version>" (callers and the versions that answered) and
//          service nodes (the hosts called)
//   edges  caller -> service: rps, error rate, p99, mTLS of the calls the caller made
//          service -> version: the same for the calls that version answered, plus its share of the
//          service's calls (the traffic split)
import type { TrafficReportMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';

export const MAX_WINDOW_MS = 10 * 60_000;
export const MIN_WINDOW_MS = 5_000;
export const MAX_SAMPLES = 400;
export const MAX_NODES = 2_000;
export const MAX_EDGES_PER_REPORT = 256;

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

export class TrafficStats {
  readonly #nodes = new Map<string, NodeSeries>();
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
      series = { source: { namespace: '', app: '', version: '' }, certNotAfter: undefined, samples: [] };
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
    series.samples.push({ at: now, bounds, edges });
    const oldest = now - MAX_WINDOW_MS - 10_000;
    // Keep one sample before the longest window as its baseline.
    while (series.samples.length > 2 && series.samples[1]!.at < oldest) series.samples.shift();
    if (series.samples.length > MAX_SAMPLES) series.samples.splice(0, series.samples.length - MAX_SAMPLES);
  }

  /** The certificate expiry a proxy last reported (RFC 3339). */
  certNotAfter(node: string): string | undefined {
    return this.#nodes.get(node)?.certNotAfter;
  }

  /** Forgets a proxy (tests; disconnected proxies age out on their own). */
  forget(node: string): void {
    this.#nodes.delete(node);
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
    const d = this.#delta(series, windowMs);
    if (!d) return undefined;
    const acc = emptyAccum(d.bounds, d.seconds);
    for (const e of d.edges) add(acc, e);
    return signals(acc);
  }

  /**
   * Per proxy: its outbound signals between consecutive reports over the window, at most `points`
   * of them (spread evenly), oldest first: the workloads page's small charts.
   */
  history(node: string, windowMs: number, points = 60): Array<Signals & { at: string }> {
    const samples = this.#nodes.get(node)?.samples ?? [];
    const start = this.#now() - Math.min(MAX_WINDOW_MS, windowMs);
    const inWindow = samples.filter((x) => x.at >= start);
    if (inWindow.length < 2) return [];
    const step = Math.max(1, Math.ceil((inWindow.length - 1) / points));
    const out: Array<Signals & { at: string }> = [];
    for (let i = step; i < inWindow.length; i += step) {
      const a = inWindow[i - step]!;
      const b = inWindow[i]!;
      const acc = emptyAccum(b.bounds, (b.at - a.at) / 1000);
      for (const [k, e] of b.edges) {
        const before = a.edges.get(k);
        const base = before === undefined || e.requests < before.requests ? undefined : before;
        const requests = e.requests - (base?.requests ?? 0);
        if (requests <= 0) continue;
        add(acc, {
          ...e,
          requests,
          errors: Math.max(0, e.errors - (base?.errors ?? 0)),
          clientErrors: Math.max(0, e.clientErrors - (base?.clientErrors ?? 0)),
          buckets: e.buckets.map((n, j) => Math.max(0, n - (base?.buckets[j] ?? 0))),
        });
      }
      out.push({ at: new Date(b.at).toISOString(), ...signals(acc) });
    }
    return out;
  }

  /** The graph over the last `windowMs`, optionally only the edges touching one namespace. */
  graph(opts: { windowMs: number; namespace?: string }): Graph {
    const windowMs = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, opts.windowMs));
    const nodes = new Map<string, GraphNode>();
    const callerEdges = new Map<string, Accum>();
    const versionEdges = new Map<string, Accum>();
    const serviceTotals = new Map<string, number>();
    let reporters = 0;
    for (const series of this.#nodes.values()) {
      const d = this.#delta(series, windowMs);
      if (!d) continue;
      reporters++;
      const src = series.source;
      for (const e of d.edges) {
        if (opts.namespace !== undefined && src.namespace !== opts.namespace && e.namespace !== opts.namespace) continue;
        const from = workloadId(src.namespace, src.app, src.version);
        const svc = serviceId(e.service);
        nodes.set(from, { id: from, kind: 'workload', namespace: src.namespace, name: src.app, version: src.version });
        nodes.set(svc, { id: svc, kind: 'service', namespace: e.namespace, name: e.service });
        accumulate(callerEdges, `${from}\0${svc}`, e, d.bounds, d.seconds);
        serviceTotals.set(svc, (serviceTotals.get(svc) ?? 0) + e.requests);
        if (e.app !== '' || e.version !== '') {
          const ns = e.namespace || src.namespace;
          const to = workloadId(ns, e.app || e.service.split('.')[0]!, e.version);
          nodes.set(to, { id: to, kind: 'workload', namespace: ns, name: e.app || e.service.split('.')[0]!, version: e.version });
          accumulate(versionEdges, `${svc}\0${to}`, e, d.bounds, d.seconds);
        }
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
    return { windowSeconds: windowMs / 1000, reporters, nodes: [...nodes.values()].sort((a, b) => cmp(a.id, b.id)), edges };
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
    const edges: EdgeCounters[] = [];
    for (const [k, e] of last.edges) {
      const seen = base.edges.get(k);
      // Absent at the window's start: new since (counters start at 0). Lower now: the proxy restarted.
      const b = seen === undefined || e.requests < seen.requests || seen.buckets.length !== e.buckets.length ? undefined : seen;
      const requests = e.requests - (b?.requests ?? 0);
      if (requests <= 0) continue;
      edges.push({
        ...e,
        requests,
        errors: Math.max(0, e.errors - (b?.errors ?? 0)),
        clientErrors: Math.max(0, e.clientErrors - (b?.clientErrors ?? 0)),
        buckets: e.buckets.map((n, i) => Math.max(0, n - (b?.buckets[i] ?? 0))),
      });
    }
    return { edges, bounds: last.bounds, seconds };
  }
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

function accumulate(map: Map<string, Accum>, key: string, e: EdgeCounters, bounds: number[], seconds: number): void {
  let acc = map.get(key);
  if (acc === undefined) map.set(key, (acc = emptyAccum(bounds, seconds)));
  add(acc, e);
  // Several proxies of a workload report over slightly different spans: the rate uses the longest.
  acc.seconds = Math.max(acc.seconds, seconds);
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
