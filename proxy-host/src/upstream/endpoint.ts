// One upstream endpoint's live state, and the healthy-set view every load balancer picks from.

import type { EndpointConfig } from '../../../mesh/src/proxy-config.ts';

/**
 * Bumped whenever any endpoint's health or weight changes. Pools compare it with the value they last
 * saw, so a pick costs one integer comparison while health is steady and the healthy set is rebuilt
 * only after a change.
 */
let healthEpoch = 0;

/** "address:port"; IPv6 addresses are bracketed ("[::1]:8080") so the port stays unambiguous. */
export function endpointKey(address: string, port: number): string {
  return address.indexOf(':') !== -1 && !address.startsWith('[') ? `[${address}]:${port}` : `${address}:${port}`;
}

function effectiveWeight(w: number): number {
  // WorkloadEntry weight 0 / unset means the default, 1.
  return Number.isFinite(w) && w > 0 ? w : 1;
}

export class EndpointState {
  /** "address:port"; identifies the endpoint across config updates. */
  readonly key: string;
  /** Requests currently in flight to this endpoint (the caller increments on send, decrements on end). */
  activeRequests = 0;
  private cfg: EndpointConfig;
  private w: number;
  private isHealthy = true;

  constructor(config: EndpointConfig) {
    this.cfg = config;
    this.key = endpointKey(config.address, config.port);
    this.w = effectiveWeight(config.weight);
  }

  get config(): EndpointConfig {
    return this.cfg;
  }

  /** Load-balancing weight: `config.weight`, or 1 when it is 0 or invalid. */
  get weight(): number {
    return this.w;
  }

  /** Load balancers skip unhealthy endpoints unless none is healthy (panic mode). */
  get healthy(): boolean {
    return this.isHealthy;
  }

  set healthy(value: boolean) {
    if (value !== this.isHealthy) {
      this.isHealthy = value;
      healthEpoch++;
    }
  }

  /**
   * Replaces the config of an endpoint that kept its address and port (labels or weight changed),
   * keeping its in-flight count and health. Used by ClusterManager.
   */
  reconfigure(config: EndpointConfig): void {
    if (endpointKey(config.address, config.port) !== this.key) {
      throw new Error(`endpoint ${this.key} cannot be reconfigured as ${config.address}:${config.port}`);
    }
    this.cfg = config;
    const w = effectiveWeight(config.weight);
    if (w !== this.w) {
      this.w = w;
      healthEpoch++;
    }
  }
}

/**
 * The endpoints a load balancer may pick from right now: the healthy ones, or all of them when none is
 * healthy or the healthy share is below the panic threshold (Envoy's panic mode; default threshold 0 %). Also keeps their cumulative weights for
 * weighted random picks. `refresh()` returns the same array object while the set is unchanged, so load
 * balancers can keep per-position state (round-robin cursors) by comparing identities.
 */
export class EndpointPool {
  readonly all: readonly EndpointState[];
  private epoch = -1;
  private list: EndpointState[] = [];
  private weightList = new Float64Array(0);
  private cumulative = new Float64Array(0);
  private total = 0;
  private uniformWeights = true;
  private panicMode = false;
  private readonly panicThreshold: number;

  /**
   * `panicThresholdPercent` (outlierDetection.minHealthPercent): the pool also panics when fewer than
   * this share of endpoints is healthy. 0 (the default) panics only when none is.
   */
  constructor(endpoints: readonly EndpointState[], panicThresholdPercent = 0) {
    this.all = endpoints;
    this.panicThreshold = panicThresholdPercent;
  }

  /** The current candidates (healthy, or all in panic mode). Cheap when nothing changed. */
  refresh(): readonly EndpointState[] {
    if (this.epoch !== healthEpoch) this.rebuild();
    return this.list;
  }

  /** True when no endpoint is healthy and the pool balances over all of them. Valid after refresh(). */
  get panic(): boolean {
    return this.panicMode;
  }

  /** True when every candidate has the same weight. Valid after refresh(). */
  get uniform(): boolean {
    return this.uniformWeights;
  }

  /** Weights aligned with the candidate list. Valid after refresh(). */
  get weights(): Float64Array {
    return this.weightList;
  }

  get totalWeight(): number {
    return this.total;
  }

  /** Weighted random candidate index for `r` in [0, 1); -1 when there is no candidate. */
  randomIndex(r: number): number {
    const n = this.list.length;
    if (n <= 1) return n - 1;
    if (this.uniformWeights) return Math.min(n - 1, Math.floor(r * n));
    return this.indexAt(r * this.total);
  }

  /**
   * Weighted random index different from `exclude` (for the second choice of power-of-two-choices);
   * requires at least two candidates.
   */
  randomIndexExcept(r: number, exclude: number): number {
    const n = this.list.length;
    if (this.uniformWeights) {
      const i = Math.min(n - 2, Math.floor(r * (n - 1)));
      return i >= exclude ? i + 1 : i;
    }
    const cum = this.cumulative;
    const before = exclude === 0 ? 0 : cum[exclude - 1]!;
    const excluded = cum[exclude]! - before;
    let target = r * (this.total - excluded);
    if (target >= before) target += excluded;
    const i = this.indexAt(target);
    return i === exclude ? (exclude + 1) % n : i;
  }

  /** Weighted random candidate for `r` in [0, 1). */
  randomPick(r: number): EndpointState | undefined {
    const i = this.randomIndex(r);
    return i < 0 ? undefined : this.list[i];
  }

  /** First index whose cumulative weight exceeds `target`. */
  private indexAt(target: number): number {
    const cum = this.cumulative;
    let lo = 0;
    let hi = cum.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cum[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  private rebuild(): void {
    this.epoch = healthEpoch;
    const all = this.all;
    const next: EndpointState[] = [];
    for (const e of all) if (e.healthy) next.push(e);
    this.panicMode = all.length > 0 && (next.length === 0 || next.length * 100 < this.panicThreshold * all.length);
    const candidates = this.panicMode ? all.slice() : next;

    // Keep the old array (and the state load balancers attach to it) when the set did not change.
    let same = candidates.length === this.list.length;
    for (let i = 0; same && i < candidates.length; i++) same = candidates[i] === this.list[i];
    if (!same) this.list = candidates;

    const n = this.list.length;
    this.weightList = new Float64Array(n);
    this.cumulative = new Float64Array(n);
    let total = 0;
    let uniform = true;
    for (let i = 0; i < n; i++) {
      const w = this.list[i]!.weight;
      this.weightList[i] = w;
      total += w;
      this.cumulative[i] = total;
      if (w !== this.list[0]!.weight) uniform = false;
    }
    this.total = total;
    this.uniformWeights = uniform;
  }
}
