// Golden signals per outbound edge (who this proxy's workload called, which version answered, over
// mTLS or not): requests, errors, 4xx and a latency histogram, cumulative since the proxy started.
// The proxy sends them to the orchestrator with its stats reports (TrafficReport in discovery.proto),
// which draws the console's graph from them. Bounded: at most MAX_EDGES edges; calls to any further
// edge are counted in one "(other)" edge, so a workload calling many hosts cannot grow the report.
import type { EdgeStatsMessage, TrafficReportMessage } from '../../../schemas/proto/wasmesh/discovery/v1/discovery.ts';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';

/** Upper bounds (ms) of the latency buckets; one more bucket counts the slower calls. */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000]);
/** Edges kept separately; past this, calls are counted in the OTHER edge. */
export const MAX_EDGES = 256;
export const OTHER_SERVICE = '(other)';
export const UNKNOWN_SERVICE = 'unknown';

/** One finished call, as the connection manager knows it. */
export interface EdgeCall {
  /** The cluster's service host; undefined when no route matched. */
  service: string | undefined;
  /** The answering endpoint's labels; undefined when none was picked. */
  labels: Readonly<Record<string, string>> | undefined;
  /** The cluster's subset, used for the version when the endpoint has no version label. */
  subset: string | undefined;
  mtls: boolean;
  /** 0: no response (reset, timeout). */
  status: number;
  durationMs: number;
}

interface Counters {
  readonly service: string;
  readonly namespace: string;
  readonly app: string;
  readonly version: string;
  readonly mtls: boolean;
  requests: number;
  errors: number;
  clientErrors: number;
  readonly buckets: number[];
}

/** `reviews.default.svc.cluster.local` -> `default`; other hosts: ''. */
export function namespaceOfHost(host: string): string {
  const m = /^[^.]+\.([^.]+)\.svc(?:\.|$)/.exec(host);
  return m ? m[1]! : '';
}

export function bucketOf(durationMs: number): number {
  let i = 0;
  while (i < LATENCY_BOUNDS_MS.length && durationMs > LATENCY_BOUNDS_MS[i]!) i++;
  return i;
}

export class EdgeStats {
  readonly #edges = new Map<string, Counters>();
  readonly #source: () => WorkloadIdentity;

  /** `source`: the proxy's workload (asked on each report: a config may change its labels). */
  constructor(source: () => WorkloadIdentity) {
    this.#source = source;
  }

  /** Counts one finished call. */
  record(call: EdgeCall): void {
    const service = call.service ?? UNKNOWN_SERVICE;
    const app = call.labels?.app ?? '';
    const version = call.labels?.version ?? call.subset ?? '';
    const key = `${service}\0${app}\0${version}\0${call.mtls ? 1 : 0}`;
    let c = this.#edges.get(key);
    if (c === undefined) {
      if (this.#edges.size >= MAX_EDGES) {
        const otherKey = `${OTHER_SERVICE}\0\0\0${call.mtls ? 1 : 0}`;
        c = this.#edges.get(otherKey);
        if (c === undefined) this.#edges.set(otherKey, (c = counters(OTHER_SERVICE, '', '', '', call.mtls)));
      } else {
        this.#edges.set(key, (c = counters(service, service === UNKNOWN_SERVICE ? '' : namespaceOfHost(service), app, version, call.mtls)));
      }
    }
    c.requests++;
    if (call.status === 0 || call.status >= 500) c.errors++;
    else if (call.status >= 400) c.clientErrors++;
    c.buckets[bucketOf(call.durationMs)]!++;
  }

  /** Edges kept so far (tests). */
  get size(): number {
    return this.#edges.size;
  }

  /** The report's traffic part: every edge's counters so far. */
  report(certNotAfter: string | undefined): TrafficReportMessage {
    const w = this.#source();
    const edges: EdgeStatsMessage[] = [];
    for (const c of this.#edges.values()) {
      edges.push({
        destination_service: c.service,
        destination_namespace: c.namespace,
        destination_app: c.app,
        destination_version: c.version,
        mtls: c.mtls,
        requests: c.requests,
        errors: c.errors,
        client_errors: c.clientErrors,
        latency_buckets: [...c.buckets],
      });
    }
    return {
      source_namespace: w.namespace,
      source_app: w.labels.app ?? w.name,
      source_version: w.labels.version ?? '',
      latency_bounds_ms: [...LATENCY_BOUNDS_MS],
      edges,
      cert_not_after: certNotAfter ?? '',
    };
  }
}

function counters(service: string, namespace: string, app: string, version: string, mtls: boolean): Counters {
  return { service, namespace, app, version, mtls, requests: 0, errors: 0, clientErrors: 0, buckets: new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0) };
}
