// What a filter may learn about its stream beyond the request itself: the StreamInfo the connection
// manager builds once per request. The runtime answers request.*, response.*, source.*, destination.*,
// connection.* and plugin_* from the plain fields; getProperty() answers Envoy's xds.* (and the legacy
// top-level aliases old Istio filters still ask for) and upstream.*. One object per request: fields,
// no closures; the upstream is filled in by the router once it picked an endpoint.
import type { PropertyValue, StreamInfo } from '../../../wasm/src/index.ts';
import type { WorkloadIdentity } from '../../../mesh/src/proxy-config.ts';

export type ListenerDirection = 'inbound' | 'outbound';

export interface UpstreamInfo {
  /** "ip:port" of the endpoint the request went to. */
  address?: string;
  /** The cluster's Envoy-style name (outbound|80||reviews.default.svc.cluster.local). */
  cluster?: string;
}

/**
 * Where the router records the endpoint and cluster it picked (the connection manager's request):
 * read only when a filter asks for upstream.* or xds.cluster_name.
 */
export interface UpstreamSource {
  readonly endpoint?: { readonly key: string };
  readonly cluster?: { readonly config: { readonly name: string } };
}

export interface StreamInfoFields {
  sourceAddress: string;
  destinationAddress: string;
  protocol: string;
  connectionId: number;
  mtls: boolean;
  peerPrincipal?: string;
  localPrincipal?: string;
  direction: ListenerDirection;
  workload: WorkloadIdentity;
  /** Asked only when a filter reads upstream.* or xds.cluster_name. The router may instead set the fields. */
  upstream?: () => UpstreamInfo;
  /** The same without a closure: read when a filter asks (after the fields and `upstream`). */
  upstreamSource?: UpstreamSource;
}

/** Envoy's envoy.config.core.v3.TrafficDirection, as xds.listener_direction returns it. */
export const TrafficDirection = { Unspecified: 0, Inbound: 1, Outbound: 2 } as const;

export class ProxyStreamInfo implements StreamInfo {
  readonly sourceAddress: string;
  readonly destinationAddress: string;
  readonly protocol: string;
  readonly connectionId: number;
  readonly mtls: boolean;
  readonly peerPrincipal: string | undefined;
  readonly localPrincipal: string | undefined;
  readonly direction: ListenerDirection;
  readonly workload: WorkloadIdentity;
  /** Set by the router once it picked an endpoint (cheaper than the `upstream` callback). */
  upstreamAddress: string | undefined = undefined;
  upstreamCluster: string | undefined = undefined;
  readonly upstream: (() => UpstreamInfo) | undefined;
  readonly upstreamSource: UpstreamSource | undefined;
  /** Values filters set with proxy_set_property (created by the runtime on the first write). */
  filterState: Map<string, Uint8Array> | undefined = undefined;

  constructor(fields: StreamInfoFields) {
    this.sourceAddress = fields.sourceAddress;
    this.destinationAddress = fields.destinationAddress;
    this.protocol = fields.protocol;
    this.connectionId = fields.connectionId;
    this.mtls = fields.mtls;
    this.peerPrincipal = fields.peerPrincipal;
    this.localPrincipal = fields.localPrincipal;
    this.direction = fields.direction;
    this.workload = fields.workload;
    this.upstream = fields.upstream;
    this.upstreamSource = fields.upstreamSource;
  }

  /**
   * Attributes the runtime does not answer itself, by path (segments as the module sent them).
   * undefined means NOT_FOUND, as Envoy answers a valid attribute that is absent (no upstream yet).
   */
  getProperty(path: readonly string[]): PropertyValue | undefined {
    const n = path.length;
    switch (path[0]) {
      case 'xds':
        if (n < 2) return undefined;
        switch (path[1]) {
          case 'cluster_name':
            return n === 2 ? this.#upstreamCluster() : undefined;
          case 'listener_direction':
            return n === 2 ? this.#direction() : undefined;
          case 'node':
            return nodeProperty(this.workload, path, 2);
        }
        return undefined;
      case 'upstream':
        if (n !== 2) return undefined;
        if (path[1] === 'address') return this.#upstreamAddress();
        if (path[1] === 'port') return portOf(this.#upstreamAddress());
        return undefined;
      // Legacy top-level names (before xds.*), still read by Istio's own filters.
      case 'node':
        return nodeProperty(this.workload, path, 1);
      case 'cluster_name':
        return n === 1 ? this.#upstreamCluster() : undefined;
      case 'listener_direction':
        return n === 1 ? this.#direction() : undefined;
    }
    return undefined;
  }

  #direction(): number {
    return this.direction === 'inbound' ? TrafficDirection.Inbound : TrafficDirection.Outbound;
  }

