// RANDOM: a weighted random endpoint per request.

import { EndpointPool, type EndpointState } from '../endpoint.ts';
import type { LbContext, LoadBalancer } from '../load-balancer.ts';

export class RandomLoadBalancer implements LoadBalancer {
  private readonly pool: EndpointPool;

  constructor(endpoints: readonly EndpointState[], panicThresholdPercent = 0) {
    this.pool = new EndpointPool(endpoints, panicThresholdPercent);
  }

  get panic(): boolean {
    return this.pool.panic;
  }

  pick(_ctx: LbContext): EndpointState | undefined {
    this.pool.refresh();
    return this.pool.randomPick(Math.random());
  }
}
