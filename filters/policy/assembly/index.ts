// policy: inbound authorization (Istio AuthorizationPolicy semantics) and local rate limiting.
// See ../README.md for the configuration. The configuration is compiled once in on_configure
// (config.ts); a request costs a few host calls for the attributes its policies look at.

// The same module also runs as a network (L4) filter on a sidecar's inbound TCP listeners
// (AuthorizationPolicy on TCP): onNewConnection authorizes the connection with the same evaluation,
// on a configuration the translator made for TCP (mesh/src/translate/policy-filter.ts,
// tcpPolicyFilterConfig), and closes a denied one before any byte goes anywhere.

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK; the network
// entry points, which the SDK leaves out, from filters/common.
export * from "@solo-io/proxy-runtime/proxy";
export {
  proxy_on_new_connection, proxy_on_downstream_data, proxy_on_upstream_data,
  proxy_on_downstream_connection_close, proxy_on_upstream_connection_close,
} from "../../common/assembly/network";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, FilterStatusValues, GrpcStatusValues, HeaderPair,
  send_local_response, log, log_enabled, LogLevelValues,
} from "@solo-io/proxy-runtime";
import { close_downstream } from "../../common/assembly/network";
import * as imports from "@solo-io/proxy-runtime/assembly/imports";
import { compileConfig, PolicyConfig } from "./config";
import { authorize, Decision, RequestAttrs } from "./authz";
import { Bucket, DescriptorKind, TakeResult, takeToken } from "./ratelimit";
import { getRequestHeader, nowNanos } from "./host";
import { GlobalStart, GlobalStreamState, onGlobalAnswer, onGlobalClose, startGlobalCheck } from "./global-ratelimit";

const ROOT_ID = "policy";

const DENIED_BODY = String.UTF8.encode("RBAC: access denied");
const LIMITED_BODY = String.UTF8.encode("local_rate_limited");

class PolicyRoot extends RootContext {
  config: PolicyConfig = new PolicyConfig();

  createContext(context_id: u32): Context {
    return new PolicyStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const compiled = compileConfig(this.getConfiguration());
    const config = compiled.config;
    if (config === null) {
      log(LogLevelValues.error, "policy: " + compiled.error);
      return false;
    }
    this.config = config;
    if (log_enabled(LogLevelValues.info)) {
      const a = config.authz;
      log(LogLevelValues.info, "policy: configured " + a.allow.length.toString() + " ALLOW, " + a.deny.length.toString() +
        " DENY, " + a.audit.length.toString() + " AUDIT policies and " + config.buckets.length.toString() + " rate limit bucket(s)");
    }
    return true;
  }

  // Answers of the global rate-limit service's callouts (global-ratelimit.ts).
  on_grpc_receive(token: u32, response_size: u32): void {
    onGlobalAnswer(token, response_size);
  }

  on_grpc_close(token: u32, status_code: u32): void {
    onGlobalClose(token, status_code);
  }
}

class PolicyStream extends Context {
  private root: PolicyRoot;
  /** Set while a global rate-limit check runs or ran: headers the service gave for the response. */
  private global: GlobalStreamState | null = null;

  constructor(context_id: u32, root: PolicyRoot) {
    super(context_id, root);
    this.root = root;
  }

