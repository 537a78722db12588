// The two verdicts behind EndpointState.healthy: active health checking (health-checker.ts) and
// outlier ejection (outlier-detector.ts). An endpoint is healthy when its checks pass AND it is not
// ejected. The record lives beside the EndpointState (keyed by it), so it carries over config updates
// exactly as the EndpointState does (ClusterManager reuses states of endpoints that remain).

import type { EndpointState } from './endpoint.ts';

export interface EndpointHealth {
  /** Active health check verdict; true when the cluster has no active health check. */
  checkHealthy: boolean;
  /** No active check answered yet for this endpoint (it stays out of the pool until one passes). */
  checkPending: boolean;
  /** Consecutive active check successes / failures. */
  checkSuccesses: number;
  checkFailures: number;
  /** Last active check outcome ("success", "timeout", "status 503", "connect ECONNREFUSED"...). */
  lastCheck: string;

  /** Ejected by outlier detection. */
  ejected: boolean;
  /** When the current ejection started and how long it lasts (ms). */
  ejectedAtMs: number;
  ejectionMs: number;
  /** Ejection time multiplier: +1 per ejection, -1 per sweep interval spent not ejected. */
  ejections: number;
  /** Consecutive 5xx (and local-origin failures) / gateway errors since the last success or ejection. */
  consecutive5xx: number;
  consecutiveGateway: number;
}

const records = new WeakMap<EndpointState, EndpointHealth>();

export function healthOf(endpoint: EndpointState): EndpointHealth {
  let h = records.get(endpoint);
  if (h === undefined) {
    h = {
      checkHealthy: true,
      checkPending: false,
      checkSuccesses: 0,
      checkFailures: 0,
      lastCheck: '',
      ejected: false,
      ejectedAtMs: 0,
      ejectionMs: 0,
      ejections: 0,
      consecutive5xx: 0,
      consecutiveGateway: 0,
    };
    records.set(endpoint, h);
  }
  return h;
}

/** Recomputes `endpoint.healthy` from both verdicts; returns true when it changed. */
export function syncHealthy(endpoint: EndpointState): boolean {
  const h = healthOf(endpoint);
  const healthy = h.checkHealthy && !h.ejected;
  if (endpoint.healthy === healthy) return false;
  endpoint.healthy = healthy;
  return true;
}
