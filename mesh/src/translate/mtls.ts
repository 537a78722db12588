// Identity and mTLS settings of one workload's proxy:
// - PeerAuthentication -> ProxyConfig.mtls. Istio's precedence: the workload-selector policy in the
//   workload's namespace, then the namespace-wide policy (no selector), then the mesh-wide policy in
//   the root namespace; UNSET (or absent) inherits from the next level; the default is PERMISSIVE.
//   portLevelMtls modes (UNSET inherits the workload's mode) come from the selector policy.
// - Outbound auto mTLS: clusters of mesh services (ServiceEntry location MESH_INTERNAL, or hosts under
//   .svc.cluster.local) get ISTIO_MUTUAL with the expected SPIFFE ids, unless a DestinationRule's tls
//   says otherwise (DISABLE: plaintext; SIMPLE/MUTUAL are not originated and leave plaintext).
import type { ClusterTlsConfig, MtlsConfig, MtlsMode, WorkloadIdentity } from '../proxy-config.ts';
import {
  ROOT_NAMESPACE,
  namespaceOf,
  type ClientTLSSettings,
  type ConfigDocument,
  type MtlsMode as DocMtlsMode,
  type PeerAuthentication,
  type TrafficPolicy,
  type WorkloadEntry,
} from '../documents.ts';
import { CLUSTER_DOMAIN, labelsMatch, type Service } from './clusters.ts';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

function byName(a: PeerAuthentication, b: PeerAuthentication): number {
  const ka = `${namespaceOf(a)}/${a.metadata.name}`;
  const kb = `${namespaceOf(b)}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function set(mode: DocMtlsMode | undefined): MtlsMode | undefined {
  return mode === 'STRICT' || mode === 'PERMISSIVE' || mode === 'DISABLE' ? mode : undefined;
}

/** The PeerAuthentication in force for a workload, as ProxyConfig.mtls. */
export function translatePeerAuthentication(documents: readonly ConfigDocument[], workload: WorkloadIdentity): MtlsConfig {
  const all: PeerAuthentication[] = [];
  for (const doc of documents) {
    const v = doc.value as PeerAuthentication | undefined;
    if (v && v.kind === 'PeerAuthentication' && v.metadata && v.spec) all.push(v);
  }
  all.sort(byName);
  const hasSelector = (p: PeerAuthentication): boolean => !!p.spec.selector?.matchLabels && Object.keys(p.spec.selector.matchLabels).length > 0;
  const workloadLevel = all.find((p) => namespaceOf(p) === workload.namespace && hasSelector(p) && labelsMatch(p.spec.selector!.matchLabels, workload.labels));
  const namespaceLevel = all.find((p) => namespaceOf(p) === workload.namespace && !hasSelector(p));
  const meshLevel = all.find((p) => namespaceOf(p) === ROOT_NAMESPACE && !hasSelector(p));
  const mode = set(workloadLevel?.spec.mtls?.mode) ?? set(namespaceLevel?.spec.mtls?.mode) ?? set(meshLevel?.spec.mtls?.mode) ?? 'PERMISSIVE';
  const portLevel: Record<number, MtlsMode> = {};
  for (const [port, setting] of Object.entries(workloadLevel?.spec.portLevelMtls ?? {})) {
    const m = set(setting.mode);
    const n = Number(port);
    if (Number.isInteger(n) && n > 0) portLevel[n] = m ?? mode;
  }
  return Object.keys(portLevel).length ? { mode, portLevel } : { mode };
}

/** The tls settings of a DestinationRule for one port and subset (the most specific level that sets tls). */
export function destinationTls(top: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): ClientTLSSettings | undefined {
  const at = (p: TrafficPolicy | undefined) => p?.portLevelSettings?.find((s) => s.port.number === port)?.tls;
  return at(subset) ?? subset?.tls ?? at(top) ?? top?.tls;
}

/** Whether a service belongs to the mesh (its endpoints run sidecars): auto mTLS applies. */
export function isMeshService(host: string, service: Service | undefined): boolean {
  if (service?.entry.spec.location === 'MESH_EXTERNAL') return false;
  return service?.entry.spec.location === 'MESH_INTERNAL' || host.endsWith(`.${CLUSTER_DOMAIN}`);
}

/** SPIFFE ids of the service accounts of a service's WorkloadEntries (sorted, unique). */
export function serviceIdentities(service: Service | undefined, workloadEntries: readonly WorkloadEntry[], trustDomain: string): string[] {
  const selector = service?.entry.spec.workloadSelector;
  if (!service || !selector) return [];
  const ids = new Set<string>();
  for (const we of workloadEntries) {
    if (namespaceOf(we) !== service.namespace || !we.spec.serviceAccount) continue;
    if (!labelsMatch(selector.labels, we.spec.labels ?? {})) continue;
    ids.add(`spiffe://${trustDomain}/ns/${namespaceOf(we)}/sa/${we.spec.serviceAccount}`);
  }
  return [...ids].sort();
}

/** A cluster's upstream TLS: ISTIO_MUTUAL for mesh services (auto mTLS) or when the rule asks; else none. */
export function clusterTls(
  host: string,
  service: Service | undefined,
  ruleTls: ClientTLSSettings | undefined,
  workloadEntries: readonly WorkloadEntry[],
  trustDomain: string,
): ClusterTlsConfig | undefined {
  if (ruleTls && ruleTls.mode !== 'ISTIO_MUTUAL') return undefined;
  if (!ruleTls && !isMeshService(host, service)) return undefined;
  const sans = ruleTls?.subjectAltNames?.length ? [...ruleTls.subjectAltNames] : serviceIdentities(service, workloadEntries, trustDomain);
  return { mode: 'ISTIO_MUTUAL', subjectAltNames: sans };
}
