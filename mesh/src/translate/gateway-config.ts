// The parts of a gateway proxy's ProxyConfig that differ from a sidecar's: its listeners
// (gateways.ts) and its filter chain.
//
// The chain: every WasmPlugin that selects the gateway, whatever its match mode (Istio applies
// CLIENT, SERVER and CLIENT_AND_SERVER plugins on gateways alike), in phase order, with the built-in
// filters at their usual places (telemetry first; RequestAuthentication, AuthorizationPolicy and
// RateLimitPolicy selecting the gateway as on a sidecar's inbound side). Policies and plugins may also
// name one of the gateway's Gateways in targetRefs (target-refs.ts); sidecars never get those. It travels in outboundFilters, and
// inboundFilters is empty: a gateway has no app behind an inbound listener, and its listeners are
// client side for telemetry (xds.listener_direction OUTBOUND: reporter="source", as Istio's gateways).

import type { FilterBinding, GatewayListenerConfig, WorkloadIdentity } from '../proxy-config.ts';
import type { ConfigDocument } from '../documents.ts';
import { withBuiltinFilters, withTcpPolicyFilter, type BuiltinFilterOptions } from './builtin-filters.ts';
import { compareBindings, isNetworkPlugin, pluginSelects, toBinding, type FilterOptions } from './filters.ts';
import { buildGatewayListeners, isGatewayWorkload, selectGateways } from './gateways.ts';
import { credentialLookup, tlsSecrets } from '../tls-secret.ts';
import type { MeshView } from './proxy-config.ts';
import type { RouteContext } from './routes.ts';

export function translateGatewayParts(
  documents: readonly ConfigDocument[],
  view: MeshView,
  workload: WorkloadIdentity,
  options: FilterOptions & BuiltinFilterOptions,
  ctx: RouteContext,
): { listeners: GatewayListenerConfig[]; filters: { inbound: FilterBinding[]; outbound: FilterBinding[] }; networkFilters: FilterBinding[] } | undefined {
  if (!isGatewayWorkload(workload)) return undefined;
  // credentialName: TLSSecrets of the gateway's own namespace only (Istio's rule; tls-secret.ts).
  const credentials = credentialLookup(tlsSecrets(documents), workload.namespace);
  const gateways = selectGateways(documents, workload);
  const listeners = buildGatewayListeners(gateways, view.virtualServices, ctx, credentials);
  const selected = view.wasmPlugins.filter((p) => pluginSelects(p.plugin, workload, gateways));
  const plugins = selected.filter((p) => !isNetworkPlugin(p.plugin)).map((p) => toBinding(p.plugin, p.source, options));
  // NETWORK plugins run on the gateway's TCP and TLS (PASSTHROUGH) listeners, whatever their match mode.
  const networkFilters = selected.filter((p) => isNetworkPlugin(p.plugin)).map((p) => toBinding(p.plugin, p.source, options)).sort(compareBindings);
  // Faults of VirtualServices bound to gateways are not injected yet: no sidecar VirtualService is
  // passed, so the fault filter is not added (README "Gateways", unfinished).
  const chain = withBuiltinFilters({ inbound: plugins.sort(compareBindings), outbound: [] }, documents, [], workload, options, ctx.clusters);
  // AuthorizationPolicy on the gateway's TCP and TLS listeners' connections (none: no extra VM).
  const l4 = listeners.some((l) => l.tcp !== undefined);
  return { listeners, filters: { inbound: [], outbound: chain.inbound }, networkFilters: l4 ? withTcpPolicyFilter(networkFilters, documents, workload, options) : networkFilters };
}
