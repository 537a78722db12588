// telemetry: Istio's standard HTTP metrics, peer metadata exchange, W3C trace context and Istio's
// JSON access log, as one proxy-wasm HTTP filter for both sides of a sidecar. See ../README.md.
//
//   on_request_headers   direction, peer header (add outbound / read and strip inbound), traceparent, x-request-id
//   on_response_headers  peer header (add inbound / read and strip outbound)
//   on_log               one Report -> istio_* series (metrics.ts) and the access-log record (access-log.ts)

// The proxy-wasm callbacks the filter uses, from the SDK, and nothing else: the host skips a callback a
// module does not export, so the body, trailer and on_done callbacks (the SDK's would only return
// Continue / true) cost no call per body chunk and per stream. malloc is the filter's own (host.ts).
export {
  proxy_abi_version_0_2_1, proxy_on_vm_start, proxy_validate_configuration, proxy_on_configure, proxy_on_context_create,
  proxy_on_request_headers, proxy_on_response_headers, proxy_on_log, proxy_on_delete, free,
} from "@solo-io/proxy-runtime/proxy";
export { malloc } from "./host";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, log, log_enabled, LogLevelValues } from "@solo-io/proxy-runtime";
import { emitRecord, LogContext } from "./access-log";
import { parseConfig, TelemetryConfig } from "./config";
import { HeaderPairs } from "./headers";
import {
  findHeader, findProperty, getHeaderPairs, getPropertyBool, getPropertyInt, nowNanos, OK, propertyPath, removeHeader,
  REQUEST_HEADERS, RESPONSE_HEADERS, resultLen, resultPtr, resultStartsWith, setHeaderBytes,
} from "./host";
import { DecodedText, LastBytes, ServiceMemo } from "./memo";
import { IstioMetrics } from "./metrics";
import { decodePeer, PEER_HEADER, readLocalWorkload, UNKNOWN, UNKNOWN_WORKLOAD, Workload } from "./peer";
import { hostOf, isAddressHost, Report, REPORTER_DESTINATION, REPORTER_SOURCE, responseFlagsText, setDestinationService } from "./report";
import { ensureRequestId, ensureTraceContext } from "./trace";

const ROOT_ID = "telemetry";

