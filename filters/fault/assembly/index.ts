// fault: VirtualService fault injection (delay and abort) on the request path.
// See ../README.md for the configuration and semantics.
//
//   config.ts   the configuration and its checks (reads it with ../../common/assembly/json.ts)
//   match.ts    which rule applies to a request        delays.ts   delayed streams and the tick
//   metrics.ts  fault_injected_total counters          host.ts     host functions called directly

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { FaultConfig, parseConfig } from "./config";
import { DelayQueue, sendAbort } from "./delays";
import { findRule, readRequest } from "./match";
import { FaultCounters, KIND_ABORT, KIND_DELAY } from "./metrics";

const ROOT_ID = "fault";

class FaultRoot extends RootContext {
  config: FaultConfig = new FaultConfig();
  delays: DelayQueue = new DelayQueue();
  counters: FaultCounters = new FaultCounters();

  createContext(context_id: u32): Context {
    return new FaultStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "fault: invalid plugin configuration: " + parsed.error);
      return false;
    }
    // Streams already delayed keep their due time and their decided fault.
    this.config = config;
    if (log_enabled(LogLevelValues.info)) {
      log(LogLevelValues.info, "fault: configured " + config.rules.length.toString() + " rule(s)");
    }
    return true;
  }

  onTick(): void {
    this.delays.tick(this.counters);
  }
}

class FaultStream extends Context {
  private root: FaultRoot;
  private delayed: bool = false;

  constructor(context_id: u32, root: FaultRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root;
    if (root.config.rules.length == 0) return FilterHeadersStatusValues.Continue;
    const req = readRequest();
    const rule = findRule(root.config.rules, req);
    if (rule === null) return FilterHeadersStatusValues.Continue;
    // Each fault rolls its own dice, as in Envoy: a request may be delayed, aborted, both, or neither.
    const delay = rule.delay;
    const abortSpec = rule.abort;
    const delayed = delay !== null && delay.fixedDelayMs > 0 && roll(delay.percentage);
    const aborted = abortSpec !== null && roll(abortSpec.percentage);
    if (delayed && delay !== null) {
      root.counters.count(KIND_DELAY, req.host);
      // The abort, if any, comes after the delay (counted when it happens).
      root.delays.add(this.context_id, delay.fixedDelayMs, aborted ? abortSpec : null, req.host);
      this.delayed = true;
      if (log_enabled(LogLevelValues.debug)) {
        log(LogLevelValues.debug, "fault: context " + this.context_id.toString() + ": delaying " +
          delay.fixedDelayMs.toString() + " ms" + (aborted ? " then aborting" : ""));
      }
      return FilterHeadersStatusValues.StopIteration;
    }
    if (aborted && abortSpec !== null) {
      root.counters.count(KIND_ABORT, req.host);
      sendAbort(abortSpec);
      if (log_enabled(LogLevelValues.debug)) {
        log(LogLevelValues.debug, "fault: context " + this.context_id.toString() + ": aborting with " +
          abortSpec.httpStatus.toString());
      }
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }

  onDelete(): void {
    if (this.delayed) this.root.delays.remove(this.context_id);
  }
}

/** True with probability percentage/100 (Math.random: AssemblyScript seeds it from the host's env.seed). */
function roll(percentage: f64): bool {
  if (percentage >= 100) return true;
  if (percentage <= 0) return false;
  return Math.random() * 100 < percentage;
}

function newRoot(context_id: u32): RootContext {
  return new FaultRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
// Also answer when the proxy configures no root_id (it then reports an empty plugin_root_id).
registerRootContext(newRoot, "");
