// Identity and mTLS settings of one workload's proxy:
// - PeerAuthentication -> ProxyConfig.mtls. Istio's precedence: the workload-selector policy in the
//   workload's namespace, then the namespace-wide policy (no selector), then the mesh-wide policy in
//   the root namespace; UNSET (or absent) inherits from the next level; the default is PERMISSIVE.
//   portLevelMtls modes (UNSET inherits the workload's mode) come from the selector policy.
// - Outbound TLS -> ClusterConfig.tls, as Istio builds it (pilot's buildAutoMtlsSettings):
//   a DestinationRule's tls, at the most specific level that sets it (subset port, subset, port,
//   rule), wins: ISTIO_MUTUAL to every endpoint, SIMPLE/MUTUAL TLS origination, DISABLE plaintext.
//   Without one, mesh services (not MESH_EXTERNAL) get auto mTLS: ISTIO_MUTUAL only to the endpoints
//   that run a sidecar (label security.istio.io/tlsMode=istio) and whose own PeerAuthentication
//   does not DISABLE mTLS on their port (pilot's per-endpoint mtls checker); plaintext to the rest.
import { TLS_MODE_LABEL, type ClusterTlsConfig, type EndpointConfig, type MtlsConfig, type MtlsMode, type WorkloadIdentity } from '../proxy-config.ts';
import {
  ROOT_NAMESPACE,
  namespaceOf,
  type ClientTLSSettings,
  type ConfigDocument,
  type Labels,
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

/** The PeerAuthentications among the documents, sorted by namespace and name (the first match wins). */
export function peerAuthentications(documents: readonly ConfigDocument[]): PeerAuthentication[] {
  const all: PeerAuthentication[] = [];
  for (const doc of documents) {
    const v = doc.value as PeerAuthentication | undefined;
    if (v && v.kind === 'PeerAuthentication' && v.metadata && v.spec) all.push(v);
  }
  return all.sort(byName);
}

/** The PeerAuthentication in force for the workloads of a namespace with these labels. */
export function effectiveMtls(policies: readonly PeerAuthentication[], namespace: string, labels: Labels): MtlsConfig {
  const hasSelector = (p: PeerAuthentication): boolean => !!p.spec.selector?.matchLabels && Object.keys(p.spec.selector.matchLabels).length > 0;
  const workloadLevel = policies.find((p) => namespaceOf(p) === namespace && hasSelector(p) && labelsMatch(p.spec.selector!.matchLabels, labels));
  const namespaceLevel = policies.find((p) => namespaceOf(p) === namespace && !hasSelector(p));
  const meshLevel = policies.find((p) => namespaceOf(p) === ROOT_NAMESPACE && !hasSelector(p));
  const mode = set(workloadLevel?.spec.mtls?.mode) ?? set(namespaceLevel?.spec.mtls?.mode) ?? set(meshLevel?.spec.mtls?.mode) ?? 'PERMISSIVE';
  const portLevel: Record<number, MtlsMode> = {};
  for (const [port, setting] of Object.entries(workloadLevel?.spec.portLevelMtls ?? {})) {
    const m = set(setting.mode);
    const n = Number(port);
    if (Number.isInteger(n) && n > 0) portLevel[n] = m ?? mode;
  }
  return Object.keys(portLevel).length ? { mode, portLevel } : { mode };
}

/** The PeerAuthentication in force for a workload, as ProxyConfig.mtls. */
export function translatePeerAuthentication(documents: readonly ConfigDocument[], workload: WorkloadIdentity): MtlsConfig {
  return effectiveMtls(peerAuthentications(documents), workload.namespace, workload.labels);
}

/**
 * The endpoint's tlsMode: 'istio' when it runs a sidecar (the tlsMode label) and the
 * PeerAuthentication of its workload (namespace, labels, and its port) does not DISABLE mTLS.
 */
export function endpointTlsMode(policies: readonly PeerAuthentication[], namespace: string, endpoint: Pick<EndpointConfig, 'labels' | 'port'>): 'istio' | undefined {
  if (endpoint.labels[TLS_MODE_LABEL] !== 'istio') return undefined;
  const mtls = effectiveMtls(policies, namespace, endpoint.labels);
  const mode = mtls.portLevel?.[endpoint.port] ?? mtls.mode;
  return mode === 'DISABLE' ? undefined : 'istio';
}

/** The tls settings of a DestinationRule for one port and subset (the most specific level that sets tls). */
export function destinationTls(top: TrafficPolicy | undefined, subset: TrafficPolicy | undefined, port: number): ClientTLSSettings | undefined {
  const at = (p: TrafficPolicy | undefined) => p?.portLevelSettings?.find((s) => s.port.number === port)?.tls;
  return at(subset) ?? subset?.tls ?? at(top) ?? top?.tls;
}

/** Whether a service belongs to the mesh: auto mTLS applies to its sidecar endpoints. */
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

/**
 * A cluster's upstream TLS: the DestinationRule's when it sets one (DISABLE: none), else auto mTLS
 * for mesh services, else none.
 */
export function clusterTls(
  host: string,
  service: Service | undefined,
  ruleTls: ClientTLSSettings | undefined,
  workloadEntries: readonly WorkloadEntry[],
  trustDomain: string,
): ClusterTlsConfig | undefined {
  if (ruleTls) {
    switch (ruleTls.mode) {
      case 'DISABLE':
        return undefined;
      case 'ISTIO_MUTUAL': {
        const sans = ruleTls.subjectAltNames?.length ? [...ruleTls.subjectAltNames] : serviceIdentities(service, workloadEntries, trustDomain);
        return { mode: 'ISTIO_MUTUAL', subjectAltNames: sans, ...(ruleTls.sni ? { sni: ruleTls.sni } : {}) };
      }
      case 'SIMPLE':
      case 'MUTUAL':
        return {
          mode: ruleTls.mode,
          subjectAltNames: [...(ruleTls.subjectAltNames ?? [])],
          ...(ruleTls.sni ? { sni: ruleTls.sni } : {}),
          ...(ruleTls.caCertificates ? { caCertificates: ruleTls.caCertificates } : {}),
          ...(ruleTls.mode === 'MUTUAL' ? { clientCertificate: ruleTls.clientCertificate, privateKey: ruleTls.privateKey } : {}),
          ...(ruleTls.insecureSkipVerify ? { insecureSkipVerify: true } : {}),
        };
    }
  }
  if (!isMeshService(host, service)) return undefined;
  return { mode: 'ISTIO_MUTUAL', subjectAltNames: serviceIdentities(service, workloadEntries, trustDomain), auto: true };
}
