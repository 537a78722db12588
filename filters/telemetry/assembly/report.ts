// What one finished request reports: the facts Istio's standard metrics and access log are made of,
// gathered once in on_log and shared by both.
import { UNKNOWN, Workload } from "./peer";

export const REPORTER_SOURCE = "source";
export const REPORTER_DESTINATION = "destination";

export class Report {
  reporter: string = REPORTER_SOURCE;
  source: Workload;
  destination: Workload;
  sourcePrincipal: string = UNKNOWN;
  destinationPrincipal: string = UNKNOWN;
  destinationService: string = UNKNOWN;
  destinationServiceName: string = UNKNOWN;
  destinationServiceNamespace: string = UNKNOWN;
  /** "http" or "grpc". */
  requestProtocol: string = "http";
  responseCode: i64 = 0;
  /** gRPC status as text; "" for plain HTTP (the label is then left out, as Prometheus treats "" as absent). */
  grpcStatus: string = "";
  /** Envoy's short flags joined by ",", or "-". */
  responseFlags: string = "-";
  connectionSecurityPolicy: string = UNKNOWN;
  durationMs: u64 = 0;
  requestBytes: u64 = 0;
  responseBytes: u64 = 0;

  constructor(source: Workload, destination: Workload) {
    this.source = source;
    this.destination = destination;
  }
}

// Envoy's StreamInfo::ResponseFlag bits, in order, as `response.flags` carries them, with the short
// names %RESPONSE_FLAGS% prints.
const FLAG_NAMES: string[] = [
  "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX",
  "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM",
];

/** `response.flags` (a bit-vector) as Envoy prints it: "UH,UF", or "-" when none. */
export function responseFlagsText(bits: i64): string {
  if (bits <= 0) return "-";
  let out = "";
  for (let i = 0; i < FLAG_NAMES.length; i++) {
    if ((bits & (<i64>1 << i)) != 0) out += (out.length > 0 ? "," : "") + unchecked(FLAG_NAMES[i]);
  }
  return out.length > 0 ? out : "-";
}

/** Host part of an authority: "reviews:9080" -> "reviews", "[::1]:80" -> "::1". Lowercased. */
export function hostOf(authority: string): string {
  let host = authority.trim();
  if (host.startsWith("[")) {
    const close = host.indexOf("]");
    return close > 0 ? host.substring(1, close).toLowerCase() : host.toLowerCase();
  }
  const colon = host.lastIndexOf(":");
  if (colon >= 0 && host.indexOf(":") == colon) host = host.substring(0, colon);
  if (host.endsWith(".")) host = host.substring(0, host.length - 1);
  return host.toLowerCase();
}

/** True for hosts that name no service: empty, an IPv4 or IPv6 address, or localhost. */
export function isAddressHost(host: string): bool {
  if (host.length == 0 || host == "localhost" || host.indexOf(":") >= 0) return true;
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || c == 0x2e)) return false;
  }
  return true;
}

const CLUSTER_SUFFIX = ".svc.cluster.local";

/**
 * Fills destination_service, _name and _namespace from a host as Istio names services: a short name
 * (`reviews`) is completed in `defaultNamespace` (when known), `reviews.ns.svc` gets `.cluster.local`; a
 * Kubernetes FQDN splits into name and namespace. Any other host (an external name) is the service
 * and its name, with an unknown namespace.
 */
export function setDestinationService(report: Report, host: string, defaultNamespace: string): void {
  if (host.indexOf(".") < 0 && defaultNamespace != UNKNOWN) {
    report.destinationService = host + "." + defaultNamespace + CLUSTER_SUFFIX;
    report.destinationServiceName = host;
    report.destinationServiceNamespace = defaultNamespace;
    return;
  }
  let fqdn = host;
  if (host.endsWith(".svc")) fqdn = host + ".cluster.local";
  if (fqdn.endsWith(CLUSTER_SUFFIX)) {
    const rest = fqdn.substring(0, fqdn.length - CLUSTER_SUFFIX.length);
    const dot = rest.indexOf(".");
    if (dot > 0 && rest.indexOf(".", dot + 1) < 0) {
      report.destinationService = fqdn;
      report.destinationServiceName = rest.substring(0, dot);
      report.destinationServiceNamespace = rest.substring(dot + 1);
      return;
    }
  }
  report.destinationService = host;
  report.destinationServiceName = host;
  report.destinationServiceNamespace = UNKNOWN;
}
