// template-metric: counts responses by status class in the counter
// template_metric_responses_total{code="2xx"} (one series per class), and logs a summary of the
// last period on a timer (on_tick). See ../README.md.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  Counter, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
// What the SDK's index does not export comes from its runtime module.
import { set_tick_period_milliseconds } from "@solo-io/proxy-runtime/assembly/runtime";
import { Config, parseConfig } from "./config";

const CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];

class MetricRoot extends RootContext {
  config: Config = new Config();
  /** One counter per status class: the labels are part of the metric's name. */
  counters: Map<string, Counter> = new Map();
  /** Responses per class since the last summary. */
  window: Map<string, u32> = new Map();

  createContext(context_id: u32): Context {
    return new MetricStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "template-metric: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    // The proxy calls onTick every period from now on; 0 stops the timer.
    set_tick_period_milliseconds(config.summarySeconds * 1000);
    return true;
  }

  count(status: string): void {
    const code = status.length == 3 ? status.charAt(0) + "xx" : "other";
    if (!this.counters.has(code)) this.counters.set(code, new Counter("template_metric_responses_total{code=\"" + code + "\"}"));
    this.counters.get(code).increment(1);
    this.window.set(code, (this.window.has(code) ? this.window.get(code) : 0) + 1);
  }

  onTick(): void {
    let total: u32 = 0;
    let parts = "";
    for (let i = 0; i < CLASSES.length; i++) {
      const code = CLASSES[i];
      if (!this.window.has(code)) continue;
      const n = this.window.get(code);
      total += n;
      parts += (parts.length > 0 ? ", " : "") + code + ": " + n.toString();
    }
    log(LogLevelValues.info, "template-metric: " + total.toString() + " response(s) in the last " +
      this.config.summarySeconds.toString() + " s" + (parts.length > 0 ? " (" + parts + ")" : ""));
    this.window.clear();
  }
}

class MetricStream extends Context {
  private root: MetricRoot;

  constructor(context_id: u32, root: MetricRoot) {
    super(context_id, root);
    this.root = root;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.root.count(stream_context.headers.response.get(":status"));
    return FilterHeadersStatusValues.Continue;
  }
}

function newRoot(context_id: u32): RootContext {
  return new MetricRoot(context_id);
}

registerRootContext(newRoot, "template_metric");
registerRootContext(newRoot, "");
