// ROUND_ROBIN: plain rotation when all weights are equal (starting at a random position so that proxies
// restarted together do not all hit the first endpoint), smooth weighted round robin (nginx) otherwise:
// each pick adds every endpoint's weight to its running score, takes the highest score and subtracts
// the total weight from it, which spreads heavier endpoints evenly through the cycle.

import { EndpointPool, type EndpointState } from '../endpoint.ts';
import type { LbContext, LoadBalancer } from '../load-balancer.ts';

export class RoundRobinLoadBalancer implements LoadBalancer {
  private readonly pool: EndpointPool;
  /** The candidate list the cursor and scores below belong to. */
  private list: readonly EndpointState[] = [];
  private next = 0;
  private scores = new Float64Array(0);

  constructor(endpoints: readonly EndpointState[], panicThresholdPercent = 0) {
    this.pool = new EndpointPool(endpoints, panicThresholdPercent);
  }

  get panic(): boolean {
    return this.pool.panic;
  }

  pick(_ctx: LbContext): EndpointState | undefined {
    const list = this.pool.refresh();
    const n = list.length;
    if (list !== this.list) {
      this.list = list;
      this.scores = new Float64Array(n);
      this.next = Math.floor(Math.random() * n);
    }
    if (n <= 1) return list[0];

    if (this.pool.uniform) {
      let i = this.next;
      if (i >= n) i = 0;
      this.next = i + 1;
      return list[i];
    }

    const weights = this.pool.weights;
    const scores = this.scores;
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < n; i++) {
      const s = scores[i]! + weights[i]!;
      scores[i] = s;
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    scores[best] = bestScore - this.pool.totalWeight;
    return list[best];
  }
}
