// add-header: sets configured request and response headers (replace semantics).
// See ../README.md for the configuration and how to build and run it.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
  Counter, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { AddHeaderConfig, Header, parseConfig } from "./config";

const ROOT_ID = "add_header";

class AddHeaderRoot extends RootContext {
  config: AddHeaderConfig = new AddHeaderConfig();
  requests: Counter | null = null;

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "add-header: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    if (this.requests === null) {
      this.requests = new Counter("add_header_requests_total");
    }
    if (log_enabled(LogLevelValues.info)) {
      log(LogLevelValues.info, "add-header: configured " + config.request.length.toString() +
        " request and " + config.response.length.toString() + " response header(s)");
    }
    return true;
  }
}

class AddHeader extends Context {
  private root: AddHeaderRoot;

  constructor(context_id: u32, root: AddHeaderRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const root = this.root;
    const requests = root.requests;
    if (requests !== null) requests.increment(1);
    const list = root.config.request;
    setAll(list, true);
    if (log_enabled(LogLevelValues.debug)) {
      log(LogLevelValues.debug, "add-header: context " + this.context_id.toString() + ": set " +
        list.length.toString() + " request header(s)");
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const list = this.root.config.response;
    setAll(list, false);
    if (log_enabled(LogLevelValues.debug)) {
      log(LogLevelValues.debug, "add-header: context " + this.context_id.toString() + ": set " +
        list.length.toString() + " response header(s)");
    }
    return FilterHeadersStatusValues.Continue;
  }
}

function setAll(list: Header[], request: bool): void {
  const map = request ? stream_context.headers.request : stream_context.headers.response;
  for (let i = 0, n = list.length; i < n; i++) {
    const header = unchecked(list[i]);
    map.replace(header.name, header.value);
  }
}

function newRoot(context_id: u32): RootContext {
  return new AddHeaderRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
// Also answer when the proxy configures no root_id (it then reports an empty plugin_root_id).
registerRootContext(newRoot, "");
