// What a request needs from the listener it came in on. ConnectionManager (connection-manager.ts)
// implements these; ActiveRequest (active-request.ts) and the mirror (mirror.ts) see only them, so
// neither imports connection-manager.ts, which creates the ActiveRequests: the three files no longer
// import each other in a circle. Types only; nothing here runs.
import type { StreamInfo } from '../../../wasm/src/index.ts';
import type { UpstreamProtocol } from '../../../mesh/src/proxy-config.ts';
import type { FilterChain } from '../filter-chain/chain.ts';
import type { DownstreamRequest } from '../listener/listener.ts';
import type { RouteHit } from '../routing/route-table.ts';
import type { ClusterStats } from '../stats/proxy-stats.ts';
import type { CircuitBreakers } from '../upstream/circuit-breaker.ts';
import type { Cluster, ClusterManager } from '../upstream/cluster.ts';
import type { EndpointState } from '../upstream/endpoint.ts';
import type { LbContext } from '../upstream/load-balancer.ts';
import type { UpstreamClient } from '../upstream/upstream-request.ts';
import type { DownstreamFacts } from './request-headers.ts';
import type { ListenerTelemetry } from '../telemetry/listener-telemetry.ts';

/** The listener's upstream side: what sending a request (or a mirrored copy) to a cluster takes. */
export interface UpstreamHost {
  readonly clusters: ClusterManager;
  /** connectionPool limits per cluster, counted per listener. */
  readonly breakers: CircuitBreakers;
  clusterStats(cluster: Cluster): ClusterStats;
  upstreamProtocol(cluster: Cluster, downstreamH2: boolean): UpstreamProtocol;
  upstreamFor(cluster: Cluster, endpoint: EndpointState, downstreamH2: boolean): UpstreamClient;
}

/**
 * Everything one request's flow uses from its listener. `R` is the request (ActiveRequest), a type
 * parameter so that this file imports neither side.
 */
export interface RequestHost<R> extends UpstreamHost {
  readonly chain: FilterChain;
  /** The listener's tracing and access logs (Telemetry); absent: none. */
  readonly telemetry: ListenerTelemetry | undefined;
  downstreamFacts(req: DownstreamRequest): DownstreamFacts;
  streamInfo(req: DownstreamRequest, ar: R): StreamInfo;
  routeFor(ar: R): RouteHit | undefined;
  lbContext(ar: R): LbContext;
  /** The request is finished: stats, access log, draining. */
  requestDone(ar: R): void;
}
