// Istio's standard HTTP metrics. Each distinct label set is its own series, defined with the labels
// in the name (the host's convention): `istio_requests_total{reporter="source",...}`. The ids of the
// four series of one label set are cached in the root context, so a label set seen before costs a
// map lookup, not four defines.
import { COUNTER, defineMetric, HISTOGRAM, incrementMetric, recordMetric } from "./host";
import { escapeLabel } from "./codec";
import { Report } from "./report";

export const REQUESTS_TOTAL = "istio_requests_total";
export const REQUEST_DURATION = "istio_request_duration_milliseconds";
export const REQUEST_BYTES = "istio_request_bytes";
export const RESPONSE_BYTES = "istio_response_bytes";

/** Label sets whose ids are cached; past this, new sets are still recorded but define each time. */
const MAX_CACHED_LABEL_SETS = 10000;

export class SeriesIds {
  requests: u32 = 0;
  duration: u32 = 0;
  requestBytes: u32 = 0;
  responseBytes: u32 = 0;
}

/** The `{...}` part of the series name, labels in Istio's order (the host sorts them anyway). */
export function labelSet(r: Report): string {
  const parts: string[] = [
    "{reporter=\"", r.reporter,
    "\",source_workload=\"", r.source.labelName,
    "\",source_workload_namespace=\"", r.source.labelNamespace,
    "\",source_principal=\"", escapeLabel(r.sourcePrincipal),
    "\",source_app=\"", r.source.labelApp,
    "\",source_version=\"", r.source.labelVersion,
    "\",destination_workload=\"", r.destination.labelName,
    "\",destination_workload_namespace=\"", r.destination.labelNamespace,
    "\",destination_principal=\"", escapeLabel(r.destinationPrincipal),
    "\",destination_app=\"", r.destination.labelApp,
    "\",destination_version=\"", r.destination.labelVersion,
    "\",destination_service=\"", escapeLabel(r.destinationService),
    "\",destination_service_name=\"", escapeLabel(r.destinationServiceName),
    "\",destination_service_namespace=\"", escapeLabel(r.destinationServiceNamespace),
    "\",request_protocol=\"", r.requestProtocol,
    "\",response_code=\"", r.responseCode.toString(),
    "\",grpc_response_status=\"", r.grpcStatus,
    "\",response_flags=\"", r.responseFlags,
    "\",connection_security_policy=\"", r.connectionSecurityPolicy,
    "\"}",
  ];
  return parts.join("");
}

export class IstioMetrics {
  private cache: Map<string, SeriesIds> = new Map<string, SeriesIds>();
  /** Label sets the host refused (bad name, series bound reached); counted, not retried per request. */
  refused: u32 = 0;

  /**
   * The cache key: what varies per request, with the peer as its id (the local workload is fixed per
   * VM; a peer's Workload object is shared by every request naming it, see TelemetryRoot.peer). The
   * parts are joined with a newline, which no header value or property here can contain.
   */
  private key(r: Report, peerId: u32): string {
    const parts: string[] = [
      r.reporter, peerId.toString(), r.responseCode.toString(), r.responseFlags, r.grpcStatus, r.requestProtocol,
      r.connectionSecurityPolicy, r.sourcePrincipal, r.destinationPrincipal, r.destinationService,
    ];
    return parts.join("\n");
  }

  private ids(r: Report, peerId: u32): SeriesIds {
    // Most requests repeat the previous one's label set: compared field by field, where the key would
    // be a joined string to build and hash. The strings are mostly the very same objects (constants,
    // memoized principals and services, the peer's workload), which compare by identity first.
    const last = this.last;
    if (last !== null && this.lastMatches(r, peerId)) return last;
    const ids = this.idsFor(r, peerId);
    this.last = ids;
    this.lastReporter = r.reporter;
    this.lastPeerId = peerId;
    this.lastCode = r.responseCode;
    this.lastFlags = r.responseFlags;
    this.lastGrpc = r.grpcStatus;
    this.lastProtocol = r.requestProtocol;
    this.lastPolicy = r.connectionSecurityPolicy;
    this.lastSourcePrincipal = r.sourcePrincipal;
    this.lastDestinationPrincipal = r.destinationPrincipal;
    this.lastService = r.destinationService;
    return ids;
  }

  // The previous request's key fields (what key() joins) and its ids.
  private last: SeriesIds | null = null;
  private lastReporter: string = "";
  private lastPeerId: u32 = 0;
  private lastCode: i64 = 0;
  private lastFlags: string = "";
  private lastGrpc: string = "";
  private lastProtocol: string = "";
  private lastPolicy: string = "";
  private lastSourcePrincipal: string = "";
  private lastDestinationPrincipal: string = "";
  private lastService: string = "";

  private lastMatches(r: Report, peerId: u32): bool {
    return peerId == this.lastPeerId && r.responseCode == this.lastCode && r.reporter == this.lastReporter &&
      r.responseFlags == this.lastFlags && r.grpcStatus == this.lastGrpc && r.requestProtocol == this.lastProtocol &&
      r.connectionSecurityPolicy == this.lastPolicy && r.sourcePrincipal == this.lastSourcePrincipal &&
      r.destinationPrincipal == this.lastDestinationPrincipal && r.destinationService == this.lastService;
  }

  private idsFor(r: Report, peerId: u32): SeriesIds {
    const key = this.key(r, peerId);
    if (this.cache.has(key)) return this.cache.get(key);
    const labels = labelSet(r);
    const ids = new SeriesIds();
    ids.requests = defineMetric(COUNTER, REQUESTS_TOTAL + labels);
    ids.duration = defineMetric(HISTOGRAM, REQUEST_DURATION + labels);
    ids.requestBytes = defineMetric(HISTOGRAM, REQUEST_BYTES + labels);
    ids.responseBytes = defineMetric(HISTOGRAM, RESPONSE_BYTES + labels);
    if (ids.requests == 0 || ids.duration == 0 || ids.requestBytes == 0 || ids.responseBytes == 0) this.refused++;
    if (this.cache.size < MAX_CACHED_LABEL_SETS) this.cache.set(key, ids);
    return ids;
  }

  /** Counts the request and records its duration and sizes in the series of its label set. */
  record(r: Report, peerId: u32): void {
    const ids = this.ids(r, peerId);
    incrementMetric(ids.requests, 1);
    recordMetric(ids.duration, r.durationMs);
    recordMetric(ids.requestBytes, r.requestBytes);
    recordMetric(ids.responseBytes, r.responseBytes);
  }

  get cachedLabelSets(): i32 {
    return this.cache.size;
  }
}
