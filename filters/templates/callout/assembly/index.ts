// template-callout: before a request goes on, asks an authorization service (an HTTP callout to a
// cluster of the mesh) with the request's x-user header. 200: the request goes on with the
// service's x-user-id header added; any other status: 403 with the service's answer; no answer: 503.
// See ../README.md.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, BaseContext, registerRootContext, FilterHeadersStatusValues, GrpcStatusValues, HeaderPair,
  WasmResultValues, stream_context, send_local_response, continue_request, log, LogLevelValues,
} from "@solo-io/proxy-runtime";
// What the SDK's index does not export comes from its runtime module.
import { BufferTypeValues, get_buffer_bytes } from "@solo-io/proxy-runtime/assembly/runtime";
import { Config, parseConfig } from "./config";

/** The request header passed to the service, and the service's answer header added to the request. */
const USER_HEADER = "x-user";
const USER_ID_HEADER = "x-user-id";

class CalloutRoot extends RootContext {
  config: Config = new Config();

  createContext(context_id: u32): Context {
    return new CalloutStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "template-callout: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    return true;
  }
}

class CalloutStream extends Context {
  root: CalloutRoot;

  constructor(context_id: u32, root: CalloutRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    const ask: HeaderPair[] = [
      pair(":method", "GET"),
      pair(":path", config.path),
      pair(":authority", "authz"),
      pair(USER_HEADER, stream_context.headers.request.get(USER_HEADER)),
    ];
    // The root context makes the call; the answer comes to onAnswer with this stream as its context.
    const result = this.root.httpCall(config.cluster, ask, new ArrayBuffer(0), [], config.timeoutMs, this, onAnswer);
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, "template-callout: cannot call " + config.cluster + " (result " + result.toString() + "): is it a cluster of the mesh?");
      reply(503, "authorization service unavailable\n");
      return FilterHeadersStatusValues.StopIteration;
    }
    // Hold the request until the answer comes.
    return FilterHeadersStatusValues.StopIteration;
  }
}

/** The service answered (headers 0: the call failed or timed out). The SDK made this stream the effective context. */
function onAnswer(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  if (headers == 0) {
    reply(503, "authorization service unavailable\n");
    return;
  }
  const status = stream_context.headers.http_callback.get(":status");
  if (status == "200") {
    stream_context.headers.request.replace(USER_ID_HEADER, stream_context.headers.http_callback.get(USER_ID_HEADER));
    continue_request();
    return;
  }
  const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, <u32>body_size));
  reply(403, body.length > 0 ? body : "denied\n");
}

function reply(status: u32, text: string): void {
  send_local_response(status, "template_callout", String.UTF8.encode(text), [], GrpcStatusValues.PermissionDenied);
}

function pair(name: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), String.UTF8.encode(value));
}

function newRoot(context_id: u32): RootContext {
  return new CalloutRoot(context_id);
}

registerRootContext(newRoot, "template_callout");
registerRootContext(newRoot, "");
