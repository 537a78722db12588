// Workload identity: this proxy's (node metadata) and its peer's (metadata exchange).
//
// The exchange works as Istio's metadata-exchange filter does, with one header both ways:
//   request  (outbound side adds it, inbound side reads and removes it): who the client is;
//   response (inbound side adds it, outbound side reads and removes it): who answered.
// Value: base64 of `name=<workload>;namespace=<ns>;app=<app>;version=<version>;sa=<service account>`,
// each value %-escaped for `%`, `;`, `=` and control characters. Unknown keys are ignored, so the
// encoding can grow. A value that does not decode leaves the peer unknown; it never fails the request.
import { base64Decode, base64Encode, escapeLabel, percentEscape, percentUnescape } from "./codec";
import { getPropertyPairs, getPropertyString } from "./host";

export const UNKNOWN = "unknown";
export const PEER_HEADER = "x-wasmesh-peer-metadata";

/** Longer header values are ignored (a peer header is ~100 bytes). */
const MAX_HEADER_LENGTH = 2048;
/** Longer field values are ignored (Kubernetes names are at most 253 characters). */
const MAX_VALUE_LENGTH = 253;

let nextWorkloadId: u32 = 0;

export class Workload {
  /** Distinct per decoded workload: part of the metric cache key instead of five strings. */
  id: u32 = nextWorkloadId++;
  name: string = UNKNOWN;
  namespace: string = UNKNOWN;
  app: string = UNKNOWN;
  version: string = UNKNOWN;
  serviceAccount: string = UNKNOWN;
  // The same values escaped for a metric label (computed once per workload, not per request).
  labelName: string = UNKNOWN;
  labelNamespace: string = UNKNOWN;
  labelApp: string = UNKNOWN;
  labelVersion: string = UNKNOWN;

  finish(): Workload {
    this.labelName = escapeLabel(this.name);
    this.labelNamespace = escapeLabel(this.namespace);
    this.labelApp = escapeLabel(this.app);
    this.labelVersion = escapeLabel(this.version);
    return this;
  }

  /** The exchange header's value for this workload. */
  encode(): string {
    const text = "name=" + percentEscape(this.name) + ";namespace=" + percentEscape(this.namespace) +
      ";app=" + percentEscape(this.app) + ";version=" + percentEscape(this.version) +
      ";sa=" + percentEscape(this.serviceAccount);
    return base64Encode(String.UTF8.encode(text));
  }
}

/** The shared "nobody known" workload. */
export const UNKNOWN_WORKLOAD = new Workload().finish();

/** Parses an exchange header value; null when it is not one. */
export function decodePeer(value: string): Workload | null {
  if (value.length == 0 || value.length > MAX_HEADER_LENGTH) return null;
  const bytes = base64Decode(value.trim());
  if (bytes === null) return null;
  const text = String.UTF8.decode(bytes);
  const w = new Workload();
  let found = false;
  const fields = text.split(";");
  for (let i = 0; i < fields.length; i++) {
    const field = unchecked(fields[i]);
    const eq = field.indexOf("=");
    if (eq <= 0) continue;
    const key = field.substring(0, eq);
    const raw = field.substring(eq + 1);
    if (raw.length == 0 || raw.length > MAX_VALUE_LENGTH * 3) continue;
    const v = percentUnescape(raw);
    if (v.length > MAX_VALUE_LENGTH) continue;
    if (key == "name") w.name = v;
    else if (key == "namespace") w.namespace = v;
    else if (key == "app") w.app = v;
    else if (key == "version") w.version = v;
    else if (key == "sa") w.serviceAccount = v;
    else continue;
    found = true;
  }
  return found ? w.finish() : null;
}

// Node metadata, by Envoy's current path (xds.node.metadata.*) and, as a fallback, the legacy one (node.metadata.*).
const XDS_METADATA = "xds\0node\0metadata\0";
const LEGACY_METADATA = "node\0metadata\0";

function metadataString(key: string): string | null {
  const v = getPropertyString(String.UTF8.encode(XDS_METADATA + key));
  if (v !== null && v.length > 0) return v;
  const legacy = getPropertyString(String.UTF8.encode(LEGACY_METADATA + key));
  return legacy !== null && legacy.length > 0 ? legacy : null;
}

function labelOf(pairs: string[], key: string): string | null {
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    if (unchecked(pairs[i]) == key && unchecked(pairs[i + 1]).length > 0) return unchecked(pairs[i + 1]);
  }
  return null;
}

/**
 * This proxy's workload from node metadata: WORKLOAD_NAME (or NAME), NAMESPACE, SERVICE_ACCOUNT, and the
 * `app` / `version` labels (or app.kubernetes.io/name / app.kubernetes.io/version). Missing parts stay "unknown".
 */
export function readLocalWorkload(): Workload {
  const w = new Workload();
  let name = metadataString("WORKLOAD_NAME");
  if (name === null) name = metadataString("NAME");
  if (name !== null) w.name = name;
  const ns = metadataString("NAMESPACE");
  if (ns !== null) w.namespace = ns;
  const sa = metadataString("SERVICE_ACCOUNT");
  if (sa !== null) w.serviceAccount = sa;
  let labels = getPropertyPairs(String.UTF8.encode(XDS_METADATA + "LABELS"));
  if (labels.length == 0) labels = getPropertyPairs(String.UTF8.encode(LEGACY_METADATA + "LABELS"));
  let app = labelOf(labels, "app");
  if (app === null) app = labelOf(labels, "app.kubernetes.io/name");
  if (app !== null) w.app = app;
  let version = labelOf(labels, "version");
  if (version === null) version = labelOf(labels, "app.kubernetes.io/version");
  if (version !== null) w.version = version;
  return w.finish();
}

