// tcp-guard: a network (L4) filter. Counts the bytes of every TCP connection both ways, and closes a
// connection whose first client bytes start with a configured deny prefix before any of them reach
// the upstream. See ../README.md for the configuration and metrics.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK; the network
// entry points, which the SDK leaves out, from filters/common.
export * from "@solo-io/proxy-runtime/proxy";
export {
  proxy_on_new_connection, proxy_on_downstream_data, proxy_on_upstream_data,
  proxy_on_downstream_connection_close, proxy_on_upstream_connection_close,
} from "../../../common/assembly/network";
import {
  RootContext, Context, registerRootContext, FilterStatusValues, Counter, Histogram,
  log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { close_downstream, get_downstream_data } from "../../../common/assembly/network";
import { GuardConfig, parseConfig } from "./config";

const ROOT_ID = "tcp_guard";

/** How the client's first bytes compare with the deny prefixes. */
const enum Verdict { Pass, Deny, Undecided }

class GuardRoot extends RootContext {
  config: GuardConfig = new GuardConfig();
  connections: Counter | null = null;
  denied: Counter | null = null;
  downstreamBytes: Counter | null = null;
  upstreamBytes: Counter | null = null;
  connectionBytes: Histogram | null = null;

  createContext(context_id: u32): Context {
    return new Guard(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "tcp-guard: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    if (this.connections === null) {
      this.connections = new Counter("tcp_guard_connections_total");
      this.denied = new Counter("tcp_guard_connections_denied_total");
      this.downstreamBytes = new Counter("tcp_guard_downstream_bytes_total");
      this.upstreamBytes = new Counter("tcp_guard_upstream_bytes_total");
      this.connectionBytes = new Histogram("tcp_guard_connection_bytes");
    }
    if (log_enabled(LogLevelValues.info)) {
      log(LogLevelValues.info, "tcp-guard: configured " + config.prefixes.length.toString() + " deny prefix(es)");
    }
    return true;
  }
}

class Guard extends Context {
  private root: GuardRoot;
  /** The first client bytes were checked (passed): later data is only counted. */
  private decided: bool = false;
  /** Client bytes of the buffer already counted (the buffer keeps them while the filter holds it). */
  private countedHeld: u32 = 0;
  private down: u64 = 0;
  private up: u64 = 0;

  constructor(context_id: u32, root: GuardRoot) {
    super(context_id, root);
    this.root = root;
  }

  onNewConnection(): FilterStatusValues {
    const connections = this.root.connections;
    if (connections !== null) connections.increment(1);
    this.decided = this.root.config.prefixes.length == 0;
    return FilterStatusValues.Continue;
  }

  onDownstreamData(size: usize, end: bool): FilterStatusValues {
    const fresh = <u32>size - this.countedHeld;
    this.down += fresh;
    const counter = this.root.downstreamBytes;
    if (counter !== null && fresh > 0) counter.increment(fresh);
    if (this.decided) return FilterStatusValues.Continue;

    const config = this.root.config;
    const look = <u32>min(<i32>size, config.longest);
    const head = Uint8Array.wrap(get_downstream_data(0, look));
    const verdict = check(config, head);
    if (verdict == Verdict.Deny) {
      const denied = this.root.denied;
      if (denied !== null) denied.increment(1);
      if (log_enabled(LogLevelValues.info)) {
        log(LogLevelValues.info, "tcp-guard: connection " + this.context_id.toString() + " closed: its first bytes match deny prefix \"" + config.names[matched] + "\"");
      }
      close_downstream();
      this.decided = true;
      return FilterStatusValues.StopIteration;
    }
    if (verdict == Verdict.Undecided && !end) {
      // Could still become a denied prefix: hold the bytes until more arrive.
      this.countedHeld = <u32>size;
      return FilterStatusValues.StopIteration;
    }
    this.decided = true;
    this.countedHeld = 0;
    return FilterStatusValues.Continue;
  }

  onUpstreamData(size: usize, end: bool): FilterStatusValues {
    this.up += size;
    const counter = this.root.upstreamBytes;
    if (counter !== null && size > 0) counter.increment(<u32>size);
    return FilterStatusValues.Continue;
  }

  onLog(): void {
    const h = this.root.connectionBytes;
    if (h !== null) h.record(h.metric_id, this.down + this.up);
    if (log_enabled(LogLevelValues.debug)) {
      log(LogLevelValues.debug, "tcp-guard: connection " + this.context_id.toString() + ": " + this.down.toString() + " bytes from the client, " + this.up.toString() + " from the upstream");
    }
  }
}

/** The index of the prefix the last Deny matched. */
let matched: i32 = 0;

/** Deny if `head` starts with a prefix; Undecided if it is a strict start of one; else Pass. */
function check(config: GuardConfig, head: Uint8Array): Verdict {
  let undecided = false;
  const prefixes = config.prefixes;
  for (let p = 0, n = prefixes.length; p < n; p++) {
    const prefix = unchecked(prefixes[p]);
    const len = min(prefix.length, head.length);
    let same = true;
    for (let i = 0; i < len; i++) {
      if (unchecked(prefix[i]) != unchecked(head[i])) {
        same = false;
        break;
      }
    }
    if (!same) continue;
    if (head.length >= prefix.length) {
      matched = p;
      return Verdict.Deny;
    }
    undecided = true;
  }
  return undecided ? Verdict.Undecided : Verdict.Pass;
}

function newRoot(context_id: u32): RootContext {
  return new GuardRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
// Also answer when the proxy configures no root_id (it then reports an empty plugin_root_id).
registerRootContext(newRoot, "");
