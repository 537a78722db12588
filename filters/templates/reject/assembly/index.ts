// template-reject: answers 401 to requests without a valid API key, before they reach the app, and
// counts each rejection in the counter template_reject_rejected_total. See ../README.md.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues,
  stream_context, send_local_response, Counter, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { Config, parseConfig } from "./config";

/** Per plugin: the configuration and the metric, made once in on_configure. */
class RejectRoot extends RootContext {
  config: Config = new Config();
  rejected: Counter | null = null;

  createContext(context_id: u32): Context {
    return new RejectStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      // Returning false refuses the configuration: the proxy keeps the version it ran before.
      log(LogLevelValues.error, "template-reject: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    if (this.rejected === null) this.rejected = new Counter("template_reject_rejected_total");
    return true;
  }
}

/** Per request. */
class RejectStream extends Context {
  private root: RejectRoot;

  constructor(context_id: u32, root: RejectRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    const key = stream_context.headers.request.get(config.header);
    if (config.accepts(key)) return FilterHeadersStatusValues.Continue;

    const rejected = this.root.rejected;
    if (rejected !== null) rejected.increment(1);
    if (log_enabled(LogLevelValues.info)) {
      log(LogLevelValues.info, "template-reject: rejected " + stream_context.headers.request.get(":path") +
        ": " + (key.length == 0 ? "no " : "unknown ") + config.header);
    }
    // A plain HTTP client gets 401 with this text; a gRPC client gets UNAUTHENTICATED.
    send_local_response(401, "template_reject_missing_key",
      String.UTF8.encode("missing or unknown " + config.header + "\n"), [], GrpcStatusValues.Unauthenticated);
    // Stop here: the request never reaches the app.
    return FilterHeadersStatusValues.StopIteration;
  }
}

function newRoot(context_id: u32): RootContext {
  return new RejectRoot(context_id);
}

registerRootContext(newRoot, "template_reject");
// Also answer when the proxy configures no root id (WasmPlugin without pluginName).
registerRootContext(newRoot, "");
