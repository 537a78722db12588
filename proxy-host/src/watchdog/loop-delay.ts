// The event loop's delay as gauges: perf_hooks samples it (a timer every 20 ms, in C++: no cost per
// request), and every window the p50, p99 and maximum of that window are copied into
// wasmesh_proxy_event_loop_delay_seconds{stat="p50"|"p99"|"max"} and the histogram starts over, so a
// scrape shows the last complete window whoever else scrapes. The label is not `quantile`: Prometheus
// reserves that for summaries, and these are gauges (`promtool check metrics` refuses the mix).
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Metric, MetricsRegistry } from '../../../wasm/src/index.ts';

export const LOOP_DELAY_METRIC = 'wasmesh_proxy_event_loop_delay_seconds';

export class LoopDelayGauges {
  readonly #histogram: IntervalHistogram;
  readonly #timer: NodeJS.Timeout;
  readonly #gauges: Array<[number, Metric]>;

  constructor(metrics: MetricsRegistry, windowMs = 10_000) {
    const help = `Event loop delay over the last ${windowMs / 1000} s (stat: p50, p99 or max)`;
    this.#gauges = ([[0.5, 'p50'], [0.99, 'p99'], [1, 'max']] as const).map(([q, stat]) => [q, metrics.gauge(LOOP_DELAY_METRIC, help, { stat })]);
    this.#histogram = monitorEventLoopDelay({ resolution: 20 });
    this.#histogram.enable();
    this.#timer = setInterval(() => this.#publish(), windowMs);
    this.#timer.unref();
  }

  #publish(): void {
    const h = this.#histogram;
    if (h.count > 0) {
      for (const [q, gauge] of this.#gauges) gauge.record((q === 1 ? h.max : h.percentile(q * 100)) / 1e9);
    }
    h.reset();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#histogram.disable();
  }
}
