// telemetry: Istio's standard HTTP metrics, peer metadata exchange, W3C trace context and Istio's
// JSON access log, as one proxy-wasm HTTP filter for both sides of a sidecar. See ../README.md.
//
//   on_request_headers   direction, peer header (add outbound / read and strip inbound), traceparent, x-request-id
//   on_response_headers  peer header (add inbound / read and strip outbound)
//   on_log               one Report -> istio_* series (metrics.ts) and the access-log record (access-log.ts)

// The proxy-wasm callbacks (proxy_on_*), the ABI marker and malloc come from the SDK.
export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, log, log_enabled, LogLevelValues } from "@solo-io/proxy-runtime";
import { emitRecord, LogContext } from "./access-log";
import { parseConfig, TelemetryConfig } from "./config";
import { HeaderPairs } from "./headers";
import {
  getHeader, getHeaderPairs, getPropertyBool, getPropertyInt, getPropertyString, nowNanos, OK, propertyPath, removeHeader,
  REQUEST_HEADERS, RESPONSE_HEADERS, setHeaderBytes,
} from "./host";
import { IstioMetrics } from "./metrics";
import { decodePeer, PEER_HEADER, readLocalWorkload, UNKNOWN, UNKNOWN_WORKLOAD, Workload } from "./peer";
import { hostOf, isAddressHost, Report, REPORTER_DESTINATION, REPORTER_SOURCE, responseFlagsText, setDestinationService } from "./report";
import { ensureRequestId, ensureTraceContext } from "./trace";

const ROOT_ID = "telemetry";

const PEER = String.UTF8.encode(PEER_HEADER);
const AUTHORITY = String.UTF8.encode(":authority");
const CONTENT_TYPE = String.UTF8.encode("content-type");

const P_DIRECTION = propertyPath(["xds", "listener_direction"]);
const P_DIRECTION_LEGACY = propertyPath(["listener_direction"]);
const P_RESPONSE_CODE = propertyPath(["response", "code"]);
const P_GRPC_STATUS = propertyPath(["response", "grpc_status"]);
const P_RESPONSE_FLAGS = propertyPath(["response", "flags"]);
const P_REQUEST_TOTAL_SIZE = propertyPath(["request", "total_size"]);
const P_RESPONSE_TOTAL_SIZE = propertyPath(["response", "total_size"]);
const P_MTLS = propertyPath(["connection", "mtls"]);
const P_PEER_SAN = propertyPath(["connection", "uri_san_peer_certificate"]);
const P_LOCAL_SAN = propertyPath(["connection", "uri_san_local_certificate"]);
const P_UPSTREAM_PEER_SAN = propertyPath(["upstream", "uri_san_peer_certificate"]);
const P_UPSTREAM_LOCAL_SAN = propertyPath(["upstream", "uri_san_local_certificate"]);

/** envoy.config.core.v3.TrafficDirection INBOUND. */
const INBOUND: i64 = 1;
/** Decoded peer headers kept per VM (a mesh has few distinct peers). */
const MAX_CACHED_PEERS = 256;

class TelemetryRoot extends RootContext {
  config: TelemetryConfig = new TelemetryConfig();
  metrics: IstioMetrics = new IstioMetrics();
  private local_: Workload | null = null;
  /** This workload's exchange header value (UTF-8, encoded once). */
  localHeader: ArrayBuffer = new ArrayBuffer(0);
  private peers: Map<string, Workload> = new Map<string, Workload>();
  sinkFailures: u32 = 0;

  createContext(context_id: u32): Context {
    return new TelemetryStream(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    if (!super.onConfigure(configuration_size)) return false;
    const parsed = parseConfig(this.getConfiguration());
    const config = parsed.config;
    if (config === null) {
      log(LogLevelValues.error, "telemetry: invalid plugin configuration: " + parsed.error);
      return false;
    }
    this.config = config;
    if (log_enabled(LogLevelValues.info)) {
      log(LogLevelValues.info, "telemetry: metrics " + (config.metrics ? "on" : "off") + ", access log " + (config.accessLog ? "on" : "off"));
    }
    return true;
  }

  /**
   * This proxy's workload, read from node metadata on the first stream (a root context may not see
   * every node attribute; a stream does) and kept for the life of the VM.
   */
  localWorkload(): Workload {
    let local = this.local_;
    if (local === null) {
      local = readLocalWorkload();
      this.local_ = local;
      this.localHeader = String.UTF8.encode(local.encode());
    }
    return local;
  }

  /** The workload an exchange header names; UNKNOWN_WORKLOAD when it does not decode. */
  peer(value: string): Workload {
    if (this.peers.has(value)) return this.peers.get(value);
    const decoded = decodePeer(value);
    const w = decoded === null ? UNKNOWN_WORKLOAD : decoded;
    if (this.peers.size >= MAX_CACHED_PEERS) this.peers.clear();
    this.peers.set(value, w);
    return w;
  }
}

class TelemetryStream extends Context {
  private root: TelemetryRoot;
  private started: bool = false;
  private inbound: bool = false;
  private peer: Workload = UNKNOWN_WORKLOAD;
  private logContext: LogContext = new LogContext();

  constructor(context_id: u32, root: TelemetryRoot) {
    super(context_id, root);
    this.root = root;
  }

