// Istio-style documents + one workload -> the proxy's ProxyConfig (mesh/src/proxy-config.ts).
//
// A pure function of its inputs: no clock, no file system, no environment (file:// paths are
// resolved as strings, host environment values come in through options). The documents must have
// passed validateDocuments(); translation does not re-check them.
//
// Pipeline: the documents the workload can see (exportTo, selectors) -> service registry ->
// virtual hosts, which create the clusters they need -> filter chains -> content version -> freeze.
// tls and PeerAuthentication: see mtls.ts.

import { meshConfigOf, resolveTelemetry } from '../telemetry/resolve.ts';
import type { ProxyConfig, WorkloadIdentity } from '../proxy-config.ts';
import {
  isKind,
  isRecord,
  namespaceOf,
  resourceRef,
  type ConfigDocument,
  type DestinationRule,
  type DocumentSource,
  type Kind,
  type MeshResource,
  type Metadata,
  type ServiceEntry,
  type VirtualService,
  type WasmPlugin,
  type WorkloadEntry,
} from '../documents.ts';
import { ClusterTable, ServiceRegistry, isExportedTo, labelsMatch } from './clusters.ts';
import { withBuiltinFilters, withBuiltinNetworkFilters } from './builtin-filters.ts';
import { selectFilters, type PluginInput } from './filters.ts';
import { buildVirtualHosts } from './routes.ts';
import { contentVersion } from './version.ts';
import { effectiveMtls, peerAuthentications } from './mtls.ts';
import { translateGatewayParts } from './gateway-config.ts';
import { buildTcpPorts } from './tcp-routes.ts';

export interface TranslateOptions {
  /**
   * Folder that relative config file names are relative to (file:// module paths are resolved
   * against the folder of the file their WasmPlugin came from). Default: left relative.
   */
  readonly baseDir?: string;
  /** The proxy host's environment, for WasmPlugin env entries with valueFrom HOST. */
  readonly hostEnv?: Readonly<Record<string, string | undefined>>;
  /** Telemetry filter on both sides (default true, as in Istio). */
  readonly telemetry?: boolean;
  /** Where the built-in filters' modules are (default: this checkout's filters/). */
  readonly filtersDir?: string;
  /** SPIFFE trust domain of expected peer identities (default cluster.local). */
  readonly trustDomain?: string;
}

/** The resources one workload's proxy is configured from, each list in a deterministic order. */
export interface MeshView {
  readonly serviceEntries: readonly ServiceEntry[];
  readonly workloadEntries: readonly WorkloadEntry[];
  readonly virtualServices: readonly VirtualService[];
  readonly destinationRules: readonly DestinationRule[];
  readonly wasmPlugins: readonly PluginInput[];
}

interface Entry<R extends MeshResource> {
  readonly resource: R;
  readonly source: DocumentSource;
}

/**
 * Groups the documents by kind and keeps what the workload can see: ServiceEntries,
 * VirtualServices and DestinationRules exported to its namespace, DestinationRules whose
 * workloadSelector (same namespace only) selects it. Lists are sorted by namespace and name, with
 * the workload's own namespace first for ServiceEntries (the first entry declaring a host wins).
 */
