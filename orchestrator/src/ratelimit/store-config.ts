// The embedded rate-limit service's limits, kept in step with the store: every RateLimitPolicy of
// every namespace (the service serves the whole mesh), translated by the same code the proxies'
// filters are configured from (mesh/src/translate/ratelimit.ts). A change to a RateLimitPolicy
// reaches the service within the debounce (100 ms), without a restart.
import { rateLimitServiceConfig, type RateLimitServiceConfig } from '../../../mesh/src/translate/ratelimit.ts';
import type { ConfigStore } from '../store/types.ts';

export interface RateLimitConfigFeed {
  /** Stops watching. */
  close(): void;
  /** Resolves once the current store content was applied (tests, startup). */
  ready: Promise<void>;
}

export function feedRateLimitConfig(store: ConfigStore, apply: (config: RateLimitServiceConfig) => void, onError: (err: Error) => void = () => {}): RateLimitConfigFeed {
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const load = async (): Promise<void> => {
    try {
      const policies = await store.list('RateLimitPolicy');
      if (!closed) apply(rateLimitServiceConfig(policies));
    } catch (err) {
      onError(err as Error);
    }
  };
  const unwatch = store.watch((event) => {
    if (event.resource.kind !== 'RateLimitPolicy' || closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void load(), 100);
  });
  return {
    ready: load(),
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      unwatch();
    },
  };
}