  /** Direction and start time, once per stream (also from on_log if no headers ever came). */
  private start(): void {
    if (this.started) return;
    this.started = true;
    this.logContext.startNanos = nowNanos();
    let direction = getPropertyInt(P_DIRECTION, -1);
    if (direction < 0) direction = getPropertyInt(P_DIRECTION_LEGACY, -1);
    // Unknown direction reports as the client side, as Istio's stats filter does.
    this.inbound = direction == INBOUND;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.start();
    const root = this.root;
    root.localWorkload();
    if (this.inbound) {
      const value = getHeader(REQUEST_HEADERS, PEER);
      if (value !== null) {
        removeHeader(REQUEST_HEADERS, PEER);
        this.peer = root.peer(value);
      }
    } else {
      setHeaderBytes(REQUEST_HEADERS, PEER, root.localHeader);
    }
    const trace = ensureTraceContext();
    this.logContext.traceId = trace.traceId;
    this.logContext.spanId = trace.spanId;
    ensureRequestId();
    if (log_enabled(LogLevelValues.debug)) {
      log(LogLevelValues.debug, "telemetry: context " + this.context_id.toString() + ": " + (this.inbound ? "inbound" : "outbound") +
        ", trace " + trace.traceId + ", peer " + this.peer.name + "." + this.peer.namespace);
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    this.start();
    const root = this.root;
    root.localWorkload();
    if (this.inbound) {
      setHeaderBytes(RESPONSE_HEADERS, PEER, root.localHeader);
    } else {
      const value = getHeader(RESPONSE_HEADERS, PEER);
      if (value !== null) {
        removeHeader(RESPONSE_HEADERS, PEER);
        this.peer = root.peer(value);
      }
    }
    return FilterHeadersStatusValues.Continue;
  }

  onLog(): void {
    const root = this.root;
    const config = root.config;
    if (!config.metrics && !config.accessLog) return;
    this.start();
    // The access log needs many request headers: fetch them all once and search in place. Metrics need
    // two: two lookups cost less than serializing the whole map into the module.
    const headers = config.accessLog ? new HeaderPairs(getHeaderPairs(REQUEST_HEADERS)) : null;
    const contentType = headers !== null ? headers.get(CONTENT_TYPE) : getHeader(REQUEST_HEADERS, CONTENT_TYPE);
    const authority = headers !== null ? headers.get(AUTHORITY) : getHeader(REQUEST_HEADERS, AUTHORITY);
    const report = this.report(contentType, authority);
    if (config.metrics) root.metrics.record(report, this.peer.id);
    if (headers !== null) {
      const status = emitRecord(report, this.logContext, headers);
      if (status != OK) {
        root.sinkFailures++;
        // Once, then every 1000th: a broken sink should be visible without flooding the log.
        if (root.sinkFailures % 1000 == 1) {
          log(LogLevelValues.warn, "telemetry: wasmesh_access_log failed with status " + status.toString() +
            " (" + root.sinkFailures.toString() + " record(s) lost so far)");
        }
      }
    }
  }

  /** The request's Report, from what the stream saw and what the host tells at on_log. */
  private report(contentType: string | null, authority: string | null): Report {
    const local = this.root.localWorkload();
    const inbound = this.inbound;
    const r = inbound ? new Report(this.peer, local) : new Report(local, this.peer);
    r.reporter = inbound ? REPORTER_DESTINATION : REPORTER_SOURCE;

    r.responseCode = getPropertyInt(P_RESPONSE_CODE, 0);
    r.responseFlags = responseFlagsText(getPropertyInt(P_RESPONSE_FLAGS, 0));
    if (contentType !== null && contentType.startsWith("application/grpc")) {
      r.requestProtocol = "grpc";
      const grpc = getPropertyInt(P_GRPC_STATUS, -1);
      if (grpc >= 0) r.grpcStatus = grpc.toString();
    }

    const now = nowNanos();
    const start = this.logContext.startNanos;
    r.durationMs = now > start && start > 0 ? (now - start) / 1000000 : 0;
    const requestBytes = getPropertyInt(P_REQUEST_TOTAL_SIZE, 0);
    const responseBytes = getPropertyInt(P_RESPONSE_TOTAL_SIZE, 0);
    r.requestBytes = requestBytes > 0 ? <u64>requestBytes : 0;
    r.responseBytes = responseBytes > 0 ? <u64>responseBytes : 0;

    // Principals come from certificates: none without TLS, so the SANs are read only when there is some.
    if (inbound) {
      const mtls = getPropertyBool(P_MTLS);
      r.connectionSecurityPolicy = mtls ? "mutual_tls" : "none";
      if (mtls) {
        r.sourcePrincipal = orUnknown(getPropertyString(P_PEER_SAN));
        r.destinationPrincipal = orUnknown(getPropertyString(P_LOCAL_SAN));
      }
    } else {
      r.connectionSecurityPolicy = UNKNOWN; // Istio does not report it on the client side
      const upstreamPeer = getPropertyString(P_UPSTREAM_PEER_SAN);
      if (upstreamPeer !== null && upstreamPeer.length > 0) {
        r.destinationPrincipal = upstreamPeer;
        r.sourcePrincipal = orUnknown(getPropertyString(P_UPSTREAM_LOCAL_SAN));
      }
    }

    const host = authority === null ? "" : hostOf(authority);
    if (inbound) {
      // The local service, unless the request named a service (not an address) itself.
      if (isAddressHost(host)) setDestinationService(r, local.name, local.namespace);
      else setDestinationService(r, host, local.namespace);
    } else if (host.length == 0) {
      // No authority: nothing names the destination.
    } else if (isAddressHost(host)) {
      r.destinationService = host;
      r.destinationServiceName = host;
    } else {
      setDestinationService(r, host, local.namespace);
    }
    return r;
  }
}

function orUnknown(v: string | null): string {
  return v === null || v.length == 0 ? UNKNOWN : v;
}

function newRoot(context_id: u32): RootContext {
  return new TelemetryRoot(context_id);
}

registerRootContext(newRoot, ROOT_ID);
// Also answer when the proxy configures no root_id (it then reports an empty plugin_root_id).
registerRootContext(newRoot, "");