  /**
   * A TCP connection (the module runs as a network filter): authorized once, when it is accepted.
   * Only connection attributes are there to look at (the translator left HTTP-only fields out of
   * the TCP configuration); rate limits are not applied to connections.
   */
  onNewConnection(): FilterStatusValues {
    const config = this.root.config;
    const req = new RequestAttrs();
    const d = authorize(config.authz, req);
    this.countConnection(d, req, config);
    if (d.allowed) return FilterStatusValues.Continue;
    const policy = d.policy;
    if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "policy: connection denied by " + (policy !== null ? policy.id : "none") + ": " + describeConnection(req));
    close_downstream();
    return FilterStatusValues.StopIteration;
  }

  /** Counts a connection's decision as a request's is counted (and logs the AUDIT policies it matched). */
  private countConnection(d: Decision, req: RequestAttrs, config: PolicyConfig): void {
    for (let i = 0, n = d.audited.length; i < n; i++) {
      const p = unchecked(d.audited[i]);
      const c = p.counter;
      if (c !== null) c.inc();
      if (log_enabled(LogLevelValues.info)) log(LogLevelValues.info, "policy: AUDIT policy " + p.id + " matched " + describeConnection(req));
    }
    const policy = d.policy;
    const counter = policy !== null ? policy.counter : d.allowed ? config.authz.allowedByDefault : config.authz.deniedByDefault;
    if (counter !== null) counter.inc();
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    const req = new RequestAttrs();

    // Authorization.
    const d = authorize(config.authz, req);
    for (let i = 0, n = d.audited.length; i < n; i++) {
      const p = unchecked(d.audited[i]);
      const c = p.counter;
      if (c !== null) c.inc();
      if (log_enabled(LogLevelValues.info)) log(LogLevelValues.info, "policy: AUDIT policy " + p.id + " matched " + describe(req));
    }
    const policy = d.policy;
    const counter = policy !== null ? policy.counter : d.allowed ? config.authz.allowedByDefault : config.authz.deniedByDefault;
    if (counter !== null) counter.inc();
    if (!d.allowed) {
      const id = policy !== null ? policy.id : "none";
      if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "policy: denied by " + id + ": " + describe(req));
      send_local_response(403, "rbac_access_denied_matched_policy[" + id + "]", DENIED_BODY, [], grpcStatus(GrpcStatusValues.PermissionDenied));
      return FilterHeadersStatusValues.StopIteration;
    }

    // Rate limits: one token from every bucket that applies, in order; the first empty one answers 429.
    const buckets = config.buckets;
    const n = buckets.length;
    if (n == 0) return this.checkGlobal(config, req);
    const now = nowNanos();
    const taken = new TakeResult();
    for (let i = 0; i < n; i++) {
      const b = unchecked(buckets[i]);
      const value = descriptorValue(b, req);
      if (value === null) continue;
      takeToken(b, value, now, taken);
      if (taken.allowed) {
        const ok = b.ok;
        if (ok !== null) ok.inc();
        continue;
      }
      const over = b.over;
      if (over !== null) over.inc();
      const seconds = ((taken.resetNs + 999_999_999) / 1_000_000_000).toString();
      const replyHeaders: HeaderPair[] = [
        header("retry-after", seconds),
        header("x-ratelimit-limit", b.maxTokens.toString()),
        header("x-ratelimit-remaining", "0"),
        header("x-ratelimit-reset", seconds),
      ];
      if (log_enabled(LogLevelValues.debug)) log(LogLevelValues.debug, "policy: rate limit bucket " + b.name + " is empty: " + describe(req));
      send_local_response(429, "local_rate_limited", LIMITED_BODY, replyHeaders, grpcStatus(GrpcStatusValues.Unavailable));
      return FilterHeadersStatusValues.StopIteration;
    }
    return this.checkGlobal(config, req);
  }

  /** After the local buckets: the rate-limit service, when configured (the request waits for it). */
  private checkGlobal(config: PolicyConfig, req: RequestAttrs): FilterHeadersStatusValues {
    const g = config.global;
    if (g === null) return FilterHeadersStatusValues.Continue;
    const state = new GlobalStreamState();
    this.global = state;
    const started = startGlobalCheck(g, req, this.context_id, state);
    return started == GlobalStart.Continue ? FilterHeadersStatusValues.Continue : FilterHeadersStatusValues.StopIteration;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const g = this.global;
    if (g !== null) {
      const add = g.responseHeaders;
      for (let i = 0, n = add.length; i < n; i++) addResponseHeader(unchecked(add[i]));
    }
    return FilterHeadersStatusValues.Continue;
  }
}

/** The value that picks the bucket for this request, or null when the bucket does not apply. */
function descriptorValue(b: Bucket, req: RequestAttrs): string | null {
  switch (b.kind) {
    case DescriptorKind.Header: return getRequestHeader(b.argBytes);
    case DescriptorKind.SourcePrincipal: return req.principal();
    case DescriptorKind.PathPrefix: {
      const path = req.path();
      return path !== null && path.startsWith(b.arg) ? "" : null;
    }
    default: return "";
  }
}

const H_CONTENT_TYPE = String.UTF8.encode("content-type");

/** `status` for gRPC requests (answered as a gRPC error), none (-1) for everything else. */
function grpcStatus(status: GrpcStatusValues): GrpcStatusValues {
  const ct = getRequestHeader(H_CONTENT_TYPE);
  return ct !== null && ct.startsWith("application/grpc") ? status : GrpcStatusValues.InvalidCode;
}

function addResponseHeader(h: HeaderPair): void {
  imports.proxy_add_header_map_value(2 /* HttpResponseHeaders */, changetype<usize>(h.key), h.key.byteLength, changetype<usize>(h.value), h.value.byteLength);
}

function header(name: string, value: string): HeaderPair {
  return new HeaderPair(String.UTF8.encode(name), String.UTF8.encode(value));
}

function describe(req: RequestAttrs): string {
  const method = req.method();
  const path = req.path();
  const principal = req.principal();
  return (method !== null ? method : "-") + " " + (path !== null ? path : "-") + " from " + (principal !== null ? principal : "(no principal)");
}

function describeConnection(req: RequestAttrs): string {
  const principal = req.principal();
  const port = req.port();
  return "connection to port " + (port >= 0 ? port.toString() : "-") + " from " + (principal !== null ? principal : "(no principal)");
}

function newRoot(context_id: u32): RootContext {
  return new PolicyRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
// Also answer when the proxy configures no root_id (it then reports an empty plugin_root_id).
registerRootContext(newRoot, "");
