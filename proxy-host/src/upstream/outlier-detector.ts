// Outlier detection (passive health checking) for one cluster: Istio's DestinationRule outlierDetection,
// run the way Envoy runs consecutive-error detection.
//
// - Every upstream attempt reports its outcome: the response status, or an Envoy response flag for a
//   failure the proxy saw itself (UF connect failure, UC/UR reset: 503; UT timeout: 504). Istio does not
//   split local-origin errors, so those count as both 5xx and gateway errors.
// - consecutive5xxErrors (default 5, 0 off): that many 5xx in a row eject the endpoint at once.
//   consecutiveGatewayErrors (default off): the same for 502/503/504 only (a 500 resets that count).
//   Any non-5xx response resets both counts; so does an ejection attempt.
// - An ejection is refused while maxEjectionPercent of the endpoints are already ejected (Envoy's check,
//   made before the ejection: with 3 endpoints and the default 10 %, one endpoint can be ejected), and
//   while the healthy share is below minHealthPercent (outlier detection is off in panic).
// - The ejection lasts baseEjectionTime x (times ejected), capped at max(300 s, baseEjectionTime) as
//   Envoy's max_ejection_time. Every `interval` a sweep returns endpoints whose time is up; the ejection
//   multiplier drops by one for each sweep an endpoint spends in service, so a host that keeps failing
//   stays out longer each time and one that recovered is forgiven.
// - Ejection feeds EndpointState.healthy through endpoint-health.ts (healthy = checks pass AND not ejected).

import type { OutlierDetectionConfig } from '../../../mesh/src/proxy-config.ts';
import type { EndpointState } from './endpoint.ts';
import { healthOf, syncHealthy } from './endpoint-health.ts';

/** Envoy's default max_ejection_time (Istio does not expose it). */
export const MAX_EJECTION_TIME_MS = 300_000;

export const DEFAULT_OUTLIER_DETECTION: OutlierDetectionConfig = {
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
};

export type EjectionReason = 'consecutive_5xx' | 'consecutive_gateway_failure';

export interface OutlierHooks {
  /** An endpoint's combined `healthy` flag changed (ejected or returned). */
  onChange?(endpoint: EndpointState): void;
  onEject?(endpoint: EndpointState, reason: EjectionReason): void;
  /** An ejection was refused by maxEjectionPercent (Envoy ejections_overflow). */
  onOverflow?(endpoint: EndpointState): void;
}

/** The status a reported outcome counts as: HTTP statuses as they are, local-origin failure flags mapped. */
export function outcomeStatus(outcome: number | string): number {
  if (typeof outcome === 'number') return outcome;
  return outcome === 'UT' ? 504 : 503;
}

export class OutlierDetector {
  readonly config: OutlierDetectionConfig;
  readonly #endpoints: readonly EndpointState[];
  readonly #hooks: OutlierHooks;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(config: OutlierDetectionConfig, endpoints: readonly EndpointState[], hooks: OutlierHooks = {}, now: () => number = Date.now) {
    this.config = config;
    this.#endpoints = endpoints;
    this.#hooks = hooks;
    this.#now = now;
  }

  /** Starts the sweep timer (unref'd). */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => this.sweep(), Math.max(1, this.config.intervalMs));
    this.#timer.unref();
  }

  /** Stops the sweep; later reports are ignored (in-flight requests of a replaced cluster). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  get ejectedCount(): number {
    let n = 0;
    for (const e of this.#endpoints) if (healthOf(e).ejected) n++;
    return n;
  }

  /** One attempt's outcome: the upstream status, or the response flag of a local-origin failure. */
  report(endpoint: EndpointState, outcome: number | string): void {
    if (this.#stopped) return;
    const h = healthOf(endpoint);
    if (h.ejected) return;
    const status = outcomeStatus(outcome);
    if (status < 500 || status > 599) {
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
      return;
    }
    const c = this.config;
    h.consecutive5xx++;
    if (status === 502 || status === 503 || status === 504) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    if (c.consecutive5xxErrors > 0 && h.consecutive5xx >= c.consecutive5xxErrors) this.#eject(endpoint, 'consecutive_5xx');
    else if (c.consecutiveGatewayErrors > 0 && h.consecutiveGateway >= c.consecutiveGatewayErrors) this.#eject(endpoint, 'consecutive_gateway_failure');
  }

  #eject(endpoint: EndpointState, reason: EjectionReason): void {
    const h = healthOf(endpoint);
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
    const total = this.#endpoints.length;
    if (total === 0) return;
    let ejected = 0;
    let healthy = 0;
    for (const e of this.#endpoints) {
      if (healthOf(e).ejected) ejected++;
      if (e.healthy) healthy++;
    }
    const c = this.config;
    if (ejected * 100 >= c.maxEjectionPercent * total) {
      this.#hooks.onOverflow?.(endpoint);
      return;
    }
    if (healthy * 100 < c.minHealthPercent * total) return;
    const base = c.baseEjectionTimeMs;
    h.ejected = true;
    h.ejections++;
    h.ejectedAtMs = this.#now();
    h.ejectionMs = Math.min(base * h.ejections, Math.max(base, MAX_EJECTION_TIME_MS));
    this.#hooks.onEject?.(endpoint, reason);
    if (syncHealthy(endpoint)) this.#hooks.onChange?.(endpoint);
  }

  /** Returns endpoints whose ejection time is up; forgives one ejection of endpoints in service. */
  sweep(now = this.#now()): void {
    for (const e of this.#endpoints) {
      const h = healthOf(e);
      if (h.ejected) {
        if (now >= h.ejectedAtMs + h.ejectionMs) {
          h.ejected = false;
          h.consecutive5xx = 0;
          h.consecutiveGateway = 0;
          if (syncHealthy(e)) this.#hooks.onChange?.(e);
        }
      } else if (h.ejections > 0 && now >= h.ejectedAtMs + h.ejectionMs + this.config.intervalMs) {
        // In service for at least a whole interval since it returned.
        h.ejections--;
      }
    }
  }
}