  #upstreamAddress(): string | undefined {
    return this.upstreamAddress ?? this.upstream?.().address ?? this.upstreamSource?.endpoint?.key;
  }

  #upstreamCluster(): string | undefined {
    return this.upstreamCluster ?? this.upstream?.().cluster ?? this.upstreamSource?.cluster?.config.name;
  }
}

/** Builds the StreamInfo of one request (one object). */
export function createStreamInfo(fields: StreamInfoFields): ProxyStreamInfo {
  return new ProxyStreamInfo(fields);
}

/**
 * The node (this proxy) as Istio describes it: `node, metadata, NAME | NAMESPACE | WORKLOAD_NAME |
 * SERVICE_ACCOUNT` (strings), `LABELS` (a map, or one label by name), and `node, cluster`
 * (`<workload>.<namespace>`, Istio's service cluster). The whole node or metadata message would be a
 * protobuf, which is not served (NOT_FOUND).
 */
function nodeProperty(w: WorkloadIdentity, path: readonly string[], at: number): PropertyValue | undefined {
  const n = path.length;
  if (n <= at) return undefined;
  if (path[at] === 'cluster') return n === at + 1 ? `${w.name}.${w.namespace}` : undefined;
  if (path[at] === 'id') return n === at + 1 ? `sidecar~127.0.0.1~${w.name}.${w.namespace}~${w.namespace}.svc.cluster.local` : undefined;
  if (path[at] !== 'metadata' || n <= at + 1) return undefined;
  const key = path[at + 1];
  const rest = n - at - 2;
  if (key === 'LABELS') {
    if (rest === 0) return labelsMap(w.labels);
    if (rest === 1) return Object.hasOwn(w.labels, path[at + 2]) ? w.labels[path[at + 2]] : undefined;
    return undefined;
  }
  if (rest !== 0) return undefined;
  switch (key) {
    case 'NAME':
    case 'WORKLOAD_NAME':
      return w.name;
    case 'NAMESPACE':
      return w.namespace;
    case 'SERVICE_ACCOUNT':
      return w.serviceAccount;
  }
  return undefined;
}

/** Labels as a map (encoded as pairs), built once per workload's (immutable) label object. */
const labelMaps = new WeakMap<object, Map<string, string>>();

function labelsMap(labels: Readonly<Record<string, string>>): Map<string, string> {
  let m = labelMaps.get(labels);
  if (m === undefined) {
    m = new Map(Object.entries(labels));
    labelMaps.set(labels, m);
  }
  return m;
}

/** The port of "ip:port" or "[v6]:port". */
function portOf(address: string | undefined): number | undefined {
  if (address === undefined) return undefined;
  const i = address.lastIndexOf(':');
  if (i < 0 || address.indexOf(']', i) >= 0) return undefined;
  const port = Number(address.slice(i + 1));
  return Number.isInteger(port) && port >= 0 && port <= 65535 && i + 1 < address.length ? port : undefined;
}

/**
 * Node attributes (`node.*`, `xds.node.*`) of a workload, for contexts without a stream (a root
 * context asking for its workload's identity).
 */
export function workloadNodeProperty(w: WorkloadIdentity, path: readonly string[]): PropertyValue | undefined {
  if (path[0] === 'node') return nodeProperty(w, path, 1);
  if (path[0] === 'xds' && path[1] === 'node') return nodeProperty(w, path, 2);
  return undefined;
}