export function meshView(documents: readonly ConfigDocument[], workload: WorkloadIdentity): MeshView {
  const byKind = new Map<Kind, Entry<MeshResource>[]>();
  for (const doc of documents) {
    const value = doc.value;
    if (!isRecord(value) || !isKind(value.kind) || !resourceRef(value) || !isRecord(value.spec)) continue;
    const list = byKind.get(value.kind) ?? [];
    list.push({ resource: value as unknown as MeshResource, source: doc.source });
    byKind.set(value.kind, list);
  }
  const sorted = <R extends MeshResource>(kind: R['kind'], ownFirst = false): Entry<R>[] => {
    const list = (byKind.get(kind) ?? []) as Entry<R>[];
    const key = (e: Entry<R>): string =>
      `${ownFirst && namespaceOf(e.resource) === workload.namespace ? '0' : '1'}/${namespaceOf(e.resource)}/${e.resource.metadata.name}`;
    return [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  };
  const exported = (r: { metadata: Metadata; spec: { exportTo?: string[] } }): boolean =>
    isExportedTo(r.spec.exportTo, namespaceOf(r), workload.namespace);

  return {
    serviceEntries: sorted<ServiceEntry>('ServiceEntry', true).map((e) => e.resource).filter(exported),
    workloadEntries: sorted<WorkloadEntry>('WorkloadEntry').map((e) => e.resource),
    virtualServices: sorted<VirtualService>('VirtualService').map((e) => e.resource).filter(exported),
    destinationRules: sorted<DestinationRule>('DestinationRule')
      .map((e) => e.resource)
      .filter(exported)
      .filter((dr) => {
        const selector = dr.spec.workloadSelector;
        if (!selector) return true;
        return namespaceOf(dr) === workload.namespace && labelsMatch(selector.matchLabels, workload.labels);
      }),
    wasmPlugins: sorted<WasmPlugin>('WasmPlugin').map((e) => ({ plugin: e.resource, source: e.source })),
  };
}

/** Translates validated documents into the configuration of one workload's proxy. */
export function translateProxyConfig(
  documents: readonly ConfigDocument[],
  workload: WorkloadIdentity,
  options: TranslateOptions = {},
): ProxyConfig {
  const view = meshView(documents, workload);
  const registry = new ServiceRegistry(view.serviceEntries);
  const policies = peerAuthentications(documents);
  const clusters = new ClusterTable({
    registry,
    workloadEntries: view.workloadEntries,
    destinationRules: view.destinationRules,
    peerAuthentications: policies,
    workload,
    ...(options.trustDomain ? { trustDomain: options.trustDomain } : {}),
  });
  const virtualHosts = buildVirtualHosts(view.virtualServices, { registry, clusters, workload });
  const tcpPorts = buildTcpPorts(view.virtualServices, { registry, clusters, workload });
  const telemetry = resolveTelemetry(documents, workload);
  const telemetryMetrics = telemetry ? { inbound: telemetry.inbound.metrics, outbound: telemetry.outbound.metrics } : undefined;
  let filters = withBuiltinFilters(selectFilters(view.wasmPlugins, workload, options), documents, view.virtualServices, workload, { ...options, ...(telemetryMetrics ? { telemetryMetrics } : {}) }, clusters);
  // A gateway proxy: its listeners, and its chain in outboundFilters (gateway-config.ts).
  const gateway = translateGatewayParts(documents, view, workload, options, { registry, clusters, workload });
  if (gateway) filters = gateway.filters;
  // WasmPlugins of type NETWORK: the TCP proxy's chains (a gateway runs its on the outbound side).
  // A sidecar's inbound TCP listeners also authorize connections (AuthorizationPolicy on TCP).
  const network = gateway ? { inbound: [], outbound: gateway.networkFilters } : withBuiltinNetworkFilters(selectFilters(view.wasmPlugins, workload, options, true), documents, workload, options);

  const body: Omit<ProxyConfig, 'version'> = {
    workload: {
      name: workload.name,
      namespace: workload.namespace,
      labels: { ...workload.labels },
      serviceAccount: workload.serviceAccount,
    },
    virtualHosts,
    clusters: clusters.toRecord(),
    inboundFilters: filters.inbound,
    outboundFilters: filters.outbound,
    mtls: effectiveMtls(policies, workload.namespace, workload.labels),
    ...(gateway ? { gateway: { listeners: gateway.listeners } } : {}),
    ...(telemetry ? { telemetry } : {}),
    ...(tcpPorts.length > 0 && !gateway ? { tcp: { outbound: tcpPorts } } : {}),
    // Absent for ALLOW_ANY (the default), so configs without it keep their versions.
    ...(meshConfigOf(documents)?.spec.outboundTrafficPolicy?.mode === 'REGISTRY_ONLY' && !gateway ? { outboundTrafficPolicy: 'REGISTRY_ONLY' as const } : {}),
    // Absent when there are none, so configs without NETWORK plugins keep their versions.
    ...(network.inbound.length > 0 || network.outbound.length > 0 ? { networkFilters: network } : {}),
  };
  return deepFreeze({ version: contentVersion(body), ...body });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
