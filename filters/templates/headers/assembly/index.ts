// template-headers: sets and removes request and response headers, and replaces text in response
// bodies, as configured. See ../README.md.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterDataStatusValues,
  stream_context, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
// What the SDK's index does not export comes from its runtime module.
import { BufferTypeValues, get_buffer_bytes } from "@solo-io/proxy-runtime/assembly/runtime";
import { Config, parseConfig } from "./config";
import { setResponseBody } from "./host";

class HeadersRoot extends RootContext {
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new HeadersStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "template-headers: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    return true;
  }
}

class HeadersStream extends Context {
  private root: HeadersRoot;

  constructor(context_id: u32, root: HeadersRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const list = this.root.config.request;
    for (let i = 0; i < list.length; i++) stream_context.headers.request.replace(list[i].name, list[i].value);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    for (let i = 0; i < config.response.length; i++) stream_context.headers.response.replace(config.response[i].name, config.response[i].value);
    for (let i = 0; i < config.removeResponse.length; i++) stream_context.headers.response.remove(config.removeResponse[i]);
    // The body may change length: the proxy frames it anew without the app's content-length.
    if (config.bodyFrom.length > 0) stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    const config = this.root.config;
    if (config.bodyFrom.length == 0) return FilterDataStatusValues.Continue;
    // Hold the chunks until the whole body is here (each call sees everything held so far).
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, <u32>body_buffer_length));
    const replaced = body.replaceAll(config.bodyFrom, config.bodyTo);
    if (replaced != body) {
      setResponseBody(<u32>body_buffer_length, String.UTF8.encode(replaced));
      if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "template-headers: replaced \"" + config.bodyFrom + "\" in a response body");
    }
    return FilterDataStatusValues.Continue;
  }
}

function newRoot(context_id: u32): RootContext {
  return new HeadersRoot(context_id);
}

registerRootContext(newRoot, "template_headers");
registerRootContext(newRoot, "");
