// Picks an endpoint of a cluster for each request (DestinationRule trafficPolicy.loadBalancer).
// One class per algorithm under ./lb/; all of them pick from an EndpointPool, which skips unhealthy
// endpoints and falls back to all of them when none is healthy (Envoy's panic mode).

import type { LoadBalancerConfig } from '../../../mesh/src/proxy-config.ts';
import type { EndpointState } from './endpoint.ts';
import { LeastRequestLoadBalancer } from './lb/least-request.ts';
import { RandomLoadBalancer } from './lb/random.ts';
import { RingHashLoadBalancer } from './lb/ring-hash.ts';
import { RoundRobinLoadBalancer } from './lb/round-robin.ts';

/** What a load balancer may look at in a request. */
export interface LbContext {
  /** Flat `[name0, value0, ...]` request headers, lowercase names (consistent hash by header/cookie). */
  headers: readonly string[];
  /** Downstream client address (consistent hash by source IP). */
  sourceIp?: string;
  /** `:path` with its query string (consistent hash by query parameter). */
  path?: string;
}

export interface LoadBalancer {
  /** An endpoint for this request; undefined only when the cluster has no endpoints. */
  pick(ctx: LbContext): EndpointState | undefined;
  /**
   * Cookie to set on the response when consistentHash.httpCookie was missing from the request: the full
   * `set-cookie` value (`name="value"; Max-Age=ttl; Path=path; HttpOnly`). Set by `pick` and valid until
   * the next `pick` (read it in the same synchronous step); undefined when no cookie was generated.
   */
  readonly lastSetCookie?: string;
  /** True when the last pick balanced over all endpoints because none was healthy. */
  readonly panic?: boolean;
}

/** `panicThresholdPercent`: see EndpointPool (outlierDetection.minHealthPercent; default 0). */
export function createLoadBalancer(config: LoadBalancerConfig, endpoints: readonly EndpointState[], panicThresholdPercent = 0): LoadBalancer {
  const p = panicThresholdPercent;
  if ('consistentHash' in config) return new RingHashLoadBalancer(config.consistentHash, endpoints, p);
  switch (config.simple) {
    case 'LEAST_REQUEST':
      return new LeastRequestLoadBalancer(endpoints, p);
    case 'RANDOM':
      return new RandomLoadBalancer(endpoints, p);
    case 'PASSTHROUGH':
      // Istio's PASSTHROUGH forwards to the request's original destination address. This proxy only
      // sends to configured endpoints, so PASSTHROUGH behaves as ROUND_ROBIN over them.
      return new RoundRobinLoadBalancer(endpoints, p);
    case 'ROUND_ROBIN':
    default:
      return new RoundRobinLoadBalancer(endpoints, p);
  }
}
