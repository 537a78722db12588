// LEAST_REQUEST: power of two choices (Envoy's default choice_count 2). Two distinct candidates are drawn
// at random in proportion to their weights and the one with fewer in-flight requests per unit of weight
// wins; on a tie the first draw wins, so idle endpoints are picked in proportion to their weights.

import { EndpointPool, type EndpointState } from '../endpoint.ts';
import type { LbContext, LoadBalancer } from '../load-balancer.ts';

export class LeastRequestLoadBalancer implements LoadBalancer {
  private readonly pool: EndpointPool;

  constructor(endpoints: readonly EndpointState[], panicThresholdPercent = 0) {
    this.pool = new EndpointPool(endpoints, panicThresholdPercent);
  }

  get panic(): boolean {
    return this.pool.panic;
  }

  pick(_ctx: LbContext): EndpointState | undefined {
    const pool = this.pool;
    const list = pool.refresh();
    if (list.length <= 1) return list[0];
    const ia = pool.randomIndex(Math.random());
    const ib = pool.randomIndexExcept(Math.random(), ia);
    const a = list[ia]!;
    const b = list[ib]!;
    // b.active / b.weight < a.active / a.weight, without dividing.
    return b.activeRequests * a.weight < a.activeRequests * b.weight ? b : a;
  }
}