const PEER = String.UTF8.encode(PEER_HEADER);
const AUTHORITY = String.UTF8.encode(":authority");
const CONTENT_TYPE = String.UTF8.encode("content-type");
const GRPC_CONTENT_TYPE = String.UTF8.encode("application/grpc");

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
  // The last exchange header of each direction and the workload it named (see memo.ts).
  private requestPeerBytes: LastBytes = new LastBytes();
  private requestPeer: Workload = UNKNOWN_WORKLOAD;
  private responsePeerBytes: LastBytes = new LastBytes();
  private responsePeer: Workload = UNKNOWN_WORKLOAD;
  // Principals and services as the last request of each kind had them (see memo.ts).
  readonly peerPrincipal: DecodedText = new DecodedText();
  readonly localPrincipal: DecodedText = new DecodedText();
  readonly upstreamPeerPrincipal: DecodedText = new DecodedText();
  readonly upstreamLocalPrincipal: DecodedText = new DecodedText();
  readonly inboundService: ServiceMemo = new ServiceMemo();
  readonly outboundService: ServiceMemo = new ServiceMemo();
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

  /**
   * The workload the exchange header value at [ptr, ptr+len) names (`onRequest`: a request's header,
   * else a response's); the same bytes as last time on that side give the same workload at once.
   */
  peerAt(onRequest: bool, ptr: usize, len: usize): Workload {
    const last = onRequest ? this.requestPeerBytes : this.responsePeerBytes;
    if (last.matches(ptr, len)) return onRequest ? this.requestPeer : this.responsePeer;
    const w = this.peer(String.UTF8.decodeUnsafe(ptr, len));
    last.remember(ptr, len);
    if (onRequest) this.requestPeer = w;
    else this.responsePeer = w;
    return w;
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
      if (findHeader(REQUEST_HEADERS, PEER)) {
        this.peer = root.peerAt(true, resultPtr, resultLen);
        removeHeader(REQUEST_HEADERS, PEER);
      }
    } else {
      setHeaderBytes(REQUEST_HEADERS, PEER, root.localHeader);
    }
    const debug = log_enabled(LogLevelValues.debug);
    // The ids as strings only for what prints them: the access-log record and the debug line.
    const trace = ensureTraceContext(root.config.accessLog || debug);
    this.logContext.traceId = trace.traceId;
    this.logContext.spanId = trace.spanId;
    ensureRequestId();
    if (debug) {
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
      if (findHeader(RESPONSE_HEADERS, PEER)) {
        this.peer = root.peerAt(false, resultPtr, resultLen);
        removeHeader(RESPONSE_HEADERS, PEER);
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
    // two: two lookups cost less than serializing the whole map into the module. Either way the values
    // are used where they lie, each before the next host call.
    const headers = config.accessLog ? new HeaderPairs(getHeaderPairs(REQUEST_HEADERS)) : null;
    let grpc: bool;
    if (headers !== null) grpc = headers.find(CONTENT_TYPE) && headers.valueStartsWith(GRPC_CONTENT_TYPE);
    else grpc = findHeader(REQUEST_HEADERS, CONTENT_TYPE) && resultStartsWith(GRPC_CONTENT_TYPE);
    const report = this.report(grpc);
    const found = headers !== null ? headers.find(AUTHORITY) : findHeader(REQUEST_HEADERS, AUTHORITY);
    this.setService(report, found, headers !== null ? headers.valuePtr : resultPtr, headers !== null ? headers.valueLen : resultLen);
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

  /** The request's Report, from what the stream saw and what the host tells at on_log (but the service). */
  private report(grpc: bool): Report {
    const local = this.root.localWorkload();
    const inbound = this.inbound;
    const r = inbound ? new Report(this.peer, local) : new Report(local, this.peer);
    r.reporter = inbound ? REPORTER_DESTINATION : REPORTER_SOURCE;

    r.responseCode = getPropertyInt(P_RESPONSE_CODE, 0);
    r.responseFlags = responseFlagsText(getPropertyInt(P_RESPONSE_FLAGS, 0));
    if (grpc) {
      r.requestProtocol = "grpc";
      const status = getPropertyInt(P_GRPC_STATUS, -1);
      if (status >= 0) r.grpcStatus = status.toString();
    }

    const now = nowNanos();
    const start = this.logContext.startNanos;
    r.durationMs = now > start && start > 0 ? (now - start) / 1000000 : 0;
    const requestBytes = getPropertyInt(P_REQUEST_TOTAL_SIZE, 0);
    const responseBytes = getPropertyInt(P_RESPONSE_TOTAL_SIZE, 0);
    r.requestBytes = requestBytes > 0 ? <u64>requestBytes : 0;
    r.responseBytes = responseBytes > 0 ? <u64>responseBytes : 0;

    // Principals come from certificates: none without TLS, so the SANs are read only when there is some.
    const root = this.root;
    if (inbound) {
      const mtls = getPropertyBool(P_MTLS);
      r.connectionSecurityPolicy = mtls ? "mutual_tls" : "none";
      if (mtls) {
        r.sourcePrincipal = findProperty(P_PEER_SAN) ? orUnknown(root.peerPrincipal.decode(resultPtr, resultLen)) : UNKNOWN;
        r.destinationPrincipal = findProperty(P_LOCAL_SAN) ? orUnknown(root.localPrincipal.decode(resultPtr, resultLen)) : UNKNOWN;
      }
    } else {
      r.connectionSecurityPolicy = UNKNOWN; // Istio does not report it on the client side
      if (findProperty(P_UPSTREAM_PEER_SAN) && resultLen > 0) {
        r.destinationPrincipal = root.upstreamPeerPrincipal.decode(resultPtr, resultLen);
        r.sourcePrincipal = findProperty(P_UPSTREAM_LOCAL_SAN) ? orUnknown(root.upstreamLocalPrincipal.decode(resultPtr, resultLen)) : UNKNOWN;
      }
    }
    return r;
  }

  /**
   * destination_service, _name and _namespace from the authority at [ptr, ptr+len) (`found` false: the
   * request had none), remembered per side for the next request with the same authority.
   */
  private setService(r: Report, found: bool, ptr: usize, len: usize): void {
    const inbound = this.inbound;
    const memo = inbound ? this.root.inboundService : this.root.outboundService;
    if (memo.apply(r, found, ptr, len)) return;
    // report() read the local workload already: nothing below calls the host while the bytes are in use.
    const local = this.root.localWorkload();
    const host = found ? hostOf(String.UTF8.decodeUnsafe(ptr, len)) : "";
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
    memo.remember(r, found, ptr, len);
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
